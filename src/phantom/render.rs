//! Image formation of a virtual scanner on the partial-volume HU image: metal streaks and
//! beam-hardening cupping (reconstruction artefacts, before the PSF), in-plane point-spread function
//! (Gaussian, with a difference-of-Gaussians edge overshoot for sharp kernels), slice profile along
//! `k`, textured noise (white Gaussian noise band-pass filtered, scaled to the profile's SD; lower in
//! air; or, for profiles with projection noise, photon counts on the rays reconstructed by
//! filtered back-projection, [`super::fbp_noise`]), HU calibration (scale, offset) and the scanner's value range (`min_hu`..`max_hu`).
//!
//! Deterministic: the noise of slice `k` comes from a ChaCha8 stream seeded by (seed, profile, k),
//! so the result does not depend on the thread count.

use ndarray::{Array2, Array3, ArrayViewMut1, Axis};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use super::anatomy::{Head, Material};
use super::fbp_noise::FbpNoise;
use super::scanner::ScannerProfile;
use crate::dicom::geometry::Geometry;

/// Normalised Gaussian kernel with standard deviation `sigma` (samples), radius `ceil(3 sigma)`.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    if sigma < 1e-3 {
        return vec![1.0];
    }
    let r = (3.0 * sigma).ceil() as i64;
    let mut k: Vec<f64> = (-r..=r)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k.into_iter().map(|v| v as f32).collect()
}

/// Convolves a 1-D lane in place with `kernel` (edge values repeated).
fn convolve_lane(mut lane: ArrayViewMut1<f32>, kernel: &[f32], buf: &mut Vec<f32>) {
    if kernel.len() <= 1 {
        return;
    }
    let n = lane.len();
    let r = kernel.len() / 2;
    buf.clear();
    buf.extend(lane.iter().copied());
    for x in 0..n {
        let mut acc = 0f32;
        for (t, w) in kernel.iter().enumerate() {
            let idx = (x + t).saturating_sub(r).min(n - 1);
            acc += w * buf[idx];
        }
        lane[x] = acc;
    }
}

/// Separable in-plane Gaussian blur of one slice (`sigma_px`: sigma in pixels).
pub fn blur2(slice: &mut Array2<f32>, sigma_px: f64) {
    let k = gaussian_kernel(sigma_px);
    let mut buf = Vec::new();
    for lane in slice.lanes_mut(Axis(1)) {
        convolve_lane(lane, &k, &mut buf);
    }
    for lane in slice.lanes_mut(Axis(0)) {
        convolve_lane(lane, &k, &mut buf);
    }
}

/// In-plane PSF `(1 + a) G(σ) - a G(2.5 σ)` applied to one slice.
fn psf(slice: &mut Array2<f32>, sigma_px: f64, overshoot: f64) {
    if overshoot <= 0.0 {
        blur2(slice, sigma_px);
        return;
    }
    let mut wide = slice.clone();
    blur2(slice, sigma_px);
    blur2(&mut wide, 2.5 * sigma_px);
    let a = overshoot as f32;
    slice.zip_mut_with(&wide, |s, w| *s = (1.0 + a) * *s - a * *w);
}

/// Standard normal samples (Box-Muller) from `rng`.
fn normal_pair(rng: &mut ChaCha8Rng) -> (f32, f32) {
    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let r = (-2.0 * u1.ln()).sqrt();
    let t = std::f64::consts::TAU * u2;
    ((r * t.cos()) as f32, (r * t.sin()) as f32)
}

/// Unit-SD textured noise for one slice: white noise filtered by `G(σ) - 0.5 G(3σ)` (a band-pass
/// like the ramp-filtered noise of filtered back-projection), renormalised to SD 1.
fn noise_slice(seed: u64, rows: usize, cols: usize, grain_px: f64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = Array2::<f32>::zeros((rows, cols));
    let mut it = n.iter_mut();
    loop {
        let (a, b) = normal_pair(&mut rng);
        match (it.next(), it.next()) {
            (Some(x), Some(y)) => {
                *x = a;
                *y = b;
            }
            (Some(x), None) => {
                *x = a;
                break;
            }
            _ => break,
        }
    }
    let mut wide = n.clone();
    blur2(&mut n, grain_px);
    blur2(&mut wide, 3.0 * grain_px);
    n.zip_mut_with(&wide, |s, w| *s -= 0.5 * *w);
    let len = n.len().max(1) as f64;
    let mean = n.iter().map(|&v| v as f64).sum::<f64>() / len;
    let sd = (n.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len).sqrt();
    let s = if sd > 0.0 { (1.0 / sd) as f32 } else { 0.0 };
    n.mapv_inplace(|v| (v - mean as f32) * s);
    n
}

/// Cross-section of one streak at distance `perp` (mm) from its centre line, for a band of
/// corrupted rays of Gaussian width `width` (mm): `1.5 G(w) - 0.5 G(3 w)` with unit peaks, i.e. 1
/// on the line and negative side lobes (minimum -0.294 at 2.72 w) with zero integral. Filtered
/// back-projection ramp-filters each projection (Kak & Slaney, *Principles of Computerized
/// Tomographic Imaging*, 1988, ch. 3), and the ramp filter passes no DC: the filtered error of a
/// band of rays that read too much attenuation is a dip with positive side lobes, so a dark streak
/// is flanked by bright ones (and a bright one by dark ones) — the dark-and-bright streak pairs
/// beside metal of Barrett & Keat (*RadioGraphics* 24:1679-1691, 2004) and of the simulations of
/// De Man et al. (*IEEE Trans Nucl Sci* 46:691-696, 1999). The ramp-filtered Gaussian itself,
/// `1 - sqrt(2) x D(x / sqrt(2))` (D: Dawson's integral, x in sigmas), has its minimum -0.285 at
/// 2.1 sigma and 1/x^2 tails; this difference of Gaussians matches that lobe and stays compact.
pub fn streak_profile(perp: f64, width: f64) -> f64 {
    let u = perp * perp / (2.0 * width * width);
    1.5 * (-u).exp() - 0.5 * (-u / 9.0).exp()
}

/// Adds metal streaks to slice `k`: for each metal object crossing the slab, a dark streak along
/// the object's in-plane long axis (the longest path through the metal: the strongest beam
/// hardening and photon starvation; its depth scales with that path relative to the diameter,
/// up to x2, since the error of a ray's log-attenuation grows at least linearly with the metal's
/// line integral: De Man et al. 1999) and a fan of dark and bright streaks through it (random
/// angles from the seed), plus a dark band between two metal objects of the same slice (rays
/// through both starve: Boas & Fleischmann, "CT artifacts: causes and reduction techniques",
/// *Imaging Med* 4(2):229-240, 2012; Barrett & Keat, "Artifacts in CT: recognition and
/// avoidance", *RadioGraphics* 24:1679-1691, 2004). Every streak and band has the zero-integral
/// cross-section of [`streak_profile`] (bright flanks beside dark streaks).
///
/// A streak is the back-projection of the corrupted rays, i.e. of the band of rays that cross the
/// metal, so its width is the object's projected width: Gaussian sigma `0.85 r` (FWHM = the
/// diameter `2 r`), widening by 1.5 % of the distance; back-projection spreads a ray's error
/// along the whole ray, so the streak does not fade with distance except by that widening (peak x
/// `w0 / width`: the same error over a wider band). Its amplitude is the
/// profile's `streak_hu` (hypodense streaks of several hundred to over 1000 HU next to dental
/// fillings: Gong et al., *Dentomaxillofac Radiol* 42:20120105, 2013, who measured the most
/// hypodense streak beside fillings; Klinke et al., *PLoS One* 7:e31766, 2012).
fn streaks(slice: &mut Array2<f32>, g: &Geometry, k: usize, head: &Head, prof: &ScannerProfile) {
    let normal = g.normal();
    let plane = g.ipp[k];
    let half = 0.5 * prof.slice_thickness_mm.max(g.nominal_slice_spacing());
    // (centre, weight, seed, radius mm, in-plane axis (LPS) when the object is elongated in-plane)
    let mut centres: Vec<([f64; 3], f64, u64, f64, [f64; 3])> = Vec::new();
    for (n, m) in head.metal.iter().enumerate() {
        let (a, b) = (head.to_lps(m.a), head.to_lps(m.b));
        let da = (0..3).map(|x| (a[x] - plane[x]) * normal[x]).sum::<f64>();
        let db = (0..3).map(|x| (b[x] - plane[x]) * normal[x]).sum::<f64>();
        let r = m.radius_mm * head.scale;
        if da.min(db) > half + r || da.max(db) < -half - r {
            continue;
        }
        let t = if (db - da).abs() > 1e-9 {
            (-da / (db - da)).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let c = crate::dicom::geometry::lerp(a, b, t);
        let weight = if m.kind == "plate" { 0.3 } else { 1.0 } * (r / 1.5).min(1.5);
        let axis = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        centres.push((
            c,
            weight,
            head.seed.wrapping_mul(31).wrapping_add(n as u64),
            r,
            axis,
        ));
    }
    if centres.is_empty() {
        return;
    }
    let (rd, cd) = (g.row_dir(), g.col_dir());
    let (di, dj) = (g.pixel_spacing[1], g.pixel_spacing[0]);
    let amp = prof.streak_hu as f32;
    let in_plane = |p: [f64; 3]| {
        let rel = [p[0] - plane[0], p[1] - plane[1], p[2] - plane[2]];
        (
            rel[0] * rd[0] + rel[1] * rd[1] + rel[2] * rd[2],
            rel[0] * cd[0] + rel[1] * cd[1] + rel[2] * cd[2],
        )
    };
    for (c, weight, s, radius, axis) in &centres {
        let mut rng = ChaCha8Rng::seed_from_u64(*s);
        let mut lines: Vec<(f64, f32)> = (0..14)
            .map(|_| {
                let ang =
                    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * std::f64::consts::PI;
                let w = if rng.next_u32() % 3 == 0 { 0.6 } else { -1.0 };
                (ang, w)
            })
            .collect();
        // The long axis projected into the slice plane: when it is longer there than the
        // object is wide, the path through the metal is longest along it.
        let (ax, ay) = (
            axis[0] * rd[0] + axis[1] * rd[1] + axis[2] * rd[2],
            axis[0] * cd[0] + axis[1] * cd[1] + axis[2] * cd[2],
        );
        // Path through the metal along the axis (length + 2 r) against the diameter 2 r.
        let len = (ax * ax + ay * ay).sqrt();
        if len > *radius {
            let path = ((len + 2.0 * radius) / (2.0 * radius)).min(2.0) as f32;
            lines.push((ay.atan2(ax), -path));
        }
        let (cx, cy) = in_plane(*c);
        let (ci, cj) = (cx / di, cy / dj);
        let w0 = 0.85 * radius;
        for ((j, i), v) in slice.indexed_iter_mut() {
            let (x, y) = ((i as f64 - ci) * di, (j as f64 - cj) * dj);
            let r = (x * x + y * y).sqrt();
            if r < *radius {
                continue;
            }
            let width = w0 + 0.015 * r;
            let mut acc = 0f32;
            for (ang, w) in &lines {
                let perp = x * ang.sin() - y * ang.cos();
                // Beyond 12 widths the profile is below 2e-4 of the streak: not evaluated.
                if perp.abs() < 12.0 * width {
                    acc += w * streak_profile(perp, width) as f32;
                }
            }
            *v += amp * *weight as f32 * acc * (w0 / width) as f32;
        }
    }
    for a in 0..centres.len() {
        for b in a + 1..centres.len() {
            let (pa, pb) = (centres[a].0, centres[b].0);
            // The rays through both objects carry both objects' errors: the band is as deep as
            // their two streaks together, and as wide as the narrower object.
            let w = 0.85 * centres[a].3.min(centres[b].3);
            let depth = amp * (centres[a].1 + centres[b].1) as f32;
            for ((j, i), v) in slice.indexed_iter_mut() {
                let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
                let (d, t) = crate::phantom::anatomy::segment_distance(p, pa, pb);
                if t > 0.0 && t < 1.0 && d < 12.0 * w {
                    *v -= depth * streak_profile(d, w) as f32;
                }
            }
        }
    }
}

/// Applies the scanner model to the partial-volume image `hu` (in place) and returns it.
/// `material`: centre materials (for the lower noise in air); `noise_seed`: the stream seed.
pub fn render(
    mut hu: Array3<f32>,
    material: &Array3<u8>,
    g: &Geometry,
    head: &Head,
    prof: &ScannerProfile,
    noise_seed: u64,
) -> Array3<f32> {
    let (di, dj) = (g.pixel_spacing[1], g.pixel_spacing[0]);
    let px = 0.5 * (di + dj);
    let head_radius = 80.0 * head.scale;
    let air = Material::Air as u8;
    let foam = Material::Foam as u8;
    // Artefacts and in-plane PSF, per slice.
    hu.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut s)| {
            let mut slice = s.to_owned();
            streaks(&mut slice, g, k, head, prof);
            if prof.cupping_hu != 0.0 {
                let c = head.center_lps;
                for ((j, i), v) in slice.indexed_iter_mut() {
                    if *v < -500.0 {
                        continue;
                    }
                    let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
                    let r2 = ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)) / head_radius.powi(2);
                    *v -= (prof.cupping_hu * (1.0 - r2).max(0.0)) as f32;
                }
            }
            psf(&mut slice, prof.psf_sigma_mm / px, prof.overshoot);
            s.assign(&slice);
        });
    // Slice profile along k.
    let spacing = g.nominal_slice_spacing();
    let var = (prof.slice_thickness_mm / 2.355).powi(2) - spacing * spacing / 12.0;
    if var > 1e-6 {
        let kern = gaussian_kernel(var.sqrt() / spacing);
        if kern.len() > 1 {
            let mut lanes: Vec<_> = hu.lanes_mut(Axis(0)).into_iter().collect();
            lanes.par_iter_mut().for_each_init(Vec::new, |buf, lane| {
                convolve_lane(lane.view_mut(), &kern, buf)
            });
        }
    }
    // Noise, calibration and range.
    let (rows, cols) = (g.rows, g.cols);
    let lo = prof.min_hu as f32;
    let hi = prof.max_hu as f32;
    let apodize = |n: &mut Array2<f32>| psf(n, prof.psf_sigma_mm / px, prof.overshoot);
    let fbp = prof.projection_noise.then(|| {
        let cal_seed = crate::phantom::anatomy::field::mix64(noise_seed ^ 0x0fb9_0ca1);
        let f = FbpNoise::new(rows, cols, di, dj, prof.noise_sd_hu, cal_seed, &apodize);
        tracing::debug!(
            i0 = f.i0(),
            photons_at_reference = f.photons_at_reference(),
            "projection noise calibrated"
        );
        f
    });
    hu.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(material.axis_iter(Axis(0)).into_par_iter())
        .enumerate()
        .for_each(|(k, (mut s, m))| {
            let seed = crate::phantom::anatomy::field::mix64(noise_seed ^ (k as u64 + 1));
            let scale = prof.hu_scale as f32;
            let offset = prof.hu_offset as f32;
            if let Some(fbp) = &fbp {
                // Photon counts on the rays of this slice, reconstructed: the noise follows the
                // rays through each pixel, whatever the pixel holds.
                let mut n = fbp.slice_noise(&s.to_owned(), seed);
                apodize(&mut n);
                s.zip_mut_with(&n, |v, &e| *v = (scale * (*v + e) + offset).clamp(lo, hi));
                return;
            }
            let n = noise_slice(seed, rows, cols, prof.noise_grain_mm / px);
            let sd_body = prof.noise_sd_hu as f32;
            let sd_air = sd_body * prof.air_noise_ratio as f32;
            ndarray::Zip::from(&mut s)
                .and(&n)
                .and(&m)
                .for_each(|v, &e, &mat| {
                    let sd = if mat == air || mat == foam {
                        sd_air
                    } else {
                        sd_body
                    };
                    *v = (scale * (*v + sd * e) + offset).clamp(lo, hi);
                });
        });
    hu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_normalised() {
        let k = gaussian_kernel(1.3);
        assert_eq!(k.len(), 9);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn noise_slice_has_unit_sd_and_is_reproducible() {
        let a = noise_slice(9, 64, 64, 1.0);
        let b = noise_slice(9, 64, 64, 1.0);
        assert_eq!(a, b);
        let sd = (a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        assert!((sd - 1.0).abs() < 1e-3, "{sd}");
    }

    #[test]
    fn streak_profile_has_a_unit_dip_bright_flanks_and_zero_integral() {
        assert!((streak_profile(0.0, 1.0) - 1.0).abs() < 1e-12);
        let u = (9.0f64 / 4.0 * 27f64.ln()).sqrt(); // minimum at x = 2.72 w
        assert!((u - 2.723).abs() < 1e-3, "{u}");
        let m = streak_profile(u, 1.0);
        assert!((m + 0.2944).abs() < 1e-4, "{m}");
        assert!(streak_profile(u - 0.05, 1.0) > m && streak_profile(u + 0.05, 1.0) > m);
        let sum: f64 = (-8000..=8000)
            .map(|x| streak_profile(x as f64 * 0.005, 1.0) * 0.005)
            .sum();
        assert!(sum.abs() < 1e-6, "integral {sum}");
    }

    #[test]
    fn overshoot_kernel_rings_at_an_edge() {
        let mut s = Array2::<f32>::zeros((8, 40));
        s.slice_mut(ndarray::s![.., 20..]).fill(1000.0);
        psf(&mut s, 1.0, 0.4);
        let max = s.iter().cloned().fold(f32::MIN, f32::max);
        assert!(max > 1030.0, "overshoot {max}");
    }
}
