//! Binary STL of a [`Mesh`] (the format carried by Encapsulated STL, DICOM PS3.3 A.85 / C.8.34):
//! 80-byte header, little-endian `u32` triangle count, then per facet the unit normal and three
//! vertices as little-endian `f32` (coordinates in LPS mm as given) and a zero `u16` attribute
//! count, 50 bytes a facet. Written here in parallel (about 50 MB for the default 1 M triangles,
//! on the latency path of the node); read back with the `stl_io` crate in the tests and by
//! `osteon label`.

use rayon::prelude::*;

use super::{Mesh, MeshError};

/// Bytes of one facet record.
const FACET: usize = 50;
/// Header (80 bytes) and triangle count (4 bytes).
const HEAD: usize = 84;

/// Binary STL bytes of `mesh`; each facet normal is the unit `(b - a) × (c - a)` of the triangle as
/// wound (outward for meshes from [`super::build_mesh`]), computed in f64, zero for a degenerate
/// triangle. The 80-byte header is zero.
///
/// # Errors
/// [`MeshError::BadIndex`] when a triangle refers to a missing vertex (the first such triangle),
/// [`MeshError::TooLarge`] for more than `u32::MAX` triangles.
pub fn stl_bytes(mesh: &Mesh) -> Result<Vec<u8>, MeshError> {
    let count = u32::try_from(mesh.triangles.len())
        .map_err(|_| MeshError::TooLarge(format!("{} triangles for STL", mesh.triangles.len())))?;
    let nv = mesh.vertices.len();
    if let Some((n, &v)) = mesh
        .triangles
        .iter()
        .enumerate()
        .flat_map(|(n, t)| t.iter().map(move |v| (n, v)))
        .find(|(_, &v)| v as usize >= nv)
    {
        return Err(MeshError::BadIndex {
            triangle: n,
            vertex: v,
            vertices: nv,
        });
    }
    let mut out = vec![0u8; HEAD + FACET * mesh.triangles.len()];
    out[80..HEAD].copy_from_slice(&count.to_le_bytes());
    out[HEAD..]
        .par_chunks_mut(FACET)
        .zip(mesh.triangles.par_iter())
        .for_each(|(rec, t)| {
            let p = t.map(|v| mesh.vertices[v as usize].map(f64::from));
            let sub = crate::dicom::geometry::sub;
            let nrm = crate::dicom::geometry::cross(sub(p[1], p[0]), sub(p[2], p[0]));
            let len = crate::dicom::geometry::norm(nrm);
            let unit = if len > 0.0 {
                nrm.map(|c| (c / len) as f32)
            } else {
                [0.0; 3]
            };
            let values = unit
                .iter()
                .chain(t.iter().flat_map(|&v| &mesh.vertices[v as usize]));
            for (slot, x) in rec.chunks_exact_mut(4).zip(values) {
                slot.copy_from_slice(&x.to_le_bytes());
            }
        });
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
        assert_eq!(&b[132..134], &[0, 0], "attribute byte count");
        // The same facet through an independent reader.
        let read = stl_io::read_stl(&mut std::io::Cursor::new(&b)).unwrap();
        assert_eq!(read.faces.len(), 1);
        assert_eq!(read.faces[0].normal, stl_io::Normal::new([0.0, 0.0, 1.0]));
        let corners: Vec<[f32; 3]> = read.faces[0]
            .vertices
            .iter()
            .map(|&i| {
                let v = read.vertices[i];
                [v[0], v[1], v[2]]
            })
            .collect();
        assert_eq!(corners, m.vertices);
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
