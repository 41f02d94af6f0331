//! Training the CNN patch classifier (`osteon train --manifest m.toml --out models/x.safetensors`).
//!
//! * [`sample`]: balanced sampling of tiles inside the per-slice bone region.
//! * `augment`: augmentation of the tiles (thick-slice slabs, contrast, kernels, noise).
//! * [`data`]: loading the scans of a manifest (CT, label, normalisation, SHA-256 provenance).
//! * [`plan`]: which model holds out which scans (leave-2-out folds, hold-out).
//! * `fit` (feature `torch`): the optimisation loop, threshold calibration, saving.
//! * `calibrate` (feature `torch`): `osteon calibrate`, the threshold calibrated again through
//!   the segmenter's whole chain (post-processed masks) on the validation scans.
//! * `checkpoint` (feature `torch`): checkpoints that a stopped run resumes from exactly.
//! * `rmsprop` (feature `torch`): the optimizer, its running averages saved with each checkpoint.
//! * `folds` (feature `torch`): leave-2-out cross-validation (`osteon evaluate --folds`);
//!   `variants_table`: its report of the degraded copies.
//! * [`cli`]: the command's arguments.
//!
//! Objective (Minnema et al. 2018, §2.3): cross-entropy of the centre-voxel class of 33x33 axial
//! patches drawn with a set bone fraction inside the per-slice bone rectangle; RMSprop with
//! learning rate 0.005 and Keras-style decay 0.01, i.e. the learning rate of step `t` (0-based,
//! counted in optimizer steps, not epochs) is `lr_t = 0.005 / (1 + 0.01 t)`; RMSprop's own
//! constants are Keras' (rho 0.9, epsilon 1e-7). The patches are evaluated densely on tiles
//! ([`sample`]), which is the same objective at a fraction of the cost on a CPU.

mod augment;
#[cfg(feature = "torch")]
pub mod calibrate;
pub mod cli;
pub mod data;
pub mod plan;
pub mod sample;

#[cfg(feature = "torch")]
mod checkpoint;
#[cfg(feature = "torch")]
pub mod fit;
#[cfg(feature = "torch")]
pub mod folds;
pub mod folds_cli;
#[cfg(feature = "torch")]
pub mod rmsprop;
#[cfg(feature = "torch")]
pub mod variants_table;

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The manifest could not be loaded.
    #[error(transparent)]
    Manifest(#[from] crate::eval::manifest::ManifestError),
    /// A scan could not be loaded or labelled.
    #[error("scan {scan}: {message}")]
    Scan {
        /// Manifest name of the scan.
        scan: String,
        /// What failed.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad settings (message names the setting).
    #[error("invalid setting: {0}")]
    Settings(String),
    /// The model could not be built, saved or loaded.
    #[error(transparent)]
    Model(#[from] crate::segment::cnn::CnnError),
    /// A checkpoint does not match the settings it is resumed with.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// Checkpoint JSON.
        path: PathBuf,
        /// What differs.
        message: String,
    },
}
