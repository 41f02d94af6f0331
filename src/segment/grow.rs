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
//! [`GrowGate`] (26-connected), at most [`GrowGate::reach_mm`] (Euclidean, mm, on every axis) from
//! the mask voxel it grew from. The gate is half-way between the scan's soft-tissue anchor and the
//! [`PEAK_PERCENTILE`] of the grey values the network called bone (the scan's own bone, whatever
//! its calibration or kernel), and below metal. Soft tissue, blood, contrast-enhanced vessels
//! (below 500 HU) and noise around them stay below it on every scan measured; the patient table
//! joins only pieces already in air, which [`super::bones`] drops after this step.
//!
//! Guards (bad-input trial, session 12): no grow when the mask's bone level is less than
//! [`MIN_CONTRAST_HU`] above soft tissue (a scan without bone, or with wrong anchors, would put
//! the gate in soft tissue); the reach is at most [`MAX_REACH_MM`]; and a grow that would add more
//! than [`MAX_ADDED_FRACTION`] of the network's own mask (double it) is undone, as it is filling
//! something that is not an edge, and reported.

use ndarray::ArrayView3;

use super::Mask;

/// Percentile (0..=1) of the grey values inside the network's mask taken as the scan's bone level
/// (the cortex; robust to the marrow and partial-volume voxels below it and to metal above).
pub const PEAK_PERCENTILE: f64 = 0.9;

/// Where between soft tissue (0) and the bone level (1) the gate lies: the half-maximum edge.
pub const HALF_MAX_FRACTION: f32 = 0.5;

/// Smallest bone level above the soft-tissue anchor (HU, mapped through the scan's anchors) for
/// the grow to run: the gate is then at least 200 HU above soft tissue, above unenhanced blood,
/// brain and muscle with the noise of a low-dose scan. The phantoms' and real scans' bone levels
/// were 560-1620 HU above it (session 12).
pub const MIN_CONTRAST_HU: f32 = 400.0;

/// Smallest reach (mm) of the grow from the mask, on sub-millimetre voxels; coarser series reach
/// as far as their largest voxel edge (see [`reach_mm`]).
pub const MIN_REACH_MM: f64 = 1.0;

/// Largest reach (mm): the thickest routine slices (5 mm); also the surface-deviation bound of the
/// evaluation.
pub const MAX_REACH_MM: f64 = 5.0;

/// Largest number of voxels the grow may add, as a fraction of the mask it starts from: it may at
/// most double the mask. Beyond it the grow is undone. On the real Philips phantom's 5 mm series
/// the network found 117 thousand voxels and the grow adds 57 % more, whose threshold volume
/// is 2.5 times the network's (new-user trial, session 12); the bad-input series that flooded
/// soft tissue added 1.2-240 times the mask before the contrast rule and the reach in mm.
pub const MAX_ADDED_FRACTION: f64 = 1.0;

/// The grey-value gate of the grow, in the scan's own grey values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GrowGate {
    /// The scan's bone level: [`PEAK_PERCENTILE`] of the mask's grey values at or below `hi`.
    pub peak: f32,
    /// Smallest grey value a voxel may have to be added (the half-maximum).
    pub lo: f32,
    /// Largest grey value a voxel may have to be added (the metal level).
    pub hi: f32,
    /// Largest distance (mm) of an added voxel from the mask voxel it grew from.
    pub reach_mm: f64,
}

/// Why the grow did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrowSkip {
    /// The mask holds no voxel of finite grey value at or below the metal level.
    #[error("no bone below the metal level in the mask")]
    NoBone,
    /// The anchors give no grey-value scale (soft tissue not above air).
    #[error("no grey-value anchors")]
    NoAnchors,
    /// The mask's bone level is less than [`MIN_CONTRAST_HU`] above soft tissue.
    #[error("the mask's bone level is less than {MIN_CONTRAST_HU} HU above soft tissue")]
    LowContrast,
}

impl GrowGate {
    /// The gate for `mask` (`[k, j, i]`, 1 = bone) on grey values `grey` (same shape), with the
    /// scan's air and soft-tissue anchors `[air, tissue]` and metal above `metal` (the scan's
    /// units), reaching `reach_mm` (clamped to [`MIN_REACH_MM`]..=[`MAX_REACH_MM`]).
    ///
    /// # Errors
    /// [`GrowSkip`]: no bone in the mask, no usable anchors, or too little contrast.
    pub fn from_mask(
        mask: &Mask,
        grey: ArrayView3<f32>,
        [air, tissue]: [f32; 2],
        metal: f32,
        reach_mm: f64,
    ) -> Result<GrowGate, GrowSkip> {
        let per_hu = (tissue - air) / 1040.0;
        if !(per_hu.is_finite() && per_hu > 0.0) {
            return Err(GrowSkip::NoAnchors);
        }
        let mut values: Vec<f32> = mask
            .iter()
            .zip(grey.iter())
            .filter(|&(&m, &g)| m != 0 && g.is_finite() && g <= metal)
            .map(|(_, &g)| g)
            .collect();
        if values.is_empty() {
            return Err(GrowSkip::NoBone);
        }
        let at = ((values.len() - 1) as f64 * PEAK_PERCENTILE).round() as usize;
        let peak = *values.select_nth_unstable_by(at, f32::total_cmp).1;
        if !(peak - tissue >= MIN_CONTRAST_HU * per_hu) {
            return Err(GrowSkip::LowContrast);
        }
        let reach_mm = if reach_mm.is_finite() {
            reach_mm.clamp(MIN_REACH_MM, MAX_REACH_MM)
        } else {
            MIN_REACH_MM
        };
        Ok(GrowGate {
            peak,
            lo: tissue + HALF_MAX_FRACTION * (peak - tissue),
            hi: metal,
            reach_mm,
        })
    }
}

/// Reach of the grow (mm) on a series of this pixel spacing and largest slice gap (mm): the
/// largest voxel edge, at least [`MIN_REACH_MM`] and at most [`MAX_REACH_MM`]. Across a slab of
/// thickness `T`, a surface at 45 degrees to the slice blurs over `T` in-plane.
pub fn reach_mm(pixel_spacing: [f64; 2], max_slice_gap: f64) -> f64 {
    pixel_spacing
        .iter()
        .chain(std::iter::once(&max_slice_gap))
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(MIN_REACH_MM, f64::max)
        .min(MAX_REACH_MM)
}

/// What [`grow_half_max`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grown {
    /// This many voxels became bone.
    Added(u64),
    /// The grow had added this many voxels, more than [`MAX_ADDED_FRACTION`] of the mask it
    /// started from, when it stopped; the mask is as it was.
    Undone(u64),
}

/// Adds to `mask` (`[k, j, i]`, 1 = bone; voxel edges `spacing_mm` = `[slice, row, column]` mm)
/// every voxel whose grey value in `grey` (same shape) lies in `gate.lo..=gate.hi` and that a
/// 26-connected path of such voxels joins to a mask voxel at most `gate.reach_mm` away (Euclidean,
/// measured from the mask voxel the path starts at). When that would add more than
/// [`MAX_ADDED_FRACTION`] of the mask's voxels, nothing is added ([`Grown::Undone`]).
///
/// # Panics
/// When `grey` and `mask` differ in shape (a caller bug).
pub fn grow_half_max(
    mask: &mut Mask,
    grey: ArrayView3<f32>,
    gate: GrowGate,
    spacing_mm: [f64; 3],
) -> Grown {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let (nk, nj, ni) = mask.dim();
    let dims = [nk, nj, ni];
    let passes = |g: f32| g >= gate.lo && g <= gate.hi;
    let s = spacing_mm.map(|x| if x.is_finite() && x > 0.0 { x } else { 1.0 });
    let reach2 = gate.reach_mm * gate.reach_mm * (1.0 + 1e-9);
    let dist2 = |p: [usize; 3], o: [usize; 3]| {
        (0..3)
            .map(|a| ((p[a] as f64 - o[a] as f64) * s[a]).powi(2))
            .sum::<f64>()
    };
    let before = mask.iter().filter(|&&m| m != 0).count() as u64;
    // Breadth-first from every mask voxel with a passing neighbour outside; each voxel added keeps
    // the mask voxel its path started at, so the reach is a distance, not a number of steps.
    let mut front: Vec<([usize; 3], [usize; 3])> = mask
        .indexed_iter()
        .filter(|&(_, &m)| m != 0)
        .map(|((k, j, i), _)| [k, j, i])
        .filter(|&v| neighbours(v, dims).any(|p| mask[p] == 0 && passes(grey[p])))
        .map(|v| (v, v))
        .collect();
    let limit = (MAX_ADDED_FRACTION * before as f64) as usize;
    let mut added: Vec<[usize; 3]> = Vec::new();
    // The mask voxel each added voxel is nearest to along the paths found so far: a voxel first
    // reached along a detour is taken again when a nearer start reaches it (vector propagation).
    let mut origin_of: std::collections::HashMap<[usize; 3], [usize; 3]> =
        std::collections::HashMap::new();
    // Past the limit the grow is undone anyway: stop there (a flood need not be finished).
    while !front.is_empty() && added.len() <= limit {
        let mut next = Vec::new();
        for (v, origin) in front {
            for p in neighbours(v, dims) {
                let d = dist2(p, origin);
                if d > reach2 || !passes(grey[p]) {
                    continue;
                }
                if mask[p] == 0 {
                    mask[p] = 1;
                    added.push(p);
                    origin_of.insert(p, origin);
                    next.push((p, origin));
                } else if let Some(o) = origin_of.get_mut(&p) {
                    if d < dist2(p, *o) {
                        *o = origin;
                        next.push((p, origin));
                    }
                }
            }
        }
        front = next;
    }
    let n = added.len() as u64;
    if added.len() > limit {
        for p in added {
            mask[p] = 0;
        }
        Grown::Undone(n)
    } else {
        Grown::Added(n)
    }
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

    const HU: [f32; 2] = [-1000.0, 40.0];

    #[test]
    fn the_gate_is_half_way_between_tissue_and_the_masks_bone_level() {
        let (mask, grey) = slab();
        let gate = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 3.0).unwrap();
        assert_eq!(
            (gate.peak, gate.lo, gate.hi, gate.reach_mm),
            (1000.0, 520.0, 2500.0, 3.0)
        );
        // The reach is clamped to 1-5 mm.
        let far = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 50.0).unwrap();
        assert_eq!(far.reach_mm, MAX_REACH_MM);
        // Bone 300 HU-equivalents above soft tissue is too little contrast for a half-maximum.
        assert_eq!(
            GrowGate::from_mask(&mask, grey.view(), [-1000.0, 700.0], 2500.0, 3.0),
            Err(GrowSkip::LowContrast)
        );
        assert_eq!(
            GrowGate::from_mask(&mask, grey.view(), [40.0, 40.0], 2500.0, 3.0),
            Err(GrowSkip::NoAnchors)
        );
        let empty = Mask::zeros((4, 8, 32));
        assert_eq!(
            GrowGate::from_mask(&empty, grey.view(), HU, 2500.0, 3.0),
            Err(GrowSkip::NoBone)
        );
    }

    #[test]
    fn half_volume_edges_join_and_less_than_half_does_not() {
        let (mut mask, grey) = slab();
        let gate = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 4.0).unwrap();
        let grown = grow_half_max(&mut mask, grey.view(), gate, [1.0; 3]);
        // i = 9, 10, 19, 20 join (1000 and 600 HU); i = 21 (300 HU) and tissue do not.
        assert_eq!(grown, Grown::Added(4 * 4 * 8));
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
        let gate = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 1.0).unwrap();
        let grown = grow_half_max(&mut mask, grey.view(), gate, [1.0; 3]);
        // 1 mm: i = 10 and 19; i = 20 is 2 mm away and i = 9 is metal.
        assert_eq!(grown, Grown::Added(2 * 4 * 8));
        assert_eq!(mask[[0, 0, 20]], 0);
        assert_eq!(mask[[0, 0, 9]], 0);
    }

    #[test]
    fn the_reach_is_in_millimetres_across_thick_slices_too() {
        // 5 mm slices, 0.5 mm pixels, the mask in the first slice only: 1 mm reaches two pixels
        // sideways and no other slice, though every slice is bone.
        let (full, grey) = slab();
        let mut mask = Mask::zeros(full.raw_dim());
        mask.slice_mut(s![0, .., ..])
            .assign(&full.slice(s![0, .., ..]));
        let gate = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 1.0).unwrap();
        let grown = grow_half_max(&mut mask, grey.view(), gate, [5.0, 0.5, 0.5]);
        assert_eq!(grown, Grown::Added(4 * 8));
        assert!(mask.slice(s![1.., .., ..]).iter().all(|&m| m == 0));
    }

    #[test]
    fn a_grow_of_more_than_half_the_mask_is_undone() {
        // The mask is one column of the slab: the slab's other eleven bone columns are not an edge
        // of it.
        let (_, grey) = slab();
        let mut mask = Mask::zeros(grey.raw_dim());
        mask.slice_mut(s![.., .., 14]).fill(1);
        let before = mask.clone();
        let gate = GrowGate::from_mask(&mask, grey.view(), HU, 2500.0, 5.0).unwrap();
        let grown = grow_half_max(&mut mask, grey.view(), gate, [1.0; 3]);
        assert!(matches!(grown, Grown::Undone(n) if n > 16), "{grown:?}");
        assert_eq!(mask, before);
    }

    #[test]
    fn the_reach_follows_the_largest_voxel_edge() {
        assert_eq!(reach_mm([0.488, 0.488], 0.625), 1.0);
        assert_eq!(reach_mm([0.488, 0.488], 5.0), 5.0);
        assert_eq!(reach_mm([0.5, 0.5], 50.0), MAX_REACH_MM);
        assert_eq!(reach_mm([0.9, 0.9], f64::NAN), 1.0);
    }
}
