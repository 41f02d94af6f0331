//! Pieces shared by the DICOM writers ([`crate::dicom::seg`], [`crate::dicom::stl_object`], [`crate::dicom::ct_writer`]):
//! element constructors, DS formatting that round-trips, coded concepts, the Patient / General Study
//! modules copied from the source series, the Enhanced General Equipment module, and Part-10 writing
//! (explicit VR little endian with Osteon's implementation identity).

use std::path::Path;

use dicom_core::value::{DataSetSequence, PrimitiveValue, C};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};

use crate::dicom::series::{CtVolume, LossyHistory, SeriesInfo};

/// Implementation Class UID (0002,0012) of Osteon: a fixed UUID-derived UID (PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.140490695990426595136575110813153410842";

/// Implementation Version Name (0002,0013) of Osteon (SH, at most 16 characters).
pub fn implementation_version_name() -> String {
    let mut s = format!("OSTEON_{}", env!("CARGO_PKG_VERSION"));
    s.truncate(16);
    s
}

/// Manufacturer (0008,0070) written into every object Osteon makes.
pub const MANUFACTURER: &str = "Osteon";

/// A coded concept (Code Sequence Macro, PS3.3 Table 8.8-1): CodeValue, CodingSchemeDesignator,
/// CodeMeaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// CodeValue (0008,0100).
    pub value: &'static str,
    /// CodingSchemeDesignator (0008,0102), e.g. `SCT`, `DCM`, `UCUM`.
    pub scheme: &'static str,
    /// CodeMeaning (0008,0104).
    pub meaning: &'static str,
}

/// Enhanced General Equipment module (PS3.3 C.7.5.2): all four attributes are type 1.
/// Manufacturer is always [`MANUFACTURER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equipment {
    /// ManufacturerModelName (0008,1090), LO.
    pub manufacturer_model_name: String,
    /// DeviceSerialNumber (0018,1000), LO: identifies this Osteon installation (e.g. host name).
    pub device_serial_number: String,
    /// SoftwareVersions (0018,1020), LO (one value).
    pub software_versions: String,
}

impl Default for Equipment {
    fn default() -> Self {
        Equipment {
            manufacturer_model_name: "Osteon".into(),
            device_serial_number: "0".into(),
            software_versions: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Element with one string value (empty string = zero-length value, for type 2).
pub(crate) fn str_el(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    if value.is_empty() {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }
}

/// Element with several string values (backslash-separated on the wire).
pub(crate) fn strs_el(tag: Tag, vr: VR, values: &[String]) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.iter().cloned().collect::<C<String>>()),
    )
}

/// Whether `v` is a non-empty CS value (PS3.5 6.2: at most 16 of upper-case letters, digits, space
/// and `_`).
pub(crate) fn is_cs(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 16
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_')
}

/// US element.
pub(crate) fn us_el(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// SQ element from items (undefined length, as dicom-rs writes it).
pub(crate) fn seq_el(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// Item of a code sequence.
pub(crate) fn code_item(code: Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(tags::CODE_VALUE, VR::SH, code.value),
        str_el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, code.scheme),
        str_el(tags::CODE_MEANING, VR::LO, code.meaning),
    ])
}

/// Formats `v` as a Decimal String (PS3.5 6.2: at most 16 characters) that parses back to exactly
/// `v` whenever possible: the shortest round-trip representation (so a value read from a DS string
/// is written back with the same number, e.g. `-125.000` → `-125`), else the candidate of at most
/// 16 characters closest to `v`. `None` for NaN and infinities, which DS cannot hold.
pub fn format_ds(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    let plain = format!("{v}");
    if plain.len() <= 16 {
        return Some(plain);
    }
    let exp = format!("{v:e}");
    if exp.len() <= 16 {
        return Some(exp);
    }
    let mut best: Option<(f64, String)> = None;
    for p in 0..=16usize {
        for s in [format!("{v:.p$}"), format!("{v:.p$e}")] {
            if s.len() > 16 {
                continue;
            }
            let Ok(back) = s.parse::<f64>() else { continue };
            let err = (back - v).abs();
            if best.as_ref().is_none_or(|(e, _)| err < *e) {
                best = Some((err, s));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// DS element with one value per number; `None` when a number is not finite.
pub(crate) fn ds_el(tag: Tag, values: &[f64]) -> Option<DataElement<InMemDicomObject>> {
    let strs: Option<Vec<String>> = values.iter().map(|&v| format_ds(v)).collect();
    Some(strs_el(tag, VR::DS, &strs?))
}

/// LossyImageCompression (0028,2110) of an image derived from a source with history `source`:
/// "00" when the source never was lossy compressed, else "01" with the source's
/// LossyImageCompressionRatio (0028,2112) and LossyImageCompressionMethod (0028,2114) carried on
/// (PS3.3 C.7.6.1.1.5: once "01", never reset; C.8.20.2 makes ratio and method type 1C on "01").
/// Ratio or method is left out only when the source gave no way to know it. highdicom's SEG
/// (`highdicom/seg/sop.py`) copies the flag, ratio and method from its first source image.
pub(crate) fn put_lossy_history(obj: &mut InMemDicomObject, source: Option<&LossyHistory>) {
    let Some(h) = source else {
        obj.put(str_el(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"));
        return;
    };
    obj.put(str_el(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"));
    if let Some(el) = (!h.ratios.is_empty())
        .then(|| ds_el(tags::LOSSY_IMAGE_COMPRESSION_RATIO, &h.ratios))
        .flatten()
    {
        obj.put(el);
    }
    if !h.methods.is_empty() {
        obj.put(strs_el(
            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            VR::CS,
            &h.methods,
        ));
    }
}

/// Current local date (DA `YYYYMMDD`) and time (TM `HHMMSS.ffffff`).
pub(crate) fn now_da_tm() -> (String, String) {
    let now = chrono::Local::now();
    (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S%.6f").to_string(),
    )
}

/// Patient module (PS3.3 C.7.1.1) and General Study module (C.7.2.1), copied from the source series
/// so that the result joins the same patient and study (same StudyInstanceUID). Type 2 attributes that
/// the source lacks are written empty. Also sets SpecificCharacterSet to `ISO_IR 192` (UTF-8): the
/// copied names are Unicode strings already decoded from the source's character set.
pub(crate) fn patient_and_study(obj: &mut InMemDicomObject, info: &SeriesInfo) {
    obj.put(str_el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    obj.put(str_el(tags::PATIENT_NAME, VR::PN, &info.patient_name));
    obj.put(str_el(tags::PATIENT_ID, VR::LO, &info.patient_id));
    obj.put(str_el(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        &info.patient_birth_date,
    ));
    obj.put(str_el(tags::PATIENT_SEX, VR::CS, &info.patient_sex));
    obj.put(str_el(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &info.study_instance_uid,
    ));
    obj.put(str_el(tags::STUDY_DATE, VR::DA, &info.study_date));
    obj.put(str_el(tags::STUDY_TIME, VR::TM, &info.study_time));
    obj.put(str_el(
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        &info.referring_physician_name,
    ));
    obj.put(str_el(tags::STUDY_ID, VR::SH, &info.study_id));
    obj.put(str_el(
        tags::ACCESSION_NUMBER,
        VR::SH,
        &info.accession_number,
    ));
}

/// General Equipment (C.7.5.1) and Enhanced General Equipment (C.7.5.2) modules.
pub(crate) fn equipment(obj: &mut InMemDicomObject, eq: &Equipment) {
    obj.put(str_el(tags::MANUFACTURER, VR::LO, MANUFACTURER));
    obj.put(str_el(
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        &eq.manufacturer_model_name,
    ));
    obj.put(str_el(
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        &eq.device_serial_number,
    ));
    obj.put(str_el(
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        &eq.software_versions,
    ));
}

/// The new series a derived object starts (see [`derived_object_header`]).
pub(crate) struct DerivedSeries<'a> {
    /// SOPClassUID (0008,0016).
    pub sop_class_uid: &'a str,
    /// SOPInstanceUID (0008,0018), also the Media Storage SOP Instance UID.
    pub sop_instance_uid: &'a str,
    /// Modality (0008,0060), e.g. `SEG`, `M3D`.
    pub modality: &'a str,
    /// SeriesNumber (0020,0011).
    pub series_number: i64,
    /// SeriesDescription (0008,103E).
    pub series_description: &'a str,
    /// Enhanced General Equipment module.
    pub equipment: &'a Equipment,
}

/// SeriesNumber (0020,0011) of the `k`-th series Osteon derives from a source series numbered
/// `source` (1 = SEG, 2 = Encapsulated STL): `100 x source + k`, so that the results of two series
/// of one study differ in number too and sort beside their source (202 -> 20201, 20202); `9900 + k`
/// when the source has no usable number (absent, negative, or too large for IS as a 32-bit value,
/// PS3.5 6.2).
pub fn derived_series_number(source: Option<i64>, k: i64) -> i64 {
    match source {
        Some(n) if (0..=21_474_835).contains(&n) => 100 * n + k,
        _ => 9900 + k,
    }
}

/// SeriesDescription of a derived series: `description`, then the source's SeriesNumber so that a
/// PACS user can tell the results of two series of one study apart ("Osteon bone segmentation (of
/// series 202)"); cut to the 64 characters of VR LO (PS3.5 6.2) on a character boundary.
pub(crate) fn derived_description(description: &str, source_series: Option<i64>) -> String {
    let full = match source_series {
        Some(n) => format!("{description} (of series {n})"),
        None => description.to_owned(),
    };
    full.chars().take(64).collect()
}

/// What every object Osteon derives from a CT series shares: SOP Common (C.12.1: class, instance
/// UID, creation date/time), Patient and General Study copied from the source, a new series with a
/// fresh SeriesInstanceUID, the source's Frame of Reference (C.7.4.1), and the (Enhanced) General
/// Equipment modules. `date_time` is (DA, TM).
pub(crate) fn derived_object_header(
    obj: &mut InMemDicomObject,
    info: &SeriesInfo,
    s: &DerivedSeries<'_>,
    date_time: (&str, &str),
) {
    obj.put(str_el(tags::SOP_CLASS_UID, VR::UI, s.sop_class_uid));
    obj.put(str_el(tags::SOP_INSTANCE_UID, VR::UI, s.sop_instance_uid));
    obj.put(str_el(tags::INSTANCE_CREATION_DATE, VR::DA, date_time.0));
    obj.put(str_el(tags::INSTANCE_CREATION_TIME, VR::TM, date_time.1));
    patient_and_study(obj, info);
    obj.put(str_el(tags::MODALITY, VR::CS, s.modality));
    obj.put(str_el(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &crate::dicom::uid::new_uid(),
    ));
    obj.put(str_el(
        tags::SERIES_NUMBER,
        VR::IS,
        &s.series_number.to_string(),
    ));
    obj.put(str_el(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &derived_description(s.series_description, info.series_number),
    ));
    obj.put(str_el(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &info.frame_of_reference_uid,
    ));
    obj.put(str_el(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""));
    equipment(obj, s.equipment);
}

/// Which required identity attribute of the source is missing or unusable, if any: StudyInstanceUID
/// SeriesInstanceUID (referenced in the Common Instance Reference module) and FrameOfReferenceUID must be
/// present (the results join the study and its frame of reference).
pub(crate) fn missing_source_uid(info: &SeriesInfo) -> Option<&'static str> {
    if info.study_instance_uid.trim().is_empty() {
        Some("StudyInstanceUID (0020,000D)")
    } else if info.series_instance_uid.trim().is_empty() {
        Some("SeriesInstanceUID (0020,000E)")
    } else if info.frame_of_reference_uid.trim().is_empty() {
        Some("FrameOfReferenceUID (0020,0052)")
    } else {
        None
    }
}

/// Wraps a data set into a Part-10 object (explicit VR little endian; Media Storage SOP Class and
/// Instance UID taken from the data set; Osteon's Implementation Class UID and Version Name).
pub(crate) fn into_part10(
    obj: InMemDicomObject,
) -> Result<FileDicomObject<InMemDicomObject>, Box<dicom_object::WithMetaError>> {
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(implementation_version_name()),
    )
    .map_err(Box::new)
}

/// Writes a Part-10 file (preamble, `DICM`, meta group, data set).
pub(crate) fn write_part10(
    obj: &FileDicomObject<InMemDicomObject>,
    path: &Path,
) -> Result<(), Box<dicom_object::WriteError>> {
    obj.write_to_file(path).map_err(Box::new)
}

/// ReferencedSeriesSequence (Common Instance Reference module, C.12.2) item listing every source instance once (multi-frame sources once).
pub(crate) fn referenced_series(ct: &CtVolume) -> InMemDicomObject {
    let mut seen = std::collections::HashSet::new();
    let instances: Vec<InMemDicomObject> = ct
        .slices
        .iter()
        .filter(|s| seen.insert(s.sop_instance_uid.as_str()))
        .map(|s| {
            InMemDicomObject::from_element_iter([
                str_el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &s.sop_class_uid),
                str_el(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &s.sop_instance_uid,
                ),
            ])
        })
        .collect();
    InMemDicomObject::from_element_iter([
        seq_el(tags::REFERENCED_INSTANCE_SEQUENCE, instances),
        str_el(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &ct.info.series_instance_uid,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::format_ds;

    #[test]
    fn derived_series_numbers_follow_the_source() {
        use super::derived_series_number as n;
        assert_eq!((n(Some(202), 1), n(Some(202), 2)), (20201, 20202));
        assert_eq!(n(Some(0), 1), 1);
        assert_eq!(n(None, 2), 9902);
        assert_eq!(n(Some(-4), 1), 9901);
        assert_eq!(
            n(Some(21_474_836), 1),
            9901,
            "2147483601 would not fit in IS"
        );
    }

    #[test]
    fn ds_round_trips_source_numbers() {
        for (v, s) in [
            (-125.0, "-125"),
            (-128.100006, "-128.100006"),
            (103.019997, "103.019997"),
            (0.48828125, "0.48828125"),
            (-0.0, "0"),
            (1e-20, "1e-20"),
        ] {
            assert_eq!(format_ds(v).as_deref(), Some(s));
        }
        let long = -123.45678901234567_f64;
        let s = format_ds(long).unwrap_or_default();
        assert_eq!(s.len(), 16, "{s}");
        assert!(
            (s.parse::<f64>().unwrap_or(0.0) - long).abs() < 1e-11,
            "{s}"
        );
        assert_eq!(format_ds(f64::NAN), None);
    }
}

#[cfg(test)]
mod derived_description_tests {
    use super::derived_description;

    #[test]
    fn names_the_source_series_within_64_characters() {
        assert_eq!(
            derived_description("Osteon bone segmentation", Some(202)),
            "Osteon bone segmentation (of series 202)"
        );
        assert_eq!(
            derived_description("Osteon skull model (STL)", None),
            "Osteon skull model (STL)"
        );
        let long = derived_description(&"é".repeat(70), Some(1));
        assert_eq!(long.chars().count(), 64);
    }
}
