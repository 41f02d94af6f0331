//! Reference bone labels for real CT without an engineer's model, in the spirit of the paper's gold
//! standard (Minnema et al. 2018, §2.2: global threshold, then removal of head rest, table, noise and
//! unrelated structures, by hand in Mimics). Here every step is automatic and documented
//! (docs/labels.md), so the label is reproducible; it is a *threshold* label and inherits threshold
//! bias (partial-volume loss of thin bone, kernel- and noise-dependent edges).
//!
//! Procedure on HU `[k, j, i]`:
//! 1. `raw` = HU >= `threshold_hu` (default 226 HU, Mimics' "Bone (CT)" preset).
//! 2. `core` = in-plane morphological opening of `raw` by a square of half-width
//!    `round(opening_radius_mm / pixel)` pixels, slice by slice (slices are often thicker than pixels,
//!    so the opening never reaches across slices). Thin plates, rods and bridges, such as a head holder
//!    touching the skull or table edges, vanish from `core`; the skull vault (4-10 mm) stays.
//! 3. Keep the largest 26-connected component of `core` (the skull).
//! 4. Geodesic reconstruction by `reconstruct_steps` 26-neighbour dilations inside `raw`: thin bone
//!    attached to the skull (orbit walls, skull base plates, thin temporal squama) comes back, as far
//!    as `reconstruct_steps` voxels from the kept core; a structure joined to the skull only through a
//!    bridge longer than that stays removed.
//! 5. Keep the largest 26-connected component again. Nothing is filled: defects and foramina stay open.

use ndarray::{s, Array2, ArrayView2, Axis, Zip};
use rayon::prelude::*;
use serde::Serialize;

use crate::dicom::series::CtVolume;
use crate::segment::components::{largest_component, Connectivity};
use crate::segment::Mask;

use super::LabelError;

/// Parameters of the reference procedure (defaults as documented in docs/labels.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferenceOptions {
    /// Global threshold, HU (voxels with HU >= it are candidate bone). Default 226 HU.
    pub threshold_hu: f32,
    /// Half-width (mm) of the in-plane square opening that cuts thin structures. Default 1.0 mm;
    /// 0 switches steps 2 and 4 off (threshold + largest component only).
    pub opening_radius_mm: f64,
    /// Dilation steps of the geodesic reconstruction (voxels). Default 4.
    pub reconstruct_steps: u32,
}

impl Default for ReferenceOptions {
    fn default() -> Self {
        ReferenceOptions {
            threshold_hu: crate::segment::threshold::DEFAULT_THRESHOLD_HU,
            opening_radius_mm: 1.0,
            reconstruct_steps: 4,
        }
    }
}

impl ReferenceOptions {
    /// Short identity string for the SEG's AlgorithmVersion, e.g. `226HU-open1mm-rec4`.
    pub fn version(&self) -> String {
        format!(
            "{}HU-open{}mm-rec{}/{}",
            self.threshold_hu,
            self.opening_radius_mm,
            self.reconstruct_steps,
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// Voxel counts after each step, for the report and the documentation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReferenceStats {
    /// Voxels at or above the threshold.
    pub thresholded: u64,
    /// Voxels left by the in-plane opening.
    pub opened: u64,
    /// 26-components of the opened mask.
    pub opened_components: usize,
    /// Voxels of the largest opened component.
    pub core: u64,
    /// Voxels after reconstruction and the final largest component.
    pub label: u64,
    /// Thresholded voxels removed by the procedure (head rest, table, noise, inserts, thin bridges).
    pub removed: u64,
    /// Label volume, mL (slab-exact).
    pub label_volume_ml: f64,
    /// Opening half-width used, pixels.
    pub opening_radius_px: usize,
}

/// Runs the reference procedure on `ct`; returns the label `[k, j, i]` (1 = bone) and the counts.
///
/// # Errors
/// [`LabelError::NoBone`] when no voxel reaches the threshold or the opening leaves nothing.
pub fn reference_mask(
    ct: &CtVolume,
    opts: &ReferenceOptions,
) -> Result<(Mask, ReferenceStats), LabelError> {
    let t = opts.threshold_hu;
    let raw: Mask = ct.hu.mapv(|v| u8::from(v >= t));
    let mut stats = ReferenceStats {
        thresholded: count(&raw),
        ..Default::default()
    };
    if stats.thresholded == 0 {
        return Err(LabelError::NoBone(format!("no voxel at or above {t} HU")));
    }
    let pixel = ct.geometry.pixel_spacing[0].min(ct.geometry.pixel_spacing[1]);
    let r = if opts.opening_radius_mm > 0.0 && pixel > 0.0 {
        (opts.opening_radius_mm / pixel).round().max(1.0) as usize
    } else {
        0
    };
    stats.opening_radius_px = r;
    let label = if r == 0 {
        let (m, n) = largest_component(&raw, Connectivity::TwentySix);
        stats.opened = stats.thresholded;
        stats.opened_components = n;
        stats.core = count(&m);
        m
    } else {
        let mut opened = raw.clone();
        opened
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(raw.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut out, src)| {
                let o = open_2d(src, r);
                out.assign(&o);
            });
        stats.opened = count(&opened);
        let (core, n) = largest_component(&opened, Connectivity::TwentySix);
        drop(opened);
        stats.opened_components = n;
        stats.core = count(&core);
        if stats.core == 0 {
            return Err(LabelError::NoBone(format!(
                "nothing at or above {t} HU survives an opening of {r} px"
            )));
        }
        let rec = reconstruct(core, &raw, opts.reconstruct_steps);
        largest_component(&rec, Connectivity::TwentySix).0
    };
    stats.label = count(&label);
    stats.removed = stats.thresholded - stats.label.min(stats.thresholded);
    let per_slice: Vec<u64> = label
        .outer_iter()
        .map(|s| s.iter().filter(|&&v| v != 0).count() as u64)
        .collect();
    stats.label_volume_ml = ct.geometry.volume_ml(&per_slice);
    Ok((label, stats))
}

fn count(m: &Mask) -> u64 {
    m.iter().filter(|&&v| v != 0).count() as u64
}

/// In-plane opening (erosion then dilation) of one slice `[j, i]` by a `(2r+1)²` square; outside the
/// slice counts as background for the erosion.
fn open_2d(src: ArrayView2<u8>, r: usize) -> Array2<u8> {
    let eroded = filter_2d(src, r, true);
    filter_2d(eroded.view(), r, false)
}

/// Separable min (`erode`) or max filter of half-width `r` along both in-plane axes.
fn filter_2d(src: ArrayView2<u8>, r: usize, erode: bool) -> Array2<u8> {
    let pass = |a: ArrayView2<u8>| -> Array2<u8> {
        let mut out = Array2::<u8>::zeros(a.raw_dim());
        for (row_in, mut row_out) in a.outer_iter().zip(out.outer_iter_mut()) {
            let n = row_in.len();
            // Running count of foreground in the window (r small: direct sums are fast enough).
            let mut prefix = vec![0u32; n + 1];
            for i in 0..n {
                prefix[i + 1] = prefix[i] + row_in[i] as u32;
            }
            for i in 0..n {
                let lo = i.saturating_sub(r);
                let hi = (i + r + 1).min(n);
                let ones = prefix[hi] - prefix[lo];
                row_out[i] = if erode {
                    // Window partly outside counts as background.
                    u8::from(i >= r && i + r < n && ones as usize == 2 * r + 1)
                } else {
                    u8::from(ones > 0)
                };
            }
        }
        out
    };
    let along_i = pass(src);
    let t = pass(along_i.t());
    t.t().to_owned()
}

/// Geodesic reconstruction of `seed` inside `within` by `steps` 26-neighbour dilations.
fn reconstruct(mut seed: Mask, within: &Mask, steps: u32) -> Mask {
    let (nk, _, _) = seed.dim();
    for _ in 0..steps {
        // 3x3 in-plane max, then max over k-1, k, k+1.
        let planar: Vec<Array2<u8>> = seed
            .axis_iter(Axis(0))
            .into_par_iter()
            .map(|s| filter_2d(s, 1, false))
            .collect();
        let mut next = Mask::zeros(seed.raw_dim());
        next.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(k, mut out)| {
                for p in &planar[k.saturating_sub(1)..(k + 2).min(nk)] {
                    Zip::from(&mut out).and(p).for_each(|o, &v| *o |= v);
                }
                Zip::from(&mut out)
                    .and(within.slice(s![k, .., ..]))
                    .for_each(|o, &w| *o &= w);
            });
        if next == seed {
            break;
        }
        seed = next;
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_removes_thin_rods_and_keeps_blocks() {
        let mut a = Array2::<u8>::zeros((12, 12));
        a.slice_mut(s![2..8, 2..8]).fill(1); // 6x6 block
        a.slice_mut(s![10, ..]).fill(1); // 1-px line
        let o = open_2d(a.view(), 1);
        assert_eq!(o.iter().filter(|&&v| v == 1).count(), 36);
        assert_eq!(o.row(10).iter().filter(|&&v| v == 1).count(), 0);
    }

    #[test]
    fn reconstruction_is_limited_by_steps() {
        let mut within = Mask::zeros((1, 1, 12));
        within.fill(1);
        let mut seed = Mask::zeros((1, 1, 12));
        seed[[0, 0, 0]] = 1;
        let rec = reconstruct(seed, &within, 3);
        assert_eq!(rec.iter().filter(|&&v| v == 1).count(), 4);
    }
}
