//! Smooth deterministic random fields used to perturb the analytic anatomy: a tabulated field on the
//! unit sphere (shape and thickness of the vault), 3-D value noise (bone texture) and a jittered
//! cellular pattern (mastoid and ethmoid air cells with thin bony septa).
//!
//! Value noise is the classic lattice-hash + smooth interpolation construction (Perlin, "An image
//! synthesizer", SIGGRAPH 1985, describes the lattice idea); written here from that description.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// Uniform `[0, 1)` from a ChaCha stream (53 bits).
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Uniform in `[lo, hi)`.
pub fn range(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng)
}

/// SplitMix64 finaliser: a fast well-mixed 64-bit hash of `x`.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash of a lattice point to `[-1, 1]`.
fn lattice(seed: u64, x: i64, y: i64, z: i64) -> f64 {
    let h = mix64(
        seed ^ mix64((x as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7) ^ (y as u64).rotate_left(21))
            ^ (z as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
    );
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// 3-D value noise in `[-1, 1]` with unit lattice spacing (smoothstep-weighted trilinear).
pub fn value_noise(seed: u64, p: [f64; 3]) -> f64 {
    let f = [p[0].floor(), p[1].floor(), p[2].floor()];
    let t = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
    let s = t.map(|v| v * v * (3.0 - 2.0 * v));
    let (x, y, z) = (f[0] as i64, f[1] as i64, f[2] as i64);
    let mut acc = 0.0;
    for dz in 0..2 {
        let wz = if dz == 0 { 1.0 - s[2] } else { s[2] };
        for dy in 0..2 {
            let wy = if dy == 0 { 1.0 - s[1] } else { s[1] };
            for dx in 0..2 {
                let wx = if dx == 0 { 1.0 - s[0] } else { s[0] };
                acc += wx * wy * wz * lattice(seed, x + dx, y + dy, z + dz);
            }
        }
    }
    acc
}

/// Distance (in cell units, `[0, 0.5]`) from `p` to the nearest wall of a jittered cubic cell grid
/// of unit spacing: small values are on the septa between cells.
pub fn cell_wall_distance(seed: u64, p: [f64; 3]) -> f64 {
    let j = 0.35;
    let q = [
        p[0] + j * value_noise(seed ^ 1, [p[0] * 0.7, p[1] * 0.7, p[2] * 0.7]),
        p[1] + j * value_noise(seed ^ 2, [p[0] * 0.7, p[1] * 0.7, p[2] * 0.7]),
        p[2] + j * value_noise(seed ^ 3, [p[0] * 0.7, p[1] * 0.7, p[2] * 0.7]),
    ];
    q.iter()
        .map(|v| {
            let f = v - v.floor();
            f.min(1.0 - f)
        })
        .fold(f64::INFINITY, f64::min)
}

/// A smooth random function on the unit sphere, `f(u) = Σ a_n cos(w_n · u + φ_n)` with a few
/// low-frequency terms, tabulated on a `N³` grid over `[-1, 1]³` and read back trilinearly (about
/// 10 ns per evaluation instead of a dozen cosines).
#[derive(Clone, Debug)]
pub struct SphereField {
    table: Vec<f32>,
}

const N: usize = 33;

impl SphereField {
    /// `terms` random cosines with angular frequency up to `max_freq` (cycles per unit), total
    /// amplitude normalised so that `|f| <= 1`.
    pub fn new(rng: &mut ChaCha8Rng, terms: usize, max_freq: f64) -> SphereField {
        let mut waves = Vec::with_capacity(terms);
        for _ in 0..terms {
            let dir = [
                range(rng, -1.0, 1.0),
                range(rng, -1.0, 1.0),
                range(rng, -1.0, 1.0),
            ];
            let freq = range(rng, 0.5, max_freq) * std::f64::consts::PI;
            let phase = range(rng, 0.0, std::f64::consts::TAU);
            let amp = range(rng, 0.5, 1.0);
            waves.push((dir.map(|d| d * freq), phase, amp));
        }
        let norm: f64 = waves.iter().map(|w| w.2).sum::<f64>().max(1e-9);
        let mut table = Vec::with_capacity(N * N * N);
        for iz in 0..N {
            for iy in 0..N {
                for ix in 0..N {
                    let u = [ix, iy, iz].map(|i| -1.0 + 2.0 * i as f64 / (N - 1) as f64);
                    let v: f64 = waves
                        .iter()
                        .map(|(w, ph, a)| a * (w[0] * u[0] + w[1] * u[1] + w[2] * u[2] + ph).cos())
                        .sum();
                    table.push((v / norm) as f32);
                }
            }
        }
        SphereField { table }
    }

    /// Value at direction `u` (any point of `[-1, 1]³`; meant for unit vectors), in `[-1, 1]`.
    pub fn eval(&self, u: [f64; 3]) -> f64 {
        let g = u.map(|v| {
            ((v.clamp(-1.0, 1.0) + 1.0) * 0.5 * (N - 1) as f64).min((N - 1) as f64 - 1e-9)
        });
        let i = g.map(|v| v as usize);
        let t = [g[0] - i[0] as f64, g[1] - i[1] as f64, g[2] - i[2] as f64];
        let at = |x: usize, y: usize, z: usize| self.table[(z * N + y) * N + x] as f64;
        let mut acc = 0.0;
        for dz in 0..2 {
            let wz = if dz == 0 { 1.0 - t[2] } else { t[2] };
            for dy in 0..2 {
                let wy = if dy == 0 { 1.0 - t[1] } else { t[1] };
                for dx in 0..2 {
                    let wx = if dx == 0 { 1.0 - t[0] } else { t[0] };
                    acc += wx * wy * wz * at(i[0] + dx, i[1] + dy, i[2] + dz);
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn value_noise_is_bounded_and_deterministic() {
        let mut max: f64 = 0.0;
        for i in 0..1000 {
            let p = [i as f64 * 0.37, i as f64 * 0.11, -(i as f64) * 0.23];
            let v = value_noise(7, p);
            assert_eq!(v, value_noise(7, p));
            max = max.max(v.abs());
        }
        assert!(max <= 1.0 && max > 0.3, "{max}");
    }

    #[test]
    fn sphere_field_matches_its_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let f = SphereField::new(&mut rng, 6, 2.0);
        let a = f.eval([0.0, 0.0, 1.0]);
        assert!(a.abs() <= 1.0);
        assert_ne!(a, f.eval([1.0, 0.0, 0.0]));
    }
}
