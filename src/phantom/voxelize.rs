//! Samples the analytic head on a CT grid: the partial-volume HU image and the exact bone label.
//!
//! Every voxel centre is classified once (plus the mid-planes between slices when slices are
//! thicker than 0.7 mm, so thin horizontal plates between two slice centres are not lost). A voxel
//! whose class differs from a 6-neighbour's (or from an adjacent mid-plane) is a boundary voxel and
//! is supersampled over its box: its HU is the mean over the sub-samples (analytic partial volume).
//! Where bone status changes, `n x n x n` sub-samples are taken and the label is bone when at least
//! half of them are bone; other boundaries (skin, fat, holder...) get `2 x 2 x 2` for the image only.
//! Other voxels take the centre's material. Labels therefore come from the model, never from the simulated image.

use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;

use super::anatomy::{Head, Material};
use crate::dicom::geometry::Geometry;

/// Output of [`voxelize`]: all arrays `[k, j, i]` on the geometry's grid.
pub struct Voxelized {
    /// Partial-volume HU before any scanner effect.
    pub hu: Array3<f32>,
    /// Bone label (1 = bone occupancy >= 0.5).
    pub label: Array3<u8>,
    /// Material at each voxel centre (`Material as u8`).
    pub material: Array3<u8>,
    /// Number of supersampled (boundary) voxels.
    pub boundary_voxels: u64,
}

/// Materials differing by more than this (HU), or in bone status, make a boundary.
const BOUNDARY_HU: f32 = 40.0;

fn lps(g: &Geometry, k: f64, j: f64, i: f64) -> [f64; 3] {
    g.voxel_to_lps(k, j, i)
}

/// Classifies the plane at fractional slice index `k`.
fn classify_plane(head: &Head, g: &Geometry, k: f64) -> Array2<u8> {
    let mut out = Array2::<u8>::zeros((g.rows, g.cols));
    let origin = lps(g, k, 0.0, 0.0);
    let r = g.row_dir();
    let c = g.col_dir();
    let (di, dj) = (g.pixel_spacing[1], g.pixel_spacing[0]);
    for ((j, i), v) in out.indexed_iter_mut() {
        let (fi, fj) = (i as f64 * di, j as f64 * dj);
        let p = [
            origin[0] + fi * r[0] + fj * c[0],
            origin[1] + fi * r[1] + fj * c[1],
            origin[2] + fi * r[2] + fj * c[2],
        ];
        *v = head.material(p) as u8;
    }
    out
}

/// Samples `head` on `g` with `n x n x n` supersampling at boundaries (`n` >= 1).
pub fn voxelize(head: &Head, g: &Geometry, n: usize) -> Voxelized {
    let n = n.max(1);
    let [nk, nj, ni] = g.dims();
    let mats = Material::all();
    let base_hu: Vec<f32> = mats
        .iter()
        .map(|m| head.materials.hu[*m as usize])
        .collect();
    let bone: Vec<bool> = mats.iter().map(|m| m.is_bone()).collect();
    let differ = |a: u8, b: u8| {
        a != b
            && (bone[a as usize] != bone[b as usize]
                || (base_hu[a as usize] - base_hu[b as usize]).abs() > BOUNDARY_HU
                || a == Material::CancellousBone as u8
                || b == Material::CancellousBone as u8)
    };

    let planes: Vec<Array2<u8>> = (0..nk)
        .into_par_iter()
        .map(|k| classify_plane(head, g, k as f64))
        .collect();
    let mid_planes: Option<Vec<Array2<u8>>> =
        (g.nominal_slice_spacing() > 0.7 && nk > 1).then(|| {
            (0..nk - 1)
                .into_par_iter()
                .map(|k| classify_plane(head, g, k as f64 + 0.5))
                .collect()
        });

    let offsets: Vec<f64> = (0..n).map(|a| (a as f64 + 0.5) / n as f64 - 0.5).collect();
    let half = n * n * n;
    let offsets2: Vec<f64> = if n > 2 {
        vec![-0.25, 0.25]
    } else {
        offsets.clone()
    };
    let slices: Vec<(Array2<f32>, Array2<u8>, u64)> = (0..nk)
        .into_par_iter()
        .map(|k| {
            let mut hu = Array2::<f32>::zeros((nj, ni));
            let mut lab = Array2::<u8>::zeros((nj, ni));
            let mut boundary = 0u64;
            let cur = &planes[k];
            for j in 0..nj {
                for i in 0..ni {
                    let m = cur[[j, i]];
                    let mut edge = (i > 0 && differ(m, cur[[j, i - 1]]))
                        || (i + 1 < ni && differ(m, cur[[j, i + 1]]))
                        || (j > 0 && differ(m, cur[[j - 1, i]]))
                        || (j + 1 < nj && differ(m, cur[[j + 1, i]]))
                        || (k > 0 && differ(m, planes[k - 1][[j, i]]))
                        || (k + 1 < nk && differ(m, planes[k + 1][[j, i]]));
                    if let Some(mid) = &mid_planes {
                        edge = edge
                            || (k > 0 && differ(m, mid[k - 1][[j, i]]))
                            || (k + 1 < nk && differ(m, mid[k][[j, i]]));
                    }
                    if !edge {
                        let material = mats[m as usize];
                        hu[[j, i]] = if material == Material::CancellousBone {
                            head.hu(material, lps(g, k as f64, j as f64, i as f64))
                        } else {
                            base_hu[m as usize]
                        };
                        lab[[j, i]] = bone[m as usize] as u8;
                        continue;
                    }
                    boundary += 1;
                    // Bone-status boundaries get the full n^3 (the label depends on them); the
                    // others only shape the image and get 2^3.
                    let bone_edge = {
                        let b = bone[m as usize];
                        let nb = |o: u8| bone[o as usize] != b;
                        (i > 0 && nb(cur[[j, i - 1]]))
                            || (i + 1 < ni && nb(cur[[j, i + 1]]))
                            || (j > 0 && nb(cur[[j - 1, i]]))
                            || (j + 1 < nj && nb(cur[[j + 1, i]]))
                            || (k > 0 && nb(planes[k - 1][[j, i]]))
                            || (k + 1 < nk && nb(planes[k + 1][[j, i]]))
                            || mid_planes.as_ref().is_some_and(|mid| {
                                (k > 0 && nb(mid[k - 1][[j, i]]))
                                    || (k + 1 < nk && nb(mid[k][[j, i]]))
                            })
                    };
                    let offs = if bone_edge { &offsets } else { &offsets2 };
                    let count = offs.len().pow(3);
                    let (mut sum, mut bones) = (0f64, 0usize);
                    for dk in offs {
                        for dj in offs {
                            for di in offs {
                                let p = lps(g, k as f64 + dk, j as f64 + dj, i as f64 + di);
                                let sm = head.material(p);
                                sum += head.hu(sm, p) as f64;
                                bones += sm.is_bone() as usize;
                            }
                        }
                    }
                    hu[[j, i]] = (sum / count as f64) as f32;
                    lab[[j, i]] = if bone_edge {
                        (2 * bones >= half) as u8
                    } else {
                        bone[m as usize] as u8
                    };
                }
            }
            (hu, lab, boundary)
        })
        .collect();

    let mut hu = Array3::<f32>::zeros((nk, nj, ni));
    let mut label = Array3::<u8>::zeros((nk, nj, ni));
    let mut material = Array3::<u8>::zeros((nk, nj, ni));
    let mut boundary_voxels = 0;
    for (k, (h, l, b)) in slices.into_iter().enumerate() {
        hu.index_axis_mut(Axis(0), k).assign(&h);
        label.index_axis_mut(Axis(0), k).assign(&l);
        material.index_axis_mut(Axis(0), k).assign(&planes[k]);
        boundary_voxels += b;
    }
    Voxelized {
        hu,
        label,
        material,
        boundary_voxels,
    }
}
