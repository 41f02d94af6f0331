//! Synthetic head CT phantoms with exact bone labels (`osteon phantom`, docs/phantom.md).
//!
//! [`generate`] draws a [`anatomy::Head`] from the seed, samples it on the grid of a virtual scanner
//! ([`scanner`]) with supersampled partial volume and an exact label ([`voxelize`]), and applies the
//! scanner's image formation ([`render`]). [`write_phantom`] writes the CT series (`ct/`), the label
//! as a DICOM SEG on that series (`label-seg.dcm`), the label mesh (`label.stl`, LPS mm) and
//! `phantom.json` (with the scoring [`regions`]: craniotomy rim, skull-base slab, metal). Same profile + seed + options = same bytes: UIDs are derived from a hash of
//! (profile, seed, purpose) ([`phantom_uid`]) and dates are fixed.
//!
//! Data flow: uses [`crate::dicom`], [`crate::segment`] and [`crate::mesh`]; nothing but `main.rs` and
//! the tests uses this module.

pub mod anatomy;
pub mod cli;
pub mod fbp_noise;
pub mod output;
pub mod realism;
pub mod regions;
pub mod render;
pub mod scanner;
pub mod voxelize;

use std::time::Instant;

use ndarray::Array3;
use serde::Serialize;

use crate::dicom::geometry::Geometry;
use anatomy::Head;
use scanner::ScannerProfile;

pub use output::{write_phantom, PhantomError, PhantomSummary};

/// Options of [`generate`] beyond profile and seed.
#[derive(Clone, Debug, Serialize)]
pub struct PhantomOptions {
    /// Number of slices (default: the profile's).
    pub slices: Option<usize>,
    /// Matrix (Rows = Columns); the field of view is kept, so the pixels grow (default: profile's).
    pub matrix: Option<usize>,
    /// Head-frame z (mm, standard head) of the top slice; default: the profile's scan range.
    pub top_mm: Option<f64>,
    /// `Some(true)`: force a craniotomy; `Some(false)`: none; `None`: drawn from the seed.
    pub craniotomy: Option<bool>,
    /// `Some(true)`: a homogeneous (resin-like) skull; `Some(false)`: a layered one; `None`:
    /// drawn from the seed ([`anatomy::Head::random_with`]).
    pub homogeneous_skull: Option<bool>,
    /// Supersampling factor per axis at boundary voxels (3 = 27 sub-samples).
    pub supersample: usize,
    /// Write `label.stl`.
    pub stl: bool,
}

impl Default for PhantomOptions {
    fn default() -> Self {
        PhantomOptions {
            slices: None,
            matrix: None,
            top_mm: None,
            craniotomy: None,
            homogeneous_skull: None,
            supersample: 3,
            stl: true,
        }
    }
}

/// A generated phantom in memory.
pub struct Phantom {
    pub profile: &'static ScannerProfile,
    pub seed: u64,
    pub options: PhantomOptions,
    pub head: Head,
    pub geometry: Geometry,
    /// Final image, HU as the scanner reports them (calibration applied), `[k, j, i]`.
    pub hu: Array3<f32>,
    /// Exact bone label, `[k, j, i]`, 1 = bone.
    pub label: Array3<u8>,
    /// Supersampled boundary voxels.
    pub boundary_voxels: u64,
    /// Time of each step, ms.
    pub timings: Timings,
}

/// Wall-clock times, ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub voxelize_ms: f64,
    pub render_ms: f64,
    pub write_ct_ms: f64,
    pub seg_ms: f64,
    pub stl_ms: f64,
    pub total_ms: f64,
}

/// Default top of the scan (standard-head mm): just above the vertex (every profile, so that the
/// default series runs from the vertex through C1/C2; see [`scanner::COVERAGE_MM`]).
pub const DEFAULT_TOP_MM: f64 = 82.0;

/// The grid of `profile` (with `options`) around `head`: axial (or gantry-tilted) slices from the
/// top of the scan downwards, FOV centred 12 mm posterior of the head centre.
pub fn grid(profile: &ScannerProfile, options: &PhantomOptions, head: &Head) -> Geometry {
    let matrix = options.matrix.unwrap_or(profile.matrix).max(2);
    let pixel = profile.pixel_mm * profile.matrix as f64 / matrix as f64;
    let default_slices = profile.default_slices();
    let slices = options.slices.unwrap_or(default_slices).max(2);
    let spacing = profile.slice_spacing_mm
        * if options.slices.is_some() {
            // Few slices for tests: spread them over the profile's coverage.
            (default_slices as f64 / slices as f64).max(1.0)
        } else {
            1.0
        };
    let t = profile.tilt_deg.to_radians();
    let (row, col) = ([1.0, 0.0, 0.0], [0.0, t.cos(), -t.sin()]);
    let top = options.top_mm.unwrap_or(DEFAULT_TOP_MM) * head.scale;
    let centre = [
        head.center_lps[0],
        head.center_lps[1] + 12.0,
        head.center_lps[2],
    ];
    let half = (matrix as f64 - 1.0) / 2.0 * pixel;
    let first_top = [
        centre[0] - half * row[0] - half * col[0],
        centre[1] - half * row[1] - half * col[1],
        centre[2] + top - half * row[2] - half * col[2],
    ];
    // Slices along S, `spacing / cos t` apart, so that their normal distance is `spacing`.
    let step = spacing / t.cos();
    let ipp = (0..slices)
        .map(|k| {
            let z = first_top[2] - (slices - 1 - k) as f64 * step;
            [first_top[0], first_top[1], z]
        })
        .collect();
    Geometry {
        ipp,
        iop: [row[0], row[1], row[2], col[0], col[1], col[2]],
        pixel_spacing: [pixel, pixel],
        rows: matrix,
        cols: matrix,
    }
}

/// Generates the phantom of `profile` and `seed` in memory.
pub fn generate(profile: &'static ScannerProfile, seed: u64, options: &PhantomOptions) -> Phantom {
    let start = Instant::now();
    let head = Head::random_with(seed, options.craniotomy, options.homogeneous_skull);
    let geometry = grid(profile, options, &head);
    let t = Instant::now();
    let vox = voxelize::voxelize(&head, &geometry, options.supersample);
    let voxelize_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let noise_seed = anatomy::field::mix64(seed ^ fnv64(profile.name.as_bytes()));
    let hu = render::render(vox.hu, &vox.material, &geometry, &head, profile, noise_seed);
    let render_ms = t.elapsed().as_secs_f64() * 1e3;
    Phantom {
        profile,
        seed,
        options: options.clone(),
        head,
        geometry,
        hu,
        label: vox.label,
        boundary_voxels: vox.boundary_voxels,
        timings: Timings {
            voxelize_ms,
            render_ms,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            ..Default::default()
        },
    }
}

/// FNV-1a, 64 bit.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Deterministic UID `2.25.<n>` (PS3.5 B.2) for (profile, seed, purpose): `n` is a 128-bit FNV-1a
/// hash of the three, with the version/variant bits of a UUID version 8 (RFC 9562 §5.8), so the
/// same phantom always gets the same UIDs and different phantoms different ones.
pub fn phantom_uid(profile: &str, seed: u64, purpose: &str) -> String {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in format!("osteon-phantom/{profile}/{seed}/{purpose}").bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(PRIME);
    }
    // Version 8 in bits 76-79, variant 0b10 in bits 62-63.
    h = (h & !(0xF << 76)) | (0x8 << 76);
    h = (h & !(0x3 << 62)) | (0x2 << 62);
    format!("2.25.{h}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn uids_are_stable_distinct_and_valid() {
        let a = super::phantom_uid("cbct", 1, "series");
        assert_eq!(a, super::phantom_uid("cbct", 1, "series"));
        assert_ne!(a, super::phantom_uid("cbct", 2, "series"));
        assert_ne!(a, super::phantom_uid("cbct", 1, "study"));
        assert!(a.len() <= 64 && a.starts_with("2.25.") && !a[5..].starts_with('0'));
    }
}
