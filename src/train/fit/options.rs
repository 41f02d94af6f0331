//! The settings of a training run ([`TrainOptions`], all recorded in the model's JSON), the device
//! choice, and the checks of the settings that need no data ([`check_options`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;

use super::super::sample::SampleSettings;
use super::super::TrainError;
use crate::segment::cnn::arch::Architecture;
use crate::segment::cnn::normalise::Normalisation;

/// Settings of a training run (all recorded in the model's JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Manifest of the scans (`train` split trains, `validation` calibrates the threshold).
    pub manifest: PathBuf,
    /// Output weights, `*.safetensors` (JSON beside it; checkpoint `*.ckpt.json`, naming its weights
    /// `*.ckpt-NNNNNN.safetensors` and RMSprop state `*.ckpt-NNNNNN.rmsprop.safetensors` of step N).
    pub out: PathBuf,
    /// Filters of the four blocks.
    pub filters: [usize; 4],
    /// Normalisation.
    pub normalisation: Normalisation,
    /// Optimizer steps (the run ends at `steps` or at `minutes`, whichever is first).
    pub steps: usize,
    /// Wall-clock budget, minutes.
    pub minutes: Option<f64>,
    /// Tiles per step.
    pub tiles_per_step: usize,
    /// Sampling and augmentation.
    pub sample: SampleSettings,
    /// Initial learning rate (0.005).
    pub lr: f64,
    /// Keras-style decay: `lr_t = lr / (1 + decay * t)`, `t` = optimizer step.
    pub decay: f64,
    /// Seed of initialisation, dropout and sampling.
    pub seed: u64,
    /// CPU threads of libtorch.
    pub threads: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Steps between progress lines.
    pub log_every: usize,
    /// Continue from the checkpoint beside `out` when one exists.
    pub resume: bool,
    /// Dilation of the per-slice bone rectangle, voxels.
    pub bone_margin: usize,
    /// Where the network trains (`auto`: CUDA when libtorch sees a GPU, else the CPU).
    #[serde(default)]
    pub device: DeviceChoice,
    /// Working pixel spacing, mm ([`crate::segment::cnn::resample`]): training and validation
    /// scans whose PixelSpacing differs from it by more than 10 % are resampled to it (image
    /// linearly, label as the interpolated label >= 0.5), and the model's JSON carries it so that
    /// inference does the same; `None` = every scan at its own spacing (models before it existed).
    #[serde(default)]
    pub working_pixel_mm: Option<f64>,
}

/// Device choice of training (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA device 0 when available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device 0; an error when libtorch sees none.
    Cuda,
}

impl DeviceChoice {
    /// The libtorch device.
    ///
    /// # Errors
    /// [`TrainError::Settings`] for `Cuda` without a CUDA device.
    pub fn resolve(self) -> Result<Device, TrainError> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(TrainError::Settings(
                "--device cuda: libtorch sees no CUDA device".into(),
            )),
        }
    }
}

/// Largest tile side (voxels) and tiles per step [`train`] accepts.
pub const MAX_TILE: usize = 1024;
/// See [`MAX_TILE`].
pub const MAX_TILES: usize = 4096;

/// Checks the settings of `o` that do not need the data (output name, tile sizes, learning rate,
/// decay, steps, time budget, bone fraction, architecture).
///
/// # Errors
/// [`TrainError::Settings`] naming the setting.
pub fn check_options(o: &TrainOptions) -> Result<(), TrainError> {
    if o.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(TrainError::Settings(format!(
            "--out {} must end in .safetensors",
            o.out.display()
        )));
    }
    if o.tiles_per_step == 0 || o.sample.tile < 1 || o.sample.per_tile == 0 {
        return Err(TrainError::Settings(
            "tiles, tile size and patches per tile must be > 0".into(),
        ));
    }
    if o.tiles_per_step > MAX_TILES || o.sample.tile > MAX_TILE {
        return Err(TrainError::Settings(format!(
            "tiles per step {} / tile size {} above the limits {MAX_TILES} / {MAX_TILE}",
            o.tiles_per_step, o.sample.tile
        )));
    }
    if o.sample.per_tile > o.sample.tile * o.sample.tile {
        return Err(TrainError::Settings(format!(
            "--patches-per-tile {} is more than the {} voxels of a {t}x{t} tile (--tile-size {t}): \
             raise --tile-size or lower --patches-per-tile",
            o.sample.per_tile,
            o.sample.tile * o.sample.tile,
            t = o.sample.tile
        )));
    }
    if !(o.lr.is_finite() && o.lr > 0.0 && o.lr <= 1.0) {
        return Err(TrainError::Settings(format!(
            "--lr {} outside (0, 1]",
            o.lr
        )));
    }
    if !(o.decay.is_finite() && o.decay >= 0.0) {
        return Err(TrainError::Settings(format!(
            "--decay {} must be finite and >= 0",
            o.decay
        )));
    }
    if o.steps == 0 {
        return Err(TrainError::Settings("--steps must be >= 1".into()));
    }
    // 0 would silently mean 1: one thread, or a checkpoint / progress line after every step.
    for (flag, v) in [
        ("--threads", o.threads),
        ("--checkpoint-every", o.checkpoint_every),
        ("--log-every", o.log_every),
    ] {
        if v == 0 {
            return Err(TrainError::Settings(format!("{flag} must be >= 1")));
        }
    }
    if let Some(w) = o.working_pixel_mm {
        if !(0.1..=5.0).contains(&w) {
            return Err(TrainError::Settings(format!(
                "--working-pixel-mm {w:?} outside [0.1, 5] mm"
            )));
        }
    }
    if let Some(m) = o.minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(TrainError::Settings(format!(
                "--minutes {m} must be finite and > 0"
            )));
        }
    }
    // Augmentation settings: (flag, value, lower, upper, upper bound open, unit, what turns it off).
    let sm = &o.sample;
    let augmentation = [
        (
            "--noise-hu",
            sm.noise_hu,
            1000.0,
            false,
            " HU",
            "0 turns noise augmentation off",
        ),
        (
            "--bone-contrast",
            sm.bone_contrast,
            1.0,
            true,
            "",
            "0 turns the bone-contrast augmentation off",
        ),
        (
            "--slab-mm",
            sm.slab_mm,
            50.0,
            false,
            " mm",
            "0 turns the thick-slice augmentation off",
        ),
        (
            "--sharpen",
            sm.sharpen,
            2.0,
            false,
            "",
            "0 turns the edge-enhancement augmentation off",
        ),
        (
            "--zoom",
            sm.zoom,
            3.0,
            false,
            "",
            "1 or less turns the scale augmentation off",
        ),
        (
            "--neighbour-mm",
            sm.neighbour_mm,
            20.0,
            false,
            " mm",
            "0 gives the network the slice alone",
        ),
    ];
    for (flag, v, hi, open, unit, off) in augmentation {
        let inside = v.is_finite() && v >= 0.0 && if open { v < hi } else { v <= hi };
        if !inside {
            let close = if open { ')' } else { ']' };
            return Err(TrainError::Settings(format!(
                "{flag} {v} must be in [0, {hi}{close}{unit} ({off})"
            )));
        }
    }
    if !(0.0..=1.0).contains(&o.sample.bone_fraction) {
        return Err(TrainError::Settings(format!(
            "--bone-fraction {} outside [0, 1]",
            o.sample.bone_fraction
        )));
    }
    if o.sample.slab_label == super::super::sample::SlabLabel::Occupancy && o.sample.slab_mm <= 0.0
    {
        return Err(TrainError::Settings(
            "--slab-label occupancy needs the thick-slice augmentation (--slab-mm > 0)".into(),
        ));
    }
    if o.sample.neighbour_adjacent && o.sample.neighbour_mm != 0.0 {
        return Err(TrainError::Settings(
            "--neighbour-adjacent and --neighbour-mm exclude each other".into(),
        ));
    }
    Architecture::with_filters(o.filters)
        .with_neighbours(o.sample.neighbours())
        .validate()
        .map_err(TrainError::Settings)
}
