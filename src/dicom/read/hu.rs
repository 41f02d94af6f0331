//! Stored values to Hounsfield units (PS3.3 C.7.6.3.1, C.11.1): the stored value masked to
//! BitsStored and sign-extended when PixelRepresentation is 1, padding (C.7.5.1.1.2) to
//! [`AIR_HU`], else `value * RescaleSlope + RescaleIntercept`, the rescale taken per frame for
//! Enhanced CT (C.7.6.16.2.9); and the plausibility check that refuses a garbage frame.

use std::path::Path;

use dicom_dictionary_std::tags;
use ndarray::ArrayViewMut2;

use super::super::meta::DicomFile;
use super::super::series::AIR_HU;
use super::{floats_of, items, PixelError, PixelFormat};

/// HU range outside which a voxel is implausible for CT (extended CT scale reaches 32767).
const PLAUSIBLE_HU: (f32, f32) = (-4096.0, 32767.0);

/// Masks `v` to `bits` and sign-extends it when `signed` (the stored-value domain).
pub(super) fn to_stored(v: i64, bits: u16, signed: bool) -> i64 {
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
pub(super) struct Outside {
    /// Values outside [`PLAUSIBLE_HU`], non-finite ones included.
    implausible: usize,
    /// Of those, the infinite or NaN ones (an f64 rescale that overflows f32).
    non_finite: usize,
}

/// The percentage of a frame's `n` voxels outside [`PLAUSIBLE_HU`] when the frame is refused:
/// more than 1% of them, or any that is not finite (inf or NaN has no HU to stand for, and would
/// reach the mesh and the network's normalisation); `None` when the frame is kept.
pub(super) fn refusal_pct(outside: Outside, n: usize) -> Option<f64> {
    let pct = 100.0 * outside.implausible as f64 / n.max(1) as f64;
    (pct > 1.0 || outside.non_finite > 0).then_some(pct)
}

/// Stored words of one frame (`Rows * Columns`, row-major) to HU in `out` (`[j, i]`); returns how
/// many values fall outside [`PLAUSIBLE_HU`] and how many of them are not finite.
pub(super) fn words_to_hu_into(
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
pub(super) fn frame_rescales(
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

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::uids;
    use ndarray::Array2;

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
}
