//! The CNN: exact dense inference, model files, and a training smoke run (issue 4).
#![cfg(feature = "torch")]

use std::path::Path;

use ndarray::{s, Array3};
use osteon::segment::cnn::arch::{Architecture, DEFAULT_FILTERS};
use osteon::segment::cnn::infer::{dense_probabilities, patch_probabilities, DenseOptions};
use osteon::segment::cnn::meta::{meta_path, ModelMeta, FORMAT};
use osteon::segment::cnn::net::Net;
use osteon::segment::cnn::normalise::{Anchors, Normalisation, Normaliser};
use osteon::segment::cnn::planes::Neighbours;
use osteon::segment::cnn::{load, CnnError};
use osteon::train::sample::{draw_tile, Rng, SampleSettings, ScanData};
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Tensor};

/// A net with random weights and batch-norm statistics that are not the identity.
fn random_net(vs: &VarStore, filters: [usize; 4]) -> Net {
    random_net_of(vs, &Architecture::with_filters(filters))
}

/// [`random_net`] of any architecture (e.g. with neighbour planes).
fn random_net_of(vs: &VarStore, arch: &Architecture) -> Net {
    let net = Net::new(&vs.root(), arch);
    let planes = arch.planes() as i64;
    tch::no_grad(|| {
        for _ in 0..3 {
            let x = Tensor::randn([4, planes, 40, 40], (tch::Kind::Float, vs.device())) * 0.7 + 0.5;
            let _ = net.forward_t(&x, true);
        }
    });
    net
}

/// libtorch's random generator is one per process and the tests of this file run on parallel
/// threads: each test that seeds it holds this lock for its whole run, so that its random
/// weights (and the smoke test's dropout) do not depend on what the other tests draw meanwhile.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Locks [`TORCH_RNG`] and seeds libtorch's generator with `seed`.
fn seeded(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
}

/// Deterministic pseudo-random HU in [-1100, 2100).
fn random_volume(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut r = Rng::new(seed);
    Array3::from_shape_simple_fn(shape, || -1100.0 + 3200.0 * r.unit())
}

/// The calibrated anchors of the uniform-noise volumes (which have no air and soft-tissue modes
/// for the normaliser to find), so the values spread over -1..3 normalised units.
fn noise_normaliser() -> Normaliser {
    Normaliser::with_anchors(
        Normalisation::default(),
        Anchors {
            air: -1000.0,
            tissue: 40.0,
            min: -1100.0,
            max: 2100.0,
        },
    )
}

/// CPU inference options (fp32) with `orientations` test-time orientations.
fn cpu(orientations: usize) -> DenseOptions {
    DenseOptions {
        device: Device::Cpu,
        half: false,
        orientations,
        ..DenseOptions::default()
    }
}

/// Slice positions of the 5-slice test volumes with neighbour planes: variable spacing, mm.
const SLICE_MM: [f64; 5] = [0.0, 2.5, 5.0, 8.0, 12.0];

fn dense_equals_patches(device: Device, half: bool, nb: Neighbours, orientations: usize) {
    let _rng = seeded(3);
    let vs = VarStore::new(device);
    let arch = Architecture::with_filters(DEFAULT_FILTERS).with_neighbours(nb);
    let net = random_net_of(&vs, &arch);
    let (hu, slice_mm) = match nb {
        Neighbours::AtMm(_) => (random_volume((5, 37, 45), 11), SLICE_MM.to_vec()),
        // Adjacent planes need no slice positions.
        Neighbours::Adjacent => (random_volume((5, 37, 45), 11), Vec::new()),
        Neighbours::One => (random_volume((3, 37, 45), 11), Vec::new()),
    };
    let norm = noise_normaliser();
    let opts = DenseOptions {
        batch_slices: 2,
        device,
        half,
        roi: false,
        roi_margin: 0,
        orientations,
    };
    let dense = dense_probabilities(&net, &norm, hu.view(), &slice_mm, &opts).unwrap();
    // Every voxel; with orientations every fourth one (the patch classifier runs 8 times): rows
    // of 45 voxels shift the pick by one column a row, so every row, column and edge is met.
    let step = if orientations > 1 { 4 } else { 1 };
    let centres: Vec<[usize; 3]> = hu
        .indexed_iter()
        .map(|((k, j, i), _)| [k, j, i])
        .step_by(step)
        .collect();
    let patch =
        patch_probabilities(&net, &norm, hu.view(), &slice_mm, &centres, 256, &opts).unwrap();
    let tol = if half { 2e-2 } else { 1e-4 };
    let mut worst = 0f32;
    for (c, p) in centres.iter().zip(&patch) {
        worst = worst.max((dense[*c] - p).abs());
    }
    assert!(worst <= tol, "max |dense - patch| = {worst} on {device:?}");
    // The probabilities are not degenerate (a constant net would pass trivially).
    let (lo, hi) = patch
        .iter()
        .fold((1f32, 0f32), |(a, b), &p| (a.min(p), b.max(p)));
    assert!(hi - lo > 0.05, "probabilities span only {lo}..{hi}");
}

#[test]
fn dense_inference_equals_per_patch_classification_cpu() {
    dense_equals_patches(Device::Cpu, false, Neighbours::One, 1);
}

#[test]
fn dense_inference_equals_per_patch_classification_with_neighbour_planes_cpu() {
    dense_equals_patches(Device::Cpu, false, Neighbours::AtMm(3.0), 1);
}

#[test]
fn dense_inference_equals_per_patch_classification_with_adjacent_slices_cpu() {
    dense_equals_patches(Device::Cpu, false, Neighbours::Adjacent, 1);
}

#[test]
fn dense_inference_with_8_orientations_equals_oriented_patches_cpu() {
    // 37 x 45 slices: a transposition that was not undone would not even fit the output.
    dense_equals_patches(Device::Cpu, false, Neighbours::AtMm(3.0), 8);
}

#[test]
fn two_orientations_average_the_patch_and_its_left_right_mirror() {
    let _rng = seeded(9);
    let vs = VarStore::new(Device::Cpu);
    let net = random_net_of(&vs, &Architecture::with_filters([4, 4, 4, 4]));
    let hu = random_volume((1, 33, 33), 13);
    let norm = noise_normaliser();
    let normalised: Vec<f32> = hu.iter().map(|&v| norm.apply(v)).collect();
    let x = Tensor::from_slice(&normalised).view([1, 1, 33, 33]);
    let p = |x: &Tensor| {
        net.forward_t(x, false)
            .softmax(1, tch::Kind::Float)
            .double_value(&[0, 1, 0, 0])
    };
    let (plain, mirrored) = (p(&x), p(&x.flip([3])));
    assert!(
        (plain - mirrored).abs() > 1e-3,
        "a random net should not be mirror-symmetric: {plain} vs {mirrored}"
    );
    let got = |n: usize| {
        patch_probabilities(&net, &norm, hu.view(), &[], &[[0, 16, 16]], 1, &cpu(n)).unwrap()[0]
            as f64
    };
    assert!((got(1) - plain).abs() < 1e-5, "{} vs {plain}", got(1));
    let mean = (plain + mirrored) / 2.0;
    assert!((got(2) - mean).abs() < 1e-5, "{} vs {mean}", got(2));
}

#[test]
fn neighbour_planes_are_the_interpolated_slices_above_and_below() {
    // One patch by hand: slice 2 (z 5 mm) of slices at 0, 2.5, 5, 8, 12 mm with planes at +-3 mm:
    // z 2 = 0.2 x slice 0 + 0.8 x slice 1, z 8 = slice 3; channel order centre, below, above.
    let _rng = seeded(5);
    let vs = VarStore::new(Device::Cpu);
    let arch = Architecture::with_filters([4, 4, 4, 4]).with_neighbours(Neighbours::AtMm(3.0));
    let net = random_net_of(&vs, &arch);
    let hu = random_volume((5, 33, 33), 12);
    let norm = noise_normaliser();
    let n = |k: usize, j: usize, i: usize| norm.apply(hu[[k, j, i]]);
    let mut buf = Vec::with_capacity(3 * 33 * 33);
    for plane in 0..3 {
        for j in 0..33 {
            for i in 0..33 {
                buf.push(match plane {
                    0 => n(2, j, i),
                    1 => 0.2 * n(0, j, i) + 0.8 * n(1, j, i),
                    _ => n(3, j, i),
                });
            }
        }
    }
    let x = Tensor::from_slice(&buf).view([1, 3, 33, 33]);
    let want = tch::no_grad(|| net.forward_t(&x, false))
        .softmax(1, tch::Kind::Float)
        .double_value(&[0, 1, 0, 0]) as f32;
    // Slice 2's centre patch of a volume.
    let centre = |v: &Array3<f32>| {
        patch_probabilities(&net, &norm, v.view(), &SLICE_MM, &[[2, 16, 16]], 1, &cpu(1)).unwrap()
            [0]
    };
    let got = centre(&hu);
    assert!((got - want).abs() < 1e-5, "{got} against {want} by hand");
    // The neighbours matter: changing slice 3 moves slice 2's probability; changing slice 4
    // (12 mm, beyond z 8) does not.
    let mut other = hu.clone();
    other.slice_mut(s![3, .., ..]).mapv_inplace(|v| -v);
    let moved = centre(&other);
    assert!(
        (moved - got).abs() > 1e-4,
        "slice 3 did not reach slice 2 ({moved})"
    );
    let mut far = hu.clone();
    far.slice_mut(s![4, .., ..]).mapv_inplace(|v| -v);
    let same = centre(&far);
    assert_eq!(same, got);
    // Without slice positions a model with neighbour planes refuses, naming what is missing.
    let err =
        patch_probabilities(&net, &norm, hu.view(), &[], &[[2, 16, 16]], 1, &cpu(1)).unwrap_err();
    assert!(err.to_string().contains("slice position"), "{err}");
}

#[test]
fn dense_inference_equals_per_patch_classification_cuda() {
    // The same check on the GPU, in fp32 and with mixed precision, whenever one is present.
    if tch::Cuda::is_available() {
        dense_equals_patches(Device::Cuda(0), false, Neighbours::One, 1);
        dense_equals_patches(Device::Cuda(0), true, Neighbours::One, 1);
        dense_equals_patches(Device::Cuda(0), false, Neighbours::AtMm(3.0), 1);
        dense_equals_patches(Device::Cuda(0), false, Neighbours::Adjacent, 1);
        dense_equals_patches(Device::Cuda(0), true, Neighbours::AtMm(3.0), 8);
    } else {
        eprintln!("no CUDA device: the GPU variant ran on nothing (CPU variant is the other test)");
    }
}

#[test]
fn region_of_interest_keeps_the_head_and_zeroes_the_rest() {
    let _rng = seeded(4);
    let vs = VarStore::new(Device::Cpu);
    let net = random_net(&vs, [4, 4, 4, 4]);
    // Air with a "head" block of tissue/bone in rows 10..30, columns 12..40.
    let mut hu = Array3::from_elem((2, 48, 56), -1000.0f32);
    let noise = random_volume((2, 20, 28), 5);
    hu.slice_mut(s![.., 10..30, 12..40])
        .assign(&noise.mapv(|v| v.max(0.0)));
    let norm = Normaliser::fit(Normalisation::default(), hu.view()).unwrap();
    let base = DenseOptions {
        device: Device::Cpu,
        half: false,
        ..DenseOptions::default()
    };
    let full = dense_probabilities(
        &net,
        &norm,
        hu.view(),
        &[],
        &DenseOptions {
            roi: false,
            ..base.clone()
        },
    )
    .unwrap();
    let roi = dense_probabilities(
        &net,
        &norm,
        hu.view(),
        &[],
        &DenseOptions {
            roi: true,
            roi_margin: 3,
            ..base
        },
    )
    .unwrap();
    let inner = s![.., 7..33, 9..43];
    let d = (&full.slice(inner) - &roi.slice(inner)).mapv(f32::abs);
    assert!(
        d.iter().all(|&v| v <= 1e-4),
        "inside the ROI dense values differ"
    );
    assert_eq!(roi[[0, 0, 0]], 0.0);
    assert_eq!(roi[[1, 40, 50]], 0.0);
    assert!(full[[0, 0, 0]] > 0.0);
}

fn write_model(
    dir: &Path,
    vs: &VarStore,
    arch: &Architecture,
    threshold: f32,
) -> std::path::PathBuf {
    let w = dir.join("m.safetensors");
    vs.save(&w).unwrap();
    ModelMeta {
        format: FORMAT.into(),
        architecture: arch.clone(),
        normalisation: Normalisation::default(),
        threshold,
        working_pixel_mm: None,
        test_time_orientations: 1,
        threshold_calibration: None,
        weights_sha256: None,
        training: serde_json::Value::Null,
    }
    .write(&meta_path(&w))
    .unwrap();
    w
}

#[test]
fn load_reports_missing_files_wrong_architecture_and_shapes() {
    let _rng = seeded(2);
    let dir = tempfile::tempdir().unwrap();
    let e = load(&dir.path().join("none.safetensors")).err().unwrap();
    assert!(matches!(e, CnnError::Io { .. }), "{e}");
    assert!(e.to_string().contains("none.safetensors"));

    let small = Architecture::with_filters([4, 8, 8, 8]);
    let vs = VarStore::new(Device::Cpu);
    let _ = Net::new(&vs.root(), &small);
    let w = write_model(dir.path(), &vs, &small, 0.5);
    assert!(load(&w).is_ok());
    std::fs::remove_file(meta_path(&w)).unwrap();
    assert!(matches!(load(&w).err().unwrap(), CnnError::Io { .. }));

    // Metadata claiming other filter counts than the weights hold: a shape error naming the tensor.
    let mut wrong = small.clone();
    wrong.filters = [4, 8, 8, 16];
    let w = write_model(dir.path(), &vs, &wrong, 0.5);
    match load(&w).err().unwrap() {
        CnnError::Shape {
            name,
            expected,
            found,
            ..
        } => {
            assert!(
                name.starts_with("conv4")
                    || name.starts_with("bn4")
                    || name.starts_with("classify"),
                "{name}"
            );
            assert_ne!(expected, found);
        }
        e => panic!("expected a shape error, got {e}"),
    }
    // Kernels this build does not implement.
    let mut other = small.clone();
    other.kernels = [3, 3, 3, 3];
    let w = write_model(dir.path(), &vs, &other, 0.5);
    assert!(matches!(
        load(&w).err().unwrap(),
        CnnError::Architecture { .. }
    ));
    // A threshold outside (0, 1).
    let w = write_model(dir.path(), &vs, &small, 1.5);
    assert!(load(&w).err().unwrap().to_string().contains("threshold"));
    // A reversed normalisation clip: refused at load, naming the JSON.
    let w = write_model(dir.path(), &vs, &small, 0.5);
    let json = std::fs::read_to_string(meta_path(&w)).unwrap();
    let bad = json.replacen("\"lo\": -0.5", "\"lo\": 5.0", 1);
    assert_ne!(bad, json, "metadata layout changed: {json}");
    std::fs::write(meta_path(&w), bad).unwrap();
    let e = load(&w).err().unwrap().to_string();
    assert!(
        e.contains("normalisation clip [5, 4] must be finite with lo < hi"),
        "{e}"
    );
    // Test-time orientations: a value other than 1, 2, 4, 8, and a misspelt key, are refused
    // (a misspelt key ignored would run the model with one orientation unnoticed).
    for (field, needle) in [
        (
            "\"test_time_orientations\": 3,",
            "test_time_orientations 3 is not one of [1, 2, 4, 8]",
        ),
        (
            "\"test_time_orientation\": 8,",
            "unknown field `test_time_orientation`",
        ),
    ] {
        let w = write_model(dir.path(), &vs, &small, 0.5);
        let json = std::fs::read_to_string(meta_path(&w)).unwrap();
        let bad = json.replacen("\"threshold\":", &format!("{field} \"threshold\":"), 1);
        assert_ne!(bad, json, "metadata layout changed: {json}");
        std::fs::write(meta_path(&w), bad).unwrap();
        let e = load(&w).err().unwrap().to_string();
        assert!(e.contains(needle), "{e}");
    }
    // weights_sha256 ties the JSON to its weights: the right digest loads, another is refused.
    let w = write_model(dir.path(), &vs, &small, 0.5);
    let sha = load(&w).unwrap().weights_sha256().to_owned();
    let json = std::fs::read_to_string(meta_path(&w)).unwrap();
    for (digest, ok) in [
        (sha.clone(), true),
        (sha.replace('0', "1").replace('a', "b"), false),
    ] {
        let tied = json.replacen(
            "\"threshold\":",
            &format!("\"weights_sha256\": \"{digest}\", \"threshold\":"),
            1,
        );
        std::fs::write(meta_path(&w), tied).unwrap();
        match load(&w) {
            Ok(_) => assert!(ok, "{digest} loaded"),
            Err(e) => {
                assert!(!ok, "{e}");
                assert!(e.to_string().contains("do not belong together"), "{e}");
            }
        }
    }
    assert!(e.contains(".json"), "{e}");
    // Weights holding NaN: refused at load, naming the tensor (not "no bone found" later).
    let w = write_model(dir.path(), &vs, &small, 0.5);
    let mut nan_vs = VarStore::new(Device::Cpu);
    let _ = Net::new(&nan_vs.root(), &small);
    nan_vs.load(&w).unwrap();
    tch::no_grad(|| {
        for (name, mut v) in nan_vs.variables() {
            if name.starts_with("conv1") {
                let _ = v.fill_(f64::NAN);
            }
        }
    });
    nan_vs.save(&w).unwrap();
    let e = load(&w).err().unwrap().to_string();
    assert!(e.contains("conv1") && e.contains("NaN or infinite"), "{e}");
}

#[test]
fn a_working_pixel_spacing_resamples_the_scan_and_maps_probabilities_back() {
    use osteon::segment::cnn::resample::InPlaneGrid;
    use osteon::segment::cnn::segmenter::load_with;
    use osteon::segment::Segmenter;
    let _rng = seeded(9);
    let dir = tempfile::tempdir().unwrap();
    let arch = Architecture::with_filters([4, 8, 8, 8]);
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &arch);
    let w = write_model(dir.path(), &vs, &arch, 0.5);
    let set_working = |v: serde_json::Value| {
        let mut meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(meta_path(&w)).unwrap()).unwrap();
        meta["working_pixel_mm"] = v;
        std::fs::write(meta_path(&w), meta.to_string()).unwrap();
    };
    set_working(serde_json::json!(0.5));
    let opts = DenseOptions {
        device: Device::Cpu,
        half: false,
        ..DenseOptions::default()
    };
    let seg = load_with(&w, opts.clone()).unwrap();
    assert!(
        seg.identity().version.contains("-t0.500-p0.500-w"),
        "{}",
        seg.identity().version
    );

    let mut hu = Array3::from_elem((2, 60, 64), -1000.0f32);
    hu.slice_mut(s![.., 8..52, 6..58])
        .assign(&random_volume((2, 44, 52), 11).mapv(|v| v.max(0.0)));
    let native = seg.probabilities(hu.view(), &[]).unwrap();
    // 0.48 mm is within 10 % of 0.5 mm: the scan runs at its own spacing, bit for bit.
    assert_eq!(
        seg.probabilities_at(hu.view(), &[], [0.48, 0.48]).unwrap(),
        native
    );
    // 0.34 mm pixels: the network runs on the 0.5 mm grid and its output comes back.
    let spacing = [0.34, 0.34];
    let g = seg.working_grid(hu.view(), spacing).unwrap();
    assert_eq!((g.work_rows, g.work_cols), (41, 43));
    assert_eq!(g, InPlaneGrid::new(60, 64, spacing, 0.5).unwrap());
    let at = seg.probabilities_at(hu.view(), &[], spacing).unwrap();
    assert_eq!(at.dim(), hu.dim());
    let norm = Normaliser::fit(Normalisation::default(), hu.view()).unwrap();
    let work =
        dense_probabilities(&net, &norm, g.to_working(hu.view()).view(), &[], &opts).unwrap();
    let want = g.to_native(work.view());
    let diff = (&at - &want).mapv(f32::abs).fold(0f32, |m, &d| m.max(d));
    assert!(diff <= 1e-5, "resampled inference differs by {diff}");
    let moved = (&at - &native).mapv(f32::abs).fold(0f32, |m, &d| m.max(d));
    assert!(moved > 1e-3, "resampling changed nothing ({moved})");

    // A working spacing outside [0.1, 5] mm is refused at load, naming the field.
    set_working(serde_json::json!(50.0));
    let e = load(&w).err().unwrap().to_string();
    assert!(
        e.contains("working_pixel_mm 50.0 outside [0.1, 5] mm"),
        "{e}"
    );
}

/// A small phantom (64x64, 16 slices) as normalised training data.
fn phantom_scan(seed: u64) -> (ScanData, Array3<f32>) {
    let opts = osteon::phantom::PhantomOptions {
        slices: Some(16),
        matrix: Some(64),
        supersample: 1,
        stl: false,
        ..Default::default()
    };
    let profile = osteon::phantom::scanner::profile("philips-ingenuity-ub").unwrap();
    let p = osteon::phantom::generate(profile, seed, &opts);
    let norm = Normaliser::fit(Normalisation::default(), p.hu.view()).unwrap();
    let image = p.hu.mapv(|v| norm.apply(v));
    (
        ScanData::new("p".into(), image, p.label.clone(), norm.identity(), 8),
        p.hu,
    )
}

#[test]
fn training_smoke_loss_decreases_and_save_load_round_trip_is_identical() {
    let _rng = seeded(1);
    tch::set_num_threads(2);
    let (scan, hu) = phantom_scan(1);
    let scans = [scan];
    let arch = Architecture::with_filters([8, 16, 16, 16]);
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &arch);
    let mut opt = nn::RmsProp {
        alpha: 0.9,
        eps: 1e-7,
        ..Default::default()
    }
    .build(&vs, 0.005)
    .unwrap();
    let set = SampleSettings {
        tile: 24,
        per_tile: 32,
        noise_hu: 0.0,
        blur: 0.0,
        ..Default::default()
    };
    // A fixed evaluation batch measures the loss before and after.
    let eval_batch = |seed: u64| {
        let mut rng = Rng::new(seed);
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..16 {
            let t = draw_tile(&scans, &set, &mut rng).unwrap();
            xs.extend(t.input);
            ys.extend(t.target);
        }
        (
            Tensor::from_slice(&xs).view([16, 1, 56, 56]),
            Tensor::from_slice(&ys).view([16, 24, 24]),
        )
    };
    let (ex, ey) = eval_batch(999);
    let eval_loss =
        || tch::no_grad(|| osteon::train::fit::loss(&net, &ex, &ey, false).double_value(&[]));
    let before = eval_loss();
    for step in 0..60 {
        opt.set_lr(0.005 / (1.0 + 0.01 * step as f64));
        let (xs, ys) = eval_batch(step);
        let l = osteon::train::fit::loss(&net, &xs, &ys, true);
        opt.backward_step(&l);
    }
    let after = eval_loss();
    assert!(after < 0.8 * before, "loss {before:.4} -> {after:.4}");

    // Round trip: probabilities of the in-memory net equal those of the saved and loaded model.
    let dir = tempfile::tempdir().unwrap();
    let w = write_model(dir.path(), &vs, &arch, 0.5);
    let opts = DenseOptions {
        device: Device::Cpu,
        half: false,
        ..DenseOptions::default()
    };
    let norm = Normaliser::fit(Normalisation::default(), hu.view()).unwrap();
    let mem = dense_probabilities(&net, &norm, hu.view(), &[], &opts).unwrap();
    let seg = osteon::segment::cnn::segmenter::load_with(&w, opts).unwrap();
    let disk = seg.probabilities(hu.view(), &[]).unwrap();
    assert_eq!(mem, disk, "loaded model gives other probabilities");
    assert!(mem.iter().any(|&p| p > 0.5) && mem.iter().any(|&p| p > 0.0 && p < 0.5));
}

#[test]
fn fit_on_cuda_saves_a_model_that_the_cpu_reads_back_identically() {
    let _rng = seeded(0);
    // `fit` on the GPU (weights saved through a host copy), then the saved model run on the GPU
    // and on the CPU: the same probabilities within fp32 reduction-order noise.
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: GPU training ran on nothing (the CPU path is the next test)");
        return;
    }
    let (scan, hu) = phantom_scan(2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu.safetensors");
    let o = osteon::train::fit::TrainOptions {
        manifest: dir.path().join("none.toml"),
        out: out.clone(),
        filters: [8, 16, 16, 16],
        normalisation: Normalisation::default(),
        steps: 40,
        minutes: None,
        tiles_per_step: 8,
        sample: SampleSettings {
            tile: 24,
            per_tile: 32,
            ..Default::default()
        },
        lr: 0.005,
        decay: 0.01,
        seed: 3,
        threads: 2,
        checkpoint_every: 20,
        log_every: 10,
        resume: false,
        bone_margin: 8,
        device: osteon::train::fit::DeviceChoice::Cuda,
        working_pixel_mm: None,
    };
    let report = osteon::train::fit::fit(
        &o,
        Device::Cuda(0),
        &[&scan],
        &[&scan],
        Vec::new(),
        "gpu-smoke",
    )
    .unwrap();
    assert_eq!(report.steps, 40);
    assert!(report.last_loss < report.first_loss, "{report:?}");
    let probs = |device: Device| {
        let opts = DenseOptions {
            device,
            half: false,
            ..DenseOptions::default()
        };
        osteon::segment::cnn::segmenter::load_with(&out, opts)
            .unwrap()
            .probabilities(hu.view(), &[])
            .unwrap()
    };
    let (gpu, cpu) = (probs(Device::Cuda(0)), probs(Device::Cpu));
    let worst = gpu
        .iter()
        .zip(cpu.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "max |GPU - CPU| = {worst}");
}

#[test]
fn osteon_train_writes_weights_metadata_and_a_resumable_checkpoint() {
    // `train` runs in this process and seeds libtorch's generator itself.
    let _rng = seeded(0);
    let dir = tempfile::tempdir().unwrap();
    let opts = osteon::phantom::PhantomOptions {
        slices: Some(12),
        matrix: Some(64),
        supersample: 1,
        stl: false,
        ..Default::default()
    };
    let profile = osteon::phantom::scanner::profile("ge-lightspeed-bone").unwrap();
    let mut p = osteon::phantom::generate(profile, 2, &opts);
    let pdir = dir.path().join("p");
    osteon::phantom::write_phantom(&mut p, &pdir).unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "[manifest]\nname = \"smoke\"\n\n[[scan]]\nname = \"a\"\nseries = \"p/ct\"\nscanner = \"ge\"\nsplit = \"train\"\nlabel = { kind = \"seg\", path = \"p/label-seg.dcm\" }\n\n[[scan]]\nname = \"b\"\nseries = \"p/ct\"\nscanner = \"ge\"\nsplit = \"validation\"\nlabel = { kind = \"seg\", path = \"p/label-seg.dcm\" }\n",
    )
    .unwrap();
    let out = dir.path().join("models/x.safetensors");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut o = osteon::train::fit::TrainOptions {
        manifest: manifest.clone(),
        out: out.clone(),
        filters: [4, 8, 8, 8],
        normalisation: Normalisation::default(),
        steps: 6,
        minutes: None,
        tiles_per_step: 2,
        sample: SampleSettings {
            tile: 16,
            per_tile: 16,
            ..Default::default()
        },
        lr: 0.005,
        decay: 0.01,
        seed: 5,
        threads: 2,
        checkpoint_every: 3,
        log_every: 3,
        resume: false,
        bone_margin: 8,
        device: osteon::train::fit::DeviceChoice::Cpu,
        working_pixel_mm: None,
    };
    // Unusable settings are refused before any work, naming the setting.
    let refused = |change: &dyn Fn(&mut osteon::train::fit::TrainOptions), what: &str| {
        let mut b = o.clone();
        change(&mut b);
        let e = osteon::train::fit::train(&b).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
        assert!(!b.out.exists());
    };
    refused(&|b| b.lr = f64::NAN, "--lr NaN outside (0, 1]");
    refused(&|b| b.lr = 1e30, "--lr");
    refused(&|b| b.decay = -1.0, "--decay -1 must be finite");
    refused(
        &|b| b.sample.noise_hu = 1e9,
        "--noise-hu 1000000000 must be in [0, 1000] HU",
    );
    refused(
        &|b| b.sample.bone_fraction = 1.5,
        "--bone-fraction 1.5 outside [0, 1]",
    );
    refused(
        &|b| b.sample.zoom = f32::NAN,
        "--zoom NaN must be in [0, 3]",
    );
    refused(
        &|b| b.sample.slab_label = osteon::train::sample::SlabLabel::Occupancy,
        "--slab-label occupancy needs the thick-slice augmentation",
    );
    refused(
        &|b| {
            b.sample.neighbour_adjacent = true;
            b.sample.neighbour_mm = 3.0;
        },
        "--neighbour-adjacent and --neighbour-mm exclude each other",
    );
    refused(&|b| b.steps = 0, "--steps must be >= 1");
    refused(&|b| b.threads = 0, "--threads must be >= 1");
    refused(
        &|b| b.checkpoint_every = 0,
        "--checkpoint-every must be >= 1",
    );
    refused(&|b| b.log_every = 0, "--log-every must be >= 1");
    refused(
        &|b| b.working_pixel_mm = Some(0.0),
        "--working-pixel-mm 0.0 outside [0.1, 5] mm",
    );
    // An output folder that cannot exist (its parent is a file) is refused before training.
    refused(
        &|b| b.out = manifest.join("m.safetensors"),
        "m.toml: File exists",
    );
    refused(&|b| b.minutes = Some(f64::NAN), "--minutes NaN");
    refused(&|b| b.sample.tile = 100_000_000, "above the limits");
    refused(&|b| b.tiles_per_step = 1_000_000_000, "above the limits");
    let r = osteon::train::fit::train(&o).unwrap();
    assert_eq!(r.steps, 6);
    assert_eq!(r.calibration.len(), 39);
    let meta = ModelMeta::read(&meta_path(&out)).unwrap();
    assert_eq!(meta.architecture.filters, [4, 8, 8, 8]);
    assert_eq!(meta.threshold, r.threshold);
    let scans = &meta.training["scans"];
    assert_eq!(scans.as_array().unwrap().len(), 2);
    let sha = scans[0]["series_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert_eq!(scans[0]["series_files"].as_u64(), Some(12));
    assert!(load(&out).is_ok());
    // Resume: 6 more steps continue from step 6; other filters refuse the checkpoint.
    o.resume = true;
    o.steps = 9;
    assert_eq!(osteon::train::fit::train(&o).unwrap().steps, 9);
    // Settings that shape training must match the checkpoint's, named in the refusal.
    o.steps = 12;
    o.lr = 0.001;
    let e = osteon::train::fit::train(&o).unwrap_err().to_string();
    assert!(
        e.contains("made with lr 0.005; this run asks for 0.001"),
        "{e}"
    );
    o.lr = 0.005;
    o.working_pixel_mm = Some(0.5);
    let e = osteon::train::fit::train(&o).unwrap_err().to_string();
    assert!(
        e.contains("made with working_pixel_mm null; this run asks for 0.5"),
        "{e}"
    );
    o.working_pixel_mm = None;
    o.filters = [4, 8, 8, 4];
    let e = osteon::train::fit::train(&o).unwrap_err();
    assert!(e.to_string().contains("checkpoint"), "{e}");
}
