//! C-STORE SCP side (PS3.4 Annex B, PS3.7 9.1.1): the interface through which received instances
//! leave the network layer, and the status codes sent back.
//!
//! The network layer knows nothing of where instances go: it hands each accepted C-STORE to an
//! [`InstanceSink`] (the spool, `pipeline::spool`, implements it), streams the data set fragments
//! into the [`InstanceWriter`] it gets back, and sends the C-STORE-RSP only after
//! [`InstanceWriter::commit`] returned, with the status that call decided. A writer dropped
//! without `commit` (abort, dropped connection, shutdown) must leave nothing behind.

use std::net::SocketAddr;

/// C-STORE status codes used (PS3.4 B.2.3, PS3.7 C).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Warning: coercion of data elements. Used for a duplicate SOP Instance UID with different
    /// content: the first copy is kept, the new one discarded (docs/conformance.md).
    pub const WARNING_DUPLICATE_KEPT_FIRST: u16 = 0xB000;
    /// Refused: out of resources (disk full, write failure).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (SOP Class/Instance UID of the data set differ
    /// from the command's).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (the data set does not parse).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Refused: SOP class not supported (the command's class differs from the context's).
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
}

/// What the SCP knows of a C-STORE before its data set arrives.
#[derive(Clone, Debug)]
pub struct StoreRequest {
    /// AffectedSOPClassUID (0000,0002).
    pub sop_class_uid: String,
    /// AffectedSOPInstanceUID (0000,1000).
    pub sop_instance_uid: String,
    /// Transfer syntax negotiated for the presentation context: the encoding of the data set.
    pub transfer_syntax_uid: String,
    /// Calling AE title of the association.
    pub calling_ae: String,
    /// Peer address.
    pub peer: SocketAddr,
}

/// A C-STORE outcome: the status for the C-STORE-RSP and its ErrorComment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// DIMSE status (see [`status`]).
    pub code: u16,
    /// ErrorComment (0000,0902), cut to 64 characters when sent; also logged in full.
    pub comment: Option<String>,
}

impl StoreStatus {
    /// Success without comment.
    pub fn success() -> Self {
        Self {
            code: status::SUCCESS,
            comment: None,
        }
    }

    /// A failure or warning with its comment.
    pub fn with(code: u16, comment: impl Into<String>) -> Self {
        Self {
            code,
            comment: Some(comment.into()),
        }
    }

    /// Whether the code is a success (0000H).
    pub fn is_success(&self) -> bool {
        self.code == status::SUCCESS
    }
}

/// Where accepted instances go. Called from async tasks; implementations must not block for long
/// in [`InstanceSink::begin`] or [`InstanceSink::accepting`].
pub trait InstanceSink: Send + Sync + 'static {
    /// Whether new associations may be accepted (e.g. the disk watermark); `Err(reason)` makes
    /// the SCP reject with "local limit exceeded".
    fn accepting(&self) -> Result<(), String>;

    /// Starts receiving one instance. An `Err` status is sent after the data set was consumed.
    fn begin(&self, request: &StoreRequest) -> Result<Box<dyn InstanceWriter>, StoreStatus>;
}

/// One instance being received.
pub trait InstanceWriter: Send {
    /// Appends a data set fragment (bytes in the negotiated transfer syntax). Fast (buffered);
    /// an `Err` status is final for this instance.
    fn write(&mut self, fragment: &[u8]) -> Result<(), StoreStatus>;

    /// Completes the instance (durably, before returning) and decides its status. May block
    /// (fsync); the SCP runs it on the blocking thread pool.
    fn commit(self: Box<Self>) -> StoreStatus;
}
