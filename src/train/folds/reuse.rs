//! Whether a fold model already in the work folder can be reused instead of trained again: a
//! complete safetensors file whose JSON says it was trained with this run's settings on exactly
//! this fold's scans.

use super::super::fit::TrainOptions;
use super::super::plan::Fold;
use crate::eval::manifest::Manifest;

/// Whether the model at `path` is complete and was trained by these settings on exactly this
/// fold's scans (its JSON: filters, normalisation, seed, sampling, learning rate, training budget,
/// and the names and splits of its training scans).
///
/// # Errors
/// Why not, in words.
pub(super) fn reusable(
    path: &std::path::Path,
    o: &TrainOptions,
    fold: &Fold,
    manifest: &Manifest,
) -> Result<(), String> {
    if !path.is_file() {
        return Err("no model yet".into());
    }
    safetensors_complete(path)?;
    let json = path.with_extension("json");
    let text = std::fs::read(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let meta: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let t = &meta["training"];
    // Read back through TrainOptions, so that a setting added since the model was trained takes
    // its default (off, as when the model runs) instead of counting as a difference.
    let opts = serde_json::from_value::<TrainOptions>(t["options"].clone())
        .and_then(serde_json::to_value)
        .map_err(|e| format!("{}: training options: {e}", json.display()))?;
    let want = serde_json::to_value(o).map_err(|e| e.to_string())?;
    for key in [
        "filters",
        "normalisation",
        "seed",
        "sample",
        "lr",
        "decay",
        "steps",
        "tiles_per_step",
        "minutes",
        "working_pixel_mm",
    ] {
        if opts[key] != want[key] {
            return Err(format!(
                "its {key} {} differs from this run's {}",
                opts[key], want[key]
            ));
        }
    }
    let mut had: Vec<(String, String)> = t["scans"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_owned(),
                        s["split"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut expect: Vec<(String, String)> = fold
        .train
        .iter()
        .map(|&i| (manifest.scan[i].name.clone(), "train".to_owned()))
        .chain(
            fold.validation
                .iter()
                .map(|&i| (manifest.scan[i].name.clone(), "validation".to_owned())),
        )
        .collect();
    had.sort();
    expect.sort();
    if had != expect {
        return Err("it was trained on other scans than this fold's".into());
    }
    Ok(())
}

/// Checks that `path` is a whole safetensors file: an 8-byte header length, a JSON header, and
/// every tensor's data offsets inside the file (a truncated or foreign file fails here, not when
/// the scoring loads it).
///
/// # Errors
/// What is wrong, naming the file.
fn safetensors_complete(path: &std::path::Path) -> Result<(), String> {
    let bad = |why: String| {
        format!(
            "{}: not a complete safetensors file ({why})",
            path.display()
        )
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| bad(format!("{} bytes", bytes.len())))?;
    let header = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
        .ok_or_else(|| bad(format!("header of {n} bytes in a file of {}", bytes.len())))?;
    let meta: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    let data = (bytes.len() - 8 - header.len()) as u64;
    for (name, t) in meta.iter().filter(|(k, _)| *k != "__metadata__") {
        let end = t["data_offsets"][1]
            .as_u64()
            .ok_or_else(|| bad(format!("tensor {name} has no data_offsets")))?;
        if end > data {
            return Err(bad(format!(
                "tensor {name} ends at byte {end} of {data} data bytes"
            )));
        }
    }
    Ok(())
}
