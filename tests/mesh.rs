//! Mesh stage through its public API: LPS placement on a tilted, variably spaced grid, the STL round
//! trip through an independent reader (stl_io), an anisotropic sphere, and the throughput on a
//! synthetic 512x512x140 skull-like shell.

use std::time::Instant;

use ndarray::Array3;
use osteon::dicom::geometry::Geometry;
use osteon::mesh::{build_mesh, stl_bytes, topology, MeshOptions};
use osteon::segment::Mask;
use rayon::prelude::*;

fn exact() -> MeshOptions {
    MeshOptions {
        smoothing_iterations: 0,
        max_triangles: None,
        ..MeshOptions::default()
    }
}

#[test]
fn corner_cube_on_tilted_variably_spaced_grid_has_the_hand_computed_lps_bbox() {
    // 5 slices of 12 rows x 10 columns; PixelSpacing [row 0.8, column 0.5] mm; slice positions along
    // z 0, 1, 3, 6, 8 mm (spacings 1, 2, 3, 2) and sheared in y by 0.3 mm per mm of z (gantry tilt).
    let g = Geometry {
        ipp: vec![
            [10.0, 0.0, 0.0],
            [10.0, 0.3, 1.0],
            [10.0, 0.9, 3.0],
            [10.0, 1.8, 6.0],
            [10.0, 2.4, 8.0],
        ],
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [0.8, 0.5],
        rows: 12,
        cols: 10,
    };
    // Voxels k 0..3, j 0..4, i 0..3: the block touches the array's first slice, row and column.
    let mut mask: Mask = Array3::zeros((5, 12, 10));
    mask.slice_mut(ndarray::s![0..3, 0..4, 0..3]).fill(1);
    let (mesh, stats) = build_mesh(&mask, &g, &exact()).unwrap();
    assert!(
        stats.watertight && stats.shells == 1 && stats.volume_ml > 0.0,
        "{stats:?}"
    );
    // Voxel centres span x 10 + 0.5 i, i in [0, 2]; y 0.8 j + ipp_y(k), j in [0, 3], k in [0, 2];
    // z ipp_z(k). The surface vertices are the midpoints of the axis edges leaving the block, half a
    // voxel beyond the outer centres along one axis at a time (IPP extrapolated from slices 0-1 below
    // and interpolated between slices 2-3 above: ipp(-0.5) = (10, -0.15, -0.5), ipp(2.5) = (10, 1.35,
    // 4.5)):
    //   x: 10 - 0.25 = 9.75 .. 10 + 1.0 + 0.25 = 11.25
    //   y: min of the j-edges at j = -0.5 (k = 0: -0.4 + 0) and the k-edges at k = -0.5 (j = 0: -0.15)
    //      = -0.4; max of the j-edges at j = 3.5 (k = 2: 2.8 + 0.9 = 3.7) and the k-edges at k = 2.5
    //      (j = 3: 2.4 + 1.35 = 3.75) = 3.75
    //   z: ipp_z(-0.5) = -0.5 .. ipp_z(2.5) = 3 + 1.5 = 4.5
    let want = [[9.75, -0.4, -0.5], [11.25, 3.75, 4.5]];
    for (side, (got, want)) in stats.bbox_lps_mm.iter().zip(&want).enumerate() {
        for a in 0..3 {
            assert!(
                (got[a] - want[a]).abs() < 1e-5,
                "bbox[{side}][{a}] = {} != {}",
                got[a],
                want[a]
            );
        }
    }
    // The vertices themselves agree with the stats.
    let min_y = mesh
        .vertices
        .iter()
        .map(|v| v[1])
        .fold(f32::INFINITY, f32::min);
    assert!((min_y as f64 + 0.4).abs() < 1e-5);
}

/// Ball of radius `r` voxels centred in an `n^3` mask.
fn ball(n: usize, r: f64) -> Mask {
    let c = (n as f64 - 1.0) / 2.0;
    Array3::from_shape_fn((n, n, n), |(k, j, i)| {
        let d2 = (k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2);
        (d2 <= r * r) as u8
    })
}

fn axial(n: usize, spacing: [f64; 3]) -> Geometry {
    Geometry {
        ipp: (0..n)
            .map(|k| [-100.0, -120.0, -50.0 + k as f64 * spacing[0]])
            .collect(),
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [spacing[1], spacing[2]],
        rows: n,
        cols: n,
    }
}

#[test]
fn anisotropic_sphere_is_watertight_with_the_analytic_volume() {
    let (r, sp) = (12.0, [2.0, 0.7, 0.45]);
    let want_mm3 = 4.0 / 3.0 * std::f64::consts::PI * r * r * r * sp[0] * sp[1] * sp[2];
    for opts in [exact(), MeshOptions::default()] {
        let (mesh, stats) = build_mesh(&ball(40, r), &axial(40, sp), &opts).unwrap();
        let t = topology(&mesh);
        assert_eq!(
            (t.boundary_edges, t.non_manifold_edges, t.misoriented_edges),
            (0, 0, 0)
        );
        assert!(t.signed_volume_mm3 > 0.0);
        let rel = (t.signed_volume_mm3 - want_mm3) / want_mm3;
        assert!(
            rel.abs() < 0.03,
            "volume {} vs {want_mm3} ({rel:+.4}), {}",
            t.signed_volume_mm3,
            stats.smoothing
        );
        assert!((stats.volume_ml * 1000.0 - t.signed_volume_mm3).abs() < 1e-6);
    }
}

#[test]
fn stl_round_trip_keeps_triangles_and_outward_normals() {
    let sp = [1.5, 0.5, 0.6];
    let g = axial(40, sp);
    // Decimated: the triangle count survives the round trip and the surface is still closed.
    let opts = MeshOptions {
        max_triangles: Some(5000),
        ..MeshOptions::default()
    };
    let (mesh, stats) = build_mesh(&ball(40, 11.0), &g, &opts).unwrap();
    assert!(
        stats.triangles <= 5000 && stats.triangles > 4000,
        "{}",
        stats.decimation
    );
    let back = stl_io::read_stl(&mut std::io::Cursor::new(stl_bytes(&mesh).unwrap())).unwrap();
    assert_eq!(back.faces.len(), stats.triangles);
    back.validate().unwrap();
    // Smoothed, not decimated (decimation may leave a few folded triangles, see the decimate module):
    // every facet normal points away from the centre of the (convex) ellipsoid.
    let opts = MeshOptions {
        max_triangles: None,
        ..MeshOptions::default()
    };
    let (mesh, _) = build_mesh(&ball(40, 11.0), &g, &opts).unwrap();
    let bytes = stl_bytes(&mesh).unwrap();
    assert_eq!(bytes.len(), 84 + 50 * mesh.triangles.len());
    let back = stl_io::read_stl(&mut std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(back.faces.len(), mesh.triangles.len());
    // stl_io welds vertices by position: the same vertex count means no two mesh vertices coincide.
    assert_eq!(back.vertices.len(), mesh.vertices.len());
    // Independent check: every edge has its opposite half-edge, no zero-area face.
    back.validate().unwrap();
    let centre = g.voxel_to_lps(19.5, 19.5, 19.5);
    for (n, f) in back.faces.iter().enumerate() {
        let p: Vec<[f64; 3]> = f
            .vertices
            .iter()
            .map(|&v| {
                let x = back.vertices[v].0;
                [x[0] as f64, x[1] as f64, x[2] as f64]
            })
            .collect();
        let out = [0, 1, 2].map(|a| (p[0][a] + p[1][a] + p[2][a]) / 3.0 - centre[a]);
        let nrm = f.normal.0;
        let len = (nrm.iter().map(|v| v * v).sum::<f32>()).sqrt();
        assert!((len - 1.0).abs() < 1e-4, "face {n}: normal length {len}");
        let dot: f64 = (0..3).map(|a| nrm[a] as f64 * out[a]).sum();
        assert!(dot > 0.0, "face {n}: normal {nrm:?} points inward");
        // The stored normal is the one of the triangle as wound.
        let e1 = [0, 1, 2].map(|a| p[1][a] - p[0][a]);
        let e2 = [0, 1, 2].map(|a| p[2][a] - p[0][a]);
        let c = [
            e1[1] * e2[2] - e1[2] * e2[1],
            e1[2] * e2[0] - e1[0] * e2[2],
            e1[0] * e2[1] - e1[1] * e2[0],
        ];
        assert!(
            (0..3).map(|a| c[a] * nrm[a] as f64).sum::<f64>() > 0.0,
            "face {n}"
        );
    }
}

/// Skull-like shell on the Philips head grid (140 x 512 x 512, 0.451 mm pixels, 1 mm slices): between
/// two concentric ellipsoids (outer semi-axes 72 x 92 x 95 mm, bone 7 mm thick), the centre 25 mm
/// above the first slice so the shell is open at the bottom like a skull base cut by the scan.
fn synthetic_skull() -> (Mask, Geometry) {
    let (nk, nj, ni) = (140usize, 512usize, 512usize);
    let (ps, dz) = (0.451, 1.0);
    let outer = [72.0, 92.0, 95.0];
    let inner = outer.map(|a| a - 7.0);
    let centre = [ni as f64 / 2.0 * ps, nj as f64 / 2.0 * ps, 25.0];
    let mut data = vec![0u8; nk * nj * ni];
    data.par_chunks_mut(nj * ni)
        .enumerate()
        .for_each(|(k, plane)| {
            let z = k as f64 * dz - centre[2];
            for j in 0..nj {
                let y = j as f64 * ps - centre[1];
                for i in 0..ni {
                    let x = i as f64 * ps - centre[0];
                    let q =
                        |a: [f64; 3]| (x / a[0]).powi(2) + (y / a[1]).powi(2) + (z / a[2]).powi(2);
                    plane[j * ni + i] = (q(outer) <= 1.0 && q(inner) > 1.0) as u8;
                }
            }
        });
    let mask = Array3::from_shape_vec((nk, nj, ni), data).unwrap();
    let g = Geometry {
        ipp: (0..nk)
            .map(|k| [-115.2, -115.2, -60.0 + k as f64 * dz])
            .collect(),
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [ps, ps],
        rows: nj,
        cols: ni,
    };
    (mask, g)
}

#[test]
fn throughput_on_synthetic_skull_shell() {
    let t = Instant::now();
    let (mask, g) = synthetic_skull();
    let make_ms = t.elapsed().as_secs_f64() * 1e3;
    let voxel_mm3 = 0.451 * 0.451 * 1.0;
    let opts = MeshOptions::default();
    let t = Instant::now();
    let (mesh, stats) = build_mesh(&mask, &g, &opts).unwrap();
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let stl = stl_bytes(&mesh).unwrap();
    let stl_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "synthetic skull {}x{}x{} ({} bone voxels, made in {make_ms:.0} ms), {} threads:",
        140,
        512,
        512,
        stats.mask_voxels,
        rayon::current_num_threads()
    );
    println!(
        "  surface {} triangles; final {} triangles, {} vertices, {} shells, {:.2} mL",
        stats.triangles_surface, stats.triangles, stats.vertices, stats.shells, stats.volume_ml
    );
    println!(
        "  timings ms: {:?}; build_mesh wall {wall:.0} ms",
        stats.timings
    );
    println!("  smoothing: {}", stats.smoothing);
    println!("  decimation: {}", stats.decimation);
    println!("  STL {} MB in {stl_ms:.0} ms", stl.len() / 1_000_000);
    assert!(stats.watertight, "{stats:?}");
    assert_eq!(stats.shells, 1);
    assert!(
        stats.triangles_surface > 900_000,
        "{}",
        stats.triangles_surface
    );
    assert!(stats.triangles <= 1_000_000);
    let voxels_ml = stats.component_voxels as f64 * voxel_mm3 / 1000.0;
    assert!(
        (stats.volume_ml - voxels_ml).abs() < 0.02 * voxels_ml,
        "{} mL vs {voxels_ml} mL of voxels",
        stats.volume_ml
    );
}
