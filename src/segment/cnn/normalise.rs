//! Grey-value normalisation of a scan before the CNN sees it.
//!
//! * [`Normalisation::MinMax`] is the paper's eq. 1 (Minnema et al. 2018, §2.2):
//!   `x' = (x - min) / (max - min)` with the minimum and maximum of the scan. It is the reproduction
//!   mode. It cancels a global linear map of the grey values, but not an undeclared padding value
//!   (-2000 or -3024 outside the field of view moves `min`), a clipped or extended top of the range
//!   (3071 vs 4095, metal) or outliers — all of which differ between scanners.
//! * [`Normalisation::AirTissue`] (default) anchors on the scan's own histogram: the mode of air and
//!   the mode of soft tissue, `x' = (x - air) / (tissue - air)`, clipped to `[lo, hi]`. A linear map of
//!   the grey values (uncalibrated cone-beam CT: 0.75 x HU + 200) moves both modes by the same map, so
//!   it cancels exactly; padding and the range top do not enter. Air = 0, soft tissue = 1, dense bone
//!   about 2-3. Measured numbers are in the module docs of [`super`].
//!
//! How the anchors are found ([`anchors`]): a strided sample of the voxels; an exact value holding
//! more than 2 % of them at the sample minimum is padding or clipping and is set aside; the
//! histogram is then read from up to 64 slices smoothed in-plane (Gaussian, σ = 1 pixel, as a
//! normalised convolution without the padding), so that low-dose noise does not merge and move
//! the peaks ([`DENOISE_SIGMA_PX`]); Otsu's
//! threshold (Otsu 1979) splits the rest into air and tissue classes; each anchor is the peak of its
//! class's histogram (4096 bins over the 0.1-99.9 percentile range, smoothed over 9 bins), refined by a mean shift.
//! A tissue peak that lies more than 1.3 times as far above air as another peak holding at least a
//! quarter of its height is bone, and the lower peak is taken (a phantom's uniform bone simulant
//! outnumbers its soft tissue once noise flattens the tissue peak), unless more than 1 % of the
//! tissue class lies 1.3 times as far again above air (then the taller peak has bone above it: it
//! is tissue, and the lower peak is something else, e.g. a head-rest cushion). A masked background
//! (all air one exact value at calibrated air, -1100..-900 HU, with no other air left above
//! -500 HU) anchors air on that value: the one rule that reads units, since the histogram of a
//! masked head is that of padding beside air in other units.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

/// Errors of fitting a normaliser.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    /// The volume has no finite voxel or a single grey value: nothing to anchor on.
    #[error("cannot normalise: {0}")]
    Flat(String),
    /// Too few voxels besides padding for a histogram ([`MIN_ANCHOR_VOXELS`]).
    #[error(
        "cannot normalise: {0} voxels besides padding, at least {MIN_ANCHOR_VOXELS} are needed \
         to find the air and soft-tissue grey values"
    )]
    TooFew(usize),
    /// The anchors found are not air and soft tissue: their gap is a small share of the grey
    /// values' spread ([`MIN_GAP_SHARE`]) or small in grey-value units ([`MIN_GAP_UNITS`]), as in
    /// a field of view cropped inside the head (no air) or an image of one material.
    #[error(
        "cannot normalise: no air class: the air and soft-tissue anchors ({air:.1} and \
         {tissue:.1}) are {gap:.1} apart, {share:.3} of the grey values' 1-99 % range \
         ({q01:.1}..{q99:.1}); at least {MIN_GAP_UNITS} and {MIN_GAP_SHARE} of the range are \
         needed. The CNN needs air around the head in the field of view",
        gap = tissue - air
    )]
    NoAir {
        /// Air anchor found (the scan's units).
        air: f32,
        /// Soft-tissue anchor found.
        tissue: f32,
        /// 1st percentile of the grey values besides padding.
        q01: f32,
        /// 99th percentile.
        q99: f32,
        /// (tissue - air) / (q99 - q01).
        share: f32,
    },
}

/// Normalisation mode; part of a model's metadata (a model must be fed as it was trained).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Normalisation {
    /// Paper eq. 1: per-scan min-max to [0, 1].
    MinMax,
    /// Air mode -> 0, soft-tissue mode -> 1, clipped to `[lo, hi]`.
    AirTissue {
        /// Lower clip (units of tissue - air).
        lo: f32,
        /// Upper clip.
        hi: f32,
    },
}

impl Default for Normalisation {
    fn default() -> Self {
        Normalisation::AirTissue { lo: -0.5, hi: 4.0 }
    }
}

/// Histogram anchors of one scan, in its own grey values (HU when calibrated).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Anchors {
    /// Mode of air.
    pub air: f32,
    /// Mode of soft tissue.
    pub tissue: f32,
    /// Smallest and largest finite value of the sample (padding included).
    pub min: f32,
    /// See `min`.
    pub max: f32,
}

/// A fitted normalisation: `x' = clamp((x - offset) * scale, lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Normaliser {
    /// Grey value mapped to 0.
    pub offset: f32,
    /// Normalised units per grey value.
    pub scale: f32,
    /// Clip range.
    pub lo: f32,
    /// See `lo`.
    pub hi: f32,
    /// The anchors of the scan.
    pub anchors: Anchors,
}

impl Normaliser {
    /// Fits `mode` to `volume` (`[k, j, i]`, any grey-value unit).
    ///
    /// # Errors
    /// [`NormaliseError::Flat`] when the volume is empty, not finite or constant.
    pub fn fit(mode: Normalisation, volume: ArrayView3<f32>) -> Result<Normaliser, NormaliseError> {
        Ok(Normaliser::with_anchors(mode, anchors(volume)?))
    }

    /// `mode` on anchors `a` found elsewhere (or set by hand: a test, a fixed calibration).
    pub fn with_anchors(mode: Normalisation, a: Anchors) -> Normaliser {
        match mode {
            Normalisation::MinMax => Normaliser {
                offset: a.min,
                scale: 1.0 / (a.max - a.min),
                lo: 0.0,
                hi: 1.0,
                anchors: a,
            },
            Normalisation::AirTissue { lo, hi } => Normaliser {
                offset: a.air,
                scale: 1.0 / (a.tissue - a.air),
                lo,
                hi,
                anchors: a,
            },
        }
    }

    /// Normalised value of grey value `v` (NaN becomes the padding value).
    #[inline]
    pub fn apply(&self, v: f32) -> f32 {
        if v.is_nan() {
            return self.pad_value();
        }
        ((v - self.offset) * self.scale).clamp(self.lo, self.hi)
    }

    /// The same normalisation for values that are already normalised: identity map, same clip,
    /// anchors in normalised units (so [`Self::pad_value`], [`Self::roi_level`] and
    /// [`Self::units_per_hu`] keep their meaning).
    pub fn identity(&self) -> Normaliser {
        let f = |v: f32| (v - self.offset) * self.scale;
        Normaliser {
            offset: 0.0,
            scale: 1.0,
            lo: self.lo,
            hi: self.hi,
            anchors: Anchors {
                air: f(self.anchors.air),
                tissue: f(self.anchors.tissue),
                min: f(self.anchors.min),
                max: f(self.anchors.max),
            },
        }
    }

    /// Normalised air: the value that pads a slice beyond its edge (for patches and for dense
    /// inference alike).
    pub fn pad_value(&self) -> f32 {
        ((self.anchors.air - self.offset) * self.scale).clamp(self.lo, self.hi)
    }

    /// Grey value half-way between air and tissue (-500 HU on calibrated CT): the head's
    /// region-of-interest level.
    pub fn roi_level(&self) -> f32 {
        0.5 * (self.anchors.air + self.anchors.tissue)
    }

    /// Normalised units per HU-equivalent (tissue - air taken as 1040 HU), for noise levels given
    /// in HU.
    pub fn units_per_hu(&self) -> f32 {
        self.scale * (self.anchors.tissue - self.anchors.air) / 1040.0
    }
}

/// Finds the [`Anchors`] of `volume` (see the module documentation).
///
/// # Errors
/// [`NormaliseError::Flat`] when fewer than 2 distinct finite values exist.
pub fn anchors(volume: ArrayView3<f32>) -> Result<Anchors, NormaliseError> {
    let n = volume.len();
    let stride = (n / 2_000_000).max(1);
    let mut s: Vec<f32> = volume
        .iter()
        .step_by(stride)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if s.len() < 2 {
        return Err(NormaliseError::Flat(format!("{} finite voxels", s.len())));
    }
    s.sort_unstable_by(f32::total_cmp);
    let (min, max) = (s[0], s[s.len() - 1]);
    if max <= min {
        return Err(NormaliseError::Flat(format!("every voxel is {min}")));
    }
    // Padding / clipping: one exact value at the minimum holding > 2 % of the sample.
    let at_min = s.partition_point(|&v| v <= min);
    // (The rest must be at least 2 % as well: a canvas that is 90 % padding is still padded.)
    let spike = at_min * 50 > s.len() && (s.len() - at_min) * 50 >= s.len();
    let rest = denoised_sample(volume, spike.then_some(min));
    anchors_of_sample(&rest, min, max, spike)
}

/// Standard deviation (pixels) of the in-plane Gaussian that smooths the slices before their
/// histogram is read ([`denoised_sample`]): white noise falls to 1/(2√π σ) = 0.28 of its SD
/// (120 HU of low-dose noise to 34 HU), while a uniform region wider than about 3 pixels keeps its
/// value, so the modes stay where they are and only get narrower.
pub const DENOISE_SIGMA_PX: f32 = 1.0;

/// Most slices read for the histogram (evenly spaced through the volume).
const HISTOGRAM_SLICES: usize = 64;

/// Voxels of `volume` for the anchors' histogram, sorted: up to [`HISTOGRAM_SLICES`] evenly spaced
/// slices, each smoothed in-plane by a Gaussian of [`DENOISE_SIGMA_PX`] as a normalised
/// convolution that leaves out non-finite voxels and the padding value `pad` (they get no output
/// and lend no weight), then strided to about 2 million values.
///
/// Why: the anchors are modes, and in a noisy scan (low dose: 90-150 HU of noise) a small
/// soft-tissue peak merges with its neighbours (an anthropomorphic phantom's 340 HU simulant)
/// into one broad hump whose mode and mean shift drift by tens of HU between noise
/// realisations (91-129 HU measured on the Philips head phantom with 120 HU of added noise).
/// Smoothing first makes the peaks narrow again, as in the clean scan. A linear map of the grey
/// values commutes with the smoothing, so the invariance the anchors exist for is kept.
fn denoised_sample(volume: ArrayView3<f32>, pad: Option<f32>) -> Vec<f32> {
    use rayon::prelude::*;
    let (depth, rows, cols) = volume.dim();
    let picked: Vec<usize> = if depth <= HISTOGRAM_SLICES {
        (0..depth).collect()
    } else {
        (0..HISTOGRAM_SLICES)
            .map(|q| (q * (depth - 1)) / (HISTOGRAM_SLICES - 1))
            .collect()
    };
    let stride = (picked.len() * rows * cols / 2_000_000).max(1);
    let keep = |v: f32| v.is_finite() && pad.is_none_or(|p| v != p);
    let mut out: Vec<f32> = picked
        .par_iter()
        .flat_map_iter(|&k| {
            let slice = volume.index_axis(ndarray::Axis(0), k);
            let mut w: Vec<f32> = slice
                .iter()
                .map(|&v| f32::from(u8::from(keep(v))))
                .collect();
            let mut vw: Vec<f32> = slice
                .iter()
                .map(|&v| if keep(v) { v } else { 0.0 })
                .collect();
            let sigma = [DENOISE_SIGMA_PX; 2];
            super::resample::gaussian_blur(&mut vw, rows, cols, sigma);
            let own: Vec<bool> = slice.iter().map(|&v| keep(v)).collect();
            super::resample::gaussian_blur(&mut w, rows, cols, sigma);
            own.into_iter()
                .zip(vw.into_iter().zip(w))
                .enumerate()
                .filter(move |(q, (o, (_, wt)))| *o && *wt > 0.0 && q % stride == 0)
                .map(|(_, (_, (v, wt)))| v / wt)
                .collect::<Vec<f32>>()
        })
        .collect();
    out.sort_unstable_by(f32::total_cmp);
    out
}

/// The anchors from `rest`, a sorted sample of the scan without its padding spike (see the
/// module documentation); `min` and `max` are the whole scan's, `spike` whether `min` was a
/// padding or mask value set aside.
///
/// # Errors
/// [`NormaliseError::Flat`] when `rest` has no spread or no tissue above air.
fn anchors_of_sample(
    rest: &[f32],
    min: f32,
    max: f32,
    spike: bool,
) -> Result<Anchors, NormaliseError> {
    if rest.len() < MIN_ANCHOR_VOXELS {
        return Err(NormaliseError::TooFew(rest.len()));
    }
    let lo = rest[rest.len() / 1000];
    let hi = rest[rest.len() - 1 - rest.len() / 1000];
    if hi <= lo {
        return Err(NormaliseError::Flat(format!("grey values {lo}..{hi}")));
    }
    const BINS: usize = 4096;
    let width = (hi - lo) / BINS as f32;
    let mut hist = vec![0f64; BINS];
    for &v in rest {
        if (lo..=hi).contains(&v) {
            let b = (((v - lo) / width) as usize).min(BINS - 1);
            hist[b] += 1.0;
        }
    }
    // Otsu's split between air and the rest reads the 1-99 % range (values beyond it count at
    // its ends): a small block of extreme values (saturated metal at 32767, a -32768 fill) would
    // otherwise become a class of its own and put air and tissue on one side.
    let q01 = rest[rest.len() / 100];
    let q99 = rest[rest.len() - 1 - rest.len() / 100];
    let (b01, b99) = (
        (((q01 - lo) / width).floor().max(0.0) as usize).min(BINS - 1),
        (((q99 - lo) / width).floor().max(0.0) as usize).min(BINS - 1),
    );
    let mut clipped = hist.clone();
    for b in 0..BINS {
        let to = b.clamp(b01, b99);
        if to != b {
            clipped[to] += clipped[b];
            clipped[b] = 0.0;
        }
    }
    let mut t = otsu(&clipped);
    let smooth = smooth(&hist, 4);
    let peak = |r: std::ops::Range<usize>| {
        r.clone()
            .max_by(|&a, &b| smooth[a].total_cmp(&smooth[b]))
            .unwrap_or(r.start)
    };
    let centre = |b: usize| lo + (b as f32 + 0.5) * width;
    let bin_of = |v: f32| (((v - lo) / width).floor().max(0.0) as usize).min(BINS);
    let low_mass: f64 = hist[..t].iter().sum();
    // A masked background (every air voxel one exact value: a de-identification or
    // skull-stripping tool's mask, or a scanner that writes PixelPaddingValue over all air) leaves
    // the body alone beside the spike, and Otsu splits it into tissue | bone. The histogram alone
    // cannot tell this from padding beside real air; calibrated units break the tie: the spike
    // lies at calibrated air and no air is left in the rest (its lower class sits above -500 HU).
    // Then the spike is air and tissue is the tallest peak above half-way to the lower class.
    let low_peak = centre(peak(0..t));
    let masked = spike && MASKED_AIR_HU.contains(&min) && low_peak > NO_AIR_ABOVE_HU;
    if masked {
        t = bin_of(0.5 * (min + low_peak)).min(BINS - 1);
    }
    let air = if masked || (spike && low_mass < 0.01 * rest.len() as f64) {
        min
    } else {
        low_peak
    };
    let air0 = air;
    let mut tissue_bin = peak(t..BINS);
    // The upper class's tallest peak is soft tissue in a head CT, but bone where soft tissue is
    // scarce and bone is plentiful and uniform (an anthropomorphic phantom's ~600-700 HU bone
    // simulant; noise flattens the small tissue peak until the bone peak is taller). A peak lying
    // more than TISSUE_SPAN times as far above air as another substantial peak of the upper class
    // is bone relative to it; soft tissue is then that lower peak. Ratios of differences keep the
    // linear-map invariance; fat (-100 HU) and brain (40 HU) are 1.16 apart, bone >= 1.5. A taller
    // peak with real mass beyond TISSUE_SPAN times its own height above air (a skull above brain)
    // is tissue itself, and a lower peak (a head-rest cushion at -300 HU) is not taken.
    let upper_mass: f64 = hist[t..].iter().sum();
    loop {
        let p = centre(tissue_bin);
        let above: f64 = hist[bin_of(air0 + (p - air0) * TISSUE_SPAN)..].iter().sum();
        if above > MAX_BONE_ABOVE_BONE * upper_mass {
            break;
        }
        let end = bin_of(air0 + (p - air0) / TISSUE_SPAN);
        if end <= t {
            break;
        }
        let q = peak(t..end);
        if smooth[q] < LOWER_PEAK_SHARE * smooth[tissue_bin] || q == tissue_bin {
            break;
        }
        tissue_bin = q;
    }
    let tissue = centre(tissue_bin);
    // Mean shift: the anchors move to the mean of the sample within 5 % of the air-tissue gap,
    // so a symmetric noise peak is centred to sub-bin accuracy (the window scales with the grey
    // values, keeping the linear-map invariance).
    let (mut air, mut tissue) = (air, tissue);
    for _ in 0..3 {
        let h = 0.05 * (tissue - air).abs();
        // A mask's air is exact: the rest, which the mean shift reads, excludes it.
        if !masked {
            air = window_mean(rest, air, h);
        }
        tissue = window_mean(rest, tissue, h);
    }
    if tissue <= air {
        return Err(NormaliseError::Flat(format!(
            "no tissue above air (air {air}, tissue {tissue})"
        )));
    }
    // Air and soft tissue are far apart against the spread of a head CT's grey values (1040 HU
    // of about 2000-3000 between the 1st and 99th percentile: a share of 0.35-0.65 on the scans
    // measured); two modes of one material are not (a crop inside the brain: 0.05). A ratio of
    // differences, so a linear map leaves it alone.
    let share = (tissue - air) / (q99 - q01).max(f32::MIN_POSITIVE);
    if !masked && (share < MIN_GAP_SHARE || tissue - air < MIN_GAP_UNITS) {
        return Err(NormaliseError::NoAir {
            air,
            tissue,
            q01,
            q99,
            share,
        });
    }
    Ok(Anchors {
        air,
        tissue,
        min,
        max,
    })
}

/// Fewest voxels (besides padding) of the sample the anchors are read from.
pub const MIN_ANCHOR_VOXELS: usize = 1000;

/// Smallest (tissue - air) / (99th - 1st percentile) of anchors that are air and soft tissue.
pub const MIN_GAP_SHARE: f32 = 0.15;

/// Smallest tissue - air gap in grey-value units: 1040 on calibrated CT, 780 after 0.75x + 200;
/// below a fifth of calibrated the two anchors are modes of one material (grey and white matter
/// of a crop inside the brain: 6 HU apart). Like the masked-background rule, this reads units.
pub const MIN_GAP_UNITS: f32 = 200.0;

/// Exact grey values that count as calibrated air for a masked background (HU).
const MASKED_AIR_HU: std::ops::RangeInclusive<f32> = -1100.0..=-900.0;

/// A lower class whose peak lies above this (HU) holds no calibrated air.
const NO_AIR_ABOVE_HU: f32 = -500.0;

/// A peak this many times as far above air as another substantial peak is bone relative to it
/// (see [`anchors`]): brain/fat 1.16, bone simulant/tissue 1.6-1.7, cortical bone/tissue >= 2.
const TISSUE_SPAN: f32 = 1.3;

/// A lower peak counts as substantial at this share of the taller peak's height.
const LOWER_PEAK_SHARE: f64 = 0.25;

/// A peak is taken for bone only when less than this share of the upper class lies beyond
/// [`TISSUE_SPAN`] times its height above air (nothing is much denser than bone in a head; a skull
/// is much denser than brain).
const MAX_BONE_ABOVE_BONE: f64 = 0.01;

/// Mean of the sorted `values` within `c +- h` (`c` when none).
fn window_mean(values: &[f32], c: f32, h: f32) -> f32 {
    let a = values.partition_point(|&v| v < c - h);
    let b = values.partition_point(|&v| v <= c + h);
    if b <= a {
        return c;
    }
    (values[a..b].iter().map(|&v| v as f64).sum::<f64>() / (b - a) as f64) as f32
}

/// Otsu's threshold bin: the first bin of the upper class, maximising the between-class variance.
fn otsu(hist: &[f64]) -> usize {
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut w0, mut s0, mut best, mut best_t) = (0.0, 0.0, -1.0, 1);
    for (i, &h) in hist.iter().enumerate().take(hist.len() - 1) {
        w0 += h;
        s0 += i as f64 * h;
        let w1 = total - w0;
        if w0 <= 0.0 || w1 <= 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum_all - s0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = i + 1;
        }
    }
    best_t
}

/// Box filter of half-width `r`.
fn smooth(hist: &[f64], r: usize) -> Vec<f64> {
    (0..hist.len())
        .map(|i| {
            let a = i.saturating_sub(r);
            let b = (i + r + 1).min(hist.len());
            hist[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests;
