//! `cargo bench --bench pipeline`: per-stage timings and peak RSS of `osteon segment` on the 140-slice
//! Philips head phantom series (../shared/data/ct/philips-ingenuity-head-phantom/S2020), printed as a
//! table. Targets (issue "offline pipeline"): everything except segmentation under 3 s on a 2-core
//! machine; peak RSS under 3x the volume's float32 size.
use std::path::PathBuf;
use std::time::Instant;

use osteon::dicom::seg::{build_seg, SegmentDescription};
use osteon::dicom::series::{load_volume, scan};
use osteon::dicom::stl_object::{build_encapsulated_stl, StlDescription};
use osteon::mesh::{build_mesh, stl_bytes, MeshOptions};
use osteon::segment::threshold::ThresholdSegmenter;
use osteon::segment::Segmenter;

#[path = "common/rss.rs"]
mod rss;
use rss::{peak_rss_mib, rss_mib};

fn main() {
    let start_rss = rss_mib();
    let series = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/ct/philips-ingenuity-head-phantom/S2020");
    let out = std::env::temp_dir().join(format!("osteon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let mut rows: Vec<(&str, f64)> = Vec::new();

    let t = Instant::now();
    let found = scan(&[series.clone()]);
    rows.push((
        "scan headers + group (assembly)",
        t.elapsed().as_secs_f64() * 1e3,
    ));
    let group = found.groups.first().expect("S2020 holds a CT series");
    let t = Instant::now();
    let ct = load_volume(group).expect("S2020 loads");
    rows.push((
        "read + decode pixels, build volume",
        t.elapsed().as_secs_f64() * 1e3,
    ));

    let t = Instant::now();
    let mask = ThresholdSegmenter::default()
        .segment(&ct)
        .expect("bone found");
    let seg_ms = t.elapsed().as_secs_f64() * 1e3;
    rows.push(("segmentation (threshold baseline)", seg_ms));
    // As the worker does: the later stages need the geometry and references, not the HU voxels.
    let mut ct = ct;
    ct.hu = ndarray::Array3::zeros((0, 0, 0));

    let t = Instant::now();
    let (mesh, stats) = build_mesh(&mask, &ct.geometry, &MeshOptions::default()).expect("mesh");
    rows.push((
        "mesh (surface, smoothing, decimation)",
        t.elapsed().as_secs_f64() * 1e3,
    ));

    let t = Instant::now();
    let seg = build_seg(&ct, mask.view(), &SegmentDescription::default()).expect("SEG");
    osteon::dicom::seg::write(&seg, &out.join("seg.dcm")).expect("write SEG");
    rows.push(("SEG build + write", t.elapsed().as_secs_f64() * 1e3));

    let t = Instant::now();
    let stl = stl_bytes(&mesh).expect("STL");
    let stl_bytes_ms = t.elapsed().as_secs_f64() * 1e3;
    std::fs::write(out.join("skull.stl"), &stl).expect("write STL");
    let stl_file_ms = t.elapsed().as_secs_f64() * 1e3 - stl_bytes_ms;
    let obj = build_encapsulated_stl(&ct, stl.as_slice(), &StlDescription::default())
        .expect("Encapsulated STL");
    let stl_obj_ms = t.elapsed().as_secs_f64() * 1e3 - stl_bytes_ms - stl_file_ms;
    osteon::dicom::stl_object::write(&obj, &out.join("skull-stl.dcm"))
        .expect("write Encapsulated STL");
    let stl_detail = format!(
        "STL detail: bytes {stl_bytes_ms:.0} ms, skull.stl write {stl_file_ms:.0} ms, object build {stl_obj_ms:.0} ms, object write {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3 - stl_bytes_ms - stl_file_ms - stl_obj_ms
    );
    rows.push((
        "STL + Encapsulated STL write",
        t.elapsed().as_secs_f64() * 1e3,
    ));

    let total: f64 = rows.iter().map(|r| r.1).sum();
    let dims = ct.geometry.dims();
    let f32_mib = (dims[0] * dims[1] * dims[2] * 4) as f64 / (1024.0 * 1024.0);
    let rss = peak_rss_mib();
    println!(
        "Osteon offline pipeline, {} ({}x{}x{} voxels, {} triangles)",
        series.display(),
        dims[0],
        dims[1],
        dims[2],
        stats.triangles
    );
    println!("| stage | ms |");
    println!("|---|---:|");
    for (name, ms) in &rows {
        println!("| {name} | {ms:.0} |");
    }
    println!(
        "| total except segmentation (target < 3000) | {:.0} |",
        total - seg_ms
    );
    println!(
        "| peak RSS MiB (target < {:.0} = 3x f32 volume {:.0}) | {rss:.0} |",
        3.0 * f32_mib,
        f32_mib
    );
    println!("| of which mapped at start (libtorch, CUDA runtime, binary) MiB | {start_rss:.0} |");
    println!(
        "| peak RSS above start MiB (the pipeline's own memory) | {:.0} |",
        rss - start_rss
    );
    let m = &stats.timings;
    println!(
        "\nmesh detail: {} surface triangles; components {:.0} ms, surface {:.0} ms, smoothing {:.0} ms, decimation {:.0} ms, topology {:.0} ms\ndecimation: {}",
        stats.triangles_surface,
        m.components_ms,
        m.surface_ms,
        m.smoothing_ms,
        m.decimation_ms,
        m.topology_ms,
        stats.decimation
    );
    println!("{stl_detail}");
    let _ = std::fs::remove_dir_all(&out);
}
