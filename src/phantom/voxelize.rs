//! Samples the analytic head on a CT grid: the partial-volume HU image and the exact bone label.
//!
//! Every voxel centre is classified once, plus sub-planes between slice centres when slices are
//! thicker than 0.7 mm (the mid-plane up to 1.7 mm spacing; planes <= 0.85 mm apart for thick
//! slices, [`sub_planes_per_slice`]), so thin plates lying between two slice centres are not lost.
//! A voxel whose class differs from an in-plane 4-neighbour, a neighbouring slice centre or a
//! sub-plane inside its box is a boundary voxel and is supersampled over its box: its HU is the
//! mean over the sub-samples (analytic partial volume). Where bone status changes, `n x n x n`
//! sub-samples are taken (`n x n x n s/2` for thick slices) and the label is bone when at least
//! half of them are bone; other boundaries (skin, fat, holder...) get `2 x 2 x 2` (`2 x 2 x s`)
//! for the image only. Other voxels take the centre's material. Labels therefore come from the
//! model, never from the simulated image.
//!
//! The voxel's box is `[i +- 0.5] x [j +- 0.5] x [k +- 0.5]` in index space: one pixel in-plane and,
//! along the slice direction, the slab between the mid-planes to the neighbouring slices, i.e.
//! `slice spacing` thick along the normal (parallel to the slices, sheared with a gantry tilt).
//! For thick slices with spacing = thickness (`routine-5mm`) this is the whole nominal slab: the
//! image value integrates the anatomy over the 5 mm (a tangential cut through the vault gives the
//! broad band of intermediate HU of real thick-slice CT; render.rs adds only the small remainder
//! of the slice profile's width) and the label is "bone occupies >= half of the pixel x 5 mm slab".
//! Where thickness > spacing (`siemens-sensation-h30s`, 1.5 / 1.0 mm) the label box is the
//! spacing, and the image's extra width comes from render.rs's slice profile. The outer half-box of
//! the first and last slice is not checked for boundaries (no sub-planes outside the series).

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

/// Sub-sample offsets (fractions of a voxel, centred) of `n` samples across one voxel.
fn sample_offsets(n: usize) -> Vec<f64> {
    let n = n.max(1);
    (0..n).map(|a| (a as f64 + 0.5) / n as f64 - 0.5).collect()
}

/// Number of plane intervals per slice gap that [`voxelize`] classifies to find boundary voxels:
/// 0 (centre planes only) up to 0.7 mm spacing, 2 (the mid-plane) up to 1.7 mm, then
/// `2 ceil(spacing / 1.7)` (6 for 4-5 mm slices: planes 0.7-0.85 mm apart), so that a 1-2 mm
/// cortical table lying within a thick slab is not missed.
pub fn sub_planes_per_slice(spacing_mm: f64) -> usize {
    if spacing_mm <= 0.7 {
        0
    } else {
        2 * (spacing_mm / 1.7).ceil().max(1.0) as usize
    }
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
    // Sub-planes between slice centres: gap `k` (between slices k and k + 1) holds the planes at
    // `k + m / s`, m = 1..s; the voxel box of slice k spans k - 0.5 .. k + 0.5.
    let s = sub_planes_per_slice(g.nominal_slice_spacing());
    let sub: Vec<Array2<u8>> = if s >= 2 && nk > 1 {
        (0..(nk - 1) * (s - 1))
            .into_par_iter()
            .map(|x| {
                let (gap, m) = (x / (s - 1), x % (s - 1) + 1);
                classify_plane(head, g, gap as f64 + m as f64 / s as f64)
            })
            .collect()
    } else {
        Vec::new()
    };
    // The sub-planes inside the box of slice k (and the centre planes of its neighbours).
    let box_planes = |k: usize| -> Vec<&Array2<u8>> {
        let mut v = Vec::new();
        if k > 0 {
            v.push(&planes[k - 1]);
        }
        if k + 1 < nk {
            v.push(&planes[k + 1]);
        }
        if !sub.is_empty() {
            if k > 0 {
                for m in s / 2..s {
                    v.push(&sub[(k - 1) * (s - 1) + m - 1]);
                }
            }
            if k + 1 < nk {
                for m in 1..=s / 2 {
                    v.push(&sub[k * (s - 1) + m - 1]);
                }
            }
        }
        v
    };

    // Along k, thick slices get `s / 2` times as many sub-samples as in-plane (sub-sample spacing
    // <= 0.6 mm for 3 x 3 at 5 mm), so the slab's partial volume and the label's occupancy are
    // integrated over the whole slab.
    let mult = (s / 2).max(1);
    let offsets = sample_offsets(n);
    let offsets_k = sample_offsets(n * mult);
    let (offsets2, offsets2_k) = if n > 2 {
        (vec![-0.25, 0.25], sample_offsets(2 * mult))
    } else {
        (offsets.clone(), offsets_k.clone())
    };
    let slices: Vec<(Array2<f32>, Array2<u8>, u64)> = (0..nk)
        .into_par_iter()
        .map(|k| {
            let mut hu = Array2::<f32>::zeros((nj, ni));
            let mut lab = Array2::<u8>::zeros((nj, ni));
            let mut boundary = 0u64;
            let cur = &planes[k];
            let others = box_planes(k);
            for j in 0..nj {
                for i in 0..ni {
                    let m = cur[[j, i]];
                    let edge = (i > 0 && differ(m, cur[[j, i - 1]]))
                        || (i + 1 < ni && differ(m, cur[[j, i + 1]]))
                        || (j > 0 && differ(m, cur[[j - 1, i]]))
                        || (j + 1 < nj && differ(m, cur[[j + 1, i]]))
                        || others.iter().any(|o| differ(m, o[[j, i]]));
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
                            || others.iter().any(|o| nb(o[[j, i]]))
                    };
                    let (offs, offs_k) = if bone_edge {
                        (&offsets, &offsets_k)
                    } else {
                        (&offsets2, &offsets2_k)
                    };
                    let count = offs.len() * offs.len() * offs_k.len();
                    let (mut sum, mut bones) = (0f64, 0usize);
                    for dk in offs_k {
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
                        (2 * bones >= count) as u8
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
