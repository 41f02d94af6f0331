//! Per-scanner QA of the node (issue item 6): for every job one [`QaRecord`] — scanner identity and
//! acquisition (Manufacturer, ManufacturerModelName, StationName, DeviceSerialNumber,
//! ConvolutionKernel, KVP, tube current, exposure, SliceThickness, PixelSpacing, tilt, slices),
//! timing (received, queued, started, per stage, exported) and results (bone volume, components,
//! triangles, model, mean model confidence, DSC with the threshold baseline, noise in air) — stored
//! in the `qa` table of `data_dir/osteon.db` ([`store`]) and emitted as one tracing event (target
//! `osteon::qa`, message `qa`). `osteon qa` prints the per-scanner table and writes the CSV
//! ([`table`]).
//!
//! The image figures ([`ImageQa`]) are computed by [`image_qa`] in the worker, while the HU voxels
//! and the mask are both in memory:
//! * **noise in air** ([`air_noise_hu`]): robust standard deviation of the HU of air voxels far
//!   from the body: the SD of the voxels within 5 robust SDs (1.4826 × median absolute deviation,
//!   MAD) of their median. Per slice, the body is the bounding box
//!   of the voxels above [`BODY_HU`], grown by [`AIR_MARGIN_MM`]; candidates lie outside that box,
//!   inside [`FOV_FRACTION`] of the inscribed circle of the image (the reconstruction field of view;
//!   outside it scanners write constant padding), below [`AIR_MAX_HU`]; every second row and
//!   column is sampled. The MAD window drops the few voxels of cushions, cables or streaks that
//!   pass these tests (the MAD's breakdown point is 50 %), and the SD inside it avoids the
//!   quantisation of a MAD of integer HU. Fewer than [`MIN_AIR_VOXELS`] candidates or a MAD of 0
//!   (constant air: padding, noise-free synthetic data) give `None`. Method after the
//!   background-air noise estimate of MRI/CT QA practice (e.g. the AAPM CT QA notion of noise as
//!   the SD in a uniform region), made robust with the MAD (Rousseeuw & Croux 1993).
//! * **agreement with the threshold baseline**: Dice similarity coefficient (DSC) between the mask
//!   and the threshold baseline ([`crate::segment::threshold::ThresholdSegmenter`] at its default
//!   226 HU) run on the same volume. For the threshold segmenter itself the DSC is 1.0 by definition
//!   (the baseline is not run again).
//! * **mean model confidence**: [`crate::segment::Segmenter::mean_confidence`]; `None` for the
//!   threshold segmenter.
//! * **grey-value anchors** of the CNN's normalisation (air, soft tissue;
//!   [`crate::segment::Segmenter::grey_anchors`]): near -1000 / 20-40 HU on calibrated CT. A
//!   scanner whose anchors drift, or a series whose air anchor sits far above -1000 HU (a masked
//!   background: all air one constant value), is visible per scanner before its results are.

use ndarray::Axis;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dicom::series::CtVolume;
use crate::segment::threshold::ThresholdSegmenter;
use crate::segment::{Mask, Segmenter};

#[path = "qa/store.rs"]
pub mod store;
#[path = "qa/table.rs"]
pub mod table;

pub use store::{QaError, QaStore};

/// HU above which a voxel counts as body (soft tissue, bone, table) for the air region.
pub const BODY_HU: f32 = -500.0;
/// Voxels below this HU are air candidates.
pub const AIR_MAX_HU: f32 = -900.0;
/// Margin (mm) between the body's bounding box and the air region.
pub const AIR_MARGIN_MM: f64 = 20.0;
/// Fraction of the inscribed circle's radius treated as inside the reconstruction field of view.
pub const FOV_FRACTION: f64 = 0.9;
/// Fewest sampled air voxels for a noise estimate.
pub const MIN_AIR_VOXELS: usize = 1000;
/// Scale of the MAD to the SD of a normal distribution (1 / Φ⁻¹(3/4)).
const MAD_TO_SD: f64 = 1.4826;
/// Half-width of the window around the median, in robust SDs (1.4826 × MAD).
const CLIP_SDS: f32 = 5.0;

/// Image-derived QA figures of one series (carried in `report.json` as `image_qa`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageQa {
    /// Robust SD of HU in air far from the body (see the module documentation), HU.
    pub noise_air_hu: Option<f64>,
    /// Median HU of the same air voxels (≈ -1000 on a calibrated scanner).
    pub air_median_hu: Option<f64>,
    /// Air voxels sampled.
    pub air_voxels: u64,
    /// Mean model confidence of the segmenter's last result (0..=1); `None` for the threshold
    /// segmenter.
    pub mean_confidence: Option<f64>,
    /// DSC of the mask with the threshold baseline on the same volume; 1.0 by definition when
    /// the segmenter is the threshold baseline; `None` when the baseline failed.
    pub dsc_threshold_baseline: Option<f64>,
    /// Air anchor of the CNN's grey-value normalisation ([`Segmenter::grey_anchors`]), in the
    /// scan's grey values (HU when calibrated); `None` for the threshold segmenter.
    #[serde(default)]
    pub air_anchor_hu: Option<f64>,
    /// Soft-tissue anchor of the same normalisation.
    #[serde(default)]
    pub tissue_anchor_hu: Option<f64>,
}

/// The image figures of `ct` (HU `[k, j, i]`) segmented by `segmenter` into `mask` (same shape).
/// Never fails: a figure that cannot be computed is `None`.
pub fn image_qa(ct: &CtVolume, mask: &Mask, segmenter: &dyn Segmenter) -> ImageQa {
    let (noise, median, n) = match air_noise_hu(ct) {
        Some(a) => (Some(a.sd_hu), Some(a.median_hu), a.voxels as u64),
        None => (None, None, 0),
    };
    let identity = segmenter.identity();
    let baseline = ThresholdSegmenter::default();
    let dsc = if identity.name == baseline.identity().name {
        Some(1.0)
    } else {
        match baseline.segment(ct) {
            Ok(b) => dice(mask, &b),
            Err(e) => {
                tracing::warn!(error = %e, "QA: threshold baseline failed, no DSC");
                None
            }
        }
    };
    ImageQa {
        noise_air_hu: noise,
        air_median_hu: median,
        air_voxels: n,
        mean_confidence: segmenter.mean_confidence(),
        dsc_threshold_baseline: dsc,
        air_anchor_hu: segmenter.grey_anchors().map(|a| a[0]),
        tissue_anchor_hu: segmenter.grey_anchors().map(|a| a[1]),
    }
}

/// Dice similarity coefficient 2|A∩B| / (|A| + |B|) of two masks of the same shape (non-zero =
/// foreground); `None` for different shapes or two empty masks.
pub fn dice(a: &Mask, b: &Mask) -> Option<f64> {
    if a.shape() != b.shape() {
        return None;
    }
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        let (x, y) = (x != 0, y != 0);
        both += u64::from(x && y);
        na += u64::from(x);
        nb += u64::from(y);
    }
    (na + nb > 0).then(|| 2.0 * both as f64 / (na + nb) as f64)
}

/// Result of [`air_noise_hu`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AirNoise {
    /// SD within 5 robust SDs of the median, HU.
    pub sd_hu: f64,
    /// Median, HU.
    pub median_hu: f64,
    /// Voxels in the window.
    pub voxels: usize,
}

/// Noise in air of `ct` (method in the module documentation); `None` when fewer than
/// [`MIN_AIR_VOXELS`] air voxels are found or the air is constant.
pub fn air_noise_hu(ct: &CtVolume) -> Option<AirNoise> {
    let [_, rows, cols] = ct.geometry.dims();
    if rows < 4 || cols < 4 || ct.hu.shape() != [ct.geometry.slices(), rows, cols] {
        return None;
    }
    let [dj, di] = ct.geometry.pixel_spacing;
    let mj = margin_px(dj, rows);
    let mi = margin_px(di, cols);
    let (cj, ci) = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    let r = FOV_FRACTION * rows.min(cols) as f64 / 2.0;
    let mut values: Vec<f32> = ct
        .hu
        .axis_iter(Axis(0))
        .into_par_iter()
        .flat_map_iter(|slice| {
            let mut body: Option<[usize; 4]> = None;
            for ((j, i), &v) in slice.indexed_iter() {
                if v > BODY_HU {
                    let b = body.get_or_insert([j, j, i, i]);
                    b[0] = b[0].min(j);
                    b[1] = b[1].max(j);
                    b[2] = b[2].min(i);
                    b[3] = b[3].max(i);
                }
            }
            let grown = body.map(|[j0, j1, i0, i1]| {
                [
                    j0.saturating_sub(mj),
                    j1 + mj,
                    i0.saturating_sub(mi),
                    i1 + mi,
                ]
            });
            let mut out = Vec::new();
            for j in (0..rows).step_by(2) {
                for i in (0..cols).step_by(2) {
                    let (y, x) = (j as f64 - cj, i as f64 - ci);
                    if y * y + x * x > r * r {
                        continue;
                    }
                    if let Some([j0, j1, i0, i1]) = grown {
                        if (j0..=j1).contains(&j) && (i0..=i1).contains(&i) {
                            continue;
                        }
                    }
                    let v = slice[[j, i]];
                    if v.is_finite() && v < AIR_MAX_HU {
                        out.push(v);
                    }
                }
            }
            out
        })
        .collect();
    if values.len() < MIN_AIR_VOXELS {
        return None;
    }
    let median = median_in_place(&mut values);
    let mut dev: Vec<f32> = values.iter().map(|&v| (v - median).abs()).collect();
    let mad = median_in_place(&mut dev);
    if mad <= 0.0 {
        return None;
    }
    // MAD of integer HU is quantised (MAD = 2 HU for any SD near 3 HU): the figure is the SD of
    // the voxels within CLIP_SDS robust SDs of the median, which keeps the MAD's immunity to
    // outliers without its quantisation (truncation at 5 SD loses < 1e-4 of the variance).
    let window = f64::from(CLIP_SDS) * MAD_TO_SD * f64::from(mad);
    let (mut n, mut sum, mut sum2) = (0usize, 0f64, 0f64);
    for &v in &values {
        let d = f64::from(v - median);
        if d.abs() <= window {
            n += 1;
            sum += d;
            sum2 += d * d;
        }
    }
    let mean = sum / n.max(1) as f64;
    let sd = (sum2 / n.max(1) as f64 - mean * mean).max(0.0).sqrt();
    Some(AirNoise {
        sd_hu: sd,
        median_hu: f64::from(median),
        voxels: n,
    })
}

fn margin_px(spacing_mm: f64, n: usize) -> usize {
    if spacing_mm.is_finite() && spacing_mm > 0.0 {
        ((AIR_MARGIN_MM / spacing_mm).ceil() as usize).min(n)
    } else {
        n / 20
    }
}

/// Median (upper median for even lengths) by selection; `values` is reordered. Empty -> 0.
fn median_in_place(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// One job's QA figures: the row of the `qa` table and of the CSV, the fields of the `qa` event.
/// Times are Unix ms (UTC), durations ms, lengths mm, angles degrees, volumes mL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QaRecord {
    /// Job id.
    pub job_id: i64,
    /// Job version (1, then +1 per re-run after late instances).
    pub version: i64,
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_uid: String,
    /// Calling AE title of the sender.
    pub calling_ae: String,
    /// Manufacturer (0008,0070).
    pub manufacturer: String,
    /// ManufacturerModelName (0008,1090).
    pub model_name: String,
    /// StationName (0008,1010).
    pub station_name: String,
    /// DeviceSerialNumber (0018,1000).
    pub device_serial_number: String,
    /// ConvolutionKernel (0018,1210).
    pub convolution_kernel: String,
    /// KVP (0018,0060), kV.
    pub kvp: Option<f64>,
    /// XRayTubeCurrent (0018,1151), mA.
    pub tube_current_ma: Option<f64>,
    /// Exposure (0018,1152), mAs.
    pub exposure_mas: Option<f64>,
    /// SliceThickness (0018,0050), mm (nominal).
    pub slice_thickness_mm: Option<f64>,
    /// PixelSpacing (0028,0030) row spacing Δj, mm.
    pub pixel_spacing_row_mm: f64,
    /// PixelSpacing column spacing Δi, mm.
    pub pixel_spacing_col_mm: f64,
    /// Gantry tilt from the slice geometry, degrees.
    pub tilt_deg: f64,
    /// Slices of the processed volume.
    pub slices: i64,
    /// First instance of the series written to the spool (file time), Unix ms.
    pub first_received_ms: Option<i64>,
    /// Last instance written to the spool, Unix ms.
    pub last_received_ms: Option<i64>,
    /// Job recorded (series complete), Unix ms.
    pub queued_ms: i64,
    /// Processing started, Unix ms.
    pub started_ms: i64,
    /// `started_ms - queued_ms`.
    pub queue_wait_ms: i64,
    /// Reading and decoding the series, ms.
    pub read_ms: f64,
    /// Segmentation, ms.
    pub segment_ms: f64,
    /// Mesh, ms.
    pub mesh_ms: f64,
    /// Building and writing the SEG, ms.
    pub seg_write_ms: f64,
    /// Writing the STL and the Encapsulated STL, ms.
    pub stl_write_ms: f64,
    /// Whole processing (read to report), ms.
    pub process_ms: f64,
    /// Last export attempt (all destinations), ms; `None` until exported.
    pub export_ms: Option<f64>,
    /// Results stored at every destination (or processed, without destinations), Unix ms.
    pub done_ms: Option<i64>,
    /// Bone volume of the mask, mL.
    pub bone_volume_ml: f64,
    /// Connected components of the mask.
    pub components: i64,
    /// Triangles of the final mesh.
    pub triangles: i64,
    /// Segmenter name (SegmentAlgorithmName).
    pub model: String,
    /// Segmenter or model version.
    pub model_version: String,
    /// Mean model confidence, 0..=1 (`None`: threshold segmenter).
    pub mean_confidence: Option<f64>,
    /// DSC with the threshold baseline (1.0 by definition for the threshold segmenter).
    pub dsc_threshold_baseline: Option<f64>,
    /// Noise in air, robust SD, HU.
    pub noise_air_hu: Option<f64>,
    /// Air anchor of the CNN's normalisation, grey values (HU when calibrated); `None`: the
    /// threshold segmenter, or a row written before this column existed.
    #[serde(default)]
    pub air_anchor_hu: Option<f64>,
    /// Soft-tissue anchor of the CNN's normalisation.
    #[serde(default)]
    pub tissue_anchor_hu: Option<f64>,
}

impl QaRecord {
    /// The record of `job`, processed into `report` starting at `started_ms`; `received` is
    /// (first, last) time an instance of the series reached the spool. Export figures stay `None`
    /// (set by [`QaStore::exported`]); without destinations the job is done when processed.
    pub fn of(
        job: &super::queue::Job,
        report: &super::report::SeriesReport,
        started_ms: i64,
        received: (Option<i64>, Option<i64>),
    ) -> QaRecord {
        let s = &report.series;
        let t = &report.timings;
        let qa = &report.image_qa;
        QaRecord {
            job_id: job.id,
            version: job.version,
            study_uid: job.study_uid.clone(),
            series_uid: job.series_uid.clone(),
            calling_ae: job.calling_ae.clone(),
            manufacturer: s.manufacturer.clone(),
            model_name: s.manufacturer_model_name.clone(),
            station_name: s.station_name.clone(),
            device_serial_number: s.device_serial_number.clone(),
            convolution_kernel: s.convolution_kernel.clone(),
            kvp: s.kvp,
            tube_current_ma: s.xray_tube_current,
            exposure_mas: s.exposure,
            slice_thickness_mm: s.slice_thickness,
            pixel_spacing_row_mm: report.geometry.pixel_spacing_mm[0],
            pixel_spacing_col_mm: report.geometry.pixel_spacing_mm[1],
            tilt_deg: report.geometry.tilt_deg,
            slices: report.geometry.dims[0] as i64,
            first_received_ms: received.0,
            last_received_ms: received.1,
            queued_ms: job.created_ms,
            started_ms,
            queue_wait_ms: started_ms - job.created_ms,
            read_ms: t.read_ms,
            segment_ms: t.segment_ms,
            mesh_ms: t.mesh_ms,
            seg_write_ms: t.seg_write_ms,
            stl_write_ms: t.stl_write_ms,
            process_ms: t.total_ms,
            export_ms: None,
            done_ms: job
                .destinations
                .is_empty()
                .then(|| started_ms + t.total_ms.round() as i64),
            bone_volume_ml: report.segmentation.bone_volume_ml,
            components: report.mesh.mask_components as i64,
            triangles: report.mesh.triangles as i64,
            model: report.segmentation.algorithm.name.clone(),
            model_version: report.segmentation.algorithm.version.clone(),
            mean_confidence: qa.mean_confidence,
            dsc_threshold_baseline: qa.dsc_threshold_baseline,
            noise_air_hu: qa.noise_air_hu,
            air_anchor_hu: qa.air_anchor_hu,
            tissue_anchor_hu: qa.tissue_anchor_hu,
        }
    }

    /// Emits the record as one `info` event (target `osteon::qa`, message `qa`) with every field.
    pub fn emit(&self) {
        tracing::info!(target: "osteon::qa",
            job = self.job_id, version = self.version, series = %self.series_uid,
            manufacturer = %self.manufacturer, model_name = %self.model_name,
            station_name = %self.station_name, device_serial_number = %self.device_serial_number,
            convolution_kernel = %self.convolution_kernel, kvp = self.kvp,
            tube_current_ma = self.tube_current_ma, exposure_mas = self.exposure_mas,
            slice_thickness_mm = self.slice_thickness_mm,
            pixel_spacing_row_mm = self.pixel_spacing_row_mm,
            pixel_spacing_col_mm = self.pixel_spacing_col_mm, tilt_deg = self.tilt_deg,
            slices = self.slices, first_received_ms = self.first_received_ms,
            last_received_ms = self.last_received_ms, queued_ms = self.queued_ms,
            started_ms = self.started_ms, queue_wait_ms = self.queue_wait_ms,
            read_ms = self.read_ms, segment_ms = self.segment_ms, mesh_ms = self.mesh_ms,
            seg_write_ms = self.seg_write_ms, stl_write_ms = self.stl_write_ms,
            process_ms = self.process_ms, bone_volume_ml = self.bone_volume_ml,
            components = self.components, triangles = self.triangles, model = %self.model,
            model_version = %self.model_version, mean_confidence = self.mean_confidence,
            dsc_threshold_baseline = self.dsc_threshold_baseline,
            noise_air_hu = self.noise_air_hu, air_anchor_hu = self.air_anchor_hu,
            tissue_anchor_hu = self.tissue_anchor_hu, "qa");
    }
}

#[cfg(test)]
#[path = "qa/tests.rs"]
mod tests;
