//! Pixel decoding to Hounsfield units: the image pixel attributes ([`pixel_format`]) and the
//! decoding of each frame to HU ([`decode_hu`], [`decode_hu_into`]).
//!
//! Stored values come from the native PixelData (little or big endian, deflate handled while
//! reading), from our own RLE Lossless decoder (read/rle.rs, PS3.5 Annex G) or from the
//! `dicom-pixeldata` codecs (JPEG, JPEG-LS, JPEG 2000), each call behind a panic boundary
//! (read/frames.rs). HU per frame (PS3.3 C.7.6.3.1, C.11.1; read/hu.rs): stored value masked to
//! BitsStored, sign-extended when PixelRepresentation is 1, PixelPaddingValue /
//! PixelPaddingRangeLimit (C.7.5.1.1.2, compared on the stored value) set to [`AIR_HU`], else
//! `value * RescaleSlope + RescaleIntercept`, the rescale taken per frame for Enhanced CT
//! (PixelValueTransformationSequence in the per-frame or shared functional groups,
//! C.7.6.16.2.9). Errors: [`PixelError`] (read/pixel_error.rs).

use std::path::Path;

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use ndarray::{Array2, ArrayViewMut2};

#[path = "read/rle.rs"]
mod rle;

#[path = "read/attr.rs"]
mod attr;
pub(crate) use attr::{floats_of, int_of, items, str_of};

#[path = "read/pixel_error.rs"]
mod pixel_error;
pub use pixel_error::PixelError;

#[path = "read/frames.rs"]
mod frames;
use frames::{check_pixel_data_size, j2k_signed, stored_words};
pub use frames::{encapsulated_frames, is_encapsulated_ts, is_lossy};

#[path = "read/hu.rs"]
mod hu;
use hu::{frame_rescales, refusal_pct, to_stored, words_to_hu_into};

use super::meta::{DicomFile, PIXEL_DATA};
use super::series::AIR_HU;

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
