//! `cargo bench --bench cnn`: speed of the CNN on the 140-slice 512x512 Philips head phantom series
//! (../shared/data/ct/philips-ingenuity-head-phantom/S2020), printed as a table.
//!
//! Per architecture: one slice by dense inference (the fully convolutional network over the head's
//! box) vs per-patch classification of the same voxels (the paper's method, 128 patches per
//! forward pass, timed on 2048 patches and scaled to the box), their ratio (target >= 100x), and
//! the whole series (normalise, dense inference, threshold, marrow fill, separate bones as the
//! CNN segmenter does them; target <= 180 s on
//! the 2-core CPU, peak RSS <= 4 GB; <= 5 s on a GPU).
//!
//! Environment: `OSTEON_CNN_MODEL=path.safetensors` benchmarks a trained model (default: the
//! shipped `models/osteon-cnn.safetensors` when present; `none`: random weights
//! of each `OSTEON_CNN_FILTERS` entry, default `16,32,32,32;24,48,48,48;64,128,128,128`);
//! `OSTEON_CNN_EVAL=manifest.toml` (with `OSTEON_CNN_MODEL`) instead scores the model and the
//! 226 HU threshold baseline on the manifest's `test` scans (DSC inside the label's bounding box,
//! each segmenter's own post-processing), plus, with `OSTEON_CNN_VARIANTS=1`, a cone-beam-like
//! (0.75 x HU + 200) and a low-dose (+120 HU SD noise) variant of each.
//! `OSTEON_CNN_SERIES=all` runs the whole series for every entry (default: the first only; `none`:
//! no whole series). `OSTEON_CNN_NEIGHBOUR_MM=3` gives the random-weight entries neighbour planes
//! at +-3 mm (three input planes, [`osteon::segment::cnn::planes`]); the one-slice timings then
//! read the neighbours as air (the slice is timed alone), the series timing reads them.
#[cfg(feature = "torch")]
#[path = "common/rss.rs"]
mod rss;

#[cfg(feature = "torch")]
mod bench {
    use std::path::PathBuf;
    use std::time::Instant;

    use ndarray::s;
    use osteon::dicom::series::{load_volume, scan};
    use osteon::segment::cnn::arch::{Architecture, DEFAULT_FILTERS};
    use osteon::segment::cnn::infer::{
        dense_probabilities, patch_probabilities, slice_roi, DenseOptions,
    };
    use osteon::segment::cnn::net::Net;
    use osteon::segment::cnn::normalise::{Normalisation, Normaliser};
    use osteon::segment::cnn::planes::Neighbours;
    use osteon::segment::post::post_process;
    use osteon::segment::PostMode;
    use osteon::train::sample::Rng;
    use tch::nn::VarStore;
    use tch::Device;

    use super::rss::peak_rss_mib;

    fn configs() -> Vec<[usize; 4]> {
        let text = std::env::var("OSTEON_CNN_FILTERS")
            .unwrap_or_else(|_| "16,32,32,32;24,48,48,48;64,128,128,128".into());
        text.split(';')
            .filter_map(|c| {
                let v: Vec<usize> = c.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                <[usize; 4]>::try_from(v.as_slice()).ok()
            })
            .collect()
    }

    fn dsc_row(
        name: &str,
        ct: &osteon::dicom::series::CtVolume,
        reference: &osteon::segment::Mask,
        cnn: &dyn osteon::segment::Segmenter,
        threshold_hu: f32,
    ) {
        use osteon::eval::metrics::{dice, Region};
        use osteon::segment::threshold::ThresholdSegmenter;
        use osteon::segment::Segmenter;
        let Some(region) = Region::bounding_box(reference, 0) else {
            println!("| {name} | empty label | | |");
            return;
        };
        let t = Instant::now();
        let c = cnn
            .segment(ct)
            .ok()
            .and_then(|m| dice(&m, reference, &region).ok());
        let cnn_s = t.elapsed().as_secs_f64();
        let th = ThresholdSegmenter { threshold_hu }
            .segment(ct)
            .ok()
            .and_then(|m| dice(&m, reference, &region).ok());
        let f = |o: Option<osteon::eval::metrics::Overlap>| {
            o.map_or("failed".to_owned(), |o| format!("{:.4}", o.dsc))
        };
        println!("| {name} | {} | {} | {cnn_s:.0} |", f(c), f(th));
    }

    fn evaluate(manifest: &std::path::Path, model: &std::path::Path) {
        use osteon::eval::manifest::{Manifest, Split};
        let m = Manifest::load(manifest).unwrap_or_else(|e| {
            eprintln!("bench cnn: {e}");
            std::process::exit(1)
        });
        let seg = osteon::segment::cnn::load(model).unwrap_or_else(|e| {
            eprintln!("bench cnn: {e}");
            std::process::exit(1)
        });
        let variants = std::env::var("OSTEON_CNN_VARIANTS").is_ok_and(|v| v == "1");
        println!("| scan | CNN DSC | threshold 226 HU DSC | CNN s |");
        println!("|---|---|---|---|");
        for e in m.scan.iter().filter(|e| e.split == Split::Test) {
            let ct = osteon::label::load_ct(
                std::slice::from_ref(&e.series),
                e.series_selector.as_deref(),
            );
            let Ok(mut ct) = ct else {
                println!("| {} | CT failed | | |", e.name);
                continue;
            };
            let Ok(reference) = osteon::eval::label_for(&ct, &e.label) else {
                println!("| {} | label failed | | |", e.name);
                continue;
            };
            dsc_row(&e.name, &ct, &reference, &seg, 226.0);
            if variants {
                let clean = ct.hu.clone();
                ct.hu.mapv_inplace(|v| 0.75 * v + 200.0);
                dsc_row(
                    &format!("{} cone-beam-like 0.75x+200", e.name),
                    &ct,
                    &reference,
                    &seg,
                    226.0,
                );
                let mut rng = Rng::new(3);
                ct.hu = clean.mapv(|v| v + 120.0 * rng.normal());
                dsc_row(
                    &format!("{} low-dose +120 HU SD", e.name),
                    &ct,
                    &reference,
                    &seg,
                    226.0,
                );
            }
        }
    }

    pub fn main() {
        if let (Some(m), Some(model)) = (
            std::env::var_os("OSTEON_CNN_EVAL"),
            std::env::var_os("OSTEON_CNN_MODEL"),
        ) {
            tch::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
            evaluate(std::path::Path::new(&m), std::path::Path::new(&model));
            return;
        }
        let series = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/ct/philips-ingenuity-head-phantom/S2020");
        let t = Instant::now();
        let found = scan(&[series]);
        let Some(group) = found.groups.first() else {
            eprintln!("bench cnn: no series under the Philips S2020 folder");
            std::process::exit(1);
        };
        let ct = match load_volume(group) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("bench cnn: {e}");
                std::process::exit(1);
            }
        };
        let load_s = t.elapsed().as_secs_f64();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads(threads as i32);
        let device = Device::cuda_if_available();
        let (nk, rows, cols) = ct.hu.dim();
        println!(
            "series {nk}x{rows}x{cols} loaded in {load_s:.1} s; device {device:?}, {threads} CPU threads, {}",
            osteon::torch_info::describe()
        );
        // The shipped model by default (issue 4's series target is on it); `none` = random
        // weights of each OSTEON_CNN_FILTERS entry.
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(osteon::pipeline::offline::DEFAULT_MODEL_DIR)
            .join(osteon::pipeline::offline::MODEL_FILE);
        let model = match std::env::var_os("OSTEON_CNN_MODEL") {
            Some(v) if v == "none" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => shipped.is_file().then_some(shipped),
        };
        let all_series = std::env::var("OSTEON_CNN_SERIES").is_ok_and(|v| v == "all");
        let no_series = std::env::var("OSTEON_CNN_SERIES").is_ok_and(|v| v == "none");
        let list: Vec<Option<[usize; 4]>> = if model.is_some() {
            vec![None]
        } else {
            configs().into_iter().map(Some).collect()
        };
        println!(
            "| filters | MAC/voxel | ROI voxels (slice {}) | dense slice (s) | per-patch slice (s) | ratio | series wall (s) | peak RSS (MiB) |",
            nk / 2
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (n, cfg) in list.into_iter().enumerate() {
            let mut vs = VarStore::new(device);
            let (arch, threshold, norm_mode) = match (&model, cfg) {
                (Some(m), _) => {
                    let meta = osteon::segment::cnn::meta::ModelMeta::read(
                        &osteon::segment::cnn::meta::meta_path(m),
                    )
                    .unwrap_or_else(|e| {
                        eprintln!("bench cnn: {e}");
                        std::process::exit(1)
                    });
                    (meta.architecture, meta.threshold, meta.normalisation)
                }
                (None, c) => (
                    Architecture::with_filters(c.unwrap_or(DEFAULT_FILTERS)).with_neighbours(
                        Neighbours::from_settings(
                            std::env::var("OSTEON_CNN_NEIGHBOUR_MM")
                                .ok()
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0.0),
                            false,
                        ),
                    ),
                    0.5,
                    Normalisation::default(),
                ),
            };
            let net = Net::new(&vs.root(), &arch);
            if let Some(m) = &model {
                if let Err(e) = osteon::segment::cnn::segmenter::load_weights(&mut vs, m) {
                    eprintln!("bench cnn: {e}");
                    std::process::exit(1);
                }
            }
            let norm = Normaliser::fit(norm_mode, ct.hu.view()).expect("normalise the series");
            let k = nk / 2;
            let one = ct.hu.slice(s![k..k + 1, .., ..]);
            let one_mm = [ct.geometry.slice_positions_mm()[k]];
            let roi = slice_roi(one.slice(s![0, .., ..]), norm.roi_level(), 4)
                .expect("head in the middle slice");
            let opts = DenseOptions {
                device,
                half: device.is_cuda(),
                ..DenseOptions::default()
            };
            let _ = dense_probabilities(&net, &norm, one, &one_mm, &opts); // warm-up
            let reps = 3;
            let t = Instant::now();
            for _ in 0..reps {
                let _ = dense_probabilities(&net, &norm, one, &one_mm, &opts);
            }
            let dense_s = t.elapsed().as_secs_f64() / reps as f64;
            let mut rng = Rng::new(7);
            let centres: Vec<[usize; 3]> = (0..2048)
                .map(|_| {
                    [
                        0,
                        roi.j0 + rng.below(roi.j1 - roi.j0),
                        roi.i0 + rng.below(roi.i1 - roi.i0),
                    ]
                })
                .collect();
            let _ = patch_probabilities(&net, &norm, one, &one_mm, &centres[..128], 128, &opts);
            let t = Instant::now();
            let _ = patch_probabilities(&net, &norm, one, &one_mm, &centres, 128, &opts);
            let patch_s = t.elapsed().as_secs_f64() / centres.len() as f64 * roi.area() as f64;
            eprintln!(
                "{:?}: dense slice {dense_s:.3} s, per-patch slice {patch_s:.1} s",
                arch.filters
            );
            let (series_s, rss) = if (n == 0 || all_series) && !no_series {
                let t = Instant::now();
                let norm = Normaliser::fit(norm_mode, ct.hu.view()).expect("normalise");
                let p = dense_probabilities(
                    &net,
                    &norm,
                    ct.hu.view(),
                    &ct.geometry.slice_positions_mm(),
                    &opts,
                )
                .expect("dense");
                let raw = p.mapv(|v| u8::from(v >= threshold));
                let a = &norm.anchors;
                let (_mask, _) = post_process(
                    raw,
                    ct.hu.view(),
                    &ct.geometry,
                    [a.air, a.tissue],
                    PostMode::Bones,
                    Some((p.view(), threshold)),
                );
                drop(p);
                (
                    format!("{:.1}", t.elapsed().as_secs_f64()),
                    format!("{:.0}", peak_rss_mib()),
                )
            } else {
                ("-".into(), "-".into())
            };
            let f = arch.filters;
            println!(
                "| {}/{}/{}/{}{}{} | {} | {} | {:.3} | {:.1} | {:.0}x | {} | {} |",
                f[0],
                f[1],
                f[2],
                f[3],
                if arch.planes() > 1 {
                    format!(", planes +-{} mm", arch.neighbour_mm)
                } else {
                    String::new()
                },
                if model.is_some() { " (model)" } else { "" },
                arch.macs_per_voxel(),
                roi.area(),
                dense_s,
                patch_s,
                patch_s / dense_s,
                series_s,
                rss
            );
        }
        // The product's path on the same series: the segmenter `osteon segment` and the node run
        // (working-grid resampling when the model asks for it, dense inference, the whole
        // post-processing), timed from the loaded volume to the mask.
        if let (Some(m), false) = (&model, no_series) {
            let seg = osteon::segment::cnn::load(m).unwrap_or_else(|e| {
                eprintln!("bench cnn: {e}");
                std::process::exit(1);
            });
            let t = Instant::now();
            let mask = osteon::segment::Segmenter::segment(&seg, &ct).expect("segment the series");
            println!(
                "\nsegmenter of {} on the whole series: {:.1} s wall, {} bone voxels, peak RSS {:.0} MiB (process so far)",
                m.display(),
                t.elapsed().as_secs_f64(),
                mask.iter().filter(|&&v| v != 0).count(),
                peak_rss_mib()
            );
        }
    }
}

fn main() {
    #[cfg(feature = "torch")]
    bench::main();
    #[cfg(not(feature = "torch"))]
    eprintln!("bench cnn needs the `torch` feature");
}
