//! Writing a generated [`Phantom`]: `ct/` (CT series), `label-seg.dcm` (BINARY SEG of the bone label
//! on that series, referencing its SOP Instance UIDs), `label.stl` (every connected part of the
//! label meshed at iso 0.5, LPS mm) and `phantom.json` (profile, seed, options, head parameters,
//! defects, label voxel count, timings). All UIDs and dates are fixed per (profile, seed, options).

use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use serde::Serialize;

use super::{phantom_uid, Phantom};
use crate::dicom::ct_writer::{write_ct_series_with, CtWriteError, CtWriteOptions};
use crate::dicom::geometry::Geometry;
use crate::dicom::seg::{build_seg, Code, SegError, SegmentDescription};
use crate::dicom::series::{load_volume, scan, SeriesError, SeriesInfo};
use crate::dicom::write::{seq_el, str_el};
use crate::mesh::{build_mesh, stl_bytes, Mesh, MeshError, MeshOptions};
use crate::segment::components::{label as label_components, Connectivity};

/// CT series folder inside the output folder.
pub const CT_DIR: &str = "ct";
/// Label SEG file.
pub const SEG_FILE: &str = "label-seg.dcm";
/// Label mesh.
pub const STL_FILE: &str = "label.stl";
/// Parameters and statistics.
pub const JSON_FILE: &str = "phantom.json";
/// Fixed StudyDate / ContentDate of every phantom object.
pub const PHANTOM_DATE: &str = "20240101";
/// Fixed StudyTime / ContentTime.
pub const PHANTOM_TIME: &str = "120000";

/// Algorithm family of the label (CID 7162): no code means "analytic model", the nearest is
/// Manual Processing (DCM 123109): the model was built by hand, not learned or thresholded.
pub const FAMILY_MANUAL_PROCESSING: Code = Code {
    value: "123109",
    scheme: "DCM",
    meaning: "Manual Processing",
};

/// Errors of [`write_phantom`], each naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error("writing the CT series: {0}")]
    Ct(#[from] CtWriteError),
    #[error("reading back the CT series in {dir}: {reason}")]
    ReadBack { dir: PathBuf, reason: String },
    #[error("reading back the CT series: {0}")]
    Series(#[from] SeriesError),
    #[error("label SEG: {0}")]
    Seg(#[from] SegError),
    #[error("label mesh: {0}")]
    Mesh(#[from] MeshError),
    #[error(
        "{0}: already holds files (of an earlier phantom?); choose an empty --out or remove it"
    )]
    OutNotEmpty(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`write_phantom`] wrote, also saved as phantom.json.
#[derive(Clone, Debug, Serialize)]
pub struct PhantomSummary {
    pub profile: String,
    pub seed: u64,
    pub options: super::PhantomOptions,
    pub dims_kji: [usize; 3],
    pub pixel_spacing_mm: [f64; 2],
    pub slice_spacing_mm: f64,
    pub tilt_deg: f64,
    pub series_instance_uid: String,
    pub label_voxels: u64,
    pub label_volume_ml: f64,
    pub boundary_voxels: u64,
    /// Connected parts (Kuhn14) of the label.
    pub label_parts: usize,
    /// Parts smaller than [`MIN_PART_VOXELS`] (or one slice thick) not in label.stl.
    pub stl_parts_left_out: usize,
    pub stl_triangles: usize,
    pub head: super::anatomy::Head,
    pub scanner: super::scanner::ScannerProfile,
    /// Where scoring looks separately (LPS mm): craniotomy rim loops, skull-base slab, metal;
    /// read by `osteon evaluate` through a manifest's `phantom = ".../phantom.json"`.
    pub regions: crate::eval::regions::ScoringRegions,
    /// Not in phantom.json (which must be byte-identical between runs).
    #[serde(skip)]
    pub timings: super::Timings,
}

/// Key of the options that change the pixels (part of every UID's hash input).
fn variant(p: &Phantom) -> String {
    let o = &p.options;
    format!(
        "{}/m{:?}/s{:?}/t{:?}/c{:?}/x{}",
        p.profile.name, o.matrix, o.slices, o.top_mm, o.craniotomy, o.supersample
    )
}

/// The series identity of phantom `p`.
fn series_info(p: &Phantom) -> SeriesInfo {
    let v = variant(p);
    let prof = p.profile;
    SeriesInfo {
        study_instance_uid: phantom_uid(&v, p.seed, "study"),
        series_instance_uid: phantom_uid(&v, p.seed, "series"),
        frame_of_reference_uid: phantom_uid(&v, p.seed, "frame-of-reference"),
        modality: "CT".into(),
        patient_name: format!("Phantom^Seed{}", p.seed),
        patient_id: format!("PHANTOM-{}", p.seed),
        patient_birth_date: String::new(),
        patient_sex: "O".into(),
        study_date: PHANTOM_DATE.into(),
        study_time: PHANTOM_TIME.into(),
        study_id: "1".into(),
        accession_number: String::new(),
        referring_physician_name: String::new(),
        series_number: Some(2),
        series_description: truncate64(format!("Synthetic phantom {} seed {}", prof.name, p.seed)),
        body_part_examined: "HEAD".into(),
        image_type: vec!["DERIVED".into(), "SECONDARY".into(), "AXIAL".into()],
        manufacturer: prof.manufacturer.into(),
        manufacturer_model_name: prof.model.into(),
        station_name: "OSTEON-VIRTUAL".into(),
        device_serial_number: format!("VIRTUAL-{}", prof.name),
        convolution_kernel: prof.kernel.into(),
        kvp: Some(prof.kvp),
        xray_tube_current: Some(prof.tube_current_ma),
        exposure: Some(prof.tube_current_ma * prof.rotation_s),
        slice_thickness: Some(prof.slice_thickness_mm),
        lossy_compression: None,
    }
}

/// LO values hold at most 64 characters (PS3.5 6.2).
fn truncate64(mut s: String) -> String {
    s.truncate(64);
    s
}

/// Refuses an output folder whose `ct/` already holds files: a phantom of fewer slices written
/// over a larger one would leave the old slices beside the new series.
///
/// # Errors
/// [`PhantomError::OutNotEmpty`] naming the `ct/` folder.
pub fn check_out(dir: &Path) -> Result<(), PhantomError> {
    let ct = dir.join(CT_DIR);
    let held = std::fs::read_dir(&ct).is_ok_and(|mut d| d.next().is_some());
    if held {
        Err(PhantomError::OutNotEmpty(ct))
    } else {
        Ok(())
    }
}

/// Writes `p` into `dir` (created if missing); see the module doc for the layout.
///
/// # Errors
/// [`PhantomError`] naming the step and file; [`PhantomError::OutNotEmpty`] when `dir/ct` already
/// holds files.
pub fn write_phantom(p: &mut Phantom, dir: &Path) -> Result<PhantomSummary, PhantomError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PhantomError::Io { path, source }
    };
    check_out(dir)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let v = variant(p);
    let info = series_info(p);

    let t = Instant::now();
    let ct_dir = dir.join(CT_DIR);
    let options = CtWriteOptions {
        sop_instance_uids: Some(
            (0..p.geometry.slices())
                .map(|k| phantom_uid(&v, p.seed, &format!("ct/{k}")))
                .collect(),
        ),
        content_date_time: Some((PHANTOM_DATE.into(), PHANTOM_TIME.into())),
        storage: p.profile.storage,
    };
    write_ct_series_with(p.hu.view(), &p.geometry, &info, &ct_dir, &options)?;
    p.timings.write_ct_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let found = scan(&[ct_dir.clone()]);
    let group = found
        .groups
        .iter()
        .find(|g| g.series_instance_uid == info.series_instance_uid)
        .ok_or_else(|| PhantomError::ReadBack {
            dir: ct_dir.clone(),
            reason: format!("series {} not found", info.series_instance_uid),
        })?;
    let mut ct = load_volume(group)?;
    ct.hu = ndarray::Array3::zeros((0, 0, 0));
    let description = SegmentDescription {
        segment_label: "Bone".into(),
        algorithm_name: "osteon-phantom".into(),
        algorithm_family: FAMILY_MANUAL_PROCESSING,
        series_description: truncate64(format!("Phantom bone label seed {}", p.seed)),
        content_label: "BONE_LABEL".into(),
        content_description: "Bone occupancy >= 0.5 of the analytic phantom".into(),
        ..SegmentDescription::default()
    };
    let mut seg = build_seg(&ct, p.label.view(), &description)?;
    fix_seg_identity(&mut seg, &v, p.seed);
    let seg_path = dir.join(SEG_FILE);
    crate::dicom::seg::write(&seg, &seg_path)?;
    p.timings.seg_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let (parts, parts_skipped, stl_triangles) = if p.options.stl {
        let (mesh, parts, skipped) = label_mesh(&p.label, &p.geometry)?;
        let bytes = stl_bytes(&mesh)?;
        let path = dir.join(STL_FILE);
        std::fs::write(&path, bytes).map_err(io(&path))?;
        (parts, skipped, mesh.triangles.len())
    } else {
        (0, 0, 0)
    };
    p.timings.stl_ms = t.elapsed().as_secs_f64() * 1e3;
    p.timings.total_ms += p.timings.write_ct_ms + p.timings.seg_ms + p.timings.stl_ms;

    let per_slice: Vec<u64> = p
        .label
        .outer_iter()
        .map(|s| s.iter().filter(|&&b| b != 0).count() as u64)
        .collect();
    let summary = PhantomSummary {
        profile: p.profile.name.into(),
        seed: p.seed,
        options: p.options.clone(),
        dims_kji: p.geometry.dims(),
        pixel_spacing_mm: p.geometry.pixel_spacing,
        slice_spacing_mm: p.geometry.nominal_slice_spacing(),
        tilt_deg: p.geometry.tilt_deg(),
        series_instance_uid: info.series_instance_uid.clone(),
        label_voxels: per_slice.iter().sum(),
        label_volume_ml: p.geometry.volume_ml(&per_slice),
        boundary_voxels: p.boundary_voxels,
        label_parts: parts,
        stl_parts_left_out: parts_skipped,
        stl_triangles,
        head: p.head.clone(),
        scanner: p.profile.clone(),
        regions: super::regions::scoring_regions(
            &p.head,
            &p.geometry,
            0.5 * p
                .profile
                .slice_thickness_mm
                .max(p.geometry.nominal_slice_spacing()),
        ),
        timings: p.timings.clone(),
    };
    let path = dir.join(JSON_FILE);
    let mut json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    json.push(b'\n');
    std::fs::write(&path, json).map_err(io(&path))?;
    Ok(summary)
}

/// Replaces the SEG's generated UIDs and dates by fixed ones so the file is reproducible.
fn fix_seg_identity(seg: &mut FileDicomObject<InMemDicomObject>, variant: &str, seed: u64) {
    let sop = phantom_uid(variant, seed, "seg-instance");
    let org = phantom_uid(variant, seed, "seg-dimension-organization");
    seg.put(str_el(tags::SOP_INSTANCE_UID, VR::UI, &sop));
    seg.put(str_el(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &phantom_uid(variant, seed, "seg-series"),
    ));
    for (tag, vr, value) in [
        (tags::INSTANCE_CREATION_DATE, VR::DA, PHANTOM_DATE),
        (tags::INSTANCE_CREATION_TIME, VR::TM, PHANTOM_TIME),
        (tags::CONTENT_DATE, VR::DA, PHANTOM_DATE),
        (tags::CONTENT_TIME, VR::TM, PHANTOM_TIME),
    ] {
        seg.put(str_el(tag, vr, value));
    }
    for tag in [
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        tags::DIMENSION_INDEX_SEQUENCE,
    ] {
        let items: Option<Vec<InMemDicomObject>> = seg
            .element(tag)
            .ok()
            .and_then(|e| e.items().map(|i| i.to_vec()));
        if let Some(mut items) = items {
            for item in &mut items {
                item.put(str_el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &org));
            }
            seg.put(seq_el(tag, items));
        }
    }
    seg.update_meta(|m| m.media_storage_sop_instance_uid = sop.clone());
}

/// Sub-grid `[k0..k1, j0..j1, i0..i1]` of `g`.
fn crop(g: &Geometry, lo: [usize; 3], hi: [usize; 3]) -> Geometry {
    let (r, c) = (g.row_dir(), g.col_dir());
    let (di, dj) = (g.pixel_spacing[1], g.pixel_spacing[0]);
    let shift = [
        lo[2] as f64 * di * r[0] + lo[1] as f64 * dj * c[0],
        lo[2] as f64 * di * r[1] + lo[1] as f64 * dj * c[1],
        lo[2] as f64 * di * r[2] + lo[1] as f64 * dj * c[2],
    ];
    Geometry {
        ipp: g.ipp[lo[0]..hi[0]]
            .iter()
            .map(|p| [p[0] + shift[0], p[1] + shift[1], p[2] + shift[2]])
            .collect(),
        iop: g.iop,
        pixel_spacing: g.pixel_spacing,
        rows: hi[1] - lo[1],
        cols: hi[2] - lo[2],
    }
}

/// Parts of the label smaller than this (voxels) are left out of label.stl (counted in phantom.json).
pub const MIN_PART_VOXELS: u64 = 8;

/// Meshes every connected part (Kuhn14) of `label` of at least [`MIN_PART_VOXELS`] voxels, each on
/// its bounding box (plus one voxel), with [`build_mesh`] (no smoothing; decimation within 0.25 mm to
/// a budget of 1.5 M triangles shared by voxel count), and concatenates them. Returns the mesh, the
/// number of parts and the number of parts left out.
pub fn label_mesh(
    label: &ndarray::Array3<u8>,
    g: &Geometry,
) -> Result<(Mesh, usize, usize), MeshError> {
    let comps = label_components(label, Connectivity::Kuhn14);
    let dims = g.dims();
    let total: u64 = comps.sizes.iter().sum();
    let budget = 1_500_000usize;
    let mut out = Mesh::default();
    let mut skipped = 0;
    for (id, &count) in comps.sizes.iter().enumerate() {
        if count < MIN_PART_VOXELS {
            skipped += 1;
            continue;
        }
        let part = comps.mask_of(id as u32, label);
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for ((k, j, i), &v) in part.indexed_iter() {
            if v != 0 {
                for (a, x) in [k, j, i].into_iter().enumerate() {
                    lo[a] = lo[a].min(x);
                    hi[a] = hi[a].max(x + 1);
                }
            }
        }
        let lo = [0, 1, 2].map(|a| lo[a].saturating_sub(1));
        let hi = [0, 1, 2].map(|a| (hi[a] + 1).min(dims[a]));
        if hi[0] < lo[0] + 2 {
            // A part on a single slice of a one-slice crop cannot be meshed on its own grid.
            skipped += 1;
            continue;
        }
        let sub = part
            .slice(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]])
            .to_owned();
        drop(part);
        let geom = crop(g, lo, hi);
        let share = ((budget as f64 * count as f64 / total.max(1) as f64) as usize).max(500);
        let opts = MeshOptions {
            smoothing_iterations: 0,
            max_triangles: Some(share),
            ..MeshOptions::default()
        };
        let (mesh, _) = build_mesh(&sub, &geom, &opts)?;
        let base = out.vertices.len() as u32;
        out.vertices.extend(mesh.vertices);
        out.triangles.extend(
            mesh.triangles
                .iter()
                .map(|t| [t[0] + base, t[1] + base, t[2] + base]),
        );
    }
    Ok((out, comps.count(), skipped))
}
