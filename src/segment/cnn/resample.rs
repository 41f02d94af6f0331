//! In-plane resampling to a model's working pixel spacing.
//!
//! The patch classifier sees 33x33 voxels, so its context in millimetres scales with the pixel
//! spacing: 11 mm at 0.34 mm pixels, 30 mm at 0.9 mm. A model with a working spacing
//! ([`super::meta::ModelMeta::working_pixel_mm`]) runs on every slice resampled to that spacing
//! and its probabilities are resampled back, so the receptive field covers the same millimetres on
//! every scan (the fixed target spacing of nnU-Net: Isensee et al., Nat. Methods 18, 203-211,
//! 2021). Slices within [`SPACING_TOLERANCE`] of the working spacing on both axes run natively.
//!
//! Both directions are separable linear interpolation on pixel centres, with the first pixel's
//! centre (ImagePositionPatient, PS3.3 C.7.6.2.1.1) kept in place, so the working grid is the
//! native grid with another spacing and the same origin and orientation. Downsampling first
//! low-passes with a Gaussian of `sigma = sqrt(s^2 - 1) / 2` source pixels (`s` = source pixels
//! per output pixel): a pixel's Gaussian footprint of half its width grows to half the output
//! pixel's, so noise and sharp-kernel overshoot do not alias (scikit-image's `(s - 1) / 2` is
//! almost no filter at the factors met here: 0.22 px at 0.34 -> 0.488 mm).

use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

/// Relative difference between native and working pixel spacing below which a slice is not
/// resampled (both axes): 10 %, about the spread of pixel spacings of one scanner's head
/// protocols.
pub const SPACING_TOLERANCE: f64 = 0.10;

/// Largest working grid, voxels (slices x rows x columns): 2^27, 512 MiB per `f32` copy. A whole
/// head at 0.9 mm pixels resampled to 0.488 mm (140 x 943 x 943) is 124 M; beyond the limit
/// (e.g. 2 mm pixels to 0.1 mm) inference and training refuse the scan instead of exhausting
/// memory.
pub const MAX_WORKING_VOXELS: u64 = 1 << 27;

/// A native slice grid and its working grid (same origin and orientation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InPlaneGrid {
    /// Native Rows (`j` extent).
    pub rows: usize,
    /// Native Columns (`i` extent).
    pub cols: usize,
    /// Native PixelSpacing `[Δj, Δi]`, mm.
    pub spacing: [f64; 2],
    /// Working pixel spacing, mm (both axes).
    pub working_mm: f64,
    /// Working grid rows.
    pub work_rows: usize,
    /// Working grid columns.
    pub work_cols: usize,
}

impl InPlaneGrid {
    /// The working grid of a `rows x cols` slice with PixelSpacing `spacing` (`[Δj, Δi]`, mm), or
    /// `None` when the slice runs natively: both spacings within [`SPACING_TOLERANCE`] of
    /// `working_mm`, or a spacing or `working_mm` that is not finite and positive, or an empty
    /// slice.
    pub fn new(
        rows: usize,
        cols: usize,
        spacing: [f64; 2],
        working_mm: f64,
    ) -> Option<InPlaneGrid> {
        let valid = |v: f64| v.is_finite() && v > 0.0;
        if rows == 0 || cols == 0 || !valid(working_mm) || !spacing.iter().all(|&d| valid(d)) {
            return None;
        }
        if spacing
            .iter()
            .all(|&d| (d / working_mm - 1.0).abs() <= SPACING_TOLERANCE + 1e-9)
        {
            return None;
        }
        let extent =
            |n: usize, d: f64| ((n - 1) as f64 * d / working_mm + 1e-9).floor() as usize + 1;
        Some(InPlaneGrid {
            rows,
            cols,
            spacing,
            working_mm,
            work_rows: extent(rows, spacing[0]),
            work_cols: extent(cols, spacing[1]),
        })
    }

    /// Checks that `slices` working slices stay within [`MAX_WORKING_VOXELS`].
    ///
    /// # Errors
    /// A message naming the native and working grids and the limit.
    pub fn check_size(&self, slices: usize) -> Result<(), String> {
        let n = slices as u64 * self.work_rows as u64 * self.work_cols as u64;
        if n > MAX_WORKING_VOXELS {
            return Err(format!(
                "PixelSpacing {:?} mm resampled to the model's working spacing {} mm needs a \
                 {slices} x {} x {} grid ({n} voxels, limit {MAX_WORKING_VOXELS})",
                self.spacing, self.working_mm, self.work_rows, self.work_cols
            ));
        }
        Ok(())
    }

    /// `v` (`[k, rows, cols]`) resampled to the working grid: `[k, work_rows, work_cols]`.
    ///
    /// # Panics
    /// When `v`'s slices are not `rows x cols` (a caller bug, not an input error).
    pub fn to_working(&self, v: ArrayView3<f32>) -> Array3<f32> {
        assert_eq!((v.dim().1, v.dim().2), (self.rows, self.cols));
        let step = [
            self.working_mm / self.spacing[0],
            self.working_mm / self.spacing[1],
        ];
        resample(v, [self.work_rows, self.work_cols], step)
    }

    /// `p` (`[k, work_rows, work_cols]`, e.g. probabilities) resampled back to the native grid:
    /// `[k, rows, cols]`.
    ///
    /// # Panics
    /// When `p`'s slices are not `work_rows x work_cols` (a caller bug).
    pub fn to_native(&self, p: ArrayView3<f32>) -> Array3<f32> {
        assert_eq!((p.dim().1, p.dim().2), (self.work_rows, self.work_cols));
        let step = [
            self.spacing[0] / self.working_mm,
            self.spacing[1] / self.working_mm,
        ];
        resample(p, [self.rows, self.cols], step)
    }
}

/// Linear-interpolation taps: output `o` reads source `lo[o]` and `hi[o]` with weight `w[o]` on
/// `hi`; the source position is `o * step`, clamped to the last source pixel.
struct Taps {
    lo: Vec<usize>,
    hi: Vec<usize>,
    w: Vec<f32>,
}

fn taps(n_out: usize, n_in: usize, step: f64) -> Taps {
    let last = (n_in - 1) as f64;
    let mut t = Taps {
        lo: Vec::with_capacity(n_out),
        hi: Vec::with_capacity(n_out),
        w: Vec::with_capacity(n_out),
    };
    for o in 0..n_out {
        let x = (o as f64 * step).min(last);
        let lo = x.floor() as usize;
        t.lo.push(lo);
        t.hi.push((lo + 1).min(n_in - 1));
        t.w.push((x - lo as f64) as f32);
    }
    t
}

/// Every slice of `v` resampled to `out` (`[rows, cols]`) with `step` source pixels per output
/// pixel per axis, low-passed first along each axis whose step exceeds 1.
fn resample(v: ArrayView3<f32>, out: [usize; 2], step: [f64; 2]) -> Array3<f32> {
    let (nk, rows, cols) = v.dim();
    let mut dst = Array3::<f32>::zeros((nk, out[0], out[1]));
    if rows == 0 || cols == 0 {
        return dst;
    }
    let jt = taps(out[0], rows, step[0]);
    let it = taps(out[1], cols, step[1]);
    let sigma = step.map(|s| {
        if s > 1.0 {
            (0.5 * (s * s - 1.0).sqrt()) as f32
        } else {
            0.0
        }
    });
    dst.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(v.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut d, src)| {
            if sigma.iter().any(|&s| s > 0.0) {
                let mut x: Vec<f32> = src.iter().copied().collect();
                gaussian_blur(&mut x, rows, cols, sigma);
                let filtered = Array2::from_shape_vec((rows, cols), x).expect("rows x cols values");
                resample_plane(filtered.view(), &jt, &it, &mut d);
            } else {
                resample_plane(src, &jt, &it, &mut d);
            }
        });
    dst
}

/// Separable linear interpolation of one plane: along `i` into a scratch plane, then along `j`.
fn resample_plane(
    src: ArrayView2<f32>,
    jt: &Taps,
    it: &Taps,
    dst: &mut ndarray::ArrayViewMut2<f32>,
) {
    let rows = src.dim().0;
    let n_i = it.lo.len();
    let mut tmp = Array2::<f32>::zeros((rows, n_i));
    for (j, row) in src.outer_iter().enumerate() {
        let mut t = tmp.slice_mut(s![j, ..]);
        for o in 0..n_i {
            let w = it.w[o];
            t[o] = row[it.lo[o]] * (1.0 - w) + row[it.hi[o]] * w;
        }
    }
    for (o, mut out_row) in dst.outer_iter_mut().enumerate() {
        let (a, b, w) = (tmp.row(jt.lo[o]), tmp.row(jt.hi[o]), jt.w[o]);
        for ((d, &x), &y) in out_row.iter_mut().zip(a.iter()).zip(b.iter()) {
            *d = x * (1.0 - w) + y * w;
        }
    }
}

/// Separable Gaussian blur of a `rows x cols` plane (row-major) with standard deviations
/// `[σj, σi]` in pixels (0 = that axis untouched), edges clamped; the kernel reaches 2.5 σ.
pub fn gaussian_blur(x: &mut [f32], rows: usize, cols: usize, sigma: [f32; 2]) {
    assert_eq!(x.len(), rows * cols);
    // Unnormalised weights, sum divided out after accumulating (in this order, so that training
    // tiles blurred before this function existed are reproduced bit for bit).
    let weights = |s: f32| -> (Vec<f32>, isize, f32) {
        let r = (2.5 * s).ceil() as isize;
        let w: Vec<f32> = (-r..=r)
            .map(|d| (-(d * d) as f32 / (2.0 * s * s)).exp())
            .collect();
        let sum = w.iter().sum();
        (w, r, sum)
    };
    let mut tmp = vec![0f32; x.len()];
    if sigma[1] > 0.0 {
        let (w, r, sum) = weights(sigma[1]);
        for j in 0..rows {
            let row = &x[j * cols..(j + 1) * cols];
            for i in 0..cols {
                let mut acc = 0.0;
                for (n, wt) in w.iter().enumerate() {
                    acc += wt
                        * row[(i as isize + n as isize - r).clamp(0, cols as isize - 1) as usize];
                }
                tmp[j * cols + i] = acc / sum;
            }
        }
        x.copy_from_slice(&tmp);
    }
    if sigma[0] > 0.0 {
        let (w, r, sum) = weights(sigma[0]);
        for j in 0..rows {
            for i in 0..cols {
                let mut acc = 0.0;
                for (n, wt) in w.iter().enumerate() {
                    let q = (j as isize + n as isize - r).clamp(0, rows as isize - 1) as usize;
                    acc += wt * x[q * cols + i];
                }
                tmp[j * cols + i] = acc / sum;
            }
        }
        x.copy_from_slice(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_near_the_working_spacing_run_natively() {
        assert_eq!(InPlaneGrid::new(512, 512, [0.451, 0.451], 0.488), None);
        assert_eq!(InPlaneGrid::new(512, 512, [0.488, 0.488], 0.488), None);
        assert_eq!(InPlaneGrid::new(512, 512, [f64::NAN, 0.4], 0.488), None);
        assert_eq!(InPlaneGrid::new(512, 512, [0.34, 0.34], 0.0), None);
        assert_eq!(InPlaneGrid::new(0, 512, [0.34, 0.34], 0.488), None);
        let g = InPlaneGrid::new(512, 512, [0.34, 0.34], 0.488).unwrap();
        // 511 * 0.34 / 0.488 = 356.02 -> 357 working pixels, the last within the native extent.
        assert_eq!((g.work_rows, g.work_cols), (357, 357));
        let g = InPlaneGrid::new(512, 256, [0.9, 0.45], 0.45).unwrap();
        assert_eq!((g.work_rows, g.work_cols), (1023, 256));
        // Exactly 10 % off is within the tolerance (1.1 / 1.0 - 1 is 0.10000000000000009).
        assert_eq!(InPlaneGrid::new(64, 64, [1.1, 0.9], 1.0), None);
        assert!(InPlaneGrid::new(64, 64, [1.1001, 1.0], 1.0).is_some());
        // 0.9 mm -> 0.488 mm: 140 x 943 x 943 fits; 2 mm -> 0.1 mm does not, and says why.
        let g = InPlaneGrid::new(512, 512, [0.9, 0.9], 0.488).unwrap();
        assert_eq!((g.work_rows, g.work_cols), (943, 943));
        assert!(g.check_size(140).is_ok());
        let g = InPlaneGrid::new(512, 512, [2.0, 2.0], 0.1).unwrap();
        let e = g.check_size(140).unwrap_err();
        assert!(
            e.contains("140 x 10221 x 10221") && e.contains("limit 134217728"),
            "{e}"
        );
    }

    #[test]
    fn a_linear_ramp_survives_both_directions_exactly() {
        // Linear interpolation reproduces a linear function; the blur of a ramp is the ramp except
        // within the kernel's reach of a clamped edge.
        let (rows, cols) = (40, 50);
        let (dj, di) = (0.3, 0.7);
        let v = Array3::from_shape_fn((2, rows, cols), |(k, j, i)| {
            k as f32 + 2.0 * (j as f32 * dj) - 3.0 * (i as f32 * di)
        });
        let g = InPlaneGrid::new(rows, cols, [dj as f64, di as f64], 0.5).unwrap();
        let w = g.to_working(v.view());
        assert_eq!(w.dim(), (2, 24, 69));
        for ((k, j, i), &x) in w.indexed_iter() {
            if (3..20).contains(&j) {
                let want = k as f32 + 2.0 * (j as f32 * 0.5) - 3.0 * (i as f32 * 0.5);
                assert!((x - want).abs() < 1e-3, "[{k}, {j}, {i}] {x} vs {want}");
            }
        }
        let back = g.to_native(w.view());
        assert_eq!(back.dim(), v.dim());
        for ((k, j, i), &x) in back.indexed_iter() {
            // Near the edges the clamped blur (back along i) and the clamped last working pixel
            // (native row 39 -> working 23.4) depart from the ramp.
            if (5..35).contains(&j) && (3..48).contains(&i) {
                let want = v[[k, j, i]];
                assert!((x - want).abs() < 2e-3, "[{k}, {j}, {i}] {x} vs {want}");
            }
        }
    }

    #[test]
    fn downsampling_low_passes_a_checkerboard() {
        // Alternating +-1 at 0.34 mm resampled to 0.488 mm: without the low-pass, linear
        // interpolation keeps amplitude 1 where a working pixel falls on a native one; the blur
        // (sigma 0.51 px) damps the pattern to about 0.3.
        let v = Array3::from_shape_fn(
            (1, 64, 64),
            |(_, j, i)| {
                if (j + i) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            },
        );
        let g = InPlaneGrid::new(64, 64, [0.34, 0.34], 0.488).unwrap();
        let w = g.to_working(v.view());
        // Inside (the clamped edges keep more: 0.6 at the corners). `1..-1` is ndarray's "all but
        // the first and last", not an empty range.
        #[allow(clippy::reversed_empty_ranges)]
        let max = w
            .slice(s![.., 1..-1, 1..-1])
            .iter()
            .fold(0f32, |m, &x| m.max(x.abs()));
        assert!(max > 0.2 && max < 0.4, "largest amplitude {max}");
        let flat = Array3::from_elem((1, 64, 64), 7.0f32);
        assert!(g
            .to_working(flat.view())
            .iter()
            .all(|&x| (x - 7.0).abs() < 1e-5));
    }

    #[test]
    fn gaussian_blur_keeps_the_mean_and_spreads_a_point() {
        let mut x = vec![0f32; 15 * 15];
        x[7 * 15 + 7] = 1.0;
        gaussian_blur(&mut x, 15, 15, [1.0, 2.0]);
        let sum: f32 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        // Wider along i (sigma 2) than along j (sigma 1).
        assert!(x[7 * 15 + 9] > x[9 * 15 + 7]);
        assert!((x[7 * 15 + 5] - x[7 * 15 + 9]).abs() < 1e-7);
    }
}
