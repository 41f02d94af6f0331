//! Bone labels on the grid of a CT series, for training and evaluation (`osteon label`).
//!
//! * [`voxelise`]: a closed STL in LPS mm → mask on the exact CT grid (the paper's mesh-to-label).
//! * [`reference`]: the documented reference procedure for real scans without an engineer's model.
//! * [`read_stl`] reads a binary or ASCII STL; [`seg_mask_on_grid`] puts a SEG's frames back on the
//!   grid of its source series (by ImagePositionPatient).
//!
//! Labels are written as BINARY DICOM Segmentations with [`crate::dicom::seg::build_seg`].

pub mod reference;
pub mod voxelise;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dicom::geometry::{norm, sub, Geometry};
use crate::dicom::seg::{self, SegError, SegmentDescription};
use crate::dicom::series::{load_volume, scan, CtVolume, SeriesError};
use crate::mesh::Mesh;
use crate::segment::Mask;

/// Errors of labelling; each names the file or attribute at fault.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The mesh has no triangle.
    #[error("mesh has no triangles")]
    EmptyMesh,
    /// The mesh has holes or non-manifold edges, so it has no inside.
    #[error(
        "mesh is not closed: {boundary_edges} boundary edge(s), {non_manifold_edges} non-manifold \
         edge(s); close it (e.g. fill holes in the mesh editor) before labelling"
    )]
    NotClosed {
        /// Edges used by one triangle.
        boundary_edges: usize,
        /// Edges used by three or more triangles.
        non_manifold_edges: usize,
    },
    /// A vertex is not finite or a triangle index is out of range.
    #[error("bad mesh: {0}")]
    BadVertex(String),
    /// No voxel centre of the CT lies inside the mesh.
    #[error(
        "mesh lies outside the CT volume: no voxel centre inside it ({vertices_outside} of \
         {vertices} vertices outside the volume; mesh bounding box {mesh_bbox:?} LPS mm); is the \
         STL in this CT's LPS patient coordinates?"
    )]
    OutsideVolume {
        /// Vertices outside the volume.
        vertices_outside: usize,
        /// Vertices of the mesh.
        vertices: usize,
        /// Mesh bounding box `[min, max]`, LPS mm.
        mesh_bbox: [[f64; 3]; 2],
    },
    /// The CT grid cannot be used (zero spacing, unordered slices).
    #[error("CT geometry unusable: {0}")]
    Geometry(String),
    /// Reading the STL failed.
    #[error("reading STL {path}: {message}")]
    Stl {
        /// STL file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No CT series (or not exactly one matching `--series`) was found.
    #[error("{0}")]
    Series(String),
    /// The CT series could not be assembled.
    #[error(transparent)]
    Volume(#[from] SeriesError),
    /// The reference procedure found no bone.
    #[error("no bone: {0}")]
    NoBone(String),
    /// Writing or reading the SEG failed.
    #[error(transparent)]
    Seg(#[from] SegError),
    /// A SEG does not fit the grid of the CT series.
    /// `--out` names an existing file that is not a DICOM Segmentation (or a folder).
    #[error("{0}: exists and is not a DICOM Segmentation; refusing to overwrite it")]
    OutExists(PathBuf),
    #[error("{path}: {reason}")]
    SegGrid {
        /// SEG file.
        path: PathBuf,
        /// Why it does not fit.
        reason: String,
    },
}

/// Reads a binary or ASCII STL (coordinates taken as LPS mm) into an indexed [`Mesh`], welding
/// vertices with identical coordinates (`-0.0` = `0.0`).
///
/// # Errors
/// [`LabelError::Stl`] when the file cannot be opened or parsed, [`LabelError::BadVertex`] for a
/// non-finite coordinate.
pub fn read_stl(path: &Path) -> Result<Mesh, LabelError> {
    let err = |message: String| LabelError::Stl {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = std::io::BufReader::new(file);
    let stl = stl_io::read_stl(&mut reader).map_err(|e| err(e.to_string()))?;
    // Re-weld: stl_io welds by bit pattern, which keeps -0.0 and 0.0 apart.
    let mut remap = Vec::with_capacity(stl.vertices.len());
    let mut index = std::collections::HashMap::with_capacity(stl.vertices.len());
    let mut vertices: Vec<[f32; 3]> = Vec::with_capacity(stl.vertices.len());
    for (n, v) in stl.vertices.iter().enumerate() {
        let p = v.0.map(|c| if c == 0.0 { 0.0 } else { c });
        if p.iter().any(|c| !c.is_finite()) {
            return Err(LabelError::BadVertex(format!(
                "{}: vertex {n} has a non-finite coordinate {p:?}",
                path.display()
            )));
        }
        let id = *index.entry(p.map(f32::to_bits)).or_insert_with(|| {
            vertices.push(p);
            vertices.len() - 1
        });
        remap.push(id as u32);
    }
    let triangles = stl
        .faces
        .iter()
        .map(|f| f.vertices.map(|v| remap[v]))
        .collect();
    Ok(Mesh {
        vertices,
        triangles,
    })
}

/// Scans `inputs` and loads the one CT series they hold, or the one whose SeriesInstanceUID or
/// SeriesNumber equals `selector`.
///
/// # Errors
/// [`LabelError::Series`] when none or several match (the message lists them),
/// [`LabelError::Volume`] when the series cannot be assembled.
pub fn load_ct(inputs: &[PathBuf], selector: Option<&str>) -> Result<CtVolume, LabelError> {
    let found = scan(inputs);
    let matching: Vec<_> = found
        .groups
        .iter()
        .filter(|g| match selector {
            None => true,
            Some(s) => {
                g.series_instance_uid == s
                    || g.instances.first().is_some_and(|i| {
                        i.info
                            .series_number
                            .is_some_and(|n| n.to_string() == s.trim())
                    })
            }
        })
        .collect();
    let list = || {
        found
            .groups
            .iter()
            .map(|g| {
                let num = g
                    .instances
                    .first()
                    .and_then(|i| i.info.series_number)
                    .map_or("-".to_owned(), |n| n.to_string());
                format!("SeriesNumber {num} ({})", g.series_instance_uid)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matching.as_slice() {
        [one] => Ok(load_volume(one)?),
        [] => Err(LabelError::Series(format!(
            "no CT series{} found in {:?}; series present: [{}]",
            selector.map_or(String::new(), |s| format!(" matching {s:?}")),
            inputs,
            list()
        ))),
        _ => Err(LabelError::Series(format!(
            "{} CT series found in {inputs:?}; choose one (osteon label --series, or \
             series_selector in a manifest) by SeriesInstanceUID or SeriesNumber: [{}]",
            matching.len(),
            list()
        ))),
    }
}

/// Puts the frames of a BINARY (or 8-bit) SEG back on `geometry`: frame → slice by nearest
/// ImagePositionPatient (within 0.01 mm); frames of all segments are united. Returns `[k, j, i]`.
///
/// # Errors
/// [`LabelError::Seg`] when the SEG cannot be read; [`LabelError::SegGrid`] when Rows/Columns differ
/// or a frame's IPP matches no slice.
pub fn seg_mask_on_grid(path: &Path, geometry: &Geometry) -> Result<Mask, LabelError> {
    seg_mask_in_frame(path, geometry, None, &[])
}

/// [`seg_mask_on_grid`], and when `frame_of_reference_uid` is given, the SEG must carry the same
/// FrameOfReferenceUID (PS3.3 C.7.4.1): positions of two frames of reference are not comparable,
/// even when they happen to line up. When `slices` (the CT's instances, one per slice of
/// `geometry`) is not empty, a frame that names its source images (DerivationImageSequence →
/// SourceImageSequence, PS3.3 C.7.6.16.2.6) must name the CT slice it lands on: two series of one
/// study share the frame of reference, and a 5 mm series' frames lie on every fifth slice of a 1 mm
/// one.
///
/// # Errors
/// As [`seg_mask_on_grid`]; [`LabelError::SegGrid`] naming both UIDs when they differ, or the frame
/// whose source is not the CT slice at its position.
pub fn seg_mask_in_frame(
    path: &Path,
    geometry: &Geometry,
    frame_of_reference_uid: Option<&str>,
    slices: &[crate::dicom::series::SliceRef],
) -> Result<Mask, LabelError> {
    let frames = seg::read_seg_mask(path)?;
    if let (Some(want), Some(have)) = (
        frame_of_reference_uid,
        frames.frame_of_reference_uid.as_deref(),
    ) {
        if want != have {
            return Err(LabelError::SegGrid {
                path: path.to_owned(),
                reason: format!(
                    "FrameOfReferenceUID (0020,0052) {have} differs from the CT's {want}"
                ),
            });
        }
    }
    let (_, fr, fc) = frames.frames.dim();
    if (fr, fc) != (geometry.rows, geometry.cols) {
        return Err(LabelError::SegGrid {
            path: path.to_owned(),
            reason: format!(
                "frames are {fr}x{fc}, the CT is {}x{} (Rows x Columns)",
                geometry.rows, geometry.cols
            ),
        });
    }
    let mut mask = Mask::zeros((geometry.slices(), fr, fc));
    for (f, ipp) in frames.ipp.iter().enumerate() {
        let (k, d) = geometry
            .ipp
            .iter()
            .enumerate()
            .map(|(k, p)| (k, norm(sub(*p, *ipp))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::INFINITY));
        if d > 0.01 {
            return Err(LabelError::SegGrid {
                path: path.to_owned(),
                reason: format!(
                    "frame {} at ImagePositionPatient {ipp:?} matches no CT slice (nearest {d:.3} mm away)",
                    f + 1
                ),
            });
        }
        let sources = frames
            .source_sop_instance_uids
            .get(f)
            .map_or(&[][..], |v| &v[..]);
        if let Some(ct_slice) = slices.get(k) {
            if !sources.is_empty() && !sources.iter().any(|u| *u == ct_slice.sop_instance_uid) {
                return Err(LabelError::SegGrid {
                    path: path.to_owned(),
                    reason: format!(
                        "frame {} derives from SOP Instance UID {}, not from the CT slice at its \
                         position ({}): the SEG was made for another series",
                        f + 1,
                        sources.join(", "),
                        ct_slice.sop_instance_uid
                    ),
                });
            }
        }
        let mut slice = mask.index_axis_mut(ndarray::Axis(0), k);
        ndarray::Zip::from(&mut slice)
            .and(frames.frames.index_axis(ndarray::Axis(0), f))
            .for_each(|m, &v| *m |= u8::from(v != 0));
    }
    Ok(mask)
}

/// Where the label comes from.
#[derive(Clone, Debug)]
pub enum LabelSource {
    /// A closed STL in the CT's LPS mm, voxelised ([`voxelise::voxelise`]).
    Stl(PathBuf),
    /// The reference procedure ([`reference::reference_mask`]).
    Reference(reference::ReferenceOptions),
}

/// Options of `osteon label`.
#[derive(Clone, Debug)]
pub struct LabelOptions {
    /// Files/folders of the CT series.
    pub ct: Vec<PathBuf>,
    /// SeriesInstanceUID or SeriesNumber when `ct` holds several series.
    pub series: Option<String>,
    /// Label source.
    pub source: LabelSource,
    /// SEG file to write.
    pub out: PathBuf,
}

/// What `osteon label` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct LabelReport {
    /// SEG written.
    pub out: PathBuf,
    /// SeriesInstanceUID of the CT.
    pub series_instance_uid: String,
    /// `[k, j, i]` dims of the grid.
    pub dims: [usize; 3],
    /// Label voxels.
    pub voxels: u64,
    /// Label volume, mL.
    pub volume_ml: f64,
    /// Source-specific details (JSON).
    pub details: serde_json::Value,
    /// Wall time, ms.
    pub ms: f64,
}

impl fmt::Display for LabelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} voxels ({:.2} mL) on {:?} of series {} in {:.0} ms; {}",
            self.out.display(),
            self.voxels,
            self.volume_ml,
            self.dims,
            self.series_instance_uid,
            self.ms,
            self.details
        )
    }
}

/// Builds the label of `source` on `ct` (no file written).
///
/// # Errors
/// Those of [`read_stl`], [`voxelise::voxelise`] and [`reference::reference_mask`].
pub fn label_mask(
    ct: &CtVolume,
    source: &LabelSource,
) -> Result<(Mask, SegmentDescription, serde_json::Value), LabelError> {
    Ok(match source {
        LabelSource::Stl(path) => {
            let mesh = read_stl(path)?;
            let (mask, stats) = voxelise::voxelise(&mesh, &ct.geometry)?;
            let d = SegmentDescription {
                algorithm_name: "osteon-mesh-to-label".into(),
                algorithm_family: crate::dicom::seg::Code {
                    value: "123109",
                    scheme: "DCM",
                    meaning: "Manual Processing",
                },
                series_description: "Bone label from STL".into(),
                content_label: "LABEL".into(),
                content_description: "Closed STL voxelised at voxel centres".into(),
                ..SegmentDescription::default()
            };
            (mask, d, serde_json::to_value(stats).unwrap_or_default())
        }
        LabelSource::Reference(opts) => {
            let (mask, stats) = reference::reference_mask(ct, opts)?;
            let d = SegmentDescription {
                algorithm_name: "osteon-reference".into(),
                algorithm_version: opts.version(),
                series_description: "Reference bone label".into(),
                content_label: "REFERENCE".into(),
                content_description: "Threshold, opening, largest component (docs/labels.md)"
                    .into(),
                ..SegmentDescription::default()
            };
            (mask, d, serde_json::to_value(stats).unwrap_or_default())
        }
    })
}

/// Refuses an `--out` that exists and is not a DICOM Segmentation (a CT slice of the input, a
/// config file, a folder): only an earlier label is replaced.
///
/// # Errors
/// [`LabelError::OutExists`].
fn check_out_target(out: &Path) -> Result<(), LabelError> {
    if !out.exists() {
        return Ok(());
    }
    let is_seg = out.is_file()
        && dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(out)
            .is_ok_and(|o| {
                o.meta().media_storage_sop_class_uid.trim_end_matches('\0')
                    == seg::SEGMENTATION_STORAGE
            });
    if is_seg {
        Ok(())
    } else {
        Err(LabelError::OutExists(out.to_owned()))
    }
}

/// `osteon label`: loads the CT series, builds the label and writes it as a BINARY SEG.
///
/// # Errors
/// Any [`LabelError`] of loading, labelling or writing.
pub fn run_label(opts: &LabelOptions) -> Result<LabelReport, LabelError> {
    let t = std::time::Instant::now();
    check_out_target(&opts.out)?;
    let ct = load_ct(&opts.ct, opts.series.as_deref())?;
    let (mask, description, details) = label_mask(&ct, &opts.source)?;
    let per_slice: Vec<u64> = mask
        .outer_iter()
        .map(|s| s.iter().filter(|&&v| v != 0).count() as u64)
        .collect();
    let obj = seg::build_seg(&ct, mask.view(), &description)?;
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabelError::Series(format!("creating {}: {e}", parent.display())))?;
    }
    seg::write(&obj, &opts.out)?;
    Ok(LabelReport {
        out: opts.out.clone(),
        series_instance_uid: ct.info.series_instance_uid.clone(),
        dims: ct.geometry.dims(),
        voxels: per_slice.iter().sum(),
        volume_ml: ct.geometry.volume_ml(&per_slice),
        details,
        ms: t.elapsed().as_secs_f64() * 1000.0,
    })
}
