//! Half-maximum grow: partial-volume bone next to the CNN's mask becomes bone.
//!
//! A voxel of the exact label is bone when at least half of it lies inside the bone surface, so on
//! a blurred edge its grey value is at least half-way between soft tissue and the bone it borders:
//! the half-maximum edge criterion of quantitative CT (Prevrhal, Engelke and Kalender 1999,
//! "Accuracy limits for the determination of cortical width and density", Phys Med Biol 44:751;
//! Hangartner 2007, J Musculoskelet Neuronal Interact 7:9). The 2-D network, calibrated mostly on
//! thin slices, calls such voxels soft tissue wherever the partial-volume band is wide: across a
//! thick slice an oblique vault surface blurs over up to one slice thickness in-plane (session 12:
//! on a 5 mm phantom, 92 of its 105 thousand missed voxels were 300-700 HU beside found bone).
//!
//! The step adds every voxel reachable from the mask through voxels whose grey value lies in
//! [`GrowGate`] (26-connected), at most [`GrowGate::reach`] steps from the mask. The gate is
//! half-way between the scan's soft-tissue anchor and the [`PEAK_PERCENTILE`] of the grey values the
//! network called bone (the scan's own bone, whatever its calibration or kernel), and below metal.
//! Soft tissue, blood, contrast-enhanced vessels (below 500 HU) and noise around them stay below it
//! on every scan measured; the patient table joins only pieces already in air, which
//! [`super::bones`] drops after this step.

use ndarray::ArrayView3;

use super::Mask;

/// Percentile (0..=1) of the grey values inside the network's mask taken as the scan's bone level
/// (the cortex; robust to the marrow and partial-volume voxels below it and to metal above).
pub const PEAK_PERCENTILE: f64 = 0.9;

/// Where between soft tissue (0) and the bone level (1) the gate lies: the half-maximum edge.
pub const HALF_MAX_FRACTION: f32 = 0.5;

/// Smallest reach (mm) of the grow from the mask, on sub-millimetre voxels; coarser series reach
/// as far as their largest voxel edge (see [`reach_mm`]).
pub const MIN_REACH_MM: f64 = 1.0;

/// The grey-value gate of the grow, in the scan's own grey values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GrowGate {
    /// The scan's bone level: [`PEAK_PERCENTILE`] of the mask's grey values at or below `hi`.
    pub peak: f32,
    /// Smallest grey value a voxel may have to be added (the half-maximum).
    pub lo: f32,
    /// Largest grey value a voxel may have to be added (the metal level).
    pub hi: f32,
    /// Steps (26-neighbour moves) from the mask a voxel may be added at, `>= 1`.
    pub reach: usize,
}

impl GrowGate {
    /// The gate for `mask` (`[k, j, i]`, 1 = bone) on grey values `grey` (same shape), soft tissue
    /// at `tissue` and metal above `metal` (the scan's units), reaching `reach` steps. `None` when
    /// the mask holds no voxel at or below `metal`, or its bone level is not above `tissue` (no
    /// contrast to take a half-maximum of).
    pub fn from_mask(
        mask: &Mask,
        grey: ArrayView3<f32>,
        tissue: f32,
        metal: f32,
        reach: usize,
    ) -> Option<GrowGate> {
        let mut values: Vec<f32> = mask
            .iter()
            .zip(grey.iter())
            .filter(|&(&m, &g)| m != 0 && g.is_finite() && g <= metal)
            .map(|(_, &g)| g)
            .collect();
        if values.is_empty() {
            return None;
        }
        let at = ((values.len() - 1) as f64 * PEAK_PERCENTILE).round() as usize;
        let peak = *values.select_nth_unstable_by(at, f32::total_cmp).1;
        (peak > tissue && tissue.is_finite()).then(|| GrowGate {
            peak,
            lo: tissue + HALF_MAX_FRACTION * (peak - tissue),
            hi: metal,
            reach: reach.max(1),
        })
    }
}

/// Reach of the grow (mm) on a series of this pixel spacing and largest slice gap (mm): the
/// largest voxel edge, at least [`MIN_REACH_MM`]. Across a slab of thickness `T`, a surface at 45
/// degrees to the slice blurs over `T` in-plane.
pub fn reach_mm(pixel_spacing: [f64; 2], max_slice_gap: f64) -> f64 {
    pixel_spacing
        .iter()
        .chain(std::iter::once(&max_slice_gap))
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(MIN_REACH_MM, f64::max)
}

/// Reach in steps: `reach_mm` over the finest in-plane pixel edge (mm), rounded up, 1 to 64.
pub fn reach_steps(reach_mm: f64, pixel_spacing: [f64; 2]) -> usize {
    let finest = pixel_spacing
        .iter()
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    if finest.is_finite() && reach_mm.is_finite() {
        (reach_mm / finest).ceil().clamp(1.0, 64.0) as usize
    } else {
        1
    }
}

/// Adds to `mask` (`[k, j, i]`, 1 = bone) every voxel whose grey value in `grey` (same shape) lies
/// in `gate.lo..=gate.hi` and that a 26-connected path of such voxels joins to the mask within
/// `gate.reach` steps. Returns the number of voxels added.
///
/// # Panics
/// When `grey` and `mask` differ in shape (a caller bug).
pub fn grow_half_max(mask: &mut Mask, grey: ArrayView3<f32>, gate: GrowGate) -> u64 {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let (nk, nj, ni) = mask.dim();
    let dims = [nk, nj, ni];
    let passes = |g: f32| g >= gate.lo && g <= gate.hi;
    // Breadth-first, one step per round, from every mask voxel with a passing neighbour outside.
    let mut front: Vec<[usize; 3]> = mask
        .indexed_iter()
        .filter(|&(_, &m)| m != 0)
        .map(|((k, j, i), _)| [k, j, i])
        .filter(|&v| neighbours(v, dims).any(|p| mask[p] == 0 && passes(grey[p])))
        .collect();
    let mut added = 0u64;
    for _ in 0..gate.reach {
        let mut next = Vec::new();
        for v in front {
            for p in neighbours(v, dims) {
                if mask[p] == 0 && passes(grey[p]) {
                    mask[p] = 1;
                    next.push(p);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        added += next.len() as u64;
        front = next;
    }
    added
}

/// The up to 26 neighbours of `v` inside a volume of `dims`.
fn neighbours(v: [usize; 3], dims: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    (0..27usize).filter(move |&n| n != 13).filter_map(move |n| {
        let off = [n / 9, (n / 3) % 3, n % 3];
        let mut p = [0usize; 3];
        for a in 0..3 {
            let c = (v[a] + off[a]).checked_sub(1)?;
            if c >= dims[a] {
                return None;
            }
            p[a] = c;
        }
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array3};

    /// A bone slab at 1000 HU (`i` 10..20) with a half-volume voxel column at 600 HU on each side
    /// (`i` 9 and 20), a 300 HU column beyond one of them (`i` 21: less than half bone), soft tissue
    /// (40 HU) elsewhere; the mask holds the slab's core only (`i` 11..19).
    fn slab() -> (Mask, Array3<f32>) {
        let mut grey = Array3::from_elem((4, 8, 32), 40.0f32);
        grey.slice_mut(s![.., .., 10..20]).fill(1000.0);
        grey.slice_mut(s![.., .., 9]).fill(600.0);
        grey.slice_mut(s![.., .., 20]).fill(600.0);
        grey.slice_mut(s![.., .., 21]).fill(300.0);
        let mut mask = Mask::zeros(grey.raw_dim());
        mask.slice_mut(s![.., .., 11..19]).fill(1);
        (mask, grey)
    }

    #[test]
    fn the_gate_is_half_way_between_tissue_and_the_masks_bone_level() {
        let (mask, grey) = slab();
        let gate = GrowGate::from_mask(&mask, grey.view(), 40.0, 2500.0, 3).unwrap();
        assert_eq!(
            (gate.peak, gate.lo, gate.hi, gate.reach),
            (1000.0, 520.0, 2500.0, 3)
        );
        // Without contrast there is no half-maximum.
        assert_eq!(
            GrowGate::from_mask(&mask, grey.view(), 1000.0, 2500.0, 3),
            None
        );
        assert_eq!(
            GrowGate::from_mask(&Mask::zeros((4, 8, 32)), grey.view(), 40.0, 2500.0, 3),
            None
        );
    }

    #[test]
    fn half_volume_edges_join_and_less_than_half_does_not() {
        let (mut mask, grey) = slab();
        let gate = GrowGate::from_mask(&mask, grey.view(), 40.0, 2500.0, 4).unwrap();
        let added = grow_half_max(&mut mask, grey.view(), gate);
        // i = 9, 10, 19, 20 join (1000 and 600 HU); i = 21 (300 HU) and tissue do not.
        assert_eq!(added, 4 * 4 * 8);
        for i in 0..32 {
            let want = u8::from((9..=20).contains(&i));
            assert!(
                mask.slice(s![.., .., i]).iter().all(|&m| m == want),
                "column {i}"
            );
        }
    }

    #[test]
    fn the_grow_stops_at_its_reach_and_at_metal() {
        let (mut mask, mut grey) = slab();
        grey.slice_mut(s![.., .., 9]).fill(6000.0);
        let gate = GrowGate::from_mask(&mask, grey.view(), 40.0, 2500.0, 1).unwrap();
        let added = grow_half_max(&mut mask, grey.view(), gate);
        // One step: i = 10 and 19; i = 20 is two steps away and i = 9 is metal.
        assert_eq!(added, 2 * 4 * 8);
        assert_eq!(mask[[0, 0, 20]], 0);
        assert_eq!(mask[[0, 0, 9]], 0);
    }

    #[test]
    fn the_reach_follows_the_largest_voxel_edge() {
        assert_eq!(reach_mm([0.488, 0.488], 0.625), 1.0);
        assert_eq!(reach_mm([0.488, 0.488], 5.0), 5.0);
        assert_eq!(reach_mm([0.9, 0.9], f64::NAN), 1.0);
        assert_eq!(reach_steps(5.0, [0.488, 0.488]), 11);
        assert_eq!(reach_steps(1.0, [0.488, 0.5]), 3);
        assert_eq!(reach_steps(f64::INFINITY, [0.5, 0.5]), 1);
    }
}
