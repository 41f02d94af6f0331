//! Augmentation of training tiles: thick-slice slabs, bone contrast, gain and offset, blur or
//! edge enhancement, noise (the settings are [`SampleSettings`]).

use super::sample::{Rng, SampleSettings, ScanData};
use crate::segment::cnn::resample::gaussian_blur;

/// The slices whose mean is the tile's input: `[k]`, or for a quarter of the tiles (when
/// `slab_mm > 0` and the slice positions are known) every slice whose centre lies within half a
/// slab of thickness drawn in `[2, slab_mm]` mm of slice `k`'s.
pub(super) fn slab_slices(
    sc: &ScanData,
    k: usize,
    set: &SampleSettings,
    rng: &mut Rng,
) -> Vec<usize> {
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

/// The in-plane scale factor of a tile (source pixels per tile pixel): 1, or for half the tiles
/// (when `zoom > 1`) a factor drawn log-uniformly in `[1/zoom, zoom]`.
pub(super) fn zoom_factor(set: &SampleSettings, rng: &mut Rng) -> f64 {
    if set.zoom <= 1.0 || rng.unit() >= 0.5 {
        return 1.0;
    }
    let l = f64::from(set.zoom).ln();
    (l * (2.0 * f64::from(rng.unit()) - 1.0)).exp()
}

/// Bilinear interpolation at row `y`, column `x` (voxel units) of a `rows x cols` plane read
/// through `get(j, i)`; `None` outside `[0, rows - 1] x [0, cols - 1]`.
pub(super) fn bilinear(
    rows: usize,
    cols: usize,
    y: f64,
    x: f64,
    get: impl Fn(usize, usize) -> f32,
) -> Option<f32> {
    if rows == 0
        || cols == 0
        || !(y >= 0.0 && x >= 0.0)
        || y > (rows - 1) as f64
        || x > (cols - 1) as f64
    {
        return None;
    }
    let (j0, i0) = (y.floor() as usize, x.floor() as usize);
    let (j1, i1) = ((j0 + 1).min(rows - 1), (i0 + 1).min(cols - 1));
    let (fy, fx) = ((y - j0 as f64) as f32, (x - i0 as f64) as f32);
    let top = get(j0, i0) * (1.0 - fx) + get(j0, i1) * fx;
    let bottom = get(j1, i0) * (1.0 - fx) + get(j1, i1) * fx;
    Some(top * (1.0 - fy) + bottom * fy)
}

/// Bone contrast, gain/offset error, blur or edge enhancement, noise, then the normalisation's
/// clip (see [`SampleSettings`]), of a tile of one or more `side x side` planes (`x` holds them one
/// after the other): one draw of each setting for the whole tile, blur plane by plane, noise
/// independent per voxel.
pub(super) fn augment(
    x: &mut [f32],
    side: usize,
    sc: &ScanData,
    set: &SampleSettings,
    rng: &mut Rng,
) {
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
            let sigma = 0.4 + (set.blur - 0.4).max(0.0) * rng.unit();
            for plane in x.chunks_mut(side * side) {
                blur(plane, side, sigma);
            }
        }
    } else if kernel < 0.5 && set.sharpen > 0.0 {
        let a = set.sharpen * rng.unit();
        let mut smooth = x.to_vec();
        let sigma = 1.0 + 1.5 * rng.unit();
        for plane in smooth.chunks_mut(side * side) {
            blur(plane, side, sigma);
        }
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

/// Separable Gaussian blur of a `side x side` tile (edges clamped).
fn blur(x: &mut [f32], side: usize, sigma: f32) {
    gaussian_blur(x, side, side, [sigma, sigma]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::sample::draw_tile;
    use crate::train::sample::tests::{air_tissue_normaliser, quiet, scan};
    use ndarray::Array3;

    #[test]
    fn bone_contrast_dims_bone_towards_tissue_in_half_the_tiles() {
        let sc = scan();
        let set = SampleSettings {
            bone_contrast: 0.6,
            ..quiet()
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
        let norm = air_tissue_normaliser();
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
            slab_mm: 6.0,
            ..quiet()
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
            sharpen: 0.6,
            ..quiet()
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
}
