#![cfg(feature = "torch")]
//! `osteon evaluate --folds leave-2-out` end to end on six tiny phantoms (three profiles, 128x128,
//! 24 slices, 2 optimizer steps per model): `--train-only` writes every fold model and the final
//! model and no report; a second run with `--reuse` trains nothing and scores every scan.
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
    let run = |extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            "--manifest",
            m.to_str().unwrap(),
            "--folds",
            "leave-2-out",
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
    assert_eq!(text(&o.stdout).matches("(reused)").count(), 3);
    assert_eq!(text(&o.stdout).matches("trained in").count(), 1);

    let o = run(&["--reuse"]);
    assert!(o.status.success(), "--reuse: {}", text(&o.stderr));
    let stderr = text(&o.stderr);
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
}
