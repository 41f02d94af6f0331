//! Writes a volume as a CT Image Storage series (PS3.3 A.3, one Part-10 file per slice): the synthetic
//! head phantoms and the test fixtures use it, so that they pass through exactly the reader that real
//! scans do.
//!
//! By default pixels are stored as signed 16-bit (PixelRepresentation 1, BitsStored 16) with
//! RescaleSlope 1 and RescaleIntercept 0, i.e. stored value = round(HU) clamped to [-32768, 32767].
//! [`write_ct_series_with`] can instead store unsigned 16-bit with a negative RescaleIntercept (as many
//! scanners do, e.g. intercept -1024) and fix the SOP Instance UIDs and content date/time, so that a
//! generator can write byte-identical series for the same input.

use std::path::{Path, PathBuf};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use ndarray::ArrayView3;

use super::geometry::Geometry;
use super::series::SeriesInfo;
use super::uid::new_uid;
use super::write::{
    ds_el, equipment, into_part10, now_da_tm, patient_and_study, str_el, strs_el, us_el, Equipment,
};

/// Errors of the CT writer.
#[derive(Debug, thiserror::Error)]
pub enum CtWriteError {
    /// `hu` and `geometry` disagree on `[k, j, i]`.
    #[error("volume shape {volume:?} does not match geometry {geometry:?}")]
    Shape {
        volume: [usize; 3],
        geometry: [usize; 3],
    },
    /// A geometry number is not finite.
    #[error("non-finite geometry value in {0}")]
    Geometry(&'static str),
    /// Building the Part-10 meta group failed.
    #[error("file meta group: {0}")]
    Meta(String),
    /// Writing a file failed.
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// How stored pixel values encode HU (Image Pixel module PS3.3 C.7.6.3, CT Image module C.8.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelStorage {
    /// Signed 16-bit, RescaleIntercept 0: stored = round(HU) clamped to [-32768, 32767].
    #[default]
    Signed,
    /// Unsigned 16-bit (PixelRepresentation 0, BitsStored 16), RescaleIntercept `intercept` (HU):
    /// stored = round(HU - intercept) clamped to [0, 65535].
    Unsigned {
        /// RescaleIntercept (0028,1052), HU, e.g. -1024.
        intercept: i32,
    },
}

/// Options of [`write_ct_series_with`]; the default reproduces [`write_ct_series`].
#[derive(Clone, Debug, Default)]
pub struct CtWriteOptions {
    /// SOP Instance UID of each slice in `k` order (one per slice); `None`: new UIDs.
    pub sop_instance_uids: Option<Vec<String>>,
    /// ContentDate (DA, `YYYYMMDD`) and ContentTime (TM) written in every slice; `None`: now.
    pub content_date_time: Option<(String, String)>,
    /// Pixel encoding.
    pub storage: PixelStorage,
}

/// Writes `hu` (`[k, j, i]`, HU) with `geometry` (per-slice IPP, IOP, PixelSpacing) as files
/// `CT0001.dcm`, `CT0002.dcm`, ... in `dir` (created if missing). Patient, study, series, frame of
/// reference and scanner attributes come from `info` (a missing UID is generated). Returns the paths
/// in slice order.
///
/// # Errors
/// [`CtWriteError`] for a shape mismatch, non-finite geometry or an I/O failure.
pub fn write_ct_series(
    hu: ArrayView3<f32>,
    geometry: &Geometry,
    info: &SeriesInfo,
    dir: &Path,
) -> Result<Vec<PathBuf>, CtWriteError> {
    write_ct_series_with(hu, geometry, info, dir, &CtWriteOptions::default())
}

/// [`write_ct_series`] with fixed SOP Instance UIDs / content date and time and a choice of pixel
/// encoding ([`CtWriteOptions`]).
///
/// # Errors
/// As [`write_ct_series`]; [`CtWriteError::Shape`] also when `options.sop_instance_uids` does not
/// hold one UID per slice.
pub fn write_ct_series_with(
    hu: ArrayView3<f32>,
    geometry: &Geometry,
    info: &SeriesInfo,
    dir: &Path,
    options: &CtWriteOptions,
) -> Result<Vec<PathBuf>, CtWriteError> {
    let shape = [hu.dim().0, hu.dim().1, hu.dim().2];
    if shape != geometry.dims() {
        return Err(CtWriteError::Shape {
            volume: shape,
            geometry: geometry.dims(),
        });
    }
    if let Some(uids) = &options.sop_instance_uids {
        if uids.len() != shape[0] {
            return Err(CtWriteError::Shape {
                volume: shape,
                geometry: [uids.len(), geometry.rows, geometry.cols],
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| CtWriteError::Write {
        path: dir.into(),
        message: e.to_string(),
    })?;
    let mut info = info.clone();
    for uid in [
        &mut info.study_instance_uid,
        &mut info.series_instance_uid,
        &mut info.frame_of_reference_uid,
    ] {
        if uid.is_empty() {
            *uid = new_uid();
        }
    }
    let (date, time) = options.content_date_time.clone().unwrap_or_else(now_da_tm);
    let image_type = if info.image_type.is_empty() {
        vec![
            "ORIGINAL".to_owned(),
            "PRIMARY".to_owned(),
            "AXIAL".to_owned(),
        ]
    } else {
        info.image_type.clone()
    };
    let mut paths = Vec::with_capacity(shape[0]);
    for (k, slice) in hu.outer_iter().enumerate() {
        let mut obj = InMemDicomObject::new_empty();
        patient_and_study(&mut obj, &info);
        obj.put(str_el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE));
        let sop_instance_uid = match &options.sop_instance_uids {
            Some(uids) => uids[k].clone(),
            None => new_uid(),
        };
        obj.put(str_el(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance_uid));
        obj.put(str_el(tags::MODALITY, VR::CS, "CT"));
        obj.put(str_el(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &info.series_instance_uid,
        ));
        obj.put(str_el(
            tags::SERIES_NUMBER,
            VR::IS,
            &info.series_number.unwrap_or(1).to_string(),
        ));
        obj.put(str_el(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &info.series_description,
        ));
        obj.put(str_el(
            tags::BODY_PART_EXAMINED,
            VR::CS,
            &info.body_part_examined,
        ));
        obj.put(str_el(tags::PATIENT_POSITION, VR::CS, "HFS"));
        obj.put(str_el(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &info.frame_of_reference_uid,
        ));
        obj.put(str_el(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""));
        equipment(
            &mut obj,
            &Equipment {
                manufacturer_model_name: info.manufacturer_model_name.clone(),
                device_serial_number: info.device_serial_number.clone(),
                software_versions: env!("CARGO_PKG_VERSION").to_owned(),
            },
        );
        obj.put(str_el(tags::MANUFACTURER, VR::LO, &info.manufacturer));
        obj.put(str_el(tags::STATION_NAME, VR::SH, &info.station_name));
        obj.put(str_el(
            tags::CONVOLUTION_KERNEL,
            VR::SH,
            &info.convolution_kernel,
        ));
        let opt_ds = |v: Option<f64>| v.map(|x| vec![x]).unwrap_or_default();
        for (tag, values) in [
            (tags::KVP, opt_ds(info.kvp)),
            (
                tags::X_RAY_TUBE_CURRENT,
                opt_ds(info.xray_tube_current.map(f64::round)),
            ),
            (tags::EXPOSURE, opt_ds(info.exposure.map(f64::round))),
            (tags::SLICE_THICKNESS, opt_ds(info.slice_thickness)),
        ] {
            // XRayTubeCurrent and Exposure are IS; the others DS.
            let el = if tag == tags::X_RAY_TUBE_CURRENT || tag == tags::EXPOSURE {
                str_el(
                    tag,
                    VR::IS,
                    &values
                        .first()
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or_default(),
                )
            } else {
                ds_el(tag, &values).ok_or(CtWriteError::Geometry("scanner attribute"))?
            };
            obj.put(el);
        }
        obj.put(str_el(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string()));
        obj.put(str_el(tags::ACQUISITION_NUMBER, VR::IS, "1"));
        obj.put(str_el(tags::CONTENT_DATE, VR::DA, &date));
        obj.put(str_el(tags::CONTENT_TIME, VR::TM, &time));
        obj.put(strs_el(tags::IMAGE_TYPE, VR::CS, &image_type));
        obj.put(
            ds_el(tags::IMAGE_POSITION_PATIENT, &geometry.ipp[k])
                .ok_or(CtWriteError::Geometry("IPP"))?,
        );
        obj.put(
            ds_el(tags::IMAGE_ORIENTATION_PATIENT, &geometry.iop)
                .ok_or(CtWriteError::Geometry("IOP"))?,
        );
        obj.put(
            ds_el(tags::PIXEL_SPACING, &geometry.pixel_spacing)
                .ok_or(CtWriteError::Geometry("PixelSpacing"))?,
        );
        obj.put(us_el(tags::SAMPLES_PER_PIXEL, 1));
        obj.put(str_el(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        ));
        obj.put(us_el(tags::ROWS, geometry.rows as u16));
        obj.put(us_el(tags::COLUMNS, geometry.cols as u16));
        obj.put(us_el(tags::BITS_ALLOCATED, 16));
        obj.put(us_el(tags::BITS_STORED, 16));
        obj.put(us_el(tags::HIGH_BIT, 15));
        let (representation, intercept) = match options.storage {
            PixelStorage::Signed => (1, 0),
            PixelStorage::Unsigned { intercept } => (0, intercept),
        };
        obj.put(us_el(tags::PIXEL_REPRESENTATION, representation));
        obj.put(str_el(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            &intercept.to_string(),
        ));
        obj.put(str_el(tags::RESCALE_SLOPE, VR::DS, "1"));
        obj.put(str_el(tags::RESCALE_TYPE, VR::LO, "HU"));
        obj.put(str_el(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"));
        let value = match options.storage {
            PixelStorage::Signed => PrimitiveValue::I16(
                slice
                    .iter()
                    .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
                    .collect(),
            ),
            PixelStorage::Unsigned { intercept } => PrimitiveValue::U16(
                slice
                    .iter()
                    .map(|&v| (v - intercept as f32).round().clamp(0.0, 65535.0) as u16)
                    .collect(),
            ),
        };
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, value));
        let file = into_part10(obj).map_err(|e| CtWriteError::Meta(e.to_string()))?;
        let path = dir.join(format!("CT{:04}.dcm", k + 1));
        file.write_to_file(&path).map_err(|e| CtWriteError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        paths.push(path);
    }
    Ok(paths)
}
