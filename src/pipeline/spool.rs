//! The durable spool of received instances, and the notification of each stored instance.
//!
//! Layout under `data_dir/spool/`:
//! * `<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`: complete Part-10 files (PS3.10
//!   7: preamble, "DICM", file meta group written here, then the data set bytes exactly as
//!   received in the negotiated transfer syntax). UIDs are validated (digits and dots, at most 64
//!   characters) before they become path components.
//! * `tmp/`: partial files of instances being received (`<uuid>.part`). Emptied at start-up;
//!   a partial file is removed when its association ends early.
//!
//! An instance is stored by: writing the temp file, parsing its header (StudyInstanceUID,
//! SeriesInstanceUID, SOPInstanceUID, SOPClassUID), `fsync` of the file, a hard link to the final
//! name (which fails when the name exists, so two associations storing the same SOP Instance UID
//! at once can never both win), `fsync` of the series folder (and of new parent folders), then the
//! temp name is removed. Only after that does the C-STORE-RSP say success.
//!
//! Duplicate SOP Instance UID (the final name exists): same data set bytes -> success, one file
//! kept; different bytes -> the first file is kept, the new one discarded, warning B000H with an
//! ErrorComment saying so, and a [`Outcome::DuplicateDiffering`] notification (docs/conformance.md).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dicom_dictionary_std::tags;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use crate::dicom::meta;
use crate::dicom::write::{implementation_version_name, IMPLEMENTATION_CLASS_UID};
use crate::net::store::{status, InstanceSink, InstanceWriter, StoreRequest, StoreStatus};

/// Buffer of the temp-file writer (bytes).
const WRITE_BUFFER: usize = 256 * 1024;

/// Errors of opening the spool (per-instance failures become C-STORE statuses instead).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A spool folder could not be created or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What happened to a stored instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new file in the spool.
    New,
    /// The SOP Instance UID was already spooled with different data set bytes; the first file
    /// was kept and this copy discarded.
    DuplicateDiffering,
}

/// Notification of one instance accepted into the spool, sent after the file is durable and
/// before the C-STORE-RSP. Identical duplicates are not notified.
#[derive(Clone, Debug)]
pub struct StoredInstance {
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_uid: String,
    /// SOPInstanceUID (0008,0018).
    pub sop_instance_uid: String,
    /// SOPClassUID (0008,0016).
    pub sop_class_uid: String,
    /// The spooled file (for [`Outcome::DuplicateDiffering`]: the kept first copy).
    pub path: PathBuf,
    /// Calling AE title of the association that sent it.
    pub calling_ae: String,
    /// Peer address of that association.
    pub peer: SocketAddr,
    /// When the instance became durable.
    pub received_at: SystemTime,
    /// New file or differing duplicate.
    pub outcome: Outcome,
}

struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    min_free_bytes: u64,
    events: UnboundedSender<StoredInstance>,
}

/// The spool under `data_dir/spool`; cheap to clone. Implements [`InstanceSink`].
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl Spool {
    /// Opens (creating) `data_dir/spool` and `data_dir/spool/tmp`, removes partial files left by
    /// an earlier process, and returns the spool with the receiving end of its notifications.
    ///
    /// Errors: [`SpoolError::Io`] naming the folder that could not be created or read.
    pub fn open(
        data_dir: &Path,
        min_free_bytes: u64,
    ) -> Result<(Spool, UnboundedReceiver<StoredInstance>), SpoolError> {
        let root = data_dir.join("spool");
        let tmp = root.join("tmp");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SpoolError::Io { path, source }
        };
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut removed = 0usize;
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))? {
            let entry = entry.map_err(io(&tmp))?;
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            info!(removed, folder = %tmp.display(), "removed partial files of an earlier run");
        }
        let (events, rx) = unbounded_channel();
        let inner = Inner {
            root,
            tmp,
            min_free_bytes,
            events,
        };
        Ok((
            Spool {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// `data_dir/spool`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The final path of an instance, `None` when a UID is not a valid UID (digits and dots).
    pub fn instance_path(&self, study: &str, series: &str, sop_instance: &str) -> Option<PathBuf> {
        [study, series, sop_instance]
            .iter()
            .all(|u| is_uid(u))
            .then(|| {
                self.inner
                    .root
                    .join(study)
                    .join(series)
                    .join(format!("{sop_instance}.dcm"))
            })
    }

    /// Free bytes available to us on the spool's file system (statvfs f_bavail * f_frsize).
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let s = rustix::fs::statvfs(&self.inner.root).map_err(std::io::Error::from)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    fn below_watermark(&self) -> Option<String> {
        match self.free_bytes() {
            Ok(free) if free < self.inner.min_free_bytes => Some(format!(
                "{free} bytes free on the spool, below storage.min_free_bytes = {}",
                self.inner.min_free_bytes
            )),
            Ok(_) => None,
            Err(e) => Some(format!("cannot measure free space of the spool: {e}")),
        }
    }
}

/// Whether `uid` is a usable UID and path component: 1..=64 characters, digits and single dots,
/// not starting or ending with a dot (PS3.5 9.1).
pub fn is_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

impl InstanceSink for Spool {
    fn accepting(&self) -> Result<(), String> {
        self.below_watermark().map_or(Ok(()), Err)
    }

    fn begin(&self, request: &StoreRequest) -> Result<Box<dyn InstanceWriter>, StoreStatus> {
        if let Some(reason) = self.below_watermark() {
            return Err(StoreStatus::with(status::OUT_OF_RESOURCES, reason));
        }
        let tmp_path = self
            .inner
            .tmp
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        let fail = |e: std::io::Error| {
            StoreStatus::with(
                status::OUT_OF_RESOURCES,
                format!("cannot write the spool: {e}"),
            )
        };
        let file = File::create(&tmp_path).map_err(fail)?;
        let mut writer = SpoolWriter {
            spool: self.clone(),
            request: request.clone(),
            tmp_path,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            meta_len: 0,
        };
        let header = part10_header(request);
        writer.meta_len = header.len() as u64;
        writer.write(&header)?;
        Ok(Box::new(writer))
    }
}

/// One instance being written to `spool/tmp`. Dropping it (committed or not) removes the temp
/// name; after a successful commit the data lives on under its final name.
struct SpoolWriter {
    spool: Spool,
    request: StoreRequest,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes of preamble + "DICM" + meta group before the data set.
    meta_len: u64,
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        drop(self.file.take());
        let _ = fs::remove_file(&self.tmp_path);
    }
}

fn io_status(what: &str, e: &std::io::Error) -> StoreStatus {
    StoreStatus::with(status::OUT_OF_RESOURCES, format!("{what}: {e}"))
}

impl InstanceWriter for SpoolWriter {
    fn write(&mut self, fragment: &[u8]) -> Result<(), StoreStatus> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreStatus::with(status::OUT_OF_RESOURCES, "writer closed"));
        };
        file.write_all(fragment)
            .map_err(|e| io_status("writing the spool", &e))
    }

    fn commit(mut self: Box<Self>) -> StoreStatus {
        match self.commit_inner() {
            Ok(s) | Err(s) => s,
        }
    }
}

/// Attribute of the parsed header as a trimmed string.
fn attr(obj: &meta::DicomFile, tag: dicom_core::Tag) -> Option<String> {
    obj.element(tag)
        .ok()?
        .to_str()
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').to_owned())
}

impl SpoolWriter {
    fn commit_inner(&mut self) -> Result<StoreStatus, StoreStatus> {
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreStatus::with(status::OUT_OF_RESOURCES, "writer closed"))?;
        let file = file
            .into_inner()
            .map_err(|e| io_status("flushing the spool", e.error()))?;
        let req = &self.request;
        let obj = meta::open_header(&self.tmp_path).map_err(|e| {
            StoreStatus::with(
                status::CANNOT_UNDERSTAND,
                format!("data set does not parse: {e}"),
            )
        })?;
        let need = |tag, name: &str| {
            attr(&obj, tag).filter(|v| !v.is_empty()).ok_or_else(|| {
                StoreStatus::with(
                    status::CANNOT_UNDERSTAND,
                    format!("no {name} in the data set"),
                )
            })
        };
        let study = need(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
        let series = need(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
        let sop_instance = need(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
        let sop_class = need(tags::SOP_CLASS_UID, "SOPClassUID")?;
        if sop_instance != req.sop_instance_uid || sop_class != req.sop_class_uid {
            return Err(StoreStatus::with(
                status::DATA_SET_MISMATCH,
                format!(
                    "data set SOP class/instance {sop_class} / {sop_instance} differ from the command's"
                ),
            ));
        }
        let final_path = self
            .spool
            .instance_path(&study, &series, &sop_instance)
            .ok_or_else(|| {
                StoreStatus::with(
                    status::CANNOT_UNDERSTAND,
                    format!("invalid UID among study {study:?} series {series:?}"),
                )
            })?;
        file.sync_all()
            .map_err(|e| io_status("fsync of the spooled file", &e))?;
        drop(file);
        let series_dir = final_path
            .parent()
            .ok_or_else(|| StoreStatus::with(status::OUT_OF_RESOURCES, "no series folder"))?
            .to_owned();
        let study_dir = series_dir.parent().map(Path::to_owned);
        let new_study = study_dir.as_ref().is_some_and(|d| !d.exists());
        let new_series = !series_dir.exists();
        fs::create_dir_all(&series_dir).map_err(|e| io_status("creating the series folder", &e))?;
        let outcome = match fs::hard_link(&self.tmp_path, &final_path) {
            Ok(()) => {
                let mut dirs = vec![series_dir.clone()];
                if new_series {
                    dirs.extend(study_dir.clone());
                }
                if new_study {
                    dirs.push(self.spool.inner.root.clone());
                }
                for d in dirs {
                    File::open(&d)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| io_status("fsync of a spool folder", &e))?;
                }
                Outcome::New
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let same = same_data_set(&self.tmp_path, self.meta_len, &final_path)
                    .map_err(|e| io_status("comparing with the spooled duplicate", &e))?;
                if same {
                    return Ok(StoreStatus::success());
                }
                Outcome::DuplicateDiffering
            }
            Err(e) => return Err(io_status("linking into the spool", &e)),
        };
        let _ = fs::remove_file(&self.tmp_path);
        let event = StoredInstance {
            study_uid: study,
            series_uid: series,
            sop_instance_uid: sop_instance,
            sop_class_uid: sop_class,
            path: final_path,
            calling_ae: req.calling_ae.clone(),
            peer: req.peer,
            received_at: SystemTime::now(),
            outcome,
        };
        let result = match outcome {
            Outcome::New => StoreStatus::success(),
            Outcome::DuplicateDiffering => {
                warn!(sop_instance_uid = %event.sop_instance_uid, kept = %event.path.display(), "duplicate SOP Instance UID with different content: first copy kept, new one discarded");
                StoreStatus::with(
                    status::WARNING_DUPLICATE_KEPT_FIRST,
                    "duplicate SOP Instance UID, different content: first kept",
                )
            }
        };
        // A closed receiver (no assembler yet) must not fail the store.
        let _ = self.spool.inner.events.send(event);
        Ok(result)
    }
}

/// Part-10 header (PS3.10 7.1): 128-byte preamble, "DICM", file meta group in explicit VR little
/// endian with its group length.
fn part10_header(req: &StoreRequest) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    // (0002,0001) FileMetaInformationVersion OB 00\01 (long form: 2 reserved bytes, 32-bit length)
    group.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
    let mut short = |element: u16, vr: &[u8; 2], value: &str, pad: u8| {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        group.extend_from_slice(&0x0002u16.to_le_bytes());
        group.extend_from_slice(&element.to_le_bytes());
        group.extend_from_slice(vr);
        group.extend_from_slice(&(v.len() as u16).to_le_bytes());
        group.extend_from_slice(&v);
    };
    short(0x0002, b"UI", &req.sop_class_uid, 0);
    short(0x0003, b"UI", &req.sop_instance_uid, 0);
    short(0x0010, b"UI", &req.transfer_syntax_uid, 0);
    short(0x0012, b"UI", IMPLEMENTATION_CLASS_UID, 0);
    short(0x0013, b"SH", &implementation_version_name(), b' ');
    short(0x0016, b"AE", &req.calling_ae, b' ');
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

/// Offset of the data set in a Part-10 file: after preamble, "DICM" and the meta group whose
/// length (0002,0000) follows the magic (explicit VR little endian, UL).
fn data_set_offset(path: &Path) -> std::io::Result<u64> {
    let mut head = [0u8; 144];
    File::open(path)?.read_exact(&mut head)?;
    if &head[128..132] != b"DICM" || head[132..136] != [2, 0, 0, 0] {
        return Err(std::io::Error::other("no file meta group length"));
    }
    let len = u32::from_le_bytes([head[140], head[141], head[142], head[143]]);
    Ok(144 + len as u64)
}

/// Whether the data set of `new` (which starts at `new_offset`) equals that of the spooled
/// `existing`, compared in 1 MiB blocks.
fn same_data_set(new: &Path, new_offset: u64, existing: &Path) -> std::io::Result<bool> {
    let old_offset = data_set_offset(existing)?;
    let new_len = fs::metadata(new)?.len().saturating_sub(new_offset);
    let old_len = fs::metadata(existing)?.len().saturating_sub(old_offset);
    if new_len != old_len {
        return Ok(false);
    }
    let open_at = |p: &Path, off: u64| -> std::io::Result<BufReader<File>> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(p)?;
        f.seek(SeekFrom::Start(off))?;
        Ok(BufReader::new(f))
    };
    let (mut a, mut b) = (open_at(new, new_offset)?, open_at(existing, old_offset)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut left = new_len;
    while left > 0 {
        let n = left.min(ba.len() as u64) as usize;
        a.read_exact(&mut ba[..n])?;
        b.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
