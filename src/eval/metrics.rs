//! Segmentation metrics of the paper (Minnema et al. 2018, §2.5): the Dice similarity coefficient
//! counted inside the region the reference covers, and the signed perpendicular distance from each
//! reference surface point to the predicted surface, kept within ±5 mm, with mean and SD per scan
//! (whole skull, and a band around the rim of a skull defect).
//!
//! Sign convention: a deviation is **positive when the predicted surface lies outside the reference
//! surface point**, i.e. the point is inside the predicted solid (prediction larger than the
//! reference), negative when the point lies outside the predicted solid.
//!
//! The signed distance to the predicted surface is [`super::surface`]'s (re-exported here).

use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};

use crate::dicom::geometry::{dot, sub};
use crate::segment::Mask;

use super::surface::add_scaled;
pub use super::surface::{deviations, surface_points, SurfaceIndex};
use super::EvalError;

/// Reads an `f64` that JSON may hold as `null`: serde_json writes NaN (a deviation with no point in
/// reach, say) as `null`, which plain `f64` refuses to read back.
///
/// # Errors
/// The deserializer's, for anything but a number or `null`.
pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Half-open index box `[start, end)` per axis of a `[k, j, i]` volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// `[k0, j0, i0]`.
    pub start: [usize; 3],
    /// `[k1, j1, i1]` (exclusive).
    pub end: [usize; 3],
}

impl Region {
    /// The whole volume of `dims` (`[k, j, i]`).
    pub fn full(dims: [usize; 3]) -> Region {
        Region {
            start: [0; 3],
            end: dims,
        }
    }

    /// Bounding box of the non-zero voxels of `mask`, grown by `margin` voxels per side (clipped to
    /// the volume); `None` for an empty mask. This is "the region the gold standard covers".
    pub fn bounding_box(mask: &Mask, margin: usize) -> Option<Region> {
        let d = mask.dim();
        let dims = [d.0, d.1, d.2];
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        for ((k, j, i), &v) in mask.indexed_iter() {
            if v != 0 {
                for (a, x) in [k, j, i].into_iter().enumerate() {
                    lo[a] = lo[a].min(x);
                    hi[a] = hi[a].max(x);
                }
            }
        }
        if lo[0] == usize::MAX {
            return None;
        }
        Some(Region {
            start: lo.map(|x| x.saturating_sub(margin)),
            end: [0, 1, 2].map(|a| (hi[a] + 1 + margin).min(dims[a])),
        })
    }

    /// Number of voxels in the region.
    pub fn voxels(&self) -> u64 {
        (0..3)
            .map(|a| self.end[a].saturating_sub(self.start[a]) as u64)
            .product()
    }
}

/// Voxel counts of a prediction against a reference, and the DSC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    /// Bone in both.
    pub tp: u64,
    /// Bone in the prediction only.
    pub fp: u64,
    /// Bone in the reference only.
    pub fn_: u64,
    /// Background in both.
    pub tn: u64,
    /// `2TP / (2TP + FP + FN)`; 1 when both are empty.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub dsc: f64,
}

/// DSC of `predicted` against `reference` (both `[k, j, i]`, non-zero = bone) counted inside
/// `region` only.
///
/// # Errors
/// [`EvalError::Shape`] when the masks differ in shape or the region exceeds them.
pub fn dice(predicted: &Mask, reference: &Mask, region: &Region) -> Result<Overlap, EvalError> {
    if predicted.dim() != reference.dim() {
        return Err(EvalError::Shape(format!(
            "predicted {:?} vs reference {:?}",
            predicted.shape(),
            reference.shape()
        )));
    }
    let d = predicted.dim();
    if (0..3).any(|a| region.end[a] > [d.0, d.1, d.2][a] || region.start[a] > region.end[a]) {
        return Err(EvalError::Shape(format!(
            "region {region:?} outside the volume {:?}",
            predicted.shape()
        )));
    }
    let sl = ndarray::s![
        region.start[0]..region.end[0],
        region.start[1]..region.end[1],
        region.start[2]..region.end[2]
    ];
    let (p, r) = (predicted.slice(sl), reference.slice(sl));
    let per_slice = p
        .outer_iter()
        .into_par_iter()
        .zip(r.outer_iter().into_par_iter())
        .map(|(ps, rs)| {
            let mut c = Overlap::default();
            ndarray::Zip::from(&ps)
                .and(&rs)
                .for_each(|&a, &b| match (a != 0, b != 0) {
                    (true, true) => c.tp += 1,
                    (true, false) => c.fp += 1,
                    (false, true) => c.fn_ += 1,
                    (false, false) => c.tn += 1,
                });
            c
        })
        .collect::<Vec<_>>();
    for (n, c) in per_slice.iter().enumerate() {
        tracing::debug!(
            slice = region.start[0] + n,
            tp = c.tp,
            fp = c.fp,
            fn_ = c.fn_,
            "overlap of one slice"
        );
    }
    let mut o = per_slice.iter().fold(Overlap::default(), |a, b| Overlap {
        tp: a.tp + b.tp,
        fp: a.fp + b.fp,
        fn_: a.fn_ + b.fn_,
        tn: a.tn + b.tn,
        dsc: 0.0,
    });
    let den = 2 * o.tp + o.fp + o.fn_;
    o.dsc = if den == 0 {
        1.0
    } else {
        2.0 * o.tp as f64 / den as f64
    };
    Ok(o)
}

/// Summary of signed deviations (mm) kept within `±max_abs_mm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deviation {
    /// Points with a deviation within the bound.
    pub n: usize,
    /// Points offered (including those farther than the bound or with no surface in reach).
    pub n_total: usize,
    /// Mean signed deviation, mm (positive: prediction larger).
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub mean_mm: f64,
    /// Standard deviation (population) of the signed deviation, mm.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub sd_mm: f64,
    /// Mean absolute deviation, mm.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub mean_abs_mm: f64,
    /// The bound used, mm.
    #[serde(deserialize_with = "crate::eval::metrics::f64_or_nan")]
    pub max_abs_mm: f64,
}

impl Deviation {
    /// Summarises `values` (already within the bound; `None` = out of reach) of `n_total` points.
    pub fn of(values: &[Option<f64>], max_abs_mm: f64) -> Deviation {
        let kept: Vec<f64> = values.iter().flatten().copied().collect();
        let n = kept.len();
        if n == 0 {
            return Deviation {
                n_total: values.len(),
                max_abs_mm,
                mean_mm: f64::NAN,
                sd_mm: f64::NAN,
                mean_abs_mm: f64::NAN,
                n: 0,
            };
        }
        let mean = kept.iter().sum::<f64>() / n as f64;
        let var = kept.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / n as f64;
        Deviation {
            n,
            n_total: values.len(),
            mean_mm: mean,
            sd_mm: var.sqrt(),
            mean_abs_mm: kept.iter().map(|d| d.abs()).sum::<f64>() / n as f64,
            max_abs_mm,
        }
    }
}

/// A band around the rim of a skull defect: points within `radius_mm` of any rim point or rim
/// polyline segment (LPS mm). Used to report the deviation at the defect rim, as the paper does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RimBand {
    /// Rim polylines (each a sequence of LPS points; a single point is allowed).
    pub polylines: Vec<Vec<[f64; 3]>>,
    /// Half-width of the band, mm.
    pub radius_mm: f64,
}

impl RimBand {
    /// Whether `p` is within `radius_mm` of the rim.
    pub fn contains(&self, p: [f64; 3]) -> bool {
        let r2 = self.radius_mm * self.radius_mm;
        self.polylines.iter().any(|line| match line.as_slice() {
            [] => false,
            [q] => dot(sub(p, *q), sub(p, *q)) <= r2,
            _ => line
                .windows(2)
                .any(|w| segment_distance2(p, w[0], w[1]) <= r2),
        })
    }

    /// Keeps the deviations of the points inside the band (others become `None`).
    pub fn filter(&self, points: &[[f64; 3]], values: &[Option<f64>]) -> Vec<Option<f64>> {
        points
            .par_iter()
            .zip(values)
            .filter(|(p, _)| self.contains(**p))
            .map(|(_, v)| *v)
            .collect()
    }
}

fn segment_distance2(p: [f64; 3], a: [f64; 3], b: [f64; 3]) -> f64 {
    let ab = sub(b, a);
    let l2 = dot(ab, ab);
    let t = if l2 > 0.0 {
        (dot(sub(p, a), ab) / l2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let q = add_scaled(a, ab, t);
    dot(sub(p, q), sub(p, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_known_overlap() {
        let mut a = Mask::zeros((2, 4, 4));
        let mut b = Mask::zeros((2, 4, 4));
        a.slice_mut(ndarray::s![0, 0..2, 0..2]).fill(1); // 4 voxels
        b.slice_mut(ndarray::s![0, 0..2, 1..3]).fill(1); // 4 voxels, 2 shared
        b[[1, 3, 3]] = 1;
        let o = dice(&a, &b, &Region::full([2, 4, 4])).unwrap();
        assert_eq!((o.tp, o.fp, o.fn_), (2, 2, 3));
        assert_eq!(o.dsc, 4.0 / 9.0);
        let r = Region::bounding_box(&b, 0).unwrap();
        assert_eq!(
            r,
            Region {
                start: [0, 0, 1],
                end: [2, 4, 4]
            }
        );
        let o = dice(&a, &b, &r).unwrap();
        assert_eq!((o.tp, o.fp, o.fn_), (2, 0, 3));
    }

    #[test]
    fn rim_band() {
        let band = RimBand {
            polylines: vec![vec![[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]],
            radius_mm: 2.0,
        };
        assert!(band.contains([5.0, 1.9, 0.0]));
        assert!(!band.contains([5.0, 2.1, 0.0]));
        assert!(!band.contains([12.5, 0.0, 0.0]));
    }
}
