//! Reading a DICOM Segmentation back: frames, per-frame IPP, referenced source instances and segment
//! numbers. Used by the tests (ours and reference SEGs) and by QA.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{open_file, InMemDicomObject};
use ndarray::Array3;

use super::bits::unpack_bits;
use super::SegError;

/// Frames of a SEG as stored, with what each frame refers to.
#[derive(Clone, Debug)]
pub struct SegFrames {
    /// Pixel values `[frame, row, column]`: 0/1 for BitsAllocated 1 (BINARY), the stored byte for
    /// BitsAllocated 8 (FRACTIONAL, LABELMAP).
    pub frames: Array3<u8>,
    /// ImagePositionPatient of each frame (LPS mm), from its PlanePositionSequence (per frame, else
    /// shared).
    pub ipp: Vec<[f64; 3]>,
    /// ReferencedSOPInstanceUIDs of each frame's DerivationImageSequence → SourceImageSequence (empty
    /// when the frame lists none).
    pub source_sop_instance_uids: Vec<Vec<String>>,
    /// ReferencedSegmentNumber of each frame (SegmentIdentificationSequence); `None` if absent.
    pub segment_numbers: Vec<Option<u16>>,
    /// FrameOfReferenceUID (0020,0052), trimmed; `None` if absent.
    pub frame_of_reference_uid: Option<String>,
}

/// Reads the frames of an uncompressed SEG (any native transfer syntax; 1-bit frames are unpacked
/// here as one continuous LSB-first bit stream, PS3.5 8.1.1, so Rows × Columns need not be a multiple
/// of 8).
///
/// Errors: [`SegError::Open`] (unreadable file), [`SegError::BadSeg`] naming the attribute that is
/// missing or unusable (Rows, Columns, NumberOfFrames, BitsAllocated other than 1/8, encapsulated or
/// too short PixelData, per-frame IPP missing).
pub fn read_seg_mask(path: &Path) -> Result<SegFrames, SegError> {
    let obj = open_file(path).map_err(|source| SegError::Open {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let bad = |attribute: &'static str, reason: String| SegError::BadSeg {
        path: path.to_owned(),
        attribute,
        reason,
    };
    let int = |tag, attribute: &'static str| -> Result<usize, SegError> {
        let e = obj
            .get(tag)
            .ok_or_else(|| bad(attribute, "missing".into()))?;
        let s = e.to_str().map_err(|err| bad(attribute, err.to_string()))?;
        s.trim()
            .trim_end_matches('\0')
            .parse::<usize>()
            .map_err(|err| bad(attribute, format!("{s:?}: {err}")))
    };
    let rows = int(tags::ROWS, "Rows (0028,0010)")?;
    let cols = int(tags::COLUMNS, "Columns (0028,0011)")?;
    let n = match obj.get(tags::NUMBER_OF_FRAMES) {
        Some(_) => int(tags::NUMBER_OF_FRAMES, "NumberOfFrames (0028,0008)")?,
        None => 1,
    };
    let bits = int(tags::BITS_ALLOCATED, "BitsAllocated (0028,0100)")?;
    let count = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or_else(|| {
            bad(
                "NumberOfFrames (0028,0008)",
                format!("{n} x {rows} x {cols} overflows"),
            )
        })?;

    let pd = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| bad("PixelData (7FE0,0010)", "missing".into()))?;
    if pd.fragments().is_some() {
        return Err(bad(
            "PixelData (7FE0,0010)",
            "encapsulated (compressed) pixel data is not supported".into(),
        ));
    }
    let bytes = pd
        .to_bytes()
        .map_err(|err| bad("PixelData (7FE0,0010)", err.to_string()))?;
    let values = match bits {
        1 => unpack_bits(&bytes, count),
        8 => bytes.get(..count).map(<[u8]>::to_vec),
        other => {
            return Err(bad(
                "BitsAllocated (0028,0100)",
                format!("{other} (expected 1 or 8)"),
            ))
        }
    }
    .ok_or_else(|| {
        bad(
            "PixelData (7FE0,0010)",
            format!("{} bytes hold fewer than {count} pixels", bytes.len()),
        )
    })?;
    let frames = Array3::from_shape_vec((n, rows, cols), values)
        .map_err(|err| bad("PixelData (7FE0,0010)", err.to_string()))?;

    let per_frame: &[InMemDicomObject] = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[]);
    let shared: Option<&InMemDicomObject> = obj
        .get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|i| i.first());
    if per_frame.len() != n {
        return Err(bad(
            "PerFrameFunctionalGroupsSequence (5200,9230)",
            format!("{} items for {n} frames", per_frame.len()),
        ));
    }
    let mut ipp = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut segments = Vec::with_capacity(n);
    for (f, item) in per_frame.iter().enumerate() {
        let pos = first_item(item, tags::PLANE_POSITION_SEQUENCE)
            .or_else(|| shared.and_then(|s| first_item(s, tags::PLANE_POSITION_SEQUENCE)))
            .and_then(|p| p.get(tags::IMAGE_POSITION_PATIENT))
            .and_then(|e: &InMemElement| e.to_multi_float64().ok())
            .filter(|v| v.len() == 3)
            .ok_or_else(|| {
                bad(
                    "ImagePositionPatient (0020,0032)",
                    format!("missing or not 3 numbers in frame {}", f + 1),
                )
            })?;
        ipp.push([pos[0], pos[1], pos[2]]);
        let mut uids = Vec::new();
        for d in items(item, tags::DERIVATION_IMAGE_SEQUENCE) {
            for s in items(d, tags::SOURCE_IMAGE_SEQUENCE) {
                if let Some(u) = s
                    .get(tags::REFERENCED_SOP_INSTANCE_UID)
                    .and_then(|e| e.to_str().ok())
                {
                    uids.push(u.trim_end_matches(['\0', ' ']).to_string());
                }
            }
        }
        sources.push(uids);
        segments.push(
            first_item(item, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
                .and_then(|s| s.get(tags::REFERENCED_SEGMENT_NUMBER))
                .and_then(|e| e.to_int::<u16>().ok()),
        );
    }
    let frame_of_reference_uid = obj
        .get(tags::FRAME_OF_REFERENCE_UID)
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).to_owned())
        .filter(|v| !v.is_empty());
    Ok(SegFrames {
        frames,
        ipp,
        source_sop_instance_uids: sources,
        segment_numbers: segments,
        frame_of_reference_uid,
    })
}

fn items(obj: &InMemDicomObject, tag: dicom_core::Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

fn first_item(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<&InMemDicomObject> {
    items(obj, tag).first()
}
