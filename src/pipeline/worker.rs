//! One series in, result objects out: segment → mesh → DICOM SEG + STL + Encapsulated STL + report.
//! Used by `osteon segment` and by the node's job worker alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::dicom::seg::{build_seg, SegmentDescription};
use crate::dicom::series::CtVolume;
use crate::dicom::stl_object::{build_encapsulated_stl, StlDescription};
use crate::mesh::{build_mesh, stl_bytes, MeshOptions};
use crate::segment::Segmenter;

use super::report::{GeometryReport, Outputs, SegmentationReport, SeriesReport, Timings};

/// File names inside a series' output folder.
pub const SEG_FILE: &str = "seg.dcm";
/// Binary STL of the skull, LPS mm.
pub const STL_FILE: &str = "skull.stl";
/// Encapsulated STL object holding exactly the bytes of [`STL_FILE`].
pub const STL_OBJECT_FILE: &str = "skull-stl.dcm";
/// Per-series report.
pub const REPORT_FILE: &str = "report.json";

/// Why a series could not be turned into results.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("segmentation of series {series}: {source}")]
    Segment {
        series: String,
        source: crate::segment::SegmentError,
    },
    #[error("mesh of series {series}: {source}")]
    Mesh {
        series: String,
        source: crate::mesh::MeshError,
    },
    #[error("DICOM SEG of series {series}: {source}")]
    Seg {
        series: String,
        source: crate::dicom::seg::SegError,
    },
    #[error("Encapsulated STL of series {series}: {source}")]
    StlObject {
        series: String,
        source: crate::dicom::stl_object::StlObjectError,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Segments `ct`, meshes the mask and writes [`SEG_FILE`], [`STL_FILE`], [`STL_OBJECT_FILE`] and
/// [`REPORT_FILE`] into `out_dir` (created if missing). `read_ms` is the time the caller spent
/// reading the series, carried into the report. The HU voxels are released right after
/// segmentation (the later stages need only the geometry and the source references), which keeps the
/// peak memory near one f32 volume.
///
/// # Errors
/// The first stage that fails, naming the series.
pub fn process_volume(
    mut ct: CtVolume,
    segmenter: &dyn Segmenter,
    mesh_options: &MeshOptions,
    out_dir: &Path,
    read_ms: f64,
) -> Result<SeriesReport, WorkerError> {
    let start = Instant::now();
    let series = ct.info.series_instance_uid.clone();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkerError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let identity = segmenter.identity();

    let t = Instant::now();
    let mask = segmenter
        .segment(&ct)
        .map_err(|source| WorkerError::Segment {
            series: series.clone(),
            source,
        })?;
    let segment_ms = ms(t);
    let image_qa = super::qa::image_qa(&ct, &mask, segmenter);
    ct.hu = ndarray::Array3::zeros((0, 0, 0));
    let per_slice: Vec<u64> = mask
        .outer_iter()
        .map(|slice| slice.iter().filter(|&&v| v != 0).count() as u64)
        .collect();
    let bone_voxels = per_slice.iter().sum::<u64>();
    tracing::info!(series = %series, bone_voxels, ms = segment_ms, "segmented");

    let t = Instant::now();
    let (mesh, mesh_stats) =
        build_mesh(&mask, &ct.geometry, mesh_options).map_err(|source| WorkerError::Mesh {
            series: series.clone(),
            source,
        })?;
    let mesh_ms = ms(t);

    let t = Instant::now();
    let description = SegmentDescription {
        algorithm_name: identity.name.clone(),
        algorithm_version: identity.version.clone(),
        skull_specific: identity.skull_specific,
        ..SegmentDescription::default()
    };
    let seg = build_seg(&ct, mask.view(), &description).map_err(|source| WorkerError::Seg {
        series: series.clone(),
        source,
    })?;
    let seg_path = out_dir.join(SEG_FILE);
    let seg_uid = seg
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_owned();
    crate::dicom::seg::write(&seg, &seg_path).map_err(|source| WorkerError::Seg {
        series: series.clone(),
        source,
    })?;
    let seg_write_ms = ms(t);

    let t = Instant::now();
    let stl = stl_bytes(&mesh).map_err(|source| WorkerError::Mesh {
        series: series.clone(),
        source,
    })?;
    let stl_path = out_dir.join(STL_FILE);
    std::fs::write(&stl_path, &stl).map_err(io(&stl_path))?;
    let stl_object =
        build_encapsulated_stl(&ct, &stl, &StlDescription::default()).map_err(|source| {
            WorkerError::StlObject {
                series: series.clone(),
                source,
            }
        })?;
    let stl_uid = stl_object
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_owned();
    let stl_object_path = out_dir.join(STL_OBJECT_FILE);
    crate::dicom::stl_object::write(&stl_object, &stl_object_path).map_err(|source| {
        WorkerError::StlObject {
            series: series.clone(),
            source,
        }
    })?;
    let stl_write_ms = ms(t);

    let report = SeriesReport {
        osteon_version: env!("CARGO_PKG_VERSION").to_owned(),
        series: ct.info.clone(),
        geometry: GeometryReport::of(&ct),
        segmentation: SegmentationReport {
            algorithm: identity,
            bone_voxels,
            bone_volume_ml: ct.geometry.volume_ml(&per_slice),
        },
        mesh: mesh_stats,
        outputs: Outputs {
            seg: seg_path.display().to_string(),
            stl: stl_path.display().to_string(),
            stl_object: stl_object_path.display().to_string(),
            seg_sop_instance_uid: seg_uid,
            stl_sop_instance_uid: stl_uid,
        },
        image_qa,
        timings: Timings {
            read_ms,
            segment_ms,
            mesh_ms,
            seg_write_ms,
            stl_write_ms,
            total_ms: read_ms + ms(start),
        },
    };
    let report_path = out_dir.join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    std::fs::write(&report_path, json).map_err(io(&report_path))?;
    Ok(report)
}
