//! PixelData (7FE0,0010) to the raw stored words of each frame (src/dicom/pixels.rs turns them
//! into HU): native data (little or big endian), encapsulated fragments assigned to frames
//! (PS3.5 A.4), our RLE Lossless decoder ([`super::rle`], PS3.5 Annex G) or the `dicom-pixeldata`
//! codecs behind a panic boundary; and the checks of the PixelData element against the header.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::uids;
use dicom_pixeldata::PixelDecoder;

use super::super::meta::{DicomFile, PIXEL_DATA};
use super::{pixel_format, rle, PixelError, PixelFormat};

/// Whether a transfer syntax UID stores pixel data encapsulated (PS3.5 A.4): every standard one
/// but implicit/explicit VR little endian, explicit big endian and deflate.
pub fn is_encapsulated_ts(ts: &str) -> bool {
    !matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
    )
}

/// Checks the PixelData element against the header before any frame is allocated: native data
/// must hold `rows * cols * frames * bits_allocated / 8` bytes, encapsulated data at least one
/// fragment per frame, and the encoding must match the transfer syntax (PS3.5 A.4). Unknown
/// transfer syntax UIDs (not `1.2.840.10008.1.2...` and unknown to dicom-rs) are refused.
pub(super) fn check_pixel_data_size(
    obj: &DicomFile,
    file: &Path,
    rows: usize,
    cols: usize,
    frames: u32,
    bits_allocated: u16,
    ts: &str,
) -> Result<(), PixelError> {
    use dicom_encoding::TransferSyntaxIndex;
    let known = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .is_some();
    if !known && !ts.starts_with("1.2.840.10008.1.2") {
        return Err(PixelError::UnknownTransferSyntax {
            file: file.to_owned(),
            uid: ts.escape_debug().to_string(),
        });
    }
    let Some(elem) = obj.element_opt(PIXEL_DATA).ok().flatten() else {
        return Ok(()); // NoPixelData is reported by the decoder
    };
    let encapsulated = is_encapsulated_ts(ts);
    let mismatch = |found, expected| PixelError::EncapsulationMismatch {
        file: file.to_owned(),
        transfer_syntax: ts.to_string(),
        found,
        expected,
    };
    match elem.value() {
        Value::Primitive(p) => {
            if encapsulated {
                return Err(mismatch(
                    "native (defined length)",
                    "encapsulated fragments",
                ));
            }
            let expected = rows as u64 * cols as u64 * frames as u64 * (bits_allocated as u64 / 8);
            let got = p.calculate_byte_len() as u64;
            if got < expected {
                return Err(PixelError::PixelDataLength {
                    file: file.to_owned(),
                    rows,
                    cols,
                    frames,
                    bits_allocated,
                    got,
                    expected,
                });
            }
        }
        Value::PixelSequence(seq) => {
            if !encapsulated {
                return Err(mismatch(
                    "encapsulated fragments",
                    "native (defined length)",
                ));
            }
            if seq.fragments().len() < frames as usize {
                return Err(PixelError::Fragments {
                    file: file.to_owned(),
                    fragments: seq.fragments().len(),
                    frames,
                });
            }
        }
        Value::Sequence(_) => {}
    }
    Ok(())
}

/// Signedness of the first component in a raw JPEG 2000 codestream: SOC FF4F, SIZ FF51, Ssiz at
/// byte 42 (ISO/IEC 15444-1 A.5.1; bit 7 set = signed).
pub(super) fn j2k_signed(cs: &[u8]) -> Option<bool> {
    (cs.get(..4)? == [0xFF, 0x4F, 0xFF, 0x51]).then_some(())?;
    cs.get(42).map(|s| s & 0x80 != 0)
}

/// The (7FE0,0010) PixelData element of `obj`. Errors: [`PixelError::NoPixelData`].
fn pixel_data<'a>(
    obj: &'a DicomFile,
    file: &Path,
) -> Result<&'a dicom_object::mem::InMemElement, PixelError> {
    obj.element_opt(PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| PixelError::NoPixelData {
            file: file.to_owned(),
        })
}

/// The encapsulated frames of `obj` (one byte stream per frame, fragments joined per PS3.5 A.4 as
/// in [`super::decode_hu`]); `None` for native pixel data.
pub fn encapsulated_frames(
    obj: &DicomFile,
    file: &Path,
) -> Result<Option<Vec<Vec<u8>>>, PixelError> {
    let fmt = pixel_format(obj, file)?;
    let elem = pixel_data(obj, file)?;
    match elem.value() {
        Value::PixelSequence(seq) => frame_fragments(
            seq.offset_table(),
            seq.fragments(),
            fmt.frames,
            &fmt.transfer_syntax,
        )
        .map(Some)
        .ok_or(PixelError::Fragments {
            file: file.to_owned(),
            fragments: seq.fragments().len(),
            frames: fmt.frames,
        }),
        _ => Ok(None),
    }
}

/// Whether a transfer syntax UID is lossy (JPEG baseline/extended/progressive, JPEG-LS
/// near-lossless, JPEG 2000 irreversible; PS3.5 Section 8, Table A-1).
pub fn is_lossy(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.53"
            | "1.2.840.10008.1.2.4.55"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
    )
}

/// Stored values of each frame as raw words (`Rows * Columns` each, before masking).
pub(super) fn stored_words(
    obj: &DicomFile,
    fmt: &PixelFormat,
    file: &Path,
) -> Result<Vec<Vec<u32>>, PixelError> {
    let elem = pixel_data(obj, file)?;
    let n = fmt.rows * fmt.cols;
    let bpp = fmt.bits_allocated as usize / 8;
    let frame_bytes = n * bpp;
    match elem.value() {
        Value::Primitive(p) => {
            let big_endian = fmt.transfer_syntax == "1.2.840.10008.1.2.2";
            // dicom-rs holds OW/US values as native u16 (byte-swapped while reading); bytes kept as
            // U8 are still in the file's byte order.
            let swap = big_endian && matches!(p, dicom_core::PrimitiveValue::U8(_));
            let bytes = p.to_bytes();
            (0..fmt.frames)
                .map(|f| {
                    let start = f as usize * frame_bytes;
                    let b = bytes.get(start..start + frame_bytes).ok_or(
                        PixelError::ShortPixelData {
                            file: file.to_owned(),
                            frame: f,
                            got: bytes.len(),
                            expected: frame_bytes * fmt.frames as usize,
                        },
                    )?;
                    Ok(bytes_to_words(b, bpp, swap))
                })
                .collect()
        }
        Value::PixelSequence(seq) => {
            let frames = frame_fragments(
                seq.offset_table(),
                seq.fragments(),
                fmt.frames,
                &fmt.transfer_syntax,
            )
            .ok_or(PixelError::Fragments {
                file: file.to_owned(),
                fragments: seq.fragments().len(),
                frames: fmt.frames,
            })?;
            if fmt.transfer_syntax == uids::RLE_LOSSLESS {
                return frames
                    .iter()
                    .enumerate()
                    .map(|(f, data)| {
                        rle::decode_frame(data, n, bpp).map_err(|reason| PixelError::Decode {
                            file: file.to_owned(),
                            transfer_syntax: fmt.transfer_syntax.clone(),
                            frame: f as u32,
                            reason,
                        })
                    })
                    .collect();
            }
            codec_words(obj, fmt, file, frames, seq.fragments().len())
        }
        Value::Sequence(_) => Err(PixelError::NoPixelData {
            file: file.to_owned(),
        }),
    }
}

/// Decodes with `dicom-pixeldata` (behind a panic boundary). When the file's fragments do not map
/// one to one onto frames (e.g. multi-frame JPEG without Basic Offset Table, which dicom-rs 0.10.1
/// refuses with "Could not decode pixel data"), decodes a copy whose fragments are one per frame.
fn codec_words(
    obj: &DicomFile,
    fmt: &PixelFormat,
    file: &Path,
    frames: Vec<Vec<u8>>,
    fragments: usize,
) -> Result<Vec<Vec<u32>>, PixelError> {
    let rebuilt;
    let src = if fragments == fmt.frames as usize || fmt.frames == 1 {
        obj
    } else {
        let mut copy = obj.clone();
        copy.put(DataElement::new(
            PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), frames)),
        ));
        rebuilt = copy;
        &rebuilt
    };
    let bpp = fmt.bits_allocated as usize / 8;
    let frame_bytes = fmt.rows * fmt.cols * bpp;
    (0..fmt.frames)
        .map(|f| {
            let data = catch_unwind(AssertUnwindSafe(|| {
                src.decode_pixel_data_frame(f).map(|d| d.into_data())
            }))
            .map_err(|panic| PixelError::DecoderPanic {
                file: file.to_owned(),
                transfer_syntax: fmt.transfer_syntax.clone(),
                message: panic_message(panic.as_ref()),
            })?
            .map_err(|e| PixelError::Decode {
                file: file.to_owned(),
                transfer_syntax: fmt.transfer_syntax.clone(),
                frame: f,
                reason: error_chain(&e),
            })?;
            let b = data.get(..frame_bytes).ok_or(PixelError::ShortPixelData {
                file: file.to_owned(),
                frame: f,
                got: data.len(),
                expected: frame_bytes,
            })?;
            Ok(bytes_to_words(b, bpp, false))
        })
        .collect()
}

/// Assigns encapsulated fragments to frames (PS3.5 A.4): one fragment per frame when the counts
/// match, all fragments for a single frame, the Basic Offset Table when present, else (no table,
/// JPEG family) a new frame at each fragment that starts with the SOI marker FFD8 (or the JPEG 2000
/// SOC marker FF4F).
fn frame_fragments(
    bot: &[u32],
    fragments: &[Vec<u8>],
    frames: u32,
    ts: &str,
) -> Option<Vec<Vec<u8>>> {
    let nf = frames as usize;
    if fragments.len() == nf {
        return Some(fragments.to_vec());
    }
    if nf == 1 {
        return Some(vec![fragments.concat()]);
    }
    if bot.len() == nf {
        let mut out = vec![Vec::new(); nf];
        let mut offset = 0u64;
        for frag in fragments {
            let f = bot.iter().rposition(|&o| o as u64 <= offset)?;
            out[f].extend_from_slice(frag);
            offset += frag.len() as u64 + 8;
        }
        return out.iter().all(|f| !f.is_empty()).then_some(out);
    }
    if ts == uids::RLE_LOSSLESS {
        return None;
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for frag in fragments {
        let starts = frag.starts_with(&[0xFF, 0xD8]) || frag.starts_with(&[0xFF, 0x4F]);
        match out.last_mut() {
            Some(last) if !starts => last.extend_from_slice(frag),
            _ => out.push(frag.clone()),
        }
    }
    (out.len() == nf).then_some(out)
}

/// Little-endian (or swapped) bytes to words of `bpp` bytes.
fn bytes_to_words(b: &[u8], bpp: usize, swap: bool) -> Vec<u32> {
    match (bpp, swap) {
        (1, _) => b.iter().map(|&v| v as u32).collect(),
        (2, false) => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
            .collect(),
        (2, true) => b
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .collect(),
        (_, false) => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        (_, true) => b
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payload_extracted() {
        let p = catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 7");
        let p = catch_unwind(|| std::panic::panic_any("static")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static");
    }

    #[test]
    fn splits_fragments_at_soi() {
        let f = vec![vec![0xFF, 0xD8, 1], vec![2], vec![0xFF, 0xD8, 3]];
        let out = frame_fragments(&[], &f, 2, "1.2.840.10008.1.2.4.51").unwrap();
        assert_eq!(out, vec![vec![0xFF, 0xD8, 1, 2], vec![0xFF, 0xD8, 3]]);
        assert!(frame_fragments(&[], &f, 3, uids::RLE_LOSSLESS).is_some());
        assert!(frame_fragments(&[], &f[..2], 3, "1.2.840.10008.1.2.4.51").is_none());
        // Basic Offset Table: frame 1 starts at byte 8 + 3 + 8 + 1 = 20.
        let out = frame_fragments(&[0, 20], &f, 2, uids::RLE_LOSSLESS).unwrap();
        assert_eq!(out[1], vec![0xFF, 0xD8, 3]);
    }
}
