//! `report.json`: what was processed, with which geometry and scanner, how long each stage took and
//! what came out. One per series; the fields are the per-scanner QA figures of the node as well.

use serde::Serialize;

use crate::dicom::series::{CtVolume, SeriesInfo};
use crate::mesh::MeshStats;
use crate::segment::AlgorithmIdentity;

/// Geometry summary of the source series (mm, degrees).
#[derive(Clone, Debug, Serialize)]
pub struct GeometryReport {
    /// `[k, j, i]` extents.
    pub dims: [usize; 3],
    /// PixelSpacing `[Δj, Δi]` in mm (DICOM order).
    pub pixel_spacing_mm: [f64; 2],
    /// Smallest, median and largest distance between consecutive slices along the normal, mm.
    pub slice_spacing_mm: [f64; 3],
    /// Gantry tilt, degrees.
    pub tilt_deg: f64,
    /// ImageOrientationPatient.
    pub iop: [f64; 6],
    /// IPP of the first and the last slice (LPS mm).
    pub first_last_ipp: [[f64; 3]; 2],
}

impl GeometryReport {
    /// Summary of `ct.geometry`.
    pub fn of(ct: &CtVolume) -> Self {
        let g = &ct.geometry;
        let mut s = g.slice_spacings();
        s.sort_by(f64::total_cmp);
        let spacing = if s.is_empty() {
            [0.0; 3]
        } else {
            [s[0], s[s.len() / 2], s[s.len() - 1]]
        };
        Self {
            dims: g.dims(),
            pixel_spacing_mm: g.pixel_spacing,
            slice_spacing_mm: spacing,
            tilt_deg: g.tilt_deg(),
            iop: g.iop,
            first_last_ipp: [
                g.ipp.first().copied().unwrap_or_default(),
                g.ipp.last().copied().unwrap_or_default(),
            ],
        }
    }
}

/// Milliseconds per stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub read_ms: f64,
    pub segment_ms: f64,
    pub mesh_ms: f64,
    pub seg_write_ms: f64,
    pub stl_write_ms: f64,
    pub total_ms: f64,
}

/// Segmentation figures.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentationReport {
    pub algorithm: AlgorithmIdentity,
    /// Bone voxels in the mask.
    pub bone_voxels: u64,
    /// Bone volume, mL (per-slice voxel counts × pixel area × slab thickness, exact for variable spacing).
    pub bone_volume_ml: f64,
    /// What the segmenter did after classifying (marrow fill, pieces kept and dropped); `null` for
    /// the threshold baseline.
    pub post_processing: Option<crate::segment::PostProcessing>,
    /// Which model of a thin/thick pair ran and why (slab: median slice gap or SliceThickness,
    /// split); absent for a single model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_choice: Option<crate::segment::pair::PairChoice>,
}

/// Files written for one series.
#[derive(Clone, Debug, Serialize)]
pub struct Outputs {
    pub seg: String,
    pub stl: String,
    pub stl_object: String,
    pub seg_sop_instance_uid: String,
    pub stl_sop_instance_uid: String,
}

/// `report.json` of one series.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesReport {
    pub osteon_version: String,
    pub series: SeriesInfo,
    pub geometry: GeometryReport,
    pub segmentation: SegmentationReport,
    pub mesh: MeshStats,
    pub outputs: Outputs,
    pub timings: Timings,
    /// Image QA figures (noise in air, agreement with the threshold baseline, model confidence).
    pub image_qa: super::qa::ImageQa,
}

/// Refuses an output path whose folder does not exist (`""` is the current folder).
///
/// # Errors
/// A one-line reason naming the file and the folder.
pub fn check_folder(path: &std::path::Path) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "{}: folder {} does not exist",
            path.display(),
            dir.display()
        ))
    }
}

/// Refuses to write a CSV report over an existing file that is not a `.csv` (the node's database, a
/// manifest, a DICOM object...), so a mistyped `--csv` never destroys data, and finds out before
/// the work that the file cannot be written (no such folder, no permission), so a long evaluation
/// is not lost at its end. Leaves no file behind.
///
/// # Errors
/// A one-line reason naming the file.
pub fn check_csv_target(path: &std::path::Path) -> Result<(), String> {
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let existed = path.exists();
    if existed && !(is_csv && path.is_file()) {
        return Err(format!(
            "{}: exists and is not a .csv file; refusing to overwrite it",
            path.display()
        ));
    }
    // Checked before the work, not found out after it (a missing folder, no write permission).
    check_folder(path)?;
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(_) if !existed => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: cannot be written: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::check_csv_target;

    #[test]
    fn csv_reports_never_overwrite_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("osteon.db");
        std::fs::write(&db, b"SQLite format 3\0").unwrap();
        let e = check_csv_target(&db).unwrap_err();
        assert!(e.ends_with("osteon.db: exists and is not a .csv file; refusing to overwrite it"));
        assert!(check_csv_target(dir.path()).is_err());
        let old = dir.path().join("scores.CSV");
        std::fs::write(&old, b"a,b\n").unwrap();
        assert!(check_csv_target(&old).is_ok());
        assert!(check_csv_target(&dir.path().join("new.csv")).is_ok());
        assert!(check_csv_target(&dir.path().join("new-without-extension")).is_ok());
        // The check leaves no file behind, and a folder that does not exist is found out now.
        assert!(!dir.path().join("new.csv").exists());
        let e = check_csv_target(&dir.path().join("nodir/x.csv")).unwrap_err();
        assert!(e.contains("nodir/x.csv: folder"), "{e}");
        assert!(e.ends_with("nodir does not exist"), "{e}");
    }
}
