//! DICOM Segmentation writer and reader (Segmentation IOD, PS3.3 A.51; Segmentation modules C.8.20).
//!
//! [`build_seg`] turns a binary mask `[k, j, i]` on the grid of a [`CtVolume`] into a BINARY
//! Segmentation with one segment and one frame per source slice (empty slices included), each frame
//! carrying exactly its source slice's ImagePositionPatient and a reference to it. The content follows
//! what highdicom writes (Multi-frame Dimension module indexed by ReferencedSegmentNumber and
//! ImagePositionPatient, DerivationImageSequence per frame). [`read_seg_mask`] reads any uncompressed
//! 1- or 8-bit SEG back, unpacking the bit stream itself ([`bits`]).
//!
//! Submodules: [`bits`] (1-bit packing), [`read`] (reader); element helpers shared with the other
//! writers are in [`crate::dicom::write`].

pub mod bits;
pub mod read;

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use ndarray::ArrayView3;

use super::series::CtVolume;
use super::uid::new_uid;
use crate::dicom::write::{self as shared, code_item, ds_el, seq_el, str_el, strs_el, us_el};
pub use crate::dicom::write::{format_ds, Code, Equipment};
pub use read::{read_seg_mask, SegFrames};

/// Segmentation Storage SOP Class UID.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// Segmented property category when the segment is any bone: Tissue (SCT 85756007), CID 7150.
pub const CATEGORY_TISSUE: Code = Code {
    value: "85756007",
    scheme: "SCT",
    meaning: "Tissue",
};
/// Segmented property type when the segment is any bone: Bone (SCT 272673000), CID 7166.
pub const TYPE_BONE: Code = Code {
    value: "272673000",
    scheme: "SCT",
    meaning: "Bone",
};
/// Segmented property category for a skull-specific segment: Anatomical Structure. CID 7150 lists it
/// as SCT 91723000 (the older SRT T-D000A mapped to 123037004 "Body structure", which dcmqi examples
/// still use; the current code is used here).
pub const CATEGORY_ANATOMICAL_STRUCTURE: Code = Code {
    value: "91723000",
    scheme: "SCT",
    meaning: "Anatomical Structure",
};
/// Segmented property type for a skull-specific segment: Skull (SCT 89546000).
pub const TYPE_SKULL: Code = Code {
    value: "89546000",
    scheme: "SCT",
    meaning: "Skull",
};
/// Algorithm family (CID 7162) of a learned segmenter: Artificial Intelligence (DCM 123110).
pub const FAMILY_ARTIFICIAL_INTELLIGENCE: Code = Code {
    value: "123110",
    scheme: "DCM",
    meaning: "Artificial Intelligence",
};
/// Algorithm family (CID 7162) of a threshold segmenter: Histogram Analysis (DCM 123105).
pub const FAMILY_HISTOGRAM_ANALYSIS: Code = Code {
    value: "123105",
    scheme: "DCM",
    meaning: "Histogram Analysis",
};
/// PurposeOfReferenceCodeSequence of each source image (CID 7202): DCM 121322.
pub const PURPOSE_SOURCE_IMAGE: Code = Code {
    value: "121322",
    scheme: "DCM",
    meaning: "Source image for image processing operation",
};
/// DerivationCodeSequence of each frame (CID 7203): Segmentation (DCM 113076).
pub const DERIVATION_SEGMENTATION: Code = Code {
    value: "113076",
    scheme: "DCM",
    meaning: "Segmentation",
};

/// What the segment is and who made it; everything [`build_seg`] cannot take from the source.
#[derive(Clone, Debug)]
pub struct SegmentDescription {
    /// SegmentLabel (0062,0005), LO, e.g. `Bone`.
    pub segment_label: String,
    /// SegmentAlgorithmName (0062,0009) and AlgorithmName (0066,0036), LO, e.g. `osteon-threshold`.
    pub algorithm_name: String,
    /// AlgorithmVersion (0066,0031), LO.
    pub algorithm_version: String,
    /// AlgorithmFamilyCodeSequence (0066,002F), CID 7162, e.g. [`FAMILY_HISTOGRAM_ANALYSIS`].
    pub algorithm_family: Code,
    /// `true`: Anatomical Structure / Skull; `false`: Tissue / Bone (docs/design.md).
    pub skull_specific: bool,
    /// SeriesDescription (0008,103E), LO.
    pub series_description: String,
    /// SeriesNumber (0020,0011), IS; `None` (default): derived from the source's, see
    /// [`crate::dicom::write::derived_series_number`] (100 x source + 1, e.g. 20201 for series 202).
    pub series_number: Option<i64>,
    /// InstanceNumber (0020,0013), IS.
    pub instance_number: i64,
    /// ContentLabel (0070,0080), CS: upper-case letters, digits, space and `_`, at most 16 characters.
    pub content_label: String,
    /// ContentDescription (0070,0081), LO (may be empty).
    pub content_description: String,
    /// ContentCreatorName (0070,0084), PN (may be empty: type 2).
    pub content_creator_name: String,
    /// Enhanced General Equipment module.
    pub equipment: Equipment,
}

impl Default for SegmentDescription {
    fn default() -> Self {
        SegmentDescription {
            segment_label: "Bone".into(),
            algorithm_name: "osteon".into(),
            algorithm_version: env!("CARGO_PKG_VERSION").into(),
            algorithm_family: FAMILY_HISTOGRAM_ANALYSIS,
            skull_specific: false,
            series_description: "Osteon bone segmentation".into(),
            series_number: None,
            instance_number: 1,
            content_label: "BONE".into(),
            content_description: "Bone segmentation by Osteon".into(),
            content_creator_name: String::new(),
            equipment: Equipment::default(),
        }
    }
}

/// Errors of the Segmentation writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum SegError {
    /// The mask does not have the `[k, j, i]` shape of the volume.
    #[error("mask shape {mask:?} differs from the volume [slices, Rows, Columns] {volume:?}")]
    ShapeMismatch {
        mask: [usize; 3],
        volume: [usize; 3],
    },
    /// The volume is unusable as a source (no slices, slice list and geometry disagree, too large).
    #[error("source volume unusable: {0}")]
    BadVolume(String),
    /// A required attribute of the source series is missing.
    #[error("source series lacks {0}")]
    MissingSource(&'static str),
    /// A value given in the [`SegmentDescription`] or the geometry cannot be encoded.
    #[error("cannot encode {attribute}: {reason}")]
    BadValue {
        attribute: &'static str,
        reason: String,
    },
    /// Building the file meta group failed.
    #[error("building the file meta group: {0}")]
    Meta(#[from] Box<dicom_object::WithMetaError>),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: Box<dicom_object::WriteError>,
    },
    /// Opening or parsing a SEG file failed.
    #[error("reading {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<dicom_object::ReadError>,
    },
    /// A SEG being read lacks an attribute or has one we cannot use.
    #[error("{path}: {attribute}: {reason}")]
    BadSeg {
        path: PathBuf,
        attribute: &'static str,
        reason: String,
    },
}

/// Checks a CS value (PS3.5 6.2: upper case, digits, space, underscore; at most 16 characters).
fn check_cs(attribute: &'static str, v: &str) -> Result<(), SegError> {
    if shared::is_cs(v) {
        Ok(())
    } else {
        Err(SegError::BadValue {
            attribute,
            reason: format!("{v:?} is not a valid CS value"),
        })
    }
}

fn ds(
    attribute: &'static str,
    tag: dicom_core::Tag,
    v: &[f64],
) -> Result<DataElement<InMemDicomObject>, SegError> {
    ds_el(tag, v).ok_or_else(|| SegError::BadValue {
        attribute,
        reason: format!("{v:?} is not finite"),
    })
}

/// Builds a BINARY DICOM Segmentation (PS3.3 A.51) of `mask` on the grid of `ct`.
///
/// * `mask`: `[k, j, i]` = `[slice, row, column]`, same shape as the volume; non-zero = in the
///   segment. Frame `k` of the SEG is source slice `ct.slices[k]` at `ct.geometry.ipp[k]`; every slice
///   gets a frame, empty ones included.
/// * Patient and study are copied from `ct.info` (same StudyInstanceUID and FrameOfReferenceUID);
///   SeriesInstanceUID and SOPInstanceUID are new.
/// * Geometry: IOP and PixelSpacing shared; SliceThickness = nominal slice spacing (mm);
///   SpacingBetweenSlices only when all spacings agree within 1 µm; per-frame IPP is the source
///   slice's IPP written with the same number ([`format_ds`]).
///
/// Errors: [`SegError::ShapeMismatch`], [`SegError::BadVolume`], [`SegError::MissingSource`]
/// (StudyInstanceUID, SeriesInstanceUID or FrameOfReferenceUID), [`SegError::BadValue`] (invalid ContentLabel,
/// non-finite geometry), [`SegError::Meta`].
pub fn build_seg(
    ct: &CtVolume,
    mask: ArrayView3<u8>,
    d: &SegmentDescription,
) -> Result<FileDicomObject<InMemDicomObject>, SegError> {
    let g = &ct.geometry;
    let volume = g.dims();
    let m = mask.shape();
    let mask_dims = [m[0], m[1], m[2]];
    if mask_dims != volume {
        return Err(SegError::ShapeMismatch {
            mask: mask_dims,
            volume,
        });
    }
    if ct.slices.len() != g.slices() {
        return Err(SegError::BadVolume(format!(
            "{} slice references for {} slice positions",
            ct.slices.len(),
            g.slices()
        )));
    }
    if g.slices() == 0 || g.rows == 0 || g.cols == 0 {
        return Err(SegError::BadVolume(format!("empty volume {volume:?}")));
    }
    let (rows, cols) = match (u16::try_from(g.rows), u16::try_from(g.cols)) {
        (Ok(r), Ok(c)) => (r, c),
        _ => {
            return Err(SegError::BadVolume(format!(
                "Rows/Columns {volume:?} exceed 65535"
            )))
        }
    };
    if let Some(attr) = shared::missing_source_uid(&ct.info) {
        return Err(SegError::MissingSource(attr));
    }
    check_cs("ContentLabel (0070,0080)", &d.content_label)?;

    let mut obj = InMemDicomObject::new_empty();
    let sop_instance_uid = new_uid();
    let (date, time) = shared::now_da_tm();

    // SOP Common, Patient, General Study, General + Segmentation Series (C.8.20.1), Frame of
    // Reference, (Enhanced) General Equipment.
    shared::derived_object_header(
        &mut obj,
        &ct.info,
        &shared::DerivedSeries {
            sop_class_uid: SEGMENTATION_STORAGE,
            sop_instance_uid: &sop_instance_uid,
            modality: "SEG",
            series_number: d
                .series_number
                .unwrap_or_else(|| shared::derived_series_number(ct.info.series_number, 1)),
            series_description: &d.series_description,
            equipment: &d.equipment,
        },
        (&date, &time),
    );
    // General Image (C.7.6.1) + Segmentation Image (C.8.20.2) incl. Content Identification
    obj.put(strs_el(
        tags::IMAGE_TYPE,
        VR::CS,
        &["DERIVED".into(), "PRIMARY".into()],
    ));
    obj.put(str_el(
        tags::INSTANCE_NUMBER,
        VR::IS,
        &d.instance_number.to_string(),
    ));
    obj.put(str_el(tags::CONTENT_DATE, VR::DA, &date));
    obj.put(str_el(tags::CONTENT_TIME, VR::TM, &time));
    obj.put(str_el(tags::CONTENT_LABEL, VR::CS, &d.content_label));
    obj.put(str_el(
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        &d.content_description,
    ));
    obj.put(str_el(
        tags::CONTENT_CREATOR_NAME,
        VR::PN,
        &d.content_creator_name,
    ));
    obj.put(str_el(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"));
    shared::put_lossy_history(&mut obj, ct.info.lossy_compression.as_ref());
    obj.put(str_el(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"));
    obj.put(str_el(tags::SEGMENTS_OVERLAP, VR::CS, "NO"));
    obj.put(seq_el(tags::SEGMENT_SEQUENCE, vec![segment_item(d)]));
    // Image Pixel (C.7.6.3)
    obj.put(us_el(tags::SAMPLES_PER_PIXEL, 1));
    obj.put(str_el(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    obj.put(us_el(tags::ROWS, rows));
    obj.put(us_el(tags::COLUMNS, cols));
    obj.put(us_el(tags::BITS_ALLOCATED, 1));
    obj.put(us_el(tags::BITS_STORED, 1));
    obj.put(us_el(tags::HIGH_BIT, 0));
    obj.put(us_el(tags::PIXEL_REPRESENTATION, 0));
    let count = mask.len();
    let pixels = bits::pack_bits(mask.iter().copied(), count);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    // Multi-frame Functional Groups (C.7.6.16)
    obj.put(str_el(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        &g.slices().to_string(),
    ));
    obj.put(seq_el(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared_groups(ct)?],
    ));
    let mut frames = Vec::with_capacity(g.slices());
    for k in 0..g.slices() {
        frames.push(frame_item(ct, k)?);
    }
    obj.put(seq_el(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frames));
    // Multi-frame Dimension (C.7.6.17)
    dimensions(&mut obj);
    // Common Instance Reference (C.12.2)
    obj.put(seq_el(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![shared::referenced_series(ct)],
    ));

    Ok(shared::into_part10(obj)?)
}

/// Writes a SEG (or any object built here) as a Part-10 file, explicit VR little endian.
pub fn write(obj: &FileDicomObject<InMemDicomObject>, path: &Path) -> Result<(), SegError> {
    shared::write_part10(obj, path).map_err(|source| SegError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The one item of SegmentSequence (C.8.20.2, Segment Description Macro C.8.20.2.3).
fn segment_item(d: &SegmentDescription) -> InMemDicomObject {
    let (category, kind) = if d.skull_specific {
        (CATEGORY_ANATOMICAL_STRUCTURE, TYPE_SKULL)
    } else {
        (CATEGORY_TISSUE, TYPE_BONE)
    };
    let algorithm = InMemDicomObject::from_element_iter([
        seq_el(
            tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
            vec![code_item(d.algorithm_family)],
        ),
        str_el(tags::ALGORITHM_VERSION, VR::LO, &d.algorithm_version),
        str_el(tags::ALGORITHM_NAME, VR::LO, &d.algorithm_name),
    ]);
    InMemDicomObject::from_element_iter([
        seq_el(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code_item(category)],
        ),
        us_el(tags::SEGMENT_NUMBER, 1),
        str_el(tags::SEGMENT_LABEL, VR::LO, &d.segment_label),
        seq_el(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![algorithm],
        ),
        str_el(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
        str_el(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &d.algorithm_name),
        seq_el(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![code_item(kind)],
        ),
    ])
}

/// SharedFunctionalGroupsSequence item: Plane Orientation and Pixel Measures.
fn shared_groups(ct: &CtVolume) -> Result<InMemDicomObject, SegError> {
    let g = &ct.geometry;
    let orientation = InMemDicomObject::from_element_iter([ds(
        "ImageOrientationPatient",
        tags::IMAGE_ORIENTATION_PATIENT,
        &g.iop,
    )?]);
    let nominal = g.nominal_slice_spacing();
    let mut measures = InMemDicomObject::from_element_iter([
        ds("PixelSpacing", tags::PIXEL_SPACING, &g.pixel_spacing)?,
        ds("SliceThickness", tags::SLICE_THICKNESS, &[nominal])?,
    ]);
    let spacings = g.slice_spacings();
    if !spacings.is_empty() && spacings.iter().all(|s| (s - nominal).abs() <= 1e-3) {
        measures.put(ds(
            "SpacingBetweenSlices",
            tags::SPACING_BETWEEN_SLICES,
            &[nominal],
        )?);
    }
    Ok(InMemDicomObject::from_element_iter([
        seq_el(tags::PLANE_ORIENTATION_SEQUENCE, vec![orientation]),
        seq_el(tags::PIXEL_MEASURES_SEQUENCE, vec![measures]),
    ]))
}

/// PerFrameFunctionalGroupsSequence item of frame `k` (0-based).
fn frame_item(ct: &CtVolume, k: usize) -> Result<InMemDicomObject, SegError> {
    let s = &ct.slices[k];
    let mut source = InMemDicomObject::from_element_iter([
        str_el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &s.sop_class_uid),
        str_el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &s.sop_instance_uid,
        ),
        str_el(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"),
        seq_el(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![code_item(PURPOSE_SOURCE_IMAGE)],
        ),
    ]);
    if let Some(f) = s.frame_number {
        source.put(str_el(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            &f.to_string(),
        ));
    }
    let derivation = InMemDicomObject::from_element_iter([
        seq_el(tags::SOURCE_IMAGE_SEQUENCE, vec![source]),
        seq_el(
            tags::DERIVATION_CODE_SEQUENCE,
            vec![code_item(DERIVATION_SEGMENTATION)],
        ),
    ]);
    let index = u32::try_from(k + 1).map_err(|_| SegError::BadVolume("too many slices".into()))?;
    let content = InMemDicomObject::from_element_iter([DataElement::new(
        tags::DIMENSION_INDEX_VALUES,
        VR::UL,
        PrimitiveValue::U32([1u32, index].into_iter().collect()),
    )]);
    let position = InMemDicomObject::from_element_iter([ds(
        "ImagePositionPatient",
        tags::IMAGE_POSITION_PATIENT,
        &ct.geometry.ipp[k],
    )?]);
    let segment = InMemDicomObject::from_element_iter([us_el(tags::REFERENCED_SEGMENT_NUMBER, 1)]);
    Ok(InMemDicomObject::from_element_iter([
        seq_el(tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation]),
        seq_el(tags::FRAME_CONTENT_SEQUENCE, vec![content]),
        seq_el(tags::PLANE_POSITION_SEQUENCE, vec![position]),
        seq_el(tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![segment]),
    ]))
}

/// Multi-frame Dimension module: frames indexed by (ReferencedSegmentNumber, ImagePositionPatient),
/// as highdicom does.
fn dimensions(obj: &mut InMemDicomObject) {
    let org = new_uid();
    let index = |pointer, group, label: &str| {
        InMemDicomObject::from_element_iter([
            str_el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &org),
            DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::from(pointer),
            ),
            DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::from(group),
            ),
            str_el(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    obj.put(seq_el(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([str_el(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &org,
        )])],
    ));
    obj.put(seq_el(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            index(
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "Segment Number",
            ),
            index(
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "Image Position Patient",
            ),
        ],
    ));
}

#[cfg(test)]
mod tests {
    #[test]
    fn sop_class_matches_dictionary() {
        assert_eq!(
            super::SEGMENTATION_STORAGE,
            dicom_dictionary_std::uids::SEGMENTATION_STORAGE
        );
    }
}
