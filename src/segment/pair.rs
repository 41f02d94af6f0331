//! A thin/thick model pair: two segmenters, one for thin-slice series and one for thick-slice
//! (routine) series, the one that runs chosen per series by its median slice gap.
//!
//! Why (models/MODEL-cpu-3.md, leave-2-out sessions 31-32): a CNN working at 0.976 mm pixels (`cpu-8`,
//! a 33x33 patch spans 32 mm) segments 4-5 mm routine head CT better than the 0.488 mm one
//! (`cpu-3`, a 16 mm patch): routine-5mm DSC 0.881 against 0.861, because the broad partial-volume
//! bands where thick slices cut the vault obliquely need more context. On thin series it loses
//! the thin skull base (skull-base DSC 0.39 against 0.58 on 1 mm H30s) and surface accuracy
//! (mean |deviation| 0.45 against 0.36 mm). So each series goes to the model that is better for
//! its slices. The gap is the median distance between consecutive slice positions along the
//! slice normal (PS3.3 C.7.6.2.1.1, [`crate::dicom::geometry::Geometry::nominal_slice_spacing`]),
//! so a series of mixed gaps (a GE head of 4 and 7 mm blocks) is judged by most of its slices.
//! The slab each slice averages is the larger of that gap and SliceThickness (0018,0050) when the
//! series states a plausible one: an overlapping reconstruction (5 mm slabs every 2.5 mm) has a
//! thin gap but the thick slab's partial volume, and the thin model found 0.23 DSC on one where
//! the thick model found 0.84 (bad-input trial, session 38). A thickness that is absent, not
//! positive or above [`MAX_THICK_FROM_MM`] is ignored; a wrong large one costs less (the thick
//! model on 1 mm series: DSC 0.938 against the thin model's 0.932 on h30s-s1, losing the thin
//! skull base) than a wrong small gap would.

use std::sync::Mutex;

use super::{AlgorithmIdentity, Mask, PostProcessing, SegmentError, Segmenter};
use crate::dicom::series::CtVolume;

/// Default gap (mm) from which a series counts as thick: between the thin-slice reconstructions
/// of the training scanners (0.6-1.5 mm) and the routine ones (4 and 5 mm). Gaps between 1.5 and 4
/// mm were not in the leave-2-out; 3 mm keeps 2-2.5 mm series on the thin model, which was trained
/// for fine structures.
pub const THICK_FROM_MM: f64 = 3.0;

/// Largest split accepted on the command line, mm: no CT series of a head has slices this far
/// apart, so a larger value would only send every series to the thin model unnoticed.
pub const MAX_THICK_FROM_MM: f64 = 20.0;

/// Parses a split given on the command line (`--thick-from-mm`): a number of mm above 0 and at
/// most [`MAX_THICK_FROM_MM`].
///
/// # Errors
/// A message naming the value otherwise.
pub fn parse_thick_from_mm(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number of mm"))
        .and_then(check_thick_from_mm)
}

/// Checks a split (mm, from the command line or `[pipeline] thick_from_mm`): above 0, finite
/// and at most [`MAX_THICK_FROM_MM`].
///
/// # Errors
/// A message naming the value otherwise.
pub fn check_thick_from_mm(v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 && v <= MAX_THICK_FROM_MM {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not a positive number of mm up to {MAX_THICK_FROM_MM}"
        ))
    }
}

/// Which model of a pair ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairModel {
    /// The thin-slice model (median gap below the split).
    Thin,
    /// The thick-slice model (median gap at or above the split).
    Thick,
}

/// The choice a pair made for one series (recorded in `report.json` under
/// `segmentation.model_choice`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairChoice {
    /// The model that ran.
    pub model: PairModel,
    /// Median slice gap of the series along the slice normal, mm.
    pub median_slice_gap_mm: f64,
    /// SliceThickness (0018,0050) of the series when stated and plausible (above 0, at most
    /// [`MAX_THICK_FROM_MM`]), mm.
    pub slice_thickness_mm: Option<f64>,
    /// What decided: the larger of the median gap and the slice thickness, mm.
    pub slab_mm: f64,
    /// The split: gaps at or above it go to the thick model, mm.
    pub thick_from_mm: f64,
}

/// Median (mm) of the gaps between consecutive slices along the slice normal
/// ([`crate::dicom::geometry::Geometry::slice_spacings`]); for an even count the mean of the two
/// middle gaps (gaps 1, 1, 1, 4, 4, 4 give 2.5: neither block decides alone). `None` for a single
/// slice.
pub fn median_slice_gap_mm(geometry: &crate::dicom::geometry::Geometry) -> Option<f64> {
    let mut g = geometry.slice_spacings();
    if g.is_empty() {
        return None;
    }
    g.sort_by(f64::total_cmp);
    let n = g.len();
    Some(if n % 2 == 1 {
        g[n / 2]
    } else {
        (g[n / 2 - 1] + g[n / 2]) / 2.0
    })
}

/// Chooses the model for `ct`: thick when its slab, the larger of its median slice gap
/// ([`median_slice_gap_mm`]) and its stated SliceThickness (when above 0 and at most
/// [`MAX_THICK_FROM_MM`]), is at least `thick_from_mm`; a single slice (no gap) is judged by its
/// thickness alone.
pub fn choose(ct: &CtVolume, thick_from_mm: f64) -> PairChoice {
    let gap = median_slice_gap_mm(&ct.geometry).unwrap_or(0.0);
    let thickness = ct
        .info
        .slice_thickness
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_THICK_FROM_MM);
    let slab = thickness.map_or(gap, |t| gap.max(t));
    PairChoice {
        model: if slab >= thick_from_mm {
            PairModel::Thick
        } else {
            PairModel::Thin
        },
        median_slice_gap_mm: gap,
        slice_thickness_mm: thickness,
        slab_mm: slab,
        thick_from_mm,
    }
}

/// Two segmenters behind one [`Segmenter`]: [`PairSegmenter::thin`] for series whose median
/// slice gap is below [`PairSegmenter::thick_from_mm`], [`PairSegmenter::thick`] for the others.
/// The SEG names the model that ran ([`Segmenter::identity_for`]); the per-result figures
/// (confidence, anchors, post-processing) are the last-run model's.
pub struct PairSegmenter {
    /// The model for thin-slice series.
    pub thin: Box<dyn Segmenter>,
    /// The model for thick-slice series.
    pub thick: Box<dyn Segmenter>,
    /// Split, mm: a median slice gap at or above it goes to `thick`.
    pub thick_from_mm: f64,
    last: Mutex<Option<PairChoice>>,
}

impl PairSegmenter {
    /// A pair splitting at `thick_from_mm` (mm, e.g. [`THICK_FROM_MM`]).
    ///
    /// # Errors
    /// A message when `thick_from_mm` is not a positive finite number.
    pub fn new(
        thin: Box<dyn Segmenter>,
        thick: Box<dyn Segmenter>,
        thick_from_mm: f64,
    ) -> Result<PairSegmenter, String> {
        if !(thick_from_mm.is_finite() && thick_from_mm > 0.0) {
            return Err(format!(
                "the thin/thick split must be a positive number of mm, not {thick_from_mm}"
            ));
        }
        Ok(PairSegmenter {
            thin,
            thick,
            thick_from_mm,
            last: Mutex::new(None),
        })
    }

    fn model(&self, m: PairModel) -> &dyn Segmenter {
        match m {
            PairModel::Thin => self.thin.as_ref(),
            PairModel::Thick => self.thick.as_ref(),
        }
    }

    /// The model of the last result (`None` before any).
    fn last_model(&self) -> Option<&dyn Segmenter> {
        let last = self.last.lock().ok()?.as_ref().map(|c| c.model)?;
        Some(self.model(last))
    }
}

impl Segmenter for PairSegmenter {
    /// Both models: `name` the thin model's, `version` `thin <v> | thick <v> | from <mm> mm`.
    fn identity(&self) -> AlgorithmIdentity {
        let (a, b) = (self.thin.identity(), self.thick.identity());
        AlgorithmIdentity {
            name: a.name.clone(),
            version: format!(
                "thin {} | thick {} | from {} mm",
                a.version, b.version, self.thick_from_mm
            ),
            skull_specific: a.skull_specific && b.skull_specific,
        }
    }

    fn identity_for(&self, ct: &CtVolume) -> AlgorithmIdentity {
        self.model(choose(ct, self.thick_from_mm).model)
            .identity_for(ct)
    }

    fn segment(&self, ct: &CtVolume) -> Result<Mask, SegmentError> {
        let choice = choose(ct, self.thick_from_mm);
        tracing::info!(
            model = ?choice.model,
            median_slice_gap_mm = choice.median_slice_gap_mm,
            slice_thickness_mm = ?choice.slice_thickness_mm,
            slab_mm = choice.slab_mm,
            thick_from_mm = choice.thick_from_mm,
            "thin/thick pair: model chosen by the slab (the larger of gap and thickness)"
        );
        let model = choice.model;
        if let Ok(mut last) = self.last.lock() {
            *last = Some(choice);
        }
        self.model(model).segment(ct)
    }

    fn mean_confidence(&self) -> Option<f64> {
        self.last_model()?.mean_confidence()
    }

    fn grey_anchors(&self) -> Option<[f64; 2]> {
        self.last_model()?.grey_anchors()
    }

    fn post_processing(&self) -> Option<PostProcessing> {
        self.last_model()?.post_processing()
    }

    fn model_choice(&self) -> Option<PairChoice> {
        self.last.lock().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::geometry::Geometry;
    use crate::segment::threshold::ThresholdSegmenter;

    /// A 6 x 16 x 16 volume with slices at `z` (mm): a 6 x 6 block of 500 HU (bone for a 226 HU
    /// threshold, not for a 700 HU one) and a 2 x 2 core of 900 HU, in air.
    fn ct(z: &[f64]) -> CtVolume {
        let hu = ndarray::Array3::from_shape_fn((z.len(), 16, 16), |(_, j, i)| {
            if (7..9).contains(&j) && (7..9).contains(&i) {
                900.0
            } else if (5..11).contains(&j) && (5..11).contains(&i) {
                500.0
            } else {
                -1000.0
            }
        });
        CtVolume {
            hu,
            geometry: Geometry {
                ipp: z.iter().map(|&z| [0.0, 0.0, z]).collect(),
                iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                pixel_spacing: [0.5, 0.5],
                rows: 16,
                cols: 16,
            },
            slices: Vec::new(),
            info: Default::default(),
        }
    }

    fn pair(split: f64) -> PairSegmenter {
        PairSegmenter::new(
            Box::new(ThresholdSegmenter {
                threshold_hu: 226.0,
            }),
            Box::new(ThresholdSegmenter {
                threshold_hu: 700.0,
            }),
            split,
        )
        .unwrap()
    }

    fn bone(m: &Mask) -> usize {
        m.iter().filter(|&&v| v != 0).count()
    }

    #[test]
    fn thin_series_run_the_thin_model_and_thick_ones_the_thick_model() {
        let p = pair(THICK_FROM_MM);
        assert_eq!(p.model_choice(), None);
        let thin = ct(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(bone(&p.segment(&thin).unwrap()), 6 * 36);
        let c = p.model_choice().unwrap();
        assert_eq!(c.model, PairModel::Thin);
        assert!((c.median_slice_gap_mm - 1.0).abs() < 1e-12);
        assert_eq!(p.identity_for(&thin).version, p.thin.identity().version);

        let thick = ct(&[0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(bone(&p.segment(&thick).unwrap()), 6 * 4);
        let c = p.model_choice().unwrap();
        assert_eq!(c.model, PairModel::Thick);
        assert!((c.median_slice_gap_mm - 5.0).abs() < 1e-12);
        assert_eq!(p.identity_for(&thick).version, p.thick.identity().version);
        assert!(p.identity().version.contains("| from 3 mm"));
    }

    #[test]
    fn the_split_gap_itself_is_thick_and_mixed_gaps_go_by_the_median() {
        let p = pair(4.0);
        // Exactly at the split.
        assert_eq!(
            choose(&ct(&[0.0, 4.0, 8.0, 12.0, 16.0, 20.0]), 4.0).model,
            PairModel::Thick
        );
        // Gaps 4, 4, 1.08, 7, 7 (a GE head of 4 and 7 mm blocks): median 4 -> thick.
        let mixed = ct(&[0.0, 4.0, 8.0, 9.08, 16.08, 23.08]);
        assert_eq!(choose(&mixed, 4.0).model, PairModel::Thick);
        // Gaps 1, 1, 1, 7, 7: median 1 -> thin, whatever the long gaps.
        let mostly_thin = ct(&[0.0, 1.0, 2.0, 3.0, 10.0, 17.0]);
        assert_eq!(choose(&mostly_thin, 4.0).model, PairModel::Thin);
        // An even count: gaps 1, 1, 4, 4 -> 2.5 (the mean of the middle two) -> thin at 3 mm.
        let even = choose(&ct(&[0.0, 1.0, 2.0, 6.0, 10.0]), 3.0);
        assert_eq!(
            (even.model, even.median_slice_gap_mm),
            (PairModel::Thin, 2.5)
        );
        assert_eq!(bone(&p.segment(&mostly_thin).unwrap()), 6 * 36);
    }

    #[test]
    fn a_stated_slice_thickness_above_the_gap_decides() {
        // 5 mm slabs every 2.5 mm (an overlapping reconstruction): thick.
        let mut overlap = ct(&[0.0, 2.5, 5.0, 7.5, 10.0]);
        overlap.info.slice_thickness = Some(5.0);
        let c = choose(&overlap, 3.0);
        assert_eq!(
            (
                c.model,
                c.median_slice_gap_mm,
                c.slice_thickness_mm,
                c.slab_mm
            ),
            (PairModel::Thick, 2.5, Some(5.0), 5.0)
        );
        // 1.25 mm slabs every 0.625 mm stay thin; a thickness below the gap does not matter.
        let mut thin = ct(&[0.0, 0.625, 1.25, 1.875]);
        thin.info.slice_thickness = Some(1.25);
        assert_eq!(choose(&thin, 3.0).model, PairModel::Thin);
        let mut wide = ct(&[0.0, 5.0, 10.0]);
        wide.info.slice_thickness = Some(1.0);
        assert_eq!(choose(&wide, 3.0).slab_mm, 5.0);
        // Implausible thicknesses are ignored: 0, negative, NaN, above 20 mm.
        for t in [0.0, -5.0, f64::NAN, 25.0] {
            let mut odd = ct(&[0.0, 1.0, 2.0]);
            odd.info.slice_thickness = Some(t);
            let c = choose(&odd, 3.0);
            assert_eq!(
                (c.model, c.slice_thickness_mm),
                (PairModel::Thin, None),
                "{t}"
            );
        }
    }

    #[test]
    fn a_split_that_is_not_a_positive_length_is_refused() {
        assert_eq!(parse_thick_from_mm(" 2.5"), Ok(2.5));
        assert_eq!(parse_thick_from_mm("20"), Ok(20.0));
        for bad in [
            "0", "-3", "nan", "inf", "3mm", "", "20.5", "1e300", "1e-300x",
        ] {
            assert!(parse_thick_from_mm(bad).is_err(), "{bad}");
        }
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = PairSegmenter::new(
                Box::new(ThresholdSegmenter::default()),
                Box::new(ThresholdSegmenter::default()),
                bad,
            )
            .err()
            .unwrap();
            assert!(e.contains("positive number of mm"), "{e}");
        }
    }
}
