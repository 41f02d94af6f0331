//! Training samples: tiles of a normalised scan with a sampled-pixel target, and augmentation.
//!
//! Dense training on tiles is the paper's patch objective with shared computation: the network
//! applied to a `(S + 32)^2` input window yields the `S^2` patch classifications of the window's
//! inner voxels at once; the loss counts only the voxels drawn by the balanced sampler (the others
//! carry the ignore index), so each step is the cross-entropy of a batch of drawn patches, exactly
//! as when they are cut out one by one (Minnema et al. 2018, §2.3; Long et al. 2015 on the
//! equivalence of patch-wise and fully convolutional training).
//!
//! Sampling (paper §2.2): only inside the per-slice rectangle enclosing the bone (dilated by a
//! margin); within a tile, `bone_fraction` of the drawn voxels are bone and the rest background
//! (0.5 = the paper's balance; lower it to shrink the models, which the paper found too large).

use ndarray::{s, Array3};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::segment::cnn::arch::HALF;
use crate::segment::cnn::normalise::Normaliser;
use crate::segment::cnn::roi::{bone_roi, Roi};

/// Target value of voxels that do not enter the loss.
pub const IGNORE: i64 = -100;

/// One training scan in memory.
pub struct ScanData {
    /// Manifest name.
    pub name: String,
    /// Normalised grey values `[k, j, i]`.
    pub image: Array3<f32>,
    /// Label `[k, j, i]`, 1 = bone.
    pub label: Array3<u8>,
    /// Per slice: the rectangle enclosing the bone, dilated (`None` = no bone in the slice).
    pub bone_rects: Vec<Option<Roi>>,
    /// The normalisation fitted to the scan (its anchors, padding value and clip range).
    pub norm: Normaliser,
    /// Position of each slice along the slice normal, mm (`dot(IPP, normal)`, PS3.3 C.7.6.2.1.1);
    /// empty when unknown, which turns the thick-slice augmentation off for this scan.
    pub slice_mm: Vec<f64>,
}

impl ScanData {
    /// Builds the per-slice bone rectangles (dilated by `margin` voxels).
    pub fn new(
        name: String,
        image: Array3<f32>,
        label: Array3<u8>,
        norm: Normaliser,
        margin: usize,
    ) -> ScanData {
        let bone_rects = (0..label.dim().0)
            .map(|k| bone_roi(label.slice(s![k, .., ..]), margin))
            .collect();
        ScanData {
            name,
            image,
            label,
            bone_rects,
            norm,
            slice_mm: Vec::new(),
        }
    }

    /// The same scan with its slice positions along the normal (mm, one per `k`); a list of
    /// another length is ignored (the thick-slice augmentation stays off).
    pub fn with_slice_positions(mut self, slice_mm: Vec<f64>) -> ScanData {
        if slice_mm.len() == self.image.dim().0 && slice_mm.iter().all(|z| z.is_finite()) {
            self.slice_mm = slice_mm;
        }
        self
    }
}

/// Sampling and augmentation settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SampleSettings {
    /// Output side of a tile, voxels (input side = this + 32).
    pub tile: usize,
    /// Drawn voxels (patches) per tile.
    pub per_tile: usize,
    /// Fraction of drawn voxels that are bone.
    pub bone_fraction: f64,
    /// Largest added noise SD, HU-equivalent (drawn uniformly in [0, this] for half the tiles).
    pub noise_hu: f32,
    /// Largest relative gain error of the grey values (0.08 = x0.92..x1.08).
    pub gain: f32,
    /// Largest offset error, normalised units.
    pub shift: f32,
    /// Largest blur sigma, voxels (applied to 30 % of tiles).
    pub blur: f32,
    /// Largest loss of contrast above soft tissue: for half the tiles every value above the
    /// soft-tissue anchor (normalised 1) is pulled towards it by a factor drawn in
    /// `[1 - bone_contrast, 1]`, as in low-density bone (osteoporotic or child skulls, phantom
    /// simulants at 500-900 HU) and in thick slices, where partial volume leaves oblique vault
    /// sections at 300-1000 HU. Labels are unchanged. 0 = off (models trained before this setting
    /// existed read back as 0).
    #[serde(default)]
    pub bone_contrast: f32,
    /// Largest simulated slice thickness, mm: for 25 % of tiles the input slice is replaced by
    /// the mean of the slices whose centres lie within a slab of thickness drawn in
    /// `[2, slab_mm]` around it. CT values are linear in attenuation, so the mean of thin slices
    /// is the partial-volume image of a thick-slice reconstruction (box profile); the target stays
    /// the central slice's label, as in the reference labels of thick-slice scans (voxel centres).
    /// Needs the scan's slice positions. 0 = off (models trained before this setting read back as 0).
    #[serde(default)]
    pub slab_mm: f32,
    /// Largest edge-enhancement weight `a`: for 20 % of tiles `x + a (x - G_s x)` with `a` in
    /// `[0, sharpen]` and `s` in `[1, 2.5]` voxels, the unsharp-mask model of sharp (bone, H70)
    /// reconstruction kernels and their edge overshoot. 0 = off (older models read back as 0).
    #[serde(default)]
    pub sharpen: f32,
}

impl Default for SampleSettings {
    fn default() -> Self {
        SampleSettings {
            tile: 64,
            per_tile: 64,
            bone_fraction: 0.5,
            noise_hu: 150.0,
            gain: 0.08,
            shift: 0.05,
            blur: 1.2,
            bone_contrast: 0.6,
            slab_mm: 10.0,
            sharpen: 0.6,
        }
    }
}

/// Small random helpers on ChaCha8 (deterministic per seed).
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// Generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
    /// Uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// One tile: `input` is `(tile + 32)^2` normalised values, `target` `tile^2` classes (0, 1 or
/// [`IGNORE`]).
pub struct Tile {
    /// Row-major input window.
    pub input: Vec<f32>,
    /// Row-major target.
    pub target: Vec<i64>,
}

/// Draws a tile from one of `scans` (see the module documentation); `None` when no scan has bone.
pub fn draw_tile<S: std::borrow::Borrow<ScanData>>(
    scans: &[S],
    set: &SampleSettings,
    rng: &mut Rng,
) -> Option<Tile> {
    let candidates: Vec<(usize, usize)> = scans
        .iter()
        .enumerate()
        .flat_map(|(n, sc)| {
            sc.borrow()
                .bone_rects
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_some())
                .map(move |(k, _)| (n, k))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (n, k) = candidates[rng.below(candidates.len())];
    let sc: &ScanData = scans[n].borrow();
    let rect = sc.bone_rects[k]?;
    let (_, rows, cols) = sc.image.dim();
    let t = set.tile;
    let (cj, ci) = (
        rect.j0 + rng.below(rect.j1 - rect.j0),
        rect.i0 + rng.below(rect.i1 - rect.i0),
    );
    let (oj, oi) = (
        cj as isize - (t / 2) as isize,
        ci as isize - (t / 2) as isize,
    );
    let side = t + 2 * HALF;
    let slab = slab_slices(sc, k, set, rng);
    let weight = 1.0 / slab.len() as f32;
    let mut input = vec![sc.norm.pad_value(); side * side];
    for r in 0..side {
        let j = oj + r as isize - HALF as isize;
        if j < 0 || j as usize >= rows {
            continue;
        }
        for c in 0..side {
            let i = oi + c as isize - HALF as isize;
            if i >= 0 && (i as usize) < cols {
                input[r * side + c] = slab
                    .iter()
                    .map(|&q| sc.image[[q, j as usize, i as usize]])
                    .sum::<f32>()
                    * weight;
            }
        }
    }
    // Candidates inside the bone rectangle, by class.
    let (mut bone, mut back) = (Vec::new(), Vec::new());
    for r in 0..t {
        let j = oj + r as isize;
        for c in 0..t {
            let i = oi + c as isize;
            if j < rect.j0 as isize
                || j >= rect.j1 as isize
                || i < rect.i0 as isize
                || i >= rect.i1 as isize
            {
                continue;
            }
            if sc.label[[k, j as usize, i as usize]] != 0 {
                bone.push(r * t + c);
            } else {
                back.push(r * t + c);
            }
        }
    }
    let want_bone = (set.per_tile as f64 * set.bone_fraction).round() as usize;
    let want_back = set.per_tile.saturating_sub(want_bone);
    let mut target = vec![IGNORE; t * t];
    for (pool, class, want) in [(&mut bone, 1, want_bone), (&mut back, 0, want_back)] {
        // Partial Fisher-Yates: the first `want` entries are a uniform draw without replacement.
        let m = want.min(pool.len());
        for a in 0..m {
            let b = a + rng.below(pool.len() - a);
            pool.swap(a, b);
            target[pool[a]] = class;
        }
    }
    augment(&mut input, side, sc, set, rng);
    let d = rng.below(8);
    Some(Tile {
        input: dihedral(&input, side, d),
        target: dihedral(&target, t, d),
    })
}

/// The slices whose mean is the tile's input: `[k]`, or for a quarter of the tiles (when
/// `slab_mm > 0` and the slice positions are known) every slice whose centre lies within half a
/// slab of thickness drawn in `[2, slab_mm]` mm of slice `k`'s.
fn slab_slices(sc: &ScanData, k: usize, set: &SampleSettings, rng: &mut Rng) -> Vec<usize> {
    if set.slab_mm <= 0.0 || sc.slice_mm.len() != sc.image.dim().0 || rng.unit() >= 0.25 {
        return vec![k];
    }
    let lo = 2.0f32.min(set.slab_mm);
    let half = 0.5 * f64::from(lo + (set.slab_mm - lo) * rng.unit());
    let z = sc.slice_mm[k];
    let slab: Vec<usize> = (0..sc.slice_mm.len())
        .filter(|&q| (sc.slice_mm[q] - z).abs() <= half + 1e-6)
        .collect();
    if slab.is_empty() {
        vec![k]
    } else {
        slab
    }
}

/// Bone contrast, gain/offset error, blur or edge enhancement, noise, then the normalisation's
/// clip (see [`SampleSettings`]).
fn augment(x: &mut [f32], side: usize, sc: &ScanData, set: &SampleSettings, rng: &mut Rng) {
    if set.bone_contrast > 0.0 && rng.unit() < 0.5 {
        let c = 1.0 - set.bone_contrast * rng.unit();
        for v in x.iter_mut().filter(|v| **v > 1.0) {
            *v = 1.0 + (*v - 1.0) * c;
        }
    }
    let gain = 1.0 + set.gain * (2.0 * rng.unit() - 1.0);
    let shift = set.shift * (2.0 * rng.unit() - 1.0);
    for v in x.iter_mut() {
        *v = *v * gain + shift;
    }
    let kernel = rng.unit();
    if kernel < 0.3 {
        if set.blur > 0.0 {
            blur(x, side, 0.4 + (set.blur - 0.4).max(0.0) * rng.unit());
        }
    } else if kernel < 0.5 && set.sharpen > 0.0 {
        let a = set.sharpen * rng.unit();
        let mut smooth = x.to_vec();
        blur(&mut smooth, side, 1.0 + 1.5 * rng.unit());
        for (v, g) in x.iter_mut().zip(&smooth) {
            *v += a * (*v - g);
        }
    }
    if rng.unit() < 0.5 && set.noise_hu > 0.0 {
        let sd = set.noise_hu * rng.unit() * sc.norm.units_per_hu();
        for v in x.iter_mut() {
            *v += sd * rng.normal();
        }
    }
    for v in x.iter_mut() {
        *v = v.clamp(sc.norm.lo, sc.norm.hi);
    }
}

/// Separable Gaussian blur of a `side x side` image (edges clamped).
fn blur(x: &mut [f32], side: usize, sigma: f32) {
    let r = (2.5 * sigma).ceil() as isize;
    let w: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = w.iter().sum();
    let mut tmp = vec![0f32; x.len()];
    for pass in 0..2 {
        for a in 0..side {
            for b in 0..side {
                let mut acc = 0.0;
                for (n, wt) in w.iter().enumerate() {
                    let o = (b as isize + n as isize - r).clamp(0, side as isize - 1) as usize;
                    acc += wt
                        * if pass == 0 {
                            x[a * side + o]
                        } else {
                            x[o * side + a]
                        };
                }
                if pass == 0 {
                    tmp[a * side + b] = acc / sum;
                } else {
                    x[b * side + a] = acc / sum;
                }
            }
        }
        if pass == 0 {
            x.copy_from_slice(&tmp);
        }
    }
}

/// One of the 8 flips/rotations of a square `side x side` image.
fn dihedral<T: Copy>(x: &[T], side: usize, d: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for r in 0..side {
        for c in 0..side {
            let (mut a, mut b) = if d & 4 != 0 { (c, r) } else { (r, c) };
            if d & 1 != 0 {
                a = side - 1 - a;
            }
            if d & 2 != 0 {
                b = side - 1 - b;
            }
            out.push(x[a * side + b]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn scan() -> ScanData {
        let label = Array3::from_shape_fn((2, 80, 80), |(k, j, i)| {
            u8::from(k == 1 && (30..40).contains(&j) && (20..60).contains(&i))
        });
        let image = label.mapv(|v| if v == 1 { 2.0 } else { 1.0 });
        let hu = image.mapv(|v| if v == 2.0 { 1000.0 } else { -1000.0 });
        let mut norm = Normaliser::fit(Default::default(), hu.view()).unwrap();
        norm.lo = -0.5;
        ScanData::new("t".into(), image, label, norm.identity(), 8)
    }

    #[test]
    fn tiles_are_balanced_and_targets_match_the_label() {
        let sc = [scan()];
        assert!(sc[0].bone_rects[0].is_none());
        let set = SampleSettings {
            noise_hu: 0.0,
            gain: 0.0,
            shift: 0.0,
            blur: 0.0,
            bone_contrast: 0.0,
            sharpen: 0.0,
            ..SampleSettings::default()
        };
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let t = draw_tile(&sc, &set, &mut rng).unwrap();
            let side = set.tile + 32;
            assert_eq!(t.input.len(), side * side);
            let bone = t.target.iter().filter(|&&v| v == 1).count();
            let back = t.target.iter().filter(|&&v| v == 0).count();
            assert!(bone <= 32 && back <= 32 && back > 0, "{bone} {back}");
            // Every drawn voxel's class equals the centre value of its own patch (2 = bone).
            for r in 0..set.tile {
                for c in 0..set.tile {
                    let v = t.target[r * set.tile + c];
                    if v != IGNORE {
                        let x = t.input[(r + 16) * side + c + 16];
                        assert_eq!(v == 1, x == 2.0);
                    }
                }
            }
        }
    }

    #[test]
    fn bone_contrast_dims_bone_towards_tissue_in_half_the_tiles() {
        let sc = scan();
        let set = SampleSettings {
            noise_hu: 0.0,
            gain: 0.0,
            shift: 0.0,
            blur: 0.0,
            bone_contrast: 0.6,
            sharpen: 0.0,
            ..SampleSettings::default()
        };
        let mut rng = Rng::new(11);
        let (mut dimmed, n) = (0, 200);
        for _ in 0..n {
            // Air 0, tissue 1, bone 2 (the scan's normalised anchors).
            let mut x = vec![0.0f32, 1.0, 2.0, 2.0];
            augment(&mut x, 2, &sc, &set, &mut rng);
            assert_eq!(&x[..2], &[0.0, 1.0], "air and tissue are not changed");
            assert_eq!(x[2], x[3], "one factor per tile");
            assert!(
                (1.4..=2.0).contains(&x[2]),
                "bone {} outside 1 + [0.4, 1]",
                x[2]
            );
            dimmed += usize::from(x[2] < 2.0);
        }
        assert!(
            (70..=130).contains(&dimmed),
            "{dimmed} of {n} tiles dimmed, about half expected"
        );
    }

    #[test]
    fn thick_slice_tiles_average_the_slices_of_a_slab_around_the_centre() {
        // 12 slices 1 mm apart, slice q filled with the value q; bone in slices 3..=8, so that
        // every slab (at most 3 slices either side) lies inside the scan.
        let label = Array3::from_shape_fn((12, 80, 80), |(q, j, i)| {
            u8::from((3..9).contains(&q) && (30..40).contains(&j) && (20..60).contains(&i))
        });
        let image = Array3::from_shape_fn((12, 80, 80), |(q, _, _)| q as f32);
        let hu = label.mapv(|v| if v == 1 { 1000.0f32 } else { -1000.0 });
        let norm = Normaliser::fit(Default::default(), hu.view()).unwrap();
        let sc = ScanData::new("z".into(), image, label, norm.identity(), 8);
        let set = SampleSettings {
            slab_mm: 6.0,
            ..SampleSettings::default()
        };
        let mut rng = Rng::new(5);
        assert_eq!(
            slab_slices(&sc, 6, &set, &mut rng),
            vec![6],
            "positions unknown: off"
        );
        let sc = sc.with_slice_positions((0..12).map(|q| 30.0 - 1.0 * q as f64).collect());
        let (mut thick, n) = (0, 400);
        for _ in 0..n {
            let slab = slab_slices(&sc, 6, &set, &mut rng);
            // Contiguous around 6, at most 3 mm either side (slab <= 6 mm), at least 1 mm.
            assert!(slab.contains(&6) && slab.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(slab.len() == 1 || (3..=7).contains(&slab.len()), "{slab:?}");
            assert_eq!(slab.len() % 2, 1, "symmetric: {slab:?}");
            thick += usize::from(slab.len() > 1);
        }
        assert!(
            (70..=130).contains(&thick),
            "{thick} of {n} thick, a quarter expected"
        );
        // The tile's input is the mean of the slab (no noise, gain, kernel or contrast change).
        let quiet = SampleSettings {
            noise_hu: 0.0,
            gain: 0.0,
            shift: 0.0,
            blur: 0.0,
            bone_contrast: 0.0,
            sharpen: 0.0,
            slab_mm: 6.0,
            ..SampleSettings::default()
        };
        let mut values = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let t = draw_tile(&[&sc], &quiet, &mut rng).unwrap();
            let centre = t.input[(quiet.tile / 2 + 16) * (quiet.tile + 32) + quiet.tile / 2 + 16];
            values.insert((centre * 1000.0).round() as i64);
        }
        // Single slices give their index; a slab centred on slice q also averages to q.
        assert!(values.iter().all(|v| v % 1000 == 0), "{values:?}");
    }

    #[test]
    fn edge_enhancement_overshoots_a_step_in_a_fifth_of_the_tiles() {
        let sc = scan();
        let set = SampleSettings {
            noise_hu: 0.0,
            gain: 0.0,
            shift: 0.0,
            blur: 0.0,
            bone_contrast: 0.0,
            sharpen: 0.6,
            ..SampleSettings::default()
        };
        let side = 16;
        let step: Vec<f32> = (0..side * side)
            .map(|n| if n % side < side / 2 { 1.0 } else { 2.0 })
            .collect();
        let mut rng = Rng::new(3);
        let (mut sharp, n) = (0, 500);
        for _ in 0..n {
            let mut x = step.clone();
            augment(&mut x, side, &sc, &set, &mut rng);
            let top = x.iter().cloned().fold(f32::MIN, f32::max);
            let bottom = x.iter().cloned().fold(f32::MAX, f32::min);
            // Overshoot on the bright side mirrors the undershoot on the dark side; far from the
            // edge the values are kept.
            assert!((top - 2.0 - (1.0 - bottom)).abs() < 1e-4, "{top} {bottom}");
            assert!(top <= 2.0 + 0.6 * 0.5 + 1e-4, "overshoot {top} beyond a/2");
            assert_eq!(x[0], 1.0);
            sharp += usize::from(top > 2.0 + 1e-3);
        }
        assert!(
            (70..=130).contains(&sharp),
            "{sharp} of {n} sharpened, a fifth expected"
        );
        let mut x = step.clone();
        let off = SampleSettings {
            sharpen: 0.0,
            ..set
        };
        for _ in 0..50 {
            augment(&mut x, side, &sc, &off, &mut rng);
        }
        assert_eq!(x, step, "sharpen 0 leaves the tile as it is");
    }

    #[test]
    fn dihedral_is_a_permutation() {
        let x: Vec<u32> = (0..9).collect();
        assert_eq!(dihedral(&x, 3, 0), x);
        assert_eq!(dihedral(&x, 3, 1), vec![6, 7, 8, 3, 4, 5, 0, 1, 2]);
        assert_eq!(dihedral(&x, 3, 4), vec![0, 3, 6, 1, 4, 7, 2, 5, 8]);
    }
}
