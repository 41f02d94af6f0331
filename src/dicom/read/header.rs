//! Reading one file's header for series assembly: what kind of object it is, its identity, its
//! per-frame geometry (IPP, IOP, PixelSpacing; PS3.3 C.7.6.2, or the functional groups of an
//! Enhanced CT, C.7.6.16), its lossy-compression history, and any defect that must refuse its
//! series. Files that are not axial CT are [`Skipped`] with a [`SkipReason`].

use std::path::{Path, PathBuf};

use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::super::meta::{self, DicomFile, ReadMode, PIXEL_DATA};
use super::super::pixels::{self, floats_of, int_of, items, str_of, PixelError};
use super::SeriesInfo;

/// Geometry of one frame (a single-frame instance has one), LPS mm (PS3.3 C.7.6.2).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameHeader {
    /// ImagePositionPatient (0020,0032), or PlanePositionSequence in the functional groups.
    pub ipp: [f64; 3],
    /// ImageOrientationPatient (0020,0037), or PlaneOrientationSequence.
    pub iop: [f64; 6],
    /// PixelSpacing (0028,0030) `[Δj, Δi]`, or PixelMeasuresSequence.
    pub pixel_spacing: [f64; 2],
    /// 1-based frame number for multi-frame instances, `None` for single-frame ones.
    pub frame_number: Option<u32>,
}

/// Header of one CT instance kept by [`scan`].
#[derive(Clone, Debug)]
pub struct InstanceHeader {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub acquisition_number: Option<i64>,
    pub instance_number: Option<i64>,
    /// Rows (`j` extent).
    pub rows: usize,
    /// Columns (`i` extent).
    pub cols: usize,
    /// One entry per frame, in frame order.
    pub frames: Vec<FrameHeader>,
    /// Identity and scanner attributes of this instance.
    pub info: SeriesInfo,
    /// Set when the header was read (so the series is known) but the slice cannot be used:
    /// [`super::load_volume`] then refuses the whole acquisition naming this file, never building
    /// a volume with a hole.
    pub defect: Option<SliceDefect>,
}

/// Why a slice whose series is known cannot be used.
#[derive(Clone, Debug)]
pub enum SliceDefect {
    /// The pixel attributes or the PixelData element are invalid (checked on the header).
    Pixel(PixelError),
    /// Anything else (truncated PixelData, PixelSpacing out of range...), with the attribute named.
    Unreadable(String),
    /// Same SOP Instance UID as `other`, with different content.
    ConflictingDuplicate { other: PathBuf },
}

/// Why a file was left out of every series.
#[derive(Clone, Debug, PartialEq)]
pub enum SkipReason {
    /// Not readable as DICOM (message from [`meta::open`]).
    Unreadable(String),
    /// SOP Class UID other than CT Image, Enhanced CT or Legacy Converted Enhanced CT Image Storage.
    SopClass(String),
    /// Modality (0008,0060) other than CT.
    Modality(String),
    /// ImageType (0008,0008) contains LOCALIZER.
    Localizer,
    /// No (7FE0,0010) PixelData.
    NoPixelData,
    /// The named geometry attribute is missing or malformed.
    NoGeometry(&'static str),
    /// Same SOP Instance UID as an instance already kept, byte-identical content.
    Duplicate { kept: PathBuf },
    /// A UID attribute that is not a valid UI value (digits and dots, at most 64 characters,
    /// PS3.5 9.1); `value` is escaped.
    BadUid {
        attribute: &'static str,
        value: String,
    },
}

impl std::fmt::Display for SkipReason {
    /// Control characters (NUL included) are escaped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.raw();
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        f.write_str(&out)
    }
}

impl SkipReason {
    fn raw(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let f = &mut s;
        let _ = match self {
            SkipReason::Unreadable(e) => write!(f, "unreadable: {e}"),
            SkipReason::SopClass(c) => write!(f, "SOP Class UID {c} is not CT image storage"),
            SkipReason::Modality(m) => write!(f, "Modality {m:?} is not CT"),
            SkipReason::Localizer => write!(f, "ImageType contains LOCALIZER"),
            SkipReason::NoPixelData => write!(f, "no PixelData (7FE0,0010)"),
            SkipReason::NoGeometry(a) => write!(f, "missing or malformed {a}"),
            SkipReason::Duplicate { kept } => {
                write!(f, "duplicate SOP Instance UID of {}", kept.display())
            }
            SkipReason::BadUid { attribute, value } => {
                write!(f, "{attribute} {value:?} is not a valid UID (digits and dots, at most 64 characters)")
            }
        };
        s
    }
}

/// Whether `uid` is a valid UI value (PS3.5 9.1): 1..=64 characters, components of digits
/// separated by single dots, no leading zero in a multi-digit component.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && !(c.len() > 1 && c.starts_with('0'))
        })
}

/// A file left out, with its reason.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// Reads one file's header (the pre-walk of [`meta::open_checked`] stops at PixelData) and keeps
/// it if it is a CT image with pixel data, valid UIDs and full geometry. Problems found once the
/// series is known (pixel attributes, PixelData length or truncation, PixelSpacing out of
/// [`PIXEL_SPACING_RANGE_MM`]) are kept as [`InstanceHeader::defect`] so the series is refused
/// naming the file.
pub fn read_header(path: &Path) -> Result<InstanceHeader, Skipped> {
    let skip = |reason| Skipped {
        path: path.to_owned(),
        reason,
    };
    let unreadable = |e: meta::MetaError| skip(SkipReason::Unreadable(e.to_string()));
    let opened = meta::open_checked(path, ReadMode::HeaderOnly).map_err(unreadable)?;
    let ts = opened
        .obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    // Deflated data sets are not pre-walked: read them whole to learn about PixelData.
    let (obj, layout, has_pixels) = if meta::walk::Syntax::of(&ts).is_none() {
        let full = meta::open_checked(path, ReadMode::Full).map_err(unreadable)?;
        let has = full.obj.element_opt(PIXEL_DATA).ok().flatten().is_some();
        (full.obj, None, has)
    } else {
        let has = opened.pixel_data.is_some();
        (opened.obj, opened.pixel_data, has)
    };
    let sop_class_uid = str_of(&obj, tags::SOP_CLASS_UID).unwrap_or_else(|| {
        obj.meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string()
    });
    if ![
        uids::CT_IMAGE_STORAGE,
        uids::ENHANCED_CT_IMAGE_STORAGE,
        uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
    ]
    .contains(&sop_class_uid.as_str())
    {
        return Err(skip(SkipReason::SopClass(sop_class_uid)));
    }
    let mut info = series_info(&obj);
    info.lossy_compression = super::lossy::history(&obj, &ts, layout);
    if info.modality != "CT" {
        return Err(skip(SkipReason::Modality(info.modality)));
    }
    if info
        .image_type
        .iter()
        .any(|t| t.eq_ignore_ascii_case("LOCALIZER"))
    {
        return Err(skip(SkipReason::Localizer));
    }
    let sop_instance_uid = str_of(&obj, tags::SOP_INSTANCE_UID);
    for (attribute, value, required) in [
        (
            "SeriesInstanceUID (0020,000E)",
            Some(info.series_instance_uid.as_str()),
            true,
        ),
        (
            "StudyInstanceUID (0020,000D)",
            Some(info.study_instance_uid.as_str()),
            false,
        ),
        (
            "FrameOfReferenceUID (0020,0052)",
            Some(info.frame_of_reference_uid.as_str()),
            false,
        ),
        (
            "SOPInstanceUID (0008,0018)",
            sop_instance_uid.as_deref(),
            false,
        ),
    ] {
        let v = value.unwrap_or_default();
        if (required || !v.is_empty()) && !valid_uid(v) {
            return Err(skip(SkipReason::BadUid {
                attribute,
                value: v.escape_debug().to_string(),
            }));
        }
    }
    if !has_pixels {
        return Err(skip(SkipReason::NoPixelData));
    }
    let rows = int_of(&obj, tags::ROWS)
        .filter(|v| *v > 0)
        .ok_or_else(|| skip(SkipReason::NoGeometry("Rows (0028,0010)")))?;
    let cols = int_of(&obj, tags::COLUMNS)
        .filter(|v| *v > 0)
        .ok_or_else(|| skip(SkipReason::NoGeometry("Columns (0028,0011)")))?;
    let (n_frames, mut defect) = match pixels::number_of_frames(&obj, path) {
        Ok(n) => (n, None),
        Err(e) => (1, Some(SliceDefect::Pixel(e))),
    };
    let frames = match frame_headers(&obj, n_frames as usize) {
        Ok(f) => f,
        Err(FrameError::Missing(a)) => return Err(skip(SkipReason::NoGeometry(a))),
        Err(FrameError::Range(r)) => {
            defect = defect.or(Some(SliceDefect::Unreadable(r)));
            let n = if obj
                .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
                .ok()
                .flatten()
                .is_some()
            {
                n_frames as usize
            } else {
                1
            };
            vec![
                FrameHeader {
                    ipp: [0.0; 3],
                    iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    pixel_spacing: [1.0, 1.0],
                    frame_number: None,
                };
                n
            ]
        }
    };
    if defect.is_none() {
        defect = pixel_defect(&obj, path, layout).err();
    }
    Ok(InstanceHeader {
        path: path.to_owned(),
        sop_class_uid,
        sop_instance_uid: sop_instance_uid.unwrap_or_else(|| path.display().to_string()),
        acquisition_number: int_of(&obj, tags::ACQUISITION_NUMBER),
        instance_number: int_of(&obj, tags::INSTANCE_NUMBER),
        rows: rows as usize,
        cols: cols as usize,
        frames,
        info,
        defect,
    })
}

/// Pixel attributes (via [`pixels::pixel_format`]) and the declared PixelData against the header:
/// native data must hold Rows x Columns x NumberOfFrames x BitsAllocated/8 bytes and be present in
/// full in the file; the encoding must match the transfer syntax (PS3.5 A.4).
fn pixel_defect(
    obj: &DicomFile,
    path: &Path,
    layout: Option<meta::PixelDataLayout>,
) -> Result<(), SliceDefect> {
    let fmt = pixels::pixel_format(obj, path).map_err(SliceDefect::Pixel)?;
    let Some(l) = layout else { return Ok(()) };
    let encapsulated = pixels::is_encapsulated_ts(&fmt.transfer_syntax);
    let mismatch = |found, expected| {
        SliceDefect::Pixel(PixelError::EncapsulationMismatch {
            file: path.to_owned(),
            transfer_syntax: fmt.transfer_syntax.clone(),
            found,
            expected,
        })
    };
    match l.declared_len {
        None if !encapsulated => Err(mismatch(
            "encapsulated fragments",
            "native (defined length)",
        )),
        Some(_) if encapsulated => Err(mismatch(
            "native (defined length)",
            "encapsulated fragments",
        )),
        None => Ok(()),
        Some(len) => {
            let expected = fmt.rows as u64
                * fmt.cols as u64
                * fmt.frames as u64
                * (fmt.bits_allocated as u64 / 8);
            if (len as u64) < expected {
                return Err(SliceDefect::Pixel(PixelError::PixelDataLength {
                    file: path.to_owned(),
                    rows: fmt.rows,
                    cols: fmt.cols,
                    frames: fmt.frames,
                    bits_allocated: fmt.bits_allocated,
                    got: len as u64,
                    expected,
                }));
            }
            if len as usize > l.available {
                return Err(SliceDefect::Unreadable(format!(
                    "PixelData (7FE0,0010) declares {len} bytes, the file holds {} (truncated)",
                    l.available
                )));
            }
            Ok(())
        }
    }
}

/// Accepted PixelSpacing (0028,0030) values, mm: from micro-CT-like 0.01 mm to 50 mm; anything
/// outside is a broken header (a CT pixel is 0.1-2 mm).
pub const PIXEL_SPACING_RANGE_MM: (f64, f64) = (0.01, 50.0);

/// Largest accepted |coordinate| of ImagePositionPatient (0020,0032), mm: 100 m, far beyond any
/// gantry; positions beyond it (1e12 mm in a bad-input trial) lose the slice spacing to rounding
/// and only fail later, in the mesh, with a message about surface orientation.
pub const MAX_POSITION_MM: f64 = 1e5;

/// Why [`frame_headers`] failed.
enum FrameError {
    /// The named geometry attribute is missing or malformed.
    Missing(&'static str),
    /// A value out of range (message names the attribute).
    Range(String),
}

fn floats<const N: usize>(o: &InMemDicomObject, tag: dicom_core::Tag) -> Option<[f64; N]> {
    let v = floats_of(o, tag)?;
    let a: [f64; N] = v.get(..N)?.try_into().ok()?;
    a.iter().all(|x| x.is_finite()).then_some(a)
}

/// Per-frame geometry: top-level attributes for single-frame CT; for multi-frame instances the
/// per-frame functional groups, falling back to the shared ones (PS3.3 C.7.6.16). Err names the
/// missing attribute.
fn frame_headers(obj: &DicomFile, n: usize) -> Result<Vec<FrameHeader>, FrameError> {
    const IPP: &str = "ImagePositionPatient (0020,0032)";
    const IOP: &str = "ImageOrientationPatient (0020,0037)";
    const PS: &str = "PixelSpacing (0028,0030)";
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    if per_frame.is_empty() && shared.is_empty() {
        let miss = FrameError::Missing;
        let iop = floats::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT).ok_or(miss(IOP))?;
        let ipp = floats::<3>(obj, tags::IMAGE_POSITION_PATIENT).ok_or(miss(IPP))?;
        let pixel_spacing = floats::<2>(obj, tags::PIXEL_SPACING).ok_or(miss(PS))?;
        check_iop(&iop).ok_or(miss(IOP))?;
        check_spacing(&pixel_spacing)?;
        check_position(&ipp)?;
        return Ok(vec![FrameHeader {
            ipp,
            iop,
            pixel_spacing,
            frame_number: None,
        }]);
    }
    let in_group = |group: Option<&InMemDicomObject>, seq, tag| -> Option<Vec<f64>> {
        let item = items(group?, seq).into_iter().next()?;
        floats_of(&item, tag)
    };
    let get = |f: usize, seq, tag, len: usize| -> Option<Vec<f64>> {
        in_group(per_frame.get(f), seq, tag)
            .or_else(|| in_group(shared.first(), seq, tag))
            .or_else(|| floats_of(obj, tag))
            .filter(|v| v.len() >= len && v.iter().all(|x| x.is_finite()))
    };
    (0..n)
        .map(|f| {
            let ipp = get(
                f,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
                3,
            )
            .ok_or(FrameError::Missing(IPP))?;
            let iop = get(
                f,
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
                6,
            )
            .ok_or(FrameError::Missing(IOP))?;
            let ps = get(f, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING, 2)
                .ok_or(FrameError::Missing(PS))?;
            let iop = [iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]];
            check_iop(&iop).ok_or(FrameError::Missing(IOP))?;
            check_spacing(&[ps[0], ps[1]])?;
            check_position(&[ipp[0], ipp[1], ipp[2]])?;
            Ok(FrameHeader {
                ipp: [ipp[0], ipp[1], ipp[2]],
                iop,
                pixel_spacing: [ps[0], ps[1]],
                frame_number: Some(f as u32 + 1),
            })
        })
        .collect()
}

/// PixelSpacing must lie in [`PIXEL_SPACING_RANGE_MM`].
fn check_spacing(ps: &[f64; 2]) -> Result<(), FrameError> {
    let (lo, hi) = PIXEL_SPACING_RANGE_MM;
    if ps.iter().all(|v| (lo..=hi).contains(v)) {
        Ok(())
    } else {
        Err(FrameError::Range(format!(
            "PixelSpacing (0028,0030) {ps:?} outside [{lo}, {hi}] mm"
        )))
    }
}

/// Every coordinate of ImagePositionPatient within +-[`MAX_POSITION_MM`].
fn check_position(ipp: &[f64; 3]) -> Result<(), FrameError> {
    if ipp.iter().all(|v| v.abs() <= MAX_POSITION_MM) {
        Ok(())
    } else {
        Err(FrameError::Range(format!(
            "ImagePositionPatient (0020,0032) {ipp:?} beyond +-{MAX_POSITION_MM} mm (no scanner \
             is that large)"
        )))
    }
}

/// IOP must hold two unit vectors (tolerance 1e-2) that are orthogonal (|dot| < 1e-2).
fn check_iop(iop: &[f64; 6]) -> Option<()> {
    let r = [iop[0], iop[1], iop[2]];
    let c = [iop[3], iop[4], iop[5]];
    let d = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    ((d(r, r) - 1.0).abs() < 1e-2 && (d(c, c) - 1.0).abs() < 1e-2 && d(r, c).abs() < 1e-2)
        .then_some(())
}

/// Fills [`SeriesInfo`] from one instance (empty/None when absent; ImageType split on '\').
pub fn series_info(obj: &InMemDicomObject) -> SeriesInfo {
    let s = |t| str_of(obj, t).unwrap_or_default();
    let f = |t| floats_of(obj, t).and_then(|v| v.first().copied());
    SeriesInfo {
        study_instance_uid: s(tags::STUDY_INSTANCE_UID),
        series_instance_uid: s(tags::SERIES_INSTANCE_UID),
        frame_of_reference_uid: s(tags::FRAME_OF_REFERENCE_UID),
        modality: s(tags::MODALITY),
        patient_name: s(tags::PATIENT_NAME),
        patient_id: s(tags::PATIENT_ID),
        patient_birth_date: s(tags::PATIENT_BIRTH_DATE),
        patient_sex: s(tags::PATIENT_SEX),
        study_date: s(tags::STUDY_DATE),
        study_time: s(tags::STUDY_TIME),
        study_id: s(tags::STUDY_ID),
        accession_number: s(tags::ACCESSION_NUMBER),
        referring_physician_name: s(tags::REFERRING_PHYSICIAN_NAME),
        series_number: int_of(obj, tags::SERIES_NUMBER),
        series_description: s(tags::SERIES_DESCRIPTION),
        body_part_examined: s(tags::BODY_PART_EXAMINED),
        image_type: s(tags::IMAGE_TYPE)
            .split('\\')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        manufacturer: s(tags::MANUFACTURER),
        manufacturer_model_name: s(tags::MANUFACTURER_MODEL_NAME),
        station_name: s(tags::STATION_NAME),
        device_serial_number: s(tags::DEVICE_SERIAL_NUMBER),
        convolution_kernel: s(tags::CONVOLUTION_KERNEL),
        kvp: f(tags::KVP),
        xray_tube_current: f(tags::X_RAY_TUBE_CURRENT),
        exposure: f(tags::EXPOSURE),
        slice_thickness: f(tags::SLICE_THICKNESS),
        // Needs the transfer syntax and PixelData layout: set by read_header.
        lossy_compression: None,
    }
}
