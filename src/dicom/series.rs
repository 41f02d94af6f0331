//! Series assembly: group instances by SeriesInstanceUID, drop what is not axial CT (with a logged
//! reason), split acquisitions and duplicates, sort by IPP projection on the slice normal, and build a
//! [`CtVolume`] with exact per-slice geometry.

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayViewMut2, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::geometry::{dot, norm, sub, Geometry};
use super::meta::{self, MetaError};
use super::pixels::{self, PixelError};

#[path = "read/header.rs"]
mod header;
#[path = "read/lossy.rs"]
mod lossy;
#[path = "read/scan.rs"]
mod scan;
pub use header::{
    read_header, series_info, valid_uid, FrameHeader, InstanceHeader, SkipReason, Skipped,
    SliceDefect, PIXEL_SPACING_RANGE_MM,
};
pub use lossy::{method_of_transfer_syntax, LossyHistory};
pub use scan::{scan, scan_files, Scan, SeriesGroup};

/// Identity and acquisition attributes of a series, taken from its first slice. Empty string / None
/// when the attribute is absent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesInfo {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub modality: String,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part_examined: String,
    pub image_type: Vec<String>,
    pub manufacturer: String,
    pub manufacturer_model_name: String,
    pub station_name: String,
    pub device_serial_number: String,
    pub convolution_kernel: String,
    /// KVP (kV).
    pub kvp: Option<f64>,
    /// XRayTubeCurrent (mA).
    pub xray_tube_current: Option<f64>,
    /// Exposure (mAs).
    pub exposure: Option<f64>,
    /// SliceThickness (mm), nominal; never used for geometry.
    pub slice_thickness: Option<f64>,
    /// Lossy compression the pixels went through (LossyImageCompression "01" or a lossy transfer
    /// syntax); for a volume, the most lossy of its slices' ([`lossy::most_lossy`]). `None`: never.
    pub lossy_compression: Option<LossyHistory>,
}

/// One source slice: a single-frame instance or one frame of a multi-frame (Enhanced CT) instance.
#[derive(Clone, Debug, Serialize)]
pub struct SliceRef {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// 1-based frame number inside a multi-frame source; `None` for single-frame instances.
    pub frame_number: Option<u32>,
    /// File the slice was read from.
    pub path: PathBuf,
}

/// An assembled CT series: HU voxels plus exact geometry.
#[derive(Clone, Debug)]
pub struct CtVolume {
    /// Hounsfield units, shape `[k, j, i]` = `[slices, Rows, Columns]`; PixelPaddingValue voxels are
    /// set to [`AIR_HU`].
    pub hu: Array3<f32>,
    /// Per-slice geometry, same `k` order as `hu`.
    pub geometry: Geometry,
    /// Source slice of each `k`.
    pub slices: Vec<SliceRef>,
    /// Series identity and scanner attributes.
    pub info: SeriesInfo,
}

/// HU given to padding voxels (PixelPaddingValue) and to anything outside the field of view.
pub const AIR_HU: f32 = -1000.0;

/// Why an acquisition was refused as a volume; each names the file and attribute at fault.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// Fewer than 2 slices (e.g. a lone slice of another study/patient/frame of reference that
    /// carries the SeriesInstanceUID of a real series).
    #[error("series {series_instance_uid}: {count} slice(s) ({}), a volume needs at least 2", file.display())]
    TooFewSlices {
        series_instance_uid: String,
        count: usize,
        /// First file of the group.
        file: PathBuf,
    },
    /// A slice of the acquisition is unusable (truncated PixelData, invalid attribute): the series
    /// is refused rather than built with a hole.
    #[error("{file}: slice unusable, series refused: {reason}")]
    UnreadableSlice { file: PathBuf, reason: String },
    /// Two files with the same SOP Instance UID and different content.
    #[error("{a} and {b} share SOP Instance UID {sop_instance_uid} with different content")]
    ConflictingDuplicate {
        a: PathBuf,
        b: PathBuf,
        sop_instance_uid: String,
    },
    /// The volume would hold more than [`MAX_VOLUME_VOXELS`] voxels.
    #[error("series {series_instance_uid} ({}): {slices} slices x {rows} x {cols} = {voxels} voxels, above the cap of {cap}", file.display())]
    TooLarge {
        series_instance_uid: String,
        file: PathBuf,
        slices: usize,
        rows: usize,
        cols: usize,
        voxels: u64,
        cap: u64,
    },
    /// A slice disagrees with the first slice of its acquisition.
    #[error(
        "{file}: {attribute} {found} differs from {expected} of the first slice of the acquisition"
    )]
    InconsistentGeometry {
        file: PathBuf,
        attribute: &'static str,
        expected: String,
        found: String,
    },
    /// Two slices at the same position with different pixels (PS3.3 C.7.6.2.1.1).
    #[error("not a volume: {file_a} and {file_b} lie at the same position, ImagePositionPatient (0020,0032) {position:?} (slice positions must increase by more than 1e-3 mm), with different pixels")]
    NotAVolume {
        file_a: PathBuf,
        file_b: PathBuf,
        position: [f64; 3],
    },
    /// A gap in InstanceNumber together with a spacing jump: slices are missing.
    #[error(
        "missing slice(s) between {file_before} (InstanceNumber {instance_before}) and {file_after} \
         (InstanceNumber {instance_after}): gap {gap_mm:.3} mm, median spacing {median_mm:.3} mm"
    )]
    MissingSlices {
        file_before: PathBuf,
        file_after: PathBuf,
        instance_before: i64,
        instance_after: i64,
        gap_mm: f64,
        median_mm: f64,
    },
    /// A file of the acquisition could not be read again.
    #[error(transparent)]
    Read(#[from] MetaError),
    /// Pixel data could not be decoded.
    #[error(transparent)]
    Pixel(#[from] PixelError),
    /// One file of the series has no RescaleSlope/RescaleIntercept while others have them.
    #[error("{file}: no RescaleSlope (0028,1053) / RescaleIntercept (0028,1052), while {other} of the same series has them: its stored values cannot be taken as HU")]
    MissingRescale { file: PathBuf, other: PathBuf },
}

/// One slice before decoding: its instance, frame and geometry.
struct SlicePlan<'a> {
    inst: &'a InstanceHeader,
    frame: usize,
    geom: &'a FrameHeader,
    proj: f64,
}

/// Tolerance for IOP components and PixelSpacing (mm) inside one acquisition.
const GEOMETRY_TOL: f64 = 1e-4;
/// Two IPPs closer than this (mm) are the same position.
const SAME_POSITION_MM: f64 = 1e-3;
/// Largest volume [`load_volume`] allocates: 2^31 voxels (8 GiB of f32 HU).
pub const MAX_VOLUME_VOXELS: u64 = 1 << 31;

/// Decodes one acquisition into a [`CtVolume`] (pixels decoded in parallel with rayon).
///
/// Slices (one per single-frame instance, one per frame of an Enhanced CT instance) are sorted by
/// the projection of IPP on the normal `row × col` of IOP (PS3.3 C.7.6.2.1.1); gantry tilt and
/// variable spacing are kept exactly in [`Geometry::ipp`]. Identical slices at the same position are
/// kept once (logged).
///
/// Errors: [`SeriesError::TooFewSlices`] (< 2), [`SeriesError::InconsistentGeometry`] (Rows/Columns,
/// IOP, PixelSpacing), [`SeriesError::MissingSlices`] (InstanceNumber gap with a spacing > 1.5x the
/// median), [`SeriesError::NotAVolume`] (same position, different pixels), and read/decode errors.
pub fn load_volume(group: &SeriesGroup) -> Result<CtVolume, SeriesError> {
    for inst in &group.instances {
        let file = inst.path.clone();
        match &inst.defect {
            None => {}
            Some(SliceDefect::Pixel(e)) => return Err(SeriesError::Pixel(e.clone())),
            Some(SliceDefect::Unreadable(reason)) => {
                return Err(SeriesError::UnreadableSlice {
                    file,
                    reason: reason.clone(),
                })
            }
            Some(SliceDefect::ConflictingDuplicate { other }) => {
                return Err(SeriesError::ConflictingDuplicate {
                    a: other.clone(),
                    b: file,
                    sop_instance_uid: inst.sop_instance_uid.clone(),
                })
            }
        }
    }
    let first_file = || {
        group
            .instances
            .first()
            .map(|i| i.path.clone())
            .unwrap_or_default()
    };
    let mut plan: Vec<SlicePlan> = group
        .instances
        .iter()
        .flat_map(|inst| {
            inst.frames
                .iter()
                .enumerate()
                .map(move |(frame, geom)| SlicePlan {
                    inst,
                    frame,
                    geom,
                    proj: 0.0,
                })
        })
        .collect();
    if plan.len() < 2 {
        return Err(SeriesError::TooFewSlices {
            series_instance_uid: group.series_instance_uid.clone(),
            count: plan.len(),
            file: first_file(),
        });
    }
    let first = &plan[0];
    let (rows, cols, iop, spacing) = (
        first.inst.rows,
        first.inst.cols,
        first.geom.iop,
        first.geom.pixel_spacing,
    );
    for p in &plan {
        let bad = |attribute, expected: String, found: String| SeriesError::InconsistentGeometry {
            file: p.inst.path.clone(),
            attribute,
            expected,
            found,
        };
        if (p.inst.rows, p.inst.cols) != (rows, cols) {
            return Err(bad(
                "Rows/Columns (0028,0010/0011)",
                format!("{rows}x{cols}"),
                format!("{}x{}", p.inst.rows, p.inst.cols),
            ));
        }
        if p.geom
            .iop
            .iter()
            .zip(&iop)
            .any(|(a, b)| (a - b).abs() > GEOMETRY_TOL)
        {
            return Err(bad(
                "ImageOrientationPatient (0020,0037)",
                format!("{iop:?}"),
                format!("{:?}", p.geom.iop),
            ));
        }
        if p.geom
            .pixel_spacing
            .iter()
            .zip(&spacing)
            .any(|(a, b)| (a - b).abs() > GEOMETRY_TOL)
        {
            return Err(bad(
                "PixelSpacing (0028,0030)",
                format!("{spacing:?}"),
                format!("{:?}", p.geom.pixel_spacing),
            ));
        }
    }
    let mut geometry = Geometry {
        ipp: vec![],
        iop,
        pixel_spacing: spacing,
        rows,
        cols,
    };
    let normal = geometry.normal();
    for p in &mut plan {
        p.proj = dot(p.geom.ipp, normal);
    }
    plan.sort_by(|a, b| {
        a.proj
            .total_cmp(&b.proj)
            .then(a.inst.path.cmp(&b.inst.path))
            .then(a.frame.cmp(&b.frame))
    });
    check_missing(&plan)?;
    let voxels = plan.len() as u64 * rows as u64 * cols as u64;
    if voxels > MAX_VOLUME_VOXELS {
        return Err(SeriesError::TooLarge {
            series_instance_uid: group.series_instance_uid.clone(),
            file: first_file(),
            slices: plan.len(),
            rows,
            cols,
            voxels,
            cap: MAX_VOLUME_VOXELS,
        });
    }

    let hu = decode_all(&plan, rows, cols)?;
    let (hu, plan) = drop_same_position(hu, plan)?;
    if plan.len() < 2 {
        return Err(SeriesError::TooFewSlices {
            series_instance_uid: group.series_instance_uid.clone(),
            count: plan.len(),
            file: first_file(),
        });
    }
    geometry.ipp = plan.iter().map(|p| p.geom.ipp).collect();
    let slices = plan
        .iter()
        .map(|p| SliceRef {
            sop_class_uid: p.inst.sop_class_uid.clone(),
            sop_instance_uid: p.inst.sop_instance_uid.clone(),
            frame_number: p.geom.frame_number,
            path: p.inst.path.clone(),
        })
        .collect();
    let mut info = plan[0].inst.info.clone();
    info.lossy_compression =
        lossy::most_lossy(plan.iter().map(|p| p.inst.info.lossy_compression.as_ref()));
    info.slice_thickness = median_slice_thickness(
        &group.series_instance_uid,
        plan.iter().map(|p| p.inst.info.slice_thickness),
    );
    tracing::info!(series = %group.series_instance_uid, slices = plan.len(), rows, cols, "volume loaded");
    Ok(CtVolume {
        hu,
        geometry,
        slices,
        info,
    })
}

/// The series' SliceThickness (0018,0050), mm: the median of the slices' finite positive values
/// (the lower middle one for an even count: the GE head's 14 slices of 4 mm and 14 of 7 mm give
/// 4, as its median gap does), so that no single slice, first or last, decides (bad-input trial,
/// session 38: one slice's 5 mm among 1 mm ones routed the series by slice order); `None` when
/// no slice states one. Slices that disagree by more than 10 % are logged.
pub fn median_slice_thickness(
    series: &str,
    values: impl Iterator<Item = Option<f64>>,
) -> Option<f64> {
    let mut t: Vec<f64> = values
        .flatten()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    t.sort_by(f64::total_cmp);
    let (lo, hi) = (*t.first()?, *t.last()?);
    let median = t[(t.len() - 1) / 2];
    if hi > lo * 1.1 {
        tracing::warn!(
            series,
            min_mm = lo,
            max_mm = hi,
            median_mm = median,
            "SliceThickness differs between the slices of the series: the median is used"
        );
    }
    Some(median)
}

/// Refuses an InstanceNumber gap (|Δ| ≥ 2 between neighbours of different instances) that comes
/// with a spacing above 1.5x the median of the non-zero spacings.
fn check_missing(plan: &[SlicePlan]) -> Result<(), SeriesError> {
    let gaps: Vec<f64> = plan.windows(2).map(|w| w[1].proj - w[0].proj).collect();
    let mut nz: Vec<f64> = gaps
        .iter()
        .copied()
        .filter(|g| *g > SAME_POSITION_MM)
        .collect();
    if nz.len() < 2 {
        return Ok(());
    }
    nz.sort_by(f64::total_cmp);
    let median = nz[nz.len() / 2];
    for (w, gap) in plan.windows(2).zip(&gaps) {
        let (a, b) = (&w[0], &w[1]);
        if a.inst.sop_instance_uid == b.inst.sop_instance_uid {
            continue;
        }
        if let (Some(ia), Some(ib)) = (a.inst.instance_number, b.inst.instance_number) {
            if (ib - ia).abs() >= 2 && *gap > 1.5 * median {
                return Err(SeriesError::MissingSlices {
                    file_before: a.inst.path.clone(),
                    file_after: b.inst.path.clone(),
                    instance_before: ia,
                    instance_after: ib,
                    gap_mm: *gap,
                    median_mm: median,
                });
            }
        }
    }
    Ok(())
}

/// Decodes every slice straight into its `[j, i]` plane of the volume, one rayon job per file
/// (a multi-frame file is decoded once), so only a few decoded files exist at a time.
fn decode_all(plan: &[SlicePlan], rows: usize, cols: usize) -> Result<Array3<f32>, SeriesError> {
    let mut hu = Array3::<f32>::from_elem((plan.len(), rows, cols), AIR_HU);
    let mut jobs: Vec<(&Path, Vec<(usize, ArrayViewMut2<f32>)>)> = Vec::new();
    let mut index: std::collections::HashMap<&Path, usize> = std::collections::HashMap::new();
    for (p, view) in plan.iter().zip(hu.axis_iter_mut(Axis(0))) {
        let path = p.inst.path.as_path();
        let j = *index.entry(path).or_insert_with(|| {
            jobs.push((path, Vec::new()));
            jobs.len() - 1
        });
        jobs[j].1.push((p.frame, view));
    }
    let found: Vec<(&Path, bool)> = jobs
        .into_par_iter()
        .map(|(path, mut views)| -> Result<(&Path, bool), SeriesError> {
            let obj = meta::open(path)?;
            let d = pixels::decode_hu_into(&obj, path, &mut views)?;
            Ok((path, d.rescale_found))
        })
        .collect::<Result<_, _>>()?;
    // A slice without rescale among slices with one would be read as stored values, not HU
    // (e.g. +1024 HU for a lost RescaleIntercept of -1024).
    if let (Some(with), Some(without)) = (found.iter().find(|f| f.1), found.iter().find(|f| !f.1)) {
        return Err(SeriesError::MissingRescale {
            file: without.0.to_owned(),
            other: with.0.to_owned(),
        });
    }
    Ok(hu)
}

/// Keeps one of identical slices at the same position; refuses different ones as not a volume.
fn drop_same_position<'a>(
    hu: Array3<f32>,
    plan: Vec<SlicePlan<'a>>,
) -> Result<(Array3<f32>, Vec<SlicePlan<'a>>), SeriesError> {
    let mut keep = vec![true; plan.len()];
    for k in 1..plan.len() {
        let (a, b) = (&plan[k - 1], &plan[k]);
        if norm(sub(a.geom.ipp, b.geom.ipp)) < SAME_POSITION_MM {
            if hu.index_axis(Axis(0), k - 1) != hu.index_axis(Axis(0), k) {
                return Err(SeriesError::NotAVolume {
                    file_a: a.inst.path.clone(),
                    file_b: b.inst.path.clone(),
                    position: b.geom.ipp,
                });
            }
            tracing::info!(file = %b.inst.path.display(), same_as = %a.inst.path.display(), "identical slice at the same position dropped");
            keep[k] = false;
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok((hu, plan));
    }
    let idx: Vec<usize> = (0..plan.len()).filter(|&k| keep[k]).collect();
    let hu = hu.select(Axis(0), &idx);
    let plan = plan
        .into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect();
    Ok((hu, plan))
}

/// All volumes found under `inputs`: the result of [`scan`] and [`load_volume`] per acquisition.
#[derive(Debug, Default)]
pub struct SeriesLoad {
    /// Loaded volumes, in [`Scan::groups`] order.
    pub volumes: Vec<CtVolume>,
    /// Acquisitions refused (one error each; other series are unaffected).
    pub refused: Vec<SeriesError>,
    /// Files left out by [`scan`].
    pub skipped: Vec<Skipped>,
}

/// Scans `inputs` (files and folders, recursive) and loads every acquisition found; a refused
/// acquisition is logged and listed, never affecting the others.
pub fn load_series(inputs: &[PathBuf]) -> SeriesLoad {
    let scan = scan(inputs);
    let mut out = SeriesLoad {
        skipped: scan.skipped,
        ..Default::default()
    };
    for g in &scan.groups {
        match load_volume(g) {
            Ok(v) => out.volumes.push(v),
            Err(e) => {
                tracing::info!(series = %g.series_instance_uid, error = %e, "series refused");
                out.refused.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::median_slice_thickness;

    #[test]
    fn the_series_slice_thickness_is_the_median_of_its_slices() {
        let m = |v: &[Option<f64>]| median_slice_thickness("s", v.iter().copied());
        // One 5 mm slice among 1 mm ones, first or last: 1 mm either way.
        assert_eq!(m(&[Some(5.0), Some(1.0), Some(1.0), Some(1.0)]), Some(1.0));
        assert_eq!(m(&[Some(1.0), Some(1.0), Some(1.0), Some(5.0)]), Some(1.0));
        // Absent, zero, negative and non-finite values do not count.
        assert_eq!(
            m(&[None, Some(0.0), Some(-5.0), Some(f64::NAN), Some(5.0)]),
            Some(5.0)
        );
        assert_eq!(m(&[None, None]), None);
        // An even count takes the lower middle value (the GE head: 14 x 4 mm, 14 x 7 mm).
        assert_eq!(m(&[Some(1.0), Some(2.0), Some(4.0), Some(5.0)]), Some(2.0));
        let ge: Vec<Option<f64>> = [4.0, 7.0]
            .iter()
            .cycle()
            .take(28)
            .map(|&t| Some(t))
            .collect();
        assert_eq!(m(&ge), Some(4.0));
    }
}
