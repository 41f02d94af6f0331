//! The CNN segmenter: the patch classifier of Minnema et al. (2018) evaluated densely.
//!
//! * [`arch`]: the architecture as data (filters, kernels, receptive field = 33x33, cost).
//! * [`normalise`]: grey-value normalisation (paper eq. 1, and the scanner-robust default).
//! * [`meta`]: the model's JSON metadata.
//! * [`roi`]: per-slice regions of interest (head box for inference, bone box for training).
//! * `net` (feature `torch`): the network in tch.
//! * `infer` (feature `torch`): exact dense inference over slices and per-patch classification.
//! * `segmenter` (feature `torch`): `CnnSegmenter` and `load`.
//!
//! Training lives in [`crate::train`].

pub mod arch;
pub mod meta;
pub mod normalise;
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
