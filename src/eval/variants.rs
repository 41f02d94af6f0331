//! Degraded copies of a scan that test robustness (issue 4: "low-dose and cone-beam-like variants
//! of held-out scans"): the same anatomy and label, other grey values.
//!
//! * [`Variant::LowDose`]: white Gaussian noise of a given SD (HU) added to every voxel; with the
//!   scanner's own noise (10-30 HU at standard dose) the total SD lands in the low-dose range of
//!   90-150 HU in soft tissue (a quarter of the dose doubles the noise SD; noise SD ∝ 1/√mAs).
//! * [`Variant::LinearShift`]: grey values `scale × HU + shift`, as cone-beam CT and badly
//!   calibrated scanners give (values no longer HU; a fixed HU threshold then misplaces the bone
//!   edge or takes soft tissue for bone).

use ndarray::{Array3, Axis};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

/// A grey-value degradation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Variant {
    /// Add N(0, `sd_hu`²) to every voxel; `seed` makes it reproducible (slice `k` draws from
    /// `seed + k`).
    LowDose {
        /// Noise SD, HU.
        sd_hu: f32,
        /// Seed.
        seed: u64,
    },
    /// `scale × value + shift`.
    LinearShift {
        /// Gain.
        scale: f32,
        /// Offset (grey-value units).
        shift: f32,
    },
}

impl Variant {
    /// The variants of the issue: added noise at both ends and the middle of the low-dose range
    /// (90, 120 and 150 HU; 120 HU first, as before the ends were added), and 0.75 × HU + 200.
    pub const STANDARD: [Variant; 4] = [
        Variant::LowDose {
            sd_hu: 120.0,
            seed: 3,
        },
        Variant::LowDose {
            sd_hu: 90.0,
            seed: 4,
        },
        Variant::LowDose {
            sd_hu: 150.0,
            seed: 5,
        },
        Variant::LinearShift {
            scale: 0.75,
            shift: 200.0,
        },
    ];

    /// Short name for tables: `low-dose+120HU`, `x0.75+200`.
    pub fn name(&self) -> String {
        match self {
            Variant::LowDose { sd_hu, .. } => format!("low-dose+{sd_hu:.0}HU"),
            Variant::LinearShift { scale, shift } => format!("x{scale}{shift:+.0}"),
        }
    }

    /// Applies the variant to grey values `hu` (`[k, j, i]`, e.g. `CtVolume::hu`) in place.
    pub fn apply(&self, hu: &mut Array3<f32>) {
        match *self {
            Variant::LowDose { sd_hu, seed } => {
                hu.axis_iter_mut(Axis(0))
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(k, mut slice)| {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
                        let mut unit =
                            || ((rng.next_u32() >> 8) as f32 + 0.5) / (1u32 << 24) as f32;
                        for v in slice.iter_mut() {
                            // Box-Muller.
                            let (u1, u2) = (unit(), unit());
                            let n = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                            *v += sd_hu * n;
                        }
                    });
            }
            Variant::LinearShift { scale, shift } => {
                hu.par_mapv_inplace(|v| scale * v + shift);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: f32) -> Array3<f32> {
        Array3::from_elem((4, 64, 64), v)
    }

    #[test]
    fn low_dose_adds_noise_of_the_asked_sd_reproducibly() {
        let mut a = flat(40.0);
        let mut b = flat(40.0);
        Variant::STANDARD[0].apply(&mut a);
        Variant::STANDARD[0].apply(&mut b);
        assert_eq!(a, b);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let sd = (a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - 40.0).abs() < 3.0, "mean {mean}");
        assert!((sd - 120.0).abs() < 3.0, "sd {sd}");
        // The ends of the low-dose range.
        for (v, want) in [(1, 90.0), (2, 150.0)] {
            let mut c = flat(40.0);
            Variant::STANDARD[v].apply(&mut c);
            let sd = (c.iter().map(|&x| (x as f64 - 40.0).powi(2)).sum::<f64>() / n).sqrt();
            assert!((sd - want).abs() < 3.0, "variant {v}: sd {sd}");
        }
    }

    #[test]
    fn linear_shift_maps_bone_threshold_below_soft_tissue_contrast() {
        let mut ct = flat(226.0);
        Variant::STANDARD[3].apply(&mut ct);
        assert!(ct.iter().all(|&v| (v - 369.5).abs() < 1e-3));
        let names: Vec<String> = Variant::STANDARD.iter().map(Variant::name).collect();
        assert_eq!(
            names,
            [
                "low-dose+120HU",
                "low-dose+90HU",
                "low-dose+150HU",
                "x0.75+200"
            ]
        );
    }
}
