//! Unit tests of [`build_mesh`] on small masks whose surface volume is known by hand.
//!
//! The surface ([`super::cube_table`]) has a vertex at the midpoint of every axis edge whose two
//! voxels differ. A lone voxel is the octahedron of its six axis-edge midpoints: 8 triangles, volume
//! `(4/3) (1/2)^3 = 1/6` voxel. Two voxels joined by an axis edge give the prism of the diamond
//! cross-section (area 1/2, length 1) plus two half octahedra, `1/2 + 2/12 = 2/3`; joined by a face or
//! body diagonal of the Kuhn decomposition they give the same 2/3 (two octahedra and a bridge of 1/3).

use ndarray::Array3;

use super::*;

fn axial(dims: [usize; 3], spacing: [f64; 3]) -> Geometry {
    Geometry {
        ipp: (0..dims[0])
            .map(|k| [-20.0, 30.0, 100.0 + k as f64 * spacing[0]])
            .collect(),
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [spacing[1], spacing[2]],
        rows: dims[1],
        cols: dims[2],
    }
}

fn exact() -> MeshOptions {
    MeshOptions {
        smoothing_iterations: 0,
        max_triangles: None,
        ..MeshOptions::default()
    }
}

fn mask_with(dims: [usize; 3], voxels: &[[usize; 3]]) -> Mask {
    let mut m = Array3::zeros((dims[0], dims[1], dims[2]));
    for v in voxels {
        m[*v] = 1;
    }
    m
}

/// Volume of the mesh in voxels of `axial(.., spacing)`.
fn voxels(mask: &Mask, spacing: [f64; 3]) -> (f64, MeshStats) {
    let d = mask.dim();
    let g = axial([d.0, d.1, d.2], spacing);
    let (mesh, stats) = build_mesh(mask, &g, &exact()).unwrap();
    let t = topology(&mesh);
    assert!(t.is_watertight(), "{t:?}");
    assert!(stats.watertight && stats.boundary_edges == 0 && stats.non_manifold_edges == 0);
    (
        stats.volume_ml * 1000.0 / (spacing[0] * spacing[1] * spacing[2]),
        stats,
    )
}

#[test]
fn single_voxel_is_the_octahedron_of_its_axis_edge_midpoints() {
    for at in [[2, 2, 2], [0, 0, 0], [3, 4, 5]] {
        let m = mask_with([4, 5, 6], &[at]);
        let (v, s) = voxels(&m, [2.0, 0.5, 0.75]);
        assert!((v - 1.0 / 6.0).abs() < 1e-5, "{at:?}: {v}");
        assert_eq!((s.triangles, s.vertices, s.shells), (8, 6, 1), "{at:?}");
        assert_eq!(s.triangles_surface, 8);
    }
}

#[test]
fn voxel_pairs_joined_by_kuhn_edges_and_a_non_kuhn_corner() {
    let dims = [5, 5, 5];
    let sp = [1.5, 0.8, 0.6];
    // (triangles, vertices): an axis pair has 10 vertices, a diagonal pair 12.
    let cases: [([usize; 3], (usize, usize)); 6] = [
        ([2, 2, 3], (16, 10)), // face neighbour (0,0,1): axis edge
        ([3, 2, 2], (16, 10)), // (1,0,0): axis edge across slices
        ([2, 3, 3], (20, 12)), // (0,1,1): face diagonal
        ([3, 3, 2], (20, 12)), // (1,1,0): face diagonal
        ([3, 3, 3], (20, 12)), // (1,1,1): body diagonal (an annulus in the cube between them)
        ([1, 1, 1], (20, 12)), // -(1,1,1)
    ];
    for (other, counts) in cases {
        let (v, s) = voxels(&mask_with(dims, &[[2, 2, 2], other]), sp);
        assert!((v - 2.0 / 3.0).abs() < 1e-5, "{other:?}: {v} != 2/3");
        assert_eq!((s.shells, s.mask_components), (1, 1), "{other:?}");
        assert_eq!((s.triangles, s.vertices), counts, "{other:?}");
    }
    // (1,1,-1) and (0,1,-1) touch by a corner / an edge that is not a Kuhn diagonal: two solids, the
    // largest (the first) is meshed alone.
    for other in [[3, 3, 1], [2, 3, 1]] {
        let (v, s) = voxels(&mask_with(dims, &[[2, 2, 2], other]), sp);
        assert!((v - 1.0 / 6.0).abs() < 1e-5, "{other:?}: {v}");
        assert_eq!((s.shells, s.mask_components, s.component_voxels), (1, 2, 1));
        assert_eq!(s.mask_voxels, 2);
    }
}

#[test]
fn all_components_meshes_every_part_the_product_only_the_largest() {
    // Two separate voxels and a pair: the product keeps the pair (2/3 voxel), scoring keeps all
    // three parts (2/3 + 2 x 1/6).
    let m = mask_with([6, 6, 6], &[[1, 1, 1], [1, 1, 2], [4, 4, 4], [4, 1, 4]]);
    let g = axial([6, 6, 6], [1.0, 1.0, 1.0]);
    let (one, s1) = build_mesh(&m, &g, &exact()).unwrap();
    let (all, s2) = build_mesh_all_components(&m, &g, &exact()).unwrap();
    assert!((s1.volume_ml * 1000.0 - 2.0 / 3.0).abs() < 1e-5, "{s1:?}");
    assert!((s2.volume_ml * 1000.0 - 1.0).abs() < 1e-5, "{s2:?}");
    assert_eq!((s1.shells, s2.shells), (1, 3));
    assert_eq!(s2.component_voxels, 4);
    assert!(all.triangles.len() == one.triangles.len() + 16);
}

#[test]
fn hollow_cube_has_two_shells_and_volume_outer_minus_inner() {
    let dims = [12, 13, 14];
    let sp = [1.25, 0.7, 0.9];
    let block = |lo: usize, hi: usize| {
        let mut m: Mask = Array3::zeros((dims[0], dims[1], dims[2]));
        m.slice_mut(ndarray::s![lo..hi, lo..hi, lo..hi]).fill(1);
        m
    };
    let outer = block(1, 11);
    let inner = block(4, 8);
    let hollow = &outer - &inner;
    let (vo, so) = voxels(&outer, sp);
    let (vi, _) = voxels(&inner, sp);
    let (vh, sh) = voxels(&hollow, sp);
    assert_eq!(so.shells, 1);
    assert_eq!(sh.shells, 2);
    assert!((vh - (vo - vi)).abs() < 1e-3, "{vh} != {vo} - {vi}");
    // The chamfers along the twelve edges cost 1/8 voxel per unit length: the box is a bit less
    // than its voxel count (1000), never more.
    assert!(
        vo < 1000.0 && vo > 1000.0 - 12.0 * 10.0 * 0.125 - 8.0,
        "{vo}"
    );
    assert_eq!(sh.mask_voxels, 1000 - 64);
}

/// Ball of radius `r` voxels centred in a `n^3` mask.
fn ball(n: usize, r: f64) -> Mask {
    let c = (n as f64 - 1.0) / 2.0;
    Array3::from_shape_fn((n, n, n), |(k, j, i)| {
        let d2 = (k as f64 - c).powi(2) + (j as f64 - c).powi(2) + (i as f64 - c).powi(2);
        (d2 <= r * r) as u8
    })
}

/// Relative volume error and mean / max |radius - r| in voxels of the mesh of `ball(40, r)`.
fn sphere_errors(opts: &MeshOptions, r: f64) -> (f64, f64, MeshStats) {
    let sp = [2.5, 0.6, 0.9];
    let g = axial([40, 40, 40], sp);
    let (mesh, stats) = build_mesh(&ball(40, r), &g, opts).unwrap();
    let want = 4.0 / 3.0 * std::f64::consts::PI * r.powi(3) * sp[0] * sp[1] * sp[2];
    let centre = g.voxel_to_lps(19.5, 19.5, 19.5);
    let mut err = 0.0;
    for v in &mesh.vertices {
        // Back to index units: x = i * si, y = j * sj, z = k * sk.
        let d = [
            (v[2] as f64 - centre[2]) / sp[0],
            (v[1] as f64 - centre[1]) / sp[1],
            (v[0] as f64 - centre[0]) / sp[2],
        ];
        err += ((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() - r).abs();
    }
    (
        (stats.volume_ml * 1000.0 - want) / want,
        err / mesh.vertices.len() as f64,
        stats,
    )
}

#[test]
fn anisotropic_sphere_volume_and_radius_without_and_with_smoothing() {
    let r = 12.0;
    let (dv, dr, s) = sphere_errors(&exact(), r);
    eprintln!(
        "raw: volume {dv:+.4}, radius {dr:.4} voxel, {} triangles",
        s.triangles
    );
    assert!(dv.abs() < 0.03, "raw volume error {dv}");
    assert!(dr < 0.5, "raw mean radius error {dr}");
    assert!(s.watertight && s.shells == 1 && s.volume_ml > 0.0);
    assert_eq!(s.smoothing, "off");

    let opts = MeshOptions {
        max_triangles: None,
        ..MeshOptions::default()
    };
    let (dv_s, dr_s, s) = sphere_errors(&opts, r);
    eprintln!(
        "smoothed: volume {dv_s:+.4}, radius {dr_s:.4} voxel; {}",
        s.smoothing
    );
    assert!(dv_s.abs() < 0.03, "smoothed volume error {dv_s}");
    assert!(dr_s < 0.25, "smoothed mean radius error {dr_s}");
    assert!(
        dr_s < dr,
        "smoothing should reduce the staircase: {dr_s} vs {dr}"
    );
    assert!(s.watertight && s.shells == 1);
    assert!(s.smoothing.starts_with("windowed-sinc"), "{}", s.smoothing);
}

#[test]
fn decimation_meets_the_budget_and_stays_watertight() {
    let opts = MeshOptions {
        max_triangles: Some(2000),
        ..MeshOptions::default()
    };
    let (dv, dr, s) = sphere_errors(&opts, 12.0);
    eprintln!(
        "decimated: volume {dv:+.4}, radius {dr:.4} voxel; {}",
        s.decimation
    );
    assert_eq!(s.triangles_surface, 5372);
    assert!(s.triangles <= 2000 && s.triangles > 1500, "{}", s.triangles);
    assert!(s.watertight && s.shells == 1, "{}", s.decimation);
    assert!(
        s.decimation.contains("re-checked watertight"),
        "{}",
        s.decimation
    );
    assert!(dv.abs() < 0.03 && dr < 0.3, "{dv} {dr}");
}

#[test]
fn reversed_slice_order_still_gives_outward_normals() {
    // IPP listed against the normal (not how series.rs sorts, but a valid right-handed map).
    let m = mask_with([4, 4, 4], &[[1, 1, 1], [1, 1, 2], [2, 2, 2]]);
    let mut g = axial([4, 4, 4], [1.0, 1.0, 1.0]);
    let (_, fwd) = build_mesh(&m, &g, &exact()).unwrap();
    g.ipp.reverse();
    assert!(!tetra::needs_flip(&g).unwrap());
    let (_, rev) = build_mesh(&m, &g, &exact()).unwrap();
    assert!(fwd.volume_ml > 0.0 && rev.volume_ml > 0.0);
    assert!((fwd.volume_ml - rev.volume_ml).abs() < 1e-9);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let m = mask_with([3, 3, 3], &[[1, 1, 1]]);
    let g = axial([3, 3, 4], [1.0, 1.0, 1.0]);
    assert!(matches!(
        build_mesh(&m, &g, &exact()),
        Err(MeshError::ShapeMismatch { .. })
    ));
    let g = axial([3, 3, 3], [1.0, 1.0, 1.0]);
    let empty = Mask::zeros((3, 3, 3));
    assert!(matches!(
        build_mesh(&empty, &g, &exact()),
        Err(MeshError::EmptyMask)
    ));
    let mut dup = g.clone();
    dup.ipp[2] = dup.ipp[1];
    assert!(matches!(
        build_mesh(&m, &dup, &exact()),
        Err(MeshError::Geometry { .. })
    ));
    let mut zero = g.clone();
    zero.pixel_spacing = [0.0, 1.0];
    assert!(matches!(
        build_mesh(&m, &zero, &exact()),
        Err(MeshError::Geometry { .. })
    ));
    let mut nan = g;
    nan.iop[0] = f64::NAN;
    assert!(matches!(
        build_mesh(&m, &nan, &exact()),
        Err(MeshError::Geometry { .. })
    ));
}

#[test]
fn hard_budget_on_a_one_voxel_shell_never_breaks_the_mesh() {
    // A hollow ball with a one-voxel wall: collapsing across the wall makes the inner and outer
    // surfaces touch (non-manifold edges), which the retries must catch and lock away.
    let shell = &ball(40, 15.0) - &ball(40, 14.0);
    let g = axial([40, 40, 40], [2.5, 0.6, 0.9]);
    let opts = MeshOptions {
        max_triangles: Some(1000),
        ..MeshOptions::default()
    };
    let (mesh, s) = build_mesh(&shell, &g, &opts).unwrap();
    assert_eq!(s.triangles_surface, 16912);
    assert!(s.decimation.contains("retry 1:"), "{}", s.decimation);
    assert!(
        s.decimation.contains("re-checked watertight"),
        "{}",
        s.decimation
    );
    // Decimation keeps the surface's topology: as many shells as the undecimated surface.
    let (_, raw) = build_mesh(&shell, &g, &exact()).unwrap();
    let t = topology(&mesh);
    assert!(
        t.is_watertight() && t.shells == raw.shells,
        "{t:?} vs {}",
        raw.shells
    );
}
