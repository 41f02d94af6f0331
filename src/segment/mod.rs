//! Bone segmentation: a [`Segmenter`] takes a [`CtVolume`] and returns a binary [`Mask`].
//!
//! * [`threshold`]: the classical baseline (global HU threshold + largest 3-D connected component),
//!   the "current practice" of the paper (Minnema et al. 2018, §1) and the comparison point for the CNN.
//! * [`cnn`]: the CNN patch classifier of the paper, evaluated densely (fully convolutional).
//! * [`components`]: connected-component labelling shared by the segmenters and the mesher.
//! * [`bones`]: which pieces the CNN's mask keeps (the skull and separate bones inside the body).
//! * [`fill`]: the CNN's marrow fill (bone-enclosed holes of bone-like mean grey value become bone).
//! * [`grow`]: the CNN's half-maximum grow (partial-volume bone beside the mask becomes bone).
//! * [`pair`]: a thin/thick model pair, the model chosen per series by its slab (median slice gap
//!   or SliceThickness).

pub mod bones;
pub mod cnn;
pub mod components;
pub mod fill;
pub mod grow;
pub mod hysteresis;
pub mod pair;
pub mod post;
pub mod threshold;

use ndarray::Array3;

use crate::dicom::series::CtVolume;

/// Binary segmentation `[k, j, i]` on the source CT grid: 1 = bone, 0 = background.
pub type Mask = Array3<u8>;

/// What a segmenter says about itself; written into the SEG (Segment Algorithm Name / software
/// versions) and the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AlgorithmIdentity {
    /// SegmentAlgorithmName (0062,0009), e.g. `osteon-threshold`.
    pub name: String,
    /// Version of the algorithm or model, e.g. `226HU-lcc26/0.1.0`.
    pub version: String,
    /// `true` when the output is the skull only (SEG codes Anatomical Structure / Skull), `false` for
    /// any bone (Tissue / Bone); see docs/design.md.
    pub skull_specific: bool,
}

/// How the CNN segmenter post-processes its thresholded mask (`--post-processing`, a route's
/// `post_processing`); [`PostProcessing`] records what was done.
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
pub enum PostMode {
    /// Marrow fill ([`fill`]), the half-maximum grow ([`grow`]), then the largest piece and every
    /// separate bone inside the body ([`bones`]): the SEG holds the skull, the mandible and other
    /// bones.
    #[default]
    Bones,
    /// The largest 26-connected component only, as the paper's evaluation does before meshing
    /// (Minnema et al. 2018, metrics) and the threshold baseline does.
    Largest,
    /// The thresholded network output as it is (every speck; for inspecting the network).
    Raw,
}

/// What the CNN segmenter did to its thresholded mask before returning it (recorded in
/// `report.json` under `segmentation.post_processing`), so a reader of one result can tell a
/// filled or dropped region from the network's own output.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PostProcessing {
    /// The mode that ran.
    pub mode: PostMode,
    /// The marrow fill ([`fill::fill_marrow`]); `None` when it did not run.
    pub marrow_fill: Option<fill::FillStats>,
    /// Why the marrow fill did not run (voxels coarser than [`fill::MAX_VOXEL_MM`], or no
    /// grey-value anchors); `None` when it ran.
    pub marrow_fill_skipped: Option<String>,
    /// The half-maximum grow ([`grow::grow_half_max`]); `None` when it did not run.
    pub half_max_grow: Option<GrowStats>,
    /// Why the half-maximum grow did not run with [`PostMode::Bones`] ([`grow::GrowSkip`]);
    /// `None` when it ran or in another mode.
    pub half_max_grow_skipped: Option<String>,
    /// The probability hysteresis ([`hysteresis::hysteresis`], before the half-maximum grow);
    /// `None` when it did not run (another mode, no probabilities, or the grow's gate skipped).
    pub hysteresis: Option<hysteresis::HysteresisStats>,
    /// The pieces of the mask found, kept and dropped ([`bones::keep_bones`]); with
    /// [`PostMode::Largest`] the one kept is the largest, with [`PostMode::Raw`] all are kept.
    pub pieces: bones::Kept,
}

/// What the half-maximum grow ([`grow::grow_half_max`]) did.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct GrowStats {
    /// Its gate (the scan's grey values), the bone level it halves and its reach (mm).
    pub gate: grow::GrowGate,
    /// Voxels that became bone (0 when the grow was undone).
    pub voxels_added: u64,
    /// Voxels the grow would have added when it was undone (more than
    /// [`grow::MAX_ADDED_FRACTION`] of the network's mask); `None` when it was kept.
    pub undone_voxels: Option<u64>,
}

/// Errors of a segmenter.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The volume holds no voxel that the segmenter could call bone.
    #[error("no bone found: {0}")]
    NoBone(String),
    /// The model or its runtime failed.
    #[error("segmenter failed: {0}")]
    Runtime(String),
}

/// A bone segmenter.
pub trait Segmenter: Send + Sync {
    /// Name and version for the SEG and the report.
    fn identity(&self) -> AlgorithmIdentity;
    /// Name and version of what [`Segmenter::segment`] runs on `ct`: the model a
    /// [`pair::PairSegmenter`] chooses for it; [`Segmenter::identity`] for a single segmenter.
    fn identity_for(&self, ct: &CtVolume) -> AlgorithmIdentity {
        let _ = ct;
        self.identity()
    }
    /// Segments `ct`; the mask has the shape of `ct.hu`.
    ///
    /// # Errors
    /// [`SegmentError::NoBone`] when nothing is found, [`SegmentError::Runtime`] when the model fails.
    fn segment(&self, ct: &CtVolume) -> Result<Mask, SegmentError>;
    /// Mean model confidence (probability of the chosen class, 0..=1, averaged over the voxels the
    /// model scored) of the last mask this segmenter returned; a per-scanner QA figure of the node.
    /// `None` for segmenters without a confidence (the threshold baseline) and before any result.
    fn mean_confidence(&self) -> Option<f64> {
        None
    }
    /// Grey-value anchors `[air, soft tissue]` of the last result's normalisation, in the scan's
    /// own grey values (HU on calibrated CT: near -1000 and 20-40); a per-scanner QA figure that
    /// shows an uncalibrated scanner, a masked background or a wrong anchor. `None` for
    /// segmenters on fixed HU (the threshold baseline) and before any result.
    fn grey_anchors(&self) -> Option<[f64; 2]> {
        None
    }
    /// What the last result's post-processing did ([`PostProcessing`]); `None` for segmenters
    /// without one (the threshold baseline keeps the paper's largest component) and before any
    /// result.
    fn post_processing(&self) -> Option<PostProcessing> {
        None
    }
    /// Which model of a thin/thick pair made the last result, and why ([`pair::PairChoice`]);
    /// `None` for a single segmenter and before any result.
    fn model_choice(&self) -> Option<pair::PairChoice> {
        None
    }
}
