//! The classical baseline: global threshold + largest 3-D connected component.
//!
//! This is what a medical engineer does first in Mimics (Minnema et al. 2018, §1): every voxel at or
//! above the threshold (default 226 HU, Mimics' "Bone (CT)" preset) is bone, then the largest
//! 26-connected component is kept, which drops the head rest, the table and isolated noise.

use super::components::{largest_component, Connectivity};
use super::{AlgorithmIdentity, Mask, SegmentError, Segmenter};
use crate::dicom::series::CtVolume;

/// Default bone threshold in HU.
pub const DEFAULT_THRESHOLD_HU: f32 = 226.0;

/// Global-threshold segmenter.
#[derive(Clone, Debug)]
pub struct ThresholdSegmenter {
    /// Voxels with HU >= this are bone.
    pub threshold_hu: f32,
}

impl Default for ThresholdSegmenter {
    fn default() -> Self {
        Self {
            threshold_hu: DEFAULT_THRESHOLD_HU,
        }
    }
}

impl Segmenter for ThresholdSegmenter {
    fn identity(&self) -> AlgorithmIdentity {
        AlgorithmIdentity {
            name: "osteon-threshold".to_owned(),
            version: format!(
                "{}HU-lcc26/{}",
                self.threshold_hu,
                env!("CARGO_PKG_VERSION")
            ),
            skull_specific: false,
        }
    }

    fn segment(&self, ct: &CtVolume) -> Result<Mask, SegmentError> {
        let t = self.threshold_hu;
        let raw = ct.hu.mapv(|v| u8::from(v >= t));
        let (mask, n) = largest_component(&raw, Connectivity::TwentySix);
        if n == 0 {
            return Err(SegmentError::NoBone(format!("no voxel at or above {t} HU")));
        }
        tracing::debug!(components = n, threshold_hu = t, "threshold segmentation");
        Ok(mask)
    }
}
