//! Signed distance from points to a closed triangle mesh, for the paper's surface deviation
//! (Minnema et al. 2018, §2.5; [`super::metrics`]) and the Hausdorff figures ([`super::hausdorff`]).
//!
//! The nearest triangle is found on a uniform grid of triangle bounding boxes; the closest point on
//! it by Ericson's region test (*Real-Time Collision Detection*, §5.1.5). The inside/outside
//! decision uses the angle-weighted pseudo-normal of the nearest feature (face, edge or vertex)
//! (Bærentzen & Aanæs, "Signed distance computation using the angle weighted pseudonormal", IEEE
//! TVCG 11(3), 2005), which is exact for closed, consistently oriented meshes such as those of
//! [`crate::mesh::build_mesh`]. Coordinates are LPS mm.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::dicom::geometry::{cross, dot, norm, sub};
use crate::mesh::Mesh;

use super::EvalError;

/// Nearest-triangle search on a closed mesh with signed distance (uniform grid of triangle bounding
/// boxes; pseudo-normals for the sign).
pub struct SurfaceIndex {
    vertices: Vec<[f64; 3]>,
    triangles: Vec<[u32; 3]>,
    face_normals: Vec<[f64; 3]>,
    vertex_normals: Vec<[f64; 3]>,
    edge_normals: HashMap<(u32, u32), [f64; 3]>,
    origin: [f64; 3],
    cell: f64,
    dims: [i64; 3],
    cell_start: Vec<u32>,
    cell_items: Vec<u32>,
}

/// Nearest feature of a triangle to a point (Ericson, *Real-Time Collision Detection*, §5.1.5).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Feature {
    Face,
    Edge(u8),
    Vertex(u8),
}

impl SurfaceIndex {
    /// Builds the index of `mesh` (LPS mm). Triangles with repeated or missing vertices are ignored.
    ///
    /// # Errors
    /// [`EvalError::EmptyMesh`] when no usable triangle remains.
    pub fn new(mesh: &Mesh) -> Result<SurfaceIndex, EvalError> {
        let vertices: Vec<[f64; 3]> = mesh
            .vertices
            .iter()
            .map(|v| [v[0] as f64, v[1] as f64, v[2] as f64])
            .collect();
        let nv = vertices.len();
        let triangles: Vec<[u32; 3]> = mesh
            .triangles
            .iter()
            .copied()
            .filter(|t| {
                t.iter().all(|&v| (v as usize) < nv) && t[0] != t[1] && t[1] != t[2] && t[0] != t[2]
            })
            .collect();
        if triangles.is_empty() {
            return Err(EvalError::EmptyMesh);
        }
        let face_normals: Vec<[f64; 3]> = triangles
            .par_iter()
            .map(|t| {
                let [a, b, c] = t.map(|v| vertices[v as usize]);
                unit(cross(sub(b, a), sub(c, a)))
            })
            .collect();
        // Angle-weighted vertex pseudo-normals; edge pseudo-normals = sum of the two face normals.
        let mut vertex_normals = vec![[0.0; 3]; nv];
        let mut edge_normals: HashMap<(u32, u32), [f64; 3]> =
            HashMap::with_capacity(triangles.len() * 3 / 2);
        for (t, n) in triangles.iter().zip(&face_normals) {
            for q in 0..3 {
                let (a, b, c) = (t[q], t[(q + 1) % 3], t[(q + 2) % 3]);
                let (pa, pb, pc) = (
                    vertices[a as usize],
                    vertices[b as usize],
                    vertices[c as usize],
                );
                let angle = angle_between(sub(pb, pa), sub(pc, pa));
                for x in 0..3 {
                    vertex_normals[a as usize][x] += angle * n[x];
                }
                let key = (a.min(b), a.max(b));
                let e = edge_normals.entry(key).or_insert([0.0; 3]);
                for x in 0..3 {
                    e[x] += n[x];
                }
            }
        }
        // Grid: cell about twice the mean edge length, at least 1 mm, at most ~8 M cells.
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for v in &vertices {
            for a in 0..3 {
                lo[a] = lo[a].min(v[a]);
                hi[a] = hi[a].max(v[a]);
            }
        }
        let mean_edge = triangles
            .iter()
            .take(10_000)
            .map(|t| norm(sub(vertices[t[1] as usize], vertices[t[0] as usize])))
            .sum::<f64>()
            / triangles.len().min(10_000) as f64;
        let mut cell = (2.0 * mean_edge).max(1.0);
        let extent = [0, 1, 2].map(|a| (hi[a] - lo[a]).max(1e-6));
        while extent
            .iter()
            .map(|e| (e / cell).ceil() + 1.0)
            .product::<f64>()
            > 8.0e6
        {
            cell *= 1.25;
        }
        let dims = extent.map(|e| (e / cell).floor() as i64 + 1);
        let ncell = (dims[0] * dims[1] * dims[2]) as usize;
        let cell_of = |p: [f64; 3]| -> [i64; 3] {
            [0, 1, 2].map(|a| (((p[a] - lo[a]) / cell).floor() as i64).clamp(0, dims[a] - 1))
        };
        let ranges: Vec<([i64; 3], [i64; 3])> = triangles
            .par_iter()
            .map(|t| {
                let p = t.map(|v| vertices[v as usize]);
                let mn = [0, 1, 2].map(|a| p[0][a].min(p[1][a]).min(p[2][a]));
                let mx = [0, 1, 2].map(|a| p[0][a].max(p[1][a]).max(p[2][a]));
                (cell_of(mn), cell_of(mx))
            })
            .collect();
        let flat = |c: [i64; 3]| ((c[0] * dims[1] + c[1]) * dims[2] + c[2]) as usize;
        let mut counts = vec![0u32; ncell + 1];
        let each = |(a, b): &([i64; 3], [i64; 3]), f: &mut dyn FnMut(usize)| {
            for x in a[0]..=b[0] {
                for y in a[1]..=b[1] {
                    for z in a[2]..=b[2] {
                        f(flat([x, y, z]));
                    }
                }
            }
        };
        for r in &ranges {
            each(r, &mut |c| counts[c + 1] += 1);
        }
        for c in 0..ncell {
            counts[c + 1] += counts[c];
        }
        let mut fill = counts.clone();
        let mut cell_items = vec![0u32; counts[ncell] as usize];
        for (t, r) in ranges.iter().enumerate() {
            each(r, &mut |c| {
                cell_items[fill[c] as usize] = t as u32;
                fill[c] += 1;
            });
        }
        Ok(SurfaceIndex {
            vertices,
            triangles,
            face_normals,
            vertex_normals,
            edge_normals,
            origin: lo,
            cell,
            dims,
            cell_start: counts,
            cell_items,
        })
    }

    /// Signed distance (mm) from `p` to the surface, **positive when `p` is inside** the solid
    /// (outward-oriented mesh), or `None` when no triangle lies within `max_mm`.
    pub fn signed_distance_inside_positive(&self, p: [f64; 3], max_mm: f64) -> Option<f64> {
        let c = [0, 1, 2].map(|a| ((p[a] - self.origin[a]) / self.cell).floor() as i64);
        let rmax = (max_mm / self.cell).ceil() as i64 + 1;
        let mut best: Option<(f64, usize, Feature, [f64; 3])> = None;
        for r in 0..=rmax {
            for x in c[0] - r..=c[0] + r {
                if x < 0 || x >= self.dims[0] {
                    continue;
                }
                for y in c[1] - r..=c[1] + r {
                    if y < 0 || y >= self.dims[1] {
                        continue;
                    }
                    for z in c[2] - r..=c[2] + r {
                        if z < 0 || z >= self.dims[2] {
                            continue;
                        }
                        let ring = (x - c[0]).abs().max((y - c[1]).abs()).max((z - c[2]).abs());
                        if ring != r {
                            continue;
                        }
                        let cell = ((x * self.dims[1] + y) * self.dims[2] + z) as usize;
                        let (s, e) = (self.cell_start[cell], self.cell_start[cell + 1]);
                        for &t in &self.cell_items[s as usize..e as usize] {
                            let tri = self.triangles[t as usize].map(|v| self.vertices[v as usize]);
                            let (q, f) = closest_point(p, tri);
                            let d2 = dot(sub(p, q), sub(p, q));
                            if best.is_none_or(|b| d2 < b.0) {
                                best = Some((d2, t as usize, f, q));
                            }
                        }
                    }
                }
            }
            if let Some(b) = best {
                if b.0.sqrt() <= r as f64 * self.cell {
                    break;
                }
            }
        }
        let (d2, t, f, q) = best?;
        let d = d2.sqrt();
        if d > max_mm {
            return None;
        }
        let tri = self.triangles[t];
        let n = match f {
            Feature::Face => self.face_normals[t],
            Feature::Vertex(a) => self.vertex_normals[tri[a as usize] as usize],
            Feature::Edge(a) => {
                let (u, v) = (tri[a as usize], tri[(a as usize + 1) % 3]);
                self.edge_normals
                    .get(&(u.min(v), u.max(v)))
                    .copied()
                    .unwrap_or(self.face_normals[t])
            }
        };
        let s = dot(sub(p, q), n);
        Some(if s > 0.0 { -d } else { d })
    }
}

fn unit(a: [f64; 3]) -> [f64; 3] {
    let l = norm(a);
    if l > 0.0 {
        [a[0] / l, a[1] / l, a[2] / l]
    } else {
        [0.0; 3]
    }
}

fn angle_between(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (la, lb) = (norm(a), norm(b));
    if la == 0.0 || lb == 0.0 {
        return 0.0;
    }
    (dot(a, b) / (la * lb)).clamp(-1.0, 1.0).acos()
}

/// Closest point of triangle `[a, b, c]` to `p`, and which feature it lies on (edge `q` joins
/// vertices `q` and `q + 1`). Barycentric region tests after Ericson (2005), §5.1.5.
fn closest_point(p: [f64; 3], [a, b, c]: [[f64; 3]; 3]) -> ([f64; 3], Feature) {
    let ab = sub(b, a);
    let ac = sub(c, a);
    let ap = sub(p, a);
    let d1 = dot(ab, ap);
    let d2 = dot(ac, ap);
    if d1 <= 0.0 && d2 <= 0.0 {
        return (a, Feature::Vertex(0));
    }
    let bp = sub(p, b);
    let d3 = dot(ab, bp);
    let d4 = dot(ac, bp);
    if d3 >= 0.0 && d4 <= d3 {
        return (b, Feature::Vertex(1));
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        let v = d1 / (d1 - d3);
        return (add_scaled(a, ab, v), Feature::Edge(0));
    }
    let cp = sub(p, c);
    let d5 = dot(ab, cp);
    let d6 = dot(ac, cp);
    if d6 >= 0.0 && d5 <= d6 {
        return (c, Feature::Vertex(2));
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        let w = d2 / (d2 - d6);
        return (add_scaled(a, ac, w), Feature::Edge(2));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        let w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        return (add_scaled(b, sub(c, b), w), Feature::Edge(1));
    }
    let den = va + vb + vc;
    if den == 0.0 {
        // Degenerate (zero-area) triangle: fall back to the nearest vertex.
        let da = dot(ap, ap);
        let db = dot(bp, bp);
        let dc = dot(cp, cp);
        return if da <= db && da <= dc {
            (a, Feature::Vertex(0))
        } else if db <= dc {
            (b, Feature::Vertex(1))
        } else {
            (c, Feature::Vertex(2))
        };
    }
    let v = vb / den;
    let w = vc / den;
    (
        [
            a[0] + ab[0] * v + ac[0] * w,
            a[1] + ab[1] * v + ac[1] * w,
            a[2] + ab[2] * v + ac[2] * w,
        ],
        Feature::Face,
    )
}

pub(crate) fn add_scaled(a: [f64; 3], d: [f64; 3], t: f64) -> [f64; 3] {
    [a[0] + t * d[0], a[1] + t * d[1], a[2] + t * d[2]]
}

/// Signed deviation of each reference surface point (LPS mm) from the predicted surface, positive
/// when the prediction is larger (the point is inside the predicted solid); `None` beyond
/// `max_abs_mm` (the paper counts -5..+5 mm).
pub fn deviations(
    points: &[[f64; 3]],
    predicted: &SurfaceIndex,
    max_abs_mm: f64,
) -> Vec<Option<f64>> {
    points
        .par_iter()
        .map(|&p| predicted.signed_distance_inside_positive(p, max_abs_mm))
        .collect()
}

/// Reference surface points: the vertices of the reference mesh (LPS mm).
pub fn surface_points(mesh: &Mesh) -> Vec<[f64; 3]> {
    mesh.vertices
        .iter()
        .map(|v| [v[0] as f64, v[1] as f64, v[2] as f64])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_point_regions() {
        let t = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let (q, f) = closest_point([0.2, 0.2, 1.0], t);
        assert_eq!(f, Feature::Face);
        assert!(norm(sub(q, [0.2, 0.2, 0.0])) < 1e-12);
        assert_eq!(closest_point([-1.0, -1.0, 0.0], t).1, Feature::Vertex(0));
        assert_eq!(
            closest_point([0.5, -1.0, 0.0], t),
            ([0.5, 0.0, 0.0], Feature::Edge(0))
        );
        assert_eq!(
            closest_point([1.0, 1.0, 0.0], t),
            ([0.5, 0.5, 0.0], Feature::Edge(1))
        );
        assert_eq!(
            closest_point([-1.0, 0.5, 0.0], t),
            ([0.0, 0.5, 0.0], Feature::Edge(2))
        );
    }
}
