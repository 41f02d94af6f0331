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

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

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
}

/// Opens a DICOM file leniently (see the module docs); returns the object and how it was opened.
///
/// Errors: [`MetaError::Io`] when the file cannot be read, [`MetaError::BadMetaGroup`] when group
/// 0002 is truncated or lacks TransferSyntaxUID (0002,0010), [`MetaError::NotDicom`] otherwise.
pub fn open_with(path: &Path, mode: ReadMode) -> Result<(DicomFile, OpenedAs), MetaError> {
    let options = || {
        let o = OpenFileOptions::new();
        match mode {
            ReadMode::Full => o,
            ReadMode::HeaderOnly => o.read_until(PIXEL_DATA),
        }
    };
    let first_error = match options().open_file(path) {
        Ok(obj) => return Ok((obj, OpenedAs::Standard)),
        Err(e) => e.to_string(),
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| MetaError::Io {
            file: path.to_owned(),
            source,
        })?;

    // Magic code after a 128-byte preamble, or (rarely) at the very start.
    let meta_start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(132)
    } else if bytes.len() >= 4 && &bytes[0..4] == b"DICM" {
        Some(4)
    } else {
        None
    };
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
        return Ok((obj, OpenedAs::RebuiltMeta));
    }

    // No meta group: a bare data set. Only try when the first element looks like one (a group
    // 0002/0008 tag and a length inside the file): garbage would make dicom-rs allocate values of
    // arbitrary length.
    if !looks_like_bare_dataset(&bytes) {
        return Err(MetaError::NotDicom {
            file: path.to_owned(),
            reason: format!(
                "{first_error}; no DICM magic code and no group 0002/0008 element at the start"
            ),
        });
    }
    let none = MetaFields::default();
    let mut errors = vec![first_error];
    for ts in [
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
    ] {
        match read_with_ts(&bytes, ts, &none, mode) {
            Ok(obj) if looks_valid(&obj) => {
                tracing::debug!(file = %path.display(), ts, "read as a bare data set without meta group");
                return Ok((obj, OpenedAs::NoMeta(ts)));
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
fn looks_like_bare_dataset(b: &[u8]) -> bool {
    let Some(h) = b.get(..8) else { return false };
    let group = u16::from_le_bytes([h[0], h[1]]);
    let implicit_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    (group == 0x0008 || group == 0x0002)
        && (implicit_len <= b.len() || h[4..6].iter().all(u8::is_ascii_uppercase))
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
            if matches!(
                vr,
                b"OB"
                    | b"OW"
                    | b"OF"
                    | b"SQ"
                    | b"UT"
                    | b"UN"
                    | b"OD"
                    | b"OL"
                    | b"OV"
                    | b"UC"
                    | b"UR"
            ) {
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
