#![cfg(feature = "torch")]
//! Training that is stopped and resumed takes the steps of one that was not (checkpoints hold the
//! weights, RMSprop's running averages and the step; dropout and tiles are drawn from the seed and
//! the step), and a leave-2-out is trained in parts: `--train-only --models` trains the models
//! named, `--reuse` resumes a fold from its checkpoint. A CPU-only machine trains a 16-model
//! leave-2-out (about 20 hours here) this way over several sessions.
use std::path::Path;
use std::process::Command;

use osteon::segment::cnn::normalise::{Normalisation, Normaliser};
use osteon::train::fit::{fit, DeviceChoice, TrainOptions};
use osteon::train::sample::{SampleSettings, ScanData};
use tch::Device;

fn scan(seed: u64) -> ScanData {
    let opts = osteon::phantom::PhantomOptions {
        slices: Some(12),
        matrix: Some(64),
        supersample: 1,
        stl: false,
        ..Default::default()
    };
    let profile = osteon::phantom::scanner::profile("ge-lightspeed-bone").unwrap();
    let p = osteon::phantom::generate(profile, seed, &opts);
    let norm = Normaliser::fit(Normalisation::default(), p.hu.view()).unwrap();
    let image = p.hu.mapv(|v| norm.apply(v));
    ScanData::new("p".into(), image, p.label.clone(), norm.identity(), 8)
}

fn options(out: &Path, steps: usize) -> TrainOptions {
    TrainOptions {
        manifest: out.with_file_name("none.toml"),
        out: out.to_owned(),
        filters: [4, 8, 8, 8],
        normalisation: Normalisation::default(),
        steps,
        minutes: None,
        tiles_per_step: 2,
        sample: SampleSettings {
            tile: 16,
            per_tile: 16,
            ..Default::default()
        },
        lr: 0.005,
        decay: 0.01,
        seed: 11,
        threads: 2,
        checkpoint_every: 4,
        log_every: 4,
        resume: false,
        bone_margin: 8,
        device: DeviceChoice::Cpu,
        working_pixel_mm: None,
    }
}

#[test]
fn a_run_stopped_at_step_4_and_resumed_ends_with_the_weights_of_an_unbroken_run() {
    let data = scan(4);
    let train = [&data];
    let dir = tempfile::tempdir().unwrap();
    // Unbroken: 8 steps.
    let whole = dir.path().join("whole.safetensors");
    let r = fit(
        &options(&whole, 8),
        Device::Cpu,
        &train,
        &[],
        Vec::new(),
        "t",
    )
    .unwrap();
    assert_eq!(r.steps, 8);
    // Broken: 4 steps (a finished run, as a fold stopped at its checkpoint leaves it), then
    // resumed to 8.
    let parts = dir.path().join("parts.safetensors");
    fit(
        &options(&parts, 4),
        Device::Cpu,
        &train,
        &[],
        Vec::new(),
        "t",
    )
    .unwrap();
    let ck: serde_json::Value =
        serde_json::from_slice(&std::fs::read(parts.with_extension("ckpt.json")).unwrap()).unwrap();
    assert_eq!(ck["step"], 4);
    assert_eq!(ck["weights"], "parts.ckpt-000004.safetensors");
    assert_eq!(ck["optimizer"], "parts.ckpt-000004.rmsprop.safetensors");
    let mut o = options(&parts, 8);
    o.resume = true;
    let r = fit(&o, Device::Cpu, &train, &[], Vec::new(), "t").unwrap();
    assert_eq!(r.steps, 8);
    let read = |p: &Path| {
        let mut t = tch::Tensor::read_safetensors(p).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t.into_iter()
            .flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
            .collect::<Vec<f32>>()
    };
    let (a, b) = (read(&whole), read(&parts));
    assert!(a.len() > 1000, "{} weights", a.len());
    assert_eq!(a, b, "resumed weights differ from the unbroken run's");
    // Step 4's files were replaced by step 8's; only the checkpoint the JSON names is left.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("parts.ckpt"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "parts.ckpt-000008.rmsprop.safetensors",
            "parts.ckpt-000008.safetensors",
            "parts.ckpt.json"
        ]
    );
    // The weights of step 4 differ from step 8's: the comparison above is of trained weights.
    let mut early = options(&dir.path().join("early.safetensors"), 4);
    early.seed = 11;
    fit(&early, Device::Cpu, &train, &[], Vec::new(), "t").unwrap();
    assert_ne!(read(&dir.path().join("early.safetensors")), a);
    // Files a killed run left (a step file of another step, a temporary one) go with the next
    // checkpoint; the checkpoint of another run in the folder is left alone.
    let junk = [
        dir.path().join("parts.ckpt-000005.safetensors"),
        dir.path()
            .join("parts.ckpt-000006.rmsprop.partial.safetensors"),
    ];
    for j in &junk {
        std::fs::write(j, b"left by a killed run").unwrap();
    }
    let mut o = options(&parts, 12);
    o.resume = true;
    fit(&o, Device::Cpu, &train, &[], Vec::new(), "t").unwrap();
    for j in &junk {
        assert!(!j.exists(), "{} left", j.display());
    }
    assert!(dir.path().join("early.ckpt-000004.safetensors").is_file());
    // A checkpoint JSON naming a file that is not its step's own (edited, or copied from another
    // run) is refused, naming both.
    let ck_path = parts.with_extension("ckpt.json");
    let ck: serde_json::Value = serde_json::from_slice(&std::fs::read(&ck_path).unwrap()).unwrap();
    let mut edited = ck.clone();
    edited["step"] = 6.into();
    std::fs::write(&ck_path, edited.to_string()).unwrap();
    // The error of resuming `parts` to `steps` steps on `records`.
    let refused = |steps: usize, records: Vec<osteon::train::data::ScanRecord>| {
        let mut o = options(&parts, steps);
        o.resume = true;
        fit(&o, Device::Cpu, &train, &[], records, "t")
            .unwrap_err()
            .to_string()
    };
    let e = refused(14, Vec::new());
    assert!(
        e.contains("names the file \"parts.ckpt-000012.safetensors\" where \"parts.ckpt-000006.safetensors\" was expected"),
        "{e}"
    );
    // A checkpoint made on other scans, or at more steps than the run asks for, is refused.
    std::fs::write(&ck_path, ck.to_string()).unwrap();
    let record = osteon::train::data::ScanRecord {
        name: "a".into(),
        scanner: "ge".into(),
        split: "train".into(),
        series: "a/ct".into(),
        series_files: 12,
        series_sha256: "0".repeat(64),
        label_sha256: String::new(),
        shape: [12, 64, 64],
        bone_voxels: 1,
        anchors: [-1000.0, 30.0],
    };
    let e = refused(14, vec![record]);
    assert!(e.contains("made on other scans"), "{e}");
    let e = refused(10, Vec::new());
    assert!(
        e.contains("made at step 12; this run asks for 10 steps in all"),
        "{e}"
    );
}

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
fn a_leave_2_out_trains_in_parts_and_a_fold_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut manifest = String::from("[manifest]\nname = \"parts\"\nroot = \".\"\n");
    for seed in 1..=3 {
        for p in ["philips-ingenuity-ub", "cbct"] {
            let name = format!("{p}-s{seed}");
            let o = osteon(&[
                "phantom",
                "--profile",
                p,
                "--seed",
                &seed.to_string(),
                "--fast",
                "--out",
                root.join(&name).to_str().unwrap(),
            ]);
            assert!(o.status.success(), "phantom {name}: {}", text(&o.stderr));
            manifest.push_str(&format!(
                "\n[[scan]]\nname = \"{name}\"\nseries = \"{name}/ct\"\nscanner = \"{p}\"\n\
                 split = \"train\"\nlabel = {{ kind = \"seg\", path = \"{name}/label-seg.dcm\" }}\n"
            ));
        }
    }
    let m = root.join("parts.toml");
    std::fs::write(&m, manifest).unwrap();
    let work = root.join("folds");
    std::fs::create_dir_all(&work).unwrap();
    let csv = root.join("l2o.csv");
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
    // Six pool scans: folds 1-3 and the final model. Only fold 2 and the final model train.
    let o = run(&["--train-only", "--models", "2,final"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert_eq!(stdout.matches("trained in").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("(not trained yet)").count(), 2, "{stdout}");
    for (model, present) in [
        ("fold-01", false),
        ("fold-02", true),
        ("fold-03", false),
        ("final", true),
    ] {
        assert_eq!(work.join(format!("{model}.safetensors")).is_file(), present);
    }
    // Unknown fold numbers and lists that are not fold numbers are refused before any work.
    let o = run(&["--train-only", "--reuse", "--models", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--models 4: this plan has folds 1-3"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["--train-only", "--models", "1,x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("\"x\": expected a fold number"));
    // Without --reuse a fold's checkpoint is not replaced either.
    let o = run(&["--train-only", "--models", "2"]);
    assert_eq!(o.status.code(), Some(1));
    // Fold 2 stopped after its last checkpoint, before it wrote the model: --reuse resumes it
    // from the checkpoint, and the model comes out the same.
    let fold2 = work.join("fold-02.safetensors");
    let before = std::fs::read(&fold2).unwrap();
    std::fs::remove_file(&fold2).unwrap();
    std::fs::remove_file(work.join("fold-02.json")).unwrap();
    let o = run(&["--train-only", "--reuse", "--models", "1-2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("fold-02.ckpt.json at step 2"),
        "resumed: {stderr}"
    );
    assert_eq!(std::fs::read(&fold2).unwrap(), before);
    assert!(work.join("fold-01.safetensors").is_file());
    assert!(!work.join("fold-03.safetensors").exists());

    // Scoring in parts: --models 2 scores fold 2's pair (pool scans 2 and 5 of 6) and keeps the
    // rows in scores/; the final model holds out nothing here (no `test` scan).
    let o = run(&["--reuse", "--models", "2"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
    assert_eq!(stderr.matches("scored ").count(), 2, "{stderr}");
    assert!(stdout.contains("part: 1 of the 4 models"), "{stdout}");
    let kept = |name: &str| work.join("scores").join(format!("{name}.json"));
    for name in ["cbct-s1", "philips-ingenuity-ub-s3"] {
        assert!(kept(name).is_file(), "{name} kept");
    }
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 4, "{rows}");
    // The whole plan: fold 3 trains, folds 1 and 3 score their pairs, fold 2's rows are read back.
    let o = run(&["--reuse"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
    assert_eq!(stderr.matches("scores of ").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("scored ").count(), 4, "{stderr}");
    assert!(!stdout.contains("part:"), "{stdout}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 12, "{rows}");
    // Kept rows of another model are not reused: fold 2 retrained (its model changes) scores again.
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kept("cbct-s1")).unwrap()).unwrap();
    c["key"]["model_sha256"] = "0".repeat(64).into();
    std::fs::write(kept("cbct-s1"), c.to_string()).unwrap();
    let o = run(&["--reuse", "--models", "2"]);
    let stderr = text(&o.stderr);
    assert_eq!(stderr.matches("scores of ").count(), 1, "{stderr}");
    assert!(stderr.contains("scored cbct-s1"), "{stderr}");
}
