//! Exact voxel-to-patient geometry of an assembled series (DICOM PS3.3 C.7.6.2.1.1).
//!
//! A series is a stack of slices that share ImageOrientationPatient (IOP) and PixelSpacing but each
//! has its own ImagePositionPatient (IPP). Gantry tilt (IPP not along the slice normal: a sheared
//! grid) and variable slice spacing are therefore represented exactly: voxel `(k, j, i)` lies at
//! `IPP[k] + i * Δi * row_dir + j * Δj * col_dir`, and a fractional `k` interpolates linearly between
//! the IPPs of the two neighbouring slices (the straight segment between two voxel centres).

use serde::Serialize;

/// Geometry of a volume `[k, j, i]`, all lengths in mm, all positions in DICOM LPS.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Geometry {
    /// ImagePositionPatient (centre of the first transmitted voxel) of each slice `k`, LPS mm,
    /// sorted by ascending projection on [`Geometry::normal`].
    pub ipp: Vec<[f64; 3]>,
    /// ImageOrientationPatient: direction cosines of the row (`i` increases) then of the column
    /// (`j` increases), PS3.3 C.7.6.2.1.1.
    pub iop: [f64; 6],
    /// PixelSpacing in DICOM order: `[Δj, Δi]` = [spacing between rows, spacing between columns], mm.
    pub pixel_spacing: [f64; 2],
    /// Rows (`j` extent) and Columns (`i` extent).
    pub rows: usize,
    /// Columns (`i` extent).
    pub cols: usize,
}

impl Geometry {
    /// Unit test grid: `n` axial slices of `n x n` voxels, 1 mm everywhere, origin at 0.
    #[cfg(test)]
    pub(crate) fn unit_cube(n: usize) -> Geometry {
        Geometry {
            ipp: (0..n).map(|k| [0.0, 0.0, k as f64]).collect(),
            iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [1.0, 1.0],
            rows: n,
            cols: n,
        }
    }

    /// Direction of increasing column index `i` (IOP[0..3]).
    pub fn row_dir(&self) -> [f64; 3] {
        [self.iop[0], self.iop[1], self.iop[2]]
    }

    /// Direction of increasing row index `j` (IOP[3..6]).
    pub fn col_dir(&self) -> [f64; 3] {
        [self.iop[3], self.iop[4], self.iop[5]]
    }

    /// Slice normal `row_dir × col_dir` (unit length for valid IOP).
    pub fn normal(&self) -> [f64; 3] {
        cross(self.row_dir(), self.col_dir())
    }

    /// Number of slices.
    pub fn slices(&self) -> usize {
        self.ipp.len()
    }

    /// `[k, j, i]` extents.
    pub fn dims(&self) -> [usize; 3] {
        [self.ipp.len(), self.rows, self.cols]
    }

    /// LPS position (mm) of the fractional voxel index `(k, j, i)`.
    ///
    /// `k` is interpolated linearly between the IPPs of slices `floor(k)` and `floor(k) + 1`, and
    /// extrapolated from the nearest pair outside `[0, slices - 1]`; with a single slice the normal
    /// and [`Geometry::nominal_slice_spacing`] are used.
    pub fn voxel_to_lps(&self, k: f64, j: f64, i: f64) -> [f64; 3] {
        let origin = self.interpolated_ipp(k);
        let r = self.row_dir();
        let c = self.col_dir();
        let (di, dj) = (self.pixel_spacing[1], self.pixel_spacing[0]);
        [
            origin[0] + i * di * r[0] + j * dj * c[0],
            origin[1] + i * di * r[1] + j * dj * c[1],
            origin[2] + i * di * r[2] + j * dj * c[2],
        ]
    }

    /// IPP at fractional slice index `k` (see [`Geometry::voxel_to_lps`]).
    pub fn interpolated_ipp(&self, k: f64) -> [f64; 3] {
        let n = self.ipp.len();
        if n == 0 {
            return [0.0; 3];
        }
        if n == 1 {
            let nrm = self.normal();
            let s = self.nominal_slice_spacing() * k;
            let p = self.ipp[0];
            return [p[0] + s * nrm[0], p[1] + s * nrm[1], p[2] + s * nrm[2]];
        }
        let k0 = (k.floor().max(0.0) as usize).min(n - 2);
        let t = k - k0 as f64;
        let a = self.ipp[k0];
        let b = self.ipp[k0 + 1];
        [
            a[0] + t * (b[0] - a[0]),
            a[1] + t * (b[1] - a[1]),
            a[2] + t * (b[2] - a[2]),
        ]
    }

    /// Position of each slice along the normal, mm: `dot(IPP, normal)` (PS3.3 C.7.6.2.1.1); one per
    /// slice, in the volume's `k` order.
    pub fn slice_positions_mm(&self) -> Vec<f64> {
        let nrm = self.normal();
        self.ipp.iter().map(|&p| dot(p, nrm)).collect()
    }

    /// Distances (mm) between consecutive slices along the normal; length `slices - 1`.
    pub fn slice_spacings(&self) -> Vec<f64> {
        let nrm = self.normal();
        self.ipp
            .windows(2)
            .map(|w| dot(sub(w[1], w[0]), nrm))
            .collect()
    }

    /// Median slice spacing along the normal (mm); 1.0 for a single slice.
    pub fn nominal_slice_spacing(&self) -> f64 {
        let mut s = self.slice_spacings();
        if s.is_empty() {
            return 1.0;
        }
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }

    /// Gantry tilt in degrees: angle between the slice normal and the line through the first and the
    /// last IPP (0 for an orthogonal stack; positive whatever the direction of the shear).
    pub fn tilt_deg(&self) -> f64 {
        if self.ipp.len() < 2 {
            return 0.0;
        }
        let d = sub(self.ipp[self.ipp.len() - 1], self.ipp[0]);
        let len = norm(d);
        if len == 0.0 {
            return 0.0;
        }
        (dot(d, self.normal()) / len)
            .clamp(-1.0, 1.0)
            .acos()
            .to_degrees()
    }

    /// Thickness (mm) of the slab each slice represents: half the distance to the previous plus half
    /// the distance to the next slice (the one neighbour's distance at the ends); exact for variable
    /// spacing. Length `slices`.
    pub fn slab_thicknesses(&self) -> Vec<f64> {
        let s = self.slice_spacings();
        let n = self.ipp.len();
        if s.is_empty() {
            return vec![self.nominal_slice_spacing(); n];
        }
        (0..n)
            .map(|k| match (k.checked_sub(1).map(|p| s[p]), s.get(k)) {
                (Some(a), Some(b)) => (a + b) / 2.0,
                (Some(a), None) => a,
                (None, Some(b)) => *b,
                (None, None) => 1.0,
            })
            .collect()
    }

    /// Volume (mL) of `counts[k]` voxels in each slice `k`, with [`Geometry::slab_thicknesses`].
    pub fn volume_ml(&self, counts: &[u64]) -> f64 {
        let area = self.pixel_spacing[0] * self.pixel_spacing[1];
        self.slab_thicknesses()
            .iter()
            .zip(counts)
            .map(|(t, &c)| c as f64 * area * t)
            .sum::<f64>()
            / 1000.0
    }
}

/// Cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Dot product.
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// `a - b`.
pub fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Euclidean length.
pub fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// The point `a + t (b - a)` of the segment from `a` to `b` (mm; `t` in `[0, 1]` stays on it).
pub fn lerp(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [0, 1, 2].map(|x| a[x] + t * (b[x] - a[x]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tilted() -> Geometry {
        // 3 slices, spacing 2 then 3 mm along z, sheared by 1 mm in y per slice.
        Geometry {
            ipp: vec![[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 2.5, 5.0]],
            iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.25],
            rows: 4,
            cols: 8,
        }
    }

    #[test]
    fn voxel_to_lps_uses_each_slice_ipp_and_dicom_spacing_order() {
        let g = tilted();
        assert_eq!(g.voxel_to_lps(2.0, 2.0, 4.0), [1.0, 3.5, 5.0]);
        assert_eq!(g.voxel_to_lps(1.5, 0.0, 0.0), [0.0, 1.75, 3.5]);
    }

    #[test]
    fn spacing_and_tilt() {
        let g = tilted();
        assert_eq!(g.slice_spacings(), vec![2.0, 3.0]);
        assert_eq!(g.slab_thicknesses(), vec![2.0, 2.5, 3.0]);
        assert!(
            (g.volume_ml(&[1000, 0, 2000])
                - (1000.0 * 0.125 * 2.0 + 2000.0 * 0.125 * 3.0) / 1000.0)
                .abs()
                < 1e-12
        );
        assert!((g.tilt_deg() - (2.5f64 / 5.0).atan().to_degrees()).abs() < 1e-12);
    }
}
