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
use crate::segment::cnn::planes::{input_planes, Neighbours, PlaneMix};
use crate::segment::cnn::roi::{bone_roi, Roi};

use super::augment::{augment, bilinear, slab_slices, zoom_factor};

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
    /// is the partial-volume image of a thick-slice reconstruction (box profile); the target is
    /// the central slice's label or the slab's occupancy ([`SampleSettings::slab_label`]).
    /// Needs the scan's slice positions. 0 = off (models trained before this setting read back as 0).
    #[serde(default)]
    pub slab_mm: f32,
    /// Largest edge-enhancement weight `a`: for 20 % of tiles `x + a (x - G_s x)` with `a` in
    /// `[0, sharpen]` and `s` in `[1, 2.5]` voxels, the unsharp-mask model of sharp (bone, H70)
    /// reconstruction kernels and their edge overshoot. 0 = off (older models read back as 0).
    #[serde(default)]
    pub sharpen: f32,
    /// Largest in-plane scale factor: for half the tiles the tile's pixel pitch is the scan's
    /// times a factor drawn log-uniformly in `[1/zoom, zoom]` (bilinear resampling of the image,
    /// label = bilinear label >= 0.5), so that one model serves pixel spacings from about 0.3 to
    /// 0.7 mm (head FOVs of 160-360 mm at 512 x 512). <= 1 = off (older models read back as 0).
    #[serde(default)]
    pub zoom: f32,
    /// How a tile's slice is drawn: uniformly over every slice with bone of every scan
    /// ([`Draw::Slice`], so a 41-slice 5 mm scan weighs an eighth of a 328-slice thin one), or
    /// a scan first, uniformly, then one of its slices ([`Draw::Scan`]: every scan, thick or thin,
    /// gets the same share of tiles). Models trained before this setting read back as `Slice`.
    #[serde(default)]
    pub draw: Draw,
    /// Target of a thick-slice tile (`slab_mm`): the central slice's label ([`SlabLabel::Centre`])
    /// or "bone occupies at least half of the slab" ([`SlabLabel::Occupancy`]: the mean of the
    /// slab's labels >= 0.5, the definition of the phantoms' thick-slice labels,
    /// src/phantom/voxelize.rs). Models trained before this setting read back as `Centre`.
    #[serde(default)]
    pub slab_label: SlabLabel,
    /// Neighbour planes, mm ([`crate::segment::cnn::arch::Architecture::neighbour_mm`]): 0 = one
    /// input plane; `d > 0` = each tile also holds the planes `d` mm below and above its slice
    /// (for a slab tile: below and above every slice of the slab, averaged alike), interpolated
    /// from the scan's slice positions, air beyond the scan; the two are swapped for half the
    /// tiles, so that the model does not learn which way the slice normal points (it points to
    /// the feet on a feet-first series). Older models read back as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub neighbour_mm: f32,
    /// Neighbour planes that are the adjacent slices ([`Neighbours::Adjacent`]; `neighbour_mm`
    /// is then 0): a tile's planes are the slabs of its own thickness just below and above it
    /// (for a one-slice tile the slices `k - 1`, `k + 1`), so that a thick-slab tile shows what a
    /// thick-slice series' adjacent slices show; swapped for half the tiles as above. Older
    /// models read back as false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub neighbour_adjacent: bool,
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl SampleSettings {
    /// The neighbour planes of a tile.
    pub fn neighbours(&self) -> Neighbours {
        Neighbours::from_settings(f64::from(self.neighbour_mm), self.neighbour_adjacent)
    }

    /// Input planes of a tile: 1, or 3 with neighbour planes.
    pub fn planes(&self) -> usize {
        self.neighbours().planes()
    }
}

/// How [`draw_tile`] picks a tile's slice (see [`SampleSettings::draw`]).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Draw {
    /// Uniformly over all slices with bone of all scans (scans weigh by their slice count).
    #[default]
    Slice,
    /// A scan uniformly, then one of its slices with bone (every scan weighs the same).
    Scan,
}

/// Target of a thick-slice tile (see [`SampleSettings::slab_label`]).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SlabLabel {
    /// The label of the slab's central slice.
    #[default]
    Centre,
    /// Bone where the mean of the slab's labels is >= 0.5 (bone fills at least half the slab).
    Occupancy,
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
            // Off by default: the model trained with slab 10 mm, sharpen 0.6 and zoom 1.4
            // (cpu-2, models/MODEL-cpu-1.md) scored lower than the same run without them on all five
            // held-out scans (by 0.004-0.060 DSC), though it lost less to noise.
            slab_mm: 0.0,
            sharpen: 0.0,
            zoom: 0.0,
            draw: Draw::Slice,
            slab_label: SlabLabel::Centre,
            neighbour_mm: 0.0,
            neighbour_adjacent: false,
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

/// One tile: `input` is `P x (tile + 32)^2` normalised values (`P` = [`SampleSettings::planes`]),
/// `target` `tile^2` classes (0, 1 or [`IGNORE`]).
pub struct Tile {
    /// Row-major input window, plane after plane.
    pub input: Vec<f32>,
    /// Row-major target.
    pub target: Vec<i64>,
}

/// Draws a tile from one of `scans` (see the module documentation; the slice as
/// [`SampleSettings::draw`] says); `None` when no scan has bone.
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
    let (n, k) = match set.draw {
        Draw::Slice => candidates[rng.below(candidates.len())],
        Draw::Scan => {
            // `candidates` is grouped by scan: pick a scan with bone, then one of its slices.
            let mut with_bone: Vec<usize> = candidates.iter().map(|&(n, _)| n).collect();
            with_bone.dedup();
            let n = with_bone[rng.below(with_bone.len())];
            let first = candidates.partition_point(|&(m, _)| m < n);
            let count = candidates[first..].partition_point(|&(m, _)| m == n);
            candidates[first + rng.below(count)]
        }
    };
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
    let f = zoom_factor(set, rng);
    let weight = 1.0 / slab.len() as f32;
    // Neighbour planes (empty without them): the slab shifted by -d and +d mm, or by its own
    // length for adjacent planes, in random order.
    let mut neighbours = neighbour_planes(sc, &slab, set.neighbours(), weight);
    if neighbours.len() == 2 && rng.unit() < 0.5 {
        neighbours.swap(0, 1);
    }
    let np = 1 + neighbours.len();
    // Input plane `q` at (j, i): the slab's mean (q = 0), else the neighbour plane's mix; `None`
    // for a neighbour plane outside the scan.
    let value = |q: usize, j: usize, i: usize| -> Option<f32> {
        if q == 0 {
            Some(slab.iter().map(|&s| sc.image[[s, j, i]]).sum::<f32>() * weight)
        } else {
            let mix = &neighbours[q - 1];
            (!mix.is_empty()).then(|| mix.iter().map(|&(s, w)| w * sc.image[[s, j, i]]).sum())
        }
    };
    // The target's bone fraction at (j, i): the central slice's label, or for an occupancy
    // target the mean of the slab's labels.
    let occupancy = set.slab_label == SlabLabel::Occupancy && slab.len() > 1;
    let label_at = |j: usize, i: usize| -> f32 {
        if occupancy {
            slab.iter()
                .map(|&q| f32::from(u8::from(sc.label[[q, j, i]] != 0)))
                .sum::<f32>()
                * weight
        } else {
            f32::from(u8::from(sc.label[[k, j, i]] != 0))
        }
    };
    let pad = sc.norm.pad_value();
    let mut input = vec![pad; np * side * side];
    let (mut bone, mut back) = (Vec::new(), Vec::new());
    let in_rect = |j: isize, i: isize| {
        j >= rect.j0 as isize
            && j < rect.j1 as isize
            && i >= rect.i0 as isize
            && i < rect.i1 as isize
    };
    if f == 1.0 {
        for r in 0..side {
            let j = oj + r as isize - HALF as isize;
            if j < 0 || j as usize >= rows {
                continue;
            }
            for c in 0..side {
                let i = oi + c as isize - HALF as isize;
                if i >= 0 && (i as usize) < cols {
                    for q in 0..np {
                        if let Some(v) = value(q, j as usize, i as usize) {
                            input[(q * side + r) * side + c] = v;
                        }
                    }
                }
            }
        }
        // Candidates inside the bone rectangle, by class.
        for r in 0..t {
            let j = oj + r as isize;
            for c in 0..t {
                let i = oi + c as isize;
                if !in_rect(j, i) {
                    continue;
                }
                if label_at(j as usize, i as usize) >= 0.5 {
                    bone.push(r * t + c);
                } else {
                    back.push(r * t + c);
                }
            }
        }
    } else {
        // Zoomed: tile pixel (r, c) lies at (cj, ci) + ((r, c) - t/2) * f on the slice (input
        // pixels offset by HALF), interpolated bilinearly; the target is the bilinear label >= 0.5.
        let centre = (t / 2) as f64;
        let at = |r: usize, c: usize, off: f64| {
            (
                cj as f64 + (r as f64 - off - centre) * f,
                ci as f64 + (c as f64 - off - centre) * f,
            )
        };
        for q in (0..np).filter(|&q| q == 0 || !neighbours[q - 1].is_empty()) {
            for r in 0..side {
                for c in 0..side {
                    let (y, x) = at(r, c, HALF as f64);
                    let v = bilinear(rows, cols, y, x, |j, i| value(q, j, i).unwrap_or(pad));
                    if let Some(v) = v {
                        input[(q * side + r) * side + c] = v;
                    }
                }
            }
        }
        for r in 0..t {
            for c in 0..t {
                let (y, x) = at(r, c, 0.0);
                if !in_rect(y.round() as isize, x.round() as isize) {
                    continue;
                }
                match bilinear(rows, cols, y, x, label_at) {
                    Some(l) if l >= 0.5 => bone.push(r * t + c),
                    Some(_) => back.push(r * t + c),
                    None => {}
                }
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
        input: input
            .chunks(side * side)
            .flat_map(|plane| dihedral(plane, side, d))
            .collect(),
        target: dihedral(&target, t, d),
    })
}

/// The neighbour planes of a tile whose input is the mean of `slab` (`weight` = 1 / its length):
/// none for [`Neighbours::One`]; for [`Neighbours::AtMm`] `d` the same mean of the planes `d` mm
/// below and above each of its slices ([`input_planes`]); for [`Neighbours::Adjacent`] the slabs
/// of the same slices just below and above it (`slab` is consecutive slices, so its indices
/// shifted by its length). Each plane is `(slice, weight)` pairs; a plane any part of which lies
/// outside the scan (or, at a distance in mm, a scan without slice positions) is empty (air).
fn neighbour_planes(sc: &ScanData, slab: &[usize], nb: Neighbours, weight: f32) -> Vec<PlaneMix> {
    let nk = sc.image.dim().0;
    match nb {
        Neighbours::One => Vec::new(),
        Neighbours::Adjacent => {
            let n = slab.len();
            let shifted = |down: bool| -> PlaneMix {
                slab.iter()
                    .map(|&s| {
                        let q = if down { s.checked_sub(n) } else { Some(s + n) };
                        q.filter(|&q| q < nk).map(|q| (q, weight))
                    })
                    .collect::<Option<PlaneMix>>()
                    .unwrap_or_default()
            };
            vec![shifted(true), shifted(false)]
        }
        Neighbours::AtMm(_) => {
            let mut out = vec![Vec::new(), Vec::new()];
            if sc.slice_mm.is_empty() {
                return out;
            }
            for (side, plane) in out.iter_mut().enumerate() {
                let mut mix = Vec::new();
                for &s in slab {
                    let one = &input_planes(&sc.slice_mm, nk, s, nb)[1 + side];
                    if one.is_empty() {
                        mix.clear();
                        break;
                    }
                    mix.extend(one.iter().map(|&(q, w)| (q, w * weight)));
                }
                *plane = mix;
            }
            out
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
pub(crate) mod tests {
    use super::*;
    use crate::segment::cnn::normalise::{Anchors, Normalisation};
    use ndarray::Array3;

    /// The default normalisation on air at -1000 and "tissue" at 1000 (the two values of these
    /// tests' volumes: a histogram of two exact values has no soft-tissue mode to find).
    pub(crate) fn air_tissue_normaliser() -> Normaliser {
        Normaliser::with_anchors(
            Normalisation::default(),
            Anchors {
                air: -1000.0,
                tissue: 1000.0,
                min: -1000.0,
                max: 1000.0,
            },
        )
    }

    /// Two 80x80 slices: air-free "tissue" (1) with a bone bar (2) in slice 1.
    pub(crate) fn scan() -> ScanData {
        let label = Array3::from_shape_fn((2, 80, 80), |(k, j, i)| {
            u8::from(k == 1 && (30..40).contains(&j) && (20..60).contains(&i))
        });
        let image = label.mapv(|v| if v == 1 { 2.0 } else { 1.0 });
        let mut norm = air_tissue_normaliser();
        norm.lo = -0.5;
        ScanData::new("t".into(), image, label, norm.identity(), 8)
    }

    #[test]
    fn tiles_are_balanced_and_targets_match_the_label() {
        let sc = [scan()];
        assert!(sc[0].bone_rects[0].is_none());
        let set = quiet();
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

    /// The default sampling with every augmentation off (tests turn one on at a time).
    pub(crate) fn quiet() -> SampleSettings {
        SampleSettings {
            noise_hu: 0.0,
            gain: 0.0,
            shift: 0.0,
            blur: 0.0,
            bone_contrast: 0.0,
            sharpen: 0.0,
            slab_mm: 0.0,
            zoom: 0.0,
            ..SampleSettings::default()
        }
    }

    /// 12 slices 2 mm apart of 80 x 80, slice q holding the value q / 4 (inside the clip), bone
    /// in a 10 x 40 box on the slices `bone`.
    fn slice_ramp(bone: std::ops::Range<usize>, norm: &Normaliser) -> ScanData {
        let label = Array3::from_shape_fn((12, 80, 80), |(q, j, i)| {
            u8::from(bone.contains(&q) && (30..40).contains(&j) && (20..60).contains(&i))
        });
        let image = Array3::from_shape_fn((12, 80, 80), |(q, _, _)| 0.25 * q as f32);
        ScanData::new("z".into(), image, label, norm.identity(), 8)
            .with_slice_positions((0..12).map(|q| 2.0 * q as f64).collect())
    }

    #[test]
    fn neighbour_planes_hold_the_interpolated_slices_in_either_order() {
        // 12 slices 2 mm apart, slice q filled with the value q / 4 (inside the clip), bone in
        // slices 3..=8: planes 3 mm below and above slice k are (k -+ 1.5) / 4 (linear between
        // neighbours), in random order; plane 0 is k / 4.
        let norm = air_tissue_normaliser();
        let sc = slice_ramp(3..9, &norm);
        let set = SampleSettings {
            neighbour_mm: 3.0,
            ..quiet()
        };
        let side = set.tile + 32;
        let centre = (set.tile / 2 + 16) * side + set.tile / 2 + 16;
        let mut rng = Rng::new(5);
        let (mut below_first, n) = (0, 200);
        for _ in 0..n {
            let t = draw_tile(&[&sc], &set, &mut rng).unwrap();
            assert_eq!(t.input.len(), 3 * side * side);
            let [k, a, b] = [0, 1, 2].map(|q| t.input[q * side * side + centre]);
            let (lo, hi) = (a.min(b), a.max(b));
            assert!(
                (lo - (k - 0.375)).abs() < 1e-5 && (hi - (k + 0.375)).abs() < 1e-5,
                "{k} {a} {b}"
            );
            below_first += usize::from(a < b);
        }
        assert!(
            (70..=130).contains(&below_first),
            "{below_first} of {n} below first"
        );
        // A plane beyond the scan is air: bone in the last slice only.
        let label = Array3::from_shape_fn((4, 80, 80), |(q, j, i)| {
            u8::from(q == 3 && (30..40).contains(&j) && (20..60).contains(&i))
        });
        let image = Array3::from_shape_fn((4, 80, 80), |(q, _, _)| 0.25 * q as f32);
        let last = ScanData::new("top".into(), image, label, norm.identity(), 8)
            .with_slice_positions(vec![0.0, 2.0, 4.0, 6.0]);
        let t = draw_tile(&[&last], &set, &mut rng).unwrap();
        let mut planes = [1, 2].map(|q| t.input[q * side * side + centre]);
        planes.sort_by(f32::total_cmp);
        assert_eq!(planes, [last.norm.pad_value(), 0.375]);
        // Without neighbour planes a tile is one plane, as before.
        let t = draw_tile(&[&sc], &quiet(), &mut rng).unwrap();
        assert_eq!(t.input.len(), side * side);
    }

    #[test]
    fn adjacent_planes_are_the_slabs_of_the_tiles_own_thickness_below_and_above() {
        // 12 slices 2 mm apart, slice q holding q / 4, bone in slices 4..=7 (so that every
        // adjacent slab lies inside the scan). Slabs of 2-6 mm are
        // slice k alone (half-thickness < 2 mm) or k - 1..=k + 1, so the adjacent planes are
        // (k -+ 1) / 4 or the three-slice slabs' means (k -+ 3) / 4, in random order.
        let norm = air_tissue_normaliser();
        let sc = slice_ramp(4..8, &norm);
        let set = SampleSettings {
            neighbour_adjacent: true,
            slab_mm: 6.0,
            ..quiet()
        };
        assert_eq!(set.planes(), 3);
        let side = set.tile + 32;
        let centre = (set.tile / 2 + 16) * side + set.tile / 2 + 16;
        let mut rng = Rng::new(9);
        let (mut one, mut three) = (0, 0);
        for _ in 0..400 {
            let t = draw_tile(&[&sc], &set, &mut rng).unwrap();
            let [c, a, b] = [0, 1, 2].map(|q| t.input[q * side * side + centre]);
            let (lo, hi) = (a.min(b), a.max(b));
            assert!((hi - c - (c - lo)).abs() < 1e-5, "{c} {a} {b}");
            match ((hi - lo) * 4.0).round() as i32 {
                2 => one += 1,
                6 => three += 1,
                d => panic!("planes {d} slices apart: {c} {a} {b}"),
            }
        }
        // A quarter of the tiles are slabs, of which those thicker than 4 mm span three slices.
        assert!(one > 250 && (25..100).contains(&three), "{one} {three}");
        // Without slice positions (no slabs then) the planes are the adjacent slices all the same.
        let image = Array3::from_shape_fn((12, 80, 80), |(q, _, _)| 0.25 * q as f32);
        let bare = ScanData::new("b".into(), image, sc.label.clone(), norm.identity(), 8);
        let t = draw_tile(&[&bare], &set, &mut rng).unwrap();
        let [c, a, b] = [0, 1, 2].map(|q| t.input[q * side * side + centre]);
        assert!(((a - b).abs() - 0.5).abs() < 1e-5 && (a + b - 2.0 * c).abs() < 1e-5);
    }

    /// Settings with every augmentation off but zoom.
    fn zoom_only(zoom: f32) -> SampleSettings {
        SampleSettings { zoom, ..quiet() }
    }

    #[test]
    fn zoom_rescales_half_the_tiles_log_uniformly_within_its_range() {
        // A ramp of 0.01 per column and 0.001 per row: the tile's gradient gives its scale.
        let label = Array3::from_shape_fn((1, 200, 200), |(_, j, i)| {
            u8::from((90..110).contains(&j) && (60..140).contains(&i))
        });
        let image = Array3::from_shape_fn((1, 200, 200), |(_, j, i)| {
            0.01 * i as f32 + 0.001 * j as f32
        });
        let norm = air_tissue_normaliser();
        let sc = [ScanData::new("r".into(), image, label, norm.identity(), 8)];
        let set = zoom_only(1.4);
        let side = set.tile + 32;
        let mut rng = Rng::new(9);
        let (mut plain, mut small, mut large, n) = (0, 0, 0, 300);
        for _ in 0..n {
            let t = draw_tile(&sc, &set, &mut rng).unwrap();
            let m = side / 2;
            let dx = (t.input[m * side + m + 1] - t.input[m * side + m]).abs();
            let dy = (t.input[(m + 1) * side + m] - t.input[m * side + m]).abs();
            let f = dx.max(dy) / 0.01;
            assert!((1.0 / 1.4 - 1e-3..=1.4 + 1e-3).contains(&f), "scale {f}");
            assert!((dx.min(dy) / dx.max(dy) - 0.1).abs() < 1e-2, "isotropic");
            plain += usize::from((f - 1.0).abs() < 1e-3);
            small += usize::from(f < 0.85);
            large += usize::from(f > 1.15);
        }
        assert!(
            (120..=180).contains(&plain),
            "{plain} of {n} unscaled, half expected"
        );
        // log-uniform in [1/1.4, 1.4]: P(f < 0.85) = P(f > 1.15) ~ 0.26 of the scaled half.
        assert!(small > 20 && large > 20, "{small} shrunk, {large} enlarged");
    }

    #[test]
    fn zoomed_targets_match_the_interpolated_image() {
        // Image = 1 + label, so the bilinear image is 1 + the bilinear label: a drawn voxel is
        // bone exactly where its interpolated input value is >= 1.5.
        let sc = [scan()];
        let set = zoom_only(1.4);
        let side = set.tile + 32;
        let mut rng = Rng::new(21);
        let mut checked = 0;
        for _ in 0..100 {
            let t = draw_tile(&sc, &set, &mut rng).unwrap();
            for r in 0..set.tile {
                for c in 0..set.tile {
                    let v = t.target[r * set.tile + c];
                    if v != IGNORE {
                        let x = t.input[(r + 16) * side + c + 16];
                        assert_eq!(v == 1, x >= 1.5, "target {v}, input {x}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 3000, "{checked}");
    }

    #[test]
    fn scan_draw_gives_every_scan_the_same_share_of_tiles() {
        // Scan "thin" has bone in 9 slices, scan "thick" in 1; their images are 1 and 3, so a
        // tile's centre value tells where it came from.
        let make = |slices: usize, value: f32| {
            let label = Array3::from_shape_fn((slices, 80, 80), |(_, j, i)| {
                u8::from((30..40).contains(&j) && (20..60).contains(&i))
            });
            let image = Array3::from_elem((slices, 80, 80), value);
            ScanData::new(
                "s".into(),
                image,
                label,
                air_tissue_normaliser().identity(),
                8,
            )
        };
        let scans = [make(9, 1.0), make(1, 3.0)];
        let side = quiet().tile + 32;
        let share_of_thick = |draw: Draw, seed: u64| {
            let set = SampleSettings { draw, ..quiet() };
            let mut rng = Rng::new(seed);
            let n = 400;
            let thick = (0..n)
                .filter(|_| {
                    let t = draw_tile(&scans, &set, &mut rng).unwrap();
                    t.input[(side / 2) * side + side / 2] == 3.0
                })
                .count();
            thick as f64 / n as f64
        };
        let by_slice = share_of_thick(Draw::Slice, 3);
        let by_scan = share_of_thick(Draw::Scan, 3);
        assert!(
            (0.05..=0.16).contains(&by_slice),
            "by slice {by_slice}, 0.1 expected"
        );
        assert!(
            (0.43..=0.57).contains(&by_scan),
            "by scan {by_scan}, 0.5 expected"
        );
    }

    #[test]
    fn occupancy_targets_of_thick_slice_tiles_match_the_slab_mean_of_the_label() {
        // 12 slices 1 mm apart: a bone bar in slices 3..=8 whose rows shift by 2 per slice (a
        // slab mixes bone and background at its edges) and a plate in slice 6 alone, which no
        // slab of 2 or more slices is half filled by. Image = 1 + label, so the slab's input is
        // 1 + the slab mean of the label: an occupancy target is bone exactly where the input is
        // >= 1.5, while the central slice's label keeps the plate.
        let label = Array3::from_shape_fn((12, 90, 90), |(q, j, i)| {
            let bar = (3..9).contains(&q) && (20 + 2 * q..44 + 2 * q).contains(&j);
            let plate = q == 6 && (70..76).contains(&j);
            u8::from((bar || plate) && (25..65).contains(&i))
        });
        let image = label.mapv(|v| 1.0 + f32::from(v));
        let sc = ScanData::new(
            "o".into(),
            image,
            label,
            air_tissue_normaliser().identity(),
            8,
        )
        .with_slice_positions((0..12).map(|q| q as f64).collect());
        let side = quiet().tile + 32;
        // Counts of drawn voxels whose target disagrees with input >= 1.5 in thick tiles.
        let disagreements = |slab_label: SlabLabel| {
            let set = SampleSettings {
                slab_mm: 6.0,
                slab_label,
                ..quiet()
            };
            let mut rng = Rng::new(17);
            let (mut wrong, mut checked) = (0, 0);
            for _ in 0..200 {
                let t = draw_tile(&[&sc], &set, &mut rng).unwrap();
                for r in 0..set.tile {
                    for c in 0..set.tile {
                        let v = t.target[r * set.tile + c];
                        let x = t.input[(r + 16) * side + c + 16];
                        if v != IGNORE && x != x.round() {
                            // A fractional input: a mixed voxel of a thick tile.
                            checked += 1;
                            wrong += usize::from((v == 1) != (x >= 1.5));
                        }
                    }
                }
            }
            (wrong, checked)
        };
        let (wrong, checked) = disagreements(SlabLabel::Occupancy);
        assert!(checked > 200, "{checked} mixed voxels drawn");
        assert_eq!(
            wrong, 0,
            "occupancy: {wrong} of {checked} mixed voxels disagree"
        );
        let (wrong, checked) = disagreements(SlabLabel::Centre);
        assert!(
            wrong >= 20,
            "centre label: {wrong} of {checked} mixed voxels disagree (the plate), some expected"
        );
    }

    #[test]
    fn dihedral_is_a_permutation() {
        let x: Vec<u32> = (0..9).collect();
        assert_eq!(dihedral(&x, 3, 0), x);
        assert_eq!(dihedral(&x, 3, 1), vec![6, 7, 8, 3, 4, 5, 0, 1, 2]);
        assert_eq!(dihedral(&x, 3, 4), vec![0, 3, 6, 1, 4, 7, 2, 5, 8]);
    }
}
