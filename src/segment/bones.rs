//! Which connected pieces of a bone mask are kept: the skull (the largest piece) and every separate
//! bone inside the body, not specks and not objects in air.
//!
//! Keeping only the largest 26-connected component (the threshold baseline's and the paper's STL
//! step) drops a whole mandible whenever its condyles and teeth do not touch the skull in the mask:
//! on the sharp-kernel hold-out phantom that was 0.5 L of label voxels and DSC 0.827 instead of
//! 0.870 (session 9). Keeping every piece of some size instead brings back the patient table and
//! head holder wherever the network calls part of them bone; those lie in air or foam, while a
//! mandible, a vertebra or the hyoid is wrapped in soft tissue. A separate piece is therefore kept
//! when it is at least [`MIN_SEPARATE_BONE_ML`] and less than [`MAX_AIR_FRACTION`] of its face
//! neighbours are air.

use ndarray::ArrayView3;

use super::components::{label, Connectivity};
use super::Mask;

/// Smallest separate bone (mL) kept besides the largest piece. Separate bones of a head CT (a
/// detached mandible, cervical vertebrae, the hyoid) are several mL (the exact phantom labels'
/// separate parts of 1 mL and more were 3.7-7.1 mL besides the skull); a network's specks in soft
/// tissue are far smaller.
pub const MIN_SEPARATE_BONE_ML: f64 = 1.0;

/// Largest fraction of a separate piece's face neighbours that may be air (below half-way between
/// the air and soft-tissue modes) for it to count as a bone inside the body. A mandible next to an
/// open mouth has some air around it; the table and a head holder are surrounded by air and foam.
pub const MAX_AIR_FRACTION: f64 = 0.5;

/// How far (mm) from a piece its surroundings are probed: beyond the blurred edge of a thin table
/// or holder shell (a scanner's edge spread is about 1 mm; the edge of a 1.5 mm carbon skin read
/// -370 to +90 HU at its face neighbours on the low-dose phantom, air at 3 mm).
pub const PROBE_MM: f64 = 3.0;

/// What [`keep_bones`] kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Pieces (26-connected components) found.
    pub found: usize,
    /// Pieces kept (the largest and the separate bones).
    pub kept: usize,
    /// Pieces of at least the minimum size dropped because they lie in air.
    pub in_air: usize,
    /// Voxels in the pieces dropped.
    pub dropped_voxels: u64,
}

/// The largest 26-connected piece of `mask` (`[k, j, i]`, 1 = bone) and every other piece of at
/// least `min_voxels` voxels whose surroundings [`PROBE_MM`] away (`spacing_mm` = `[slice, row,
/// column]` spacing in mm) are less than [`MAX_AIR_FRACTION`] below `air_level` in `grey` (same
/// shape, the scan's grey values; half-way between its air and soft-tissue modes). An empty mask
/// gives an empty mask.
///
/// # Panics
/// When `grey` and `mask` differ in shape (a caller bug).
pub fn keep_bones(
    mask: &Mask,
    grey: ArrayView3<f32>,
    air_level: f32,
    spacing_mm: [f64; 3],
    min_voxels: u64,
) -> (Mask, Kept) {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let comps = label(mask, Connectivity::TwentySix);
    let largest = comps.largest();
    let big = |l: u32| Some(l) != largest && comps.sizes[l as usize] >= min_voxels;
    let reach = spacing_mm.map(|s| {
        if s.is_finite() && s > 0.0 {
            (PROBE_MM / s).ceil().clamp(1.0, 64.0) as usize
        } else {
            1
        }
    });
    let air = comps.exterior_fraction_below(mask, grey, air_level, reach, big);
    let keep = |l: u32| Some(l) == largest || (big(l) && air[l as usize] < MAX_AIR_FRACTION);
    let n = comps.count() as u32;
    let kept = (0..n).filter(|&l| keep(l)).count();
    let in_air = (0..n).filter(|&l| big(l) && !keep(l)).count();
    let dropped_voxels = (0..n)
        .filter(|&l| !keep(l))
        .map(|l| comps.sizes[l as usize])
        .sum();
    (
        comps.mask_where(keep, mask),
        Kept {
            found: comps.count(),
            kept,
            in_air,
            dropped_voxels,
        },
    )
}

/// Voxels of [`MIN_SEPARATE_BONE_ML`] for voxels of `voxel_ml` mL (at least 1).
pub fn min_voxels(voxel_ml: f64) -> u64 {
    if voxel_ml.is_finite() && voxel_ml > 0.0 {
        (MIN_SEPARATE_BONE_ML / voxel_ml)
            .ceil()
            .clamp(1.0, u64::MAX as f64) as u64
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array3};

    /// Soft tissue (40 HU) in `[0..8, 0..12, 0..8]`, air (-1000 HU) beyond; a 27-voxel skull, a
    /// 12-voxel bone in the tissue, a 12-voxel slab in the air and a 1-voxel speck in the tissue.
    fn scene() -> (Mask, Array3<f32>) {
        let mut g = Array3::from_elem((8, 16, 12), -1000f32);
        g.slice_mut(s![.., 0..12, 0..8]).fill(40.0);
        let mut m = Mask::zeros((8, 16, 12));
        m.slice_mut(s![1..4, 1..4, 1..4]).fill(1);
        m.slice_mut(s![5..7, 6..9, 3..5]).fill(1);
        m.slice_mut(s![2..4, 13..16, 9..11]).fill(1);
        m[[6, 1, 6]] = 1;
        (m, g)
    }

    #[test]
    fn a_separate_bone_in_tissue_is_kept_and_specks_and_objects_in_air_are_not() {
        let (m, g) = scene();
        let (out, kept) = keep_bones(&m, g.view(), -480.0, [1.0; 3], 10);
        assert_eq!(
            kept,
            Kept {
                found: 4,
                kept: 2,
                in_air: 1,
                dropped_voxels: 13
            }
        );
        assert_eq!(out.iter().filter(|&&v| v == 1).count(), 39);
        assert_eq!((out[[5, 6, 3]], out[[2, 13, 9]], out[[6, 1, 6]]), (1, 0, 0));
    }

    #[test]
    fn the_largest_piece_is_kept_whatever_its_size_or_surroundings() {
        let (m, mut g) = scene();
        g.fill(-1000.0);
        let (out, kept) = keep_bones(&m, g.view(), -480.0, [1.0; 3], 1000);
        assert_eq!((kept.found, kept.kept, kept.in_air), (4, 1, 0));
        assert_eq!(out.iter().filter(|&&v| v == 1).count(), 27);
        let (out, kept) = keep_bones(
            &Mask::zeros((2, 2, 2)),
            Array3::zeros((2, 2, 2)).view(),
            0.0,
            [1.0; 3],
            1,
        );
        assert_eq!((kept.found, kept.kept), (0, 0));
        assert!(out.iter().all(|&v| v == 0));
    }

    #[test]
    fn one_ml_in_voxels() {
        assert_eq!(min_voxels(0.5 * 0.5 * 1.0 / 1000.0), 4000);
        assert_eq!(min_voxels(0.0), 1);
        assert_eq!(min_voxels(f64::NAN), 1);
        assert_eq!(min_voxels(5.0), 1);
    }
}
