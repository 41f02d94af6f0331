//! 3-D connected components of a binary [`Mask`] by run-length union-find.
//!
//! Foreground runs along `i` are the nodes; runs in neighbouring rows are joined when their voxels are
//! neighbours under the chosen [`Connectivity`]. Memory is proportional to the number of runs, not
//! voxels, so a 512x512x300 volume needs a few MB beside the mask.

use super::Mask;

/// Voxel neighbourhood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Connectivity {
    /// Face neighbours only.
    Six,
    /// Face neighbours plus the diagonals of the Kuhn (Freudenthal) tetrahedralisation used by the
    /// mesher: offsets ±(0,1,1), ±(1,0,1), ±(1,1,0), ±(1,1,1) in `(k, j, i)`. A component under this
    /// connectivity is exactly one connected solid of the marching-tetrahedra surface.
    Kuhn14,
    /// Face, edge and corner neighbours.
    TwentySix,
}

#[derive(Clone, Copy)]
struct Run {
    k: u32,
    j: u32,
    start: u32,
    end: u32,
}

/// Result of labelling: per component its voxel count, and each run's component.
pub struct Components {
    runs: Vec<Run>,
    label: Vec<u32>,
    /// Voxel count of each component, indexed by label.
    pub sizes: Vec<u64>,
}

impl Components {
    /// Number of components.
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// Label of the largest component (ties: the first found in `[k, j, i]` order).
    pub fn largest(&self) -> Option<u32> {
        let mut best: Option<(u32, u64)> = None;
        for (l, &s) in self.sizes.iter().enumerate() {
            if best.is_none_or(|(_, bs)| s > bs) {
                best = Some((l as u32, s));
            }
        }
        best.map(|(l, _)| l)
    }

    /// Mask of the given component, same shape as `like`.
    pub fn mask_of(&self, label: u32, like: &Mask) -> Mask {
        self.mask_where(|l| l == label, like)
    }

    /// Per component (indexed by label; `0.0` for those `which` skips or without probes outside
    /// the mask): the fraction of its probes whose value in `grey` (same shape as `mask`, the mask
    /// that was labelled) is below `level`. The probes of a voxel `(k, j, i)` are the six points
    /// `reach = [dk, dj, di]` voxels away along each axis; those inside the mask or off the volume do
    /// not count. With `level` half-way between air and soft tissue and a reach of a few mm (beyond
    /// the blurred edge of a thin object) this tells a bone inside the body, surrounded by soft
    /// tissue, from an object in air such as the table or a head holder.
    pub fn exterior_fraction_below(
        &self,
        mask: &Mask,
        grey: ndarray::ArrayView3<f32>,
        level: f32,
        reach: [usize; 3],
        which: impl Fn(u32) -> bool,
    ) -> Vec<f64> {
        let dims = mask.dim();
        let (n, [dk, dj, di]) = ([dims.0, dims.1, dims.2], reach.map(|d| d.max(1)));
        let mut below = vec![0u64; self.count()];
        let mut total = vec![0u64; self.count()];
        for (r, &l) in self.runs.iter().zip(&self.label) {
            if !which(l) {
                continue;
            }
            let (l, k, j) = (l as usize, r.k as usize, r.j as usize);
            for i in r.start as usize..r.end as usize {
                let probes = [
                    k.checked_sub(dk).map(|k| [k, j, i]),
                    (k + dk < n[0]).then_some([k + dk, j, i]),
                    j.checked_sub(dj).map(|j| [k, j, i]),
                    (j + dj < n[1]).then_some([k, j + dj, i]),
                    i.checked_sub(di).map(|i| [k, j, i]),
                    (i + di < n[2]).then_some([k, j, i + di]),
                ];
                for p in probes.into_iter().flatten() {
                    if mask[p] == 0 {
                        total[l] += 1;
                        below[l] += u64::from(grey[p] < level);
                    }
                }
            }
        }
        below
            .iter()
            .zip(&total)
            .map(|(&b, &t)| if t == 0 { 0.0 } else { b as f64 / t as f64 })
            .collect()
    }

    /// The voxels `[k, j, i]` of component `label`, run by run.
    pub fn voxels(&self, label: u32) -> impl Iterator<Item = [usize; 3]> + '_ {
        self.runs
            .iter()
            .zip(&self.label)
            .filter(move |(_, &l)| l == label)
            .flat_map(|(r, _)| {
                (r.start as usize..r.end as usize).map(move |i| [r.k as usize, r.j as usize, i])
            })
    }

    /// Mask of every component whose label passes `keep`, same shape as `like`.
    pub fn mask_where(&self, keep: impl Fn(u32) -> bool, like: &Mask) -> Mask {
        let mut out = Mask::zeros(like.raw_dim());
        for (r, &l) in self.runs.iter().zip(&self.label) {
            if keep(l) {
                let mut row = out.slice_mut(ndarray::s![r.k as usize, r.j as usize, ..]);
                for i in r.start..r.end {
                    row[i as usize] = 1;
                }
            }
        }
        out
    }
}

/// Labels the foreground (non-zero) voxels of `mask`.
pub fn label(mask: &Mask, conn: Connectivity) -> Components {
    let (nk, nj, _) = mask.dim();
    // Runs in row-major order; `row_start[k * nj + j]` indexes the first run of each row.
    let mut runs = Vec::new();
    let mut row_start = vec![0u32; nk * nj + 1];
    for k in 0..nk {
        for j in 0..nj {
            row_start[k * nj + j] = runs.len() as u32;
            let row = mask.slice(ndarray::s![k, j, ..]);
            let push = |runs: &mut Vec<Run>, s: usize, e: usize| {
                runs.push(Run {
                    k: k as u32,
                    j: j as u32,
                    start: s as u32,
                    end: e as u32,
                })
            };
            match row.as_slice() {
                Some(row) => for_each_run(row, |s, e| push(&mut runs, s, e)),
                None => for_each_run(&row.to_vec(), |s, e| push(&mut runs, s, e)),
            }
        }
    }
    row_start[nk * nj] = runs.len() as u32;

    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    // Backward neighbour rows (dk, dj) and the i-offsets allowed there, per connectivity.
    // A run [s, e) touches a neighbour run [s', e') if some i in [s, e) and di in [lo, hi] give
    // i + di in [s', e'), i.e. s' < e + hi and s + lo < e'.
    let neigh: &[(i64, i64, i64, i64)] = match conn {
        Connectivity::Six => &[(0, -1, 0, 0), (-1, 0, 0, 0)],
        Connectivity::Kuhn14 => &[(0, -1, -1, 0), (-1, 0, -1, 0), (-1, -1, -1, 0)],
        Connectivity::TwentySix => &[
            (0, -1, -1, 1),
            (-1, -1, -1, 1),
            (-1, 0, -1, 1),
            (-1, 1, -1, 1),
        ],
    };
    for (idx, r) in runs.iter().enumerate() {
        for &(dk, dj, lo, hi) in neigh {
            let (k, j) = (r.k as i64 + dk, r.j as i64 + dj);
            if k < 0 || j < 0 || j >= nj as i64 {
                continue;
            }
            let row = k as usize * nj + j as usize;
            let (a, b) = (row_start[row] as usize, row_start[row + 1] as usize);
            for (n, other) in runs[a..b].iter().enumerate() {
                let (s, e) = (r.start as i64, r.end as i64);
                if (other.start as i64) < e + hi && s + lo < other.end as i64 {
                    union(&mut parent, idx as u32, (a + n) as u32);
                }
            }
        }
    }
    let mut label = vec![0u32; runs.len()];
    let mut root_label = vec![u32::MAX; runs.len()];
    let mut sizes = Vec::new();
    for idx in 0..runs.len() {
        let root = find(&mut parent, idx as u32) as usize;
        if root_label[root] == u32::MAX {
            root_label[root] = sizes.len() as u32;
            sizes.push(0u64);
        }
        let l = root_label[root];
        label[idx] = l;
        sizes[l as usize] += (runs[idx].end - runs[idx].start) as u64;
    }
    Components { runs, label, sizes }
}

/// Calls `f(start, end)` for each maximal run of non-zero bytes `row[start..end]`, left to right.
/// Skips zeros 32 bytes at a time (most of a head CT row is background).
pub(crate) fn for_each_run(row: &[u8], mut f: impl FnMut(usize, usize)) {
    const STEP: usize = 32;
    let n = row.len();
    let mut i = 0;
    while i < n {
        while i + STEP <= n && row[i..i + STEP].iter().fold(0u8, |a, &b| a | b) == 0 {
            i += STEP;
        }
        match row[i..].iter().position(|&b| b != 0) {
            None => return,
            Some(d) => {
                let s = i + d;
                let e = row[s..].iter().position(|&b| b == 0).map_or(n, |d| s + d);
                f(s, e);
                i = e;
            }
        }
    }
}

/// The largest connected component of `mask` (all zeros when `mask` is empty), with the number of
/// components found.
pub fn largest_component(mask: &Mask, conn: Connectivity) -> (Mask, usize) {
    let comps = label(mask, conn);
    match comps.largest() {
        Some(l) => (comps.mask_of(l, mask), comps.count()),
        None => (Mask::zeros(mask.raw_dim()), 0),
    }
}

/// Root of `x` in a union-find forest (path halving); shared with the mesh topology check.
pub(crate) fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

/// Joins the sets of `a` and `b`; the smaller root index becomes the root (deterministic labels).
pub(crate) fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(points: &[(usize, usize, usize)]) -> Mask {
        let mut m = Mask::zeros((4, 4, 4));
        for &(k, j, i) in points {
            m[[k, j, i]] = 1;
        }
        m
    }

    #[test]
    fn runs_are_found_across_the_skip_steps() {
        let mut row = vec![0u8; 100];
        for i in [0, 31, 32, 33, 63, 64, 99] {
            row[i] = 1;
        }
        row[40..50].fill(2);
        let mut runs = Vec::new();
        for_each_run(&row, |s, e| runs.push((s, e)));
        assert_eq!(
            runs,
            [(0, 1), (31, 34), (40, 50), (63, 65), (99, 100)],
            "runs of a row with ones at the 32-byte step edges"
        );
        let mut none = Vec::new();
        for_each_run(&[0u8; 70], |s, e| none.push((s, e)));
        assert!(none.is_empty());
    }

    #[test]
    fn connectivities_differ_on_diagonals() {
        // Two voxels touching along the (1,1,0) edge: joined by Kuhn14 and 26, not by 6.
        let m = mask_with(&[(1, 1, 1), (2, 2, 1)]);
        assert_eq!(label(&m, Connectivity::Six).count(), 2);
        assert_eq!(label(&m, Connectivity::Kuhn14).count(), 1);
        assert_eq!(label(&m, Connectivity::TwentySix).count(), 1);
        // Touching along (1,-1,0): not a Kuhn diagonal.
        let m = mask_with(&[(1, 2, 1), (2, 1, 1)]);
        assert_eq!(label(&m, Connectivity::Kuhn14).count(), 2);
        assert_eq!(label(&m, Connectivity::TwentySix).count(), 1);
        // Corner (1,1,1) is Kuhn; (1,1,-1) is not.
        let m = mask_with(&[(1, 1, 1), (2, 2, 2)]);
        assert_eq!(label(&m, Connectivity::Kuhn14).count(), 1);
        let m = mask_with(&[(1, 1, 2), (2, 2, 1)]);
        assert_eq!(label(&m, Connectivity::Kuhn14).count(), 2);
        assert_eq!(label(&m, Connectivity::TwentySix).count(), 1);
    }

    #[test]
    fn largest_component_keeps_the_biggest_blob() {
        let mut m = Mask::zeros((5, 6, 7));
        m.slice_mut(ndarray::s![0..3, 0..3, 0..3]).fill(1); // 27 voxels
        m.slice_mut(ndarray::s![4, 4..6, 5..7]).fill(1); // 4 voxels
        let (big, n) = largest_component(&m, Connectivity::TwentySix);
        assert_eq!(n, 2);
        assert_eq!(big.iter().filter(|&&v| v == 1).count(), 27);
        assert_eq!(big[[4, 4, 5]], 0);
    }
}
