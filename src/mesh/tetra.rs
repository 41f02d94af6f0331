//! Iso-surface extraction on the voxel grid: the 0.5 level set of the piecewise-linear interpolant
//! of the padded mask on the Kuhn (Freudenthal) decomposition, reduced per cube to marching-cubes
//! density by [`super::cube_table`].
//!
//! Every cube of eight voxel centres (`[k, j, i]` index space) is cut into the six tetrahedra that
//! share its diagonal from corner (0,0,0) to (1,1,1): for each order (a, b, c) of the three axes the
//! chain 0 → e_a → e_a + e_b → (1,1,1) (H. Freudenthal 1942; H. W. Kuhn 1960). The edges of this
//! triangulation leave each grid point along the seven offsets `d ∈ {0,1}^3 \ {0}`, which is the
//! `Kuhn14` neighbourhood of [`crate::segment::components`]. The binary mask is padded with one
//! layer of background on every side, so the level set is a closed, orientable 2-manifold without
//! ambiguous configurations; the table keeps its topology but only the vertices on axis edges (and
//! the body diagonal in 14 configurations). Vertices lie at the midpoints of the edges whose end
//! points differ (exact for a 0/1 function at iso 0.5) and are mapped to LPS with
//! [`Geometry::voxel_to_lps`].
//!
//! Sharing: each surface vertex belongs to the edge it lies on, and each edge to the k-plane of its
//! start point. Pass 1 (parallel over planes) lists the vertices of each plane in a fixed order; a
//! prefix sum gives global ids. Pass 2 (parallel over chunks of slabs) rebuilds, for the slab between
//! planes p and p+1, only two dense edge maps (all edges of plane p, in-plane edges of plane p+1),
//! written sparsely, and emits the triangles. Output is deterministic.

use rayon::prelude::*;

use super::cube_table::{corner, cube_table, uses_body_vertex};
use super::{Mesh, MeshError};
use crate::dicom::geometry::{cross, dot, Geometry};
use crate::segment::Mask;

/// Binary volume `[k, j, i]` with one layer of zeros on every side (shape `[nk+2, nj+2, ni+2]`),
/// values 0/1, row-major, plus the first/last non-zero column of each row.
pub struct Padded {
    data: Vec<u8>,
    dims: [usize; 3],
    /// Per row `p * pnj + j`: first and last non-zero `i` (padded index); `(u32::MAX, 0)` if none.
    extent: Vec<(u32, u32)>,
}

impl Padded {
    /// Copies `mask` (non-zero = 1) into a padded buffer.
    pub fn from_mask(mask: &Mask) -> Padded {
        let (nk, nj, ni) = mask.dim();
        let dims = [nk + 2, nj + 2, ni + 2];
        let plane = dims[1] * dims[2];
        let mut data = vec![0u8; dims[0] * plane];
        let mut extent = vec![(u32::MAX, 0u32); dims[0] * dims[1]];
        data.par_chunks_mut(plane)
            .zip(extent.par_chunks_mut(dims[1]))
            .enumerate()
            .for_each(|(p, (dst, ext))| {
                if p == 0 || p > nk {
                    return;
                }
                let src = mask.index_axis(ndarray::Axis(0), p - 1);
                for (j, row) in src.outer_iter().enumerate() {
                    let d = &mut dst[(j + 1) * dims[2] + 1..(j + 1) * dims[2] + 1 + ni];
                    for (o, &v) in d.iter_mut().zip(row.iter()) {
                        *o = (v != 0) as u8;
                    }
                    if let (Some(a), Some(b)) = (
                        d.iter().position(|&v| v != 0),
                        d.iter().rposition(|&v| v != 0),
                    ) {
                        ext[j + 1] = (a as u32 + 1, b as u32 + 1);
                    }
                }
            });
        Padded { data, dims, extent }
    }

    /// Calls `f(j, i, code)` for every cube of slab `p` (between planes `p` and `p + 1`) whose eight
    /// corners are not all equal; `code` bit `4*ck + 2*cj + ci` is the value at corner
    /// `(p + ck, j + cj, i + ci)`.
    fn for_each_active_cube(&self, p: usize, mut f: impl FnMut(usize, usize, u8)) {
        let [_, pnj, pni] = self.dims;
        let plane = pnj * pni;
        for j in 0..pnj - 1 {
            let rows = [
                p * pnj + j,
                p * pnj + j + 1,
                (p + 1) * pnj + j,
                (p + 1) * pnj + j + 1,
            ];
            let (mut lo, mut hi) = (u32::MAX, 0u32);
            for &r in &rows {
                let (a, b) = self.extent[r];
                if a != u32::MAX {
                    lo = lo.min(a);
                    hi = hi.max(b);
                }
            }
            if lo == u32::MAX {
                continue;
            }
            // Padding: 1 <= lo <= hi <= pni - 2, so cubes lo-1 ..= hi exist.
            let base = [
                p * plane + j * pni,
                p * plane + (j + 1) * pni,
                (p + 1) * plane + j * pni,
                (p + 1) * plane + (j + 1) * pni,
            ];
            let r: [&[u8]; 4] = [
                &self.data[base[0]..base[0] + pni],
                &self.data[base[1]..base[1] + pni],
                &self.data[base[2]..base[2] + pni],
                &self.data[base[3]..base[3] + pni],
            ];
            let column = |i: usize| -> u8 {
                SPREAD[(r[0][i] | r[1][i] << 1 | r[2][i] << 2 | r[3][i] << 3) as usize]
            };
            let mut prev = column(lo as usize - 1);
            for i in lo as usize - 1..=hi as usize {
                let next = column(i + 1);
                let code = prev | next << 1;
                prev = next;
                if code != 0 && code != 0xff {
                    f(j, i, code);
                }
            }
        }
    }
}

/// Spreads a 4-bit column value (bit `2*ck + cj`) to cube-code bits `4*ck + 2*cj` (corner `ci = 0`).
const SPREAD: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut v = 0;
    while v < 16 {
        t[v] = ((v & 1) | (v & 2) << 1 | (v & 4) << 2 | (v & 8) << 3) as u8;
        v += 1;
    }
    t
};

/// `true` when the index → LPS map is orientation-reversing (the usual case: `(k, j, i)` along
/// normal, column, row is left-handed), so that triangles oriented outward in index space must be
/// flipped to point outward in LPS.
///
/// # Errors
/// [`MeshError::Geometry`] for non-positive or non-finite PixelSpacing, an ImageOrientationPatient
/// whose row and column directions are parallel, or an ImagePositionPatient sequence whose slab
/// Jacobians change sign or vanish (slices not strictly ordered along the normal).
pub fn needs_flip(g: &Geometry) -> Result<bool, MeshError> {
    let [dj, di] = g.pixel_spacing;
    if !(dj.is_finite() && di.is_finite() && dj > 0.0 && di > 0.0) {
        return Err(MeshError::Geometry {
            attribute: "PixelSpacing",
            detail: format!("{:?} must be positive and finite", g.pixel_spacing),
        });
    }
    let in_plane = cross(g.col_dir(), g.row_dir());
    if !(dot(in_plane, in_plane) > 1e-12) || g.iop.iter().any(|v| !v.is_finite()) {
        return Err(MeshError::Geometry {
            attribute: "ImageOrientationPatient",
            detail: format!("{:?} has no valid slice normal", g.iop),
        });
    }
    if g.ipp.iter().flatten().any(|v| !v.is_finite()) {
        return Err(MeshError::Geometry {
            attribute: "ImagePositionPatient",
            detail: "non-finite position".to_owned(),
        });
    }
    // Jacobian of (k, j, i) -> LPS on slab [k, k+1]: det[dP/dk, dj*col, di*row].
    let steps: Vec<[f64; 3]> = if g.ipp.len() < 2 {
        vec![g.normal()]
    } else {
        g.ipp
            .windows(2)
            .map(|w| crate::dicom::geometry::sub(w[1], w[0]))
            .collect()
    };
    let in_plane_len = dot(in_plane, in_plane).sqrt();
    let mut sign = 0.0f64;
    for (k, s) in steps.iter().enumerate() {
        // Distance between the slices along the normal, mm (the Jacobian is this times dj * di).
        let along = dot(*s, in_plane) / in_plane_len;
        if along.abs() <= 1e-6 * dj.min(di) || (sign != 0.0 && along * sign < 0.0) {
            return Err(MeshError::Geometry {
                attribute: "ImagePositionPatient",
                detail: format!(
                    "slices {k} and {} are not strictly ordered along the slice normal",
                    k + 1
                ),
            });
        }
        sign = along.signum();
    }
    Ok(sign < 0.0)
}

/// Vertices owned by plane `p` (edges starting there): dense-map keys `(j * pni + i) * 7 + d - 1`
/// and LPS positions, in scan order, and the number of triangles of slab `p`.
fn plane_vertices(pad: &Padded, g: &Geometry, p: usize) -> (Vec<u32>, Vec<[f32; 3]>, usize) {
    let pni = pad.dims[2];
    let table = cube_table();
    let mut keys = Vec::new();
    let mut pos = Vec::new();
    let mut tris = 0;
    pad.for_each_active_cube(p, |j, i, code| {
        tris += table[code as usize].len();
        let c0 = code & 1;
        // Axis edges, and the body diagonal where the table keeps it (see `cube_table`).
        for d in [1u8, 2, 4, 7] {
            if (code >> d) & 1 != c0 && (d != 7 || uses_body_vertex(code)) {
                keys.push(((j * pni + i) * 7 + d as usize - 1) as u32);
                let c = corner(d);
                let x = g.voxel_to_lps(
                    p as f64 - 1.0 + 0.5 * c[0],
                    j as f64 - 1.0 + 0.5 * c[1],
                    i as f64 - 1.0 + 0.5 * c[2],
                );
                pos.push([x[0] as f32, x[1] as f32, x[2] as f32]);
            }
        }
    });
    (keys, pos, tris)
}

/// The surface vertices of a padded mask, grouped by the k-plane that owns them (pass 1), with
/// global ids `offsets[p] + n` and the triangle count of every slab.
pub struct Planes {
    /// Per padded plane `p`: dense-map keys of its vertices (see `plane_vertices`).
    keys: Vec<Vec<u32>>,
    /// Per padded plane `p`: LPS positions (mm) of its vertices.
    pos: Vec<Vec<[f32; 3]>>,
    /// Global id of the first vertex of each plane; `offsets[pk]` = number of vertices.
    offsets: Vec<usize>,
    /// Triangles of slab `p` (between planes `p` and `p + 1`).
    pub slab_triangles: Vec<usize>,
}

impl Planes {
    /// Pass 1 of the surface extraction (parallel over planes).
    ///
    /// # Errors
    /// [`MeshError::TooLarge`] when the surface needs 2^31 vertices or more.
    pub fn new(pad: &Padded, g: &Geometry) -> Result<Planes, MeshError> {
        let pk = pad.dims[0];
        let planes: Vec<(Vec<u32>, Vec<[f32; 3]>, usize)> = (0..pk)
            .into_par_iter()
            .map(|p| {
                if p + 1 < pk {
                    plane_vertices(pad, g, p)
                } else {
                    (Vec::new(), Vec::new(), 0)
                }
            })
            .collect();
        let mut offsets = Vec::with_capacity(pk + 1);
        let mut total = 0usize;
        for (keys, _, _) in &planes {
            offsets.push(total);
            total += keys.len();
        }
        offsets.push(total);
        if total >= 1 << 31 {
            return Err(MeshError::TooLarge(format!("{total} vertices")));
        }
        let mut out = Planes {
            keys: Vec::with_capacity(pk),
            pos: Vec::with_capacity(pk),
            offsets,
            slab_triangles: Vec::with_capacity(pk),
        };
        for (k, p, t) in planes {
            out.keys.push(k);
            out.pos.push(p);
            out.slab_triangles.push(t);
        }
        Ok(out)
    }

    /// Number of surface vertices.
    pub fn vertex_count(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Number of slabs (padded planes minus one).
    pub fn slabs(&self) -> usize {
        self.keys.len().saturating_sub(1)
    }

    /// LPS positions (mm) of the vertices with global ids in `ids`.
    pub fn positions_in(&self, ids: std::ops::Range<usize>) -> Vec<[f32; 3]> {
        let mut out = Vec::with_capacity(ids.len());
        for (p, pos) in self.pos.iter().enumerate() {
            let (o, e) = (self.offsets[p], self.offsets[p + 1]);
            let (lo, hi) = (ids.start.max(o), ids.end.min(e));
            if lo < hi {
                out.extend_from_slice(&pos[lo - o..hi - o]);
            }
        }
        out
    }

    /// LPS positions (mm) of the vertices whose `used` flag is set, in global id order.
    pub fn positions_where(&self, used: impl Fn(usize) -> bool) -> Vec<[f32; 3]> {
        let mut out = Vec::new();
        for (p, pos) in self.pos.iter().enumerate() {
            let o = self.offsets[p];
            out.extend(
                pos.iter()
                    .enumerate()
                    .filter(|(n, _)| used(o + n))
                    .map(|(_, x)| *x),
            );
        }
        out
    }

    /// The plane that owns the vertex with global id `v` (the last plane for ids past the end).
    pub fn plane_of(&self, v: usize) -> usize {
        self.offsets
            .partition_point(|&o| o <= v)
            .saturating_sub(1)
            .min(self.keys.len().saturating_sub(1))
    }

    /// Global id of the first vertex of plane `p`.
    pub fn first_vertex(&self, p: usize) -> usize {
        self.offsets[p.min(self.offsets.len() - 1)]
    }

    /// All vertex positions in global id order.
    pub fn vertices(&self) -> Vec<[f32; 3]> {
        self.positions_in(0..self.vertex_count())
    }

    /// Replaces the vertex positions (global id order, e.g. after smoothing); `vertices` must hold
    /// [`Planes::vertex_count`] positions, otherwise nothing changes.
    pub fn set_vertices(&mut self, vertices: &[[f32; 3]]) {
        if vertices.len() != self.vertex_count() {
            return;
        }
        for (p, pos) in self.pos.iter_mut().enumerate() {
            pos.copy_from_slice(&vertices[self.offsets[p]..self.offsets[p + 1]]);
        }
    }
}

/// Dense edge maps of pass 2, reused from slab to slab.
pub struct SlabMaps {
    map_a: Vec<u32>,
    map_b: Vec<u32>,
}

impl SlabMaps {
    /// Maps for the grid of `pad`.
    pub fn new(pad: &Padded) -> SlabMaps {
        let plane = pad.dims[1] * pad.dims[2];
        SlabMaps {
            map_a: vec![0; plane * 7],
            map_b: vec![0; plane * 3],
        }
    }
}

/// Pass 2 for the slabs `slabs`: appends their triangles (global vertex ids, outward in LPS with
/// `flip` from [`needs_flip`]) to `tris`.
pub fn emit(
    pad: &Padded,
    planes: &Planes,
    maps: &mut SlabMaps,
    flip: bool,
    slabs: std::ops::Range<usize>,
    tris: &mut Vec<[u32; 3]>,
) {
    let pni = pad.dims[2];
    let table = cube_table();
    let (map_a, map_b) = (&mut maps.map_a, &mut maps.map_b);
    for p in slabs.start..slabs.end.min(planes.slabs()) {
        for (n, &key) in planes.keys[p].iter().enumerate() {
            map_a[key as usize] = (planes.offsets[p] + n) as u32;
        }
        for (n, &key) in planes.keys[p + 1].iter().enumerate() {
            let (cell, d) = (key as usize / 7, key as usize % 7);
            if d < 3 {
                map_b[cell * 3 + d] = (planes.offsets[p + 1] + n) as u32;
            }
        }
        pad.for_each_active_cube(p, |j, i, code| {
            let id = |e: u8| -> u32 {
                let (sc, d) = ((e >> 3) as usize, (e & 7) as usize);
                let cell = (j + ((sc >> 1) & 1)) * pni + i + (sc & 1);
                if sc & 4 == 0 {
                    map_a[cell * 7 + d - 1]
                } else {
                    map_b[cell * 3 + d - 1]
                }
            };
            for t in &table[code as usize] {
                let (a, b, c) = (id(t[0]), id(t[1]), id(t[2]));
                tris.push(if flip { [a, c, b] } else { [a, b, c] });
            }
        });
    }
}

/// Marching tetrahedra of a padded mask into one [`Mesh`]; triangles outward in LPS (`flip` from
/// [`needs_flip`]).
///
/// # Errors
/// [`MeshError::TooLarge`] when the surface needs 2^31 vertices or 2^32 triangles or more.
pub fn march(pad: &Padded, g: &Geometry, flip: bool) -> Result<Mesh, MeshError> {
    let planes = Planes::new(pad, g)?;
    march_planes(pad, &planes, flip)
}

/// Pass 2 over all slabs for the vertices of [`Planes::new`] (see [`march`]).
///
/// # Errors
/// [`MeshError::TooLarge`] beyond 2^32 triangles.
pub fn march_planes(pad: &Padded, planes: &Planes, flip: bool) -> Result<Mesh, MeshError> {
    let n_tris: usize = planes.slab_triangles.iter().sum();
    if n_tris > u32::MAX as usize {
        return Err(MeshError::TooLarge(format!("{n_tris} triangles")));
    }
    let slabs = planes.slabs();
    let chunks = (rayon::current_num_threads() * 4).clamp(1, slabs.max(1));
    let per = slabs.div_ceil(chunks);
    let tri_chunks: Vec<Vec<[u32; 3]>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut maps = SlabMaps::new(pad);
            let mut tris = Vec::new();
            emit(
                pad,
                &planes,
                &mut maps,
                flip,
                c * per..((c + 1) * per).min(slabs),
                &mut tris,
            );
            tris
        })
        .collect();
    let mut triangles = Vec::with_capacity(n_tris);
    for c in tri_chunks {
        triangles.extend_from_slice(&c);
    }
    Ok(Mesh {
        vertices: planes.vertices(),
        triangles,
    })
}
