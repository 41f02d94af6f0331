//! `osteon evaluate --folds`: the cross-validation arguments and entry point (the run itself is
//! [`super::folds`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::cli::DeviceArg;
#[cfg(feature = "torch")]
use super::cli::{options, TrainArgs};

/// Cross-validation scheme of `osteon evaluate --folds`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FoldScheme {
    /// The paper's protocol: pairs of scans held out in turn (src/train/folds.rs).
    #[value(name = "leave-2-out")]
    LeaveTwoOut,
    /// One model on the manifest's own split: trains on `train`, calibrates on `validation`,
    /// scores the `test` scans (a single estimate where leave-2-out's many models cost too much,
    /// e.g. on a CPU).
    #[value(name = "holdout")]
    Holdout,
}

/// Arguments of `osteon evaluate` for cross-validation: each fold's model is trained with the
/// settings of `osteon train` (its defaults, overridden by these).
#[derive(clap::Args, Debug)]
pub struct FoldArgs {
    /// Train one CNN per fold and score each held-out scan with the model that held it out, beside
    /// the threshold baseline (the manifest's `test` scans are scored by the final model;
    /// `holdout` trains the final model only).
    #[arg(long, value_enum)]
    pub folds: Option<FoldScheme>,
    /// Folder of the fold models (fold-NN.safetensors, final.safetensors, JSON beside each).
    #[arg(long, default_value = "folds")]
    pub work: PathBuf,
    /// Reuse fold models already in --work (trained with these settings on their fold's scans)
    /// instead of training them again, resume a fold stopped part-way from its checkpoint, and
    /// read back the scores kept in --work/scores/ for a scan the same model already scored.
    #[arg(long)]
    pub reuse: bool,
    /// Train (or with --reuse complete) the fold models and the final model into --work, then
    /// stop without scoring; a later run with --reuse scores them (e.g. split over two calls on a
    /// rented GPU, or trained there and scored elsewhere).
    #[arg(long)]
    pub train_only: bool,
    /// Train and score only these models of the plan, e.g. `1,2`, `3-5`, `final` (folds from 1;
    /// `final` = the final model): the report holds the scans they hold out, the other models are
    /// left as they are. A leave-2-out can so be run in parts, on a CPU over several sessions: with
    /// --reuse a fold stopped part-way resumes from its checkpoint (every 100 steps), and a scan
    /// already scored by the same model is read back from --work's scores/ instead of scored
    /// again, so a last run without --models assembles the whole report.
    #[arg(long, value_parser = super::plan::parse_models)]
    pub models: Option<super::plan::ModelList>,
    /// Optimizer steps per fold (default: osteon train's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Tiles per step (default: osteon train's).
    #[arg(long)]
    pub tiles: Option<usize>,
    /// Output side of a tile, voxels (default: osteon train's).
    #[arg(long)]
    pub tile_size: Option<usize>,
    /// Wall-clock budget per fold, minutes.
    #[arg(long)]
    pub minutes_per_fold: Option<f64>,
    /// Training seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Working pixel spacing of the fold models, mm (as `osteon train --working-pixel-mm`).
    #[arg(long)]
    pub working_pixel_mm: Option<f64>,
    /// How a fold's tiles draw their slice (as `osteon train --draw`; default: its default).
    #[arg(long, value_enum)]
    pub draw: Option<super::sample::Draw>,
    /// Thick-slice augmentation of the fold models, mm (as `osteon train --slab-mm`).
    #[arg(long)]
    pub slab_mm: Option<f32>,
    /// Target of thick-slice tiles (as `osteon train --slab-label`).
    #[arg(long, value_enum)]
    pub slab_label: Option<super::sample::SlabLabel>,
    /// Neighbour planes of the fold models, mm (as `osteon train --neighbour-mm`).
    #[arg(long)]
    pub neighbour_mm: Option<f32>,
    /// Adjacent slices as neighbour planes of the fold models (as `osteon train
    /// --neighbour-adjacent`).
    #[arg(long)]
    pub neighbour_adjacent: bool,
    /// Score a thin/thick model pair: held-out scans whose slab (median slice gap or
    /// SliceThickness) is at least
    /// --thick-from-mm are scored by the same-named fold model in this folder (trained beforehand
    /// with the thick recipe, `--train-only --work DIR`), the others by --work's; its scores are
    /// kept in DIR/scores/.
    #[arg(long, value_name = "DIR")]
    pub thick_work: Option<PathBuf>,
    /// Median slice gap (mm) from which a series goes to the thick model of a pair (--thick-work,
    /// or --thick-model without --folds).
    #[arg(long, default_value_t = crate::segment::pair::THICK_FROM_MM,
          value_parser = crate::segment::pair::parse_thick_from_mm)]
    pub thick_from_mm: f64,
    /// Where the folds train.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// SVG plot of per-scan signed surface deviation (mean +- SD), grouped by scanner, CNN beside
    /// the threshold baseline (the paper's Fig. 6), with --folds or --baseline; default: the CSV's
    /// name with .svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

impl FoldArgs {
    /// The first flag given that only `--folds` uses (`--reuse`, `--train-only`, `--models`,
    /// `--thick-work`, `--steps`,
    /// `--tiles`, `--tile-size`, `--minutes-per-fold`, `--seed`, `--working-pixel-mm`, `--draw`,
    /// `--slab-mm`, `--slab-label`, `--neighbour-mm`, `--neighbour-adjacent`), so that it
    /// is refused without `--folds` instead of being silently ignored (`--plot` also serves
    /// `evaluate --baseline`).
    pub fn fold_only_flag(&self) -> Option<&'static str> {
        [
            (self.reuse, "--reuse"),
            (self.train_only, "--train-only"),
            (self.models.is_some(), "--models"),
            (self.thick_work.is_some(), "--thick-work"),
            (self.steps.is_some(), "--steps"),
            (self.tiles.is_some(), "--tiles"),
            (self.tile_size.is_some(), "--tile-size"),
            (self.minutes_per_fold.is_some(), "--minutes-per-fold"),
            (self.seed.is_some(), "--seed"),
            (self.working_pixel_mm.is_some(), "--working-pixel-mm"),
            (self.draw.is_some(), "--draw"),
            (self.slab_mm.is_some(), "--slab-mm"),
            (self.slab_label.is_some(), "--slab-label"),
            (self.neighbour_mm.is_some(), "--neighbour-mm"),
            (self.neighbour_adjacent, "--neighbour-adjacent"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// Checks the three outputs of `osteon evaluate --folds` before any work: distinct paths, each
/// folder present, and any existing file an earlier report of the same kind (CSV with our header,
/// JSON with a `fold_of` key, SVG) — never a model's metadata, a DICOM file or a folder.
///
/// # Errors
/// A message naming the path and the reason.
pub fn check_report_targets(
    csv: &std::path::Path,
    json: &std::path::Path,
    svg: &std::path::Path,
) -> Result<(), String> {
    if csv == json || csv == svg || json == svg {
        return Err(format!(
            "the CSV {}, its JSON {} and the plot {} must be three different files",
            csv.display(),
            json.display(),
            svg.display()
        ));
    }
    crate::pipeline::report::check_csv_target(csv)?;
    for (path, what) in [(csv, "CSV"), (json, "JSON"), (svg, "SVG")] {
        crate::pipeline::report::check_folder(path)?;
        if !path.exists() {
            continue;
        }
        let head = std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
            .unwrap_or_default();
        let ours = path.is_file()
            && match what {
                "CSV" => head.starts_with("segmenter,fold,scan,"),
                "JSON" => serde_json::from_slice::<serde_json::Value>(
                    &std::fs::read(path).unwrap_or_default(),
                )
                .ok()
                .is_some_and(|v| v.get("fold_of").is_some()),
                _ => head.trim_start().starts_with("<svg"),
            };
        if !ours {
            return Err(format!(
                "{}: exists and is not an earlier {what} report of osteon evaluate --folds; \
                 refusing to overwrite it",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `osteon train`'s defaults for `manifest` and `out`, through the same argument parser.
#[cfg(feature = "torch")]
fn default_train_args(manifest: &std::path::Path, out: &std::path::Path) -> Option<TrainArgs> {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }
    let argv = [
        std::ffi::OsString::from("train"),
        "--manifest".into(),
        manifest.as_os_str().to_owned(),
        "--out".into(),
        out.as_os_str().to_owned(),
    ];
    Wrap::try_parse_from(argv).ok().map(|w| w.args)
}

/// Runs `osteon evaluate --folds`: cross-validation, tables on stdout, CSV and SVG plot.
#[cfg(feature = "torch")]
pub fn run_folds(
    manifest: &std::path::Path,
    args: &FoldArgs,
    threshold_hu: f32,
    csv: &std::path::Path,
) -> ExitCode {
    use super::folds::{cross_validate, train_folds, FoldOptions};
    // Fold models and scoring run in one process; the report's JSON goes beside the CSV. Every
    // output is checked before any training: hours of folds must not end in an unwritable path or
    // overwrite a file that is not an earlier report (a model's JSON, a DICOM file).
    let plot = args
        .plot
        .clone()
        .unwrap_or_else(|| csv.with_extension("svg"));
    // --train-only writes models only.
    if !args.train_only {
        if let Err(reason) = check_report_targets(csv, &csv.with_extension("json"), &plot) {
            eprintln!("osteon evaluate: {reason}");
            return ExitCode::FAILURE;
        }
    }
    if args.train_only && args.thick_work.is_some() {
        eprintln!(
            "osteon evaluate: --thick-work scores a thin/thick pair; --train-only scores nothing \
             (train the thick models with their own --work)"
        );
        return ExitCode::from(2);
    }
    if !threshold_hu.is_finite() {
        eprintln!("osteon evaluate: --threshold {threshold_hu} is not a finite HU value");
        return ExitCode::from(2);
    }
    if let Some(m) = args
        .minutes_per_fold
        .filter(|m| !(m.is_finite() && *m > 0.0))
    {
        eprintln!("osteon evaluate: --minutes-per-fold {m} must be finite and > 0");
        return ExitCode::from(2);
    }
    let Some(mut targs) = default_train_args(manifest, &args.work.join("final.safetensors")) else {
        eprintln!("osteon evaluate: internal error: default training arguments");
        return ExitCode::FAILURE;
    };
    if let Some(s) = args.steps {
        targs.steps = s;
    }
    if let Some(t) = args.tiles {
        targs.tiles = t;
    }
    if let Some(t) = args.tile_size {
        targs.tile_size = t;
    }
    if let Some(s) = args.seed {
        targs.seed = s;
    }
    targs.working_pixel_mm = args.working_pixel_mm;
    if let Some(d) = args.draw {
        targs.draw = d;
    }
    if let Some(s) = args.slab_mm {
        targs.slab_mm = s;
    }
    if let Some(l) = args.slab_label {
        targs.slab_label = l;
    }
    if let Some(d) = args.neighbour_mm {
        targs.neighbour_mm = d;
    }
    targs.neighbour_adjacent = args.neighbour_adjacent;
    targs.minutes = args.minutes_per_fold;
    targs.device = args.device;
    targs.log_every = 100;
    // About 2.5 min of CPU training: a fold stopped part-way loses little (--reuse resumes it).
    targs.checkpoint_every = 100;
    let train = match options(&targs) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("osteon evaluate: {e}");
            return ExitCode::from(2);
        }
    };
    let o = FoldOptions {
        scheme: match args.folds {
            Some(FoldScheme::Holdout) => super::plan::Scheme::Holdout,
            _ => super::plan::Scheme::LeaveTwoOut,
        },
        train,
        work: args.work.clone(),
        reuse: args.reuse,
        only: args.models.clone().map(|m| m.0),
        threshold_hu,
        thick: args
            .thick_work
            .clone()
            .map(|work| super::folds::ThickFolds {
                work,
                from_mm: args.thick_from_mm,
            }),
    };
    if args.train_only {
        return match train_folds(&o) {
            Ok(models) => {
                for (path, seconds) in models {
                    println!(
                        "{} ({})",
                        path.display(),
                        if seconds > 0.0 {
                            format!("trained in {seconds:.0} s")
                        } else if path.is_file() {
                            "present".to_owned()
                        } else {
                            "not trained yet".to_owned()
                        }
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("osteon evaluate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match cross_validate(&o) {
        Ok(r) => {
            print!("{}", r.cnn.table());
            println!();
            print!("{}", r.threshold.table());
            println!();
            print!(
                "{}",
                crate::eval::compare::comparison_table(&r.cnn, &r.threshold)
            );
            println!();
            print!("{}", super::variants_table::variants_table(&r.variants));
            let text = crate::eval::compare::combined_csv(&r.cnn, &r.threshold, &r.fold_of);
            if let Err(e) = std::fs::write(csv, text) {
                eprintln!("osteon evaluate: writing {}: {e}", csv.display());
                return ExitCode::FAILURE;
            }
            let svg = crate::eval::compare::deviation_plot_svg(&r.cnn, &r.threshold);
            if let Err(e) = std::fs::write(&plot, svg) {
                eprintln!("osteon evaluate: writing {}: {e}", plot.display());
                return ExitCode::FAILURE;
            }
            let json = csv.with_extension("json");
            let doc = serde_json::json!({
                "plan": r.plan,
                "fold_of": r.fold_of,
                "scored_by": r.scored_by,
                "models": r.models,
                "train_seconds": r.train_seconds,
                "variants": r.variants,
            });
            if let Err(e) = std::fs::write(&json, doc.to_string()) {
                eprintln!("osteon evaluate: writing {}: {e}", json.display());
                return ExitCode::FAILURE;
            }
            let trained: f64 = r.train_seconds.iter().sum();
            println!(
                "models: {} in {} ({trained:.0} s of training); CSV: {}; plot: {}",
                r.models.len(),
                o.work.display(),
                csv.display(),
                plot.display()
            );
            if r.cnn.failed() + r.threshold.failed() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("osteon evaluate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without the `torch` feature there is no network to cross-validate.
#[cfg(not(feature = "torch"))]
pub fn run_folds(
    _manifest: &std::path::Path,
    _args: &FoldArgs,
    _threshold_hu: f32,
    _csv: &std::path::Path,
) -> ExitCode {
    eprintln!("osteon evaluate --folds: this build has no libtorch (feature `torch` off)");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::check_report_targets;

    #[test]
    fn fold_reports_never_overwrite_models_dicom_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        // A model's metadata beside the CSV name: refused before any training.
        std::fs::write(
            p("final.json"),
            br#"{"format":"osteon-cnn","threshold":0.5}"#,
        )
        .unwrap();
        let e = check_report_targets(&p("final.csv"), &p("final.json"), &p("final.svg"));
        assert!(e
            .unwrap_err()
            .contains("final.json: exists and is not an earlier JSON report"));
        // A DICOM file as the plot.
        std::fs::write(p("keep.dcm"), b"DICM").unwrap();
        let e = check_report_targets(&p("a.csv"), &p("a.json"), &p("keep.dcm"));
        assert!(e
            .unwrap_err()
            .contains("keep.dcm: exists and is not an earlier SVG report"));
        // Two outputs on one path, a missing folder.
        assert!(check_report_targets(&p("b.csv"), &p("b.json"), &p("b.csv"))
            .unwrap_err()
            .contains("three different files"));
        assert!(
            check_report_targets(&p("no/c.csv"), &p("no/c.json"), &p("no/c.svg"))
                .unwrap_err()
                .contains("does not exist")
        );
        // Earlier reports are overwritten.
        std::fs::write(p("r.csv"), "segmenter,fold,scan,scanner\n").unwrap();
        std::fs::write(p("r.json"), r#"{"fold_of":[1]}"#).unwrap();
        std::fs::write(
            p("r.svg"),
            "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>",
        )
        .unwrap();
        assert_eq!(
            check_report_targets(&p("r.csv"), &p("r.json"), &p("r.svg")),
            Ok(())
        );
    }
}
