//! Per-slice regions of interest: the head's bounding box for inference, the bone's for training.

use ndarray::ArrayView2;

/// A rectangle of a slice, half-open: rows `j0..j1`, columns `i0..i1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roi {
    /// First row.
    pub j0: usize,
    /// One past the last row.
    pub j1: usize,
    /// First column.
    pub i0: usize,
    /// One past the last column.
    pub i1: usize,
}

impl Roi {
    /// The whole `rows x cols` slice.
    pub fn full(rows: usize, cols: usize) -> Roi {
        Roi {
            j0: 0,
            j1: rows,
            i0: 0,
            i1: cols,
        }
    }

    /// Smallest rectangle holding both.
    pub fn union(self, o: Roi) -> Roi {
        Roi {
            j0: self.j0.min(o.j0),
            j1: self.j1.max(o.j1),
            i0: self.i0.min(o.i0),
            i1: self.i1.max(o.i1),
        }
    }

    /// Voxels inside.
    pub fn area(&self) -> usize {
        (self.j1 - self.j0) * (self.i1 - self.i0)
    }
}

/// The head's bounding box in `slice` (`[j, i]`): rows and columns holding at least 3 voxels above
/// `level` (grey value half-way between air and tissue, so isolated noise does not count), dilated
/// by `margin` voxels; `None` when no row qualifies.
pub fn slice_roi(slice: ArrayView2<f32>, level: f32, margin: usize) -> Option<Roi> {
    let (rows, cols) = slice.dim();
    let mut row_n = vec![0u32; rows];
    let mut col_n = vec![0u32; cols];
    for ((j, i), &v) in slice.indexed_iter() {
        if v > level {
            row_n[j] += 1;
            col_n[i] += 1;
        }
    }
    let span = |n: &[u32]| {
        let a = n.iter().position(|&c| c >= 3)?;
        let b = n.iter().rposition(|&c| c >= 3)?;
        Some((a, b + 1))
    };
    let (j0, j1) = span(&row_n)?;
    let (i0, i1) = span(&col_n)?;
    Some(Roi {
        j0: j0.saturating_sub(margin),
        j1: (j1 + margin).min(rows),
        i0: i0.saturating_sub(margin),
        i1: (i1 + margin).min(cols),
    })
}

/// The rectangle enclosing the bone (`label != 0`) of one slice `[j, i]`, dilated by `margin`
/// voxels (the paper's per-slice region of interest, Minnema et al. 2018, §2.2); `None` without bone.
pub fn bone_roi(label: ArrayView2<u8>, margin: usize) -> Option<Roi> {
    let (rows, cols) = label.dim();
    let (mut j0, mut j1, mut i0, mut i1) = (usize::MAX, 0, usize::MAX, 0);
    for ((j, i), &v) in label.indexed_iter() {
        if v != 0 {
            j0 = j0.min(j);
            j1 = j1.max(j + 1);
            i0 = i0.min(i);
            i1 = i1.max(i + 1);
        }
    }
    (j1 > 0).then(|| Roi {
        j0: j0.saturating_sub(margin),
        j1: (j1 + margin).min(rows),
        i0: i0.saturating_sub(margin),
        i1: (i1 + margin).min(cols),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn head_box_ignores_isolated_noise_and_is_dilated() {
        let mut s = Array2::from_elem((40, 50), -1000.0f32);
        for j in 10..20 {
            for i in 5..30 {
                s[[j, i]] = 40.0;
            }
        }
        s[[35, 45]] = 500.0; // one noisy voxel
        let r = slice_roi(s.view(), -480.0, 2).unwrap();
        assert_eq!(
            r,
            Roi {
                j0: 8,
                j1: 22,
                i0: 3,
                i1: 32
            }
        );
        assert_eq!(r.area(), 14 * 29);
        assert!(slice_roi(Array2::from_elem((4, 4), -1000.0f32).view(), -480.0, 2).is_none());
    }

    #[test]
    fn bone_box_is_clipped_to_the_slice() {
        let mut l = Array2::<u8>::zeros((10, 10));
        l[[0, 9]] = 1;
        l[[3, 4]] = 1;
        assert_eq!(
            bone_roi(l.view(), 2).unwrap(),
            Roi {
                j0: 0,
                j1: 6,
                i0: 2,
                i1: 10
            }
        );
        assert!(bone_roi(Array2::<u8>::zeros((3, 3)).view(), 1).is_none());
    }
}
