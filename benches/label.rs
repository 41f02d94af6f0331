//! `cargo bench --bench label`: `osteon label` mesh-to-label speed, printed as a table. Target (issue
//! "training data"): a 1 M-triangle STL onto a 512x512x300 grid in <= 10 s on a 2-core machine.
//!
//! The mesh is a skull-like shell: an outer ellipsoid (icosphere subdivided 8 times, 1 310 720
//! triangles) and an inner one wound inwards (subdivided 7 times, 327 680 triangles), 1.64 M
//! triangles in all, written to a binary STL and read back as `osteon label` does. Grids: axial
//! 0.45 mm pixels x 0.6 mm slices, and the same with 20° gantry tilt and alternating 0.5/0.7 mm
//! spacing.
use std::collections::HashMap;
use std::time::Instant;

use osteon::dicom::geometry::Geometry;
use osteon::label::{read_stl, voxelise::voxelise};
use osteon::mesh::{stl_bytes, Mesh};

/// Unit icosphere subdivided `level` times (outward, closed).
fn icosphere(level: u32) -> (Vec<[f64; 3]>, Vec<[u32; 3]>) {
    let t = (1.0 + 5f64.sqrt()) / 2.0;
    let mut v: Vec<[f64; 3]> = vec![
        [-1.0, t, 0.0],
        [1.0, t, 0.0],
        [-1.0, -t, 0.0],
        [1.0, -t, 0.0],
        [0.0, -1.0, t],
        [0.0, 1.0, t],
        [0.0, -1.0, -t],
        [0.0, 1.0, -t],
        [t, 0.0, -1.0],
        [t, 0.0, 1.0],
        [-t, 0.0, -1.0],
        [-t, 0.0, 1.0],
    ];
    let mut f: Vec<[u32; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    for _ in 0..level {
        let mut mid: HashMap<(u32, u32), u32> = HashMap::new();
        let mut next = Vec::with_capacity(f.len() * 4);
        for tri in &f {
            let mut m = [0u32; 3];
            for e in 0..3 {
                let (a, b) = (tri[e], tri[(e + 1) % 3]);
                m[e] = *mid.entry((a.min(b), a.max(b))).or_insert_with(|| {
                    let (p, q) = (v[a as usize], v[b as usize]);
                    v.push([
                        (p[0] + q[0]) / 2.0,
                        (p[1] + q[1]) / 2.0,
                        (p[2] + q[2]) / 2.0,
                    ]);
                    (v.len() - 1) as u32
                });
            }
            next.push([tri[0], m[0], m[2]]);
            next.push([tri[1], m[1], m[0]]);
            next.push([tri[2], m[2], m[1]]);
            next.push(m);
        }
        f = next;
    }
    for p in &mut v {
        let l = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        *p = [p[0] / l, p[1] / l, p[2] / l];
    }
    (v, f)
}

fn shell() -> Mesh {
    let c = [0.0, 0.0, 90.0];
    let mut mesh = Mesh::default();
    for (level, axes, inward) in [
        (8, [75.0, 95.0, 80.0], false),
        (7, [69.0, 89.0, 74.0], true),
    ] {
        let (v, f) = icosphere(level);
        let base = mesh.vertices.len() as u32;
        mesh.vertices.extend(v.iter().map(|p| {
            [
                (c[0] + axes[0] * p[0]) as f32,
                (c[1] + axes[1] * p[1]) as f32,
                (c[2] + axes[2] * p[2]) as f32,
            ]
        }));
        mesh.triangles.extend(f.iter().map(|t| {
            let t = [t[0] + base, t[1] + base, t[2] + base];
            if inward {
                [t[0], t[2], t[1]]
            } else {
                t
            }
        }));
    }
    mesh
}

fn grid(tilt_deg: f64, variable: bool) -> Geometry {
    let shear = tilt_deg.to_radians().tan();
    let mut z = 0.0;
    let ipp = (0..300)
        .map(|k| {
            if k > 0 {
                z += if variable && k % 2 == 0 {
                    0.7
                } else if variable {
                    0.5
                } else {
                    0.6
                };
            }
            [-115.0, -115.0 + shear * z, z]
        })
        .collect();
    Geometry {
        ipp,
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [0.45, 0.45],
        rows: 512,
        cols: 512,
    }
}

fn main() {
    let mut rows: Vec<(String, f64)> = Vec::new();
    let t = Instant::now();
    let mesh = shell();
    rows.push((
        format!("build test shell ({} triangles)", mesh.triangles.len()),
        t.elapsed().as_secs_f64() * 1e3,
    ));
    let dir = std::env::temp_dir().join(format!("osteon-label-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stl = dir.join("shell.stl");
    std::fs::write(&stl, stl_bytes(&mesh).expect("stl")).expect("write STL");

    let t = Instant::now();
    let read = read_stl(&stl).expect("read STL");
    let read_ms = t.elapsed().as_secs_f64() * 1e3;
    rows.push(("read + weld binary STL".into(), read_ms));

    let mut total_axial = read_ms;
    for (name, g) in [
        ("voxelise onto 512x512x300, axial 0.6 mm", grid(0.0, false)),
        (
            "voxelise onto 512x512x300, tilt 20°, 0.5/0.7 mm",
            grid(20.0, true),
        ),
    ] {
        let t = Instant::now();
        let (_, stats) = voxelise(&read, &g).expect("voxelise");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if total_axial == read_ms {
            total_axial += ms;
        }
        rows.push((
            format!(
                "{name}: {} voxels, {:.1} mL (mesh {:.1} mL)",
                stats.voxels, stats.label_volume_ml, stats.mesh_volume_ml
            ),
            ms,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "\nosteon label benchmark ({} rayon threads)",
        rayon::current_num_threads()
    );
    println!("{:<78} {:>10}", "step", "ms");
    for (name, ms) in &rows {
        println!("{name:<78} {ms:>10.0}");
    }
    println!(
        "{:<78} {:>10.0}   (target <= 10000 ms)",
        "read + voxelise (axial)", total_axial
    );
}
