//! Quantum noise of a low-dose scan simulated where it arises: as Poisson photon counts on the
//! rays, reconstructed by filtered back-projection (FBP).
//!
//! For each slice the noise-free image (true HU after the PSF and slice profile, `[j, i]`) is
//! projected in [`VIEWS`] parallel views over 180 degrees onto detector bins of one coarse pixel
//! (the slice averaged over `f x f` blocks, coarse pixel <= [`MAX_COARSE_PX_MM`]). A ray with line
//! integral `L` has a Poisson count of mean `lambda = I0 exp(-L)` photons. A simulated ray stands
//! for several real readings (~1000 views per rotation on ~0.6 mm detector rows and bins); the
//! logarithm is taken of its whole count, as scanners' pre-log adaptive filtering merges
//! neighbouring low-count readings (Hsieh, *Med Phys* 25:2139-2147, 1998), and a count of 0 is
//! floored to 1 (Whiting et al., *Med Phys* 33:3290-3303, 2006; Hsieh, *Computed Tomography*, 2nd
//! ed., §5.3 and §7.6 on photon starvation). At 140 HU in the brain a ray through the middle of the
//! head keeps ~30 photons and a lateral ray through both petrous bones a few. The error of the measured line
//! integral `ln(I0 / N) - L` of every ray is ramp-filtered (Ram-Lak, spatial form of Kak & Slaney,
//! *Principles of Computerized Tomographic Imaging*, 1988, eq. 3.61) and back-projected onto the
//! coarse grid, upsampled (bilinear) and passed through the profile's PSF (the kernel's
//! apodization), so the noise has the FBP texture: a ramp-shaped power spectrum (no DC), variance
//! following `mean over views of exp(L)`, and streaks along the rays that starve — lateral rays
//! through both petrous bones, rays along the vault and through metal — with the log bias and the
//! zero-count floor of few-photon readings (bright and dark streak pairs).
//!
//! `I0` is set once per series so that a pixel all of whose rays have `L = L_REF` (the middle of an
//! adult head at vault level) gets the profile's `noise_sd_hu`; the variance transfer of the chain
//! (filter, back-projection, upsampling, PSF) is measured on unit-variance ray noise at start.
//! Deterministic: each slice draws from a ChaCha8 stream of its own seed.

use ndarray::Array2;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, Poisson, StandardNormal};

/// Parallel views over 180 degrees: the gap between views at 100 mm from the centre stays near one
/// coarse pixel (~0.9 mm), so the sum of views shows no view-aliasing pattern inside the head.
pub const VIEWS: usize = 360;

/// Largest coarse pixel of the noise grid, mm: 0.488 mm slices are reconstructed at 0.976 mm.
/// The noise power above the coarse Nyquist frequency (0.51 /mm) that this leaves out is ~2 % of
/// the total under a STANDARD kernel (PSF sigma 0.5 mm).
pub const MAX_COARSE_PX_MM: f64 = 1.0;

/// Linear attenuation of water at the effective energy of a ~100-120 kV beam (about 70 keV),
/// 1/mm (NIST XCOM: 0.193 cm^2/g at 70 keV).
pub const MU_WATER_PER_MM: f64 = 0.0193;

/// Reference line integral: a ray through the middle of the head at vault level (about 146 mm of
/// soft tissue and two 6 mm walls of vault bone at ~2.5 x water), so that the noise SD in the brain
/// at the realism reference slice (the most superior slice with >= 85 % of the largest body area,
/// [`super::realism`]) is the profile's `noise_sd_hu`. Calibrated on generated heads: with 170 mm
/// the brain there came out at 0.80 of `noise_sd_hu` (lowdose seed 2: 119 HU at 150 HU), i.e.
/// `L_REF` was 2 ln(1/0.80) = 0.45 too high; 24 mm of water less is 0.46.
pub const L_REF: f64 = 0.0193 * 146.0 + 0.0193 * 2.5 * 12.0;

/// The FBP noise simulator of one series geometry.
#[derive(Clone, Debug)]
pub struct FbpNoise {
    rows: usize,
    cols: usize,
    /// Block size of the coarse grid, fine pixels.
    f: usize,
    crows: usize,
    ccols: usize,
    /// Coarse pixel, mm (`[x, y]` = along `i`, along `j`).
    cdi: f64,
    cdj: f64,
    /// Detector bin, mm.
    bin: f64,
    nbins: usize,
    /// Ram-Lak taps `h[0..nbins]` (symmetric), times the bin width, 1/mm.
    ramp: Vec<f64>,
    /// (cos, sin) of each view.
    trig: Vec<(f64, f64)>,
    /// Photons per ray in air.
    i0: f64,
    /// HU per unit of reconstructed attenuation (1/mm).
    hu_per_mu: f64,
}

impl FbpNoise {
    /// Sets up the grid for `rows x cols` slices of pixel `di` (along `i`) x `dj` (along `j`) mm
    /// and calibrates `I0` so that a pixel whose rays all have `L_REF` reads `noise_sd_hu` after
    /// `apodize` (the profile's in-plane PSF, applied to the upsampled noise). `seed`: the stream
    /// of the calibration noise.
    pub fn new(
        rows: usize,
        cols: usize,
        di: f64,
        dj: f64,
        noise_sd_hu: f64,
        seed: u64,
        apodize: &dyn Fn(&mut Array2<f32>),
    ) -> Self {
        let f = ((MAX_COARSE_PX_MM / di.min(dj).max(1e-6)).floor() as usize).max(1);
        let (crows, ccols) = (rows.div_ceil(f), cols.div_ceil(f));
        let (cdi, cdj) = (di * f as f64, dj * f as f64);
        let bin = cdi.min(cdj);
        let diag = ((crows as f64 * cdj).powi(2) + (ccols as f64 * cdi).powi(2)).sqrt();
        let nbins = (diag / bin).ceil() as usize + 4;
        // Ram-Lak, Kak & Slaney eq. 3.61: h(0) = 1/(4 tau^2), h(n odd) = -1/(n pi tau)^2, 0 for
        // even n; times tau for the discrete convolution.
        let ramp = (0..nbins)
            .map(|n| {
                if n == 0 {
                    1.0 / (4.0 * bin)
                } else if n % 2 == 1 {
                    -1.0 / ((n as f64 * std::f64::consts::PI).powi(2) * bin)
                } else {
                    0.0
                }
            })
            .collect();
        let trig = (0..VIEWS)
            .map(|v| {
                let th = v as f64 * std::f64::consts::PI / VIEWS as f64;
                (th.cos(), th.sin())
            })
            .collect();
        let mut s = Self {
            rows,
            cols,
            f,
            crows,
            ccols,
            cdi,
            cdj,
            bin,
            nbins,
            ramp,
            trig,
            i0: 1.0,
            hu_per_mu: 1000.0 / MU_WATER_PER_MM,
        };
        // Variance transfer: unit-variance ray errors through the whole chain, measured over the
        // central disc (where every view has a full detector).
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sino: Vec<f64> = (0..VIEWS * nbins)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let mut img = s.reconstruct(sino);
        apodize(&mut img);
        let (cj, ci) = (rows as f64 / 2.0, cols as f64 / 2.0);
        let r2 = (0.35 * rows.min(cols) as f64).powi(2);
        let (mut n, mut sum, mut sum2) = (0f64, 0f64, 0f64);
        for ((j, i), &v) in img.indexed_iter() {
            if (j as f64 - cj).powi(2) + (i as f64 - ci).powi(2) < r2 {
                n += 1.0;
                sum += v as f64;
                sum2 += (v as f64).powi(2);
            }
        }
        let var_unit = (sum2 / n.max(1.0) - (sum / n.max(1.0)).powi(2)).max(1e-30);
        // Image variance = var_unit x (ray variance) = var_unit x exp(L_REF) / I0 at the reference.
        s.i0 = var_unit * L_REF.exp() / (noise_sd_hu * noise_sd_hu).max(1e-12);
        s
    }

    /// Photons per ray in air, set by the calibration.
    pub fn i0(&self) -> f64 {
        self.i0
    }

    /// Mean photons of a ray with line integral `L_REF`.
    pub fn photons_at_reference(&self) -> f64 {
        self.i0 * (-L_REF).exp()
    }

    /// The noise of one slice, HU, `[j, i]`, before the PSF: `slice` is the noise-free image in
    /// true HU, `seed` the slice's stream.
    pub fn slice_noise(&self, slice: &Array2<f32>, seed: u64) -> Array2<f32> {
        let line = self.project(slice);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let err: Vec<f64> = line
            .iter()
            .map(|&l| {
                let lam = self.i0 * (-l).exp();
                if lam > 1e4 {
                    // Many photons: the log of the count is Gaussian with variance 1/lam (its
                    // bias, 1/(2 lam), is below 1e-4).
                    let z: f64 = StandardNormal.sample(&mut rng);
                    z / lam.sqrt()
                } else {
                    let n: f64 = Poisson::new(lam.max(1e-12))
                        .map(|p| p.sample(&mut rng))
                        .unwrap_or(0.0);
                    // ln(I0 / N) - L = ln(lam / N), with N floored to one photon.
                    (lam / n.max(1.0)).ln()
                }
            })
            .collect();
        self.reconstruct(err)
    }

    /// Line integrals `[view * nbins + bin]` of the coarse image of `slice` (true HU).
    fn project(&self, slice: &Array2<f32>) -> Vec<f64> {
        let f = self.f;
        let mut coarse = Array2::<f64>::zeros((self.crows, self.ccols));
        for ((j, i), &h) in slice.indexed_iter() {
            let mu = MU_WATER_PER_MM * (1.0 + h as f64 / 1000.0).max(0.0);
            coarse[[j / f, i / f]] += mu;
        }
        coarse.mapv_inplace(|v| v / (f * f) as f64);
        let area = self.cdi * self.cdj;
        let nb = self.nbins;
        let mut out = vec![0f64; VIEWS * nb];
        for (v, proj) in out.chunks_mut(nb).enumerate() {
            for ((j, i), &mu) in coarse.indexed_iter() {
                if mu <= 1e-6 {
                    continue;
                }
                let (b, w) = self.bin_of(v, j, i);
                proj[b] += (1.0 - w) * mu * area / self.bin;
                proj[b + 1] += w * mu * area / self.bin;
            }
        }
        out
    }

    /// Detector bin and linear weight of coarse pixel `(j, i)` in view `v`.
    #[inline]
    fn bin_of(&self, v: usize, j: usize, i: usize) -> (usize, f64) {
        let (c, s) = self.trig[v];
        let x = (i as f64 + 0.5) * self.cdi - self.ccols as f64 * self.cdi / 2.0;
        let y = (j as f64 + 0.5) * self.cdj - self.crows as f64 * self.cdj / 2.0;
        let t = x * c + y * s;
        let b = (t / self.bin + self.nbins as f64 / 2.0).clamp(0.0, (self.nbins - 2) as f64);
        let b0 = b.floor();
        (b0 as usize, b - b0)
    }

    /// Ramp-filters and back-projects ray errors `[view * nbins + bin]` (line-integral units) and
    /// upsamples the result to the fine grid, HU, `[j, i]`.
    fn reconstruct(&self, sino: Vec<f64>) -> Array2<f32> {
        let nb = self.nbins;
        let mut filtered = vec![0f64; nb];
        let mut coarse = Array2::<f64>::zeros((self.crows, self.ccols));
        let scale = std::f64::consts::PI / VIEWS as f64;
        for (v, proj) in sino.chunks(nb).enumerate() {
            for (t, out) in filtered.iter_mut().enumerate() {
                let mut acc = self.ramp[0] * proj[t];
                for n in (1..nb).step_by(2) {
                    let h = self.ramp[n];
                    if t >= n {
                        acc += h * proj[t - n];
                    }
                    if t + n < nb {
                        acc += h * proj[t + n];
                    }
                }
                *out = acc;
            }
            for ((j, i), x) in coarse.indexed_iter_mut() {
                let (b, w) = self.bin_of(v, j, i);
                *x += scale * ((1.0 - w) * filtered[b] + w * filtered[b + 1]);
            }
        }
        // Bilinear upsampling: coarse pixel c covers fine pixels f c .. f c + f - 1.
        let f = self.f as f64;
        let hu = self.hu_per_mu;
        let at = |x: usize, n: usize| {
            let u = ((x as f64 + 0.5) / f - 0.5).clamp(0.0, (n - 1) as f64);
            let u0 = (u.floor() as usize).min(n.saturating_sub(2));
            (u0, u - u0 as f64)
        };
        Array2::from_shape_fn((self.rows, self.cols), |(j, i)| {
            let (j0, wj) = at(j, self.crows);
            let (i0, wi) = at(i, self.ccols);
            let j1 = (j0 + 1).min(self.crows - 1);
            let i1 = (i0 + 1).min(self.ccols - 1);
            let a = coarse[[j0, i0]] * (1.0 - wi) + coarse[[j0, i1]] * wi;
            let b = coarse[[j1, i0]] * (1.0 - wi) + coarse[[j1, i1]] * wi;
            ((a * (1.0 - wj) + b * wj) * hu) as f32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Water disc of `diameter` mm centred on an `n x n` grid of `px` mm pixels, air around it.
    fn disc(n: usize, px: f64, diameter: f64) -> Array2<f32> {
        let c = n as f64 / 2.0;
        Array2::from_shape_fn((n, n), |(j, i)| {
            let (x, y) = ((i as f64 + 0.5 - c) * px, (j as f64 + 0.5 - c) * px);
            if x * x + y * y < diameter * diameter / 4.0 {
                0.0
            } else {
                -1000.0
            }
        })
    }

    /// SD and mean of `img` within `r` mm of the centre.
    fn centre_stats(img: &Array2<f32>, px: f64, r: f64) -> (f64, f64) {
        let c = img.nrows() as f64 / 2.0;
        let v: Vec<f64> = img
            .indexed_iter()
            .filter(|((j, i), _)| {
                ((*i as f64 + 0.5 - c) * px).hypot((*j as f64 + 0.5 - c) * px) < r
            })
            .map(|(_, &v)| v as f64)
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
        (var.sqrt(), m)
    }

    #[test]
    fn ray_through_the_reference_attenuation_gets_the_profile_sd() {
        // A 176 mm water disc: the rays through its centre have L = 176 mu_w = L_REF (3.40).
        let (n, px) = (128, 1.5);
        assert!((176.0 * MU_WATER_PER_MM - L_REF).abs() < 0.01);
        let fbp = FbpNoise::new(n, n, px, px, 20.0, 7, &|_: &mut Array2<f32>| {});
        let water = disc(n, px, 176.0);
        let mut sds = Vec::new();
        let mut means = Vec::new();
        for seed in 0..6 {
            let (sd, m) = centre_stats(&fbp.slice_noise(&water, seed), px, 12.0);
            sds.push(sd);
            means.push(m);
        }
        let sd = sds.iter().sum::<f64>() / sds.len() as f64;
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        assert!((sd - 20.0).abs() < 2.0, "centre SD {sd} HU, expected 20");
        // Plenty of photons (20 HU needs ~1500 at the reference): no log bias to speak of.
        assert!(mean.abs() < 3.0, "centre mean {mean} HU");
        assert!(fbp.photons_at_reference() > 500.0);
        // Same seed, same noise.
        assert_eq!(fbp.slice_noise(&water, 3), fbp.slice_noise(&water, 3));
    }

    #[test]
    fn lateral_bone_starves_the_rays_and_streaks_along_them() {
        // Two dense blocks left and right of the centre (petrous bones): the lateral rays through
        // both keep e^-(2 x 45 mm x 1.5 mu_w) ~ 1/13 of their photons (~2 at 140 HU), so the
        // noise between them is larger (x 1.3 here: ~1/10 of the views starve, and the floor of
        // one photon bounds their error), and it streaks along the rows.
        let (n, px) = (128, 1.5);
        let fbp = FbpNoise::new(n, n, px, px, 140.0, 7, &|_: &mut Array2<f32>| {});
        let water = disc(n, px, 176.0);
        let mut petrous = water.clone();
        for j in 60..68 {
            for i in (20..50).chain(78..108) {
                petrous[[j, i]] = 1500.0;
            }
        }
        let (mut plain, mut starved) = (0.0, 0.0);
        for seed in 0..4 {
            plain += centre_stats(&fbp.slice_noise(&water, seed), px, 6.0).0;
            starved += centre_stats(&fbp.slice_noise(&petrous, seed), px, 6.0).0;
        }
        assert!(starved > 1.2 * plain, "{starved} vs {plain}");
        // Streak direction: the starved noise is correlated along i (the lateral rays), so the
        // means of row segments vary more than those of column segments (equal for isotropic
        // noise: the plain disc is the control).
        let anisotropy = |img: &Array2<f32>| {
            let (mut rows, mut cols) = (0.0, 0.0);
            for t in 52..76 {
                let r = (52..76).map(|u| img[[t, u]] as f64).sum::<f64>() / 24.0;
                let c = (52..76).map(|u| img[[u, t]] as f64).sum::<f64>() / 24.0;
                rows += r * r;
                cols += c * c;
            }
            rows / cols
        };
        let (mut a_starved, mut a_plain) = (0.0, 0.0);
        for seed in 20..28 {
            a_starved += anisotropy(&fbp.slice_noise(&petrous, seed)) / 8.0;
            a_plain += anisotropy(&fbp.slice_noise(&water, seed)) / 8.0;
        }
        assert!(
            a_starved > 2.0 && a_plain < 1.5,
            "row/column variance: starved {a_starved}, plain {a_plain}"
        );
    }
}
