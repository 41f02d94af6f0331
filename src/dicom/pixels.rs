//! Pixel decoding to Hounsfield units.
//!
//! Stored values come from the native PixelData (little or big endian, deflate handled while
//! reading), from our own RLE Lossless decoder ([`super::rle`], PS3.5 Annex G) or from the
//! `dicom-pixeldata` codecs (JPEG, JPEG-LS, JPEG 2000), each call behind a panic boundary.
//! HU per frame (PS3.3 C.7.6.3.1, C.11.1): stored value masked to BitsStored, sign-extended when
//! PixelRepresentation is 1, PixelPaddingValue/PixelPaddingRangeLimit (C.7.5.1.1.2, compared on the
//! stored value) set to [`AIR_HU`], else `value * RescaleSlope + RescaleIntercept`, the rescale taken
//! per frame for Enhanced CT (PixelValueTransformationSequence in the per-frame or shared functional
//! groups, C.7.6.16.2.9).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_pixeldata::PixelDecoder;
use ndarray::{Array2, ArrayViewMut2};

#[path = "read/rle.rs"]
mod rle;

#[path = "read/attr.rs"]
mod attr;
pub(crate) use attr::{floats_of, int_of, items, str_of};

use super::meta::{DicomFile, PIXEL_DATA};
use super::series::AIR_HU;

/// Errors of pixel decoding; each names the file and the attribute or transfer syntax at fault.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PixelError {
    /// A required attribute is absent or unreadable.
    #[error("{file}: missing or invalid {attribute}")]
    MissingAttribute {
        file: PathBuf,
        attribute: &'static str,
    },
    /// PhotometricInterpretation other than MONOCHROME1/2 or SamplesPerPixel other than 1.
    #[error("{file}: not a grey-scale image (PhotometricInterpretation {photometric}, SamplesPerPixel {samples})")]
    NotMonochrome {
        file: PathBuf,
        photometric: String,
        samples: u16,
    },
    /// BitsAllocated/BitsStored combination we do not read.
    #[error("{file}: unsupported BitsAllocated {bits_allocated} / BitsStored {bits_stored}")]
    UnsupportedBits {
        file: PathBuf,
        bits_allocated: u16,
        bits_stored: u16,
    },
    /// The object has no (7FE0,0010) PixelData.
    #[error("{file}: no PixelData (7FE0,0010)")]
    NoPixelData { file: PathBuf },
    /// Fewer pixel bytes than Rows x Columns x frames needs.
    #[error("{file}: frame {frame}: PixelData holds {got} bytes, {expected} expected")]
    ShortPixelData {
        file: PathBuf,
        frame: u32,
        got: usize,
        expected: usize,
    },
    /// A frame asked for that the object does not have (NumberOfFrames), or a target of another
    /// shape than Rows x Columns.
    #[error("{file}: frame {frame} of shape {shape:?} asked for; the object has {frames} frame(s) of Rows x Columns {rows_cols:?}")]
    NoSuchFrame {
        file: PathBuf,
        frame: usize,
        shape: (usize, usize),
        frames: u32,
        rows_cols: (usize, usize),
    },
    /// The codec failed or the transfer syntax has no decoder.
    #[error("{file}: cannot decode frame {frame} of transfer syntax {transfer_syntax}: {reason}")]
    Decode {
        file: PathBuf,
        transfer_syntax: String,
        frame: u32,
        reason: String,
    },
    /// The codec panicked (caught at our panic boundary).
    #[error("{file}: decoder for transfer syntax {transfer_syntax} panicked: {message}")]
    DecoderPanic {
        file: PathBuf,
        transfer_syntax: String,
        message: String,
    },
    /// More than 1% of the voxels lie outside [-4096, 32767] HU, or any voxel is not a finite
    /// number: the codec produced garbage (e.g. a corrupt JPEG lossless stream that every decoder,
    /// dcmtk included, "decodes"), or the rescale is absurd (both are named: a RescaleSlope of 1e30
    /// is the cause, not the pixels; 1e300 makes infinite HU even where only a few voxels are not
    /// padding).
    #[error("{file}: frame {frame}: {fraction_pct:.1}% of the voxels outside [-4096, 32767] HU with RescaleSlope {slope} and RescaleIntercept {intercept}: corrupt pixel data or rescale")]
    ImplausibleHu {
        file: PathBuf,
        frame: u32,
        fraction_pct: f64,
        /// RescaleSlope (0028,1053) used for the frame.
        slope: f64,
        /// RescaleIntercept (0028,1052) used for the frame.
        intercept: f64,
    },
    /// An attribute holds a value outside what the standard (or CT) allows.
    #[error("{file}: {attribute} {value:?}: {reason}")]
    BadAttribute {
        file: PathBuf,
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
    /// RescaleSlope/RescaleIntercept unparsable, NaN, infinite, or a slope of 0 (PS3.3 C.11.1.1.2).
    #[error("{file}: {attribute} {value:?} is not a usable rescale (finite, slope non-zero)")]
    BadRescale {
        file: PathBuf,
        attribute: &'static str,
        value: String,
    },
    /// The native PixelData holds fewer bytes than Rows x Columns x NumberOfFrames x BitsAllocated/8.
    #[error("{file}: PixelData (7FE0,0010) holds {got} bytes, Rows {rows} x Columns {cols} x NumberOfFrames {frames} x BitsAllocated {bits_allocated}/8 = {expected}")]
    PixelDataLength {
        file: PathBuf,
        rows: usize,
        cols: usize,
        frames: u32,
        bits_allocated: u16,
        got: u64,
        expected: u64,
    },
    /// A TransferSyntaxUID (0002,0010) that is not a DICOM transfer syntax.
    #[error("{file}: unknown TransferSyntaxUID (0002,0010) {uid:?}")]
    UnknownTransferSyntax { file: PathBuf, uid: String },
    /// Encapsulated pixel data under a native transfer syntax, or native under an encapsulated one
    /// (PS3.5 A.4).
    #[error("{file}: PixelData (7FE0,0010) is {found} but TransferSyntaxUID (0002,0010) {transfer_syntax} requires {expected}")]
    EncapsulationMismatch {
        file: PathBuf,
        transfer_syntax: String,
        found: &'static str,
        expected: &'static str,
    },
    /// Encapsulated fragments could not be assigned to frames (PS3.5 A.4).
    #[error("{file}: cannot split {fragments} fragments into {frames} frames")]
    Fragments {
        file: PathBuf,
        fragments: usize,
        frames: u32,
    },
}

/// Image pixel attributes needed for HU (PS3.3 C.7.6.3).
#[derive(Clone, Debug)]
pub struct PixelFormat {
    pub rows: usize,
    pub cols: usize,
    pub frames: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    /// PixelRepresentation 1: two's complement stored values.
    pub signed: bool,
    /// PixelPaddingValue and PixelPaddingRangeLimit as stored values (sign-extended like pixels);
    /// `(lo, hi)` inclusive, `lo == hi` without a range limit.
    pub padding: Option<(i64, i64)>,
    /// The same, compared with the whole word instead, when the padding value cannot be a stored
    /// value of BitsStored bits (e.g. 0xF000 with BitsStored 12: the padding lives in the high
    /// bits, PS3.3 C.7.5.1.1.2); masking it would make it equal to real data.
    pub padding_raw: Option<(u32, u32)>,
    /// (slope, intercept) per frame (length `frames`).
    pub rescale: Vec<(f64, f64)>,
    /// Whether RescaleSlope/RescaleIntercept were found (top level or functional groups); when not,
    /// `rescale` is the identity.
    pub rescale_found: bool,
    pub transfer_syntax: String,
}

/// Reads the image pixel attributes of `obj` (read from `file`, named in errors).
pub fn pixel_format(obj: &DicomFile, file: &Path) -> Result<PixelFormat, PixelError> {
    let missing = |attribute| PixelError::MissingAttribute {
        file: file.to_owned(),
        attribute,
    };
    let int =
        |tag, name| -> Result<i64, PixelError> { int_of(obj, tag).ok_or_else(|| missing(name)) };
    let samples = int_of(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16;
    let photometric = str_of(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if samples != 1 || !(photometric == "MONOCHROME2" || photometric == "MONOCHROME1") {
        return Err(PixelError::NotMonochrome {
            file: file.to_owned(),
            photometric,
            samples,
        });
    }
    let rows = int(tags::ROWS, "Rows (0028,0010)")?;
    let cols = int(tags::COLUMNS, "Columns (0028,0011)")?;
    let bits_allocated = int(tags::BITS_ALLOCATED, "BitsAllocated (0028,0100)")? as u16;
    let bits_stored = int_of(obj, tags::BITS_STORED).unwrap_or(bits_allocated as i64) as u16;
    if rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535 {
        return Err(missing("Rows/Columns (0028,0010/0011)"));
    }
    if !matches!(bits_allocated, 8 | 16 | 32) || bits_stored == 0 || bits_stored > bits_allocated {
        return Err(PixelError::UnsupportedBits {
            file: file.to_owned(),
            bits_allocated,
            bits_stored,
        });
    }
    let bad = |attribute, value: String, reason| PixelError::BadAttribute {
        file: file.to_owned(),
        attribute,
        value,
        reason,
    };
    let signed = match int_of(obj, tags::PIXEL_REPRESENTATION) {
        None | Some(0) => false,
        Some(1) => true,
        Some(v) => {
            return Err(bad(
                "PixelRepresentation (0028,0103)",
                v.to_string(),
                "must be 0 (unsigned) or 1 (two's complement)",
            ))
        }
    };
    if let Some(hb) = int_of(obj, tags::HIGH_BIT) {
        if hb != bits_stored as i64 - 1 {
            return Err(bad(
                "HighBit (0028,0102)",
                hb.to_string(),
                "must be BitsStored - 1 (PS3.5 8.1.1)",
            ));
        }
    }
    let frames = number_of_frames(obj, file)?;
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    check_pixel_data_size(
        obj,
        file,
        rows as usize,
        cols as usize,
        frames,
        bits_allocated,
        &transfer_syntax,
    )?;
    let pad_value = int_of(obj, tags::PIXEL_PADDING_VALUE);
    let pad_limit = int_of(obj, tags::PIXEL_PADDING_RANGE_LIMIT);
    // A stored value of BitsStored bits: its bit pattern, or for signed data a value (or its
    // BitsAllocated-bit two's-complement word, e.g. 63536 = -2000) inside the signed range.
    let storable = |v: i64| {
        let top = 1i64 << bits_stored.min(62);
        if (0..top).contains(&v) {
            return true;
        }
        let word = 1i64 << bits_allocated.min(62);
        let sx = if (top..word).contains(&v) && v >= word / 2 {
            v - word
        } else {
            v
        };
        signed && (-(top / 2)..top / 2).contains(&sx)
    };
    let (mut padding, mut padding_raw) = (None, None);
    if let Some(v) = pad_value {
        let l = pad_limit.unwrap_or(v);
        if storable(v) && storable(l) {
            let (a, b) = (
                to_stored(v, bits_stored, signed),
                to_stored(l, bits_stored, signed),
            );
            padding = Some((a.min(b), a.max(b)));
        } else if let (Ok(a), Ok(b)) = (u32::try_from(v), u32::try_from(l)) {
            padding_raw = Some((a.min(b), a.max(b)));
        }
    }
    let (rescale, rescale_found) = frame_rescales(obj, frames as usize, file)?;
    Ok(PixelFormat {
        rows: rows as usize,
        cols: cols as usize,
        frames,
        bits_allocated,
        bits_stored,
        signed,
        padding,
        padding_raw,
        rescale,
        rescale_found,
        transfer_syntax,
    })
}

/// Largest NumberOfFrames (0028,0008) accepted: a whole-body Enhanced CT holds a few thousand.
pub const MAX_FRAMES: i64 = 16384;

/// NumberOfFrames (0028,0008): 1 when absent; else an integer in `1..=`[`MAX_FRAMES`].
///
/// Errors: [`PixelError::BadAttribute`] naming NumberOfFrames when unparsable, 0, negative or
/// above the bound; checked before anything per frame is allocated.
pub fn number_of_frames(obj: &DicomFile, file: &Path) -> Result<u32, PixelError> {
    let Some(e) = obj.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten() else {
        return Ok(1);
    };
    let raw = || {
        e.to_str()
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .unwrap_or_default()
    };
    let bad = |reason| PixelError::BadAttribute {
        file: file.to_owned(),
        attribute: "NumberOfFrames (0028,0008)",
        value: raw(),
        reason,
    };
    match int_of(obj, tags::NUMBER_OF_FRAMES) {
        None => Err(bad("not an integer")),
        Some(n) if n < 1 => Err(bad("must be at least 1")),
        Some(n) if n > MAX_FRAMES => Err(bad("more frames than any CT object holds (16384)")),
        Some(n) => Ok(n as u32),
    }
}

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
fn check_pixel_data_size(
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

/// Decodes every frame of `obj` (read from `file`) to HU: one `[j, i]` array (Rows x Columns) per
/// frame, in frame order.
///
/// Errors: [`PixelError`] naming the file and the attribute or transfer syntax. Lossy transfer
/// syntaxes decode (callers see the UID in `obj.meta()`); nothing here panics.
pub fn decode_hu(obj: &DicomFile, file: &Path) -> Result<Vec<Array2<f32>>, PixelError> {
    let fmt = pixel_format(obj, file)?;
    let mut frames: Vec<Array2<f32>> = (0..fmt.frames)
        .map(|_| Array2::from_elem((fmt.rows, fmt.cols), AIR_HU))
        .collect();
    let mut targets: Vec<(usize, ArrayViewMut2<f32>)> = frames
        .iter_mut()
        .enumerate()
        .map(|(f, a)| (f, a.view_mut()))
        .collect();
    decode_hu_into(obj, file, &mut targets)?;
    drop(targets);
    Ok(frames)
}

/// What [`decode_hu_into`] found besides the HU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// RescaleSlope/RescaleIntercept were present (else the stored values were taken as HU).
    pub rescale_found: bool,
}

/// Decodes the frames of `obj` (read from `file`) named in `targets` (`(frame index, [j, i]
/// view of Rows x Columns)`) to HU straight into the views, e.g. the planes of a volume. Native
/// 16-bit pixel data goes from the stored words to HU in one pass, without intermediate copies.
///
/// Errors: as [`decode_hu`]; [`PixelError::NoSuchFrame`] when a target names a frame the object
/// does not have or its view is not Rows x Columns. A view may be partly written when an error
/// is returned.
pub fn decode_hu_into(
    obj: &DicomFile,
    file: &Path,
    targets: &mut [(usize, ArrayViewMut2<f32>)],
) -> Result<Decoded, PixelError> {
    let mut fmt = pixel_format(obj, file)?;
    for (frame, view) in targets.iter() {
        if *frame >= fmt.frames as usize || view.dim() != (fmt.rows, fmt.cols) {
            return Err(PixelError::NoSuchFrame {
                file: file.to_owned(),
                frame: *frame,
                shape: view.dim(),
                frames: fmt.frames,
                rows_cols: (fmt.rows, fmt.cols),
            });
        }
    }
    if !fmt.signed
        && matches!(
            fmt.transfer_syntax.as_str(),
            "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91"
        )
    {
        // A signed JPEG 2000 codestream (SIZ Ssiz bit 7) with PixelRepresentation 0: the encoder
        // wrote two's-complement samples; follow the codestream (as pydicom's J2K corrections do).
        let first = encapsulated_frames(obj, file)?.and_then(|f| f.into_iter().next());
        if first.as_deref().and_then(j2k_signed) == Some(true) {
            tracing::debug!(file = %file.display(), "J2K codestream signed, PixelRepresentation 0: read as signed");
            fmt.signed = true;
        }
    }
    let n = fmt.rows * fmt.cols;
    // Native words held as u16 (OW/US: dicom-rs swaps them to native order while reading).
    let native16 = match obj
        .element_opt(PIXEL_DATA)
        .ok()
        .flatten()
        .map(|e| e.value())
    {
        Some(Value::Primitive(dicom_core::PrimitiveValue::U16(w))) if fmt.bits_allocated == 16 => {
            Some(&w[..])
        }
        _ => None,
    };
    let owned = match native16 {
        Some(_) => Vec::new(),
        None => stored_words(obj, &fmt, file)?,
    };
    for (frame, view) in targets.iter_mut() {
        let f = *frame;
        let outside = match native16 {
            Some(words) => {
                let w = words
                    .get(f * n..(f + 1) * n)
                    .ok_or(PixelError::ShortPixelData {
                        file: file.to_owned(),
                        frame: f as u32,
                        got: words.len() * 2,
                        expected: n * 2 * fmt.frames as usize,
                    })?;
                words_to_hu_into(w.iter().map(|&v| v as u32), &fmt, f, view)
            }
            None => words_to_hu_into(owned[f].iter().copied(), &fmt, f, view),
        };
        if let Some(fraction_pct) = refusal_pct(outside, n) {
            let (slope, intercept) = fmt.rescale.get(f).copied().unwrap_or((1.0, 0.0));
            return Err(PixelError::ImplausibleHu {
                file: file.to_owned(),
                frame: f as u32,
                fraction_pct,
                slope,
                intercept,
            });
        }
    }
    Ok(Decoded {
        rescale_found: fmt.rescale_found,
    })
}

/// Signedness of the first component in a raw JPEG 2000 codestream: SOC FF4F, SIZ FF51, Ssiz at
/// byte 42 (ISO/IEC 15444-1 A.5.1; bit 7 set = signed).
fn j2k_signed(cs: &[u8]) -> Option<bool> {
    (cs.get(..4)? == [0xFF, 0x4F, 0xFF, 0x51]).then_some(())?;
    cs.get(42).map(|s| s & 0x80 != 0)
}

/// HU range outside which a voxel is implausible for CT (extended CT scale reaches 32767).
const PLAUSIBLE_HU: (f32, f32) = (-4096.0, 32767.0);

/// The encapsulated frames of `obj` (one byte stream per frame, fragments joined per PS3.5 A.4 as
/// in [`decode_hu`]); `None` for native pixel data.
pub fn encapsulated_frames(
    obj: &DicomFile,
    file: &Path,
) -> Result<Option<Vec<Vec<u8>>>, PixelError> {
    let fmt = pixel_format(obj, file)?;
    let elem =
        obj.element_opt(PIXEL_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| PixelError::NoPixelData {
                file: file.to_owned(),
            })?;
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
fn stored_words(
    obj: &DicomFile,
    fmt: &PixelFormat,
    file: &Path,
) -> Result<Vec<Vec<u32>>, PixelError> {
    let elem =
        obj.element_opt(PIXEL_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| PixelError::NoPixelData {
                file: file.to_owned(),
            })?;
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

/// Masks `v` to `bits` and sign-extends it when `signed` (the stored-value domain).
fn to_stored(v: i64, bits: u16, signed: bool) -> i64 {
    let mask = if bits >= 64 {
        -1i64
    } else {
        (1i64 << bits) - 1
    };
    let m = v & mask;
    if signed && bits < 64 && m & (1i64 << (bits - 1)) != 0 {
        m - (1i64 << bits)
    } else {
        m
    }
}

/// Voxels of one frame that [`words_to_hu_into`] found outside [`PLAUSIBLE_HU`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outside {
    /// Values outside [`PLAUSIBLE_HU`], non-finite ones included.
    implausible: usize,
    /// Of those, the infinite or NaN ones (an f64 rescale that overflows f32).
    non_finite: usize,
}

/// The percentage of a frame's `n` voxels outside [`PLAUSIBLE_HU`] when the frame is refused:
/// more than 1% of them, or any that is not finite (inf or NaN has no HU to stand for, and would
/// reach the mesh and the network's normalisation); `None` when the frame is kept.
fn refusal_pct(outside: Outside, n: usize) -> Option<f64> {
    let pct = 100.0 * outside.implausible as f64 / n.max(1) as f64;
    (pct > 1.0 || outside.non_finite > 0).then_some(pct)
}

/// Stored words of one frame (`Rows * Columns`, row-major) to HU in `out` (`[j, i]`); returns how
/// many values fall outside [`PLAUSIBLE_HU`] and how many of them are not finite.
fn words_to_hu_into(
    words: impl Iterator<Item = u32>,
    fmt: &PixelFormat,
    frame: usize,
    out: &mut ArrayViewMut2<f32>,
) -> Outside {
    let (slope, intercept) = fmt.rescale.get(frame).copied().unwrap_or((1.0, 0.0));
    let (bits, signed) = (fmt.bits_stored, fmt.signed);
    let (plo, phi) = fmt.padding.unwrap_or((1, 0));
    let (rlo, rhi) = fmt.padding_raw.unwrap_or((1, 0));
    let mut outside = Outside {
        implausible: 0,
        non_finite: 0,
    };
    for (o, w) in out.iter_mut().zip(words) {
        let v = to_stored(w as i64, bits, signed);
        *o = if (v >= plo && v <= phi) || (w >= rlo && w <= rhi) {
            AIR_HU
        } else {
            (v as f64 * slope + intercept) as f32
        };
        outside.implausible += usize::from(!(PLAUSIBLE_HU.0..=PLAUSIBLE_HU.1).contains(o));
        outside.non_finite += usize::from(!o.is_finite());
    }
    outside
}

/// (RescaleSlope, RescaleIntercept) of each frame: per-frame functional group, shared functional
/// group, then the top-level attributes, then (1, 0); and whether any was found.
///
/// Errors: [`PixelError::BadRescale`] when a present RescaleSlope/RescaleIntercept is unparsable,
/// NaN or infinite, the slope is 0 (every voxel would be the intercept), or one of the pair is
/// present without the other.
fn frame_rescales(
    obj: &DicomFile,
    frames: usize,
    file: &Path,
) -> Result<(Vec<(f64, f64)>, bool), PixelError> {
    type Rescale = Option<(f64, f64)>;
    let one = |o: &dicom_object::InMemDicomObject,
               tag,
               attribute: &'static str,
               slope: bool|
     -> Result<Option<f64>, PixelError> {
        let Some(e) = o.element_opt(tag).ok().flatten() else {
            return Ok(None);
        };
        let v = floats_of(o, tag).and_then(|v| v.first().copied());
        match v {
            Some(v) if v.is_finite() && !(slope && v == 0.0) => Ok(Some(v)),
            _ => Err(PixelError::BadRescale {
                file: file.to_owned(),
                attribute,
                value: e
                    .to_str()
                    .map(|s| s.escape_debug().to_string())
                    .unwrap_or_else(|_| "(unreadable)".into()),
            }),
        }
    };
    let from = |o: &dicom_object::InMemDicomObject| -> Result<Rescale, PixelError> {
        let s = one(o, tags::RESCALE_SLOPE, "RescaleSlope (0028,1053)", true)?;
        let i = one(
            o,
            tags::RESCALE_INTERCEPT,
            "RescaleIntercept (0028,1052)",
            false,
        )?;
        match (s, i) {
            (Some(s), Some(i)) => Ok(Some((s, i))),
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) => Err(PixelError::BadRescale {
                file: file.to_owned(),
                attribute: if s.is_none() {
                    "RescaleSlope (0028,1053)"
                } else {
                    "RescaleIntercept (0028,1052)"
                },
                value:
                    "(absent while its pair is present; the two go together, PS3.3 C.7.6.16.2.9 \
                        and C.8.2.1)"
                        .to_owned(),
            }),
        }
    };
    let pvt = |group: Option<&dicom_object::InMemDicomObject>| -> Result<Rescale, PixelError> {
        match group
            .and_then(|g| {
                g.element_opt(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
                    .ok()
                    .flatten()
            })
            .and_then(|e| e.items().and_then(|i| i.first()))
        {
            Some(item) => from(item),
            None => Ok(None),
        }
    };
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    // The shared functional group before the top level (the order of the doc above).
    let common = match pvt(shared.first())? {
        Some(r) => Some(r),
        None => from(obj)?,
    };
    let mut found = common.is_some();
    let rescales = (0..frames)
        .map(|f| {
            let own = pvt(per_frame.get(f))?;
            found |= own.is_some();
            Ok(own.or(common).unwrap_or((1.0, 0.0)))
        })
        .collect::<Result<Vec<_>, PixelError>>()?;
    Ok((rescales, found))
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

    fn format(bits_stored: u16, signed: bool) -> PixelFormat {
        PixelFormat {
            rows: 1,
            cols: 3,
            frames: 1,
            bits_allocated: 16,
            bits_stored,
            signed,
            padding: None,
            padding_raw: None,
            rescale: vec![(1.0, -1024.0)],
            rescale_found: true,
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
        }
    }

    #[test]
    fn one_infinite_voxel_refuses_the_frame_where_one_percent_of_finite_ones_does_not() {
        // RescaleSlope 1e300 on a frame that is padding but for one voxel: 0.1% of the frame
        // outside the plausible range, below the 1% rule, but infinite.
        let mut fmt = format(16, false);
        fmt.padding = Some((0, 0));
        fmt.rescale = vec![(1e300, 0.0)];
        let mut out = Array2::<f32>::zeros((1, 1000));
        let words = std::iter::once(5u32).chain(std::iter::repeat_n(0, 999));
        let outside = words_to_hu_into(words, &fmt, 0, &mut out.view_mut());
        assert_eq!(
            outside,
            Outside {
                implausible: 1,
                non_finite: 1
            }
        );
        assert_eq!(out[(0, 0)], f32::INFINITY);
        assert_eq!(out[(0, 1)], AIR_HU);
        assert_eq!(refusal_pct(outside, 1000), Some(0.1));
        // Ten finite values beyond 32767 HU in 1000 (1%) are kept; eleven are refused.
        let finite = |k| Outside {
            implausible: k,
            non_finite: 0,
        };
        assert_eq!(refusal_pct(finite(10), 1000), None);
        assert_eq!(refusal_pct(finite(11), 1000), Some(1.1));
    }

    #[test]
    fn padding_in_the_high_bits_is_compared_on_the_whole_word() {
        // BitsStored 12, PixelPaddingValue 0xF6B4: masked it would equal the bone value 0x6B4.
        let mut fmt = format(12, false);
        fmt.padding_raw = Some((0xF6B4, 0xF6B4));
        let mut out = Array2::<f32>::zeros((1, 3));
        let outside = words_to_hu_into(
            [0x6B4u32, 0xF6B4, 0x400].into_iter(),
            &fmt,
            0,
            &mut out.view_mut(),
        );
        assert_eq!(
            outside,
            Outside {
                implausible: 0,
                non_finite: 0
            }
        );
        assert_eq!(out.as_slice().unwrap(), &[692.0, AIR_HU, 0.0]);
        // A signed padding value given as its 16-bit word is compared on the stored value.
        let mut fmt = format(12, true);
        fmt.padding = Some((to_stored(63536, 12, true), to_stored(63536, 12, true)));
        let mut out = Array2::<f32>::zeros((1, 3));
        words_to_hu_into(
            [0xF830u32, 0x830, 0].into_iter(),
            &fmt,
            0,
            &mut out.view_mut(),
        );
        assert_eq!(out[(0, 0)], AIR_HU);
    }

    #[test]
    fn stored_value_sign_and_mask() {
        assert_eq!(to_stored(63536, 16, true), -2000);
        assert_eq!(to_stored(0xF800, 12, true), -2048);
        assert_eq!(to_stored(0xF000, 12, true), 0);
        assert_eq!(to_stored(0x0FFF, 12, true), -1);
        assert_eq!(to_stored(0x0FFF, 12, false), 4095);
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
