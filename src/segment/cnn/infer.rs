//! Exact dense inference: the patch classifier evaluated over whole slices as a fully convolutional
//! network, and per-patch classification (the paper's method) for tests and benchmarks.
//!
//! A slice (or its region of interest) is normalised, padded by 16 voxels on every side with the
//! normalised air value ([`Normaliser::pad_value`], the same value the patch extractor uses beyond
//! a slice's edge) and run through [`Net`] in eval mode: output voxel `(j, i)` is then exactly the
//! probability of the 33x33 patch centred on `(j, i)` (valid convolutions, stride-1 pools).

use ndarray::{s, Array3, ArrayView3};
use tch::{Device, Kind, Tensor};

use super::arch::HALF;
use super::net::Net;
use super::normalise::Normaliser;
use super::planes::{input_planes, PlaneMix};
pub use super::roi::{slice_roi, Roi};
use super::CnnError;

/// Options of [`dense_probabilities`].
#[derive(Clone, Debug)]
pub struct DenseOptions {
    /// Slices per forward pass.
    pub batch_slices: usize,
    /// Where the network runs (its variables must live there).
    pub device: Device,
    /// Mixed precision (autocast to fp16); honoured only on CUDA.
    pub half: bool,
    /// Restrict work to each slice's head bounding box ([`slice_roi`]); voxels outside get 0.
    pub roi: bool,
    /// Dilation of the head bounding box, voxels.
    pub roi_margin: usize,
    /// Test-time orientations averaged ([`ORIENTATIONS`]: 1, 2, 4 or 8; [`orient`]): each
    /// voxel's probability is the mean of its own patch's probabilities under the first
    /// `orientations` flips/transpositions of the dihedral group, the transformations training
    /// samples from (`train::sample`). 1 = the patch as it is.
    pub orientations: usize,
}

/// The accepted numbers of test-time orientations ([`DenseOptions::orientations`]): the
/// identity; with the left-right mirror; with the anterior-posterior mirrors; with the
/// transpositions (all 8 elements of the square's dihedral group).
pub const ORIENTATIONS: [usize; 4] = [1, 2, 4, 8];

impl Default for DenseOptions {
    fn default() -> Self {
        let device = Device::cuda_if_available();
        DenseOptions {
            // A GPU wants larger batches; 16 padded 512x512 slices are ~20 MB of input.
            batch_slices: if device.is_cuda() { 16 } else { 4 },
            device,
            half: device.is_cuda(),
            roi: true,
            roi_margin: 4,
            orientations: 1,
        }
    }
}

/// Fills `out` (`(h + 32) x (w + 32)`, row-major) with the normalised plane `mix` of `hu` (a
/// weighted sum of slices, [`super::planes::PlaneMix`]) over `roi` plus 16 voxels of context,
/// padding beyond the slice edge, and everywhere for an empty mix (a plane outside the series),
/// with [`Normaliser::pad_value`].
fn padded_window(
    hu: ArrayView3<f32>,
    norm: &Normaliser,
    mix: &[(usize, f32)],
    roi: Roi,
    out: &mut [f32],
) {
    let (_, rows, cols) = hu.dim();
    let w = roi.i1 - roi.i0 + 2 * HALF;
    let pad = norm.pad_value();
    for (r, row) in out.chunks_mut(w).enumerate() {
        let j = roi.j0 as isize + r as isize - HALF as isize;
        for (c, v) in row.iter_mut().enumerate() {
            let i = roi.i0 as isize + c as isize - HALF as isize;
            *v = if !mix.is_empty()
                && j >= 0
                && i >= 0
                && (j as usize) < rows
                && (i as usize) < cols
            {
                mix.iter()
                    .map(|&(k, wt)| wt * norm.apply(hu[[k, j as usize, i as usize]]))
                    .sum()
            } else {
                pad
            };
        }
    }
}

/// The input planes of every slice of a `nk`-slice volume for `net`.
///
/// # Errors
/// [`CnnError::Input`] when `net` has neighbour planes at a distance in mm and `slice_mm` does
/// not hold one finite position per slice.
fn volume_planes(net: &Net, slice_mm: &[f64], nk: usize) -> Result<Vec<Vec<PlaneMix>>, CnnError> {
    if net.neighbours().needs_positions()
        && (slice_mm.len() != nk || slice_mm.iter().any(|z| !z.is_finite()))
    {
        return Err(CnnError::Input(format!(
            "a model with neighbour planes at a distance in mm needs one finite slice position per \
             slice: {} for {nk} slices",
            slice_mm.len()
        )));
    }
    Ok((0..nk)
        .map(|k| input_planes(slice_mm, nk, k, net.neighbours()))
        .collect())
}

/// Orientation `d` (0..8) of the dihedral group applied to the last two axes (rows, columns) of
/// `x`: transposed when `d & 4`, then columns reversed when `d & 1` (the left-right mirror of an
/// axial slice), rows reversed when `d & 2`. [`unorient`] undoes it.
pub fn orient(x: &Tensor, d: usize) -> Tensor {
    let mut y = if d & 4 != 0 {
        x.transpose(-2, -1)
    } else {
        x.shallow_clone()
    };
    if d & 1 != 0 {
        y = y.flip([-1]);
    }
    if d & 2 != 0 {
        y = y.flip([-2]);
    }
    y
}

/// The inverse of [`orient`]: reverses the flips, then the transposition.
pub fn unorient(y: &Tensor, d: usize) -> Tensor {
    let mut x = y.shallow_clone();
    if d & 2 != 0 {
        x = x.flip([-2]);
    }
    if d & 1 != 0 {
        x = x.flip([-1]);
    }
    if d & 4 != 0 {
        x = x.transpose(-2, -1);
    }
    x
}

/// Bone probability `[N, h, w]` (`f32`, on the CPU) of the input batch `xs` (`[N, planes, h + 32,
/// w + 32]`): the softmax of the net's `[N, 2, h, w]` logits, averaged over the first
/// `orientations` orientations of the input ([`orient`]), each mapped back ([`unorient`]); valid
/// convolutions and stride-1 pools make that the mean over the same orientations of each voxel's
/// own patch.
fn bone_probability(
    net: &Net,
    xs: &Tensor,
    half: bool,
    orientations: usize,
) -> Result<Vec<f32>, CnnError> {
    let n = orientations.max(1);
    let mut sum: Option<Tensor> = None;
    for d in 0..n {
        let p = forward(net, &orient(xs, d), half)
            .to_kind(Kind::Float)
            .softmax(1, Kind::Float)
            .select(1, 1);
        let p = unorient(&p, d);
        sum = Some(match sum {
            None => p,
            Some(s) => s + p,
        });
    }
    let mut p = sum.expect("at least one orientation");
    if n > 1 {
        p /= n as f64;
    }
    let p = p.to_device(Device::Cpu).contiguous().flatten(0, -1);
    Vec::<f32>::try_from(&p).map_err(|e| CnnError::Torch(e.to_string()))
}

fn forward(net: &Net, xs: &Tensor, half: bool) -> Tensor {
    tch::no_grad(|| {
        if half && xs.device().is_cuda() {
            tch::autocast(true, || net.forward_t(xs, false))
        } else {
            net.forward_t(xs, false)
        }
    })
}

/// Bone probability of every voxel of `hu` (`[k, j, i]`, grey values), each voxel's value being
/// that of its own 33x33 axial patch (on each of the net's input planes: the slice and, with
/// neighbour planes, the planes interpolated at `slice_mm[k] -+ d` or the adjacent slices
/// `k -+ 1`); voxels outside the region of interest get 0. `slice_mm`: position of each slice
/// along the slice normal, mm (PS3.3 C.7.6.2.1.1, `dot(IPP, normal)`); read only by a model with
/// neighbour planes at a distance in mm.
///
/// # Errors
/// [`CnnError::Torch`] when a tensor cannot be read back; [`CnnError::Input`] when the model has
/// neighbour planes at a distance in mm and `slice_mm` is not one finite position per slice.
pub fn dense_probabilities(
    net: &Net,
    norm: &Normaliser,
    hu: ArrayView3<f32>,
    slice_mm: &[f64],
    opts: &DenseOptions,
) -> Result<Array3<f32>, CnnError> {
    let (nk, rows, cols) = hu.dim();
    let planes = volume_planes(net, slice_mm, nk)?;
    let np = net.planes();
    let mut out = Array3::<f32>::zeros((nk, rows, cols));
    let level = norm.roi_level();
    let rois: Vec<Option<Roi>> = (0..nk)
        .map(|k| {
            if opts.roi {
                slice_roi(hu.slice(s![k, .., ..]), level, opts.roi_margin)
            } else {
                Some(Roi::full(rows, cols))
            }
        })
        .collect();
    let with_roi: Vec<usize> = (0..nk).filter(|&k| rois[k].is_some()).collect();
    for batch in with_roi.chunks(opts.batch_slices.max(1)) {
        let roi = batch
            .iter()
            .filter_map(|&k| rois[k])
            .reduce(Roi::union)
            .unwrap_or(Roi::full(rows, cols));
        let (h, w) = (roi.j1 - roi.j0, roi.i1 - roi.i0);
        let (hp, wp) = (h + 2 * HALF, w + 2 * HALF);
        let mut buf = vec![0f32; batch.len() * np * hp * wp];
        for (b, &k) in batch.iter().enumerate() {
            for (q, mix) in planes[k].iter().enumerate() {
                let at = (b * np + q) * hp * wp;
                padded_window(hu, norm, mix, roi, &mut buf[at..at + hp * wp]);
            }
        }
        let xs = Tensor::from_slice(&buf)
            .view([batch.len() as i64, np as i64, hp as i64, wp as i64])
            .to_device(opts.device);
        let p = bone_probability(net, &xs, opts.half, opts.orientations)?;
        for (b, &k) in batch.iter().enumerate() {
            let plane = &p[b * h * w..(b + 1) * h * w];
            let mut dst = out.slice_mut(s![k, roi.j0..roi.j1, roi.i0..roi.i1]);
            for (d, &v) in dst.iter_mut().zip(plane) {
                *d = v;
            }
        }
    }
    Ok(out)
}

/// The paper's inference: bone probability of each voxel `[k, j, i]` in `centres`, classifying its
/// own 33x33 patch on each input plane (padded beyond the slice edge and interpolated between
/// slices as in [`dense_probabilities`], `slice_mm` likewise), `batch` patches per forward pass,
/// on `opts.device`, averaged over the patch's first `opts.orientations` orientations
/// ([`DenseOptions::orientations`]; the other options do not apply to single patches).
///
/// # Errors
/// [`CnnError::Torch`] when a tensor cannot be read back; [`CnnError::Input`] for a centre outside
/// the volume or slice positions a model with neighbour planes cannot use.
pub fn patch_probabilities(
    net: &Net,
    norm: &Normaliser,
    hu: ArrayView3<f32>,
    slice_mm: &[f64],
    centres: &[[usize; 3]],
    batch: usize,
    opts: &DenseOptions,
) -> Result<Vec<f32>, CnnError> {
    let (nk, rows, cols) = hu.dim();
    let planes = volume_planes(net, slice_mm, nk)?;
    let np = net.planes();
    let p = 2 * HALF + 1;
    let mut probs = Vec::with_capacity(centres.len());
    for chunk in centres.chunks(batch.max(1)) {
        let mut buf = vec![0f32; chunk.len() * np * p * p];
        for (b, &[k, j, i]) in chunk.iter().enumerate() {
            if k >= nk || j >= rows || i >= cols {
                return Err(CnnError::Input(format!(
                    "patch centre [{k}, {j}, {i}] outside the volume [{nk}, {rows}, {cols}]"
                )));
            }
            let roi = Roi {
                j0: j,
                j1: j + 1,
                i0: i,
                i1: i + 1,
            };
            for (q, mix) in planes[k].iter().enumerate() {
                let at = (b * np + q) * p * p;
                padded_window(hu, norm, mix, roi, &mut buf[at..at + p * p]);
            }
        }
        let xs = Tensor::from_slice(&buf)
            .view([chunk.len() as i64, np as i64, p as i64, p as i64])
            .to_device(opts.device);
        probs.extend(bone_probability(net, &xs, false, opts.orientations)?);
    }
    Ok(probs)
}
