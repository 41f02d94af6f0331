//! A thin/thick model pair in `osteon segment` (issue 4: the model chosen per series by its
//! median slice gap): the tilted GE head of `../shared/data` (gaps of 4 mm x 13, 1.08 mm, 7 mm x
//! 13: median 4.0 mm) goes to the thick model, a 2.4 mm phantom to the thin one, and each result
//! names its model in report.json and in the SEG's AlgorithmVersion (0066,0031).
#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn osteon(args: &[&str]) -> std::process::Output {
    osteon_in(&root(), args)
}

/// `osteon ARGS` run in the working directory `cwd` (where the default models are looked for).
fn osteon_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_osteon"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run osteon")
}

/// Asserts that `o` exited with `code` and said `needle` on stderr.
fn refused(o: &std::process::Output, code: i32, needle: &str) {
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The shipped thin model (0.488 mm working pixels) and the thick one (0.976 mm).
fn models() -> (String, String) {
    let thin = root().join("models/osteon-cnn-cpu-3.safetensors");
    let thick = root().join("models/leave-2-out-cpu-8/final.safetensors");
    (
        thin.to_str().unwrap().to_owned(),
        thick.to_str().unwrap().to_owned(),
    )
}

/// `osteon segment` of `input` into `out` with the pair (`extra` appended); the report's
/// segmentation object and the SEG file's bytes.
fn segment(input: &Path, out: &Path, extra: &[&str]) -> (serde_json::Value, Vec<u8>) {
    let (thin, thick) = models();
    let mut args = vec![
        "segment",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        &thin,
        "--thick-model",
        &thick,
    ];
    args.extend_from_slice(extra);
    let o = osteon(&args);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let seg = std::fs::read(out.join("seg.dcm")).unwrap();
    (report["segmentation"].clone(), seg)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_pair_segments_each_series_with_the_model_of_its_slice_gap() {
    let dir = tempfile::tempdir().unwrap();
    let ge = root().join("../shared/data/ct/ge-hispeed-dual-head-tilt");

    let (s, seg) = segment(&ge, &dir.path().join("ge"), &[]);
    assert_eq!(s["model_choice"]["model"], "thick", "{s}");
    let gap = s["model_choice"]["median_slice_gap_mm"].as_f64().unwrap();
    assert!((gap - 4.0).abs() < 0.01, "{s}");
    assert_eq!(s["model_choice"]["thick_from_mm"], 3.0);
    let version = s["algorithm"]["version"].as_str().unwrap();
    assert!(version.contains("-p0.976-"), "{version}");
    assert!(contains(&seg, version), "the SEG names the thick model");

    // Split above the GE head's median gap: the same series goes to the thin model.
    let (s, seg) = segment(&ge, &dir.path().join("ge-5"), &["--thick-from-mm", "5"]);
    assert_eq!(s["model_choice"]["model"], "thin", "{s}");
    let version = s["algorithm"]["version"].as_str().unwrap();
    assert!(version.contains("-p0.488-"), "{version}");
    assert!(contains(&seg, version), "the SEG names the thin model");

    // A thin series: 80 slices over the Philips profile's coverage (2.4 mm gaps).
    let ph = dir.path().join("phantom");
    let o = osteon(&[
        "phantom",
        "--profile",
        "philips-ingenuity-ub",
        "--seed",
        "3",
        "--fast",
        "--slices",
        "80",
        "--out",
        ph.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (s, _) = segment(&ph.join("ct"), &dir.path().join("ph"), &[]);
    assert_eq!(s["model_choice"]["model"], "thin", "{s}");
    let gap = s["model_choice"]["median_slice_gap_mm"].as_f64().unwrap();
    assert!(gap > 2.0 && gap < 3.0, "{s}");

    // The default pair: models/osteon-cnn.safetensors and models/osteon-cnn-thick.safetensors in
    // the working directory (as a node's), no --model: the GE head goes to the thick model.
    let cwd = dir.path().join("node");
    std::fs::create_dir_all(cwd.join("models")).unwrap();
    let (thin, thick) = models();
    for (src, name) in [(&thin, "osteon-cnn"), (&thick, "osteon-cnn-thick")] {
        for ext in ["safetensors", "json"] {
            let src = Path::new(src).with_extension(ext);
            std::fs::copy(&src, cwd.join(format!("models/{name}.{ext}"))).unwrap();
        }
    }
    let o = osteon_in(&cwd, &["segment", ge.to_str().unwrap(), "--out", "out"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cwd.join("out/report.json")).unwrap()).unwrap();
    assert_eq!(
        report["segmentation"]["model_choice"]["model"], "thick",
        "{report}"
    );
    // Without the thick file the default CNN is the single model (no choice recorded); here the
    // model folder is given with --model-dir, from another working directory.
    std::fs::remove_file(cwd.join("models/osteon-cnn-thick.safetensors")).unwrap();
    let folder = cwd.join("models");
    let o = osteon_in(
        dir.path(),
        &[
            "segment",
            ge.to_str().unwrap(),
            "--out",
            "out1",
            "--model-dir",
            folder.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out1/report.json")).unwrap())
            .unwrap();
    assert!(
        report["segmentation"].get("model_choice").is_none(),
        "{report}"
    );
    let version = report["segmentation"]["algorithm"]["version"]
        .as_str()
        .unwrap();
    assert!(version.contains("-p0.488-"), "{version}");

    // Bad pair settings: a split that is not a length, a thick model that is not there or a
    // folder, a thick model without a thin one, a thick model for the threshold segmenter.
    let out = dir.path().join("bad");
    let out = out.to_str().unwrap();
    let ge = ge.to_str().unwrap();
    let o = osteon(&["segment", ge, "--out", out, "--thick-from-mm", "0"]);
    refused(&o, 2, "not a positive number of mm");
    // A thick model that is not there, or a folder where it should be.
    for (bad, needle) in [
        (
            "/nonexistent.safetensors",
            "thick-slice model of the thin/thick pair: /nonexistent.safetensors is not a model file",
        ),
        ("/tmp", "/tmp is not a model file"),
    ] {
        let o = osteon(&["segment", ge, "--out", out, "--model", &thin, "--thick-model", bad]);
        refused(&o, 1, needle);
    }
    // A thick model without its thin one is refused, never the threshold in its place: from a
    // working directory without models/ (no default thin model) ...
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = osteon_in(
        &empty,
        &["segment", ge, "--out", "o", "--thick-model", &thick],
    );
    refused(
        &o,
        1,
        "needs its thin model too, and models/osteon-cnn.safetensors does not exist",
    );
    assert!(!empty.join("o/seg.dcm").exists());
    // ... and the node's case: only models/osteon-cnn-thick.safetensors in the working directory.
    std::fs::create_dir_all(empty.join("models")).unwrap();
    for ext in ["safetensors", "json"] {
        std::fs::copy(
            Path::new(&thick).with_extension(ext),
            empty.join(format!("models/osteon-cnn-thick.{ext}")),
        )
        .unwrap();
    }
    let o = osteon_in(&empty, &["segment", ge, "--out", "o"]);
    refused(&o, 1, "needs its thin model too");
    let o = osteon(&[
        "segment",
        ge,
        "--out",
        out,
        "--segmenter",
        "threshold",
        "--thick-model",
        &thin,
    ]);
    refused(&o, 2, "--thick-model is a CNN");
    // A split with one model (or the threshold) would be unused: refused, nothing written.
    for one in [
        vec!["--model", thin.as_str()],
        vec!["--segmenter", "threshold"],
    ] {
        let mut args = vec!["segment", ge, "--out", out, "--thick-from-mm", "5"];
        args.extend(one);
        let o = osteon(&args);
        refused(
            &o,
            2,
            "--thick-from-mm 5 splits a thin/thick pair, and this run has none",
        );
    }
    assert!(!Path::new(out).join("seg.dcm").exists());
}

/// `osteon config check` names the segmenter a route's "default" runs on the node (the pair of
/// `[pipeline] model_dir`, the single thin model, or the threshold) and refuses the folders and
/// splits `osteon serve` would refuse at start.
#[test]
fn config_check_names_the_default_segmenter_of_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("models");
    std::fs::create_dir_all(&folder).unwrap();
    let check = |pipeline: &str| {
        let config = dir.path().join("osteon.toml");
        std::fs::write(
            &config,
            format!(
                "[pipeline]\nmodel_dir = \"{}\"\n{pipeline}",
                folder.display()
            ),
        )
        .unwrap();
        osteon(&["config", "check", "--config", config.to_str().unwrap()])
    };
    // An empty folder: the threshold baseline.
    let o = check("");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first = text(&o.stdout).lines().next().unwrap_or("").to_owned();
    assert!(
        first.starts_with("# default segmenter: osteon-threshold "),
        "{first}"
    );
    assert!(!text(&o.stdout).contains("# note:"), "{}", text(&o.stdout));
    // A split set without a thick model: accepted (the model may come later), with a note.
    let o = check("thick_from_mm = 4.0\n");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let second = text(&o.stdout).lines().nth(1).unwrap_or("").to_owned();
    assert_eq!(
        second,
        format!(
            "# note: pipeline.thick_from_mm = 4 is unused: {} does not exist (no thin/thick pair)",
            folder.join("osteon-cnn-thick.safetensors").display()
        )
    );
    // Only the thick model: refused, as `osteon serve` refuses to start.
    let (thin, thick) = models();
    let copy = |src: &str, name: &str| {
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                Path::new(src).with_extension(ext),
                folder.join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
    };
    copy(&thick, "osteon-cnn-thick");
    refused(&check(""), 1, "pipeline.model_dir: thick-slice model");
    // Both: the pair; its version names both models' working grids and the split.
    copy(&thin, "osteon-cnn");
    let o = check("thick_from_mm = 4.0\n");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let first = out.lines().next().unwrap_or("");
    assert!(
        first.starts_with("# default segmenter: osteon-cnn thin "),
        "{first}"
    );
    assert!(
        first.contains("-p0.488-") && first.contains("-p0.976-") && first.contains("from 4 mm"),
        "{first}"
    );
    assert!(out.contains("thick_from_mm = 4.0"), "{out}");
    // A split that is not a length.
    refused(&check("thick_from_mm = 0.0\n"), 1, "pipeline.thick_from_mm");
}
