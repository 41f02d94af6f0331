//! Lenient opening of DICOM files (PS3.10 Part-10 files and bare data sets).
//!
//! [`open`] first reads a file with `dicom-object` as it is. When that fails because of the file meta
//! group (PS3.10 7.1; e.g. dicom-rs 0.10.1 rejects a meta group whose SourceApplicationEntityTitle
//! is longer than 16 bytes: "Could not parse meta group data set"), it parses group 0002 itself
//! (always explicit VR little endian, PS3.10 7.1), builds a fresh meta table with the same
//! TransferSyntaxUID and MediaStorageSOPClass/InstanceUID, and hands the rest of the file to
//! `dicom-object`. Files without preamble and meta group (a bare data set, as some old archives
//! hold) are read as implicit VR little endian, then as explicit VR little endian (PS3.5 A.1, A.2).

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

#[path = "read/walk.rs"]
pub mod walk;
pub use walk::PixelDataLayout;

/// A DICOM object read from a file, with its (possibly rebuilt) file meta table.
pub type DicomFile = DefaultDicomObject;

/// (7FE0,0010) PixelData.
pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// How much of the data set to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// The whole data set, pixel data included.
    Full,
    /// Stop before (7FE0,0010) PixelData: headers only, for fast scanning. The returned object then
    /// never holds PixelData, whether the file has it or not.
    HeaderOnly,
}

/// How the file was opened (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenedAs {
    /// Standard Part-10 file read by `dicom-object` as is.
    Standard,
    /// Part-10 file whose meta group `dicom-object` refused; group 0002 parsed here and rebuilt.
    RebuiltMeta,
    /// Bare data set without preamble and meta group, read with the given transfer syntax UID.
    NoMeta(&'static str),
}

/// Errors of [`open`]; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file could not be read from disk.
    #[error("{file}: cannot read file: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither `dicom-object` nor the lenient fallbacks could parse the file.
    #[error("{file}: not a readable DICOM file: {reason}")]
    NotDicom { file: PathBuf, reason: String },
    /// The meta group (0002) is present but broken in a way the fallback cannot repair.
    #[error("{file}: broken file meta group: {reason}")]
    BadMetaGroup { file: PathBuf, reason: String },
    /// A FIFO, device, socket or directory (or a symlink to one): never read.
    #[error("{file}: not a regular file ({kind})")]
    NotRegularFile { file: PathBuf, kind: &'static str },
    /// Larger than [`max_file_bytes`].
    #[error("{file}: {size} bytes, larger than the {cap} byte cap")]
    TooLarge { file: PathBuf, size: u64, cap: u64 },
    /// The data set pre-walk refused the file (nesting too deep, a declared length past the end of
    /// the file, a misplaced delimiter); `tag` is the element at fault.
    #[error("{file}: malformed data set: {reason}")]
    Malformed {
        file: PathBuf,
        tag: Tag,
        reason: String,
    },
}

fn file_kind(md: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = md.file_type();
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if md.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Default for [`set_max_file_bytes`]: 2 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 2 << 30;

static MAX_FILE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FILE_BYTES);

/// Sets the largest file (bytes) [`open_with`] reads; larger ones are refused with
/// [`MetaError::TooLarge`] before anything is read. Process-wide.
pub fn set_max_file_bytes(bytes: u64) {
    MAX_FILE_BYTES.store(bytes, Ordering::Relaxed);
}

/// The current cap of [`set_max_file_bytes`].
pub fn max_file_bytes() -> u64 {
    MAX_FILE_BYTES.load(Ordering::Relaxed)
}

/// A file opened by [`open_checked`].
#[derive(Debug)]
pub struct Opened {
    pub obj: DicomFile,
    pub how: OpenedAs,
    /// Layout of the top-level PixelData as declared in the file (found by the pre-walk), `None`
    /// when the file has none or was deflated (no pre-walk).
    pub pixel_data: Option<PixelDataLayout>,
}

/// Opens a DICOM file leniently (see the module docs); returns the object and how it was opened.
///
/// Errors: [`MetaError::Io`] when the file cannot be read, [`MetaError::BadMetaGroup`] when group
/// 0002 is truncated or lacks TransferSyntaxUID (0002,0010), [`MetaError::NotRegularFile`],
/// [`MetaError::TooLarge`], [`MetaError::Malformed`] (pre-walk, see [`open_checked`]),
/// [`MetaError::NotDicom`] otherwise.
pub fn open_with(path: &Path, mode: ReadMode) -> Result<(DicomFile, OpenedAs), MetaError> {
    open_checked(path, mode).map(|o| (o.obj, o.how))
}

/// [`open_with`], also returning the declared PixelData layout.
///
/// Before `dicom-object` sees a byte: refuses anything but a regular file (FIFOs, devices,
/// sockets, symlinks to them: [`MetaError::NotRegularFile`]) and files above
/// [`max_file_bytes`] ([`MetaError::TooLarge`]); reads the first 132 bytes and gives up unless they
/// hold the "DICM" magic code or a plausible bare data set start; then walks the data set
/// iteratively ([`walk`](self)) and refuses sequences nested deeper than 32 and values whose
/// declared length runs past the end of the file ([`MetaError::Malformed`], naming the tag). In
/// [`ReadMode::HeaderOnly`] the walk stops at the top-level PixelData.
pub fn open_checked(path: &Path, mode: ReadMode) -> Result<Opened, MetaError> {
    let io = |source| MetaError::Io {
        file: path.to_owned(),
        source,
    };
    let md = std::fs::metadata(path).map_err(io)?;
    if !md.is_file() {
        return Err(MetaError::NotRegularFile {
            file: path.to_owned(),
            kind: file_kind(&md),
        });
    }
    if md.len() > max_file_bytes() {
        return Err(MetaError::TooLarge {
            file: path.to_owned(),
            size: md.len(),
            cap: max_file_bytes(),
        });
    }
    let mut f = File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(132);
    (&mut f).take(132).read_to_end(&mut head).map_err(io)?;
    let has_magic = (head.len() >= 132 && &head[128..132] == b"DICM") || head.starts_with(b"DICM");
    if !has_magic && !looks_like_bare_dataset(&head, md.len()) {
        return Err(MetaError::NotDicom {
            file: path.to_owned(),
            reason: "no DICM magic code and no group 0002/0008 element at the start".into(),
        });
    }
    let mut bytes = head;
    bytes.reserve(md.len().saturating_sub(132) as usize);
    f.read_to_end(&mut bytes).map_err(io)?;
    drop(f);
    let stop = mode == ReadMode::HeaderOnly;
    let malformed = |e: walk::WalkError| MetaError::Malformed {
        file: path.to_owned(),
        tag: e.tag,
        reason: e.to_string(),
    };

    // Magic code after a 128-byte preamble, or (rarely) at the very start.
    let meta_start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(132)
    } else if bytes.len() >= 4 && &bytes[0..4] == b"DICM" {
        Some(4)
    } else {
        None
    };
    let mut pixel_data = None;
    let mut first_error = String::from("no DICM magic code");
    if let Some(start) = meta_start {
        let meta = parse_meta_group(&bytes[start..]).map_err(|reason| MetaError::BadMetaGroup {
            file: path.to_owned(),
            reason,
        })?;
        let ts = meta
            .transfer_syntax
            .clone()
            .ok_or_else(|| MetaError::BadMetaGroup {
                file: path.to_owned(),
                reason: "no TransferSyntaxUID (0002,0010)".into(),
            })?;
        if let Some(syntax) = walk::Syntax::of(&ts) {
            pixel_data = walk::walk(&bytes[start + meta.len..], syntax, stop).map_err(malformed)?;
        }
        let preamble = if start == 132 {
            ReadPreamble::Always
        } else {
            ReadPreamble::Never
        };
        let o = OpenFileOptions::new().read_preamble(preamble);
        let o = match mode {
            ReadMode::Full => o,
            ReadMode::HeaderOnly => o.read_until(PIXEL_DATA),
        };
        match o.from_reader(Cursor::new(&bytes[..])) {
            Ok(obj) => {
                return Ok(Opened {
                    obj,
                    how: OpenedAs::Standard,
                    pixel_data,
                })
            }
            Err(e) => first_error = e.to_string(),
        }
        let rest = &bytes[start + meta.len..];
        let not_dicom = |e: String| MetaError::NotDicom {
            file: path.to_owned(),
            reason: format!("{first_error}; with rebuilt meta group ({ts}): {e}"),
        };
        let obj = match read_with_ts(rest, &ts, &meta, mode) {
            Ok(obj) => obj,
            // A transfer syntax unknown to dicom-rs (e.g. retired JPEG .53/.55): the data set of
            // every encapsulated transfer syntax is explicit VR little endian (PS3.5 A.4), so read
            // it as such and keep the real UID in the meta table; decoding then names the UID.
            Err(e) if TransferSyntaxRegistry.get(&ts).is_none() => {
                let mut obj = read_with_ts(rest, uids::EXPLICIT_VR_LITTLE_ENDIAN, &meta, mode)
                    .map_err(|e2| not_dicom(format!("{e}; as explicit VR little endian: {e2}")))?;
                obj.update_meta(|m| m.transfer_syntax = ts.clone());
                obj
            }
            Err(e) => return Err(not_dicom(e)),
        };
        tracing::debug!(file = %path.display(), %first_error, "file meta group rebuilt");
        return Ok(Opened {
            obj,
            how: OpenedAs::RebuiltMeta,
            pixel_data,
        });
    }

    // No meta group: a bare data set. Only try when the first element looks like one (a group
    // 0002/0008 tag and a length inside the file): garbage would make dicom-rs allocate values of
    // arbitrary length.
    if !looks_like_bare_dataset(&bytes, bytes.len() as u64) {
        return Err(MetaError::NotDicom {
            file: path.to_owned(),
            reason: format!(
                "{first_error}; no DICM magic code and no group 0002/0008 element at the start"
            ),
        });
    }
    // Walk as the first element's encoding suggests (explicit when it carries VR letters).
    let syntax = if bytes
        .get(4..6)
        .is_some_and(|v| v.iter().all(u8::is_ascii_uppercase))
    {
        walk::Syntax::ExplicitLe
    } else {
        walk::Syntax::ImplicitLe
    };
    pixel_data = walk::walk(&bytes, syntax, stop).map_err(malformed)?;
    let none = MetaFields::default();
    let mut errors = vec![first_error];
    for ts in [
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
    ] {
        match read_with_ts(&bytes, ts, &none, mode) {
            Ok(obj) if looks_valid(&obj) => {
                tracing::debug!(file = %path.display(), ts, "read as a bare data set without meta group");
                return Ok(Opened {
                    obj,
                    how: OpenedAs::NoMeta(ts),
                    pixel_data,
                });
            }
            Ok(_) => errors.push(format!("as {ts}: no recognisable attributes")),
            Err(e) => errors.push(format!("as {ts}: {e}")),
        }
    }
    Err(MetaError::NotDicom {
        file: path.to_owned(),
        reason: errors.join("; "),
    })
}

/// Opens a whole DICOM file leniently ([`open_with`] in [`ReadMode::Full`]).
pub fn open(path: &Path) -> Result<DicomFile, MetaError> {
    open_with(path, ReadMode::Full).map(|(o, _)| o)
}

/// Opens the header of a DICOM file leniently, stopping before PixelData ([`ReadMode::HeaderOnly`]).
pub fn open_header(path: &Path) -> Result<DicomFile, MetaError> {
    open_with(path, ReadMode::HeaderOnly).map(|(o, _)| o)
}

/// First element of a bare data set: group 0002 or 0008, and an implicit VR length or explicit VR
/// letters that fit the file.
fn looks_like_bare_dataset(b: &[u8], file_len: u64) -> bool {
    let Some(h) = b.get(..8) else { return false };
    let group = u16::from_le_bytes([h[0], h[1]]);
    let implicit_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    (group == 0x0008 || group == 0x0002)
        && (implicit_len <= file_len || h[4..6].iter().all(u8::is_ascii_uppercase))
}

/// A bare data set read with the wrong transfer syntax usually yields garbage tags; require an
/// SOP Class UID or a Modality or Rows attribute with a sensible value.
fn looks_valid(obj: &DicomFile) -> bool {
    use dicom_dictionary_std::tags;
    let text = |t| {
        obj.element_opt(t)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.to_string())
    };
    let sop_ok = text(tags::SOP_CLASS_UID).is_some_and(|s| s.starts_with("1.2."));
    let mod_ok = text(tags::MODALITY).is_some_and(|s| s.trim().len() == 2);
    sop_ok || mod_ok
}

/// Fields of group 0002 that the rebuilt meta needs.
#[derive(Debug, Default)]
struct MetaFields {
    /// Bytes taken by group 0002 (from the first meta element to the first data set element).
    len: usize,
    transfer_syntax: Option<String>,
    sop_class: Option<String>,
    sop_instance: Option<String>,
}

/// Parses group 0002 as explicit VR little endian (PS3.10 7.1, PS3.5 7.1.2) starting right after
/// the magic code; stops at the first element of another group.
fn parse_meta_group(b: &[u8]) -> Result<MetaFields, String> {
    let mut out = MetaFields::default();
    let mut p = 0usize;
    let u16_at =
        |p: usize| -> Option<u16> { b.get(p..p + 2).map(|s| u16::from_le_bytes([s[0], s[1]])) };
    let u32_at = |p: usize| -> Option<u32> {
        b.get(p..p + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    loop {
        let Some(group) = u16_at(p) else { break };
        if group != 0x0002 {
            break;
        }
        let elem = u16_at(p + 2).ok_or("truncated element tag")?;
        let vr = b.get(p + 4..p + 6).ok_or("truncated VR")?;
        let (len, header) = if vr.iter().all(u8::is_ascii_uppercase) {
            if walk::is_long_vr(vr) {
                (u32_at(p + 8).ok_or("truncated length")? as usize, 12)
            } else {
                (u16_at(p + 6).ok_or("truncated length")? as usize, 8)
            }
        } else {
            // Some writers use implicit VR for the meta group despite PS3.10.
            (u32_at(p + 4).ok_or("truncated length")? as usize, 8)
        };
        if len == 0xFFFF_FFFF {
            return Err(format!("undefined length in (0002,{elem:04X})"));
        }
        let value = b.get(p + header..p + header + len).ok_or_else(|| {
            format!("(0002,{elem:04X}) value of {len} bytes runs past the end of file")
        })?;
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .trim()
                .to_string()
        };
        match elem {
            0x0002 => out.sop_class = Some(text()),
            0x0003 => out.sop_instance = Some(text()),
            0x0010 => out.transfer_syntax = Some(text()),
            _ => {}
        }
        p += header + len;
    }
    if p == 0 {
        return Err("no group 0002 element after the DICM magic code".into());
    }
    out.len = p;
    Ok(out)
}

/// Reads `data` (a data set without meta group) with transfer syntax `ts` by prefixing a freshly
/// built meta group and letting `dicom-object` do the rest (deflate and all).
fn read_with_ts(
    data: &[u8],
    ts: &str,
    meta: &MetaFields,
    mode: ReadMode,
) -> Result<DicomFile, String> {
    let table = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid(meta.sop_class.clone().unwrap_or_default())
        .media_storage_sop_instance_uid(meta.sop_instance.clone().unwrap_or_default())
        .implementation_class_uid("2.25.138410928390000017711371128346573481")
        .build()
        .map_err(|e| e.to_string())?;
    let mut head = b"DICM".to_vec();
    table.write(&mut head).map_err(|e| e.to_string())?;
    let reader = Cursor::new(head).chain(data);
    let o = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    let o = match mode {
        ReadMode::Full => o,
        ReadMode::HeaderOnly => o.read_until(PIXEL_DATA),
    };
    o.from_reader(reader).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meta_group_with_long_ae_title() {
        // (0002,0010) UI "1.2.840.10008.1.2.1\0" then (0002,0016) AE of 18 bytes, then (0008,0016).
        let mut b = Vec::new();
        b.extend_from_slice(&[0x02, 0, 0x10, 0, b'U', b'I', 20, 0]);
        b.extend_from_slice(b"1.2.840.10008.1.2.1\0");
        b.extend_from_slice(&[0x02, 0, 0x16, 0, b'A', b'E', 18, 0]);
        b.extend_from_slice(b"ABCDEFGHIJKLMNOPQR");
        b.extend_from_slice(&[0x08, 0, 0x16, 0, b'U', b'I', 2, 0, b'1', 0]);
        let m = parse_meta_group(&b).unwrap();
        assert_eq!(m.transfer_syntax.as_deref(), Some("1.2.840.10008.1.2.1"));
        assert_eq!(m.len, 8 + 20 + 8 + 18);
        assert!(parse_meta_group(&b[..30]).is_err());
    }
}
