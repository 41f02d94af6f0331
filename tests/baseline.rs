#![cfg(feature = "torch")]
//! `osteon evaluate --segmenter cnn --baseline`: one model scored beside the threshold on the same
//! scans (issue 4: "always beside the threshold baseline"), without training folds. Two tiny
//! phantoms, the shipped experimental model `cpu-3`.
use std::path::Path;
use std::process::Command;

fn osteon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args(args)
        .output()
        .expect("run osteon")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `dsc` cell of each data row of an evaluation CSV, keyed by its `segmenter,scan` or `scan`.
fn dsc_cells(csv: &str, key_columns: usize) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let d = header.iter().position(|h| *h == "dsc").expect("dsc column");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let key = if key_columns == 2 {
                format!("{},{}", f[0], f[2])
            } else {
                f[0].to_owned()
            };
            (key, f[d].to_owned())
        })
        .collect()
}

#[test]
fn baseline_scores_the_threshold_beside_the_cnn_on_the_same_scans() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osteon-cnn-cpu-3.safetensors");
    let mut manifest = String::from("[manifest]\nname = \"pair\"\nroot = \".\"\n");
    for p in ["philips-ingenuity-ub", "cbct"] {
        let o = osteon(&[
            "phantom",
            "--profile",
            p,
            "--seed",
            "7",
            "--fast",
            "--out",
            root.join(p).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "phantom {p}: {}", text(&o.stderr));
        manifest.push_str(&format!(
            "\n[[scan]]\nname = \"{p}\"\nseries = \"{p}/ct\"\nscanner = \"{p}\"\nsplit = \"test\"\n\
             label = {{ kind = \"seg\", path = \"{p}/label-seg.dcm\" }}\n"
        ));
    }
    let m = root.join("pair.toml");
    std::fs::write(&m, manifest).unwrap();
    let (m, model) = (m.to_str().unwrap(), model.to_str().unwrap());
    let csv = root.join("both.csv");
    let o = osteon(&[
        "evaluate",
        "--manifest",
        m,
        "--segmenter",
        "cnn",
        "--model",
        model,
        "--baseline",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("per scanner, osteon-cnn "), "{stdout}");
    let both = std::fs::read_to_string(&csv).unwrap();
    assert!(
        both.starts_with("segmenter,fold,scan,scanner,label,dsc,"),
        "{both}"
    );
    let rows = dsc_cells(&both, 2);
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "osteon-cnn,philips-ingenuity-ub",
            "osteon-cnn,cbct",
            "osteon-threshold,philips-ingenuity-ub",
            "osteon-threshold,cbct"
        ]
    );
    // The plot beside the CSV (default name), one group per scanner.
    let svg = std::fs::read_to_string(csv.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg "), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains(">cbct<") && svg.contains(">philips-ingenuity-ub<"));

    // The baseline rows are exactly what the threshold scores alone, and the CNN's exactly what
    // it scores alone: the two runs share nothing.
    for (segmenter, tag) in [("threshold", "osteon-threshold"), ("cnn", "osteon-cnn")] {
        let alone = root.join(format!("{tag}.csv"));
        let mut args = vec![
            "evaluate",
            "--manifest",
            m,
            "--segmenter",
            segmenter,
            "--csv",
            alone.to_str().unwrap(),
        ];
        if segmenter == "cnn" {
            args.extend_from_slice(&["--model", model]);
        }
        let o = osteon(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let single = dsc_cells(&std::fs::read_to_string(&alone).unwrap(), 1);
        for (scan, dsc) in single {
            let pair = rows
                .iter()
                .find(|(k, _)| *k == format!("{tag},{scan}"))
                .expect("row");
            assert_eq!(pair.1, dsc, "{tag} {scan}");
            let v: f64 = dsc.parse().unwrap();
            assert!(v > 0.5 && v <= 1.0, "{tag} {scan} DSC {v}");
        }
    }

    // Refusals: the threshold beside itself, --plot without a comparison, --baseline with --folds.
    for (args, says) in [
        (
            vec!["--segmenter", "threshold", "--baseline"],
            "--baseline scores the threshold beside --segmenter cnn",
        ),
        (
            vec!["--segmenter", "threshold", "--plot", "x.svg"],
            "--plot needs --folds or --baseline",
        ),
        (
            vec!["--baseline", "--segmenter", "cnn", "--folds", "holdout"],
            "--baseline scores the threshold beside --segmenter cnn",
        ),
        (
            vec![
                "--segmenter",
                "cnn",
                "--model",
                model,
                "--baseline",
                "--plot",
                "p.csv",
            ],
            "must be a .svg file other than the CSV",
        ),
    ] {
        let mut all = vec!["evaluate", "--manifest", m, "--csv", "unused.csv"];
        all.extend_from_slice(&args);
        let o = osteon(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(says),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}
