//! Encapsulated STL writer and reader (Encapsulated STL IOD, PS3.3 A.85.1; Encapsulated Document
//! C.24.2, Manufacturing 3D Model C.41.1).
//!
//! The STL (binary or ASCII, in the source's LPS millimetres) is stored as EncapsulatedDocument (OB),
//! padded with one zero byte to an even length, with its true length in EncapsulatedDocumentLength
//! (0042,0015) so that [`extract_stl`] returns exactly the bytes given to [`build_encapsulated_stl`].
//! Attributes as in the Orthanc STL plugin's objects (Modality M3D, MIME type `model/stl`, UCUM `mm`,
//! the source's frame of reference), completed with what dciodvfy requires.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};

use super::seg::{Code, Equipment, PURPOSE_SOURCE_IMAGE};
use super::series::CtVolume;
use super::uid::new_uid;
use super::write::{self as shared, code_item, seq_el, str_el};

/// Encapsulated STL Storage SOP Class UID.
pub const ENCAPSULATED_STL_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.104.3";

/// MIMETypeOfEncapsulatedDocument (0042,0012) of STL.
pub const STL_MIME_TYPE: &str = "model/stl";

/// MeasurementUnitsCodeSequence of the model: millimetre (UCUM `mm`).
pub const UNITS_MM: Code = Code {
    value: "mm",
    scheme: "UCUM",
    meaning: "mm",
};

/// What the object is; everything [`build_encapsulated_stl`] cannot take from the source.
#[derive(Clone, Debug)]
pub struct StlDescription {
    /// DocumentTitle (0042,0010), ST, e.g. `Skull model`.
    pub document_title: String,
    /// SeriesDescription (0008,103E), LO.
    pub series_description: String,
    /// SeriesNumber (0020,0011), IS (type 1 in the Encapsulated Document Series module).
    /// `None` (default): derived from the source's, see
    /// [`crate::dicom::write::derived_series_number`] (100 x source + 2, e.g. 20202 for series 202).
    pub series_number: Option<i64>,
    /// InstanceNumber (0020,0013), IS.
    pub instance_number: i64,
    /// Enhanced General Equipment module.
    pub equipment: Equipment,
}

impl Default for StlDescription {
    fn default() -> Self {
        StlDescription {
            document_title: "Skull model".into(),
            series_description: "Osteon skull model (STL)".into(),
            series_number: None,
            instance_number: 1,
            equipment: Equipment::default(),
        }
    }
}

/// Errors of the Encapsulated STL writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum StlObjectError {
    /// A required attribute of the source series is missing.
    #[error("source series lacks {0}")]
    MissingSource(&'static str),
    /// The STL is empty or longer than EncapsulatedDocumentLength (UL) can state.
    #[error("STL document of {0} bytes cannot be encapsulated (must be 1 to 2^32 - 2 bytes)")]
    BadLength(usize),
    /// Building the file meta group failed.
    #[error("building the file meta group: {0}")]
    Meta(#[from] Box<dicom_object::WithMetaError>),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: Box<dicom_object::WriteError>,
    },
    /// The object read is not an Encapsulated STL or its document is unusable.
    #[error("{attribute}: {reason}")]
    BadObject {
        attribute: &'static str,
        reason: String,
    },
}

/// Builds an Encapsulated STL object (PS3.3 A.85.1) holding `stl` (the exact bytes of an STL file,
/// coordinates in LPS mm of `ct`'s frame of reference; a `Vec` is moved in without a copy).
///
/// Patient and study are copied from `ct.info` (same StudyInstanceUID, same FrameOfReferenceUID);
/// SeriesInstanceUID and SOPInstanceUID are new; SourceInstanceSequence lists every source CT instance
/// once. Errors: [`StlObjectError::MissingSource`] (StudyInstanceUID, SeriesInstanceUID or FrameOfReferenceUID),
/// [`StlObjectError::BadLength`], [`StlObjectError::Meta`].
pub fn build_encapsulated_stl(
    ct: &CtVolume,
    stl: impl Into<Vec<u8>>,
    d: &StlDescription,
) -> Result<FileDicomObject<InMemDicomObject>, StlObjectError> {
    let mut document: Vec<u8> = stl.into();
    if let Some(attr) = shared::missing_source_uid(&ct.info) {
        return Err(StlObjectError::MissingSource(attr));
    }
    let length = u32::try_from(document.len())
        .ok()
        .filter(|&l| l > 0 && l < u32::MAX - 1)
        .ok_or(StlObjectError::BadLength(document.len()))?;
    if document.len() % 2 == 1 {
        document.push(0);
    }

    let mut obj = InMemDicomObject::new_empty();
    let (date, time) = shared::now_da_tm();
    // SOP Common, Patient, General Study, Encapsulated Document Series (C.24.1), Frame of
    // Reference, Enhanced General Equipment.
    let sop_instance_uid = new_uid();
    shared::derived_object_header(
        &mut obj,
        &ct.info,
        &shared::DerivedSeries {
            sop_class_uid: ENCAPSULATED_STL_STORAGE,
            sop_instance_uid: &sop_instance_uid,
            modality: "M3D",
            series_number: d
                .series_number
                .unwrap_or_else(|| shared::derived_series_number(ct.info.series_number, 2)),
            series_description: &d.series_description,
            equipment: &d.equipment,
        },
        (&date, &time),
    );
    // Manufacturing 3D Model (C.41.1)
    obj.put(seq_el(
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item(UNITS_MM)],
    ));
    // Encapsulated Document (C.24.2)
    obj.put(str_el(
        tags::INSTANCE_NUMBER,
        VR::IS,
        &d.instance_number.to_string(),
    ));
    obj.put(str_el(tags::CONTENT_DATE, VR::DA, &date));
    obj.put(str_el(tags::CONTENT_TIME, VR::TM, &time));
    obj.put(str_el(tags::ACQUISITION_DATE_TIME, VR::DT, ""));
    obj.put(str_el(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"));
    obj.put(str_el(tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO"));
    obj.put(str_el(tags::DOCUMENT_TITLE, VR::ST, &d.document_title));
    obj.put(seq_el(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![]));
    obj.put(seq_el(tags::SOURCE_INSTANCE_SEQUENCE, source_instances(ct)));
    // Common Instance Reference (C.12.2): required because SourceInstanceSequence references instances
    obj.put(seq_el(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![shared::referenced_series(ct)],
    ));
    obj.put(str_el(
        tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
        VR::LO,
        STL_MIME_TYPE,
    ));
    obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT,
        VR::OB,
        PrimitiveValue::from(document),
    ));
    obj.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT_LENGTH,
        VR::UL,
        PrimitiveValue::from(length),
    ));

    Ok(shared::into_part10(obj)?)
}

/// Writes the object as a Part-10 file, explicit VR little endian.
pub fn write(obj: &FileDicomObject<InMemDicomObject>, path: &Path) -> Result<(), StlObjectError> {
    shared::write_part10(obj, path).map_err(|source| StlObjectError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The STL bytes of an Encapsulated STL object: the first EncapsulatedDocumentLength (0042,0015)
/// bytes of EncapsulatedDocument (the whole value when the length is absent, as in objects from
/// writers that omit it).
///
/// Errors: [`StlObjectError::BadObject`] when the MIME type is not `model/stl`, the document is
/// missing, or the stated length exceeds the document.
pub fn extract_stl(obj: &InMemDicomObject) -> Result<Vec<u8>, StlObjectError> {
    let bad =
        |attribute: &'static str, reason: String| StlObjectError::BadObject { attribute, reason };
    let mime = obj
        .get(tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default();
    if mime != STL_MIME_TYPE {
        return Err(bad(
            "MIMETypeOfEncapsulatedDocument (0042,0012)",
            format!("{mime:?} is not {STL_MIME_TYPE}"),
        ));
    }
    let doc = obj
        .get(tags::ENCAPSULATED_DOCUMENT)
        .ok_or_else(|| bad("EncapsulatedDocument (0042,0011)", "missing".into()))?
        .to_bytes()
        .map_err(|e| bad("EncapsulatedDocument (0042,0011)", e.to_string()))?;
    let length = match obj.get(tags::ENCAPSULATED_DOCUMENT_LENGTH) {
        None => doc.len(),
        Some(e) => e
            .to_int::<u32>()
            .map_err(|err| bad("EncapsulatedDocumentLength (0042,0015)", err.to_string()))?
            as usize,
    };
    doc.get(..length).map(<[u8]>::to_vec).ok_or_else(|| {
        bad(
            "EncapsulatedDocumentLength (0042,0015)",
            format!("{length} exceeds the {} bytes of the document", doc.len()),
        )
    })
}

/// The STL bytes held by an object from [`build_encapsulated_stl`], borrowed (no copy of the
/// document); `None` when EncapsulatedDocument is absent or not a byte value, or
/// EncapsulatedDocumentLength (0042,0015) exceeds it.
pub fn stl_document(obj: &InMemDicomObject) -> Option<&[u8]> {
    let doc = match obj.get(tags::ENCAPSULATED_DOCUMENT)?.value() {
        dicom_core::DicomValue::Primitive(PrimitiveValue::U8(bytes)) => &bytes[..],
        _ => return None,
    };
    let length = match obj.get(tags::ENCAPSULATED_DOCUMENT_LENGTH) {
        None => doc.len(),
        Some(e) => e.to_int::<u32>().ok()? as usize,
    };
    doc.get(..length)
}

/// SourceInstanceSequence: every source CT instance once, in slice order.
fn source_instances(ct: &CtVolume) -> Vec<InMemDicomObject> {
    let mut seen = std::collections::HashSet::new();
    ct.slices
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
                seq_el(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![code_item(PURPOSE_SOURCE_IMAGE)],
                ),
            ])
        })
        .collect()
}
