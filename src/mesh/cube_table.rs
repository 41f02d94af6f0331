//! The per-cube triangle table of the iso-surface: the Kuhn marching-tetrahedra surface with its
//! face-diagonal and body-diagonal vertices removed.
//!
//! Marching tetrahedra on the Kuhn decomposition ([`kuhn_triangles`]) give a closed, oriented
//! 2-manifold with no ambiguous case, but about four times the triangles of marching cubes: a cube
//! cut by a flat surface holds 8 triangles and 4 vertices per cube instead of 2 and 1, because every
//! crossed face and body diagonal carries a vertex. Those extra vertices only subdivide polygons that
//! the axis-edge vertices already span, so [`cube_table`] removes them, cube by cube:
//!
//! * Each connected piece of the Kuhn surface inside a cube is a disk (one boundary cycle) or, when the
//!   body diagonal `(0,0,0)-(1,1,1)` joins two equal corners through the cube, an annulus (two
//!   cycles). Its boundary lies on the cube's faces; on a face, a face-diagonal vertex is always the
//!   middle of a two-segment chain between two axis-edge vertices, so dropping it replaces the chain
//!   by one segment, the same in both cubes that share the face.
//! * The piece is replaced by the triangulation of its reduced boundary (all triangulations of the
//!   disk's polygon, all strips between the annulus's two cycles) of least area in index space among
//!   the valid ones: every boundary segment used once in its direction, every other edge used once
//!   each way, and no new edge joining two vertices on a common cube face (such an edge could be
//!   chosen by the neighbouring cube too, or lie flat in the face).
//!
//! The result keeps the topology of the Kuhn surface (same pieces, same connectivity: the `Kuhn14`
//! components of [`crate::segment::components`] still give one surface shell each), stays closed and
//! manifold (interior edges are unique to their cube, boundary segments are shared with exactly the
//! neighbour across the face, in opposite directions), and has the vertex set of discrete marching
//! cubes: the midpoints of the axis edges whose end points differ. This is the density that VTK's
//! discrete marching cubes feed to windowed-sinc smoothing (W. Schroeder et al., *The Visualization
//! Toolkit*, 4th ed., §9.4), without the ambiguous faces of the classic marching-cubes table.
//! Every configuration is checked by the unit tests below.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::dicom::geometry::{cross, dot, sub};

/// An edge reference `start_corner * 8 + direction` (corner and direction codes `4*k + 2*j + i`).
pub type EdgeRef = u8;

/// Triangles of each cube configuration (index = 8-bit corner code, bit `4*ck + 2*cj + ci` = the
/// mask at that corner), as edge references on the cube's axis edges only, wound counter-clockwise
/// seen from the 0 side in right-handed `(k, j, i)` index space.
pub fn cube_table() -> &'static [Vec<[EdgeRef; 3]>] {
    static TABLE: OnceLock<Vec<Vec<[EdgeRef; 3]>>> = OnceLock::new();
    TABLE.get_or_init(|| (0..256u32).map(|c| reduced_triangles(c as u8)).collect())
}

/// Position of corner code `c` in index space, `[k, j, i]`.
pub fn corner(c: u8) -> [f64; 3] {
    [((c >> 2) & 1) as f64, ((c >> 1) & 1) as f64, (c & 1) as f64]
}

/// Midpoint (index space) of the edge `e`.
fn midpoint(e: EdgeRef) -> [f64; 3] {
    let (p, q) = (corner(e >> 3), corner((e >> 3) | (e & 7)));
    [0, 1, 2].map(|x| (p[x] + q[x]) / 2.0)
}

/// `true` for an axis edge (direction 1, 2 or 4).
fn is_axis(e: EdgeRef) -> bool {
    matches!(e & 7, 1 | 2 | 4)
}

/// The two cube faces (as `(axis bit, value)`) that hold the axis edge `e`.
fn faces_of(e: EdgeRef) -> [(u8, u8); 2] {
    let (start, dir) = (e >> 3, e & 7);
    let mut out = [(0, 0); 2];
    let mut n = 0;
    for axis in [1u8, 2, 4] {
        if axis != dir && n < 2 {
            out[n] = (axis, start & axis);
            n += 1;
        }
    }
    out
}

/// `true` when the axis edges `a` and `b` lie on a common cube face (`false` when either is the
/// body diagonal, which runs through the cube).
fn share_face(a: EdgeRef, b: EdgeRef) -> bool {
    if !is_axis(a) || !is_axis(b) {
        return false;
    }
    let fb = faces_of(b);
    faces_of(a).iter().any(|f| fb.contains(f))
}

/// Marching tetrahedra of one cube on the Kuhn decomposition: for each order (a, b, c) of the three
/// axes the tetrahedron 0 → e_a → e_a + e_b → (1,1,1); vertices at edge midpoints (iso 0.5 of a 0/1
/// function); triangles wound counter-clockwise seen from the 0 side.
pub fn kuhn_triangles(code: u8) -> Vec<[EdgeRef; 3]> {
    const ORDERS: [[u8; 3]; 6] = [
        [4, 2, 1],
        [4, 1, 2],
        [2, 4, 1],
        [2, 1, 4],
        [1, 4, 2],
        [1, 2, 4],
    ];
    let mut out = Vec::new();
    for [a, b, _] in ORDERS {
        let tet = [0u8, a, a | b, 7];
        let inside: Vec<usize> = (0..4).filter(|&m| (code >> tet[m]) & 1 == 1).collect();
        let outside: Vec<usize> = (0..4).filter(|&m| (code >> tet[m]) & 1 == 0).collect();
        let polys: Vec<Vec<(usize, usize)>> = match (inside.len(), outside.len()) {
            (1, 3) => vec![outside.iter().map(|&o| (inside[0], o)).collect()],
            (3, 1) => vec![inside.iter().map(|&i| (i, outside[0])).collect()],
            (2, 2) => {
                let (i0, i1, o0, o1) = (inside[0], inside[1], outside[0], outside[1]);
                let q = [(i0, o0), (i0, o1), (i1, o1), (i1, o0)];
                vec![vec![q[0], q[1], q[2]], vec![q[0], q[2], q[3]]]
            }
            _ => vec![],
        };
        let centroid = |set: &[usize]| -> [f64; 3] {
            let mut c = [0.0; 3];
            for &m in set {
                let p = corner(tet[m]);
                for x in 0..3 {
                    c[x] += p[x] / set.len() as f64;
                }
            }
            c
        };
        let outward = sub(centroid(&outside), centroid(&inside));
        for poly in polys {
            let edge = |(m, n): (usize, usize)| -> EdgeRef {
                // In a Kuhn chain the lower position's corner is a subset of the higher one's.
                let (lo, hi) = if m < n {
                    (tet[m], tet[n])
                } else {
                    (tet[n], tet[m])
                };
                lo * 8 + (hi ^ lo)
            };
            let (e0, e1, e2) = (edge(poly[0]), edge(poly[1]), edge(poly[2]));
            let normal = cross(
                sub(midpoint(e1), midpoint(e0)),
                sub(midpoint(e2), midpoint(e0)),
            );
            out.push(if dot(normal, outward) > 0.0 {
                [e0, e1, e2]
            } else {
                [e0, e2, e1]
            });
        }
    }
    out
}

/// The boundary cycles of a consistently oriented triangle set (directed edges without their
/// reverse, chained); `None` if they do not chain into simple cycles.
fn boundary_cycles(tris: &[[EdgeRef; 3]]) -> Option<Vec<Vec<EdgeRef>>> {
    let directed: HashSet<(EdgeRef, EdgeRef)> = tris
        .iter()
        .flat_map(|t| [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])])
        .collect();
    let mut next: HashMap<EdgeRef, EdgeRef> = HashMap::new();
    for &(a, b) in &directed {
        if !directed.contains(&(b, a)) && next.insert(a, b).is_some() {
            return None;
        }
    }
    let mut starts: Vec<EdgeRef> = next.keys().copied().collect();
    starts.sort_unstable();
    let mut seen = HashSet::new();
    let mut cycles = Vec::new();
    for s in starts {
        if seen.contains(&s) {
            continue;
        }
        let mut cycle = vec![s];
        seen.insert(s);
        let mut v = *next.get(&s)?;
        while v != s {
            if !seen.insert(v) || cycle.len() > 64 {
                return None;
            }
            cycle.push(v);
            v = *next.get(&v)?;
        }
        cycles.push(cycle);
    }
    Some(cycles)
}

/// Checks a candidate triangulation of a piece whose reduced boundary is `cycles`: each boundary
/// segment used once in its direction and never reversed, each other edge used exactly once each
/// way and never between two vertices on a common face.
fn valid(tris: &[[EdgeRef; 3]], cycles: &[Vec<EdgeRef>]) -> bool {
    let mut used: HashMap<(EdgeRef, EdgeRef), u32> = HashMap::new();
    for t in tris {
        if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
            return false;
        }
        for e in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
            *used.entry(e).or_default() += 1;
        }
    }
    let boundary: HashSet<(EdgeRef, EdgeRef)> = cycles
        .iter()
        .flat_map(|c| (0..c.len()).map(move |n| (c[n], c[(n + 1) % c.len()])))
        .collect();
    if boundary.iter().any(|e| used.get(e) != Some(&1)) {
        return false;
    }
    used.iter().all(|(&(a, b), &n)| {
        if boundary.contains(&(a, b)) {
            !used.contains_key(&(b, a))
        } else {
            n == 1 && used.get(&(b, a)) == Some(&1) && !share_face(a, b)
        }
    })
}

/// Area (index space) of a triangle set.
fn area(tris: &[[EdgeRef; 3]]) -> f64 {
    tris.iter()
        .map(|t| {
            let (a, b, c) = (midpoint(t[0]), midpoint(t[1]), midpoint(t[2]));
            let n = cross(sub(b, a), sub(c, a));
            dot(n, n).sqrt() / 2.0
        })
        .sum()
}

/// All triangulations of the polygon `p` (vertices in cycle order), triangles in the polygon's
/// orientation.
fn polygon_triangulations(p: &[EdgeRef]) -> Vec<Vec<[EdgeRef; 3]>> {
    let n = p.len();
    if n < 3 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    // The edge p[0] -> p[n-1]... closes the polygon; its triangle is (p[0], p[m], p[n-1]).
    for m in 1..n - 1 {
        let left = polygon_triangulations(&p[..=m]);
        let right = polygon_triangulations(&p[m..]);
        for l in &left {
            for r in &right {
                let mut t = Vec::with_capacity(n - 2);
                t.push([p[0], p[m], p[n - 1]]);
                t.extend_from_slice(l);
                t.extend_from_slice(r);
                out.push(t);
            }
        }
    }
    out
}

/// All strip triangulations of the annulus between the cycles `a` and `b` (both oriented as its
/// boundary, so they run opposite ways across the strip).
fn strip_triangulations(a: &[EdgeRef], b: &[EdgeRef]) -> Vec<Vec<[EdgeRef; 3]>> {
    let (m, n) = (a.len(), b.len());
    let mut out = Vec::new();
    for (offset, backward) in (0..n).flat_map(|o| [(o, true), (o, false)]) {
        // Walk `a` forward from a[0] and `b` from b[offset] (the validity check keeps the walks
        // that run opposite ways across the strip); 0 = advance on a, 1 = on b.
        let bb = |t: usize| {
            if backward {
                b[(offset + n * 2 - t % n) % n]
            } else {
                b[(offset + t) % n]
            }
        };
        for moves in 0u32..(1 << (m + n)) {
            if moves.count_ones() as usize != n {
                continue;
            }
            let (mut i, mut j) = (0usize, 0usize);
            let mut tris = Vec::with_capacity(m + n);
            for s in 0..m + n {
                if (moves >> s) & 1 == 0 {
                    tris.push([a[i % m], a[(i + 1) % m], bb(j)]);
                    i += 1;
                } else {
                    tris.push([bb(j + 1), bb(j), a[i % m]]);
                    j += 1;
                }
            }
            out.push(tris);
        }
    }
    out
}

/// The reduced triangles of one configuration (see the module doc); falls back to the Kuhn
/// triangles of a piece whose boundary does not reduce to a disk or an annulus (no configuration
/// does; the unit tests check it).
fn reduced_triangles(code: u8) -> Vec<[EdgeRef; 3]> {
    let kuhn = kuhn_triangles(code);
    // Pieces: triangles joined by shared vertices (each vertex lies in one piece of the cube).
    let mut piece: Vec<usize> = (0..kuhn.len()).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        p[x] = r;
        r
    }
    for a in 0..kuhn.len() {
        for b in a + 1..kuhn.len() {
            if kuhn[a].iter().any(|v| kuhn[b].contains(v)) {
                let (ra, rb) = (find(&mut piece, a), find(&mut piece, b));
                piece[ra] = rb;
            }
        }
    }
    let mut roots: Vec<usize> = (0..kuhn.len()).map(|t| find(&mut piece, t)).collect();
    let members = roots.clone();
    roots.sort_unstable();
    roots.dedup();
    let mut out = Vec::new();
    for root in roots {
        let tris: Vec<[EdgeRef; 3]> = (0..kuhn.len())
            .filter(|&t| members[t] == root)
            .map(|t| kuhn[t])
            .collect();
        match reduce_piece(&tris) {
            Some(r) => out.extend(r),
            None => out.extend(tris),
        }
    }
    out
}

/// The least-area valid triangulation of one piece's reduced boundary, if any.
fn reduce_piece(tris: &[[EdgeRef; 3]]) -> Option<Vec<[EdgeRef; 3]>> {
    let cycles: Vec<Vec<EdgeRef>> = boundary_cycles(tris)?
        .into_iter()
        .map(|c| c.into_iter().filter(|&e| is_axis(e)).collect())
        .collect();
    let candidates = match cycles.as_slice() {
        [c] => polygon_triangulations(c),
        [c0, c1] => strip_triangulations(c0, c1),
        _ => return None,
    };
    let best = candidates
        .into_iter()
        .filter(|t| valid(t, &cycles))
        .min_by(|x, y| area(x).total_cmp(&area(y)));
    if best.is_some() {
        return best;
    }
    // A disk whose boundary winds around the cube (9 to 12 vertices on all six faces) has no
    // triangulation without a new edge along a face: keep the body-diagonal vertex, which the Kuhn
    // piece holds inside, and fan the reduced boundary around it.
    const BODY: EdgeRef = 7;
    match cycles.as_slice() {
        [c] if tris.iter().flatten().any(|&e| e == BODY) => {
            let fan: Vec<[EdgeRef; 3]> = (0..c.len())
                .map(|n| [c[n], c[(n + 1) % c.len()], BODY])
                .collect();
            valid(&fan, &cycles).then_some(fan)
        }
        _ => None,
    }
}

/// `true` when configuration `code` keeps its body-diagonal vertex (the disks that wind around the
/// cube; see the module doc).
pub fn uses_body_vertex(code: u8) -> bool {
    cube_table()[code as usize]
        .iter()
        .flatten()
        .any(|&e| e == 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_reduces_to_axis_edges_with_the_same_boundary() {
        let table = cube_table();
        assert!(table[0].is_empty() && table[255].is_empty());
        let mut kuhn_total = 0;
        let mut reduced_total = 0;
        let mut body = 0;
        for code in 0..=255u8 {
            let kuhn = kuhn_triangles(code);
            let reduced = &table[code as usize];
            // Every piece was reduced (no fallback): only axis edges remain, and the body diagonal
            // in the configurations that need it.
            for e in reduced.iter().flatten() {
                assert!(is_axis(*e) || *e == 7, "code {code}: edge {e}");
                let (sc, d) = (e >> 3, e & 7);
                assert!(sc & d == 0);
                assert_ne!((code >> sc) & 1, (code >> (sc | d)) & 1, "code {code}");
            }
            // The reduced boundary is the Kuhn boundary without its face-diagonal vertices.
            let reduce = |c: Vec<Vec<EdgeRef>>| -> HashSet<(EdgeRef, EdgeRef)> {
                c.into_iter()
                    .map(|c| c.into_iter().filter(|&e| is_axis(e)).collect::<Vec<_>>())
                    .flat_map(|c| (0..c.len()).map(move |n| (c[n], c[(n + 1) % c.len()])))
                    .collect()
            };
            if uses_body_vertex(code) {
                body += 1;
            }
            let want = reduce(boundary_cycles(&kuhn).unwrap());
            let got = reduce(boundary_cycles(reduced).unwrap());
            assert_eq!(want, got, "code {code}");
            kuhn_total += kuhn.len();
            reduced_total += reduced.len();
        }
        // Under half of the triangles over all 256 configurations (a quarter in the flat cases that
        // dominate a real surface), with the body vertex kept in 14 configurations.
        assert_eq!(
            (kuhn_total, reduced_total, body),
            (KUHN_TOTAL, REDUCED_TOTAL, 14)
        );
    }

    const KUHN_TOTAL: usize = 1920;
    const REDUCED_TOTAL: usize = 924;

    #[test]
    fn simple_configurations() {
        let table = cube_table();
        // One corner in: one triangle (Kuhn: 6 around (0,0,0), 2 around (0,0,1)).
        assert_eq!((kuhn_triangles(1).len(), table[1].len()), (6, 1));
        assert_eq!((kuhn_triangles(2).len(), table[2].len()), (2, 1));
        // The lower face in (k = 0): the square of the four k-edges, 2 triangles instead of 8.
        assert_eq!((kuhn_triangles(0x0f).len(), table[0x0f].len()), (8, 2));
        // Corners (0,0,0) and (1,1,1) in: the Kuhn tube along the body diagonal stays one piece,
        // an annulus of 6 triangles between the two corner triangles.
        let tube = &table[0x81];
        assert_eq!(tube.len(), 6);
        assert_eq!(boundary_cycles(tube).unwrap().len(), 2);
        // Corners (0,0,1) and (1,1,0) (no Kuhn edge between them): two separate corner triangles.
        assert_eq!(table[0x42].len(), 2);
        assert_eq!(boundary_cycles(&table[0x42]).unwrap().len(), 2);
    }
}
