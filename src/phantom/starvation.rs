//! Non-stationary quantum noise: the noise SD of a pixel after filtered back-projection follows the
//! attenuation of the rays through it. A ray with line integral `L` reaches the detector with
//! `I0 exp(-L)` photons, so its log-signal has variance `~ exp(L) / I0`; back-projection averages the
//! variances of the rays through a pixel over the views (Kak & Slaney, *Principles of Computerized
//! Tomographic Imaging*, ch. 5, noise in reconstructed images; Hsieh, *Computed Tomography*, 2nd ed.,
//! §5.3: photon starvation behind the petrous bones and shoulders). Here the variance factor of a
//! pixel is the mean over [`VIEWS`] parallel views of `exp(L - L_REF)`, with the line integrals
//! computed on the noise-free slice by pixel-driven projection; its square root scales the noise
//! SD. `L_REF` is the attenuation of a ray through the middle of an adult head at brain level, so
//! the profile's noise SD is that of the brain there; the skull base (lateral rays through both
//! petrous bones) and rays along the vault come out noisier, the periphery less noisy.

use ndarray::Array2;

/// Number of parallel views over 180 degrees.
pub const VIEWS: usize = 12;

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

/// Noise SD factor of every pixel of `slice` (true HU, `[j, i]`, pixel size `di` x `dj` mm),
/// clamped to `[0.3, 3]`.
pub fn noise_factor(slice: &Array2<f32>, di: f64, dj: f64) -> Array2<f32> {
    let (rows, cols) = slice.dim();
    let bin = di.min(dj).max(1e-6);
    let diag = ((rows as f64 * dj).powi(2) + (cols as f64 * di).powi(2)).sqrt();
    let nbins = (diag / bin).ceil() as usize + 3;
    let half = nbins as f64 / 2.0;
    let (cx, cy) = (cols as f64 * di / 2.0, rows as f64 * dj / 2.0);
    let area = di * dj;
    let mut var = Array2::<f64>::zeros((rows, cols));
    let mut proj = vec![0f64; nbins];
    for v in 0..VIEWS {
        let th = v as f64 * std::f64::consts::PI / VIEWS as f64;
        let (c, s) = (th.cos(), th.sin());
        // Linear splatting into detector bins (and linear interpolation back), which avoids the
        // aliasing of nearest-bin pixel-driven projection.
        let bin_of = |j: usize, i: usize| {
            let t = (i as f64 * di - cx) * c + (j as f64 * dj - cy) * s;
            let b = (t / bin + half).clamp(0.0, (nbins - 2) as f64);
            let b0 = b.floor();
            (b0 as usize, b - b0)
        };
        proj.iter_mut().for_each(|p| *p = 0.0);
        for ((j, i), &h) in slice.indexed_iter() {
            let mu = MU_WATER_PER_MM * (1.0 + h as f64 / 1000.0).max(0.0);
            let (b, w) = bin_of(j, i);
            proj[b] += (1.0 - w) * mu * area / bin;
            proj[b + 1] += w * mu * area / bin;
        }
        let e: Vec<f64> = proj.iter().map(|l| (l - L_REF).min(4.0).exp()).collect();
        for ((j, i), x) in var.indexed_iter_mut() {
            let (b, w) = bin_of(j, i);
            *x += (1.0 - w) * e[b] + w * e[b + 1];
        }
    }
    var.mapv(|x| ((x / VIEWS as f64).sqrt() as f32).clamp(0.3, 3.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_disc_is_noisier_in_the_centre_and_bone_adds_noise() {
        // 170 mm water disc on 1 mm pixels: central rays have L = 170 mu_w, below L_REF.
        let n = 200;
        let disc = Array2::from_shape_fn((n, n), |(j, i)| {
            let (x, y) = (i as f64 - 100.0, j as f64 - 100.0);
            if x * x + y * y < 85.0 * 85.0 {
                0.0f32
            } else {
                -1000.0
            }
        });
        let f = noise_factor(&disc, 1.0, 1.0);
        let (centre, edge) = (f[[100, 100]], f[[100, 180]]);
        assert!(centre > edge, "{centre} {edge}");
        let expect = ((170.0 * MU_WATER_PER_MM - L_REF).exp()).sqrt() as f32;
        assert!(
            (centre - expect).abs() < 0.1 * expect,
            "{centre} vs {expect}"
        );
        // Two dense bone blocks left and right of the centre: lateral rays starve.
        let mut petrous = disc.clone();
        for j in 95..105 {
            for i in (40..70).chain(130..160) {
                petrous[[j, i]] = 1500.0;
            }
        }
        let g = noise_factor(&petrous, 1.0, 1.0);
        assert!(
            g[[100, 100]] > 1.1 * centre,
            "{} vs {centre}",
            g[[100, 100]]
        );
    }
}
