//! Realism measurements, the same for generated and real scans (docs/phantom.md, realism table):
//! HU mean/SD of bone, soft tissue and air, noise SD in air and the 10-90 % width of the outer
//! skull edge; plus PNG previews of an axial slice.
//!
//! All measures use one reference slice: the most superior slice whose body area (HU > -400) is at
//! least 85 % of the largest (a supraventricular level of a head scan), and its two neighbours on
//! each side.
//! * soft tissue: disc of radius 15 mm at the body centroid (brain);
//! * air: 20 mm wide band 8-25 mm in front of the body (inside the reconstruction circle);
//! * bone: all voxels > 300 HU of the five slices;
//! * edge: 72 rays from the centroid over the anterior and lateral half; along each, from outside
//!   in, the first rise above 600 HU; base = median of the 2-6 mm outside it, peak = maximum of the
//!   5 mm inside it; width = distance between the 10 % and 90 % crossings (median over rays).

use std::path::Path;

use ndarray::{Array2, ArrayView2, ArrayView3, Axis};
use serde::Serialize;

use crate::dicom::geometry::Geometry;

/// One row of the realism table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Realism {
    /// Reference slice index `k`.
    pub slice: usize,
    pub bone_mean_hu: f64,
    pub bone_sd_hu: f64,
    pub soft_mean_hu: f64,
    pub soft_sd_hu: f64,
    pub air_mean_hu: f64,
    /// Noise SD in air.
    pub air_sd_hu: f64,
    /// Median 10-90 % width of the outer skull edge, mm (NaN when fewer than 8 rays qualified).
    pub edge_10_90_mm: f64,
    /// Rays that qualified for the edge width.
    pub edge_rays: usize,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    (m, sd)
}

/// The reference slice of `hu` (see the module doc).
pub fn reference_slice(hu: ArrayView3<f32>) -> usize {
    let areas: Vec<usize> = hu
        .outer_iter()
        .map(|s| s.iter().filter(|&&v| v > -400.0).count())
        .collect();
    let max = areas.iter().copied().max().unwrap_or(0);
    // k grows towards the head (ascending projection on the normal); the last qualifying slice is
    // the most superior.
    areas
        .iter()
        .rposition(|&a| a as f64 >= 0.85 * max as f64)
        .unwrap_or(0)
}

fn bilinear(s: &ArrayView2<f32>, j: f64, i: f64) -> Option<f64> {
    let (nj, ni) = s.dim();
    if j < 0.0 || i < 0.0 || j > (nj - 1) as f64 || i > (ni - 1) as f64 {
        return None;
    }
    let (j0, i0) = (j.floor() as usize, i.floor() as usize);
    let (j1, i1) = ((j0 + 1).min(nj - 1), (i0 + 1).min(ni - 1));
    let (tj, ti) = (j - j0 as f64, i - i0 as f64);
    let v = |a: usize, b: usize| s[[a, b]] as f64;
    Some(
        (1.0 - tj) * ((1.0 - ti) * v(j0, i0) + ti * v(j0, i1))
            + tj * ((1.0 - ti) * v(j1, i0) + ti * v(j1, i1)),
    )
}

/// Body centroid `(j, i)` of a slice (HU > -400), pixels.
fn centroid(s: &ArrayView2<f32>) -> (f64, f64) {
    let (mut n, mut sj, mut si) = (0f64, 0f64, 0f64);
    for ((j, i), &v) in s.indexed_iter() {
        if v > -400.0 {
            n += 1.0;
            sj += j as f64;
            si += i as f64;
        }
    }
    if n == 0.0 {
        let (a, b) = s.dim();
        return (a as f64 / 2.0, b as f64 / 2.0);
    }
    (sj / n, si / n)
}

/// Measures `hu` (`[k, j, i]`, HU) on grid `g`.
pub fn measure(hu: ArrayView3<f32>, g: &Geometry) -> Realism {
    let k = reference_slice(hu);
    let nk = hu.dim().0;
    let (dj, di) = (g.pixel_spacing[0], g.pixel_spacing[1]);
    let s = hu.index_axis(Axis(0), k);
    let (cj, ci) = centroid(&s);
    let ks = k.saturating_sub(2)..(k + 3).min(nk);

    let mut bone = Vec::new();
    let mut soft = Vec::new();
    let mut air = Vec::new();
    for kk in ks {
        let sl = hu.index_axis(Axis(0), kk);
        let (nj, ni) = sl.dim();
        // Front edge of the body in the central band.
        let band = ((10.0 / di) as i64).max(1);
        let mut front = nj as f64;
        for ((j, i), &v) in sl.indexed_iter() {
            if v > -400.0 && (i as i64 - ci as i64).abs() <= band {
                front = front.min(j as f64);
            }
            if v > 300.0 {
                bone.push(v as f64);
            }
            let (y, x) = ((j as f64 - cj) * dj, (i as f64 - ci) * di);
            if x * x + y * y < 15.0 * 15.0 {
                soft.push(v as f64);
            }
        }
        let (j_lo, j_hi) = (front - 25.0 / dj, front - 8.0 / dj);
        for j in (j_lo.max(0.0) as usize)..(j_hi.max(0.0) as usize).min(nj) {
            for i in ((ci - 10.0 / di).max(0.0) as usize)..((ci + 10.0 / di) as usize).min(ni) {
                air.push(sl[[j, i]] as f64);
            }
        }
    }
    let (bone_mean_hu, bone_sd_hu) = mean_sd(&bone);
    let (soft_mean_hu, soft_sd_hu) = mean_sd(&soft);
    let (air_mean_hu, air_sd_hu) = mean_sd(&air);
    let (edge_10_90_mm, edge_rays) = edge_width(&s, cj, ci, dj, di);
    Realism {
        slice: k,
        bone_mean_hu,
        bone_sd_hu,
        soft_mean_hu,
        soft_sd_hu,
        air_mean_hu,
        air_sd_hu,
        edge_10_90_mm,
        edge_rays,
    }
}

fn edge_width(s: &ArrayView2<f32>, cj: f64, ci: f64, dj: f64, di: f64) -> (f64, usize) {
    let step = 0.1; // mm
    let mut widths = Vec::new();
    for a in 0..144 {
        let ang = a as f64 * std::f64::consts::TAU / 144.0;
        let (uy, ux) = (ang.sin(), ang.cos());
        if uy > 0.3 {
            continue; // posterior: head holder
        }
        let at = |r: f64| bilinear(s, cj + r * uy / dj, ci + r * ux / di);
        // From outside in.
        let mut r = 130.0;
        while r > 20.0 && at(r).is_none() {
            r -= step;
        }
        let mut crossing = None;
        while r > 20.0 {
            if at(r).unwrap_or(-1000.0) > 600.0 {
                crossing = Some(r);
                break;
            }
            r -= step;
        }
        let Some(rc) = crossing else { continue };
        let mut outside: Vec<f64> = (20..=60).filter_map(|n| at(rc + n as f64 * step)).collect();
        if outside.len() < 20 {
            continue;
        }
        outside.sort_by(f64::total_cmp);
        let base = outside[outside.len() / 2];
        let peak = (0..=50)
            .filter_map(|n| at(rc - n as f64 * step))
            .fold(f64::MIN, f64::max);
        if peak - base < 500.0 {
            continue;
        }
        let (l10, l90) = (base + 0.1 * (peak - base), base + 0.9 * (peak - base));
        let mut r10 = rc;
        while r10 < rc + 6.0 && at(r10).unwrap_or(base) > l10 {
            r10 += step;
        }
        let mut r90 = rc;
        while r90 > rc - 5.0 && at(r90).unwrap_or(peak) < l90 {
            r90 -= step;
        }
        widths.push(r10 - r90);
    }
    if widths.len() < 8 {
        return (f64::NAN, widths.len());
    }
    widths.sort_by(f64::total_cmp);
    (widths[widths.len() / 2], widths.len())
}

/// An axial slice resampled to a `size x size` grid of `mm_per_px` centred on the body centroid,
/// windowed to `[lo, hi]` HU as 8-bit grey.
pub fn slice_preview(
    hu: ArrayView3<f32>,
    g: &Geometry,
    k: usize,
    size: usize,
    mm_per_px: f64,
    window: [f64; 2],
) -> Array2<u8> {
    let s = hu.index_axis(Axis(0), k.min(hu.dim().0.saturating_sub(1)));
    let (cj, ci) = centroid(&s);
    let (dj, di) = (g.pixel_spacing[0], g.pixel_spacing[1]);
    let half = size as f64 / 2.0;
    Array2::from_shape_fn((size, size), |(y, x)| {
        let (my, mx) = ((y as f64 - half) * mm_per_px, (x as f64 - half) * mm_per_px);
        let v = bilinear(&s, cj + my / dj, ci + mx / di).unwrap_or(-1024.0);
        (((v - window[0]) / (window[1] - window[0])).clamp(0.0, 1.0) * 255.0).round() as u8
    })
}

/// Writes grey panels side by side (2 px black gap) as an 8-bit PNG.
///
/// # Errors
/// I/O or PNG encoding errors, as text naming `path`.
pub fn write_png(panels: &[Array2<u8>], path: &Path) -> Result<(), String> {
    let h = panels.iter().map(|p| p.dim().0).max().unwrap_or(0);
    let w: usize = panels
        .iter()
        .map(|p| p.dim().1 + 2)
        .sum::<usize>()
        .saturating_sub(2);
    let mut img = vec![0u8; w * h];
    let mut x0 = 0;
    for p in panels {
        for ((y, x), &v) in p.indexed_iter() {
            img[y * w + x0 + x] = v;
        }
        x0 += p.dim().1 + 2;
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writer
        .write_image_data(&img)
        .map_err(|e| format!("{}: {e}", path.display()))
}
