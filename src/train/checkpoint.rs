//! Training checkpoints: a run stopped at any moment resumes where it stopped and ends with the
//! weights an unbroken run would have (on the CPU; cuDNN's backward pass is not deterministic).
//!
//! A checkpoint of the run writing `x.safetensors` is three files beside it:
//! `x.ckpt-SSSSSS.safetensors` (weights of step S), `x.ckpt-SSSSSS.rmsprop.safetensors` (the
//! optimizer's running averages, [`super::rmsprop`]) and `x.ckpt.json`, which names the two and
//! records the step, the loss curve, the settings that shape training and the scans trained on.
//! The JSON is replaced last, through a temporary file, after the step files are flushed to disk:
//! a run killed (or a machine stopped) at any moment leaves the JSON naming a complete earlier
//! pair. Older checkpoints (`x.ckpt.safetensors`, no optimizer state) still resume, with the
//! running averages restarted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use super::data::ScanRecord;
use super::fit::{save_vs, TrainOptions};
use super::rmsprop::RmsProp;
use super::sample::SampleSettings;
use super::TrainError;
use crate::segment::cnn::arch::Architecture;
use crate::segment::cnn::normalise::Normalisation;
use crate::segment::cnn::segmenter::load_weights;

/// Checkpoint state (`*.ckpt.json`).
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    step: usize,
    filters: [usize; 4],
    normalisation: Normalisation,
    seed: u64,
    losses: Vec<(usize, f64)>,
    seconds: f64,
    /// The run's other settings that shape the training (sampling and augmentation, learning
    /// rate and decay, tiles per step, working pixel spacing), as [`resume_settings`] writes them;
    /// absent in checkpoints written before they were recorded (then not checked).
    #[serde(default)]
    settings: Option<serde_json::Value>,
    /// File of the weights at `step`, beside this JSON (absent in checkpoints written before the
    /// files were named by step: then `*.ckpt.safetensors`).
    #[serde(default)]
    weights: Option<String>,
    /// File of the RMSprop running averages at `step`, beside this JSON (absent in older
    /// checkpoints: the averages then restart at zero).
    #[serde(default)]
    optimizer: Option<String>,
    /// The scans trained on and calibrated on, as [`data_of`] lists them (absent in older
    /// checkpoints: then not checked).
    #[serde(default)]
    scans: Option<Vec<serde_json::Value>>,
}

/// Where a resumed run starts.
pub(crate) struct Resumed {
    /// Steps already done.
    pub step: usize,
    /// (step, mean loss) so far.
    pub losses: Vec<(usize, f64)>,
    /// Training seconds so far.
    pub seconds: f64,
}

/// `x.ckpt.json` of the run writing `out` (`x.safetensors`).
pub(crate) fn json_path(out: &Path) -> PathBuf {
    out.with_extension("ckpt.json")
}

fn legacy_weights(out: &Path) -> PathBuf {
    out.with_extension("ckpt.safetensors")
}

/// The two step files of step `step`: weights, optimizer state.
fn step_files(out: &Path, step: usize) -> (PathBuf, PathBuf) {
    (
        out.with_extension(format!("ckpt-{step:06}.safetensors")),
        out.with_extension(format!("ckpt-{step:06}.rmsprop.safetensors")),
    )
}

/// The identity of the data a run trains on: per scan its name, split, series and label SHA-256
/// (sorted by name and split), so that a checkpoint is never resumed on other scans.
fn data_of(records: &[ScanRecord]) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "split": r.split,
                "series": r.series,
                "series_sha256": r.series_sha256,
                "label_sha256": r.label_sha256,
            })
        })
        .collect();
    v.sort_by_key(|s| (s["name"].to_string(), s["split"].to_string()));
    v
}

/// The settings a resumed run must share with its checkpoint, besides filters, normalisation and
/// seed: changing any of them mid-run would make a model no single recipe describes.
fn resume_settings(o: &TrainOptions) -> serde_json::Value {
    serde_json::json!({
        "sample": o.sample,
        "lr": o.lr,
        "decay": o.decay,
        "tiles_per_step": o.tiles_per_step,
        "working_pixel_mm": o.working_pixel_mm,
    })
}

fn refuse(path: &Path, message: String) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_owned(),
        message: format!(
            "{message} (resume with the same settings and data, or remove the checkpoint to train \
             from step 0)"
        ),
    }
}

/// Checks that the settings a checkpoint was made with (`had`, as [`resume_settings`] wrote them)
/// are this run's.
fn check_settings(
    had: &serde_json::Value,
    o: &TrainOptions,
    path: &Path,
) -> Result<(), TrainError> {
    let want = resume_settings(o);
    // Read back through the current types, so settings added since read as their defaults.
    let had_sample = serde_json::from_value::<SampleSettings>(had["sample"].clone())
        .ok()
        .and_then(|s| serde_json::to_value(s).ok());
    let had = serde_json::json!({
        "sample": had_sample,
        "lr": had["lr"],
        "decay": had["decay"],
        "tiles_per_step": had["tiles_per_step"],
        "working_pixel_mm": had["working_pixel_mm"],
    });
    for key in [
        "sample",
        "lr",
        "decay",
        "tiles_per_step",
        "working_pixel_mm",
    ] {
        if had[key] != want[key] {
            return Err(refuse(
                path,
                format!(
                    "made with {key} {}; this run asks for {}",
                    had[key], want[key]
                ),
            ));
        }
    }
    Ok(())
}

/// A step file named by a checkpoint JSON at `ck_j`: only the name this module gives step `step`
/// of the same run is accepted (never a path elsewhere).
fn named_file(ck_j: &Path, name: &str, expected: &Path) -> Result<PathBuf, TrainError> {
    if Some(std::ffi::OsStr::new(name)) != expected.file_name() {
        return Err(refuse(
            ck_j,
            format!(
                "names the file {name:?} where {:?} was expected",
                expected.file_name().unwrap_or_default()
            ),
        ));
    }
    Ok(ck_j.with_file_name(name))
}

/// Loads the checkpoint of the run writing `o.out` into `vs` and `opt`, when `o.resume` and one
/// exists; `None` = start at step 0.
///
/// # Errors
/// [`TrainError::Checkpoint`] when the checkpoint is unreadable, was made with other settings,
/// other scans (`records`) or more steps than `o.steps`, or its files disagree.
pub(crate) fn resume(
    o: &TrainOptions,
    records: &[ScanRecord],
    vs: &mut VarStore,
    opt: &mut RmsProp,
) -> Result<Option<Resumed>, TrainError> {
    let ck_j = json_path(&o.out);
    if !o.resume {
        return Ok(None);
    }
    if !ck_j.is_file() {
        eprintln!("no checkpoint at {}: training from step 0", ck_j.display());
        return Ok(None);
    }
    let text = std::fs::read_to_string(&ck_j).map_err(|e| refuse(&ck_j, e.to_string()))?;
    let ck: Checkpoint =
        serde_json::from_str(&text).map_err(|e| refuse(&ck_j, format!("unreadable: {e}")))?;
    if ck.filters != o.filters || ck.normalisation != o.normalisation || ck.seed != o.seed {
        return Err(refuse(
            &ck_j,
            format!(
                "made with filters {:?}, {:?}, seed {}; this run asks for {:?}, {:?}, seed {}",
                ck.filters, ck.normalisation, ck.seed, o.filters, o.normalisation, o.seed
            ),
        ));
    }
    if let Some(had) = &ck.settings {
        check_settings(had, o, &ck_j)?;
    }
    if ck.step > o.steps {
        return Err(refuse(
            &ck_j,
            format!(
                "made at step {}; this run asks for {} steps in all",
                ck.step, o.steps
            ),
        ));
    }
    if let Some(had) = &ck.scans {
        if *had != data_of(records) {
            return Err(refuse(
                &ck_j,
                "made on other scans (names, splits or SHA-256 of series or labels differ)".into(),
            ));
        }
    }
    let (w_expected, s_expected) = step_files(&o.out, ck.step);
    let weights = match ck.weights.as_deref() {
        Some(name) => named_file(&ck_j, name, &w_expected)?,
        None => legacy_weights(&o.out),
    };
    load_weights(vs, &weights)?;
    match ck.optimizer.as_deref() {
        Some(name) => {
            let state = named_file(&ck_j, name, &s_expected)?;
            let at = opt.load(&state).map_err(|m| refuse(&ck_j, m))?;
            if at != ck.step {
                return Err(refuse(
                    &ck_j,
                    format!(
                        "its optimizer state is of step {at}, its weights of step {}",
                        ck.step
                    ),
                ));
            }
        }
        None => eprintln!(
            "{}: no optimizer state (an older checkpoint): RMSprop's running averages restart \
             at zero, so the run will not end exactly as an unbroken one",
            ck_j.display()
        ),
    }
    eprintln!("resumed from {} at step {}", ck_j.display(), ck.step);
    Ok(Some(Resumed {
        step: ck.step,
        losses: ck.losses,
        seconds: ck.seconds,
    }))
}

/// What [`save`] writes besides the weights and the optimizer.
pub(crate) struct Progress<'a> {
    /// Steps done.
    pub step: usize,
    /// (step, mean loss) so far.
    pub losses: &'a [(usize, f64)],
    /// Training seconds so far.
    pub seconds: f64,
    /// The scans of the run.
    pub records: &'a [ScanRecord],
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Writes the checkpoint of step `p.step` of the run writing `o.out` (see the module
/// documentation), then removes every other step file of that run and the older-format weights.
///
/// # Errors
/// [`TrainError::Io`] or [`TrainError::Model`] of a failed write; the previous checkpoint is then
/// still the one the JSON names.
pub(crate) fn save(
    o: &TrainOptions,
    arch: &Architecture,
    vs: &VarStore,
    opt: &RmsProp,
    p: &Progress,
) -> Result<(), TrainError> {
    let (weights, state) = step_files(&o.out, p.step);
    // A temporary name that still ends in .safetensors (VarStore::save picks its format by the
    // extension).
    let partial = |f: &Path| f.with_extension("partial.safetensors");
    save_vs(vs, arch, &partial(&weights))?;
    opt.save(&partial(&state), p.step)
        .map_err(|e| crate::segment::cnn::CnnError::Torch(format!("{}: {e}", state.display())))?;
    for f in [&weights, &state] {
        sync(&partial(f))?;
        std::fs::rename(partial(f), f).map_err(io(f))?;
    }
    let name = |f: &Path| f.file_name().map(|n| n.to_string_lossy().into_owned());
    let ck = Checkpoint {
        step: p.step,
        filters: o.filters,
        normalisation: o.normalisation,
        seed: o.seed,
        losses: p.losses.to_vec(),
        seconds: p.seconds,
        settings: Some(resume_settings(o)),
        weights: name(&weights),
        optimizer: name(&state),
        scans: Some(data_of(p.records)),
    };
    let text =
        serde_json::to_string_pretty(&ck).map_err(|e| TrainError::Settings(e.to_string()))?;
    let ck_j = json_path(&o.out);
    let tmp = ck_j.with_extension("json.partial");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &ck_j).map_err(io(&ck_j))?;
    if let Some(dir) = ck_j.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself reaches the disk with the folder (best effort: not every file
        // system lets a folder be opened for syncing).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    remove_stale(&o.out, &weights, &state);
    Ok(())
}

/// Removes the step files of the run writing `out` other than `keep_*` (earlier checkpoints, or
/// files left by a run killed between its writes) and the older-format `x.ckpt.safetensors`.
fn remove_stale(out: &Path, keep_w: &Path, keep_s: &Path) {
    let Some(stem) = out.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!("{stem}.ckpt-");
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        // `SSSSSS.safetensors`, `SSSSSS.rmsprop.safetensors` or their `.partial` forms only.
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let tail = &rest[digits..];
        let ours = digits == 6
            && [
                ".safetensors",
                ".rmsprop.safetensors",
                ".partial.safetensors",
                ".rmsprop.partial.safetensors",
            ]
            .contains(&tail);
        let path = e.path();
        if ours && path.file_name() != keep_w.file_name() && path.file_name() != keep_s.file_name()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
    let legacy = legacy_weights(out);
    if legacy.is_file() {
        let _ = std::fs::remove_file(legacy);
    }
}
