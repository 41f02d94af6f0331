//! Symmetric surface distance percentile (HD95), the companion of the paper's one-way deviation.
//!
//! The paper measures from the reference surface to the predicted one; a prediction with extra
//! bone away from the reference (speckle joined to the skull at low dose, metal and its streaks)
//! has surface the one-way figure never visits. Pooling both directions and taking the 95th
//! percentile is the robust Hausdorff distance of segmentation challenges (e.g. Taha & Hanbury,
//! *BMC Med Imaging* 15:29, 2015).

/// 95th percentile of the symmetric surface distance (HD95), mm: the absolute distances of the
/// reference surface points to the predicted surface (`ref_to_pred`) and of the predicted surface
/// points to the reference surface (`pred_to_ref`), pooled; a point with no surface within
/// `cap_mm` (`None`) counts as `cap_mm`, so the result is at most `cap_mm`. The predicted-to-
/// reference half is what the paper's one-way deviation cannot see: false bone away from the
/// true surface (noise speckle joined to the skull, metal). Nearest-rank percentile; NaN when
/// both are empty. One direction alone: pass an empty slice for the other.
pub fn hd95(ref_to_pred: &[Option<f64>], pred_to_ref: &[Option<f64>], cap_mm: f64) -> f64 {
    let mut v: Vec<f64> = ref_to_pred
        .iter()
        .chain(pred_to_ref)
        .map(|d| d.map_or(cap_mm, |x| x.abs().min(cap_mm)))
        .collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(f64::total_cmp);
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_pools_both_directions_and_caps_the_unreached() {
        // 10 reference points 0.2 mm off, 8 predicted points 0.1 mm off, 2 out of reach: the
        // 19th of 20 sorted values is a capped one.
        let a = vec![Some(0.2); 10];
        let mut b = vec![Some(-0.1); 8];
        b.extend([None, None]);
        assert_eq!(hd95(&a, &b, 10.0), 10.0);
        // One far point among 40 stays below the 95th percentile.
        let c = vec![Some(0.3); 39];
        assert_eq!(hd95(&c, &[Some(-7.5)], 10.0), 0.3);
        // Three far points among 40 (5 % is two) reach it; signs do not matter, the cap bounds
        // them.
        assert_eq!(hd95(&c[..37], &[Some(-7.5), Some(12.0), None], 10.0), 7.5);
        assert!(hd95(&[], &[], 10.0).is_nan());
    }
}
