//! The training loop: tiles -> network -> masked cross-entropy -> RMSprop; checkpoints; decision
//! threshold calibrated on the validation scans; weights (safetensors) + metadata (JSON).

use std::path::Path;
use std::time::Instant;

use ndarray::Array3;
use serde::Serialize;
use tch::nn::VarStore;
use tch::{Device, Reduction, Tensor};

use super::checkpoint;
use super::data::{load_scan, ScanRecord};
use super::rmsprop::RmsProp;
use super::sample::{draw_tile, Rng, ScanData, IGNORE};
use super::TrainError;
use crate::eval::manifest::{Manifest, ScanEntry, Split};
use crate::segment::cnn::arch::{Architecture, HALF};
use crate::segment::cnn::infer::{dense_probabilities, DenseOptions};
use crate::segment::cnn::meta::{meta_path, ModelMeta, FORMAT};
use crate::segment::cnn::net::Net;

mod options;
pub use options::{check_options, DeviceChoice, TrainOptions, MAX_TILE, MAX_TILES};

/// What a run produced.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    /// Steps done in total (including resumed ones).
    pub steps: usize,
    /// Mean loss over the first and the last logging window.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// (step, mean loss since the previous entry).
    pub losses: Vec<(usize, f64)>,
    /// Calibrated threshold.
    pub threshold: f32,
    /// Per candidate threshold, mean validation DSC (empty without validation scans).
    pub calibration: Vec<(f32, f64)>,
    /// Training seconds (this run plus resumed ones).
    pub seconds: f64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Saves `vs` as safetensors, through a CPU copy when it lives on a GPU (the writer reads host
/// memory).
/// Saves the weights of `vs` (through a CPU copy when it lives on a GPU) as safetensors.
///
/// # Errors
/// [`TrainError::Model`] naming `path`.
pub(super) fn save_vs(vs: &VarStore, arch: &Architecture, path: &Path) -> Result<(), TrainError> {
    let torch =
        |e: tch::TchError| crate::segment::cnn::CnnError::Torch(format!("{}: {e}", path.display()));
    if vs.device() == Device::Cpu {
        return vs.save(path).map_err(|e| torch(e).into());
    }
    let mut cpu = VarStore::new(Device::Cpu);
    let _net = Net::new(&cpu.root(), arch);
    cpu.copy(vs).map_err(torch)?;
    cpu.save(path).map_err(|e| torch(e).into())
}

/// One training batch from `scans`, drawn by `rng`: inputs `[B, P, S+32, S+32]` (`P` input planes),
/// targets `[B, S, S]`,
/// on `device`.
fn batch(
    scans: &[&ScanData],
    o: &TrainOptions,
    rng: &mut Rng,
    device: Device,
) -> Option<(Tensor, Tensor)> {
    let s = o.sample.tile as i64;
    let side = s + 2 * HALF as i64;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..o.tiles_per_step {
        let t = draw_tile(scans, &o.sample, rng)?;
        xs.extend(t.input);
        ys.extend(t.target);
    }
    let b = o.tiles_per_step as i64;
    Some((
        Tensor::from_slice(&xs)
            .view([b, o.sample.planes() as i64, side, side])
            .to_device(device),
        Tensor::from_slice(&ys).view([b, s, s]).to_device(device),
    ))
}

/// Masked cross-entropy of `net` on one batch.
pub fn loss(net: &Net, xs: &Tensor, ys: &Tensor, train: bool) -> Tensor {
    net.forward_t(xs, train)
        .cross_entropy_loss::<Tensor>(ys, None, Reduction::Mean, IGNORE, 0.0)
}

/// Bone probabilities of a stored (normalised) scan.
fn scan_probabilities(net: &Net, sc: &ScanData, device: Device) -> Result<Array3<f32>, TrainError> {
    let opts = DenseOptions {
        device,
        half: false,
        batch_slices: if device.is_cuda() { 16 } else { 4 },
        ..DenseOptions::default()
    };
    Ok(dense_probabilities(
        net,
        &sc.norm,
        sc.image.view(),
        &sc.slice_mm,
        &opts,
    )?)
}

/// Mean DSC over `scans` (inside each label's bounding box) for each candidate threshold.
fn calibrate(
    net: &Net,
    scans: &[&ScanData],
    device: Device,
) -> Result<Vec<(f32, f64)>, TrainError> {
    let cands: Vec<f32> = (1..40).map(|n| n as f32 * 0.025).collect();
    let mut sum = vec![0f64; cands.len()];
    for sc in scans {
        let p = scan_probabilities(net, sc, device)?;
        let Some(r) = crate::eval::metrics::Region::bounding_box(&sc.label, 0) else {
            continue;
        };
        // Histograms of the probability (40 bins of 0.025) of bone and background voxels.
        let (mut hb, mut hg) = ([0u64; 41], [0u64; 41]);
        for k in r.start[0]..r.end[0] {
            for j in r.start[1]..r.end[1] {
                for i in r.start[2]..r.end[2] {
                    let bin = ((p[[k, j, i]] / 0.025).floor().max(0.0) as usize).min(40);
                    if sc.label[[k, j, i]] != 0 {
                        hb[bin] += 1
                    } else {
                        hg[bin] += 1
                    }
                }
            }
        }
        for (c, s) in sum.iter_mut().enumerate() {
            // Candidate c + 1 is (c + 1) * 0.025: voxels of bins >= c + 1 are called bone.
            let tp: u64 = hb[c + 1..].iter().sum();
            let fp: u64 = hg[c + 1..].iter().sum();
            let fn_: u64 = hb[..c + 1].iter().sum();
            let d = 2 * tp + fp + fn_;
            *s += if d == 0 {
                0.0
            } else {
                2.0 * tp as f64 / d as f64
            };
        }
    }
    let n = scans.len().max(1) as f64;
    Ok(cands
        .into_iter()
        .zip(sum.into_iter().map(|s| s / n))
        .collect())
}

/// Checks before any work that the folder of `out` can be created and written (a training run must
/// not end in an unwritable output).
///
/// # Errors
/// [`TrainError::Io`] naming the folder.
pub fn check_writable(out: &Path) -> Result<(), TrainError> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let probe = dir.join(format!(".osteon-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io_err(dir))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Loads `entries` in parallel (CT, label, normalisation, hashes), in their order.
///
/// # Errors
/// The first [`TrainError`] of a scan that fails.
pub fn load_scans(
    entries: &[&ScanEntry],
    o: &TrainOptions,
) -> Result<Vec<(ScanData, ScanRecord)>, TrainError> {
    use rayon::prelude::*;
    entries
        .par_iter()
        .map(|e| {
            let t = Instant::now();
            let (d, r) = load_scan(e, o.normalisation, o.bone_margin, o.working_pixel_mm)?;
            eprintln!(
                "loaded {} ({:?}, {} bone voxels, air {:.0} tissue {:.0}) in {:.1} s",
                r.name,
                r.shape,
                r.bone_voxels,
                r.anchors[0],
                r.anchors[1],
                t.elapsed().as_secs_f64()
            );
            Ok((d, r))
        })
        .collect()
}

/// Trains a model as `o` says (see the module documentation of [`super`]) on the manifest's
/// `train` scans, calibrating the threshold on its `validation` scans; progress on stderr.
///
/// # Errors
/// [`TrainError`] for a bad manifest, unreadable scans, bad settings, a mismatching checkpoint or a
/// failed save.
pub fn train(o: &TrainOptions) -> Result<TrainReport, TrainError> {
    check_options(o)?;
    let device = o.device.resolve()?;
    check_writable(&o.out)?;
    let manifest = Manifest::load(&o.manifest)?;
    let entries: Vec<&ScanEntry> = manifest
        .scan
        .iter()
        .filter(|e| e.split != Split::Test)
        .collect();
    let loaded = load_scans(&entries, o)?;
    let (mut train, mut val, mut records) = (Vec::new(), Vec::new(), Vec::new());
    for ((d, r), e) in loaded.iter().zip(&entries) {
        if matches!(e.split, Split::Train | Split::Extra) {
            train.push(d)
        } else {
            val.push(d)
        }
        records.push(r.clone());
    }
    fit(o, device, &train, &val, records, &manifest.manifest.name)
}

/// The optimisation of [`train`] on scans already loaded: `train` scans feed the loss, `val` scans
/// calibrate the decision threshold; writes the weights, checkpoint and metadata (with `records`
/// as the provenance of the data) as `o.out` says.
///
/// # Errors
/// As [`train`].
pub fn fit(
    o: &TrainOptions,
    device: Device,
    train: &[&ScanData],
    val: &[&ScanData],
    records: Vec<ScanRecord>,
    manifest_name: &str,
) -> Result<TrainReport, TrainError> {
    check_options(o)?;
    if train.is_empty() {
        return Err(TrainError::Settings(format!(
            "{}: no scan with split = \"train\"",
            o.manifest.display()
        )));
    }
    let arch = Architecture::with_filters(o.filters).with_neighbours(o.sample.neighbours());
    if !device.is_cuda() {
        tch::set_num_threads(o.threads.max(1) as i32);
    }
    tch::manual_seed(o.seed as i64);
    let mut vs = VarStore::new(device);
    let net = Net::new(&vs.root(), &arch);
    // Keras RMSprop constants (rho 0.9, epsilon 1e-7); the running averages are part of the
    // checkpoint, so a resumed run takes the steps an uninterrupted one would.
    let mut opt = RmsProp::new(&vs, 0.9, 1e-7);
    let (mut step, mut losses, mut seconds) =
        match checkpoint::resume(o, &records, &mut vs, &mut opt)? {
            Some(r) => (r.step, r.losses, r.seconds),
            None => (0usize, Vec::new(), 0.0f64),
        };
    let start = Instant::now();
    let first_step = step;
    // The loss stays on the device between progress lines (no host sync every step).
    let (mut window, mut window_n) = (Tensor::zeros([], (tch::Kind::Float, device)), 0usize);
    let save_ckpt = |step: usize, losses: &[(usize, f64)], seconds: f64, opt: &RmsProp| {
        let p = checkpoint::Progress {
            step,
            losses,
            seconds,
            records: &records,
        };
        checkpoint::save(o, &arch, &vs, opt, &p)
    };
    while step < o.steps {
        if o.minutes
            .is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0)
        {
            eprintln!("time budget reached at step {step}");
            break;
        }
        let lr = o.lr / (1.0 + o.decay * step as f64);
        let mut rng = Rng::new(o.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Dropout's masks of step t come from (seed, t) too, so a resumed run draws the same ones.
        tch::manual_seed((o.seed ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)) as i64);
        let Some((xs, ys)) = batch(train, o, &mut rng, device) else {
            return Err(TrainError::Settings("no training slice holds bone".into()));
        };
        let l = loss(&net, &xs, &ys, true);
        opt.backward_step(&l, lr);
        window += l.detach();
        window_n += 1;
        step += 1;
        if step % o.log_every.max(1) == 0 || step == o.steps {
            let mean = window.double_value(&[]) / window_n as f64;
            losses.push((step, mean));
            let el = start.elapsed().as_secs_f64();
            eprintln!(
                "step {step}/{} loss {mean:.4} lr {lr:.5} {:.3} s/step elapsed {:.0} s",
                o.steps,
                el / (step - first_step).max(1) as f64,
                el
            );
            (window, window_n) = (Tensor::zeros([], (tch::Kind::Float, device)), 0);
        }
        if step % o.checkpoint_every.max(1) == 0 {
            save_ckpt(step, &losses, seconds + start.elapsed().as_secs_f64(), &opt)?;
        }
    }
    if window_n > 0 {
        losses.push((step, window.double_value(&[]) / window_n as f64));
    }
    seconds += start.elapsed().as_secs_f64();
    save_ckpt(step, &losses, seconds, &opt)?;
    let calibration = if val.is_empty() {
        eprintln!("no validation scans: decision threshold 0.5 (not calibrated)");
        Vec::new()
    } else {
        calibrate(&net, val, device)?
    };
    let threshold = calibration
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.5, |c| c.0);
    if let Some(best) = calibration.iter().find(|c| c.0 == threshold) {
        let at_half = calibration
            .iter()
            .find(|c| (c.0 - 0.5).abs() < 1e-6)
            .map_or(f64::NAN, |c| c.1);
        eprintln!(
            "threshold {threshold:.3}: validation DSC {:.4} (at 0.5: {at_half:.4})",
            best.1
        );
    }
    save_vs(&vs, &arch, &o.out)?;
    let report = TrainReport {
        steps: step,
        first_loss: losses.first().map_or(f64::NAN, |l| l.1),
        last_loss: losses.last().map_or(f64::NAN, |l| l.1),
        losses: losses.clone(),
        threshold,
        calibration: calibration.clone(),
        seconds,
    };
    let meta = ModelMeta {
        format: FORMAT.to_owned(),
        architecture: arch.clone(),
        normalisation: o.normalisation,
        threshold,
        working_pixel_mm: o.working_pixel_mm,
        test_time_orientations: 1,
        threshold_calibration: None,
        weights_sha256: super::data::sha256_file(&o.out).ok(),
        training: serde_json::json!({
            "options": o,
            "device": format!("{device:?}"),
            "lr_schedule": "lr_t = lr / (1 + decay * t), t = optimizer step (Keras RMSprop decay)",
            "rmsprop": { "rho": 0.9, "epsilon": 1e-7 },
            "objective": "masked cross-entropy of drawn patch centres, dense on tiles",
            "manifest": manifest_name,
            "scans": records,
            "report": &report,
            "torch": crate::torch_info::describe(),
        }),
    };
    meta.write(&meta_path(&o.out))?;
    Ok(report)
}

/// Bone probabilities `[k, j, i]` of a (normalised) scan with a freshly built net: exposed for
/// tests of the training smoke run.
pub fn probabilities_of(net: &Net, sc: &ScanData) -> Result<Array3<f32>, TrainError> {
    scan_probabilities(net, sc, Device::Cpu)
}
