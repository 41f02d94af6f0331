//! Binary STL of a [`Mesh`] (the format carried by Encapsulated STL, DICOM PS3.3 A.85 / C.8.34):
//! 80-byte header, little-endian triangle count, then per facet the unit normal and three vertices
//! as `f32` (coordinates in LPS mm as given), written with the `stl_io` crate.

use stl_io::{Normal, Triangle, Vertex};

use super::{Mesh, MeshError};

/// Binary STL bytes of `mesh`; each facet normal is the unit `(b - a) × (c - a)` of the triangle as
/// wound (outward for meshes from [`super::build_mesh`]), zero for a degenerate triangle.
///
/// # Errors
/// [`MeshError::BadIndex`] when a triangle refers to a missing vertex, [`MeshError::TooLarge`] for
/// more than `u32::MAX` triangles, [`MeshError::Stl`] if writing fails.
pub fn stl_bytes(mesh: &Mesh) -> Result<Vec<u8>, MeshError> {
    if mesh.triangles.len() > u32::MAX as usize {
        return Err(MeshError::TooLarge(format!(
            "{} triangles for STL",
            mesh.triangles.len()
        )));
    }
    let nv = mesh.vertices.len();
    let mut facets = Vec::with_capacity(mesh.triangles.len());
    for (n, t) in mesh.triangles.iter().enumerate() {
        let mut p = [[0f64; 3]; 3];
        for (c, &v) in p.iter_mut().zip(t) {
            let x = mesh.vertices.get(v as usize).ok_or(MeshError::BadIndex {
                triangle: n,
                vertex: v,
                vertices: nv,
            })?;
            *c = [x[0] as f64, x[1] as f64, x[2] as f64];
        }
        let sub = crate::dicom::geometry::sub;
        let nrm = crate::dicom::geometry::cross(sub(p[1], p[0]), sub(p[2], p[0]));
        let len = crate::dicom::geometry::norm(nrm);
        let unit = if len > 0.0 {
            [
                (nrm[0] / len) as f32,
                (nrm[1] / len) as f32,
                (nrm[2] / len) as f32,
            ]
        } else {
            [0.0; 3]
        };
        let vertex = |q: [f64; 3]| Vertex::new([q[0] as f32, q[1] as f32, q[2] as f32]);
        facets.push(Triangle {
            normal: Normal::new(unit),
            vertices: [vertex(p[0]), vertex(p[1]), vertex(p[2])],
        });
    }
    let mut out = Vec::with_capacity(84 + 50 * facets.len());
    stl_io::write_stl(&mut out, facets.iter())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_bad_index() {
        let m = Mesh {
            vertices: vec![[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
            triangles: vec![[0, 1, 2]],
        };
        let b = stl_bytes(&m).unwrap();
        assert_eq!(b.len(), 84 + 50);
        assert_eq!(u32::from_le_bytes([b[80], b[81], b[82], b[83]]), 1);
        // Normal (0, 0, 1) then vertex b = (2, 0, 0).
        assert_eq!(f32::from_le_bytes([b[92], b[93], b[94], b[95]]), 1.0);
        assert_eq!(f32::from_le_bytes([b[108], b[109], b[110], b[111]]), 2.0);
        let bad = Mesh {
            vertices: m.vertices.clone(),
            triangles: vec![[0, 1, 7]],
        };
        assert!(matches!(
            stl_bytes(&bad),
            Err(MeshError::BadIndex { vertex: 7, .. })
        ));
    }
}
