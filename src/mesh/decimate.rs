//! Decimation to a triangle budget with meshoptimizer's edge-collapse simplifier (quadric error,
//! topology-preserving; `meshopt_simplify`, A. Kapoulkine), followed by a topology re-check.
//!
//! The simplifier is asked for `3 * budget` indices with border vertices locked and an absolute error
//! bound in mm. If the bound stops it above the budget, a second pass without the bound reaches the
//! budget and reports the error it needed. The result must stay closed, manifold and consistently
//! oriented; otherwise the undecimated mesh is kept and the reason is reported.

use meshopt::{SimplifyOptions, VertexDataAdapter};

use super::topology::topology;
use super::Mesh;

/// Decimates `mesh` to at most `budget` triangles (see the module doc); returns the mesh to use and a
/// one-line description of what was done.
pub fn decimate(mesh: Mesh, budget: usize, max_error_mm: f32) -> (Mesh, String) {
    let n = mesh.triangles.len();
    if n <= budget {
        return (
            mesh,
            format!("not needed ({n} triangles <= budget {budget})"),
        );
    }
    let before = topology(&mesh);
    let indices: Vec<u32> = mesh.triangles.iter().flatten().copied().collect();
    let adapter = match VertexDataAdapter::new(
        meshopt::typed_to_bytes(&mesh.vertices),
        std::mem::size_of::<[f32; 3]>(),
        0,
    ) {
        Ok(a) => a,
        Err(e) => return (mesh, format!("skipped: meshopt vertex adapter: {e}")),
    };
    let target = budget.saturating_mul(3);
    let options = SimplifyOptions::LockBorder | SimplifyOptions::ErrorAbsolute;
    let bound = if max_error_mm.is_finite() && max_error_mm > 0.0 {
        max_error_mm
    } else {
        f32::MAX
    };
    let mut error = 0f32;
    let mut out = meshopt::simplify(&indices, &adapter, target, bound, options, Some(&mut error));
    let mut how = format!("meshopt simplify, error bound {bound} mm");
    if out.len() > target {
        let reached = out.len() / 3;
        out = meshopt::simplify(
            &indices,
            &adapter,
            target,
            f32::MAX,
            options,
            Some(&mut error),
        );
        how = format!(
            "meshopt simplify: bound {bound} mm stopped at {reached} triangles, second pass \
             without bound"
        );
    }
    drop(indices);
    if out.len() > target {
        how.push_str(&format!(
            " (stopped at {} triangles by topology limits)",
            out.len() / 3
        ));
    }
    let mut reduced = Mesh {
        vertices: mesh.vertices.clone(),
        triangles: out.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect(),
    };
    let mut after = topology(&reduced);
    let mut flaps = 0;
    if !after.is_watertight() {
        // The simplifier can fold a thin region into a pair of coincident, opposite triangles (a
        // "flap" on an edge that then has four triangles); dropping such pairs restores a manifold.
        flaps = remove_flaps(&mut reduced.triangles);
        if flaps > 0 {
            after = topology(&reduced);
            how.push_str(&format!(", {flaps} flap pair(s) removed"));
        }
    }
    remove_unused_vertices(&mut reduced);
    let problem = if !after.is_watertight() {
        Some(format!(
            "{} boundary, {} non-manifold, {} misoriented edges, {} degenerate triangles",
            after.boundary_edges,
            after.non_manifold_edges,
            after.misoriented_edges,
            after.degenerate_triangles
        ))
    } else if after.signed_volume_mm3 <= 0.0 {
        Some(format!("signed volume {} mm^3", after.signed_volume_mm3))
    } else {
        None
    };
    if let Some(p) = problem {
        tracing::warn!("decimation result rejected ({p}); keeping the undecimated mesh");
        return (
            mesh,
            format!("fell back to undecimated mesh ({n} triangles): {how} gave {p}"),
        );
    }
    let dv = 100.0 * (after.signed_volume_mm3 - before.signed_volume_mm3)
        / before.signed_volume_mm3.abs().max(f64::MIN_POSITIVE);
    let shells = if after.shells == before.shells {
        format!("{} shells kept", after.shells)
    } else {
        format!("shells {} -> {}", before.shells, after.shells)
    };
    let text = format!(
        "{how}: {n} -> {} triangles, max error {error:.3} mm, volume change {dv:+.3} %, {shells}, \
         re-checked watertight",
        reduced.triangles.len()
    );
    (reduced, text)
}

/// Removes pairs of triangles on the same three vertices with opposite winding; returns the number of
/// pairs removed.
pub fn remove_flaps(triangles: &mut Vec<[u32; 3]>) -> usize {
    // Canonical form: rotate the smallest index first; the winding is whether the rest ascend.
    let mut keyed: Vec<([u32; 3], bool, usize)> = triangles
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let r = if t[0] <= t[1] && t[0] <= t[2] {
                *t
            } else if t[1] <= t[2] {
                [t[1], t[2], t[0]]
            } else {
                [t[2], t[0], t[1]]
            };
            let ccw = r[1] < r[2];
            ([r[0], r[1].min(r[2]), r[1].max(r[2])], ccw, n)
        })
        .collect();
    keyed.sort_unstable();
    let mut drop = vec![false; triangles.len()];
    let mut pairs = 0;
    let mut s = 0;
    while s < keyed.len() {
        let mut e = s;
        while e < keyed.len() && keyed[e].0 == keyed[s].0 {
            e += 1;
        }
        // Sorted by winding within the group: false (cw) entries first, then true (ccw).
        let group = &keyed[s..e];
        let cw = group.iter().filter(|g| !g.1).count();
        let ccw = group.len() - cw;
        for p in 0..cw.min(ccw) {
            drop[group[p].2] = true;
            drop[group[cw + p].2] = true;
            pairs += 1;
        }
        s = e;
    }
    if pairs > 0 {
        let mut n = 0;
        triangles.retain(|_| {
            n += 1;
            !drop[n - 1]
        });
    }
    pairs
}

/// Drops vertices that no triangle uses and renumbers the triangles, keeping the vertex order.
pub fn remove_unused_vertices(mesh: &mut Mesh) {
    let nv = mesh.vertices.len();
    let mut new_id = vec![u32::MAX; nv];
    for t in &mesh.triangles {
        for &v in t {
            if let Some(slot) = new_id.get_mut(v as usize) {
                *slot = 0;
            }
        }
    }
    let mut next = 0u32;
    let mut kept = Vec::with_capacity(nv);
    for (v, id) in new_id.iter_mut().enumerate() {
        if *id == 0 {
            *id = next;
            next += 1;
            kept.push(mesh.vertices[v]);
        }
    }
    if kept.len() == nv {
        return;
    }
    for t in &mut mesh.triangles {
        for v in t.iter_mut() {
            if let Some(&id) = new_id.get(*v as usize) {
                *v = id;
            }
        }
    }
    mesh.vertices = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_vertices_are_removed_and_triangles_renumbered() {
        let mut m = Mesh {
            vertices: vec![[0.0; 3], [1.0, 0.0, 0.0], [9.0; 3], [0.0, 1.0, 0.0]],
            triangles: vec![[0, 1, 3]],
        };
        remove_unused_vertices(&mut m);
        assert_eq!(m.vertices, vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        assert_eq!(m.triangles, vec![[0, 1, 2]]);
    }

    #[test]
    fn opposite_coincident_triangles_are_removed_in_pairs() {
        // [5, 6, 7] and its rotation [6, 7, 5] wind one way, [5, 7, 6] the other: one pair goes.
        let mut t = vec![[0, 1, 2], [5, 6, 7], [5, 7, 6], [6, 7, 5], [1, 2, 3]];
        assert_eq!(remove_flaps(&mut t), 1);
        assert_eq!(t.len(), 3);
        assert!(t.contains(&[0, 1, 2]) && t.contains(&[1, 2, 3]) && !t.contains(&[5, 7, 6]));
        let mut same = vec![[0, 1, 2], [1, 2, 0]];
        assert_eq!(remove_flaps(&mut same), 0);
    }
}
