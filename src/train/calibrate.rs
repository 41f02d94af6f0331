//! `osteon calibrate`: the decision threshold calibrated through the segmenter's whole chain.
//!
//! `osteon train` calibrates the threshold on the network's raw output: the candidate with the
//! best mean DSC of `probability >= t` on the validation scans ([`super::fit`]). What Osteon
//! delivers is that mask after its post-processing ([`crate::segment::post`]: the probability
//! hysteresis down to half the threshold, the half-maximum grow, the bone pieces), which adds
//! more on some series than on others. On 4-5 mm slices the raw calibration left the thick
//! recipe's fold models 0.6-0.9 apart and their held-out 5 mm scans over- or under-segmented
//! (session 37: routine-5mm-s1 at 0.725 found 428 mL of 385, routine-5mm-s3 at 0.900 390 of 415).
//! This step picks the threshold whose **post-processed** masks score best on the same
//! validation scans (the model never trained on them; the held-out scans are not read), and
//! writes it into the model's JSON, keeping the raw calibration beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::eval::manifest::{Manifest, ScanEntry, Split};
use crate::eval::metrics::{dice, Region};
use crate::segment::cnn::load;
use crate::segment::cnn::meta::meta_path;

/// Smallest best mean DSC for which `--write` writes the threshold: below it no candidate
/// segments the calibration scans (a wrong label, inverted grey values, another body part), and
/// the table's maximum is noise, not a calibration.
pub const MIN_WRITTEN_DSC: f64 = 0.5;

/// Candidate thresholds: 0.300 to 0.950 in steps of 0.025 (the raw calibration's step).
pub fn candidates() -> Vec<f32> {
    (12..=38).map(|n| n as f32 * 0.025).collect()
}

/// Arguments of `osteon calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Model weights (`.safetensors`, JSON metadata beside them).
    #[arg(long)]
    pub model: PathBuf,
    /// Manifest that holds the calibration scans.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Scans to calibrate on, comma-separated; default: those the model's JSON lists with split
    /// `validation` (the scans `osteon train` calibrated on).
    #[arg(long, value_delimiter = ',')]
    pub scans: Vec<String>,
    /// Write the chosen threshold into the model's JSON (`threshold`; the raw calibration's
    /// threshold and this table go to `threshold_calibration`; with --orientations, also
    /// `test_time_orientations`). Without it the table is printed only.
    #[arg(long)]
    pub write: bool,
    /// Calibrate with this many test-time orientations averaged (1, 2, 4 or 8; see
    /// `DenseOptions::orientations`) instead of the model's own; with --write they are stored
    /// with the threshold, since the two go together.
    #[arg(long, value_parser = parse_orientations)]
    pub orientations: Option<usize>,
}

/// Parses `--orientations`: one of [`crate::segment::cnn::infer::ORIENTATIONS`].
///
/// # Errors
/// A message naming the accepted values.
pub fn parse_orientations(s: &str) -> Result<usize, String> {
    let all = crate::segment::cnn::infer::ORIENTATIONS;
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| all.contains(n))
        .ok_or_else(|| format!("{s:?}: test-time orientations are one of {all:?}"))
}

/// The result of [`calibrate`]: mean DSC over the scans per candidate threshold, and the best.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FullChain {
    /// Scans calibrated on (manifest names).
    pub scans: Vec<String>,
    /// `(threshold, mean DSC)` per candidate, DSC inside each label's bounding box as the
    /// evaluation scores it.
    pub table: Vec<(f32, f64)>,
    /// The candidate of the highest mean DSC (the lower one on a tie).
    pub threshold: f32,
    /// Test-time orientations averaged while calibrating.
    pub orientations: usize,
}

/// Why calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// The model or its metadata could not be loaded.
    #[error("model {0}")]
    Model(String),
    /// The manifest could not be read, or a scan is not in it.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A scan could not be loaded, labelled or segmented.
    #[error("scan {name}: {message}")]
    Scan {
        /// The scan's manifest name.
        name: String,
        /// What failed.
        message: String,
    },
    /// The model's JSON could not be rewritten.
    #[error("writing {path}: {message}")]
    Write {
        /// The JSON file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The names of the scans the model's metadata lists with split `validation`.
fn validation_scans(training: &serde_json::Value) -> Vec<String> {
    training["scans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["split"] == "validation")
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

/// Calibrates the model at `model` through its whole chain on `scans` of the manifest at
/// `manifest` (empty: the model's validation scans), over [`candidates`], averaging
/// `orientations` test-time orientations (`None`: the model's own).
///
/// # Errors
/// [`CalibrateError`]: model, manifest, a scan not in it or failing to load, label or segment.
pub fn calibrate(
    model: &Path,
    manifest: &Path,
    scans: &[String],
    orientations: Option<usize>,
) -> Result<FullChain, CalibrateError> {
    let model_err = |e: crate::segment::cnn::CnnError| {
        CalibrateError::Model(format!("{}: {e}", model.display()))
    };
    let mut cnn = load(model).map_err(model_err)?;
    if let Some(n) = orientations {
        cnn = cnn.with_orientations(n).map_err(model_err)?;
    }
    let m = Manifest::load(manifest).map_err(|e| CalibrateError::Manifest(e.to_string()))?;
    let names = if scans.is_empty() {
        validation_scans(&cnn.meta().training)
    } else {
        scans.to_vec()
    };
    if names.is_empty() {
        return Err(CalibrateError::Manifest(
            "no scans given and the model's JSON lists no validation scans".to_owned(),
        ));
    }
    let entries: Vec<&ScanEntry> = names
        .iter()
        .map(|n| {
            m.scan.iter().find(|e| &e.name == n).ok_or_else(|| {
                CalibrateError::Manifest(format!("no scan {n} in {}", manifest.display()))
            })
        })
        .collect::<Result<_, _>>()?;
    if let Some(e) = entries.iter().find(|e| e.split == Split::Test) {
        tracing::warn!(scan = %e.name, "calibrating on a scan the manifest marks as test");
    }
    let cands = candidates();
    let mut sum = vec![0f64; cands.len()];
    for e in &entries {
        let fail = |message: String| CalibrateError::Scan {
            name: e.name.clone(),
            message,
        };
        let ct = crate::label::load_ct(
            std::slice::from_ref(&e.series),
            e.series_selector.as_deref(),
        )
        .map_err(|x| fail(x.to_string()))?;
        let label = crate::eval::label_for(&ct, &e.label).map_err(|x| fail(x.to_string()))?;
        let region =
            Region::bounding_box(&label, 0).ok_or_else(|| fail("empty label".to_owned()))?;
        let mut err = None;
        let mut c = 0;
        cnn.masks_at(&ct, &cands, |t, mask| {
            match dice(&mask, &label, &region) {
                Ok(o) => {
                    sum[c] += o.dsc;
                    eprintln!("calibrate {}: threshold {t:.3} DSC {:.4}", e.name, o.dsc);
                }
                Err(x) => err = Some(x.to_string()),
            }
            c += 1;
        })
        .map_err(|x| fail(x.to_string()))?;
        if let Some(x) = err {
            return Err(fail(x));
        }
    }
    let n = entries.len() as f64;
    let table: Vec<(f32, f64)> = cands
        .into_iter()
        .zip(sum.into_iter().map(|s| s / n))
        .collect();
    let threshold = table
        .iter()
        .fold(None::<(f32, f64)>, |best, &(t, d)| match best {
            Some((_, bd)) if bd >= d => best,
            _ => Some((t, d)),
        })
        .map_or(0.5, |b| b.0);
    Ok(FullChain {
        scans: names,
        table,
        threshold,
        orientations: cnn.meta().test_time_orientations,
    })
}

/// Writes `cal.threshold` and `cal.orientations` (`test_time_orientations`, left out when 1)
/// into the JSON of the weights at `model`, with `threshold_calibration` (method, the raw
/// calibration's threshold, orientations, scans, table) beside it; the other fields stay as they
/// were.
///
/// # Errors
/// [`CalibrateError::Write`] when the JSON cannot be read, parsed or written.
pub fn write(model: &Path, cal: &FullChain) -> Result<(), CalibrateError> {
    let path = meta_path(model);
    let fail = |message: String| CalibrateError::Write {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let mut meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let raw = meta
        .get("threshold_calibration")
        .and_then(|c| c.get("raw_threshold"))
        .cloned()
        .unwrap_or_else(|| meta["threshold"].clone());
    meta["threshold"] = serde_json::json!(cal.threshold);
    if let Some(m) = meta.as_object_mut() {
        if cal.orientations > 1 {
            m.insert(
                "test_time_orientations".to_owned(),
                serde_json::json!(cal.orientations),
            );
        } else {
            m.remove("test_time_orientations");
        }
    }
    meta["threshold_calibration"] = serde_json::json!({
        "method": "full chain: post-processed masks (osteon calibrate)",
        "osteon": env!("CARGO_PKG_VERSION"),
        "raw_threshold": raw,
        "orientations": cal.orientations,
        "scans": cal.scans,
        "table": cal.table,
    });
    let out = serde_json::to_string_pretty(&meta).map_err(|e| fail(e.to_string()))?;
    let tmp = path.with_extension("json.partial");
    let written = std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|e| {
        // Leave no half-written file beside the model (the JSON itself is untouched).
        let _ = std::fs::remove_file(&tmp);
        fail(e.to_string())
    })
}

/// Runs `osteon calibrate`: prints the table and the chosen threshold; with `--write` rewrites
/// the model's JSON. Exit code 0 on success, 1 on failure.
pub fn run(args: &CalibrateArgs) -> ExitCode {
    if args.write {
        // Fail before the calibration (minutes of CPU), not after it, when the JSON cannot be
        // rewritten (read-only file or folder).
        // `write` replaces the JSON by renaming a new file beside it: the file and its folder
        // must both be writable.
        let json = meta_path(&args.model);
        let probe = json.with_extension("json.partial");
        let writable = std::fs::OpenOptions::new()
            .append(true)
            .open(&json)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&probe)
            })
            .and_then(|_| std::fs::remove_file(&probe));
        if let Err(e) = writable {
            eprintln!(
                "osteon calibrate: --write: {} or its folder cannot be written: {e}",
                json.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let cal = match calibrate(&args.model, &args.manifest, &args.scans, args.orientations) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("osteon calibrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "threshold  mean DSC over {} ({} test-time orientation{})",
        cal.scans.join(", "),
        cal.orientations,
        if cal.orientations == 1 { "" } else { "s" }
    );
    for (t, d) in &cal.table {
        let mark = if *t == cal.threshold { "  <-" } else { "" };
        println!("{t:9.3}  {d:.4}{mark}");
    }
    let best = cal
        .table
        .iter()
        .find(|(t, _)| *t == cal.threshold)
        .map_or(0.0, |&(_, d)| d);
    if args.write && best < MIN_WRITTEN_DSC {
        eprintln!(
            "osteon calibrate: the best mean DSC is {best:.4} (threshold {:.3}), below \
             {MIN_WRITTEN_DSC}: no threshold segments these scans, so none is written (check the \
             scans' labels and grey values, or the model)",
            cal.threshold
        );
        return ExitCode::FAILURE;
    }
    if args.write {
        if let Err(e) = write(&args.model, &cal) {
            eprintln!("osteon calibrate: {e}");
            return ExitCode::FAILURE;
        }
        println!(
            "threshold {:.3} ({} test-time orientations) written to {}",
            cal.threshold,
            cal.orientations,
            meta_path(&args.model).display()
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_span_0_30_to_0_95() {
        let c = candidates();
        assert_eq!(c.len(), 27);
        assert!((c[0] - 0.30).abs() < 1e-6 && (c[26] - 0.95).abs() < 1e-6);
    }

    #[test]
    fn orientations_are_1_2_4_or_8() {
        assert_eq!(parse_orientations("8"), Ok(8));
        assert_eq!(parse_orientations(" 2 "), Ok(2));
        for bad in ["3", "0", "16", "-1", "eight"] {
            let e = parse_orientations(bad).unwrap_err();
            assert!(e.contains("one of [1, 2, 4, 8]"), "{bad}: {e}");
        }
    }

    #[test]
    fn validation_scans_come_from_the_training_record() {
        let t = serde_json::json!({"scans": [
            {"name": "a", "split": "train"},
            {"name": "b", "split": "validation"},
            {"name": "c", "split": "validation"}
        ]});
        assert_eq!(validation_scans(&t), ["b", "c"]);
        assert!(validation_scans(&serde_json::Value::Null).is_empty());
    }
}
