//! `osteon evaluate`: its arguments and the run (one segmenter, the CNN beside the threshold
//! baseline, or cross-validation through [`crate::train::cli::run_folds`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::pipeline::offline::{self, OfflineOptions, SegmenterChoice};

/// Arguments of `osteon evaluate`: score a segmenter on the scans of a manifest (DSC in the
/// label's region, signed surface deviation within +-5 mm); prints a per-scan and per-scanner
/// table and writes a CSV.
#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// Manifest (TOML; docs/labels.md).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Segmenter to score.
    #[arg(long, value_enum, default_value_t = EvalSegmenterArg::Threshold)]
    pub segmenter: EvalSegmenterArg,
    /// CNN weights for `--segmenter cnn` (default models/osteon-cnn.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Thick-slice CNN of a thin/thick pair for `--segmenter cnn` (as `osteon segment
    /// --thick-model`; split at --thick-from-mm). With --folds use --thick-work.
    #[arg(long)]
    pub thick_model: Option<PathBuf>,
    /// Bone threshold in HU for the threshold segmenter.
    #[arg(long, default_value_t = crate::segment::threshold::DEFAULT_THRESHOLD_HU)]
    pub threshold: f32,
    /// CSV file with one row per scan, rewritten after every scan: a run stopped part-way
    /// keeps what it scored (with --baseline, the CNN's rows and the threshold's so far); a
    /// rerun replaces the file from its first scan on.
    #[arg(long, default_value = "evaluation.csv")]
    pub csv: PathBuf,
    /// Post-processing of the CNN's mask (as `osteon segment --post-processing`; without
    /// --folds).
    #[arg(long, value_enum)]
    pub post_processing: Option<crate::segment::PostMode>,
    /// With --segmenter cnn: also score the threshold baseline (--threshold) on the same scans,
    /// print the per-scanner comparison, write both to the CSV (`segmenter` and `fold` columns
    /// first, as --folds does) and the paper's Fig. 6 to --plot.
    #[arg(long)]
    pub baseline: bool,
    #[command(flatten)]
    pub folds: crate::train::cli::FoldArgs,
}

/// The segmenter `osteon evaluate` scores.
#[derive(Clone, Copy, ValueEnum)]
pub enum EvalSegmenterArg {
    /// Global threshold + largest component.
    Threshold,
    /// The CNN of `--model` (and `--thick-model`).
    Cnn,
}

/// Runs `osteon evaluate`; exit status 0 when every scan was scored, 1 when one failed or the
/// run could not start, 2 for arguments that do not go together.
pub fn run(args: EvaluateArgs) -> ExitCode {
    let EvaluateArgs {
        manifest,
        segmenter,
        model,
        thick_model,
        threshold,
        csv,
        post_processing,
        baseline,
        folds,
    } = args;
    if baseline && (folds.folds.is_some() || matches!(segmenter, EvalSegmenterArg::Threshold)) {
        eprintln!(
            "osteon evaluate: --baseline scores the threshold beside --segmenter cnn \
                 (--folds always does)"
        );
        return ExitCode::from(2);
    }
    if folds.folds.is_some() {
        // --folds scores the models it trains (CNN) beside the threshold: a --model or
        // --segmenter given with it would be silently ignored.
        if model.is_some()
            || thick_model.is_some()
            || post_processing.is_some()
            || matches!(segmenter, EvalSegmenterArg::Cnn)
        {
            eprintln!(
                "osteon evaluate: --folds scores the models it trains in --work beside \
                     the threshold (CNN post-processing `bones`); --segmenter cnn / --model / \
                     --thick-model / --post-processing do not apply (reuse a trained model \
                     with --reuse, a thin/thick pair with --thick-work, or score one model \
                     without --folds)"
            );
            return ExitCode::from(2);
        }
        return crate::train::cli::run_folds(&manifest, &folds, threshold, &csv);
    }
    if let Some(flag) = folds.fold_only_flag() {
        eprintln!("osteon evaluate: {flag} needs --folds (leave-2-out or holdout)");
        return ExitCode::from(2);
    }
    if folds.plot.is_some() && !baseline {
        eprintln!("osteon evaluate: --plot needs --folds or --baseline (the plot sets the CNN beside the threshold)");
        return ExitCode::from(2);
    }
    if thick_model.is_some() && matches!(segmenter, EvalSegmenterArg::Threshold) {
        eprintln!("osteon evaluate: --thick-model needs --segmenter cnn");
        return ExitCode::from(2);
    }
    if post_processing.is_some() && matches!(segmenter, EvalSegmenterArg::Threshold) {
        eprintln!(
            "osteon evaluate: --post-processing applies to --segmenter cnn; the \
                 threshold segmenter keeps its largest component"
        );
        return ExitCode::from(2);
    }
    let post_processing = post_processing.unwrap_or_default();
    let options = OfflineOptions {
        segmenter: match segmenter {
            EvalSegmenterArg::Threshold => SegmenterChoice::Threshold,
            EvalSegmenterArg::Cnn => SegmenterChoice::Cnn,
        },
        threshold_hu: threshold,
        model_dir: PathBuf::from(offline::DEFAULT_MODEL_DIR),
        model,
        thick_model,
        thick_from_mm: folds.thick_from_mm,
        mesh: crate::mesh::MeshOptions::default(),
        progress: false,
        post_processing,
    };
    let segmenter = match offline::segmenter_for(&options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("osteon evaluate: error: {e}");
            return ExitCode::from(1);
        }
    };
    if baseline {
        return evaluate_beside_baseline(
            &manifest,
            segmenter.as_ref(),
            threshold,
            &csv,
            folds.plot.unwrap_or_else(|| csv.with_extension("svg")),
        );
    }
    match crate::eval::evaluate_manifest(&manifest, segmenter.as_ref(), &csv) {
        Ok(evaluation) => {
            print!("{}", evaluation.table());
            println!("CSV: {}", csv.display());
            if evaluation.failed() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("osteon evaluate: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `osteon evaluate --segmenter cnn --baseline`: scores `cnn` and the threshold segmenter at
/// `threshold_hu` on every scan of `manifest`, prints both tables and the per-scanner comparison,
/// writes the combined CSV to `csv` and the paper's Fig. 6 (signed surface deviation per scan,
/// mean ± SD, grouped by scanner) to `plot`. Exit 1 when a scan could not be scored by either.
fn evaluate_beside_baseline(
    manifest: &std::path::Path,
    cnn: &dyn crate::segment::Segmenter,
    threshold_hu: f32,
    csv: &std::path::Path,
    plot: PathBuf,
) -> ExitCode {
    use crate::eval::compare::{combined_csv, comparison_table, deviation_plot_svg};
    // Both outputs are checked before hours of scoring, and neither may overwrite the other or a
    // file that is not an earlier plot.
    let plot_ok = plot
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        && (!plot.exists() || plot.is_file());
    if plot == csv || !plot_ok {
        eprintln!(
            "osteon evaluate: the plot {} must be a .svg file other than the CSV",
            plot.display()
        );
        return ExitCode::from(2);
    }
    if let Err(reason) = crate::pipeline::report::check_folder(&plot) {
        eprintln!("osteon evaluate: {reason}");
        return ExitCode::from(2);
    }
    let base = match offline::segmenter_for(&OfflineOptions {
        segmenter: SegmenterChoice::Threshold,
        threshold_hu,
        model_dir: PathBuf::from(offline::DEFAULT_MODEL_DIR),
        model: None,
        thick_model: None,
        thick_from_mm: crate::segment::pair::THICK_FROM_MM,
        mesh: crate::mesh::MeshOptions::default(),
        progress: false,
        post_processing: Default::default(),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("osteon evaluate: error: {e}");
            return ExitCode::from(1);
        }
    };
    // While the baseline runs, the CSV holds the CNN's rows and the baseline's rows so far, so a
    // run stopped during the baseline keeps everything it scored.
    let fail = |e: crate::eval::EvalError| {
        eprintln!("osteon evaluate: error: {e}");
        ExitCode::from(1)
    };
    let a = match crate::eval::evaluate_manifest(manifest, cnn, csv) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let b = match crate::eval::evaluate_manifest_into(manifest, base.as_ref(), csv, |b| {
        combined_csv(&a, b, &[])
    }) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    print!("{}\n{}\n{}", a.table(), b.table(), comparison_table(&a, &b));
    if let Err(e) = std::fs::write(&plot, deviation_plot_svg(&a, &b)) {
        eprintln!("osteon evaluate: writing {}: {e}", plot.display());
        return ExitCode::from(1);
    }
    println!("CSV: {}; plot: {}", csv.display(), plot.display());
    if a.failed() + b.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
