#![cfg(feature = "torch")]
//! `osteon evaluate --folds leave-2-out` end to end on six tiny phantoms (three profiles, 128x128,
//! 24 slices, 2 optimizer steps per model): `--train-only` writes every fold model and the final
//! model and no report; a second run with `--reuse` trains nothing and scores every scan. The same
//! phantoms under `--folds holdout`: one model, only the `test` scans scored. And
//! `--segmenter cnn --baseline`: one model (the shipped experimental `cpu-3`) scored beside the
//! threshold on the same scans without folds (issue 4: "always beside the threshold baseline").
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

#[test]
fn train_only_then_reuse_scores_every_scan_without_training_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let profiles = ["philips-ingenuity-ub", "ge-lightspeed-bone", "cbct"];
    let mut manifest = String::from(
        "[manifest]\nname = \"tiny\"\ndescription = \"six fast phantoms\"\nroot = \".\"\n",
    );
    for seed in 1..=2 {
        for p in profiles {
            let name = format!("{p}-s{seed}");
            let out = root.join(&name);
            let o = osteon(&[
                "phantom",
                "--profile",
                p,
                "--seed",
                &seed.to_string(),
                "--fast",
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "phantom {name}: {}", text(&o.stderr));
            manifest.push_str(&format!(
                "\n[[scan]]\nname = \"{name}\"\nseries = \"{name}/ct\"\nscanner = \"{p}\"\n\
                 split = \"train\"\nlabel = {{ kind = \"seg\", path = \"{name}/label-seg.dcm\" }}\n"
            ));
        }
    }
    let m = root.join("tiny.toml");
    std::fs::write(&m, manifest).unwrap();
    let work = root.join("folds");
    std::fs::create_dir_all(&work).unwrap();
    let csv = root.join("folds.csv");
    let run_with = |m: &Path, scheme: &str, work: &Path, csv: &Path, extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            "--manifest",
            m.to_str().unwrap(),
            "--folds",
            scheme,
            "--work",
            work.to_str().unwrap(),
            "--steps",
            "2",
            "--tiles",
            "2",
            "--device",
            "cpu",
            "--csv",
            csv.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        osteon(&args)
    };
    let run = |extra: &[&str]| run_with(&m, "leave-2-out", &work, &csv, extra);

    let o = run(&["--train-only"]);
    assert!(o.status.success(), "--train-only: {}", text(&o.stderr));
    // Six pool scans: three folds (pairs f, f + 3) and the final model.
    let models = ["fold-01", "fold-02", "fold-03", "final"];
    for m in models {
        for ext in ["safetensors", "json"] {
            let p = work.join(format!("{m}.{ext}"));
            assert!(p.is_file(), "{} missing", p.display());
        }
    }
    assert!(!work.join("fold-04.safetensors").exists());
    let stdout = text(&o.stdout);
    assert_eq!(stdout.matches("trained in").count(), 4, "{stdout}");
    assert!(!csv.exists(), "--train-only scores nothing");

    // Without --reuse the models in --work are not replaced.
    let o = run(&["--train-only"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("fold-01.safetensors exists: pass --reuse"),
        "{}",
        text(&o.stderr)
    );
    // --model with --folds would be ignored: refused.
    let o = run(&["--segmenter", "cnn", "--model", "x.safetensors"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--model / --thick-model / --post-processing do not apply"));
    // So would --post-processing (the folds score the CNN with its default, `bones`).
    let o = run(&["--post-processing", "raw"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--post-processing do not apply"));

    // A truncated weights file is not reused: that fold trains again, the others are reused.
    let fold2 = work.join("fold-02.safetensors");
    let bytes = std::fs::read(&fold2).unwrap();
    std::fs::write(&fold2, &bytes[..100]).unwrap();
    let o = run(&["--train-only", "--reuse"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("fold-02.safetensors again")
            && stderr.contains("not a complete safetensors file"),
        "{stderr}"
    );
    assert_eq!(text(&o.stdout).matches("(present)").count(), 3);
    assert_eq!(text(&o.stdout).matches("trained in").count(), 1);

    // A model trained before the augmentation and working-spacing settings existed has no such
    // keys in its JSON; they read back as off, so it is still reused.
    let fold1 = work.join("fold-01.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fold1).unwrap()).unwrap();
    let opts = &mut meta["training"]["options"];
    for key in ["slab_mm", "sharpen", "zoom"] {
        assert!(
            opts["sample"]
                .as_object_mut()
                .unwrap()
                .remove(key)
                .is_some(),
            "{key}"
        );
    }
    assert!(opts
        .as_object_mut()
        .unwrap()
        .remove("working_pixel_mm")
        .is_some());
    std::fs::write(&fold1, serde_json::to_string_pretty(&meta).unwrap()).unwrap();

    let o = run(&["--reuse"]);
    // Two-step models are untrained: a fold's model may find no bone in its scans (a failed CNN
    // row, exit status 1, the rows still written); nothing else may fail.
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    let failed = stdout.matches("FAILED").count();
    assert!(
        o.status.success()
            || (o.status.code() == Some(1)
                && failed == stdout.matches("FAILED: no bone found").count()),
        "--reuse: {stderr}\n{stdout}"
    );
    assert_eq!(stderr.matches("reusing ").count(), 4, "{stderr}");
    assert!(
        !stderr.contains("training "),
        "nothing trained again: {stderr}"
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    for seed in 1..=2 {
        for p in profiles {
            let name = format!("{p}-s{seed}");
            // One CNN and one threshold row per scan.
            assert_eq!(
                rows.lines().filter(|l| l.contains(&name)).count(),
                2,
                "{name} in {}",
                Path::new(&csv).display()
            );
        }
    }

    // A thin/thick pair: the same models copied as the "thick" ones. The fast phantoms have 24
    // slices over each profile's coverage: gaps of 8.25 mm (Philips), 8.203 (GE) and 8.208 (cbct);
    // split at 8.23 mm, the Philips scans go to the thick folder and the others stay.
    let thick = root.join("thick");
    let pcsv = root.join("pair.csv");
    // A --thick-work that is not a folder is refused before anything trains or scores.
    let o = run_with(
        &m,
        "leave-2-out",
        &work,
        &pcsv,
        &["--reuse", "--thick-work", m.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("tiny.toml: not a folder"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("reusing "), "{}", text(&o.stderr));
    std::fs::create_dir_all(&thick).unwrap();
    let o = run_with(
        &m,
        "leave-2-out",
        &work,
        &pcsv,
        &["--reuse", "--thick-work", thick.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("fold-01.safetensors (and its .json) is missing, needed for philips-ingenuity-ub-s1: train the thick"),
        "{}",
        text(&o.stderr)
    );
    for m in models {
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                work.join(format!("{m}.{ext}")),
                thick.join(format!("{m}.{ext}")),
            )
            .unwrap();
        }
    }
    let o = run_with(
        &m,
        "leave-2-out",
        &work,
        &pcsv,
        &[
            "--reuse",
            "--thick-work",
            thick.to_str().unwrap(),
            "--thick-from-mm",
            "8.23",
        ],
    );
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(
        stdout.contains("CNN leave-2-out thin/thick pair (thick from 8.23 mm"),
        "{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pcsv.with_extension("json")).unwrap())
            .unwrap();
    let by = report["scored_by"].as_array().unwrap();
    assert_eq!(by.len(), 6, "{report}");
    let thick_rows: Vec<&serde_json::Value> =
        by.iter().filter(|r| r[1]["model"] == "thick").collect();
    assert_eq!(thick_rows.len(), 2, "the two Philips scans: {report}");
    for r in &thick_rows {
        assert!(r[0].as_str().unwrap().contains("/thick/"), "{r}");
        assert!(
            (r[1]["median_slice_gap_mm"].as_f64().unwrap() - 8.25).abs() < 1e-6,
            "{r}"
        );
    }
    for r in by.iter().filter(|r| r[1]["model"] == "thin") {
        assert!(r[0].as_str().unwrap().contains("/folds/"), "{r}");
        assert!(r[1]["median_slice_gap_mm"].as_f64().unwrap() < 8.23, "{r}");
    }
    // The thick model scored the Philips scans again (its scores go to its own folder); the thin
    // scans' kept scores were reused.
    for seed in 1..=2 {
        assert!(
            stderr.contains(&format!("scored philips-ingenuity-ub-s{seed} (")),
            "{stderr}"
        );
        assert!(!thick.join(format!("scores/cbct-s{seed}.json")).exists());
        for p in ["cbct", "ge-lightspeed-bone"] {
            let name = format!("{p}-s{seed}");
            if work.join(format!("scores/{name}.json")).is_file() {
                assert!(
                    stderr.contains(&format!("scores of {name} reused")),
                    "{stderr}"
                );
            }
        }
    }

    // Hold-out on the same phantoms: the seed-2 scans of two profiles are `test`, one scan
    // calibrates, three train; one model, and only the two test scans in the report.
    let text_m = std::fs::read_to_string(&m).unwrap();
    let mut held = String::new();
    for block in text_m.split("\n[[scan]]") {
        let split = if block.contains("\"cbct-s2\"") || block.contains("\"ge-lightspeed-bone-s2\"")
        {
            "test"
        } else if block.contains("\"philips-ingenuity-ub-s2\"") {
            "validation"
        } else {
            "train"
        };
        if !held.is_empty() {
            held.push_str("\n[[scan]]");
        }
        held.push_str(&block.replace("split = \"train\"", &format!("split = \"{split}\"")));
    }
    let hm = root.join("held.toml");
    std::fs::write(&hm, held).unwrap();
    let hwork = root.join("holdout");
    std::fs::create_dir_all(&hwork).unwrap();
    let hcsv = root.join("holdout.csv");
    let o = run_with(&hm, "holdout", &hwork, &hcsv, &["--tile-size", "32"]);
    assert!(o.status.success(), "holdout: {}", text(&o.stderr));
    assert!(hwork.join("final.safetensors").is_file());
    assert!(!hwork.join("fold-01.safetensors").exists());
    let meta = std::fs::read_to_string(hwork.join("final.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(
        meta["training"]["options"]["sample"]["tile"], 32,
        "--tile-size reaches training"
    );
    let stdout = text(&o.stdout);
    assert!(stdout.contains("CNN hold-out (one model, CPU)"), "{stdout}");
    let rows = std::fs::read_to_string(&hcsv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 2 * 2, "{rows}");
    for name in ["cbct-s2", "ge-lightspeed-bone-s2"] {
        assert_eq!(
            rows.lines().filter(|l| l.contains(name)).count(),
            2,
            "{rows}"
        );
    }
    for name in [
        "philips-ingenuity-ub-s1",
        "philips-ingenuity-ub-s2",
        "cbct-s1",
    ] {
        assert!(
            !rows.contains(name),
            "{name} trained or calibrated: not scored\n{rows}"
        );
    }
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
