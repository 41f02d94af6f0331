//! `osteon calibrate` end to end on a fast phantom with a shipped model: the table it prints, the
//! threshold it writes, and that its masks are the ones `osteon evaluate` then scores.
#![cfg(feature = "torch")]

mod common;

use std::path::Path;

use common::{osteon, text};

#[test]
fn calibrate_writes_the_best_post_processed_threshold_that_evaluate_then_scores() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let o = osteon(&[
        "phantom",
        "--profile",
        "philips-ingenuity-ub",
        "--seed",
        "7",
        "--fast",
        "--out",
        root.join("ub").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "phantom: {}", text(&o.stderr));
    let m = root.join("one.toml");
    std::fs::write(
        &m,
        "[manifest]\nname = \"one\"\nroot = \".\"\n\n[[scan]]\nname = \"ub\"\nseries = \"ub/ct\"\n\
         scanner = \"philips-ingenuity-ub\"\nsplit = \"validation\"\n\
         label = { kind = \"seg\", path = \"ub/label-seg.dcm\" }\n",
    )
    .unwrap();
    // A copy of a shipped model, whose JSON this test rewrites.
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let model = root.join("m.safetensors");
    std::fs::copy(models.join("osteon-cnn-cpu-3.safetensors"), &model).unwrap();
    std::fs::copy(models.join("osteon-cnn-cpu-3.json"), root.join("m.json")).unwrap();
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("m.json")).unwrap()).unwrap();
    let (m, model_s) = (m.to_str().unwrap(), model.to_str().unwrap());

    // The model's own validation scans are not in this manifest: a clear error, JSON untouched.
    // `osteon calibrate --model M --manifest m` with `extra` arguments.
    let calibrate = |extra: &[&str]| {
        let mut args = vec!["calibrate", "--model", model_s, "--manifest", m];
        args.extend_from_slice(extra);
        osteon(&args)
    };
    let o = calibrate(&["--write"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("osteon calibrate: manifest: no scan "),
        "{err}"
    );
    assert!(err.contains("one.toml"), "{err}");
    let o = calibrate(&["--scans", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no scan nosuch in"),
        "{}",
        text(&o.stderr)
    );

    let o = calibrate(&["--scans", "ub", "--write"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    // 27 candidates, 0.300 to 0.950; one marked, the highest DSC (the lowest such threshold).
    let rows: Vec<(f64, f64, bool)> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let t = w.next()?.parse().ok()?;
            let d = w.next()?.parse().ok()?;
            Some((t, d, l.ends_with("<-")))
        })
        .collect();
    assert_eq!(rows.len(), 27, "{stdout}");
    assert_eq!((rows[0].0, rows[26].0), (0.3, 0.95));
    let best: Vec<_> = rows.iter().filter(|r| r.2).collect();
    assert_eq!(best.len(), 1, "{stdout}");
    let (t_best, d_best, _) = *best[0];
    assert!(rows.iter().all(|r| r.1 <= d_best), "{stdout}");
    assert!(
        rows.iter().filter(|r| r.0 < t_best).all(|r| r.1 < d_best),
        "{stdout}"
    );
    assert!(d_best > 0.8, "the shipped model on a phantom: {stdout}");

    // The JSON: the chosen threshold, the raw one kept beside it with the table.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("m.json")).unwrap()).unwrap();
    let written = meta["threshold"].as_f64().unwrap();
    assert!((written - t_best).abs() < 1e-6, "{written} vs {t_best}");
    let cal = &meta["threshold_calibration"];
    assert_eq!(cal["raw_threshold"], raw["threshold"]);
    assert_eq!(cal["scans"], serde_json::json!(["ub"]));
    assert_eq!(cal["table"].as_array().map(Vec::len), Some(27));
    assert_eq!(meta["training"], raw["training"]);

    // What evaluate scores with the rewritten model is the calibration's best row.
    let csv = root.join("e.csv");
    let o = osteon(&[
        "evaluate",
        "--manifest",
        m,
        "--segmenter",
        "cnn",
        "--model",
        model_s,
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = std::fs::read_to_string(&csv).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "dsc").expect("dsc column");
    let dsc: f64 = lines
        .next()
        .unwrap()
        .split(',')
        .nth(col)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (dsc - d_best).abs() < 1e-4,
        "evaluate {dsc} vs calibrate {d_best}"
    );
}
