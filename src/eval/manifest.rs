//! Manifests: TOML files naming the scans used for training and evaluation (docs/labels.md).
//!
//! ```toml
//! [manifest]
//! name = "real"
//! description = "The two real CT series in ../shared/data/ct"
//! root = ".."            # base of relative paths, relative to this file's folder (default ".")
//!
//! [[scan]]
//! name = "philips-s2020"                      # unique
//! series = "../shared/data/ct/philips-ingenuity-head-phantom/S2020"   # folder or file(s) of the CT
//! series_selector = "2020"                    # optional: SeriesInstanceUID or SeriesNumber
//! scanner = "philips-ingenuity"               # scanner group for per-scanner tables
//! split = "test"                              # train | validation | test
//! fold = 0                                    # optional cross-validation fold
//! label = { kind = "reference", threshold_hu = 226.0 }   # or kind = "seg" | "stl", path = "..."
//! rim = { polylines = [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], radius_mm = 2.0 }   # optional
//! phantom = "target/phantoms/x/phantom.json"  # optional: scoring regions of a synthetic scan
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metrics::RimBand;
use crate::label::reference::ReferenceOptions;

/// Errors of loading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("reading manifest {path}: {source}")]
    Io {
        /// Manifest file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or does not match the format (message gives line and column).
    #[error("manifest {path}: {message}")]
    Parse {
        /// Manifest file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// The manifest parses but names missing files, duplicate scans or bad values; every problem is
    /// listed.
    #[error("manifest {path}: {}", problems.join("; "))]
    Invalid {
        /// Manifest file.
        path: PathBuf,
        /// One line per problem, naming the scan.
        problems: Vec<String>,
    },
}

/// The `[manifest]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name of the scan set.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Base folder of relative paths, relative to the manifest's folder (default: that folder).
    #[serde(default)]
    pub root: Option<PathBuf>,
}

/// Where a scan's label comes from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LabelSpec {
    /// A DICOM SEG on the scan's grid (e.g. a phantom's `label-seg.dcm`).
    Seg {
        /// SEG file.
        path: PathBuf,
    },
    /// A closed STL in the scan's LPS mm, voxelised at evaluation time.
    Stl {
        /// STL file.
        path: PathBuf,
    },
    /// The reference procedure ([`crate::label::reference`]); unset options take their defaults.
    Reference {
        /// Threshold, HU.
        threshold_hu: Option<f32>,
        /// Opening half-width, mm.
        opening_radius_mm: Option<f64>,
        /// Reconstruction steps.
        reconstruct_steps: Option<u32>,
    },
}

impl LabelSpec {
    /// Options of a `reference` label (defaults filled in); `None` for SEG/STL labels.
    pub fn reference_options(&self) -> Option<ReferenceOptions> {
        match self {
            LabelSpec::Reference {
                threshold_hu,
                opening_radius_mm,
                reconstruct_steps,
            } => {
                let d = ReferenceOptions::default();
                Some(ReferenceOptions {
                    threshold_hu: threshold_hu.unwrap_or(d.threshold_hu),
                    opening_radius_mm: opening_radius_mm.unwrap_or(d.opening_radius_mm),
                    reconstruct_steps: reconstruct_steps.unwrap_or(d.reconstruct_steps),
                })
            }
            _ => None,
        }
    }

    /// Short name: `seg`, `stl` or `reference`.
    pub fn kind(&self) -> &'static str {
        match self {
            LabelSpec::Seg { .. } => "seg",
            LabelSpec::Stl { .. } => "stl",
            LabelSpec::Reference { .. } => "reference",
        }
    }
}

/// Data split of a scan.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training.
    Train,
    /// Validation (model selection).
    Validation,
    /// Held-out test.
    Test,
    /// Training in every model of a cross-validation (`osteon evaluate --folds`): never held out
    /// and never calibrated on, so that a leave-2-out can learn from more heads than its pool
    /// while each held-out scan stays unseen; to `osteon train` and the hold-out plan, a training
    /// scan.
    Extra,
}

/// One `[[scan]]` entry. Paths are resolved against the manifest's root by [`Manifest::load`].
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScanEntry {
    /// Unique name.
    pub name: String,
    /// Folder (searched recursively) or file of the CT series.
    pub series: PathBuf,
    /// SeriesInstanceUID or SeriesNumber when `series` holds several series.
    #[serde(default)]
    pub series_selector: Option<String>,
    /// Scanner group (per-scanner tables), e.g. a phantom profile name.
    pub scanner: String,
    /// Split.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Cross-validation fold.
    #[serde(default)]
    pub fold: Option<u32>,
    /// Label source.
    pub label: LabelSpec,
    /// Rim of the skull defect, for the rim deviation.
    #[serde(default)]
    pub rim: Option<RimBand>,
    /// phantom.json of a synthetic scan: its `regions` (defect rim, skull-base slab, metal) are
    /// scored ([`super::regions`]); its rim is used when `rim` is not given.
    #[serde(default)]
    pub phantom: Option<PathBuf>,
}

fn default_split() -> Split {
    Split::Test
}

/// A loaded, validated manifest.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[manifest]` table.
    pub manifest: Header,
    /// `[[scan]]` entries, in file order.
    #[serde(default)]
    pub scan: Vec<ScanEntry>,
}

impl Manifest {
    /// Parses TOML text; relative paths are resolved against `base` (then `manifest.root`).
    ///
    /// # Errors
    /// [`ManifestError::Parse`] with the parser's line/column message, [`ManifestError::Invalid`]
    /// listing every problem (no scan, duplicate names, missing series folders or label files,
    /// non-positive rim radius). `path` only names the source in messages.
    pub fn parse(text: &str, base: &Path, path: &Path) -> Result<Manifest, ManifestError> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let root = match &m.manifest.root {
            Some(r) => base.join(r),
            None => base.to_owned(),
        };
        let mut problems = Vec::new();
        if m.scan.is_empty() {
            problems.push("no [[scan]] entries".to_owned());
        }
        let mut names = HashSet::new();
        for s in &mut m.scan {
            if s.name.trim().is_empty() {
                problems.push("a scan has an empty name".to_owned());
            } else if !names.insert(s.name.clone()) {
                problems.push(format!("scan {:?}: name used twice", s.name));
            }
            if s.scanner.trim().is_empty() {
                problems.push(format!("scan {:?}: empty scanner group", s.name));
            }
            s.series = root.join(&s.series);
            if !s.series.exists() {
                problems.push(format!(
                    "scan {:?}: series {} does not exist",
                    s.name,
                    s.series.display()
                ));
            }
            match &mut s.label {
                LabelSpec::Seg { path: p } | LabelSpec::Stl { path: p } => {
                    *p = root.join(&*p);
                    if !p.is_file() {
                        problems.push(format!(
                            "scan {:?}: label file {} does not exist",
                            s.name,
                            p.display()
                        ));
                    }
                }
                LabelSpec::Reference {
                    threshold_hu,
                    opening_radius_mm,
                    ..
                } => {
                    if threshold_hu.is_some_and(|t| !t.is_finite()) {
                        problems.push(format!("scan {:?}: threshold_hu is not finite", s.name));
                    }
                    if opening_radius_mm.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
                        problems.push(format!("scan {:?}: opening_radius_mm must be >= 0", s.name));
                    }
                }
            }
            if let Some(p) = &mut s.phantom {
                *p = root.join(&*p);
                if !p.is_file() {
                    problems.push(format!(
                        "scan {:?}: phantom file {} {}",
                        s.name,
                        p.display(),
                        if p.exists() {
                            "is not a file (name the phantom.json itself)"
                        } else {
                            "does not exist"
                        }
                    ));
                }
            }
            if let Some(rim) = &s.rim {
                if !(rim.radius_mm > 0.0 && rim.radius_mm.is_finite()) {
                    problems.push(format!("scan {:?}: rim radius_mm must be > 0", s.name));
                }
            }
        }
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Reads and validates the manifest at `path` (relative paths against its folder and `root`).
    ///
    /// # Errors
    /// [`ManifestError::Io`] and those of [`Manifest::parse`].
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Manifest::parse(&text, base, path)
    }
}
