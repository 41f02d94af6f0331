//! Topology and volume of a triangle [`Mesh`]: holes, non-manifold edges, winding consistency,
//! surface components (shells) and the signed enclosed volume.

use rayon::prelude::*;
use serde::Serialize;

use super::Mesh;
use crate::segment::components::{find, union};

/// Edge and component counts of a mesh, and its signed volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Topology {
    /// Edges used by exactly one triangle (a closed surface has none).
    pub boundary_edges: usize,
    /// Edges used by three or more triangles.
    pub non_manifold_edges: usize,
    /// Edges used by two triangles that traverse it in the same direction (inconsistent winding).
    pub misoriented_edges: usize,
    /// Connected components of the triangles (sharing a vertex connects).
    pub shells: usize,
    /// Triangles whose three indices are not distinct.
    pub degenerate_triangles: usize,
    /// Signed enclosed volume, mm³ (divergence theorem; positive when normals point outward).
    pub signed_volume_mm3: f64,
}

impl Topology {
    /// Closed, manifold and consistently oriented.
    pub fn is_watertight(&self) -> bool {
        self.boundary_edges == 0
            && self.non_manifold_edges == 0
            && self.misoriented_edges == 0
            && self.degenerate_triangles == 0
    }
}

/// Computes the [`Topology`] of `mesh`. Triangles referring to missing vertices are counted as
/// degenerate and left out of the volume.
pub fn topology(mesh: &Mesh) -> Topology {
    let nv = mesh.vertices.len();
    let valid = |t: &[u32; 3]| {
        t.iter().all(|&v| (v as usize) < nv) && t[0] != t[1] && t[1] != t[2] && t[0] != t[2]
    };
    let degenerate_triangles = mesh.triangles.par_iter().filter(|t| !valid(t)).count();

    let (mut boundary_edges, mut non_manifold_edges, mut misoriented_edges) = (0, 0, 0);
    scan_edges(mesh, |kind, _| match kind {
        EdgeProblem::Boundary => boundary_edges += 1,
        EdgeProblem::NonManifold => non_manifold_edges += 1,
        EdgeProblem::Misoriented => misoriented_edges += 1,
    });

    // Shells: union-find over vertices.
    let mut parent: Vec<u32> = (0..nv as u32).collect();
    let mut used = vec![false; nv];
    for t in mesh
        .triangles
        .iter()
        .filter(|t| t.iter().all(|&v| (v as usize) < nv))
    {
        for &v in t {
            used[v as usize] = true;
        }
        union(&mut parent, t[0], t[1]);
        union(&mut parent, t[0], t[2]);
    }
    let shells = (0..nv)
        .filter(|&v| used[v] && find(&mut parent, v as u32) == v as u32)
        .count();

    let signed_volume_mm3 = signed_volume(mesh);

    Topology {
        boundary_edges,
        non_manifold_edges,
        misoriented_edges,
        shells,
        degenerate_triangles,
        signed_volume_mm3,
    }
}

/// Kind of a bad edge found by [`scan_edges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeProblem {
    /// Used by one triangle.
    Boundary,
    /// Used by three or more triangles.
    NonManifold,
    /// Used twice in the same direction.
    Misoriented,
}

/// Calls `f(kind, [a, b])` for every edge `a < b` that is not shared by exactly two oppositely
/// wound triangles. Triangles with repeated or missing vertices are ignored.
pub fn scan_edges(mesh: &Mesh, mut f: impl FnMut(EdgeProblem, [u32; 2])) {
    let nv = mesh.vertices.len();
    // Half-edges keyed by the undirected edge, direction in the lowest bit (indices < 2^31).
    let mut keys: Vec<u64> = mesh
        .triangles
        .par_iter()
        .filter(|t| {
            t.iter().all(|&v| (v as usize) < nv && v < 1 << 31)
                && t[0] != t[1]
                && t[1] != t[2]
                && t[0] != t[2]
        })
        .flat_map_iter(|t| {
            [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])]
                .into_iter()
                .map(|(a, b)| {
                    let (lo, hi, dir) = if a < b { (a, b, 0) } else { (b, a, 1) };
                    (lo as u64) << 32 | (hi as u64) << 1 | dir
                })
        })
        .collect();
    keys.par_sort_unstable();
    let mut s = 0;
    while s < keys.len() {
        let edge = keys[s] >> 1;
        let mut e = s;
        let mut forward = 0;
        while e < keys.len() && keys[e] >> 1 == edge {
            forward += (keys[e] & 1 == 0) as usize;
            e += 1;
        }
        let ends = [(edge >> 31) as u32, (edge & 0x7fff_ffff) as u32];
        match e - s {
            1 => f(EdgeProblem::Boundary, ends),
            2 if forward != 1 => f(EdgeProblem::Misoriented, ends),
            2 => {}
            _ => f(EdgeProblem::NonManifold, ends),
        }
        s = e;
    }
}

/// Signed enclosed volume of `mesh`, mm³ (see [`Topology::signed_volume_mm3`]).
pub fn signed_volume(mesh: &Mesh) -> f64 {
    let nv = mesh.vertices.len();
    let o = mesh
        .vertices
        .first()
        .map_or([0.0; 3], |v| [v[0] as f64, v[1] as f64, v[2] as f64]);
    let rel = |v: u32| {
        let p = mesh.vertices[v as usize];
        [p[0] as f64 - o[0], p[1] as f64 - o[1], p[2] as f64 - o[2]]
    };
    // Fixed chunking keeps the sum deterministic.
    let partial: Vec<f64> = mesh
        .triangles
        .par_chunks(1 << 16)
        .map(|chunk| {
            chunk
                .iter()
                .filter(|t| t.iter().all(|&v| (v as usize) < nv))
                .map(|t| {
                    let (a, b, c) = (rel(t[0]), rel(t[1]), rel(t[2]));
                    crate::dicom::geometry::dot(a, crate::dicom::geometry::cross(b, c))
                })
                .sum::<f64>()
        })
        .collect();
    partial.iter().sum::<f64>() / 6.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tetrahedron() -> Mesh {
        Mesh {
            vertices: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
            ],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        }
    }

    #[test]
    fn closed_tetrahedron() {
        let t = topology(&tetrahedron());
        assert!(t.is_watertight(), "{t:?}");
        assert_eq!(t.shells, 1);
        assert!((t.signed_volume_mm3 - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn hole_flip_and_fin_are_counted() {
        let mut m = tetrahedron();
        m.triangles.pop();
        let t = topology(&m);
        assert_eq!(
            (t.boundary_edges, t.non_manifold_edges, t.misoriented_edges),
            (3, 0, 0)
        );
        let mut m = tetrahedron();
        m.triangles[3] = [1, 3, 2];
        let t = topology(&m);
        assert_eq!((t.boundary_edges, t.misoriented_edges), (0, 3));
        let mut m = tetrahedron();
        m.vertices.push([1.0, 1.0, 1.0]);
        m.triangles.push([1, 2, 4]);
        let t = topology(&m);
        assert_eq!((t.boundary_edges, t.non_manifold_edges), (2, 1));
        assert!(!t.is_watertight());
    }
}
