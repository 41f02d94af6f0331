//! Cross-validation (`osteon evaluate --folds leave-2-out`): the paper's protocol (Minnema et al.
//! 2018, §2.5: 20 patients, each model trained without the two it is tested on). Every scan is
//! scored by a model that never saw it, beside the threshold baseline on the same scan.
//!
//! Which model holds out which scans is the plan of [`super::plan`]; the final model is the one
//! one would ship. Scans are loaded once for all folds. A model already in the work folder is
//! reused when it was trained with these settings on this fold's scans (`reuse`); a held-out scan's
//! scores are kept in `work/scores/` and reused by a run of the same model (`score_cache`).

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use tch::Device;

use super::data::ScanRecord;
use super::fit::{check_options, fit, load_scans, TrainOptions};
use super::plan::{scored, Fold, FoldPlan, ModelPick, Scheme};
use super::sample::ScanData;
use super::TrainError;
use crate::eval::manifest::{Manifest, ScanEntry, Split};
use crate::eval::metrics::{dice, Region};
use crate::eval::variants::Variant;
use crate::eval::{evaluate_scan, label_for, Evaluation, ScanResult};
use crate::segment::cnn::infer::DenseOptions;
use crate::segment::threshold::ThresholdSegmenter;
use crate::segment::Segmenter;

mod pair;
mod reuse;
mod score_cache;
pub use pair::ThickFolds;
use reuse::reusable;
use score_cache::CacheKey;

/// What cross-validation produced.
pub struct FoldReport {
    /// The plan.
    pub plan: FoldPlan,
    /// Per held-out scan (manifest order), the CNN of the fold that held it out.
    pub cnn: Evaluation,
    /// Per held-out scan, the threshold baseline.
    pub threshold: Evaluation,
    /// Per scored scan (the rows of `cnn` and `threshold`), the fold number (1-based) that scored
    /// it; 0 = the final model.
    pub fold_of: Vec<usize>,
    /// Per scored scan, the weights that scored it and, for a thin/thick pair
    /// ([`FoldOptions::thick`]), the choice by its slab (median slice gap or SliceThickness).
    pub scored_by: Vec<(PathBuf, Option<crate::segment::pair::PairChoice>)>,
    /// Weights of fold 1..m, then the final model.
    pub models: Vec<PathBuf>,
    /// Seconds of training per model (0 when an existing model was reused).
    pub train_seconds: Vec<f64>,
    /// Per held-out scan, DSC of the held-out CNN and of the threshold on the clean scan and on each of
    /// [`Variant::STANDARD`].
    pub variants: Vec<VariantRow>,
}

/// DSC (inside the label's bounding box) of one scan, clean and degraded.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct VariantRow {
    /// Scan name.
    pub name: String,
    /// Scanner group.
    pub scanner: String,
    /// `[CNN, threshold]` DSC on the clean scan, then on each variant (same order as `names`); 0
    /// where segmentation failed, `None` where the overlap could not be counted.
    pub dsc: Vec<[Option<f64>; 2]>,
    /// `clean`, then the variants' names.
    pub names: Vec<String>,
    /// Why the row is empty, when the scan could not be loaded.
    pub error: Option<String>,
}

/// DSCs of `cnn` and `base` on the scan of `e`, clean and with each of [`Variant::STANDARD`].
fn variant_row(e: &ScanEntry, cnn: &dyn Segmenter, base: &dyn Segmenter) -> VariantRow {
    let mut row = VariantRow {
        name: e.name.clone(),
        scanner: e.scanner.clone(),
        dsc: Vec::new(),
        names: std::iter::once("clean".to_owned())
            .chain(Variant::STANDARD.iter().map(Variant::name))
            .collect(),
        error: None,
    };
    let loaded = crate::label::load_ct(
        std::slice::from_ref(&e.series),
        e.series_selector.as_deref(),
    )
    .map_err(|err| err.to_string())
    .and_then(|ct| {
        let r = label_for(&ct, &e.label).map_err(|err| err.to_string())?;
        Ok((ct, r))
    });
    let (mut ct, reference) = match loaded {
        Ok(x) => x,
        Err(err) => {
            row.error = Some(err);
            return row;
        }
    };
    let Some(region) = Region::bounding_box(&reference, 0) else {
        row.error = Some("empty label".into());
        return row;
    };
    let clean = ct.hu.clone();
    for v in std::iter::once(None).chain(Variant::STANDARD.iter().map(Some)) {
        ct.hu.assign(&clean);
        if let Some(v) = v {
            v.apply(&mut ct.hu);
        }
        // A segmenter that fails on a degraded copy (e.g. cannot normalise it) scores 0: a
        // robustness figure must count the failure, not leave the scan out.
        let d = |s: &dyn Segmenter| match s.segment(&ct) {
            Ok(m) => dice(&m, &reference, &region).ok().map(|o| o.dsc),
            Err(_) => Some(0.0),
        };
        row.dsc.push([d(cnn), d(base)]);
    }
    row
}

/// Options of [`cross_validate`].
pub struct FoldOptions {
    /// How scans are assigned to models (leave-2-out folds + final model, or the final model on
    /// the manifest's own split).
    pub scheme: Scheme,
    /// Training settings of every fold (`manifest` = the cross-validated manifest; `out` ignored).
    pub train: TrainOptions,
    /// Folder of the fold models (`fold-NN.safetensors`, `final.safetensors` + their JSON).
    pub work: PathBuf,
    /// Reuse a fold model already in `work` (its JSON present) instead of training it again, and
    /// resume a fold from its checkpoint in `work` instead of starting it over.
    pub reuse: bool,
    /// Train only these models of the plan; `None` = all. The others are neither trained nor checked (`--train-only --models`: a
    /// leave-2-out trained in parts, e.g. over several sessions of a CPU-only machine).
    pub only: Option<Vec<ModelPick>>,
    /// Threshold of the baseline, HU.
    pub threshold_hu: f32,
    /// Score a thin/thick pair: scans whose slab (median slice gap or SliceThickness) is at least
    /// [`ThickFolds::from_mm`] are scored by the same-named model in [`ThickFolds::work`]
    /// (trained beforehand; never trained here). `None` = the models of `work` only.
    pub thick: Option<ThickFolds>,
}

fn fold_records(records: &[ScanRecord], fold: &Fold) -> Vec<ScanRecord> {
    let mut out = Vec::new();
    for (split, idx) in [("train", &fold.train), ("validation", &fold.validation)] {
        for &i in idx {
            if let Some(r) = records.get(i) {
                out.push(ScanRecord {
                    split: split.to_owned(),
                    ..r.clone()
                });
            }
        }
    }
    out
}

/// The fold models of a plan, trained or reused.
struct Trained {
    manifest: Manifest,
    plan: FoldPlan,
    device: Device,
    model_paths: Vec<PathBuf>,
    train_seconds: Vec<f64>,
    /// Per model (index into `model_paths`), whether this run covers it (`--models`).
    wanted: Vec<bool>,
}

fn train_models(o: &FoldOptions) -> Result<Trained, TrainError> {
    let manifest = Manifest::load(&o.train.manifest)?;
    let plan = o.scheme.plan(&manifest)?;
    let mut probe = o.train.clone();
    probe.out = o.work.join("final.safetensors");
    check_options(&probe)?;
    let device = o.train.device.resolve()?;
    super::fit::check_writable(&probe.out)?;
    let model_paths: Vec<PathBuf> = (1..=plan.folds.len())
        .map(|f| o.work.join(format!("fold-{f:02}.safetensors")))
        .chain(std::iter::once(o.work.join("final.safetensors")))
        .collect();
    let fold_list: Vec<&Fold> = plan
        .folds
        .iter()
        .chain(std::iter::once(&plan.last))
        .collect();
    // Indices into model_paths of the models to train (all without --models).
    let folds = plan.folds.len();
    let mut only: Option<Vec<usize>> = None;
    if let Some(picks) = &o.only {
        let mut idx = Vec::new();
        for p in picks {
            idx.push(match *p {
                ModelPick::Fold(f) if (1..=folds).contains(&f) => f - 1,
                ModelPick::Fold(f) if folds == 0 => {
                    return Err(TrainError::Settings(format!(
                    "--models {f}: this plan has no folds, only the final model (--models final)"
                )))
                }
                ModelPick::Fold(f) => {
                    return Err(TrainError::Settings(format!(
                        "--models {f}: this plan has folds 1-{folds} (and the final model)"
                    )))
                }
                ModelPick::Final => folds,
            });
        }
        only = Some(idx);
    }
    let wanted = |f: usize| only.as_ref().is_none_or(|only| only.contains(&f));
    // Without --reuse an earlier model or checkpoint (hours of training) is never replaced unasked.
    if !o.reuse {
        if let Some(p) = model_paths
            .iter()
            .enumerate()
            .filter(|&(f, _)| wanted(f))
            .flat_map(|(_, p)| [p.clone(), p.with_extension("ckpt.json")])
            .find(|p| p.exists())
        {
            return Err(TrainError::Settings(format!(
                "{} exists: pass --reuse to keep the models trained by these settings (the others \
                 train again), or remove it or choose another --work",
                p.display()
            )));
        }
    }
    let todo: Vec<bool> = model_paths
        .iter()
        .zip(&fold_list)
        .enumerate()
        .map(|(f, (p, fold))| {
            if !wanted(f) {
                return false;
            }
            if !o.reuse {
                return true;
            }
            match reusable(p, &o.train, fold, &manifest) {
                Ok(()) => {
                    eprintln!("reusing {}", p.display());
                    false
                }
                Err(why) => {
                    eprintln!("training {} again: {why}", p.display());
                    true
                }
            }
        })
        .collect();
    let mut train_seconds = vec![0.0; model_paths.len()];
    if todo.iter().any(|&t| t) {
        // Every pool scan is loaded once; `test` scans are never loaded for training.
        let pool: Vec<usize> = (0..manifest.scan.len())
            .filter(|&i| manifest.scan[i].split != Split::Test)
            .collect();
        let entries: Vec<&ScanEntry> = pool.iter().map(|&i| &manifest.scan[i]).collect();
        let t = Instant::now();
        let loaded = load_scans(&entries, &o.train)?;
        // A series listed twice under two names would be trained on while its copy is held out.
        for (a, (_, ra)) in loaded.iter().enumerate() {
            if let Some((_, rb)) = loaded[a + 1..]
                .iter()
                .find(|(_, rb)| rb.series_sha256 == ra.series_sha256)
            {
                return Err(TrainError::Settings(format!(
                    "scans {:?} and {:?} are the same series (SHA-256 {}): one would train while \
                     the other is held out",
                    ra.name, rb.name, ra.series_sha256
                )));
            }
        }
        eprintln!(
            "loaded {} scans in {:.1} s",
            loaded.len(),
            t.elapsed().as_secs_f64()
        );
        let mut data: Vec<Option<&ScanData>> = vec![None; manifest.scan.len()];
        let mut records: Vec<ScanRecord> = Vec::new();
        for (&i, (d, _)) in pool.iter().zip(&loaded) {
            data[i] = Some(d);
        }
        for (i, e) in manifest.scan.iter().enumerate() {
            match pool.iter().position(|&p| p == i) {
                Some(n) => records.push(loaded[n].1.clone()),
                None => records.push(ScanRecord {
                    name: e.name.clone(),
                    scanner: e.scanner.clone(),
                    split: "test".into(),
                    series: e.series.clone(),
                    series_files: 0,
                    series_sha256: String::new(),
                    label_sha256: String::new(),
                    shape: [0; 3],
                    bone_voxels: 0,
                    anchors: [0.0; 2],
                }),
            }
        }
        let pick =
            |idx: &[usize]| -> Vec<&ScanData> { idx.iter().filter_map(|&i| data[i]).collect() };
        for (f, (fold, path)) in fold_list.iter().zip(&model_paths).enumerate() {
            if !todo[f] {
                continue;
            }
            let mut to = o.train.clone();
            to.out = path.clone();
            // --reuse continues a fold stopped before it wrote its model from its checkpoint
            // (weights and optimizer state; refused if made with other settings or scans). A model
            // that exists but is not reusable (other settings, scans, a damaged file) trains anew.
            to.resume = o.reuse && !path.exists();
            let names = |idx: &[usize]| -> Vec<&str> {
                idx.iter()
                    .map(|&i| manifest.scan[i].name.as_str())
                    .collect()
            };
            eprintln!(
                "model {}/{}: held out {:?}, validation {:?}, {} training scans",
                f + 1,
                model_paths.len(),
                names(&fold.held_out),
                names(&fold.validation),
                fold.train.len()
            );
            let report = fit(
                &to,
                device,
                &pick(&fold.train),
                &pick(&fold.validation),
                fold_records(&records, fold),
                &manifest.manifest.name,
            )?;
            train_seconds[f] = report.seconds;
        }
    }
    let wanted = (0..model_paths.len()).map(wanted).collect();
    Ok(Trained {
        manifest,
        plan,
        device,
        model_paths,
        train_seconds,
        wanted,
    })
}

/// Trains (or, with [`FoldOptions::reuse`], reuses) every fold model and the final model of the
/// leave-2-out plan into [`FoldOptions::work`] and scores nothing (`osteon evaluate --folds
/// leave-2-out --train-only`; a later `--reuse` run scores them, e.g. on another machine).
/// Returns each model's path and training seconds (0 = reused).
///
/// # Errors
/// As [`cross_validate`]'s training part.
pub fn train_folds(o: &FoldOptions) -> Result<Vec<(PathBuf, f64)>, TrainError> {
    let t = train_models(o)?;
    Ok(t.model_paths.into_iter().zip(t.train_seconds).collect())
}

/// Trains one model per fold and the final model, then scores every held-out scan (under
/// leave-2-out every scan; under hold-out the `test` scans) with the model that held it out and
/// with the threshold baseline (scans in parallel).
///
/// # Errors
/// [`TrainError`] for a bad manifest or settings, an unloadable scan or a failed training; a scan
/// that fails to score is reported in its row instead.
pub fn cross_validate(o: &FoldOptions) -> Result<FoldReport, TrainError> {
    if let Some(thick) = &o.thick {
        thick.check()?;
    }
    let Trained {
        manifest,
        plan,
        device,
        model_paths,
        train_seconds,
        wanted,
    } = train_models(o)?;
    let model_of = |f: usize| if f == 0 { model_paths.len() - 1 } else { f - 1 };
    // Only held-out scans are scored: under leave-2-out that is every scan, under hold-out the
    // `test` scans (the others trained or calibrated the one model); with --models, those the
    // named models hold out.
    let scored: Vec<(usize, usize)> = scored(&plan)
        .into_iter()
        .filter(|&(_, f)| wanted[model_of(f)])
        .collect();
    let fold_of: Vec<usize> = scored.iter().map(|&(_, f)| f).collect();
    let cache_dir = o.work.join("scores");
    std::fs::create_dir_all(&cache_dir).map_err(|source| TrainError::Io {
        path: cache_dir.clone(),
        source,
    })?;
    let threshold = ThresholdSegmenter {
        threshold_hu: o.threshold_hu,
    };
    let opts = DenseOptions {
        device,
        half: device.is_cuda(),
        ..DenseOptions::default()
    };
    let routes: Vec<pair::Route> = scored
        .par_iter()
        .map(|&(i, f)| {
            let thin = &model_paths[model_of(f)];
            match &o.thick {
                Some(t) => t.route(&manifest.scan[i], thin, &cache_dir),
                None => pair::Route {
                    model: thin.clone(),
                    cache_dir: cache_dir.clone(),
                    choice: None,
                },
            }
        })
        .collect();
    if let Some(thick) = &o.thick {
        let names: Vec<&str> = scored
            .iter()
            .map(|&(i, _)| manifest.scan[i].name.as_str())
            .collect();
        thick.check_routes(&routes, &names)?;
    }
    let rows: Vec<(ScanResult, ScanResult, VariantRow)> = scored
        .par_iter()
        .zip(&routes)
        .map(|(&(i, _), route)| {
            let e = &manifest.scan[i];
            let model = &route.model;
            match crate::segment::cnn::segmenter::load_with(model, opts.clone()) {
                Ok(cnn) => {
                    let cache = route.cache_dir.join(format!("{}.json", e.name));
                    let key = CacheKey::of(e, model, &cnn, o.threshold_hu, device);
                    if o.reuse {
                        if let Some(rows) = key.as_ref().and_then(|k| k.read(&cache)) {
                            eprintln!("scores of {} reused from {}", e.name, cache.display());
                            return rows;
                        }
                    }
                    let base = score_row(e, &threshold);
                    let row = score_row(e, &cnn);
                    let var = variant_row(e, &cnn, &threshold);
                    eprintln!("scored {} ({:.0} s)", e.name, row.ms / 1000.0);
                    let rows = (row, base, var);
                    // A failed row is not kept: the failure may pass (memory, a file being copied).
                    let whole =
                        rows.0.score.is_ok() && rows.1.score.is_ok() && rows.2.error.is_none();
                    if let Some(k) = key.filter(|_| whole) {
                        if let Err(err) = k.write(&cache, &rows) {
                            eprintln!("warning: scores of {} not kept: {err}", e.name);
                        }
                    }
                    rows
                }
                Err(err) => {
                    let base = score_row(e, &threshold);
                    let message = format!("model {}: {err}", model.display());
                    let row = ScanResult {
                        name: e.name.clone(),
                        scanner: e.scanner.clone(),
                        label: e.label.kind().to_owned(),
                        score: Err(message.clone()),
                        ms: 0.0,
                    };
                    let var = VariantRow {
                        name: e.name.clone(),
                        scanner: e.scanner.clone(),
                        dsc: Vec::new(),
                        names: Vec::new(),
                        error: Some(message),
                    };
                    (row, base, var)
                }
            }
        })
        .collect();
    let mut cnn_rows = Vec::new();
    let mut base_rows = Vec::new();
    let mut variants = Vec::new();
    for (c, b, v) in rows {
        cnn_rows.push(c);
        base_rows.push(b);
        variants.push(v);
    }
    let base_id = threshold.identity();
    Ok(FoldReport {
        cnn: Evaluation {
            manifest: manifest.manifest.name.clone(),
            segmenter: match o.scheme {
                Scheme::LeaveTwoOut => format!(
                    "CNN leave-2-out{} ({} folds + final model, {}{})",
                    o.thick.as_ref().map_or(String::new(), |t| format!(
                        " thin/thick pair (thick from {} mm: {})",
                        t.from_mm,
                        t.work.display()
                    )),
                    plan.folds.len(),
                    device_name(device),
                    if wanted.iter().all(|&w| w) {
                        String::new()
                    } else {
                        format!(
                            "; part: {} of the {} models",
                            wanted.iter().filter(|&&w| w).count(),
                            wanted.len()
                        )
                    }
                ),
                Scheme::Holdout => format!("CNN hold-out (one model, {})", device_name(device)),
            },
            scans: cnn_rows,
        },
        threshold: Evaluation {
            manifest: manifest.manifest.name.clone(),
            segmenter: format!("{} {}", base_id.name, base_id.version),
            scans: base_rows,
        },
        plan,
        fold_of,
        scored_by: routes.into_iter().map(|r| (r.model, r.choice)).collect(),
        models: model_paths,
        train_seconds,
        variants,
    })
}

fn device_name(d: Device) -> &'static str {
    if d.is_cuda() {
        "CUDA"
    } else {
        "CPU"
    }
}

fn score_row(e: &ScanEntry, segmenter: &dyn Segmenter) -> ScanResult {
    let t = Instant::now();
    let score = evaluate_scan(e, segmenter).map_err(|err| err.to_string());
    ScanResult {
        name: e.name.clone(),
        scanner: e.scanner.clone(),
        label: e.label.kind().to_owned(),
        score,
        ms: t.elapsed().as_secs_f64() * 1000.0,
    }
}
