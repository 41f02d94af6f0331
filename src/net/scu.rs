//! Storage SCU (PS3.4 B, C-STORE as SCU; PS3.7 9.1.1): sends Part-10 files to one destination AE
//! over one association of dicom-ul's (blocking) client. Exactly the SOP classes of the files
//! are proposed, each with Explicit VR Little Endian only; the data sets are re-encoded in it.
//! Every instance gets its own status; [`ScuError::is_transient`] and [`StatusKind`] tell a
//! retry from a final failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{AssociationRJResult, PresentationContextResultReason};
use dicom_ul::Pdu;
use std::io::{Read, Write};

use dicom_object::meta::FileMetaTable;

use super::dimse::{
    command_field, command_pdus, CommandSet, Fragment, Reassembler, AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID, COMMAND_DATA_SET_TYPE, COMMAND_FIELD, ERROR_COMMENT, MESSAGE_ID,
    PRIORITY, STATUS,
};

/// Where to send and as whom.
#[derive(Clone, Debug)]
pub struct StoreTarget {
    /// Called AE title (the destination's).
    pub called_ae: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Our (calling) AE title.
    pub calling_ae: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

/// Failures of a whole association (per-instance statuses are in [`InstanceStatus`]); each names
/// the destination or the file.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    /// A file to send cannot be read or re-encoded.
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Connection refused / unreachable / timed out (transient).
    #[error("{ae}@{addr}: cannot associate: {reason}")]
    Connect {
        ae: String,
        addr: String,
        reason: String,
    },
    /// A-ASSOCIATE-RJ; `permanent` per its Result field (PS3.8 9.3.4).
    #[error("{ae}@{addr}: association rejected ({}): {reason}", if *.permanent { "permanent" } else { "transient" })]
    Rejected {
        ae: String,
        addr: String,
        permanent: bool,
        reason: String,
    },
    /// The destination accepted no presentation context for this SOP class (permanent).
    #[error("{ae}: SOP class {sop_class_uid} not accepted with Explicit VR Little Endian")]
    NoContext { ae: String, sop_class_uid: String },
    /// A-ABORT, connection loss, or a malformed response during the transfer (transient).
    #[error("{ae}: association failed during transfer: {reason}")]
    Transfer { ae: String, reason: String },
}

impl ScuError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ScuError::Connect { .. } | ScuError::Transfer { .. } => true,
            ScuError::Rejected { permanent, .. } => !permanent,
            ScuError::File { .. } | ScuError::NoContext { .. } => false,
        }
    }
}

/// Class of a C-STORE-RSP status (PS3.4 B.2.3, PS3.7 C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    /// 0000H.
    Success,
    /// Bxxx H (coercion, elements discarded, data set mismatch): stored.
    Warning,
    /// A7xxH out of resources, 0110H processing failure, 0213H resource limitation: retry.
    Transient,
    /// Everything else (A9xxH data set mismatch, Cxxx H cannot understand, 0122H SOP class not
    /// supported, 0124H not authorized...): final.
    Permanent,
}

/// The class of C-STORE-RSP status `code`.
pub fn status_kind(code: u16) -> StatusKind {
    match code {
        0x0000 => StatusKind::Success,
        0xB000..=0xBFFF | 0x0001 | 0x0107 | 0x0116 => StatusKind::Warning,
        0xA700..=0xA7FF | 0x0110 | 0x0213 => StatusKind::Transient,
        _ => StatusKind::Permanent,
    }
}

/// One instance to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Part-10 file.
    pub path: PathBuf,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
}

/// Response to one C-STORE-RQ.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStatus {
    /// SOP Instance UID sent.
    pub sop_instance_uid: String,
    /// Status (0000,0900).
    pub status: u16,
    /// ErrorComment (0000,0902) when given.
    pub comment: Option<String>,
}

/// Reads the SOP class and instance UIDs of a Part-10 file from its meta group (PS3.10 7.1);
/// only the preamble and the meta group are read, not the data set.
///
/// Errors: [`ScuError::File`] when the file is not readable DICOM.
pub fn outgoing(path: &Path) -> Result<Outgoing, ScuError> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(16 * 1024, file);
    let mut preamble = [0u8; PREAMBLE];
    reader
        .read_exact(&mut preamble)
        .map_err(|e| file_err(path, e))?;
    let meta = FileMetaTable::from_reader(&mut reader).map_err(|e| file_err(path, e))?;
    Ok(Outgoing {
        path: path.to_owned(),
        sop_class_uid: meta.media_storage_sop_class_uid().to_owned(),
        sop_instance_uid: meta.media_storage_sop_instance_uid().to_owned(),
    })
}

/// Length of the Part-10 file preamble before the `DICM` prefix (PS3.10 7.1).
const PREAMBLE: usize = 128;

fn file_err(path: &Path, e: impl std::fmt::Display) -> ScuError {
    ScuError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The data set of a Part-10 file in Explicit VR Little Endian: `bytes[start..]`.
struct DataSet {
    bytes: Vec<u8>,
    start: usize,
}

impl DataSet {
    fn as_slice(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

/// The data set of `path` in Explicit VR Little Endian. A file already in that transfer syntax
/// (every object Osteon writes) is sent as stored: the bytes after its meta group, without
/// decoding (as DCMTK storescu does when no conversion is needed); any other file is decoded
/// and re-encoded.
fn data_set_bytes(path: &Path) -> Result<DataSet, ScuError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let mut rest = bytes
        .get(PREAMBLE..)
        .ok_or_else(|| file_err(path, "shorter than the Part-10 preamble"))?;
    let meta = FileMetaTable::from_reader(&mut rest).map_err(|e| file_err(path, e))?;
    if meta.transfer_syntax() == uids::EXPLICIT_VR_LITTLE_ENDIAN {
        let start = bytes.len() - rest.len();
        return Ok(DataSet { bytes, start });
    }
    drop(bytes);
    Ok(DataSet {
        bytes: reencoded_data_set(path)?,
        start: 0,
    })
}

/// The data set of `path` decoded and re-encoded in Explicit VR Little Endian.
fn reencoded_data_set(path: &Path) -> Result<Vec<u8>, ScuError> {
    let obj = dicom_object::open_file(path).map_err(|e| file_err(path, e))?;
    let ts = TransferSyntaxRegistry
        .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .ok_or_else(|| file_err(path, "Explicit VR Little Endian is not registered"))?;
    let mut bytes = Vec::new();
    obj.write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| file_err(path, e))?;
    Ok(bytes)
}

/// Sends `instances` to `target` in one association, in order, and releases it. Returns one
/// status per instance (same order).
///
/// Errors: [`ScuError`] when the association cannot be made or fails part-way (statuses received
/// before the failure are lost with it; the caller resends the whole set, which a PACS stores
/// idempotently by SOP Instance UID).
pub fn store(
    target: &StoreTarget,
    instances: &[Outgoing],
) -> Result<Vec<InstanceStatus>, ScuError> {
    let ae = target.called_ae.clone();
    let mut classes: Vec<&str> = instances.iter().map(|i| i.sop_class_uid.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut assoc = associate(target, &classes)?;
    let transfer = |reason: String| ScuError::Transfer {
        ae: ae.clone(),
        reason,
    };
    let peer_max = assoc.acceptor_max_pdu_length();
    let mut statuses = Vec::with_capacity(instances.len());
    for (n, inst) in instances.iter().enumerate() {
        let Some(pc) = assoc.presentation_contexts().iter().find(|pc| {
            pc.abstract_syntax == inst.sop_class_uid
                && pc.reason == PresentationContextResultReason::Acceptance
        }) else {
            let _ = assoc.abort();
            return Err(ScuError::NoContext {
                ae,
                sop_class_uid: inst.sop_class_uid.clone(),
            });
        };
        let pc_id = pc.id;
        let data = match data_set_bytes(&inst.path) {
            Ok(d) => d,
            Err(e) => {
                let _ = assoc.abort();
                return Err(e);
            }
        };
        let message_id = (n % 0xFFFF) as u16 + 1;
        let command = CommandSet::new()
            .with_uid(AFFECTED_SOP_CLASS_UID, &inst.sop_class_uid)
            .with_u16(COMMAND_FIELD, command_field::C_STORE_RQ)
            .with_u16(MESSAGE_ID, message_id)
            .with_u16(PRIORITY, 0)
            .with_u16(COMMAND_DATA_SET_TYPE, 0x0000)
            .with_uid(AFFECTED_SOP_INSTANCE_UID, &inst.sop_instance_uid);
        for pdu in command_pdus(pc_id, &command.encode(), peer_max) {
            assoc.send(&pdu).map_err(|e| transfer(e.to_string()))?;
        }
        {
            let mut writer = assoc.send_pdata(pc_id);
            writer
                .write_all(data.as_slice())
                .map_err(|e| transfer(e.to_string()))?;
            writer.finish().map_err(|e| transfer(e.to_string()))?;
        }
        let response = receive_command(&mut assoc, command_field::C_STORE_RSP).map_err(transfer)?;
        let status = response
            .u16(STATUS)
            .ok_or_else(|| transfer("C-STORE-RSP without Status (0000,0900)".to_owned()))?;
        statuses.push(InstanceStatus {
            sop_instance_uid: inst.sop_instance_uid.clone(),
            status,
            comment: response.string(ERROR_COMMENT),
        });
    }
    if let Err(e) = assoc.release() {
        tracing::debug!(ae = %target.called_ae, error = %e, "release after the transfer failed");
    }
    Ok(statuses)
}

/// Opens an association with `target` proposing each of `classes` with Explicit VR Little Endian
/// (plus Implicit VR Little Endian, the default transfer syntax every SCP accepts, PS3.5 10.1).
fn associate(
    target: &StoreTarget,
    classes: &[&str],
) -> Result<dicom_ul::association::client::ClientAssociation<std::net::TcpStream>, ScuError> {
    let addr = format!("{}:{}", target.host, target.port);
    let ae = target.called_ae.clone();
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(target.calling_ae.as_str())
        .called_ae_title(target.called_ae.as_str())
        .connection_timeout(target.timeout)
        .read_timeout(target.timeout)
        .write_timeout(target.timeout);
    for class in classes {
        let ts = if *class == uids::VERIFICATION {
            vec![uids::IMPLICIT_VR_LITTLE_ENDIAN]
        } else {
            vec![uids::EXPLICIT_VR_LITTLE_ENDIAN]
        };
        options = options.with_presentation_context(*class, ts);
    }
    options.establish(addr.as_str()).map_err(|e| {
        use dicom_ul::association::Error as E;
        match e {
            E::Rejected { association_rj, .. } => ScuError::Rejected {
                ae: ae.clone(),
                addr: addr.clone(),
                permanent: association_rj.result == AssociationRJResult::Permanent,
                reason: format!("{:?}", association_rj.source),
            },
            E::NoAcceptedPresentationContexts { .. } => ScuError::NoContext {
                ae: ae.clone(),
                sop_class_uid: classes.join(", "),
            },
            other => ScuError::Connect {
                ae: ae.clone(),
                addr: addr.clone(),
                reason: other.to_string(),
            },
        }
    })
}

/// C-ECHO (Verification SOP Class, PS3.4 A; PS3.7 9.1.5) to `target`: one association, one
/// C-ECHO-RQ, release. Returns the Status of the C-ECHO-RSP (0000H = success).
///
/// Errors: [`ScuError`] when the association cannot be made or the response does not come.
pub fn echo(target: &StoreTarget) -> Result<u16, ScuError> {
    let mut assoc = associate(target, &[uids::VERIFICATION])?;
    let transfer = |reason: String| ScuError::Transfer {
        ae: target.called_ae.clone(),
        reason,
    };
    let pc_id = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
        .ok_or_else(|| ScuError::NoContext {
            ae: target.called_ae.clone(),
            sop_class_uid: uids::VERIFICATION.to_owned(),
        })?;
    let command = CommandSet::new()
        .with_uid(AFFECTED_SOP_CLASS_UID, uids::VERIFICATION)
        .with_u16(COMMAND_FIELD, command_field::C_ECHO_RQ)
        .with_u16(MESSAGE_ID, 1)
        .with_u16(COMMAND_DATA_SET_TYPE, super::dimse::NO_DATA_SET);
    for pdu in command_pdus(pc_id, &command.encode(), assoc.acceptor_max_pdu_length()) {
        assoc.send(&pdu).map_err(|e| transfer(e.to_string()))?;
    }
    let response = receive_command(&mut assoc, command_field::C_ECHO_RSP).map_err(transfer)?;
    let status = response
        .u16(STATUS)
        .ok_or_else(|| transfer("C-ECHO-RSP without Status (0000,0900)".to_owned()))?;
    if let Err(e) = assoc.release() {
        tracing::debug!(ae = %target.called_ae, error = %e, "release after C-ECHO failed");
    }
    Ok(status)
}

fn receive_command(
    assoc: &mut dicom_ul::association::client::ClientAssociation<std::net::TcpStream>,
    expected: u16,
) -> Result<CommandSet, String> {
    let mut reassembler = Reassembler::new();
    loop {
        match assoc.receive().map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                for pdv in data {
                    match reassembler.push(pdv).map_err(|e| e.to_string())? {
                        Fragment::Command { command, .. } => {
                            let field = command.command_field().map_err(|e| e.to_string())?;
                            if field != expected {
                                return Err(format!(
                                    "expected command field {expected:#06x}, got {field:#06x}"
                                ));
                            }
                            return Ok(command);
                        }
                        Fragment::Partial | Fragment::Data { .. } => {}
                    }
                }
            }
            Pdu::AbortRQ { source } => return Err(format!("A-ABORT ({source:?})")),
            other => return Err(format!("unexpected PDU {}", other.short_description())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_kind(0x0000), StatusKind::Success);
        assert_eq!(status_kind(0xB000), StatusKind::Warning);
        assert_eq!(status_kind(0xA700), StatusKind::Transient);
        assert_eq!(status_kind(0xA900), StatusKind::Permanent);
        assert_eq!(status_kind(0xC000), StatusKind::Permanent);
        assert_eq!(status_kind(0x0122), StatusKind::Permanent);
    }

    /// An object as Osteon's writers make it (sequences, an empty sequence, a long OB value, an
    /// odd-length text padded by the encoder) is sent as stored: the bytes after its meta group
    /// are exactly its decoded and re-encoded data set, and the UIDs come from the meta group.
    #[test]
    fn stored_explicit_le_data_set_is_sent_as_is() {
        use crate::dicom::write::{code_item, into_part10, seq_el, str_el, write_part10};
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        use dicom_object::InMemDicomObject;

        let mut obj = InMemDicomObject::new_empty();
        obj.put(str_el(
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.104.3",
        ));
        obj.put(str_el(tags::SOP_INSTANCE_UID, VR::UI, "2.25.12345"));
        obj.put(str_el(tags::PATIENT_NAME, VR::PN, "Odd^Name"));
        obj.put(seq_el(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![]));
        obj.put(seq_el(
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![code_item(crate::dicom::write::Code {
                value: "mm",
                scheme: "UCUM",
                meaning: "mm",
            })],
        ));
        let document: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
        obj.put(DataElement::new(
            tags::ENCAPSULATED_DOCUMENT,
            VR::OB,
            PrimitiveValue::from(document),
        ));
        let file = into_part10(obj).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.dcm");
        write_part10(&file, &path).unwrap();

        let sent = data_set_bytes(&path).unwrap();
        let reencoded = reencoded_data_set(&path).unwrap();
        assert!(
            sent.start > PREAMBLE + 4,
            "meta group skipped: {}",
            sent.start
        );
        assert_eq!(sent.as_slice().len(), reencoded.len());
        assert!(sent.as_slice() == reencoded.as_slice(), "same bytes");
        let o = outgoing(&path).unwrap();
        assert_eq!(
            o.sop_class_uid.trim_end_matches('\0'),
            "1.2.840.10008.5.1.4.1.1.104.3"
        );
        assert_eq!(o.sop_instance_uid.trim_end_matches('\0'), "2.25.12345");
    }

    #[test]
    fn a_file_that_is_not_dicom_is_a_permanent_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.dcm");
        std::fs::write(&path, vec![0u8; 200]).unwrap();
        let e = data_set_bytes(&path).err().expect("not DICOM");
        assert!(matches!(e, ScuError::File { .. }), "{e}");
        assert!(!e.is_transient());
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(outgoing(&path), Err(ScuError::File { .. })));
    }

    #[test]
    fn wrong_called_ae_is_a_permanent_reject() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let options = dicom_ul::association::server::ServerAssociationOptions::new()
                .accept_called_ae_title()
                .ae_title("PACS")
                .with_abstract_syntax("1.2.840.10008.5.1.4.1.1.66.4");
            options.establish(socket).is_err()
        });
        let target = StoreTarget {
            called_ae: "NOT-PACS".to_owned(),
            host: "127.0.0.1".to_owned(),
            port,
            calling_ae: "OSTEON".to_owned(),
            timeout: Duration::from_secs(5),
        };
        let one = Outgoing {
            path: PathBuf::from("/nonexistent.dcm"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.66.4".to_owned(),
            sop_instance_uid: "2.25.1".to_owned(),
        };
        let e = store(&target, &[one]).unwrap_err();
        assert!(
            matches!(
                e,
                ScuError::Rejected {
                    permanent: true,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_transient());
        assert!(server.join().unwrap(), "the server rejected");
    }

    #[test]
    fn refused_connection_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let target = StoreTarget {
            called_ae: "PACS".to_owned(),
            host: "127.0.0.1".to_owned(),
            port,
            calling_ae: "OSTEON".to_owned(),
            timeout: Duration::from_secs(2),
        };
        let one = Outgoing {
            path: PathBuf::from("/nonexistent.dcm"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.66.4".to_owned(),
            sop_instance_uid: "2.25.1".to_owned(),
        };
        let e = store(&target, &[one]).unwrap_err();
        assert!(matches!(e, ScuError::Connect { .. }), "{e}");
        assert!(e.is_transient());
    }
}
