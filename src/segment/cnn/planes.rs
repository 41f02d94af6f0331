//! The input planes of a slice: the slice itself and, for a model with neighbour planes, the planes
//! `neighbour_mm` below and above it along the slice normal, interpolated linearly from the series'
//! own slice positions (so that variable slice spacing and thick slices are handled alike).
//!
//! A single axial slice cannot say where within a 5 mm slab the bone lies (the skull base, where
//! bone runs oblique to the slices, is where one-plane models lose;
//! models/MODEL-cpu-3-leave-2-out.md, "Neighbouring planes as input"). Two planes at +-d mm give
//! the classifier the through-plane gradient at +3 % multiply-adds per voxel. A plane beyond the
//! first or last slice is air ([`super::normalise::Normaliser::pad_value`]), as the in-plane
//! context beyond the slice edge.

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

/// The input planes of slice `k`: `[centre]` for a one-plane model (`neighbour_mm` = 0), else
/// `[centre, z - neighbour_mm, z + neighbour_mm]` with `z = slice_mm[k]` (channel order of the
/// model's first convolution). `slice_mm` is only read when `neighbour_mm > 0`; for a `k` beyond it
/// the neighbours are air.
pub fn input_planes(slice_mm: &[f64], k: usize, neighbour_mm: f64) -> Vec<PlaneMix> {
    let centre = vec![(k, 1.0)];
    if neighbour_mm <= 0.0 {
        return vec![centre];
    }
    let Some(&z) = slice_mm.get(k) else {
        return vec![centre, Vec::new(), Vec::new()];
    };
    vec![
        centre,
        interpolate_at(slice_mm, z - neighbour_mm),
        interpolate_at(slice_mm, z + neighbour_mm),
    ]
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
        let p = input_planes(&z, 1, 3.0);
        assert_eq!(p.len(), 3);
        assert!(close(&p[0], &[(1, 1.0)]));
        assert!(close(&p[1], &[(0, 0.6), (1, 0.4)]));
        assert!(close(&p[2], &[(1, 0.4), (2, 0.6)]));
    }

    #[test]
    fn descending_positions_and_exact_hits() {
        let z = [9.0, 6.0, 3.0, 0.0];
        let p = input_planes(&z, 2, 3.0);
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
        let p = input_planes(&z, 0, 3.0);
        assert!(p[1].is_empty());
        assert!(close(&p[2], &[(0, 0.4), (1, 0.6)]));
        assert!(input_planes(&z, 2, 3.0)[2].is_empty());
        assert_eq!(input_planes(&[], 4, 0.0), vec![vec![(4, 1.0)]]);
        assert!(interpolate_at(&[0.0, f64::NAN], 0.5).is_empty());
    }

    #[test]
    fn variable_spacing_uses_the_actual_positions() {
        // GE-style variable spacing: 1.25 mm then 2.5 mm.
        let z = [0.0, 1.25, 2.5, 5.0, 7.5];
        let p = input_planes(&z, 2, 3.0);
        // z - 3 = -0.5: outside; z + 3 = 5.5: slices 3 (5.0) and 4 (7.5) at 0.8, 0.2.
        assert!(p[1].is_empty());
        assert!(close(&p[2], &[(3, 0.8), (4, 0.2)]));
    }
}
