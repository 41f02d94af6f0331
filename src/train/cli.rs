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

/// Device choice on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when libtorch sees a GPU, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device 0 (an error without one).
    Cuda,
}

/// Arguments of `osteon train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Manifest (TOML, docs/labels.md): `train` scans train, `validation` scans calibrate the
    /// decision threshold, `test` scans are not read.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Output weights (`.safetensors`); the metadata goes beside it as `.json`, the checkpoint as
    /// `.ckpt.json` naming the step's weights and RMSprop state (`.ckpt-NNNNNN.safetensors`,
    /// `.ckpt-NNNNNN.rmsprop.safetensors`).
    #[arg(long)]
    pub out: PathBuf,
    /// Filters of the four convolution blocks, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = DEFAULT_FILTERS)]
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
    /// Largest loss of contrast above soft tissue in augmentation (0.6: bone brightness above
    /// tissue x 0.4..1 for half the tiles, as low-density bone and thick slices; 0 = off).
    #[arg(long, default_value_t = 0.6)]
    pub bone_contrast: f32,
    /// Largest simulated slice thickness in augmentation, mm (e.g. 10: a quarter of the tiles
    /// average the thin slices of a 2..10 mm slab, the partial volume of thick-slice CT; 0 = off,
    /// the default: see models/MODEL-cpu-1.md, experiment cpu-2).
    #[arg(long, default_value_t = 0.0)]
    pub slab_mm: f32,
    /// Largest edge-enhancement weight in augmentation (e.g. 0.6: a fifth of the tiles get
    /// x + a (x - blur(x)), a in 0..0.6, the overshoot of sharp kernels; 0 = off, the default).
    #[arg(long, default_value_t = 0.0)]
    pub sharpen: f32,
    /// Largest in-plane scale factor in augmentation (e.g. 1.4: half the tiles resampled by a
    /// factor in 1/1.4..1.4, for other pixel spacings; 1 or less = off; default 0, as models
    /// trained before the setting existed read back).
    #[arg(long, default_value_t = 0.0)]
    pub zoom: f32,
    /// How a tile's slice is drawn: `slice` (the default; uniformly over all slices with bone,
    /// so scans weigh by their slice count) or `scan` (a scan first, so a 41-slice 5 mm scan
    /// weighs as much as a 328-slice thin one).
    #[arg(long, value_enum, default_value_t = super::sample::Draw::Slice)]
    pub draw: super::sample::Draw,
    /// Target of a `--slab-mm` tile: `centre` (the default; the central slice's label) or
    /// `occupancy` (bone where bone fills at least half of the slab, as the phantoms' thick-slice
    /// labels are defined).
    #[arg(long, value_enum, default_value_t = super::sample::SlabLabel::Centre)]
    pub slab_label: super::sample::SlabLabel,
    /// Neighbour planes, mm: 0 (the default) = the network sees the slice alone; d > 0 = it also
    /// sees the planes d mm below and above it along the slice normal, interpolated from the
    /// series' slice positions (e.g. 3: for thick slices, where one slice cannot tell where in
    /// the slab the bone lies).
    #[arg(long, default_value_t = 0.0)]
    pub neighbour_mm: f32,
    /// Neighbour planes that are the adjacent slices (k - 1, k + 1), whatever their distance; in
    /// training a thick-slab tile's are the slabs of its thickness below and above it (use with
    /// --slab-mm). Excludes --neighbour-mm.
    #[arg(long)]
    pub neighbour_adjacent: bool,
    /// Working pixel spacing, mm: scans whose PixelSpacing differs by more than 10 % are
    /// resampled to it for training, and the model does the same at inference, so the 33x33
    /// receptive field covers the same millimetres on every scan (default: each scan's own).
    #[arg(long)]
    pub working_pixel_mm: Option<f64>,
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
    /// Where the network trains.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

/// The training options `args` describe.
///
/// # Errors
/// A message when `--filters` does not hold 4 numbers.
#[cfg(feature = "torch")]
pub fn options(args: &TrainArgs) -> Result<super::fit::TrainOptions, String> {
    use super::fit::{DeviceChoice, TrainOptions};
    use super::sample::SampleSettings;
    use crate::segment::cnn::normalise::Normalisation;
    let filters = <[usize; 4]>::try_from(args.filters.as_slice())
        .map_err(|_| "--filters needs 4 numbers".to_owned())?;
    Ok(TrainOptions {
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
            bone_contrast: args.bone_contrast,
            slab_mm: args.slab_mm,
            sharpen: args.sharpen,
            zoom: args.zoom,
            draw: args.draw,
            slab_label: args.slab_label,
            neighbour_mm: args.neighbour_mm,
            neighbour_adjacent: args.neighbour_adjacent,
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
        device: match args.device {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
        },
        working_pixel_mm: args.working_pixel_mm,
    })
}

/// Runs `osteon train`; exit code 0 on success, 1 on failure.
#[cfg(feature = "torch")]
pub fn run(args: &TrainArgs) -> ExitCode {
    use super::fit::train;
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("osteon train: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("osteon train: creating {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    match train(&o) {
        Ok(r) => {
            // One progress record (fewer steps than --log-every) has no trend to show.
            let loss = if r.losses.len() < 2 {
                format!("loss {:.4} (mean over the run)", r.last_loss)
            } else {
                format!("loss {:.4} -> {:.4}", r.first_loss, r.last_loss)
            };
            println!(
                "trained {} steps in {:.0} s: {loss}, threshold {:.3} -> {}",
                r.steps,
                r.seconds,
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

pub use super::folds_cli::{check_report_targets, run_folds, FoldArgs, FoldScheme};
