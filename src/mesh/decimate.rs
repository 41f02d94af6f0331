//! Decimation to a triangle budget with meshoptimizer's edge-collapse simplifier (quadric error,
//! topology-preserving; `meshopt_simplify`, A. Kapoulkine), followed by a topology re-check.
//!
//! The triangle list (in slab order from the marching tetrahedra, hence spatially sorted along `k`)
//! is cut into [`CHUNKS`] contiguous parts that are simplified in parallel, each to its share of the
//! budget, with their borders locked (`LockBorder`, meshoptimizer's documented way to simplify
//! independent chunks that stitch back without gaps) and an absolute error bound in mm; a chunk that
//! the bound stops above its share is redone without the bound and the error reached is reported.
//! The result must stay closed, manifold and consistently oriented. The simplifier does not check the
//! link condition and can fold a thin spot into a pair of coincident opposite triangles ("flap"):
//! such pairs are removed; if edges are still bad, their vertices and original one-rings are locked
//! and their chunks redone (up to [`RETRIES`] times); if anything is still wrong, the undecimated
//! mesh is kept and the reason reported. Folded triangles (normal against the original surface
//! normals at all three corners) are counted and reported, not repaired.

use meshopt::{SimplifyOptions, VertexDataAdapter};
use rayon::prelude::*;

use super::topology::{scan_edges, topology, Topology};
use super::Mesh;

/// Number of parts simplified in parallel (fixed, so the result does not depend on the core count).
pub const CHUNKS: usize = 8;
/// Rounds of lock-and-redo for chunks with topology problems.
pub const RETRIES: usize = 3;

/// Outcome of [`decimate`].
pub struct Decimated {
    /// The mesh to use (decimated, or the input when decimation was not needed or was rejected).
    pub mesh: Mesh,
    /// One line on what was done.
    pub description: String,
    /// Topology of `mesh` when the decimator computed it (saves the caller a second pass).
    pub topology: Option<Topology>,
}

/// Decimates `mesh` to at most `budget` triangles (see the module doc).
pub fn decimate(mesh: Mesh, budget: usize, max_error_mm: f32) -> Decimated {
    let n = mesh.triangles.len();
    if n <= budget {
        let description = format!("not needed ({n} triangles <= budget {budget})");
        return Decimated {
            mesh,
            description,
            topology: None,
        };
    }
    let adapter = match VertexDataAdapter::new(
        meshopt::typed_to_bytes(&mesh.vertices),
        std::mem::size_of::<[f32; 3]>(),
        0,
    ) {
        Ok(a) => a,
        Err(e) => {
            let description = format!("skipped: meshopt vertex adapter: {e}");
            return Decimated {
                mesh,
                description,
                topology: None,
            };
        }
    };
    let bound = if max_error_mm.is_finite() && max_error_mm > 0.0 {
        max_error_mm
    } else {
        f32::MAX
    };
    let normals = vertex_normals(&mesh);
    let parts: Vec<(std::ops::Range<usize>, usize)> = (0..CHUNKS)
        .map(|c| {
            let r = c * n / CHUNKS..(c + 1) * n / CHUNKS;
            let share = budget as u128 * (r.end - r.start) as u128 / n as u128;
            (r, share as usize)
        })
        .collect();
    let mut locks = vec![false; mesh.vertices.len()];
    let run = |c: usize, locks: &[bool]| -> (Vec<u32>, f32, bool) {
        let (range, share) = &parts[c];
        let idx: Vec<u32> = mesh.triangles[range.clone()]
            .iter()
            .flatten()
            .copied()
            .collect();
        let opts =
            SimplifyOptions::LockBorder | SimplifyOptions::ErrorAbsolute | SimplifyOptions::Sparse;
        let mut err = 0f32;
        let target = share * 3;
        let out = meshopt::simplify_with_locks(
            &idx,
            &adapter,
            locks,
            target,
            bound,
            opts,
            Some(&mut err),
        );
        if out.len() <= target || bound == f32::MAX {
            return (out, err, false);
        }
        let out = meshopt::simplify_with_locks(
            &idx,
            &adapter,
            locks,
            target,
            f32::MAX,
            opts,
            Some(&mut err),
        );
        (out, err, true)
    };
    let mut results: Vec<(Vec<u32>, f32, bool)> = (0..CHUNKS)
        .into_par_iter()
        .map(|c| run(c, &locks))
        .collect();
    let mut notes = Vec::new();
    let folded_before = folded(&mesh, &normals);
    let mut round = 0;
    let (mut reduced, topo) = loop {
        let mut reduced = Mesh {
            vertices: mesh.vertices.clone(),
            triangles: results
                .iter()
                .flat_map(|(out, _, _)| out.chunks_exact(3).map(|t| [t[0], t[1], t[2]]))
                .collect(),
        };
        let mut topo = topology(&reduced);
        if !topo.is_watertight() {
            let flaps = remove_flaps(&mut reduced.triangles);
            if flaps > 0 {
                topo = topology(&reduced);
                notes.push(format!("{flaps} flap pair(s) removed"));
            }
        }
        if topo.is_watertight() || round == RETRIES {
            break (reduced, topo);
        }
        // Lock the ends of the bad edges and their original one-rings, redo their chunks.
        round += 1;
        let mut bad = Vec::new();
        scan_edges(&reduced, |_, e| bad.extend_from_slice(&e));
        for &v in &bad {
            locks[v as usize] = true;
        }
        for t in &mesh.triangles {
            if t.iter().any(|&v| bad.contains(&v)) {
                t.iter().for_each(|&v| locks[v as usize] = true);
            }
        }
        let redo: Vec<usize> = (0..CHUNKS)
            .filter(|&c| results[c].0.iter().any(|&v| locks[v as usize]))
            .collect();
        notes.push(format!(
            "retry {round}: {} bad edges, their vertices locked, {} chunk(s) redone",
            bad.len() / 2,
            redo.len()
        ));
        let redone: Vec<(usize, (Vec<u32>, f32, bool))> =
            redo.par_iter().map(|&c| (c, run(c, &locks))).collect();
        for (c, r) in redone {
            results[c] = r;
        }
    };
    let folds = folded(&reduced, &normals);
    notes.push(format!(
        "{} folded triangles (normal against the surface; {} before decimation)",
        folds, folded_before
    ));
    let max_err = results.iter().map(|r| r.1).fold(0f32, f32::max);
    let unbounded = results.iter().filter(|r| r.2).count();
    let mut how =
        format!("meshopt simplify in {CHUNKS} locked-border chunks, error bound {bound} mm");
    if unbounded > 0 {
        how.push_str(&format!(
            " ({unbounded} chunk(s) redone without the bound to meet the budget)"
        ));
    }
    for note in &notes {
        how.push_str("; ");
        how.push_str(note);
    }
    let problem = if !topo.is_watertight() {
        Some(format!(
            "{} boundary, {} non-manifold, {} misoriented edges, {} degenerate triangles",
            topo.boundary_edges,
            topo.non_manifold_edges,
            topo.misoriented_edges,
            topo.degenerate_triangles
        ))
    } else if topo.signed_volume_mm3 <= 0.0 {
        Some(format!("signed volume {} mm^3", topo.signed_volume_mm3))
    } else {
        None
    };
    if let Some(p) = problem {
        tracing::warn!("decimation result rejected ({p}); keeping the undecimated mesh");
        let description = format!("fell back to undecimated mesh ({n} triangles): {how} gave {p}");
        return Decimated {
            mesh,
            description,
            topology: None,
        };
    }
    let before = super::topology::signed_volume(&mesh);
    let dv = 100.0 * (topo.signed_volume_mm3 - before) / before.abs().max(f64::MIN_POSITIVE);
    let description = format!(
        "{how}: {n} -> {} triangles, max error {max_err:.3} mm, volume change {dv:+.3} %, {} shells, \
         re-checked watertight",
        reduced.triangles.len(),
        topo.shells
    );
    remove_unused_vertices(&mut reduced);
    Decimated {
        mesh: reduced,
        description,
        topology: Some(topo),
    }
}

/// Area-weighted vertex normals (not normalised).
fn vertex_normals(mesh: &Mesh) -> Vec<[f32; 3]> {
    let mut nrm = vec![[0f32; 3]; mesh.vertices.len()];
    for t in &mesh.triangles {
        let n = face_normal(mesh, t);
        for &v in t {
            if let Some(acc) = nrm.get_mut(v as usize) {
                for a in 0..3 {
                    acc[a] += n[a];
                }
            }
        }
    }
    nrm
}

fn face_normal(mesh: &Mesh, t: &[u32; 3]) -> [f32; 3] {
    let p = |v: u32| mesh.vertices.get(v as usize).copied().unwrap_or([0.0; 3]);
    let (a, b, c) = (p(t[0]), p(t[1]), p(t[2]));
    let (u, w) = (
        [b[0] - a[0], b[1] - a[1], b[2] - a[2]],
        [c[0] - a[0], c[1] - a[1], c[2] - a[2]],
    );
    [
        u[1] * w[2] - u[2] * w[1],
        u[2] * w[0] - u[0] * w[2],
        u[0] * w[1] - u[1] * w[0],
    ]
}

/// Number of triangles of `mesh` whose normal points against the original surface normal at all
/// three corners (`normals` from the undecimated mesh).
fn folded(mesh: &Mesh, normals: &[[f32; 3]]) -> usize {
    mesh.triangles
        .par_iter()
        .filter(|t| {
            let n = face_normal(mesh, t);
            t.iter().all(|&v| {
                let m = normals.get(v as usize).copied().unwrap_or([0.0; 3]);
                n[0] * m[0] + n[1] * m[1] + n[2] * m[2] < 0.0
            })
        })
        .count()
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
