//! Scoring segmentations against labels (`osteon evaluate`).
//!
//! * [`metrics`]: DSC inside the reference's region, signed surface deviation (±5 mm), rim band.
//! * [`surface`]: signed distance from points to a closed mesh (pseudo-normals), under the
//!   deviation and [`hausdorff`] figures.
//! * [`manifest`]: the TOML list of scans with their label source and scanner group.
//! * [`regions`]: defect-rim band, skull-base slab and metal surroundings of a synthetic scan
//!   (from its phantom.json), scored separately.
//!
//! [`evaluate_scan`] follows the paper (Minnema et al. 2018, §2.5): label and prediction on the CT
//! grid → DSC inside the bounding box of the label → both meshed with [`crate::mesh::build_mesh`]
//! (largest component, smoothing, decimation) → signed deviation of each reference mesh vertex from
//! the predicted mesh, kept within ±5 mm.

pub mod cli;
pub mod compare;
pub mod hausdorff;
pub mod manifest;
pub mod metrics;
pub mod regions;
pub mod surface;
pub mod variants;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::dicom::series::CtVolume;
use crate::label::{self, LabelError};
use crate::mesh::{build_mesh, MeshError, MeshOptions};
use crate::segment::{Mask, SegmentError, Segmenter};
use manifest::{LabelSpec, Manifest, ManifestError, ScanEntry};
use metrics::{dice, Deviation, Overlap, Region};
use regions::{RegionScores, RegionsError, ScoringRegions};
use surface::{deviations, surface_points, SurfaceIndex};

/// Deviations beyond this (mm) are left out, as in the paper.
pub const MAX_DEVIATION_MM: f64 = 5.0;

/// Distances beyond this (mm) count as this in the HD95 ([`hausdorff::hd95`]).
pub const HD95_CAP_MM: f64 = 10.0;

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Masks or regions of different shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A mesh with no usable triangle.
    #[error("mesh has no usable triangles")]
    EmptyMesh,
    /// The label is empty.
    #[error("label of scan {0:?} is empty")]
    EmptyLabel(String),
    /// The manifest could not be loaded.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Loading the CT or building the label failed.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// The segmenter failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Meshing failed.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// The phantom.json named by the manifest has no usable regions.
    #[error(transparent)]
    Regions(#[from] RegionsError),
    /// The CSV path cannot take the report (checked before scoring).
    #[error("{0}")]
    CsvTarget(String),
    /// Writing the CSV failed.
    #[error("writing {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Scores of one scan.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScanScore {
    /// Voxel overlap inside the region.
    pub overlap: Overlap,
    /// Region the DSC was counted in.
    pub region: Region,
    /// Whole-surface deviation.
    pub deviation: Deviation,
    /// Deviation in the defect-rim band, when the manifest gives a rim (or phantom.json has one).
    pub rim: Option<Deviation>,
    /// DSC in the rim band, the skull-base slab and near metal, when the manifest names a
    /// phantom.json.
    pub regions: Option<RegionScores>,
    /// 95th percentile of the symmetric surface distance, mm (at most [`HD95_CAP_MM`]).
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub hd95_mm: f64,
    /// The two halves of [`ScanScore::hd95_mm`]: 95th percentile of the reference surface's
    /// distances to the predicted one (large: bone missed), and of the predicted surface's to the
    /// reference (large: false bone away from the true surface), mm.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub p95_ref_to_pred_mm: f64,
    /// See [`ScanScore::p95_ref_to_pred_mm`].
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub p95_pred_to_ref_mm: f64,
    /// Label bone volume, mL.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub label_ml: f64,
    /// Predicted bone volume, mL.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub predicted_ml: f64,
}

/// One row of the evaluation.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScanResult {
    /// Scan name.
    pub name: String,
    /// Scanner group.
    pub scanner: String,
    /// Label kind.
    pub label: String,
    /// Scores, or the error that stopped this scan.
    pub score: Result<ScanScore, String>,
    /// Wall time, ms.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub ms: f64,
}

/// All rows of a manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Manifest name.
    pub manifest: String,
    /// Segmenter name and version.
    pub segmenter: String,
    /// Per scan, in manifest order.
    pub scans: Vec<ScanResult>,
}

fn volume_ml(ct: &CtVolume, m: &Mask) -> f64 {
    let per: Vec<u64> = m
        .outer_iter()
        .map(|s| s.iter().filter(|&&v| v != 0).count() as u64)
        .collect();
    ct.geometry.volume_ml(&per)
}

/// Builds the label of a manifest entry on the grid of `ct`.
///
/// # Errors
/// [`EvalError::Label`] (SEG off-grid, STL not closed or outside, reference procedure found no bone).
pub fn label_for(ct: &CtVolume, spec: &LabelSpec) -> Result<Mask, EvalError> {
    Ok(match spec {
        LabelSpec::Seg { path } => label::seg_mask_in_frame(
            path,
            &ct.geometry,
            Some(ct.info.frame_of_reference_uid.as_str()).filter(|u| !u.is_empty()),
            &ct.slices,
        )?,
        LabelSpec::Stl { path } => {
            let mesh = label::read_stl(path)?;
            label::voxelise::voxelise(&mesh, &ct.geometry)?.0
        }
        LabelSpec::Reference { .. } => {
            let opts = spec.reference_options().unwrap_or_default();
            label::reference::reference_mask(ct, &opts)?.0
        }
    })
}

/// Scores `predicted` against `reference` on `ct`'s grid (see the module documentation).
///
/// # Errors
/// [`EvalError::EmptyLabel`] for an empty reference, [`EvalError::Mesh`] when a mask cannot be
/// meshed (e.g. an empty prediction), [`EvalError::Shape`].
pub fn score(
    ct: &CtVolume,
    predicted: &Mask,
    reference: &Mask,
    rim: Option<&metrics::RimBand>,
) -> Result<ScanScore, EvalError> {
    let region = Region::bounding_box(reference, 0)
        .ok_or_else(|| EvalError::EmptyLabel(ct.info.series_instance_uid.clone()))?;
    let overlap = dice(predicted, reference, &region)?;
    let opts = MeshOptions::default();
    let (ref_mesh, _) = build_mesh(reference, &ct.geometry, &opts)?;
    let (pred_mesh, _) = build_mesh(predicted, &ct.geometry, &opts)?;
    let index = SurfaceIndex::new(&pred_mesh)?;
    let points = surface_points(&ref_mesh);
    let far = deviations(&points, &index, HD95_CAP_MM);
    // Back from the prediction to every part of the label (mandible, vertebrae, fragments), not
    // only its largest component: bone the label has is not false bone.
    let (ref_all, _) = crate::mesh::build_mesh_all_components(reference, &ct.geometry, &opts)?;
    let back = deviations(
        &surface_points(&pred_mesh),
        &SurfaceIndex::new(&ref_all)?,
        HD95_CAP_MM,
    );
    let hd95_mm = hausdorff::hd95(&far, &back, HD95_CAP_MM);
    let p95_ref_to_pred_mm = hausdorff::hd95(&far, &[], HD95_CAP_MM);
    let p95_pred_to_ref_mm = hausdorff::hd95(&[], &back, HD95_CAP_MM);
    let d: Vec<Option<f64>> = far
        .into_iter()
        .map(|x| x.filter(|v| v.abs() <= MAX_DEVIATION_MM))
        .collect();
    let rim = rim.map(|band| Deviation::of(&band.filter(&points, &d), MAX_DEVIATION_MM));
    Ok(ScanScore {
        overlap,
        region,
        deviation: Deviation::of(&d, MAX_DEVIATION_MM),
        rim,
        regions: None,
        hd95_mm,
        p95_ref_to_pred_mm,
        p95_pred_to_ref_mm,
        label_ml: volume_ml(ct, reference),
        predicted_ml: volume_ml(ct, predicted),
    })
}

/// Loads, labels, segments and scores one manifest entry.
///
/// # Errors
/// Any [`EvalError`] of the steps.
pub fn evaluate_scan(entry: &ScanEntry, segmenter: &dyn Segmenter) -> Result<ScanScore, EvalError> {
    let ct = label::load_ct(
        std::slice::from_ref(&entry.series),
        entry.series_selector.as_deref(),
    )?;
    let reference = label_for(&ct, &entry.label)?;
    let regions = entry
        .phantom
        .as_deref()
        .map(|p| ScoringRegions::for_series(p, &ct.info.series_instance_uid))
        .transpose()?;
    let band = entry.rim.clone().or_else(|| {
        regions
            .as_ref()
            .and_then(|r| r.rim_band(regions::RIM_BAND_MM))
    });
    let predicted = segmenter.segment(&ct)?;
    let mut s = score(&ct, &predicted, &reference, band.as_ref())?;
    s.regions = regions
        .map(|r| regions::region_scores(&predicted, &reference, &ct.geometry, &r, band.as_ref()));
    Ok(s)
}

/// `osteon evaluate`: scores `segmenter` on every scan of the manifest at `manifest_path` (a scan
/// that fails is reported in its row, the others go on) and writes the rows to `csv`: see
/// [`evaluate_manifest_into`].
///
/// # Errors
/// As [`evaluate_manifest_into`].
pub fn evaluate_manifest(
    manifest_path: &Path,
    segmenter: &dyn Segmenter,
    csv: &Path,
) -> Result<Evaluation, EvalError> {
    evaluate_manifest_into(manifest_path, segmenter, csv, Evaluation::csv)
}

/// [`evaluate_manifest`] whose CSV text is `csv_text` of the evaluation so far (e.g. the rows of
/// an earlier evaluation beside these). The CSV is rewritten after every scan, so a run stopped
/// part-way keeps the rows it had scored (and a rerun replaces an older CSV from its first scan
/// on; one run per CSV file); each scan's DSC and mean |deviation| are logged as it is scored.
///
/// # Errors
/// [`EvalError::CsvTarget`] when `csv` may not be written (checked before any scan),
/// [`EvalError::Manifest`] when the manifest does not load, [`EvalError::Io`] when the CSV cannot be
/// written.
pub fn evaluate_manifest_into(
    manifest_path: &Path,
    segmenter: &dyn Segmenter,
    csv: &Path,
    csv_text: impl Fn(&Evaluation) -> String,
) -> Result<Evaluation, EvalError> {
    crate::pipeline::report::check_csv_target(csv).map_err(EvalError::CsvTarget)?;
    let m = Manifest::load(manifest_path)?;
    let id = segmenter.identity();
    let mut evaluation = Evaluation {
        manifest: m.manifest.name.clone(),
        segmenter: format!("{} {}", id.name, id.version),
        scans: Vec::with_capacity(m.scan.len()),
    };
    for entry in &m.scan {
        let t = Instant::now();
        let score = evaluate_scan(entry, segmenter).map_err(|e| e.to_string());
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match &score {
            Ok(s) => tracing::info!(
                segmenter = %id.name,
                scan = %entry.name,
                dsc = format_args!("{:.4}", s.overlap.dsc),
                dev_mean_abs_mm = format_args!("{:.3}", s.deviation.mean_abs_mm),
                ms,
                "scored"
            ),
            Err(e) => {
                tracing::warn!(segmenter = %id.name, scan = %entry.name, error = %e, ms, "scan not scored");
            }
        }
        evaluation.scans.push(ScanResult {
            name: entry.name.clone(),
            scanner: entry.scanner.clone(),
            label: entry.label.kind().to_owned(),
            score,
            ms,
        });
        write_replacing(csv, &csv_text(&evaluation))?;
    }
    Ok(evaluation)
}

/// Writes `text` to the regular file `path` so that a run killed mid-write never leaves it
/// half-written: through a temporary file beside it (`.<name>.<pid>.tmp`, given the old file's
/// permissions) and a rename. Where that cannot be done (`path` is a symbolic link, or its folder
/// takes no new file) it writes `path` in place.
fn write_replacing(path: &Path, text: &str) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_owned(),
        source,
    };
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let (false, Some(name)) = (is_link, name) {
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let staged = std::fs::write(&tmp, text).and_then(|()| {
            if let Ok(old) = std::fs::metadata(path) {
                std::fs::set_permissions(&tmp, old.permissions())?;
            }
            std::fs::rename(&tmp, path)
        });
        match staged {
            Ok(()) => return Ok(()),
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
    std::fs::write(path, text).map_err(io)
}

impl Evaluation {
    /// Scans that could not be scored.
    pub fn failed(&self) -> usize {
        self.scans.iter().filter(|s| s.score.is_err()).count()
    }

    /// CSV text: one row per scan (deviations in mm, volumes in mL; empty cells where not scored).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "scan,scanner,label,dsc,tp,fp,fn,dev_mean_mm,dev_sd_mm,dev_mean_abs_mm,dev_points,\
             dev_points_total,rim_mean_mm,rim_sd_mm,rim_points,rim_dsc,skull_base_dsc,metal_dsc,\
             label_ml,predicted_ml,ms,skull_base_slab_dsc,hd95_mm,p95_ref_to_pred_mm,\
             p95_pred_to_ref_mm,error\n",
        );
        for s in &self.scans {
            let _ = write!(
                out,
                "{},{},{},",
                csv_field(&s.name),
                csv_field(&s.scanner),
                s.label
            );
            match &s.score {
                Ok(x) => {
                    let (rm, rs, rn) = x.rim.filter(|r| r.n > 0).map_or(
                        (String::new(), String::new(), String::new()),
                        |r| {
                            (
                                format!("{:.4}", r.mean_mm),
                                format!("{:.4}", r.sd_mm),
                                r.n.to_string(),
                            )
                        },
                    );
                    let (rd, sb, md) = region_cells(x.regions.as_ref());
                    let slab = x
                        .regions
                        .as_ref()
                        .and_then(|r| r.skull_base_slab)
                        .map_or(String::new(), |o| format!("{:.5}", o.dsc));
                    let _ = writeln!(
                        out,
                        "{:.5},{},{},{},{:.4},{:.4},{:.4},{},{},{rm},{rs},{rn},{rd},{sb},{md},\
                         {:.3},{:.3},{:.0},{slab},{:.3},{:.3},{:.3},",
                        x.overlap.dsc,
                        x.overlap.tp,
                        x.overlap.fp,
                        x.overlap.fn_,
                        x.deviation.mean_mm,
                        x.deviation.sd_mm,
                        x.deviation.mean_abs_mm,
                        x.deviation.n,
                        x.deviation.n_total,
                        x.label_ml,
                        x.predicted_ml,
                        s.ms,
                        x.hd95_mm,
                        x.p95_ref_to_pred_mm,
                        x.p95_pred_to_ref_mm
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, ",,,,,,,,,,,,,,,,,{:.0},,,,,{}", s.ms, csv_field(e));
                }
            }
        }
        out
    }

    /// Plain-text table: one line per scan, then per scanner group mean ± SD of DSC and of the
    /// per-scan mean deviation.
    pub fn table(&self) -> String {
        let mut out = format!(
            "manifest {} — segmenter {}\n",
            self.manifest, self.segmenter
        );
        let _ = writeln!(
            out,
            "{:<28} {:<22} {:>7} {:>16} {:>9} {:>8} {:>8} {:>8} {:>7} {:>10} {:>7} {:>7}",
            "scan",
            "scanner",
            "DSC",
            "dev mean±SD mm",
            "|dev| mm",
            "HD95 mm",
            "label mL",
            "pred mL",
            "rim DSC",
            "rim dev mm",
            "thin",
            "metal"
        );
        for s in &self.scans {
            match &s.score {
                Ok(x) => {
                    let (rd, sb, md) = region_cells(x.regions.as_ref());
                    let rim_dev = x
                        .rim
                        .filter(|r| r.n > 0)
                        .map_or(String::new(), |r| format!("{:+.3}", r.mean_mm));
                    let _ = writeln!(
                        out,
                        "{:<28} {:<22} {:>7.4} {:>16} {:>9.3} {:>8.2} {:>8.1} {:>8.1} {:>7.7} {:>10} {:>7.7} {:>7.7}",
                        s.name,
                        s.scanner,
                        x.overlap.dsc,
                        format!("{:+.3}±{:.3}", x.deviation.mean_mm, x.deviation.sd_mm),
                        x.deviation.mean_abs_mm,
                        x.hd95_mm,
                        x.label_ml,
                        x.predicted_ml,
                        rd,
                        rim_dev,
                        sb,
                        md
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "{:<28} {:<22} FAILED: {e}", s.name, s.scanner);
                }
            }
        }
        let mut groups: Vec<&str> = self.scans.iter().map(|s| s.scanner.as_str()).collect();
        groups.sort_unstable();
        groups.dedup();
        let _ = writeln!(
            out,
            "\nper scanner: n, DSC mean±SD, deviation mean±SD (of per-scan means), mm; mean DSC in \
             the rim band, the thin skull base (thin plates; the whole skull-base slab for phantoms \
             without thin-plate boxes) and near metal (n scans)"
        );
        for g in groups {
            let rows: Vec<&ScanScore> = self
                .scans
                .iter()
                .filter(|s| s.scanner == g)
                .filter_map(|s| s.score.as_ref().ok())
                .collect();
            if rows.is_empty() {
                let _ = writeln!(out, "{g:<28} {:>3} (no scan of this group was scored)", 0);
                continue;
            }
            let (dm, ds) = mean_sd(rows.iter().map(|x| x.overlap.dsc));
            let (vm, vs) = mean_sd(rows.iter().map(|x| x.deviation.mean_mm));
            let region_mean = |f: fn(&RegionScores) -> Option<Overlap>| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter_map(|x| x.regions.as_ref().and_then(f))
                    .map(|o| o.dsc)
                    .collect();
                if v.is_empty() {
                    String::from("-")
                } else {
                    format!("{:.4} ({})", mean_sd(v.iter().copied()).0, v.len())
                }
            };
            let _ = writeln!(
                out,
                "{:<28} {:>3} {:>16} {:>16}  rim {:<12} thin base {:<12} metal {:<12}",
                g,
                rows.len(),
                format!("{dm:.4}±{ds:.4}"),
                format!("{vm:+.3}±{vs:.3}"),
                region_mean(|r| r.rim),
                region_mean(|r| r.skull_base),
                region_mean(|r| r.metal)
            );
        }
        out
    }
}

/// CSV cells (rim, skull base, metal DSC) of the region scores; empty where not scored.
fn region_cells(r: Option<&RegionScores>) -> (String, String, String) {
    let cell = |o: Option<&Overlap>| o.map_or(String::new(), |o| format!("{:.5}", o.dsc));
    match r {
        Some(r) => (
            cell(r.rim.as_ref()),
            cell(r.skull_base.as_ref()),
            cell(r.metal.as_ref()),
        ),
        None => (String::new(), String::new(), String::new()),
    }
}

pub(crate) fn mean_sd(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt();
    (m, s)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
