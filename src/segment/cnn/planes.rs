//! The input planes of a slice: the slice itself and, for a model with neighbour planes, either the
//! planes `neighbour_mm` below and above it along the slice normal, interpolated linearly from the
//! series' own slice positions (so that variable slice spacing and thick slices are handled alike),
//! or the series' adjacent slices themselves ([`Neighbours::Adjacent`]).
//!
//! A single axial slice cannot say where within a 5 mm slab the bone lies (the skull base, where
//! bone runs oblique to the slices, is where one-plane models lose;
//! models/MODEL-cpu-3-leave-2-out.md, "Neighbouring planes as input"). Two planes at +-d mm give
//! the classifier the through-plane gradient at +3 % multiply-adds per voxel. A plane beyond the
//! first or last slice is air ([`super::normalise::Normaliser::pad_value`]), as the in-plane
//! context beyond the slice edge.
//!
//! Planes at a fixed distance (3 mm) are nearly the slice itself on a 5 mm series (weights 0.6 /
//! 0.4 with the slice between), so the adjacent slices carry what a fixed distance does not: the
//! slab above and below, whose bone gives the density that a partially filled slab's grey value is
//! a fraction of (the tangentially cut vertex; session 28, models/MODEL-cpu-3-leave-2-out.md).

/// Which planes a model reads beside its slice (the model's `neighbour_mm` and
/// `neighbour_adjacent` in [`super::arch::Architecture`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Neighbours {
    /// The slice alone: one input plane.
    One,
    /// The planes this many mm below and above the slice along its normal (> 0), interpolated
    /// from the slice positions ([`interpolate_at`]).
    AtMm(f64),
    /// The slices `k - 1` and `k + 1` of the series, whatever their distance (on a thin-slice
    /// series nearly the slice itself, on a 5 mm series the slabs above and below).
    Adjacent,
}

impl Neighbours {
    /// The setting of a model's metadata: `adjacent` wins, else `neighbour_mm > 0` is
    /// [`Neighbours::AtMm`], else [`Neighbours::One`] (the caller validates that not both are set).
    pub fn from_settings(neighbour_mm: f64, adjacent: bool) -> Neighbours {
        if adjacent {
            Neighbours::Adjacent
        } else if neighbour_mm > 0.0 {
            Neighbours::AtMm(neighbour_mm)
        } else {
            Neighbours::One
        }
    }

    /// Input planes of the first convolution: 1, or 3 with neighbour planes.
    pub fn planes(self) -> usize {
        match self {
            Neighbours::One => 1,
            Neighbours::AtMm(_) | Neighbours::Adjacent => 3,
        }
    }

    /// Whether the planes are placed by the slice positions (only [`Neighbours::AtMm`]).
    pub fn needs_positions(self) -> bool {
        matches!(self, Neighbours::AtMm(_))
    }
}

/// One input plane as a weighted sum of slices: `(k, weight)` pairs whose weights sum to 1; empty
/// when the plane lies outside the series (the plane is then air).
pub type PlaneMix = Vec<(usize, f32)>;

/// The slices and weights that interpolate the plane at position `z` mm along the normal, from
/// slice positions `slice_mm` (one per `k`, mm, monotone in either direction; PS3.3 C.7.6.2.1.1
/// `dot(IPP, normal)`). Empty outside `[min, max]` of the positions (a tolerance of 1e-3 mm keeps
/// the end slices themselves) or when a position is not finite.
pub fn interpolate_at(slice_mm: &[f64], z: f64) -> PlaneMix {
    const TOL: f64 = 1e-3;
    if slice_mm.is_empty() || !z.is_finite() || slice_mm.iter().any(|p| !p.is_finite()) {
        return Vec::new();
    }
    let n = slice_mm.len();
    // Nearest slice first: an exact hit (within the tolerance) is that slice alone.
    let (mut best, mut best_d) = (0, f64::INFINITY);
    for (k, &p) in slice_mm.iter().enumerate() {
        let d = (p - z).abs();
        if d < best_d {
            best = k;
            best_d = d;
        }
    }
    if best_d <= TOL {
        return vec![(best, 1.0)];
    }
    // The bracketing pair of consecutive slices (positions are monotone, so at most one pair
    // brackets `z` except on repeated positions, where the first is taken).
    for k in 0..n.saturating_sub(1) {
        let (a, b) = (slice_mm[k], slice_mm[k + 1]);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if lo < z && z < hi && hi - lo > 0.0 {
            let t = ((z - a) / (b - a)) as f32;
            return vec![(k, 1.0 - t), (k + 1, t)];
        }
    }
    Vec::new()
}

/// The input planes of slice `k` of an `nk`-slice series: `[centre]` for a one-plane model, else
/// `[centre, below, above]` (channel order of the model's first convolution): for
/// [`Neighbours::AtMm`] `d` the planes interpolated at `z - d` and `z + d` with `z = slice_mm[k]`
/// (for a `k` beyond `slice_mm` both are air), for [`Neighbours::Adjacent`] the slices `k - 1` and
/// `k + 1` (air beyond the first or last slice). `slice_mm` is only read for [`Neighbours::AtMm`].
pub fn input_planes(slice_mm: &[f64], nk: usize, k: usize, nb: Neighbours) -> Vec<PlaneMix> {
    let centre = vec![(k, 1.0)];
    match nb {
        Neighbours::One => vec![centre],
        Neighbours::Adjacent => {
            let below = k.checked_sub(1).map(|q| vec![(q, 1.0)]).unwrap_or_default();
            let above = if k + 1 < nk {
                vec![(k + 1, 1.0)]
            } else {
                Vec::new()
            };
            vec![centre, below, above]
        }
        Neighbours::AtMm(d) => {
            let Some(&z) = slice_mm.get(k) else {
                return vec![centre, Vec::new(), Vec::new()];
            };
            vec![
                centre,
                interpolate_at(slice_mm, z - d),
                interpolate_at(slice_mm, z + d),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(m: &PlaneMix, want: &[(usize, f32)]) -> bool {
        m.len() == want.len()
            && m.iter()
                .zip(want)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-6)
    }

    #[test]
    fn thick_slices_interpolate_between_neighbours() {
        // 5 mm slices at 0, 5, 10, 15: -3 mm of slice 1 (z 5) is z 2, 2 mm from slice 0 (weights
        // 0.6, 0.4); +3 mm is z 8 (slices 1, 2 at 0.4, 0.6).
        let z = [0.0, 5.0, 10.0, 15.0];
        let p = input_planes(&z, z.len(), 1, Neighbours::AtMm(3.0));
        assert_eq!(p.len(), 3);
        assert!(close(&p[0], &[(1, 1.0)]));
        assert!(close(&p[1], &[(0, 0.6), (1, 0.4)]));
        assert!(close(&p[2], &[(1, 0.4), (2, 0.6)]));
    }

    #[test]
    fn descending_positions_and_exact_hits() {
        let z = [9.0, 6.0, 3.0, 0.0];
        let p = input_planes(&z, z.len(), 2, Neighbours::AtMm(3.0));
        assert!(close(&p[1], &[(3, 1.0)]));
        assert!(close(&p[2], &[(1, 1.0)]));
        // 1 mm above slice 3 (z 0) on a descending series: slices 2 (z 3) and 3 at 1/3, 2/3.
        assert!(close(
            &interpolate_at(&z, 1.0),
            &[(2, 1.0 / 3.0), (3, 2.0 / 3.0)]
        ));
    }

    #[test]
    fn beyond_the_series_is_air_and_one_plane_ignores_positions() {
        let z = [0.0, 5.0, 10.0];
        let p = input_planes(&z, z.len(), 0, Neighbours::AtMm(3.0));
        assert!(p[1].is_empty());
        assert!(close(&p[2], &[(0, 0.4), (1, 0.6)]));
        assert!(input_planes(&z, z.len(), 2, Neighbours::AtMm(3.0))[2].is_empty());
        assert_eq!(
            input_planes(&[], 5, 4, Neighbours::One),
            vec![vec![(4, 1.0)]]
        );
        assert!(interpolate_at(&[0.0, f64::NAN], 0.5).is_empty());
    }

    #[test]
    fn variable_spacing_uses_the_actual_positions() {
        // GE-style variable spacing: 1.25 mm then 2.5 mm.
        let z = [0.0, 1.25, 2.5, 5.0, 7.5];
        let p = input_planes(&z, z.len(), 2, Neighbours::AtMm(3.0));
        // z - 3 = -0.5: outside; z + 3 = 5.5: slices 3 (5.0) and 4 (7.5) at 0.8, 0.2.
        assert!(p[1].is_empty());
        assert!(close(&p[2], &[(3, 0.8), (4, 0.2)]));
    }

    #[test]
    fn adjacent_planes_are_the_neighbouring_slices_whatever_their_distance() {
        // No positions needed: slices 1 and 3 around 2, air beyond the ends.
        let p = input_planes(&[], 4, 2, Neighbours::Adjacent);
        assert_eq!(p, vec![vec![(2, 1.0)], vec![(1, 1.0)], vec![(3, 1.0)]]);
        let first = input_planes(&[], 4, 0, Neighbours::Adjacent);
        assert!(first[1].is_empty() && first[2] == vec![(1, 1.0)]);
        let last = input_planes(&[], 4, 3, Neighbours::Adjacent);
        assert!(last[1] == vec![(2, 1.0)] && last[2].is_empty());
        assert_eq!(
            input_planes(&[], 1, 0, Neighbours::Adjacent)[1..],
            [vec![], vec![]]
        );
        assert_eq!(Neighbours::from_settings(3.0, true), Neighbours::Adjacent);
        assert_eq!(Neighbours::from_settings(3.0, false), Neighbours::AtMm(3.0));
        assert_eq!(Neighbours::from_settings(0.0, false).planes(), 1);
        assert!(!Neighbours::Adjacent.needs_positions());
    }
}
