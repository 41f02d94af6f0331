//! Lossy-compression history of a source image (PS3.3 C.7.6.1.1.5), so that objects derived from it
//! (the SEG) can carry it on: once an image has been lossy compressed, LossyImageCompression
//! (0028,2110) stays "01" in everything made from it, with the ratio(s) and method(s) of each step.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use super::super::meta::PixelDataLayout;
use super::super::pixels::{floats_of, int_of, is_lossy, str_of};
use super::super::write::is_cs;

/// The lossy compression steps an image went through, oldest first (PS3.3 C.7.6.1.1.5.1: one value
/// of each attribute per successive compression).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LossyHistory {
    /// LossyImageCompressionRatio (0028,2112): uncompressed / compressed size, one per step.
    /// Empty when the source recorded none and the ratio could not be measured.
    pub ratios: Vec<f64>,
    /// LossyImageCompressionMethod (0028,2114), defined terms such as `ISO_10918_1` (JPEG),
    /// `ISO_14495_1` (JPEG-LS near-lossless), `ISO_15444_1` (JPEG 2000). Empty when unknown.
    pub methods: Vec<String>,
}

/// LossyImageCompressionMethod defined term (PS3.3 C.7.6.1.1.5.1) of a lossy transfer syntax.
pub fn method_of_transfer_syntax(ts: &str) -> Option<&'static str> {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.53"
        | "1.2.840.10008.1.2.4.55" => Some("ISO_10918_1"),
        "1.2.840.10008.1.2.4.81" => Some("ISO_14495_1"),
        "1.2.840.10008.1.2.4.91" => Some("ISO_15444_1"),
        _ => None,
    }
}

/// The history of one instance, `None` when it was never lossy compressed: neither
/// LossyImageCompression (0028,2110) is "01" nor is its transfer syntax `ts` lossy
/// ([`is_lossy`]; JPEG 2000 .91 counts as lossy, since it may be).
///
/// Recorded ratios and methods are kept as they are. When the transfer syntax is lossy and the file
/// records no ratio, the ratio is measured as Rows x Columns x NumberOfFrames x SamplesPerPixel x
/// BitsAllocated/8 over the encapsulated PixelData's bytes (`layout.available`, item headers
/// included: approximate, as the attribute itself is); likewise a missing method is named from the
/// transfer syntax.
pub fn history(
    obj: &InMemDicomObject,
    ts: &str,
    layout: Option<PixelDataLayout>,
) -> Option<LossyHistory> {
    let flagged = str_of(obj, tags::LOSSY_IMAGE_COMPRESSION).is_some_and(|v| v == "01");
    let ts_lossy = is_lossy(ts);
    if !flagged && !ts_lossy {
        return None;
    }
    let mut ratios: Vec<f64> = floats_of(obj, tags::LOSSY_IMAGE_COMPRESSION_RATIO)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    let mut methods: Vec<String> = str_of(obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD)
        .unwrap_or_default()
        .split('\\')
        .map(|m| m.trim().to_string())
        // A malformed method is dropped rather than copied into the SEG, where it would make the
        // object invalid.
        .filter(|m| is_cs(m))
        .collect();
    if ts_lossy {
        if ratios.is_empty() {
            ratios.extend(measured_ratio(obj, layout));
        }
        if methods.is_empty() {
            methods.extend(method_of_transfer_syntax(ts).map(String::from));
        }
    }
    Some(LossyHistory { ratios, methods })
}

/// Uncompressed size over the encapsulated PixelData's bytes, rounded to 0.01.
fn measured_ratio(obj: &InMemDicomObject, layout: Option<PixelDataLayout>) -> Option<f64> {
    let compressed = layout?.available;
    let dim = |t, default| int_of(obj, t).filter(|v| *v > 0).unwrap_or(default) as f64;
    let uncompressed = dim(tags::ROWS, 0)
        * dim(tags::COLUMNS, 0)
        * dim(tags::NUMBER_OF_FRAMES, 1)
        * dim(tags::SAMPLES_PER_PIXEL, 1)
        * (dim(tags::BITS_ALLOCATED, 16) / 8.0).max(1.0);
    (compressed > 0 && uncompressed > 0.0)
        .then(|| (uncompressed / compressed as f64 * 100.0).round() / 100.0)
}

/// The most lossy of several instances' histories (largest ratio; the first one when none has a
/// ratio): what a derived object from all of them records. `None` when no instance was lossy.
pub fn most_lossy<'a>(
    histories: impl IntoIterator<Item = Option<&'a LossyHistory>>,
) -> Option<LossyHistory> {
    let worst = |h: &LossyHistory| h.ratios.iter().copied().fold(0.0, f64::max);
    histories
        .into_iter()
        .flatten()
        .fold(None::<&LossyHistory>, |best, h| match best {
            Some(b) if worst(b) >= worst(h) => Some(b),
            _ => Some(h),
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn obj(elems: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(
            elems
                .iter()
                .map(|(t, vr, v)| DataElement::new(*t, *vr, PrimitiveValue::from(*v))),
        )
    }

    const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    #[test]
    fn never_lossy_is_none() {
        let o = obj(&[(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")]);
        assert_eq!(history(&o, EXPLICIT_LE, None), None);
    }

    #[test]
    fn recorded_history_is_kept() {
        let o = obj(&[
            (tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"),
            (tags::LOSSY_IMAGE_COMPRESSION_RATIO, VR::DS, "8.87"),
            (tags::LOSSY_IMAGE_COMPRESSION_METHOD, VR::CS, "ISO_10918_1"),
        ]);
        let h = history(&o, EXPLICIT_LE, None).unwrap();
        assert_eq!(h.ratios, vec![8.87]);
        assert_eq!(h.methods, vec!["ISO_10918_1".to_string()]);
    }

    #[test]
    fn lossy_syntax_without_attributes_is_measured_and_named() {
        let o = obj(&[
            (tags::ROWS, VR::US, "512"),
            (tags::COLUMNS, VR::US, "512"),
            (tags::BITS_ALLOCATED, VR::US, "16"),
        ]);
        let layout = PixelDataLayout {
            offset: 0,
            declared_len: None,
            available: 65_536,
        };
        let h = history(&o, JPEG_BASELINE, Some(layout)).unwrap();
        assert_eq!(h.ratios, vec![8.0]);
        assert_eq!(h.methods, vec!["ISO_10918_1".to_string()]);
    }

    #[test]
    fn malformed_values_are_dropped_and_named_from_the_syntax() {
        let o = obj(&[
            (tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"),
            (tags::LOSSY_IMAGE_COMPRESSION_RATIO, VR::DS, "-3\\abc"),
            (
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                VR::CS,
                "iso 10918-1 baseline",
            ),
        ]);
        let h = history(&o, JPEG_BASELINE, None).unwrap();
        assert_eq!(h.ratios, Vec::<f64>::new());
        assert_eq!(h.methods, vec!["ISO_10918_1".to_string()]);
    }

    #[test]
    fn decompressed_but_flagged_keeps_flag_without_inventing() {
        let o = obj(&[(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01")]);
        assert_eq!(
            history(&o, EXPLICIT_LE, None),
            Some(LossyHistory::default())
        );
    }

    #[test]
    fn most_lossy_takes_largest_ratio() {
        let a = LossyHistory {
            ratios: vec![3.5],
            methods: vec!["ISO_15444_1".into()],
        };
        let b = LossyHistory {
            ratios: vec![9.25],
            methods: vec!["ISO_10918_1".into()],
        };
        assert_eq!(most_lossy([None, Some(&a), Some(&b)]), Some(b.clone()));
        assert_eq!(most_lossy([Some(&b), Some(&a)]), Some(b));
        assert_eq!(most_lossy([None, None]), None);
    }
}
