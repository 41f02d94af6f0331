//! Attribute access that tolerates what real files hold: VR UN values (decoded by their
//! dictionary VR, PS3.5 6.2.2), padded strings, IS/DS given as text.

use dicom_core::VR;

/// Items of a sequence attribute (empty when absent).
pub(crate) fn items(
    obj: &dicom_object::InMemDicomObject,
    tag: dicom_core::Tag,
) -> Vec<dicom_object::InMemDicomObject> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
        .unwrap_or_default()
}

/// First value of an integer attribute (IS, US, SS, UL, SL...). An attribute written with VR UN
/// (PS3.5 6.2.2: explicit VR files that lost the VR) is decoded by its dictionary VR.
pub(crate) fn int_of(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    let e = obj.element_opt(tag).ok().flatten()?;
    if e.vr() == VR::UN {
        let b = e.to_bytes().ok()?;
        return match dictionary_vr(tag)? {
            VR::US => b.get(..2).map(|s| u16::from_le_bytes([s[0], s[1]]) as i64),
            VR::SS => b.get(..2).map(|s| i16::from_le_bytes([s[0], s[1]]) as i64),
            VR::UL => b
                .get(..4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64),
            VR::SL => b
                .get(..4)
                .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64),
            _ => un_text(&b)
                .split('\\')
                .next()?
                .trim()
                .parse::<f64>()
                .ok()
                .map(|f| f.round() as i64),
        };
    }
    e.to_int::<i64>()
        .ok()
        .or_else(|| e.to_float64().ok().map(|f| f.round() as i64))
}

/// Trimmed string value of an attribute (multi-valued joined with '\'); VR UN read as text.
pub(crate) fn str_of(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    if e.vr() == VR::UN {
        return e.to_bytes().ok().map(|b| un_text(&b));
    }
    e.to_str().ok().map(|s| {
        s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string()
    })
}

/// Floating-point values of an attribute (DS, FD...); VR UN decoded by its dictionary VR.
pub(crate) fn floats_of(
    obj: &dicom_object::InMemDicomObject,
    tag: dicom_core::Tag,
) -> Option<Vec<f64>> {
    let e = obj.element_opt(tag).ok().flatten()?;
    if e.vr() == VR::UN {
        let b = e.to_bytes().ok()?;
        return match dictionary_vr(tag)? {
            VR::FD => Some(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            VR::FL => Some(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect(),
            ),
            _ => un_text(&b)
                .split('\\')
                .map(|v| v.trim().parse::<f64>().ok())
                .collect(),
        };
    }
    e.to_multi_float64().ok()
}

fn un_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

fn dictionary_vr(tag: dicom_core::Tag) -> Option<VR> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
}
