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
}

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

/// Bone probability `[N, 2, h, w]` logits -> `[N, h, w]` `f32` on the CPU.
fn bone_probability(logits: &Tensor) -> Result<Vec<f32>, CnnError> {
    let p = logits
        .to_kind(Kind::Float)
        .softmax(1, Kind::Float)
        .select(1, 1)
        .to_device(Device::Cpu)
        .contiguous()
        .flatten(0, -1);
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
        let p = bone_probability(&forward(net, &xs, opts.half))?;
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
/// slices as in [`dense_probabilities`], `slice_mm` likewise), `batch` patches per forward pass.
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
    device: Device,
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
            .to_device(device);
        probs.extend(bone_probability(&forward(net, &xs, false))?);
    }
    Ok(probs)
}
