//! Surface mesh of a bone [`Mask`] in DICOM LPS millimetres: iso-surface, smoothing, decimation, STL.
//!
//! * [`tetra`]: iso-surface at the native resolution: the 0.5 level set of the piecewise-linear
//!   interpolant of the padded mask on the Kuhn (Freudenthal) decomposition, hence a closed, oriented
//!   2-manifold with no ambiguous cases, with the per-cube triangles of [`cube_table`] (the marching
//!   tetrahedra surface reduced to the axis-edge vertices of marching cubes, same topology).
//! * [`smooth`]: windowed-sinc low-pass smoothing (Taubin, Zhang & Golub 1996), which does not shrink.
//! * [`decimate`]: reduction to a triangle budget with meshoptimizer, chunk by chunk of slabs
//!   re-extracted from the vertex planes (the full-resolution triangle list is freed first),
//!   re-checked for holes and non-manifold edges (falls back to the undecimated mesh when the check
//!   fails).
//! * [`topology`]: boundary / non-manifold edges, shells, signed volume.
//! * [`stl`]: binary STL with outward facet normals.
//!
//! [`build_mesh`] chains them: largest Kuhn14 component of the mask → surface → smoothing →
//! decimation → topology.

pub mod cube_table;
pub mod decimate;
pub mod smooth;
pub mod stl;
pub mod tetra;
pub mod topology;

use std::time::Instant;

use serde::Serialize;

use crate::dicom::geometry::Geometry;
use crate::segment::components::{label, Connectivity};
use crate::segment::Mask;

pub use stl::stl_bytes;
pub use topology::{topology, Topology};

/// Indexed triangle mesh.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// Vertex positions in DICOM LPS, mm.
    pub vertices: Vec<[f32; 3]>,
    /// Triangles as indices into `vertices`, counter-clockwise seen from outside the solid (normals
    /// `(b - a) × (c - a)` point out of the bone, also around inner cavities).
    pub triangles: Vec<[u32; 3]>,
}

/// Parameters of [`build_mesh`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeshOptions {
    /// Number of windowed-sinc smoothing iterations (the degree of the Chebyshev filter); 0 = off.
    /// Default 10.
    pub smoothing_iterations: u32,
    /// Pass band of the smoothing filter in the spectrum of the Laplacian, `(0, 2)`; smaller is
    /// smoother (VTK's `PassBand` convention). Default 0.1.
    pub smoothing_passband: f64,
    /// Triangle budget for decimation; `None` = no decimation. Default `Some(1_000_000)`.
    pub max_triangles: Option<usize>,
    /// Largest distance (mm) decimation may move the surface while it works towards the budget;
    /// when the budget cannot be met within it, a second pass ignores the bound and the error reached
    /// is reported. Default 0.25 mm.
    pub decimation_max_error_mm: f32,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            smoothing_iterations: 10,
            smoothing_passband: 0.1,
            max_triangles: Some(1_000_000),
            decimation_max_error_mm: 0.25,
        }
    }
}

/// Wall-clock time of each step of [`build_mesh`], ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeshTimings {
    /// Largest connected component of the mask.
    pub components_ms: f64,
    /// Marching tetrahedra (including padding the mask).
    pub surface_ms: f64,
    /// Smoothing.
    pub smoothing_ms: f64,
    /// Decimation (including its topology re-check).
    pub decimation_ms: f64,
    /// Final topology and volume.
    pub topology_ms: f64,
    /// Whole stage.
    pub total_ms: f64,
}

/// What [`build_mesh`] made, for the job report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeshStats {
    /// Voxels of the mask (all components).
    pub mask_voxels: u64,
    /// Kuhn14 components in the mask; only the largest is meshed.
    pub mask_components: usize,
    /// Voxels of the meshed (largest) component.
    pub component_voxels: u64,
    /// Triangles of the iso-surface before smoothing and decimation.
    pub triangles_surface: usize,
    /// Triangles of the final mesh.
    pub triangles: usize,
    /// Vertices of the final mesh.
    pub vertices: usize,
    /// Connected surface components (outer surface plus one per inner cavity).
    pub shells: usize,
    /// Signed enclosed volume, mL (> 0: normals point outward).
    pub volume_ml: f64,
    /// No boundary edge, no non-manifold edge and consistent orientation.
    pub watertight: bool,
    /// Edges shared by more than two triangles.
    pub non_manifold_edges: usize,
    /// Edges used by one triangle only (holes).
    pub boundary_edges: usize,
    /// Edges used twice in the same direction (inconsistent winding).
    pub misoriented_edges: usize,
    /// Axis-aligned bounding box `[min, max]` of the vertices, LPS mm.
    pub bbox_lps_mm: [[f64; 3]; 2],
    /// What the smoothing step did.
    pub smoothing: String,
    /// What the decimation step did (or why it fell back to the undecimated mesh).
    pub decimation: String,
    /// Time per step.
    pub timings: MeshTimings,
}

/// Errors of the mesh stage.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The mask's `[k, j, i]` shape differs from the geometry's (slices, Rows, Columns).
    #[error(
        "mask shape {mask:?} does not match the geometry [slices, Rows, Columns] {geometry:?}"
    )]
    ShapeMismatch {
        /// Mask shape `[k, j, i]`.
        mask: [usize; 3],
        /// Geometry dims `[k, j, i]`.
        geometry: [usize; 3],
    },
    /// The mask holds no foreground voxel.
    #[error("mask is empty: nothing to mesh")]
    EmptyMask,
    /// The geometry cannot map voxels to a non-degenerate solid (PixelSpacing, ImageOrientationPatient
    /// or the ImagePositionPatient sequence).
    #[error("degenerate geometry ({attribute}): {detail}")]
    Geometry {
        /// DICOM attribute at fault.
        attribute: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The surface needs more vertices or triangles than 32-bit indices (and binary STL) allow.
    #[error("surface too large: {0}")]
    TooLarge(String),
    /// The mesh encloses a non-positive volume although it was oriented outward (internal error).
    #[error("surface orientation check failed: signed volume {0} mm^3")]
    Orientation(f64),
    /// A triangle refers to a vertex that does not exist.
    #[error("triangle {triangle} refers to vertex {vertex} of {vertices}")]
    BadIndex {
        /// Index of the triangle.
        triangle: usize,
        /// Offending vertex index.
        vertex: u32,
        /// Number of vertices.
        vertices: usize,
    },
    /// Writing the STL failed.
    #[error("writing STL: {0}")]
    Stl(#[from] std::io::Error),
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Meshes the largest Kuhn14-connected component of `mask` (`[k, j, i]`, non-zero = bone) in the LPS
/// frame of `geometry` (exact per-slice IPP, gantry tilt and variable spacing included).
///
/// Steps: largest component → iso-surface at 0.5 ([`tetra`], [`cube_table`]) (outside the array counts as background,
/// so the surface is closed) → windowed-sinc smoothing → decimation to `opts.max_triangles` →
/// topology. Triangles are wound counter-clockwise seen from outside; the signed volume is positive.
///
/// # Errors
/// [`MeshError::ShapeMismatch`] when mask and geometry disagree, [`MeshError::EmptyMask`],
/// [`MeshError::Geometry`] for zero/non-finite spacing or slices not strictly ordered along the
/// normal, [`MeshError::TooLarge`] beyond 2^31 vertices, [`MeshError::Orientation`] if the final
/// volume is not positive.
pub fn build_mesh(
    mask: &Mask,
    geometry: &Geometry,
    opts: &MeshOptions,
) -> Result<(Mesh, MeshStats), MeshError> {
    mesh_mask(mask, geometry, opts, false)
}

/// [`build_mesh`] of every component of `mask`, not only the largest: one or more closed shells
/// per part. For scoring against a reference label whose parts (mandible, vertebrae, small
/// fragments) are all bone; the product meshes the largest component only.
///
/// # Errors
/// As [`build_mesh`].
pub fn build_mesh_all_components(
    mask: &Mask,
    geometry: &Geometry,
    opts: &MeshOptions,
) -> Result<(Mesh, MeshStats), MeshError> {
    mesh_mask(mask, geometry, opts, true)
}

fn mesh_mask(
    mask: &Mask,
    geometry: &Geometry,
    opts: &MeshOptions,
    all_components: bool,
) -> Result<(Mesh, MeshStats), MeshError> {
    let t_all = Instant::now();
    let dims = [mask.dim().0, mask.dim().1, mask.dim().2];
    if dims != geometry.dims() {
        return Err(MeshError::ShapeMismatch {
            mask: dims,
            geometry: geometry.dims(),
        });
    }
    let flip = tetra::needs_flip(geometry)?;
    let mut timings = MeshTimings::default();

    let t = Instant::now();
    let components = label(mask, Connectivity::Kuhn14);
    let Some(largest) = components.largest() else {
        return Err(MeshError::EmptyMask);
    };
    let mask_voxels: u64 = components.sizes.iter().sum();
    let mask_components = components.count();
    let (component_voxels, solid) = if all_components {
        (mask_voxels, mask.mapv(|v| u8::from(v != 0)))
    } else {
        (
            components.sizes[largest as usize],
            components.mask_of(largest, mask),
        )
    };
    drop(components);
    timings.components_ms = ms(t);

    let t = Instant::now();
    let padded = tetra::Padded::from_mask(&solid);
    drop(solid);
    let mut planes = tetra::Planes::new(&padded, geometry)?;
    let triangles_surface: usize = planes.slab_triangles.iter().sum();
    let mut mesh = tetra::march_planes(&padded, &planes, flip)?;
    timings.surface_ms = ms(t);
    tracing::info!(
        triangles = triangles_surface,
        vertices = mesh.vertices.len(),
        ms = timings.surface_ms,
        "iso-surface (Kuhn level set at marching-cubes density, iso 0.5, native resolution)"
    );
    let origin = geometry.voxel_to_lps(0.0, 0.0, 0.0);

    let t = Instant::now();
    let smoothing = smooth::windowed_sinc(
        &mut mesh,
        opts.smoothing_iterations,
        opts.smoothing_passband,
    );
    timings.smoothing_ms = ms(t);
    tracing::info!(ms = timings.smoothing_ms, "smoothing: {smoothing}");

    // Decimation re-extracts the triangles chunk by chunk (with the smoothed positions), so the
    // full-resolution triangle list is dropped first.
    let t = Instant::now();
    let mut decimation = "off (no triangle budget)".to_owned();
    let mut known = None;
    if let Some(budget) = opts.max_triangles {
        if triangles_surface <= budget {
            decimation = format!("not needed ({triangles_surface} triangles <= budget {budget})");
        } else {
            planes.set_vertices(&mesh.vertices);
            let full = std::mem::take(&mut mesh);
            drop(full);
            match decimate::decimate_streamed(
                &padded,
                &planes,
                flip,
                budget,
                opts.decimation_max_error_mm,
                origin,
            ) {
                Ok(d) => {
                    decimation = d.description;
                    mesh = d.mesh;
                    known = Some(d.topology);
                }
                Err(why) => {
                    tracing::warn!(
                        "decimation result rejected ({why}); keeping the undecimated mesh"
                    );
                    decimation = format!(
                        "fell back to undecimated mesh ({triangles_surface} triangles): {why}"
                    );
                    mesh = tetra::march_planes(&padded, &planes, flip)?;
                }
            }
        }
    }
    drop((padded, planes));
    timings.decimation_ms = ms(t);
    tracing::info!(ms = timings.decimation_ms, "decimation: {decimation}");

    let t = Instant::now();
    // The decimator checked these very triangles.
    let topo = match known {
        Some(topo) => topo,
        None => topology(&mesh),
    };
    timings.topology_ms = ms(t);
    if topo.signed_volume_mm3 <= 0.0 {
        return Err(MeshError::Orientation(topo.signed_volume_mm3));
    }
    timings.total_ms = ms(t_all);

    let stats = MeshStats {
        mask_voxels,
        mask_components,
        component_voxels,
        triangles_surface,
        triangles: mesh.triangles.len(),
        vertices: mesh.vertices.len(),
        shells: topo.shells,
        volume_ml: topo.signed_volume_mm3 / 1000.0,
        watertight: topo.is_watertight(),
        non_manifold_edges: topo.non_manifold_edges,
        boundary_edges: topo.boundary_edges,
        misoriented_edges: topo.misoriented_edges,
        bbox_lps_mm: bbox(&mesh),
        smoothing,
        decimation,
        timings,
    };
    tracing::info!(
        triangles = stats.triangles,
        shells = stats.shells,
        volume_ml = stats.volume_ml,
        watertight = stats.watertight,
        total_ms = stats.timings.total_ms,
        "mesh built"
    );
    Ok((mesh, stats))
}

/// Axis-aligned bounding box `[min, max]` of the vertices (LPS mm); zeros for an empty mesh.
pub fn bbox(mesh: &Mesh) -> [[f64; 3]; 2] {
    if mesh.vertices.is_empty() {
        return [[0.0; 3]; 2];
    }
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for v in &mesh.vertices {
        for a in 0..3 {
            lo[a] = lo[a].min(v[a] as f64);
            hi[a] = hi[a].max(v[a] as f64);
        }
    }
    [lo, hi]
}

#[cfg(test)]
mod tests;
