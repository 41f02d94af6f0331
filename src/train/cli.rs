//! `osteon train`: arguments and entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::segment::cnn::arch::DEFAULT_FILTERS;

/// Normalisation choice on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NormArg {
    /// Air and soft-tissue histogram modes -> 0 and 1 (scanner-robust default).
    AirTissue,
    /// Paper eq. 1: per-scan min-max.
    MinMax,
}

/// Arguments of `osteon train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Manifest (TOML, docs/labels.md): `train` scans train, `validation` scans calibrate the
    /// decision threshold, `test` scans are not read.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Output weights (`.safetensors`); the metadata goes beside it as `.json`, checkpoints as
    /// `.ckpt.safetensors` + `.ckpt.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Filters of the four convolution blocks, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 4, default_values_t = DEFAULT_FILTERS)]
    pub filters: Vec<usize>,
    /// Grey-value normalisation.
    #[arg(long, value_enum, default_value_t = NormArg::AirTissue)]
    pub normalisation: NormArg,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Stop after this many minutes (checkpoint and model are written all the same).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Tiles per step.
    #[arg(long, default_value_t = 8)]
    pub tiles: usize,
    /// Output side of a tile, voxels (input side + 32).
    #[arg(long, default_value_t = 64)]
    pub tile_size: usize,
    /// Patches (drawn voxels) per tile; patches per step = tiles x this.
    #[arg(long, default_value_t = 64)]
    pub patches_per_tile: usize,
    /// Fraction of drawn patches that are bone (0.5 = the paper's balance).
    #[arg(long, default_value_t = 0.5)]
    pub bone_fraction: f64,
    /// Largest augmentation noise SD, HU (0 turns noise off).
    #[arg(long, default_value_t = 150.0)]
    pub noise_hu: f32,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.005)]
    pub lr: f64,
    /// Keras-style decay: lr_t = lr / (1 + decay t), t = optimizer step.
    #[arg(long, default_value_t = 0.01)]
    pub decay: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CPU threads (default: all).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Steps between progress lines.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Continue from the checkpoint beside --out.
    #[arg(long)]
    pub resume: bool,
}

/// Runs `osteon train`; exit code 0 on success, 1 on failure.
#[cfg(feature = "torch")]
pub fn run(args: &TrainArgs) -> ExitCode {
    use super::fit::{train, TrainOptions};
    use super::sample::SampleSettings;
    use crate::segment::cnn::normalise::Normalisation;
    let filters = match <[usize; 4]>::try_from(args.filters.as_slice()) {
        Ok(f) => f,
        Err(_) => {
            eprintln!("osteon train: --filters needs 4 numbers");
            return ExitCode::from(2);
        }
    };
    let o = TrainOptions {
        manifest: args.manifest.clone(),
        out: args.out.clone(),
        filters,
        normalisation: match args.normalisation {
            NormArg::AirTissue => Normalisation::default(),
            NormArg::MinMax => Normalisation::MinMax,
        },
        steps: args.steps,
        minutes: args.minutes,
        tiles_per_step: args.tiles,
        sample: SampleSettings {
            tile: args.tile_size,
            per_tile: args.patches_per_tile,
            bone_fraction: args.bone_fraction,
            noise_hu: args.noise_hu,
            ..SampleSettings::default()
        },
        lr: args.lr,
        decay: args.decay,
        seed: args.seed,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        checkpoint_every: args.checkpoint_every,
        log_every: args.log_every,
        resume: args.resume,
        bone_margin: 8,
    };
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("osteon train: creating {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    match train(&o) {
        Ok(r) => {
            println!(
                "trained {} steps in {:.0} s: loss {:.4} -> {:.4}, threshold {:.3} -> {}",
                r.steps,
                r.seconds,
                r.first_loss,
                r.last_loss,
                r.threshold,
                o.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osteon train: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without the `torch` feature there is no network to train.
#[cfg(not(feature = "torch"))]
pub fn run(_args: &TrainArgs) -> ExitCode {
    eprintln!("osteon train: this build has no libtorch (feature `torch` off)");
    ExitCode::FAILURE
}
