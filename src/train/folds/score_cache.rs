//! The kept scores of held-out scans (`work/scores/<scan>.json`), so that a stopped
//! cross-validation does not score a scan twice.

use tch::Device;

use super::VariantRow;
use crate::eval::manifest::ScanEntry;
use crate::eval::ScanResult;
use crate::segment::Segmenter;

/// What a held-out scan's kept scores (`work/scores/<scan>.json`) were made with: they are
/// reused only by a run of the same model file, CNN identity (weights digest, post-processing,
/// version, whose Osteon version changes with the post-processing: 0.2.0 added the probability
/// hysteresis) and baseline threshold. A change to the scoring code itself is not seen: delete
/// `scores/` after one, or bump the crate version with it.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
pub(super) struct CacheKey {
    model_sha256: String,
    cnn: String,
    threshold_hu: f32,
    /// `CPU fp32` or `CUDA fp16` (mixed precision on a GPU scores slightly differently).
    device: String,
    /// The manifest entry (name, scanner group, series, label, regions).
    entry: serde_json::Value,
    /// SHA-256 of the series files, the label file (empty for a reference label) and the
    /// phantom.json (empty without one).
    series_sha256: String,
    label_sha256: String,
    phantom_sha256: String,
}

/// A kept row: its key, the CNN's and the threshold's scores and the degraded copies' DSCs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    key: CacheKey,
    osteon: String,
    cnn: ScanResult,
    threshold: ScanResult,
    variants: VariantRow,
}

impl CacheKey {
    /// The key of scoring `e` with `cnn` (weights `model`) on `device`; `None` when a file cannot
    /// be hashed or the scan's name cannot be a file name (then the scan is scored, not kept).
    pub(super) fn of(
        e: &ScanEntry,
        model: &std::path::Path,
        cnn: &dyn Segmenter,
        threshold_hu: f32,
        device: Device,
    ) -> Option<CacheKey> {
        use crate::eval::manifest::LabelSpec;
        let plain =
            !e.name.is_empty() && !e.name.starts_with('.') && !e.name.contains(['/', '\\', '\0']);
        if !plain {
            return None;
        }
        let id = cnn.identity();
        let sha = |p: &std::path::Path| super::super::data::sha256_file(p).ok();
        Some(CacheKey {
            model_sha256: sha(model)?,
            cnn: format!("{} {}", id.name, id.version),
            threshold_hu,
            device: if device.is_cuda() {
                "CUDA fp16"
            } else {
                "CPU fp32"
            }
            .to_owned(),
            entry: serde_json::to_value(e).ok()?,
            series_sha256: super::super::data::sha256_series(&e.series).ok()?.1,
            label_sha256: match &e.label {
                LabelSpec::Seg { path } | LabelSpec::Stl { path } => sha(path)?,
                LabelSpec::Reference { .. } => String::new(),
            },
            phantom_sha256: match &e.phantom {
                Some(p) => sha(p)?,
                None => String::new(),
            },
        })
    }

    /// The rows kept in `path` when they were made with this key.
    pub(super) fn read(
        &self,
        path: &std::path::Path,
    ) -> Option<(ScanResult, ScanResult, VariantRow)> {
        let c: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (c.key == *self).then_some((c.cnn, c.threshold, c.variants))
    }

    /// Keeps `rows` in `path` (a temporary file renamed over it).
    pub(super) fn write(
        self,
        path: &std::path::Path,
        rows: &(ScanResult, ScanResult, VariantRow),
    ) -> std::io::Result<()> {
        let c = Cached {
            key: self,
            osteon: env!("CARGO_PKG_VERSION").to_owned(),
            cnn: rows.0.clone(),
            threshold: rows.1.clone(),
            variants: rows.2.clone(),
        };
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&c)?)?;
        std::fs::rename(&tmp, path)
    }
}
