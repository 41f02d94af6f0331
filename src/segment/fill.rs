//! Marrow fill: bone-enclosed regions whose mean grey value is bone-like become bone.
//!
//! A 2-D patch classifier sees 33 x 33 working pixels (16 mm at 0.488 mm). Where an axial slice
//! cuts the vault tangentially, or through the body of the mandible, the diploe or cancellous bone
//! is a broad region of 150-650 HU whose centre lies farther than half a patch from any cortex;
//! the network cannot tell it from head-holder plastic or a contrast-filled vessel and calls it
//! background. Such a region is still enclosed by the cortex the network did find. This step fills,
//! in each axial, coronal and sagittal plane of the mask, every hole (background not 4-connected to
//! the plane's border) whose mean grey value lies within a bone-like gate, and takes the union of
//! the three orientations' fills.
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
    /// Voxels that became bone (each counted once).
    pub voxels_added: u64,
}

/// Fills the bone-enclosed holes of `mask` (`[k, j, i]`, 1 = bone) whose mean grey value in `grey`
/// (same shape, the scan's own grey values) lies within `gate`, plane by plane in the three
/// orientations; the fills of all three are computed from the unfilled mask and united.
///
/// # Panics
/// Never for matching shapes; `grey` of another shape is a caller bug and panics.
pub fn fill_marrow(mask: &mut Mask, grey: ArrayView3<f32>, gate: MarrowGate) -> FillStats {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let mut stats = FillStats::default();
    let mut add: Vec<[usize; 3]> = Vec::new();
    for axis in 0..3 {
        let planes: Vec<(Vec<(usize, usize)>, usize, usize)> = (0..mask.len_of(Axis(axis)))
            .into_par_iter()
            .map(|p| {
                plane_holes(
                    mask.index_axis(Axis(axis), p),
                    grey.index_axis(Axis(axis), p),
                    gate,
                )
            })
            .collect();
        for (p, (pixels, filled, left)) in planes.into_iter().enumerate() {
            stats.holes_filled += filled;
            stats.holes_left += left;
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

/// The pixels of the holes of one plane that pass `gate`, with the number of holes that passed
/// and that did not. A hole is a 4-connected region of background not 4-connected to the border.
fn plane_holes(
    mask: ArrayView2<u8>,
    grey: ArrayView2<f32>,
    gate: MarrowGate,
) -> (Vec<(usize, usize)>, usize, usize) {
    let (rows, cols) = mask.dim();
    if rows < 3 || cols < 3 || !mask.iter().any(|&v| v != 0) {
        return (Vec::new(), 0, 0);
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
    let flat: Vec<f32> = grey.iter().copied().collect();
    let (mut out, mut filled, mut left) = (Vec::new(), 0, 0);
    let mut hole: Vec<usize> = Vec::new();
    for start in 0..state.len() {
        if state[start] != 0 {
            continue;
        }
        hole.clear();
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
        if mean >= f64::from(gate.lo) && mean <= f64::from(gate.hi) {
            filled += 1;
            out.extend(hole.iter().map(|&x| (x / cols, x % cols)));
        } else {
            left += 1;
        }
    }
    (out, filled, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

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
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu());
        assert_eq!(s.voxels_added, 36);
        assert_eq!(s.holes_filled, 1);
        assert_eq!(m.iter().filter(|&&v| v == 1).count(), 64);
        for inside in [35.0, 6000.0] {
            let (mut m, g) = ring(inside);
            let s = fill_marrow(&mut m, g.view(), MarrowGate::hu());
            assert_eq!((s.voxels_added, s.holes_filled, s.holes_left), (0, 0, 1));
        }
    }

    #[test]
    fn a_ring_open_to_the_border_is_a_defect_and_stays_open() {
        let (mut m, g) = ring(300.0);
        m[[0, 2, 5]] = 0; // a one-pixel gap in the cortex
        let s = fill_marrow(&mut m, g.view(), MarrowGate::hu());
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
        assert_eq!(fill_marrow(&mut m, grey.view(), g).voxels_added, 36);
        assert!(MarrowGate::from_anchors(40.0, 40.0).is_none());
        assert!(MarrowGate::from_anchors(f32::NAN, 40.0).is_none());
    }
}
