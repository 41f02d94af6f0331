//! Marrow fill: bone-enclosed regions whose mean grey value is bone-like become bone.
//!
//! A 2-D patch classifier sees 33 x 33 working pixels (16 mm at 0.488 mm). Where an axial slice
//! cuts the vault tangentially, or through the body of the mandible, the diploe or cancellous bone
//! is a broad region of 150-650 HU whose centre lies farther than half a patch from any cortex;
//! the network cannot tell it from head-holder plastic or a contrast-filled vessel and calls it
//! background. Such a region is still enclosed by the cortex the network did find. This step fills,
//! in each axial, coronal and sagittal plane of the mask, every hole (background not 4-connected to
//! the plane's border) whose mean grey value lies within a bone-like gate and which is thin: no
//! disc of more than [`MAX_HOLE_RADIUS_MM`] fits in it. It takes the union of the three
//! orientations' fills. Marrow is thin in at least one of the three planes (the vault's diploe,
//! broad in a tangential axial cut, is a band a few mm thick in the coronal and sagittal planes
//! through it); the cranial cavity is not, and on a cone-beam-like scan its cupping can lift the
//! brain's mean above the gate's lower end.
//!
//! It runs only on series of sub-millimetre voxels ([`MAX_VOXEL_MM`]). What it never fills: brain, CSF, sinuses, orbits and craniotomy defects (their contents are soft
//! tissue, fluid or air, below the gate), metal (above it), and anything open to the outside of a
//! plane. Its known limit: a contrast-filled vessel in a bony canal (e.g. the carotid canal, 200-400
//! HU enhanced) passes the gate and becomes bone.

use ndarray::{ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

use super::Mask;

/// Lower end of the gate in HU on calibrated CT: above unenhanced soft tissue, blood and
/// haemorrhage (at most about 90 HU), below the least dense diploe of the phantom model
/// (250 HU x the 0.6 density factor of an osteoporotic skull; `phantom::anatomy`).
pub const GATE_LO_HU: f32 = 150.0;
/// Upper end of the gate in HU on calibrated CT: above cortical bone (1300-1900 HU), below
/// titanium plates and dental metal (5000 HU and more).
pub const GATE_HI_HU: f32 = 2500.0;

/// Largest voxel edge (mm; pixel spacing and the largest gap between slices) of a series the fill
/// runs on. Across coarser voxels, partial volume lifts the brain just inside a tangentially cut
/// table above the gate. Measured with `osteon-cnn-cpu-3` (session 9), DSC without -> with the
/// fill on exact phantom labels: 0.34 x 0.6 mm sharp kernel +0.072 and +0.042 (two heads: missed
/// low-density diploe and mandible marrow), 0.488 x 0.625 mm -0.0003, 0.57 x 1.0 mm -0.003,
/// 0.9 x 1.0 mm -0.015, 0.488 x 1.25 mm -0.003, 5 mm slices -0.031 (the vertex brain filled).
pub const MAX_VOXEL_MM: f64 = 0.7;

/// Largest inscribed radius (mm) of a hole that is filled: the largest distance from a pixel of
/// the hole to the nearest pixel outside it, in the plane, with the plane's pixel spacings. The
/// marrow spaces of the head and upper neck are thinner: the vault's diploe is at most about 10 mm
/// thick, the mandible's and the C2 body's cancellous bone at most about 16 mm across.
/// Measured with `osteon-cnn-cpu-3` (session 16) on raw CNN masks, fill with all holes -> fill
/// with holes of at most this radius, DSC on exact labels: the independent cone-beam phantom
/// `cbct-s21` 0.720 -> 0.763 (535 thousand voxels added, 510 thousand of them not bone, ->
/// 48 thousand, 38 thousand not bone; the raw mask 0.765); the sharp-kernel phantom
/// `siemens-definition-h70h-s1` 0.9339 -> 0.9339 (every voxel the fill adds there is in a hole of
/// radius 8 mm or less; 6 mm would lose 0.001, the raw mask 0.861). After the whole
/// post-processing, on the nine independent phantoms of voxels <= 0.7 mm
/// (`manifests/independent-submm.toml`), every DSC rose: cone-beam 0.864 / 0.877 / 0.883 ->
/// 0.928 / 0.912 / 0.955, sharp and bone kernels by 0.0002-0.0017 (models/MODEL-cpu-3.md).
pub const MAX_HOLE_RADIUS_MM: f64 = 10.0;

/// `true` when a series of this pixel spacing and largest slice gap (mm) is fine enough for the
/// fill ([`MAX_VOXEL_MM`], with 1 % tolerance for rounded spacings).
pub fn applies_to(pixel_spacing: [f64; 2], max_slice_gap: f64) -> bool {
    let limit = MAX_VOXEL_MM * 1.01 + 1e-6;
    pixel_spacing
        .iter()
        .chain(std::iter::once(&max_slice_gap))
        .all(|&s| s.is_finite() && s > 0.0 && s <= limit)
}

/// The gate in the scan's own grey values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarrowGate {
    /// Smallest mean grey value of a hole that is filled.
    pub lo: f32,
    /// Largest mean grey value of a hole that is filled.
    pub hi: f32,
}

impl MarrowGate {
    /// The gate on calibrated CT: [`GATE_LO_HU`]..=[`GATE_HI_HU`].
    pub fn hu() -> MarrowGate {
        MarrowGate {
            lo: GATE_LO_HU,
            hi: GATE_HI_HU,
        }
    }

    /// The gate for a scan whose air and soft-tissue modes are `air` and `tissue` (the
    /// normaliser's anchors, in the scan's grey values): the HU gate mapped by the linear map that
    /// sends -1000 HU to `air` and 40 HU to `tissue`, so a cone-beam-like scale and shift moves the
    /// gate with the grey values. `None` when `tissue <= air` (no usable anchors).
    pub fn from_anchors(air: f32, tissue: f32) -> Option<MarrowGate> {
        let per_hu = (tissue - air) / 1040.0;
        if !(per_hu.is_finite() && per_hu > 0.0) {
            return None;
        }
        let map = |hu: f32| tissue + (hu - 40.0) * per_hu;
        Some(MarrowGate {
            lo: map(GATE_LO_HU),
            hi: map(GATE_HI_HU),
        })
    }
}

/// What [`fill_marrow`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FillStats {
    /// Holes (summed over the three orientations) whose mean passed the gate.
    pub holes_filled: usize,
    /// Holes whose mean did not.
    pub holes_left: usize,
    /// Holes whose mean passed the gate but which were too thick ([`MAX_HOLE_RADIUS_MM`]) and
    /// were left (also counted in `holes_left`).
    pub holes_too_thick: usize,
    /// Voxels that became bone (each counted once).
    pub voxels_added: u64,
}

/// Fills the bone-enclosed holes of `mask` (`[k, j, i]`, 1 = bone) whose mean grey value in `grey`
/// (same shape, the scan's own grey values) lies within `gate` and whose inscribed radius is at
/// most [`MAX_HOLE_RADIUS_MM`] (with `spacing`, `[k, j, i]` mm: slice spacing, row spacing,
/// column spacing), plane by plane in the three orientations; the fills of all three are computed
/// from the unfilled mask and united.
///
/// # Panics
/// Never for matching shapes; `grey` of another shape is a caller bug and panics.
pub fn fill_marrow(
    mask: &mut Mask,
    grey: ArrayView3<f32>,
    gate: MarrowGate,
    spacing: [f64; 3],
) -> FillStats {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let mut stats = FillStats::default();
    let mut add: Vec<[usize; 3]> = Vec::new();
    for axis in 0..3 {
        // The plane's pixel spacings (rows, columns) in mm.
        let plane_spacing = match axis {
            0 => [spacing[1], spacing[2]],
            1 => [spacing[0], spacing[2]],
            _ => [spacing[0], spacing[1]],
        };
        let planes: Vec<PlaneFill> = (0..mask.len_of(Axis(axis)))
            .into_par_iter()
            .map(|p| {
                plane_holes(
                    mask.index_axis(Axis(axis), p),
                    grey.index_axis(Axis(axis), p),
                    gate,
                    plane_spacing,
                )
            })
            .collect();
        for (p, plane) in planes.into_iter().enumerate() {
            let PlaneFill {
                pixels,
                filled,
                left,
                too_thick,
            } = plane;
            stats.holes_filled += filled;
            stats.holes_left += left;
            stats.holes_too_thick += too_thick;
            add.extend(pixels.into_iter().map(|(u, v)| match axis {
                0 => [p, u, v],
                1 => [u, p, v],
                _ => [u, v, p],
            }));
        }
    }
    for [k, j, i] in add {
        let m = &mut mask[[k, j, i]];
        if *m == 0 {
            *m = 1;
            stats.voxels_added += 1;
        }
    }
    stats
}

/// What the fill does in one plane.
#[derive(Default)]
struct PlaneFill {
    /// The pixels (row, column) of the holes that are filled.
    pixels: Vec<(usize, usize)>,
    /// Holes filled.
    filled: usize,
    /// Holes left (outside the gate or too thick).
    left: usize,
    /// Holes within the gate but too thick.
    too_thick: usize,
}

/// The holes of one plane that pass `gate` and are at most [`MAX_HOLE_RADIUS_MM`] thick, with
/// `spacing` the plane's (row, column) pixel spacing in mm. A hole is a 4-connected region of
/// background not 4-connected to the border.
fn plane_holes(
    mask: ArrayView2<u8>,
    grey: ArrayView2<f32>,
    gate: MarrowGate,
    spacing: [f64; 2],
) -> PlaneFill {
    let (rows, cols) = mask.dim();
    if rows < 3 || cols < 3 || !mask.iter().any(|&v| v != 0) {
        return PlaneFill::default();
    }
    // 0 = background not yet reached, 1 = bone, 2 = background reached from the border or seen.
    let mut state: Vec<u8> = mask.iter().map(|&v| u8::from(v != 0)).collect();
    let idx = |u: usize, v: usize| u * cols + v;
    let mut stack: Vec<usize> = Vec::new();
    let neighbours = |x: usize, out: &mut [usize; 4]| -> usize {
        let (u, v) = (x / cols, x % cols);
        let mut n = 0;
        if u > 0 {
            out[n] = x - cols;
            n += 1;
        }
        if u + 1 < rows {
            out[n] = x + cols;
            n += 1;
        }
        if v > 0 {
            out[n] = x - 1;
            n += 1;
        }
        if v + 1 < cols {
            out[n] = x + 1;
            n += 1;
        }
        n
    };
    let border = (0..cols)
        .flat_map(|v| [idx(0, v), idx(rows - 1, v)])
        .chain((0..rows).flat_map(|u| [idx(u, 0), idx(u, cols - 1)]));
    for x in border {
        if state[x] == 0 {
            state[x] = 2;
            stack.push(x);
        }
    }
    let mut nb = [0usize; 4];
    while let Some(x) = stack.pop() {
        let n = neighbours(x, &mut nb);
        for &y in &nb[..n] {
            if state[y] == 0 {
                state[y] = 2;
                stack.push(y);
            }
        }
    }
    // Every hole, and whether its mean passes the gate.
    let flat: Vec<f32> = grey.iter().copied().collect();
    let mut holes: Vec<(Vec<usize>, bool)> = Vec::new();
    for start in 0..state.len() {
        if state[start] != 0 {
            continue;
        }
        let mut hole = Vec::new();
        state[start] = 2;
        stack.push(start);
        let mut sum = 0f64;
        while let Some(x) = stack.pop() {
            hole.push(x);
            sum += f64::from(flat[x]);
            let n = neighbours(x, &mut nb);
            for &y in &nb[..n] {
                if state[y] == 0 {
                    state[y] = 2;
                    stack.push(y);
                }
            }
        }
        let mean = sum / hole.len() as f64;
        let passes = mean >= f64::from(gate.lo) && mean <= f64::from(gate.hi);
        holes.push((hole, passes));
    }
    let mut out = PlaneFill::default();
    if !holes.iter().any(|(_, passes)| *passes) {
        out.left = holes.len();
        return out;
    }
    // Squared distance (mm^2) of each pixel to the nearest pixel outside every hole.
    let mut in_hole = vec![false; rows * cols];
    for (hole, _) in &holes {
        for &x in hole {
            in_hole[x] = true;
        }
    }
    let d2 = squared_distance_to_outside(&in_hole, rows, cols, spacing);
    let r2_max = MAX_HOLE_RADIUS_MM * MAX_HOLE_RADIUS_MM * (1.0 + 1e-9);
    for (hole, passes) in holes {
        if !passes {
            out.left += 1;
        } else if hole.iter().any(|&x| d2[x] > r2_max) {
            out.left += 1;
            out.too_thick += 1;
        } else {
            out.filled += 1;
            out.pixels
                .extend(hole.iter().map(|&x| (x / cols, x % cols)));
        }
    }
    out
}

/// Exact squared Euclidean distance (mm^2) of every pixel of a `rows` x `cols` plane (row-major)
/// to the nearest pixel centre where `inside` is `false`, with `spacing` the (row, column) pixel
/// spacing in mm; 0 outside. Separable lower envelope of parabolas (Felzenszwalb & Huttenlocher,
/// "Distance transforms of sampled functions", Theory of Computing 8, 2012). A plane that is
/// `inside` everywhere gets infinite distances.
fn squared_distance_to_outside(
    inside: &[bool],
    rows: usize,
    cols: usize,
    spacing: [f64; 2],
) -> Vec<f64> {
    let mut d2: Vec<f64> = inside
        .iter()
        .map(|&h| if h { f64::INFINITY } else { 0.0 })
        .collect();
    let mut line = Vec::new();
    let mut out = Vec::new();
    for u in 0..rows {
        line.clear();
        line.extend_from_slice(&d2[u * cols..(u + 1) * cols]);
        envelope_1d(&line, spacing[1], &mut out);
        d2[u * cols..(u + 1) * cols].copy_from_slice(&out);
    }
    for v in 0..cols {
        line.clear();
        line.extend((0..rows).map(|u| d2[u * cols + v]));
        envelope_1d(&line, spacing[0], &mut out);
        for (u, &d) in out.iter().enumerate() {
            d2[u * cols + v] = d;
        }
    }
    d2
}

/// One pass of the distance transform: `out[q] = min_p (q - p)^2 step^2 + f[p]` over the finite
/// `f[p]` (infinite everywhere when none is finite).
fn envelope_1d(f: &[f64], step: f64, out: &mut Vec<f64>) {
    out.clear();
    // Parabola vertices (positions in mm, heights) of the lower envelope, and where each begins.
    let mut vx: Vec<f64> = Vec::with_capacity(f.len());
    let mut vy: Vec<f64> = Vec::with_capacity(f.len());
    let mut from: Vec<f64> = Vec::with_capacity(f.len());
    for (p, &fp) in f.iter().enumerate() {
        if !fp.is_finite() {
            continue;
        }
        let x = p as f64 * step;
        loop {
            match (vx.last(), vy.last()) {
                (Some(&lx), Some(&ly)) => {
                    let s = ((fp + x * x) - (ly + lx * lx)) / (2.0 * (x - lx));
                    if s <= *from.last().unwrap_or(&f64::NEG_INFINITY) {
                        vx.pop();
                        vy.pop();
                        from.pop();
                    } else {
                        vx.push(x);
                        vy.push(fp);
                        from.push(s);
                        break;
                    }
                }
                _ => {
                    vx.push(x);
                    vy.push(fp);
                    from.push(f64::NEG_INFINITY);
                    break;
                }
            }
        }
    }
    if vx.is_empty() {
        out.resize(f.len(), f64::INFINITY);
        return;
    }
    let mut k = 0;
    for q in 0..f.len() {
        let x = q as f64 * step;
        while k + 1 < vx.len() && from[k + 1] <= x {
            k += 1;
        }
        let dx = x - vx[k];
        out.push(dx * dx + vy[k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// 1 mm voxels.
    const MM: [f64; 3] = [1.0; 3];

    /// A 1-slice-thick ring of bone around a square of `inside` HU, in a 1 x 12 x 12 volume of
    /// 40 HU; the ring is closed in the axial plane only.
    fn ring(inside: f32) -> (Mask, Array3<f32>) {
        let mut m = Mask::zeros((1, 12, 12));
        let mut g = Array3::from_elem((1, 12, 12), 40f32);
        for j in 2..10 {
            for i in 2..10 {
                let edge = j == 2 || j == 9 || i == 2 || i == 9;
                if edge {
                    m[[0, j, i]] = 1;
                    g[[0, j, i]] = 1500.0;
                } else {
                    g[[0, j, i]] = inside;
                }
            }
        }
        (m, g)
    }

    #[test]
    fn a_diploe_like_hole_is_filled_and_brain_or_metal_is_not() {
        let (mut m, g) = ring(300.0);
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM);
        assert_eq!(s.voxels_added, 36);
        assert_eq!(s.holes_filled, 1);
        assert_eq!(m.iter().filter(|&&v| v == 1).count(), 64);
        for inside in [35.0, 6000.0] {
            let (mut m, g) = ring(inside);
            let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM);
            assert_eq!((s.voxels_added, s.holes_filled, s.holes_left), (0, 0, 1));
        }
    }

    /// A 1 x n x n volume of 40 HU with a one-pixel square ring of bone at 2..n-2 around 300 HU.
    fn square(n: usize) -> (Mask, Array3<f32>) {
        let mut m = Mask::zeros((1, n, n));
        let mut g = Array3::from_elem((1, n, n), 40f32);
        for j in 2..n - 2 {
            for i in 2..n - 2 {
                let edge = j == 2 || j == n - 3 || i == 2 || i == n - 3;
                m[[0, j, i]] = u8::from(edge);
                g[[0, j, i]] = if edge { 1500.0 } else { 300.0 };
            }
        }
        (m, g)
    }

    #[test]
    fn a_thick_hole_is_a_cavity_and_stays_open_however_bone_like_its_mean() {
        // 30 x 30 interior pixels: at 1 mm an inscribed radius of 15 mm (left), at 0.5 mm one of
        // 7.5 mm (filled).
        let (mut m, g) = square(36);
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM);
        assert_eq!(
            (
                s.holes_filled,
                s.holes_left,
                s.holes_too_thick,
                s.voxels_added
            ),
            (0, 1, 1, 0)
        );
        let (mut m, g) = square(36);
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), [0.5; 3]);
        assert_eq!(
            (s.holes_filled, s.holes_too_thick, s.voxels_added),
            (1, 0, 900)
        );
        // Anisotropic: 0.3 mm rows but 1 mm columns: still 15 mm across along the columns, yet
        // only 4.5 mm along the rows, so the largest inscribed radius is 4.5 mm: filled.
        let (mut m, g) = square(36);
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), [1.0, 0.3, 1.0]);
        assert_eq!(s.voxels_added, 900);
        // A 22 x 22 interior at 1 mm: its central pixels lie 11 mm from the ring, just over the
        // limit; a 20 x 20 interior's 10 mm: filled.
        let (mut m, g) = square(28);
        assert_eq!(
            fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM).holes_too_thick,
            1
        );
        let (mut m, g) = square(26);
        assert_eq!(
            fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM).voxels_added,
            400
        );
    }

    #[test]
    fn the_distance_transform_is_exact_on_anisotropic_pixels() {
        // A pseudo-random plane against brute force.
        let (rows, cols, spacing) = (23, 31, [0.6, 0.45]);
        let mut state = 12345u64;
        let inside: Vec<bool> = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % 10 != 0
            })
            .collect();
        let d2 = squared_distance_to_outside(&inside, rows, cols, spacing);
        for u in 0..rows {
            for v in 0..cols {
                let mut best = f64::INFINITY;
                for a in 0..rows {
                    for b in 0..cols {
                        if !inside[a * cols + b] {
                            let du = (u as f64 - a as f64) * spacing[0];
                            let dv = (v as f64 - b as f64) * spacing[1];
                            best = best.min(du * du + dv * dv);
                        }
                    }
                }
                assert!((d2[u * cols + v] - best).abs() < 1e-9, "({u}, {v})");
            }
        }
        assert!(squared_distance_to_outside(&[true; 6], 2, 3, [1.0, 1.0])
            .iter()
            .all(|d| d.is_infinite()));
    }

    #[test]
    fn a_ring_open_to_the_border_is_a_defect_and_stays_open() {
        let (mut m, g) = ring(300.0);
        m[[0, 2, 5]] = 0; // a one-pixel gap in the cortex
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu(), MM);
        assert_eq!(s.voxels_added, 0);
        assert_eq!(m.iter().filter(|&&v| v == 1).count(), 27);
    }

    #[test]
    fn only_thin_slice_series_are_filled() {
        assert!(applies_to([0.34, 0.34], 0.6));
        assert!(applies_to([0.488, 0.488], 0.625));
        assert!(applies_to([0.5, 0.5], 0.707));
        assert!(applies_to([0.5, 0.5], 0.7070000000000051));
        assert!(!applies_to([0.45, 0.45], 1.0));
        assert!(!applies_to([0.902, 0.902], 0.6));
        assert!(!applies_to([0.5, 0.5], 0.71));
        assert!(!applies_to([0.5, 0.5], f64::NAN));
    }

    #[test]
    fn the_gate_follows_a_scale_and_shift_of_the_grey_values() {
        let g = MarrowGate::from_anchors(-1000.0, 40.0).unwrap();
        assert!((g.lo - 150.0).abs() < 1e-3 && (g.hi - 2500.0).abs() < 1e-3);
        // 0.75 x HU + 200: air at -550, tissue at 230; 300 HU of diploe reads 425.
        let g = MarrowGate::from_anchors(-550.0, 230.0).unwrap();
        assert!((g.lo - (0.75 * 150.0 + 200.0)).abs() < 1e-3);
        let (mut m, mut grey) = ring(300.0);
        grey.mapv_inplace(|v| 0.75 * v + 200.0);
        assert_eq!(fill_marrow(&mut m, grey.view(), g, MM).voxels_added, 36);
        assert!(MarrowGate::from_anchors(40.0, 40.0).is_none());
        assert!(MarrowGate::from_anchors(f32::NAN, 40.0).is_none());
    }
}
