//! The CNN segmenter: the patch classifier of Minnema et al. (2018) evaluated densely.
//!
//! * [`arch`]: the architecture as data (filters, kernels, receptive field = 33x33, cost).
//! * [`normalise`]: grey-value normalisation (paper eq. 1, and the scanner-robust default).
//! * [`meta`]: the model's JSON metadata.
//! * [`resample`]: in-plane resampling to a model's working pixel spacing.
//! * [`roi`]: per-slice regions of interest (head box for inference, bone box for training).
//! * `net` (feature `torch`): the network in tch.
//! * `infer` (feature `torch`): exact dense inference over slices and per-patch classification.
//! * `segmenter` (feature `torch`): `CnnSegmenter` and `load`.
//!
//! Training lives in [`crate::train`].
//!
//! # Architecture and its cost
//! The paper's family ([`arch`]): valid convolutions 7, 5, 5, 3, each followed by dropout 0.1
//! (training only), ReLU, batch norm and a 2x2 max-pool with stride 1, then a 13x13 2-class
//! convolution: receptive field exactly 33x33, so a 33x33 patch gives one output and a padded
//! slice gives one output per voxel ([`infer`]). Filter counts are chosen for the CPU target
//! (140 x 512 x 512 series <= 180 s on 2 cores, <= 4 GB): measured per 480x480 slice box of the
//! Philips S2020 series, dense, 2 threads, on the shared machine (load average 4-5 from other jobs):
//!
//! | filters | MAC/voxel | s per slice | series (140 slices, est.) |
//! |---|---|---|---|
//! | 8/16/16/16 | 17 704 | 0.52 | 73 s |
//! | **16/32/32/32** (default) | 59 216 | 1.04 | 145 s |
//! | 24/48/48/48 | 124 536 | 1.59 | 223 s |
//! | 64/128/128/128 (paper's source) | 808 256 | ~14 (13.6x the MACs) | ~33 min |
//!
//! Two layout choices made the difference (same values): channels-last tensors after the first
//! convolution (oneDNN runs the 13x13 2-class layer 2.4x and the 5x5 layers 1.3x faster) and the
//! stride-1 pool as the maximum of shifted views (3x faster than `max_pool2d` with stride 1).
//! Before them the default needed 2.06 s per slice and 343 s per series.
//!
//! # Normalisation
//! [`normalise`]: the default anchors air and soft tissue on the scan's own histogram modes
//! (air -> 0, tissue -> 1, clip [-0.5, 4]), which cancels any linear grey-value map; the paper's
//! per-scan min-max (eq. 1) is the reproduction mode. Measured (unit tests and training scans):
//! anchors within 6 HU of -1000/40 HU whatever the padding (-1000, -2000, -3024); bone at 1000 HU
//! normalises to 1.923 on the clean scan and within 0.01 of it after 0.75 x HU + 200, while
//! min-max moves soft tissue by > 0.2 when only the padding value changes (-3024 -> -1000). On the
//! training phantoms the anchors came out at air -987..-1004 / tissue 20..32 HU for the CT
//! profiles and air -890 / tissue -126 for the `cbct` profile, whose grey values are not HU: the
//! anchors follow the scanner, a fixed HU window would not.

pub mod arch;
pub mod meta;
pub mod normalise;
pub mod planes;
pub mod resample;
pub mod roi;

#[cfg(feature = "torch")]
pub mod infer;
#[cfg(feature = "torch")]
pub mod net;
#[cfg(feature = "torch")]
pub mod segmenter;

#[cfg(feature = "torch")]
pub use segmenter::{load, CnnSegmenter};

use std::path::PathBuf;

/// Errors of loading or running a CNN model.
#[derive(Debug, thiserror::Error)]
pub enum CnnError {
    /// A model file is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The JSON metadata is malformed or of another format.
    #[error("model metadata {path}: {message}")]
    Meta {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The metadata names an architecture this build does not implement.
    #[error("model metadata {path}: unsupported architecture: {message}")]
    Architecture {
        /// The JSON file.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// A weight tensor is missing, extra or of the wrong shape for the architecture.
    #[error("model weights {path}: tensor {name}: expected {expected}, found {found}")]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// Tensor name, e.g. `conv2.weight`.
        name: String,
        /// Shape the architecture needs.
        expected: String,
        /// Shape in the file.
        found: String,
    },
    /// The scan cannot be normalised.
    #[error(transparent)]
    Normalise(#[from] normalise::NormaliseError),
    /// Bad input to an inference function.
    #[error("invalid input: {0}")]
    Input(String),
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(String),
}
