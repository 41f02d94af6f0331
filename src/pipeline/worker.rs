//! One series in, result objects out: segment → mesh → DICOM SEG + STL + Encapsulated STL + report.
//! Used by `osteon segment` and by the node's job worker alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::dicom::seg::{build_seg, SegmentDescription};
use crate::dicom::series::CtVolume;
use crate::dicom::stl_object::{build_encapsulated_stl, StlDescription, StlObjectError};
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
        source: StlObjectError,
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
/// reading the series, carried into the report. The HU voxels are released right after the image
/// QA, which runs beside the start of the mesh (the later stages need only the geometry and the
/// source references); this keeps the peak memory near one f32 volume.
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
    let identity = segmenter.identity_for(&ct);

    let t = Instant::now();
    let mask = segmenter
        .segment(&ct)
        .map_err(|source| WorkerError::Segment {
            series: series.clone(),
            source,
        })?;
    let segment_ms = ms(t);
    let post_processing = segmenter.post_processing();
    let model_choice = segmenter.model_choice();
    // The HU voxels move to a volume of their own for the image QA; `ct` keeps the geometry
    // and the source references, all the later stages need.
    let qa_ct = CtVolume {
        hu: std::mem::replace(&mut ct.hu, ndarray::Array3::zeros((0, 0, 0))),
        geometry: ct.geometry.clone(),
        slices: ct.slices.clone(),
        info: ct.info.clone(),
    };
    let per_slice: Vec<u64> = mask
        .outer_iter()
        .map(|slice| slice.iter().filter(|&&v| v != 0).count() as u64)
        .collect();
    let bone_voxels = per_slice.iter().sum::<u64>();
    tracing::info!(series = %series, bone_voxels, ms = segment_ms, "segmented");

    // The image QA and the SEG depend only on the HU and the mask: they are made on a second
    // thread (which then releases the HU) while the mesh, the STL and the Encapsulated STL are
    // made on this one (build_mesh itself runs on rayon's pool; the second thread is outside
    // it). The outputs are the same as in sequence.
    let description = SegmentDescription {
        algorithm_name: identity.name.clone(),
        algorithm_version: identity.version.clone(),
        skull_specific: identity.skull_specific,
        ..SegmentDescription::default()
    };
    let seg_path = out_dir.join(SEG_FILE);
    let stl_path = out_dir.join(STL_FILE);
    let stl_object_path = out_dir.join(STL_OBJECT_FILE);
    let ((image_qa, seg_outcome), mesh_outcome) = beside(
        || {
            let image_qa = super::qa::image_qa(&qa_ct, &mask, segmenter);
            drop(qa_ct);
            (image_qa, write_seg(&ct, &mask, &description, &seg_path))
        },
        || mesh_and_stl(&ct, &mask, mesh_options, &stl_path, &stl_object_path),
    );
    if mesh_outcome.is_err() || seg_outcome.is_err() {
        // A failed series leaves none of its objects: a SEG without its STL (or the reverse)
        // would pass for a result (bad-input trial, session 38: an unmeshable series kept its
        // seg.dcm).
        for p in [&seg_path, &stl_path, &stl_object_path] {
            let _ = std::fs::remove_file(p);
        }
    }
    let MeshOutcome {
        mesh_stats,
        mesh_ms,
        stl_uid,
        stl_write_ms,
    } = mesh_outcome?;
    let (seg_uid, seg_write_ms) = seg_outcome?;

    let report = SeriesReport {
        osteon_version: env!("CARGO_PKG_VERSION").to_owned(),
        series: ct.info.clone(),
        geometry: GeometryReport::of(&ct),
        segmentation: SegmentationReport {
            algorithm: identity,
            bone_voxels,
            bone_volume_ml: ct.geometry.volume_ml(&per_slice),
            post_processing,
            model_choice,
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

/// Builds the DICOM SEG of `mask` (`[k, j, i]`, 1 = bone) on `ct`'s geometry and writes it to
/// `path`; returns its SOP Instance UID and the milliseconds spent.
fn write_seg(
    ct: &CtVolume,
    mask: &crate::segment::Mask,
    description: &SegmentDescription,
    path: &Path,
) -> Result<(String, f64), WorkerError> {
    let t = Instant::now();
    let series = &ct.info.series_instance_uid;
    let seg_err = |source| WorkerError::Seg {
        series: series.clone(),
        source,
    };
    let seg = build_seg(ct, mask.view(), description).map_err(seg_err)?;
    let uid = seg
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_owned();
    crate::dicom::seg::write(&seg, path).map_err(seg_err)?;
    Ok((uid, ms(t)))
}

/// What [`mesh_and_stl`] made.
struct MeshOutcome {
    mesh_stats: crate::mesh::MeshStats,
    mesh_ms: f64,
    stl_uid: String,
    stl_write_ms: f64,
}

/// Meshes `mask` (`[k, j, i]`) in `ct`'s LPS mm, then writes the binary STL to `stl_path` (on a
/// second thread) while the Encapsulated STL holding the same bytes is built and written to
/// `stl_object_path`.
fn mesh_and_stl(
    ct: &CtVolume,
    mask: &crate::segment::Mask,
    mesh_options: &MeshOptions,
    stl_path: &Path,
    stl_object_path: &Path,
) -> Result<MeshOutcome, WorkerError> {
    let series = &ct.info.series_instance_uid;
    let mesh_err = |source| WorkerError::Mesh {
        series: series.clone(),
        source,
    };
    let t = Instant::now();
    let (mesh, mesh_stats) = build_mesh(mask, &ct.geometry, mesh_options).map_err(mesh_err)?;
    let mesh_ms = ms(t);

    let t = Instant::now();
    let stl = stl_bytes(&mesh).map_err(mesh_err)?;
    drop(mesh);
    let object_err = |source| WorkerError::StlObject {
        series: series.clone(),
        source,
    };
    // The STL moves into the object; both files are then written from its bytes at once.
    let object = build_encapsulated_stl(ct, stl, &StlDescription::default()).map_err(object_err)?;
    let stl_uid = object
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_owned();
    let document = crate::dicom::stl_object::stl_document(&object).ok_or_else(|| {
        object_err(StlObjectError::BadObject {
            attribute: "EncapsulatedDocument (0042,0011)",
            reason: "the document just built cannot be read back".to_owned(),
        })
    })?;
    let (file_outcome, object_outcome) = beside(
        || {
            std::fs::write(stl_path, document).map_err(|source| WorkerError::Io {
                path: stl_path.to_path_buf(),
                source,
            })
        },
        || crate::dicom::stl_object::write(&object, stl_object_path).map_err(object_err),
    );
    file_outcome?;
    object_outcome?;
    Ok(MeshOutcome {
        mesh_stats,
        mesh_ms,
        stl_uid,
        stl_write_ms: ms(t),
    })
}

/// Runs `side` on a second (scoped) thread while `main` runs on this one and returns both
/// results; a panic of `side` is resumed here, as if it had run on this thread. Like rayon's
/// pool, this panics only when the OS cannot start a thread at all (the node's job runner turns
/// that into a failed job).
fn beside<A: Send, B>(side: impl FnOnce() -> A + Send, main: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let handle = scope.spawn(side);
        let b = main();
        let a = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (a, b)
    })
}
