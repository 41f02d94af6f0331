//! Series assembly: group instances by SeriesInstanceUID, drop what is not axial CT (with a logged
//! reason), split acquisitions and duplicates, sort by IPP projection on the slice normal, and build a
//! [`CtVolume`] with exact per-slice geometry.

use std::path::PathBuf;

use ndarray::Array3;
use serde::Serialize;

use super::geometry::Geometry;

/// Identity and acquisition attributes of a series, taken from its first slice. Empty string / None
/// when the attribute is absent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesInfo {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub modality: String,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part_examined: String,
    pub image_type: Vec<String>,
    pub manufacturer: String,
    pub manufacturer_model_name: String,
    pub station_name: String,
    pub device_serial_number: String,
    pub convolution_kernel: String,
    /// KVP (kV).
    pub kvp: Option<f64>,
    /// XRayTubeCurrent (mA).
    pub xray_tube_current: Option<f64>,
    /// Exposure (mAs).
    pub exposure: Option<f64>,
    /// SliceThickness (mm), nominal; never used for geometry.
    pub slice_thickness: Option<f64>,
}

/// One source slice: a single-frame instance or one frame of a multi-frame (Enhanced CT) instance.
#[derive(Clone, Debug, Serialize)]
pub struct SliceRef {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// 1-based frame number inside a multi-frame source; `None` for single-frame instances.
    pub frame_number: Option<u32>,
    /// File the slice was read from.
    pub path: PathBuf,
}

/// An assembled CT series: HU voxels plus exact geometry.
#[derive(Clone, Debug)]
pub struct CtVolume {
    /// Hounsfield units, shape `[k, j, i]` = `[slices, Rows, Columns]`; PixelPaddingValue voxels are
    /// set to [`AIR_HU`].
    pub hu: Array3<f32>,
    /// Per-slice geometry, same `k` order as `hu`.
    pub geometry: Geometry,
    /// Source slice of each `k`.
    pub slices: Vec<SliceRef>,
    /// Series identity and scanner attributes.
    pub info: SeriesInfo,
}

/// HU given to padding voxels (PixelPaddingValue) and to anything outside the field of view.
pub const AIR_HU: f32 = -1000.0;
