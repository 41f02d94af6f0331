//! `osteon segment`: the worker without the network. Scans the inputs, assembles every CT series,
//! and runs [`super::worker::process_volume`] on each one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::dicom::series::{load_volume, scan, SeriesInfo};
use crate::mesh::MeshOptions;
use crate::segment::pair::PairSegmenter;
use crate::segment::threshold::ThresholdSegmenter;
use crate::segment::Segmenter;

use super::report::SeriesReport;
use super::worker::{process_volume, REPORT_FILE};

/// Which segmenter to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmenterChoice {
    /// The CNN when a model is shipped in the model folder, else the threshold baseline.
    Default,
    /// Global threshold + largest component.
    Threshold,
    /// The CNN of [`crate::segment::cnn`] with the model of [`OfflineOptions::model`].
    Cnn,
}

/// Folder in which the shipped CNN models are looked for when no `--model` is given: relative to
/// the working directory for `osteon segment` (`--model-dir`), `[pipeline] model_dir` for the
/// node.
pub const DEFAULT_MODEL_DIR: &str = "models";

/// File name of the shipped (thin-slice) CNN model in the model folder; its JSON metadata lies
/// beside it (`.json`).
pub const MODEL_FILE: &str = "osteon-cnn.safetensors";

/// File name of the thick-slice model of a thin/thick pair ([`crate::segment::pair`]) in the model
/// folder: with it beside [`MODEL_FILE`], series whose slab (median slice gap or SliceThickness) is
/// at least [`OfflineOptions::thick_from_mm`] go to it (when neither `--model` nor `--thick-model`
/// is given).
pub const THICK_MODEL_FILE: &str = "osteon-cnn-thick.safetensors";

/// Options of an offline run.
#[derive(Clone, Debug)]
pub struct OfflineOptions {
    pub segmenter: SegmenterChoice,
    /// Threshold (HU) of the threshold segmenter.
    pub threshold_hu: f32,
    /// Folder of the shipped models ([`DEFAULT_MODEL_DIR`] by default): `model_dir/`[`MODEL_FILE`]
    /// and `model_dir/`[`THICK_MODEL_FILE`] stand in for `model` and `thick_model` when both are
    /// `None`.
    pub model_dir: PathBuf,
    /// CNN weights (safetensors, JSON metadata beside them); `None` = `model_dir/`[`MODEL_FILE`].
    pub model: Option<PathBuf>,
    /// Thick-slice CNN weights of a thin/thick pair (`model` then serves the thin series);
    /// `None` = `model_dir/`[`THICK_MODEL_FILE`] when it exists and `model` is `None`, else no
    /// pair.
    pub thick_model: Option<PathBuf>,
    /// Median slice gap (mm) from which a series goes to the thick model
    /// ([`crate::segment::pair::THICK_FROM_MM`] by default).
    pub thick_from_mm: f64,
    pub mesh: MeshOptions,
    /// Show a progress bar on stderr when it is a terminal.
    pub progress: bool,
    /// Post-processing of the CNN's mask (the threshold baseline keeps its largest component).
    pub post_processing: crate::segment::PostMode,
}

/// Errors that stop the whole run (per-series failures are reported in [`Summary`] instead).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("no CT series found in the inputs ({skipped} file(s) skipped: {reasons})")]
    NoSeries { skipped: usize, reasons: String },
    /// The CNN's model file is not there: the path with why ([`not_a_file`]).
    #[error("the CNN segmenter needs a model: {0} (pass --model or --model-dir, `[pipeline] model_dir` for the node, or use --segmenter threshold)")]
    NoCnnModel(String),
    #[error("the CNN model could not be loaded: {0}")]
    CnnModel(String),
    #[error("the thick-slice model of the thin/thick pair: {0} is not a model file (safetensors weights with their .json beside them)")]
    NoThickModel(String),
    #[error("the thick-slice model of the thin/thick pair could not be loaded: {0}")]
    ThickModel(String),
    #[error("thick-slice model {thick}: a thin/thick pair needs its thin model too, and {thin} does not exist (pass --model, or put the thin model beside it as osteon-cnn.safetensors)")]
    ThickWithoutThin { thick: String, thin: String },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Outcome of one series.
#[derive(Debug, Serialize)]
pub struct SeriesOutcome {
    pub series_instance_uid: String,
    pub series_number: Option<i64>,
    /// Folder holding this series' files.
    pub out_dir: String,
    /// The report on success.
    pub report: Option<SeriesReport>,
    /// The error on failure (names the file and attribute where the reader knows them).
    pub error: Option<String>,
}

/// A file that is not a slice of any processed series, with the reason (localizer, dose page, ...).
#[derive(Debug, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What an offline run did: one outcome per series and the files that were not CT slices.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub series: Vec<SeriesOutcome>,
    pub skipped: Vec<SkippedFile>,
}

impl Summary {
    /// Number of series that failed.
    pub fn failed(&self) -> usize {
        self.series.iter().filter(|s| s.error.is_some()).count()
    }

    /// One line per series for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.series {
            let number = s
                .series_number
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into());
            match (&s.report, &s.error) {
                (Some(r), _) => out.push(format!(
                    "series {number} ({} slices, {}): {}{} bone {:.1} mL, {} triangles, {:.1} s -> {}",
                    r.geometry.dims[0],
                    r.series.manufacturer_model_name,
                    r.segmentation.algorithm.name,
                    r.segmentation
                        .model_choice
                        .as_ref()
                        .map_or(String::new(), |c| format!(
                            " ({} model, {:.1} mm slab)",
                            match c.model {
                                crate::segment::pair::PairModel::Thin => "thin",
                                crate::segment::pair::PairModel::Thick => "thick",
                            },
                            c.slab_mm
                        )),
                    r.segmentation.bone_volume_ml,
                    r.mesh.triangles,
                    r.timings.total_ms / 1e3,
                    s.out_dir
                )),
                (None, Some(e)) => out.push(format!("series {number} FAILED: {e}")),
                (None, None) => {}
            }
        }
        if !self.skipped.is_empty() {
            out.push(format!(
                "{} file(s) skipped (see report.json / log)",
                self.skipped.len()
            ));
        }
        out
    }
}

/// The thick-slice model of a thin/thick pair this run would load: `thick_model` when given, else
/// `model_dir/`[`THICK_MODEL_FILE`] when something is at that path and no `model` is given;
/// `None` = no pair (one model, or the threshold). A default path that is there but is not a
/// file (a folder, a broken link) is returned (and refused by [`segmenter_for`]), not silently
/// dropped.
pub fn pair_thick_model(options: &OfflineOptions) -> Option<PathBuf> {
    if matches!(options.segmenter, SegmenterChoice::Threshold) {
        return None;
    }
    match (&options.thick_model, &options.model) {
        (Some(p), _) => Some(p.clone()),
        (None, None) => Some(options.model_dir.join(THICK_MODEL_FILE)).filter(|p| present(p)),
        (None, Some(_)) => None,
    }
}

/// Why `p` is not a model file, with the path: "does not exist", "is a broken link", "is a
/// folder", or "is not a regular file".
pub fn not_a_file(p: &Path) -> String {
    let why = match (p.symlink_metadata(), p.metadata()) {
        (Err(_), _) => "does not exist",
        (Ok(_), Err(_)) => "is a broken link",
        (Ok(_), Ok(m)) if m.is_dir() => "is a folder",
        _ => "is not a regular file",
    };
    format!("{} {why}", p.display())
}

/// `true` when something is at `p`: a file, a folder, or a link (even a broken one, which
/// `Path::exists` would call absent).
fn present(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// The segmenter for `options`.
///
/// # Errors
/// [`OfflineError::NoCnnModel`] when the CNN is asked for and the model file does not exist,
/// [`OfflineError::CnnModel`] when it cannot be loaded (or the binary was built without libtorch).
/// [`SegmenterChoice::Default`] is the CNN when the model file exists, else the threshold baseline
/// (logged as a warning naming the folder); a `model` given explicitly, or a default model path
/// that is there but is not a file (a folder, a broken link), is [`OfflineError::NoCnnModel`]
/// instead, never the threshold in its place. A pair's thin model without its thick one is logged
/// too (every series then goes to the thin model).
/// With a thick model (`thick_model`, or [`THICK_MODEL_FILE`] beside the default model) the
/// CNN is a [`PairSegmenter`]: a `thick_model` (or a [`THICK_MODEL_FILE`] path) that is not a
/// file is [`OfflineError::NoThickModel`], one that does not load [`OfflineError::ThickModel`],
/// and a thick model without the thin model [`OfflineError::ThickWithoutThin`] (never the
/// threshold in its place: a node with only `osteon-cnn-thick.safetensors` in its model folder
/// does not start).
pub fn segmenter_for(options: &OfflineOptions) -> Result<Box<dyn Segmenter>, OfflineError> {
    let model = options
        .model
        .clone()
        .unwrap_or_else(|| options.model_dir.join(MODEL_FILE));
    let threshold = || -> Box<dyn Segmenter> {
        Box::new(ThresholdSegmenter {
            threshold_hu: options.threshold_hu,
        })
    };
    let thick = pair_thick_model(options);
    match options.segmenter {
        SegmenterChoice::Threshold => Ok(threshold()),
        SegmenterChoice::Default | SegmenterChoice::Cnn if !model.is_file() && thick.is_some() => {
            Err(OfflineError::ThickWithoutThin {
                thick: thick.unwrap_or_default().display().to_string(),
                thin: model.display().to_string(),
            })
        }
        SegmenterChoice::Default if options.model.is_none() && !present(&model) => {
            if present(&options.model_dir) {
                tracing::warn!(
                    model = %model.display(),
                    "no CNN model in the model folder: the default segmenter is the threshold \
                     baseline (--model-dir / [pipeline] model_dir names the folder)"
                );
            } else {
                tracing::warn!(
                    model_dir = %options.model_dir.display(),
                    "the model folder does not exist (relative to the working directory when \
                     relative): the default segmenter is the threshold baseline"
                );
            }
            Ok(threshold())
        }
        SegmenterChoice::Default if !model.is_file() => {
            Err(OfflineError::NoCnnModel(not_a_file(&model)))
        }
        SegmenterChoice::Cnn if !model.is_file() => {
            Err(OfflineError::NoCnnModel(not_a_file(&model)))
        }
        SegmenterChoice::Default | SegmenterChoice::Cnn => {
            if let Some(p) = thick.as_ref().filter(|p| !p.is_file()) {
                return Err(OfflineError::NoThickModel(p.display().to_string()));
            }
            let thin = load_cnn(&model, options.post_processing)?;
            match thick {
                None => {
                    if options.model.is_none() && options.thick_model.is_none() {
                        tracing::warn!(
                            model_dir = %options.model_dir.display(),
                            "no thick-slice model ({THICK_MODEL_FILE}) beside the thin one: \
                             thick-slice series go to the thin model too"
                        );
                    }
                    Ok(thin)
                }
                Some(p) => {
                    let thick = load_cnn(&p, options.post_processing).map_err(|e| match e {
                        OfflineError::CnnModel(m) => OfflineError::ThickModel(m),
                        other => other,
                    })?;
                    PairSegmenter::new(thin, thick, options.thick_from_mm)
                        .map(|s| Box::new(s) as Box<dyn Segmenter>)
                        .map_err(OfflineError::ThickModel)
                }
            }
        }
    }
}

#[cfg(feature = "torch")]
fn load_cnn(
    model: &Path,
    post: crate::segment::PostMode,
) -> Result<Box<dyn Segmenter>, OfflineError> {
    crate::segment::cnn::load(model)
        .map(|s| Box::new(s.with_post_processing(post)) as Box<dyn Segmenter>)
        .map_err(|e| OfflineError::CnnModel(e.to_string()))
}

#[cfg(not(feature = "torch"))]
fn load_cnn(
    model: &Path,
    _post: crate::segment::PostMode,
) -> Result<Box<dyn Segmenter>, OfflineError> {
    Err(OfflineError::CnnModel(format!(
        "{}: this osteon was built without libtorch (feature `torch`)",
        model.display()
    )))
}

/// Runs the pipeline on every CT series found in `inputs`, writing into `out`.
///
/// # Errors
/// [`OfflineError`] when nothing can be done at all; a series that fails is recorded in the summary
/// and the others go on.
pub fn run(
    inputs: &[PathBuf],
    out: &Path,
    options: &OfflineOptions,
) -> Result<Summary, OfflineError> {
    let segmenter = segmenter_for(options)?;
    let t = Instant::now();
    let found = scan(inputs);
    let scan_ms = t.elapsed().as_secs_f64() * 1e3;
    if found.groups.is_empty() {
        let reasons = found
            .skipped
            .iter()
            .take(3)
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(OfflineError::NoSeries {
            skipped: found.skipped.len(),
            reasons,
        });
    }
    let single = found.groups.len() == 1;
    let progress = progress_bar(options.progress, found.groups.len() as u64);
    let mut outcomes = Vec::new();
    let mut used_names = std::collections::HashSet::new();
    for group in &found.groups {
        let default_info = SeriesInfo::default();
        let info = group.instances.first().map_or(&default_info, |i| &i.info);
        let dir = if single {
            out.to_path_buf()
        } else {
            out.join(series_folder(
                info.series_number,
                &info.series_instance_uid,
                &mut used_names,
            ))
        };
        progress.set_message(format!("series {}", info.series_number.unwrap_or_default()));
        let t = Instant::now();
        let result = load_volume(group)
            .map_err(|e| e.to_string())
            .and_then(|ct| {
                let read_ms = scan_ms / found.groups.len() as f64 + t.elapsed().as_secs_f64() * 1e3;
                process_volume(ct, segmenter.as_ref(), &options.mesh, &dir, read_ms)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = &result {
            tracing::error!(series = %info.series_instance_uid, error = %e, "series failed");
            // Leave no empty folder behind for a failed series (fails harmlessly if files exist).
            if !single {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        let (report, error) = match result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        outcomes.push(SeriesOutcome {
            series_instance_uid: info.series_instance_uid.clone(),
            series_number: info.series_number,
            out_dir: dir.display().to_string(),
            report,
            error,
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    let skipped = found
        .skipped
        .iter()
        .map(|s| SkippedFile {
            path: s.path.display().to_string(),
            reason: s.reason.to_string(),
        })
        .collect();
    let summary = Summary {
        series: outcomes,
        skipped,
    };
    write_summary(out, single, &summary)?;
    Ok(summary)
}

/// `S<SeriesNumber>` (the scanner's folder convention), else `series-<last 8 UID characters>`, made
/// unique with the UID's digits if needed. Only `S`, `series-`, digits and `-` reach the file system,
/// so no attribute value can name a path outside `--out`.
fn series_folder(
    number: Option<i64>,
    uid: &str,
    used: &mut std::collections::HashSet<String>,
) -> String {
    let clean: String = uid.chars().filter(|c| c.is_ascii_digit()).collect();
    let tail: String = clean
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let tail = if tail.is_empty() {
        "x".to_owned()
    } else {
        tail
    };
    let mut name = match number {
        Some(n) => format!("S{n}"),
        None => format!("series-{tail}"),
    };
    let mut suffix = 1;
    while !used.insert(name.clone()) {
        name = format!(
            "{}-{tail}-{suffix}",
            name.split('-').next().unwrap_or("series")
        );
        suffix += 1;
    }
    name
}

/// Writes `--out/report.json`. Several series: the summary (every series' outcome and every skipped
/// file). One series: the worker's report of that series with the skipped files added, or the summary
/// when the series failed (so a failed run still leaves its reasons on disk).
fn write_summary(out: &Path, single: bool, summary: &Summary) -> Result<(), OfflineError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OfflineError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let path = out.join(REPORT_FILE);
    let value = match (
        single,
        summary.series.first().and_then(|s| s.report.as_ref()),
    ) {
        (true, Some(report)) => {
            let mut v = serde_json::to_value(report).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert(
                    "skipped".into(),
                    serde_json::to_value(&summary.skipped).unwrap_or_default(),
                );
            }
            v
        }
        _ => serde_json::to_value(summary).unwrap_or_default(),
    };
    let json = serde_json::to_vec_pretty(&value).unwrap_or_default();
    std::fs::write(&path, json).map_err(io(&path))
}

fn progress_bar(enabled: bool, len: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} {elapsed}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::series_folder;
    use std::collections::HashSet;

    #[test]
    fn series_folder_names_cannot_leave_the_output_folder() {
        let mut used = HashSet::new();
        assert_eq!(series_folder(None, "1.2.3/../../", &mut used), "series-123");
        assert_eq!(series_folder(Some(5), "1.2.840.5", &mut used), "S5");
        assert_eq!(
            series_folder(Some(5), "1.2.840.77", &mut used),
            "S5-1284077-1"
        );
        assert_eq!(series_folder(None, "../..", &mut used), "series-x");
    }
}
