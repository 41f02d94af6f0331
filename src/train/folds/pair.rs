//! Cross-validation of a thin/thick model pair ([`crate::segment::pair`]): each held-out scan is
//! scored by the fold model of the work folder its slab (median slice gap or SliceThickness)
//! chooses, the thin one (`--work`) or the thick one (`--thick-work`, trained beforehand with its
//! own recipe by `--folds leave-2-out --train-only --work THICK`). Each model's scores are kept in
//! its own work folder's `scores/`, so a pair run reuses what the two single runs scored.

use std::path::{Path, PathBuf};

use super::super::TrainError;
use crate::eval::manifest::ScanEntry;
use crate::segment::pair::{choose, PairChoice, PairModel};

/// The thick half of a pair under cross-validation.
#[derive(Clone, Debug)]
pub struct ThickFolds {
    /// Folder of the thick fold models (`fold-NN.safetensors`, `final.safetensors` + JSON), named
    /// as in the thin work folder.
    pub work: PathBuf,
    /// Median slice gap (mm) from which a scan goes to the thick model.
    pub from_mm: f64,
}

/// Where one scan is scored: the model file, the folder of its kept scores and the choice (`None`
/// without a pair).
pub(super) struct Route {
    pub model: PathBuf,
    pub cache_dir: PathBuf,
    pub choice: Option<PairChoice>,
}

impl ThickFolds {
    /// Checks the split and the folder, and makes the thick `scores/` folder (before any
    /// training or scoring: a wrong `--thick-work` must not cost hours of folds first).
    ///
    /// # Errors
    /// [`TrainError::Settings`] for a split that is not a positive length or a folder that does
    /// not exist, [`TrainError::Io`] when `scores/` cannot be made.
    pub(super) fn check(&self) -> Result<(), TrainError> {
        if !(self.from_mm.is_finite() && self.from_mm > 0.0) {
            return Err(TrainError::Settings(format!(
                "--thick-from-mm {}: must be a positive number of mm",
                self.from_mm
            )));
        }
        if !self.work.is_dir() {
            return Err(TrainError::Settings(format!(
                "--thick-work {}: not a folder (the thick recipe's fold models, trained \
                 beforehand with --folds leave-2-out --train-only --work)",
                self.work.display()
            )));
        }
        let scores = self.work.join("scores");
        std::fs::create_dir_all(&scores).map_err(|source| TrainError::Io {
            path: scores,
            source,
        })
    }

    /// Checks, after routing and before any scoring, that every thick model a scan was routed to
    /// exists with its JSON (only those: a thick recipe need not train the folds that hold out
    /// thin series only).
    ///
    /// # Errors
    /// [`TrainError::Settings`] naming the first missing model and the scan that needs it.
    pub(super) fn check_routes(&self, routes: &[Route], names: &[&str]) -> Result<(), TrainError> {
        for (r, name) in routes.iter().zip(names) {
            let thick = r
                .choice
                .as_ref()
                .is_some_and(|c| c.model == PairModel::Thick);
            let json = r.model.with_extension("json");
            let missing = match (r.model.is_file(), json.is_file()) {
                (true, true) => continue,
                (false, true) => r.model.display().to_string(),
                (true, false) => json.display().to_string(),
                (false, false) => format!("{} (and its .json)", r.model.display()),
            };
            if thick {
                return Err(TrainError::Settings(format!(
                    "--thick-work: {missing} is missing, needed for {name}: train the thick fold \
                     models first (osteon evaluate --folds leave-2-out --train-only --work {} \
                     with the thick recipe)",
                    self.work.display()
                )));
            }
        }
        Ok(())
    }

    /// The thick model standing for the thin model `thin` (same file name in [`Self::work`]).
    fn model_for(&self, thin: &Path) -> PathBuf {
        self.work.join(thin.file_name().unwrap_or_default())
    }

    /// Where `e` is scored: reads its series (geometry only matters) and chooses by the median
    /// slice gap. A series that cannot be read goes to the thin model, whose scoring then reports
    /// the reading error in the scan's row.
    pub(super) fn route(&self, e: &ScanEntry, thin: &Path, thin_cache: &Path) -> Route {
        let ct = crate::label::load_ct(
            std::slice::from_ref(&e.series),
            e.series_selector.as_deref(),
        );
        let Ok(ct) = ct else {
            return Route {
                model: thin.to_owned(),
                cache_dir: thin_cache.to_owned(),
                choice: None,
            };
        };
        let choice = choose(&ct, self.from_mm);
        let (model, cache_dir) = match choice.model {
            PairModel::Thin => (thin.to_owned(), thin_cache.to_owned()),
            PairModel::Thick => (self.model_for(thin), self.work.join("scores")),
        };
        Route {
            model,
            cache_dir,
            choice: Some(choice),
        }
    }
}
