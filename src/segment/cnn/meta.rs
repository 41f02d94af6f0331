//! The model's JSON metadata (`<weights stem>.json` beside `<weights stem>.safetensors`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::arch::Architecture;
use super::normalise::Normalisation;
use super::CnnError;

/// Value of [`ModelMeta::format`].
pub const FORMAT: &str = "osteon-cnn/1";

/// Everything needed to run a model and to know where it came from. An unknown top-level field
/// is refused on reading (a misspelt `test_time_orientation` would otherwise be ignored and the
/// model run with its default).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Format tag, [`FORMAT`].
    pub format: String,
    /// Network architecture (checked against the weights on load).
    pub architecture: Architecture,
    /// Grey-value normalisation the model was trained with.
    pub normalisation: Normalisation,
    /// Decision threshold on the bone probability (calibrated on validation scans).
    pub threshold: f32,
    /// Working pixel spacing, mm: when set, slices whose PixelSpacing differs from it by more than
    /// [`super::resample::SPACING_TOLERANCE`] are resampled to it before the network and the
    /// probabilities back ([`super::resample`]); absent = every slice runs at its own spacing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_pixel_mm: Option<f64>,
    /// Test-time orientations averaged at inference ([`super::infer::DenseOptions::orientations`]:
    /// 1, 2, 4 or 8); absent = 1. Set with the threshold calibrated for it (`osteon calibrate
    /// --orientations N --write`), since averaging changes the probabilities the threshold cuts.
    #[serde(
        default = "one_orientation",
        skip_serializing_if = "is_one_orientation"
    )]
    pub test_time_orientations: usize,
    /// SHA-256 (hex) of the weights file this JSON describes; when present, loading checks it, so
    /// that a JSON beside other weights (files swapped or overwritten by hand) is refused rather
    /// than run with another model's threshold and settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// How the model was trained (free-form for models made elsewhere).
    #[serde(default)]
    pub training: serde_json::Value,
    /// The threshold's calibration through the whole chain, when `osteon calibrate --write`
    /// made it (method, raw threshold, orientations, scans, table); free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_calibration: Option<serde_json::Value>,
}

fn one_orientation() -> usize {
    1
}

fn is_one_orientation(n: &usize) -> bool {
    *n == 1
}

/// The JSON path of a weights file: same folder and stem, extension `json`.
pub fn meta_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

impl ModelMeta {
    /// Reads and checks the metadata at `path`.
    ///
    /// # Errors
    /// [`CnnError::Io`] (missing or unreadable), [`CnnError::Meta`] (not JSON of this format, or a
    /// threshold outside (0, 1)), [`CnnError::Architecture`] (an architecture this build does not
    /// implement).
    pub fn read(path: &Path) -> Result<ModelMeta, CnnError> {
        let text = std::fs::read_to_string(path).map_err(|source| CnnError::Io {
            path: path.to_owned(),
            source,
        })?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| CnnError::Meta {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if meta.format != FORMAT {
            return Err(CnnError::Meta {
                path: path.to_owned(),
                message: format!("format {:?}, expected {FORMAT:?}", meta.format),
            });
        }
        if !(meta.threshold > 0.0 && meta.threshold < 1.0) {
            return Err(CnnError::Meta {
                path: path.to_owned(),
                message: format!("threshold {} outside (0, 1)", meta.threshold),
            });
        }
        if let Some(w) = meta.working_pixel_mm {
            if !(0.1..=5.0).contains(&w) {
                return Err(CnnError::Meta {
                    path: path.to_owned(),
                    message: format!("working_pixel_mm {w:?} outside [0.1, 5] mm"),
                });
            }
        }
        if !super::infer::ORIENTATIONS.contains(&meta.test_time_orientations) {
            return Err(CnnError::Meta {
                path: path.to_owned(),
                message: format!(
                    "test_time_orientations {} is not one of {:?}",
                    meta.test_time_orientations,
                    super::infer::ORIENTATIONS
                ),
            });
        }
        if let Normalisation::AirTissue { lo, hi } = meta.normalisation {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(CnnError::Meta {
                    path: path.to_owned(),
                    message: format!("normalisation clip [{lo}, {hi}] must be finite with lo < hi"),
                });
            }
        }
        meta.architecture
            .validate()
            .map_err(|message| CnnError::Architecture {
                path: path.to_owned(),
                message,
            })?;
        Ok(meta)
    }

    /// Writes the metadata as pretty JSON to `path`.
    ///
    /// # Errors
    /// [`CnnError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), CnnError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| CnnError::Meta {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|source| CnnError::Io {
            path: path.to_owned(),
            source,
        })
    }
}
