//! `cargo bench --bench phantom`: time of `osteon phantom` for one 512x512x150 phantom
//! (profile philips-ingenuity-ub, seed 1), per step, printed as a table. Target (issue "Training
//! data"): <= 30 s on this 2-core machine for the series and its label SEG; the label STL (meshing
//! every part of the label, then decimating) is reported separately. Pass a profile name as the
//! first argument to time another profile.
use std::time::Instant;

use osteon::phantom::{generate, scanner, write_phantom, PhantomOptions};

fn main() {
    let name = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "philips-ingenuity-ub".into());
    let Some(profile) = scanner::profile(&name) else {
        eprintln!("unknown profile {name}");
        std::process::exit(2);
    };
    let tmp = tempfile::tempdir().expect("temporary folder");
    let options = PhantomOptions {
        slices: Some(150),
        ..Default::default()
    };
    let t = Instant::now();
    let mut p = generate(profile, 1, &options);
    let summary = write_phantom(&mut p, tmp.path()).expect("phantom written");
    let wall = t.elapsed().as_secs_f64();
    let tm = &summary.timings;
    let [k, j, i] = summary.dims_kji;
    println!(
        "osteon phantom {name} seed 1, {k}x{j}x{i}, {} threads",
        rayon::current_num_threads()
    );
    println!("| step | s |");
    println!("|---|---|");
    for (step, ms) in [
        (
            "voxelize (model + supersampled partial volume + label)",
            tm.voxelize_ms,
        ),
        (
            "render (streaks, cupping, PSF, slice profile, noise)",
            tm.render_ms,
        ),
        ("write CT series", tm.write_ct_ms),
        ("read back + label SEG", tm.seg_ms),
        ("series + SEG (target <= 30 s)", tm.total_ms - tm.stl_ms),
        ("label STL (all parts, decimated)", tm.stl_ms),
        ("total", wall * 1e3),
    ] {
        println!("| {step} | {:.1} |", ms / 1e3);
    }
    println!(
        "boundary voxels supersampled: {} of {} ({:.1} %); label {} voxels, {} STL triangles",
        summary.boundary_voxels,
        k * j * i,
        100.0 * summary.boundary_voxels as f64 / (k * j * i) as f64,
        summary.label_voxels,
        summary.stl_triangles
    );
}
