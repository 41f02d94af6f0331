//! Scoring regions of a synthetic scan, where thresholding is known to fail: the band around the
//! rim of a craniotomy, the skull-base slab (thin plates, foramina) and the surroundings of metal
//! (streaks). `osteon phantom` writes them into `phantom.json` (`regions`, LPS mm); a manifest entry
//! names that file with `phantom = "..."`, and `osteon evaluate` reports the DSC inside each region
//! and the surface deviation in the rim band.

use std::path::{Path, PathBuf};

use ndarray::Zip;
use serde::{Deserialize, Serialize};

use super::metrics::{Overlap, RimBand};
use crate::dicom::geometry::Geometry;
use crate::segment::Mask;

/// Half-width (mm) of the rim band when the regions come from phantom.json.
pub const RIM_BAND_MM: f64 = 3.0;

/// Radius (mm) around a metal object's axis counted as "near metal".
pub const METAL_RADIUS_MM: f64 = 20.0;

/// Errors of reading the regions.
#[derive(Debug, thiserror::Error)]
pub enum RegionsError {
    /// phantom.json could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// phantom.json is not JSON or has no usable `regions`.
    #[error("{path}: {message}")]
    Format {
        /// File.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

/// A metal object: capsule between `a` and `b` (LPS mm) of radius `radius_mm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetalCapsule {
    /// Axis end, LPS mm.
    pub a: [f64; 3],
    /// Axis end, LPS mm.
    pub b: [f64; 3],
    /// Radius, mm.
    pub radius_mm: f64,
    /// `clip`, `filling` or `plate`.
    pub kind: String,
}

/// Scoring regions of one synthetic scan (all LPS mm).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoringRegions {
    /// Rim polylines of the craniotomy (closed loops, mid-way through the vault; empty without a
    /// defect): the cut edge of a flap, craniectomy or implant bed and the burr-hole edges.
    pub defect_rim: Vec<Vec<[f64; 3]>>,
    /// Skull-base slab: patient S coordinate (LPS z, mm) from its bottom to its top (foramen
    /// magnum and posterior fossa floor up to the orbital roofs).
    pub skull_base_z: [f64; 2],
    /// Metal objects (clips, fillings, fixation plates).
    pub metal: Vec<MetalCapsule>,
    /// Boxes around the thin plates of the skull base and orbits (orbital roofs and cribriform
    /// plate, lamina papyracea and ethmoid septa): where the bone is 0.2-1.3 mm thick and partial
    /// volume pulls it below a fixed threshold. Empty in a phantom.json written before they were
    /// added; then the skull-base score is that of the whole slab.
    #[serde(default)]
    pub thin_plates: Vec<OrientedBox>,
    /// Half-width (mm, along the slice normal) of the slab in which the generator drew each metal
    /// object's streaks (half of max(slice thickness, spacing)). When present, "near metal" is the
    /// streak slab ([`near_metal_in_slab`]): the slices whose beam crosses the metal, within
    /// [`METAL_RADIUS_MM`] in-plane. `None` in a phantom.json written before it was added: then the
    /// 3-D capsule of [`near_segment`] is used.
    #[serde(default)]
    pub metal_slab_half_mm: Option<f64>,
}

/// A box in LPS mm: centre, three orthonormal axes (LPS unit vectors) and the half-size along each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrientedBox {
    /// What the box holds (e.g. `anterior fossa floor`).
    pub name: String,
    /// Centre, LPS mm.
    pub centre: [f64; 3],
    /// Axes, LPS unit vectors.
    pub axes: [[f64; 3]; 3],
    /// Half-sizes along the axes, mm.
    pub half_mm: [f64; 3],
}

impl OrientedBox {
    /// Whether LPS point `p` lies inside the box.
    pub fn contains(&self, p: [f64; 3]) -> bool {
        let d = [
            p[0] - self.centre[0],
            p[1] - self.centre[1],
            p[2] - self.centre[2],
        ];
        self.axes
            .iter()
            .zip(self.half_mm)
            .all(|(a, h)| (d[0] * a[0] + d[1] * a[1] + d[2] * a[2]).abs() <= h)
    }
}

#[derive(Deserialize)]
struct PhantomJson {
    regions: Option<ScoringRegions>,
    #[serde(default)]
    series_instance_uid: Option<String>,
}

impl ScoringRegions {
    /// Reads `regions` from a phantom.json.
    ///
    /// # Errors
    /// [`RegionsError::Io`], or [`RegionsError::Format`] when the file is not JSON or has no
    /// `regions` (a phantom.json from a generator before the regions were added) or holds values
    /// no generator writes (reversed skull-base slab, metal radius <= 0, ...).
    pub fn from_phantom_json(path: &Path) -> Result<ScoringRegions, RegionsError> {
        Self::read(path).map(|(r, _)| r)
    }

    /// Reads `regions` from the phantom.json of the series `series_instance_uid` (empty: not
    /// checked).
    ///
    /// # Errors
    /// As [`ScoringRegions::from_phantom_json`]; [`RegionsError::Format`] when the file names
    /// another series (the phantom.json of another scan: its regions would score the wrong places).
    pub fn for_series(path: &Path, series_instance_uid: &str) -> Result<Self, RegionsError> {
        let (regions, uid) = Self::read(path)?;
        match uid {
            Some(u) if !series_instance_uid.is_empty() && u.trim() != series_instance_uid => {
                Err(RegionsError::Format {
                    path: path.to_owned(),
                    message: format!(
                        "series_instance_uid {} is not the scanned series {series_instance_uid}: \
                         the phantom.json of another scan",
                        u.trim()
                    ),
                })
            }
            _ => Ok(regions),
        }
    }

    fn read(path: &Path) -> Result<(Self, Option<String>), RegionsError> {
        let format = |message: String| RegionsError::Format {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| RegionsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let p: PhantomJson = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let regions = p
            .regions
            .ok_or_else(|| format("no \"regions\" (regenerate the phantom)".into()))?;
        regions.check().map_err(format)?;
        Ok((regions, p.series_instance_uid))
    }

    /// Refuses values no generator writes: non-finite coordinates, a reversed skull-base slab,
    /// metal of radius <= 0, a streak slab of half-width <= 0, a thin-plate box with a size <= 0
    /// or axes that are not unit vectors.
    fn check(&self) -> Result<(), String> {
        let finite = |p: &[f64]| p.iter().all(|v| v.is_finite());
        if self.defect_rim.iter().flatten().any(|p| !finite(p)) {
            return Err("regions.defect_rim holds a non-finite coordinate".into());
        }
        let [lo, hi] = self.skull_base_z;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(format!(
                "regions.skull_base_z [{lo}, {hi}] is not an interval from bottom to top (mm)"
            ));
        }
        for (n, m) in self.metal.iter().enumerate() {
            if !(finite(&m.a) && finite(&m.b) && m.radius_mm.is_finite() && m.radius_mm > 0.0) {
                return Err(format!(
                    "regions.metal[{n}] ({}): radius_mm {} and its axis must be finite, radius > 0",
                    m.kind, m.radius_mm
                ));
            }
        }
        if let Some(h) = self.metal_slab_half_mm {
            if !(h.is_finite() && h > 0.0) {
                return Err(format!("regions.metal_slab_half_mm {h} must be > 0 (mm)"));
            }
        }
        for b in &self.thin_plates {
            let unit = b.axes.iter().all(|a| {
                finite(a) && ((a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt() - 1.0).abs() < 1e-3
            });
            if !(unit && finite(&b.centre) && b.half_mm.iter().all(|h| h.is_finite() && *h > 0.0)) {
                return Err(format!(
                    "regions.thin_plates \"{}\": axes must be unit vectors and half_mm > 0",
                    b.name
                ));
            }
        }
        Ok(())
    }

    /// The rim band of half-width `radius_mm`, or `None` without a defect.
    pub fn rim_band(&self, radius_mm: f64) -> Option<RimBand> {
        (!self.defect_rim.is_empty()).then(|| RimBand {
            polylines: self.defect_rim.clone(),
            radius_mm,
        })
    }
}

/// Voxel overlap of `predicted` and `reference` restricted to the voxels whose centre (LPS, via
/// `g`) satisfies `inside`; masks are `[k, j, i]`. `tn` is not counted (0). `None` when the region
/// holds no reference bone or the shapes differ.
pub fn overlap_where(
    predicted: &Mask,
    reference: &Mask,
    g: &Geometry,
    inside: impl Fn([f64; 3]) -> bool + Sync,
) -> Option<Overlap> {
    if predicted.dim() != reference.dim() {
        return None;
    }
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    Zip::indexed(predicted)
        .and(reference)
        .for_each(|(k, j, i), &p, &r| {
            if p == 0 && r == 0 {
                return;
            }
            if !inside(g.voxel_to_lps(k as f64, j as f64, i as f64)) {
                return;
            }
            match (p != 0, r != 0) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        });
    if tp + fn_ == 0 {
        return None;
    }
    let dsc = 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
    Some(Overlap {
        dsc,
        tp,
        fp,
        fn_,
        tn: 0,
    })
}

/// Whether `p` lies within `r` mm of the segment `a`-`b`.
pub fn near_segment(p: [f64; 3], a: [f64; 3], b: [f64; 3], r: f64) -> bool {
    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
    let l2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
    let t = if l2 > 0.0 {
        ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / l2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let d = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= r * r
}

/// Whether LPS point `p` lies in the streak slab of the metal capsule `a`-`b` (radius `r`, mm):
/// its distance along the slice normal `n` (unit) from the capsule's extent along `n` is at most
/// `half_slab_mm`, and its in-plane distance from the capsule axis at that level (the axis point
/// at the same normal coordinate, clamped to the ends) is at most `METAL_RADIUS_MM + r`.
///
/// Why a slab and not a sphere: metal streaks are reconstruction artefacts of the rays that cross
/// the metal, so they lie in the slices whose slab the metal crosses (Barrett & Keat, "Artifacts in
/// CT: recognition and avoidance", *RadioGraphics* 24:1679-1691, 2004; De Man et al., "Metal streak
/// artifacts in X-ray computed tomography: a simulation study", *IEEE Trans Nucl Sci*
/// 46:691-696, 1999). A 20 mm sphere around a 3 mm filling holds ~41 slices of 1 mm, of which ~5
/// carry streaks: on `philips-ingenuity-ub` seed 2 the threshold's DSC was 0.67-0.81 in the five
/// slices with streaks and 0.93-0.97 in the others, 0.918 over the sphere.
pub fn near_metal_in_slab(
    p: [f64; 3],
    a: [f64; 3],
    b: [f64; 3],
    r: f64,
    n: [f64; 3],
    half_slab_mm: f64,
) -> bool {
    let dot = |u: [f64; 3], v: [f64; 3]| u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    let (za, zb) = (dot(a, n), dot(b, n));
    let zp = dot(p, n);
    let (lo, hi) = (za.min(zb) - r, za.max(zb) + r);
    if zp < lo - half_slab_mm || zp > hi + half_slab_mm {
        return false;
    }
    let t = if (zb - za).abs() > 1e-9 {
        ((zp - za) / (zb - za)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let c = crate::dicom::geometry::lerp(a, b, t);
    let d = [p[0] - c[0], p[1] - c[1], p[2] - c[2]];
    let along = dot(d, n);
    let inplane = [
        d[0] - along * n[0],
        d[1] - along * n[1],
        d[2] - along * n[2],
    ];
    let rr = METAL_RADIUS_MM + r;
    dot(inplane, inplane) <= rr * rr
}

/// Region scores of one scan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegionScores {
    /// DSC inside the rim band (voxel centres within the band's half-width of the rim).
    pub rim: Option<Overlap>,
    /// DSC in the thin skull base: inside the thin-plate boxes
    /// ([`ScoringRegions::thin_plates`]) when the phantom.json has them, else in the whole slab.
    pub skull_base: Option<Overlap>,
    /// DSC in the whole skull-base slab (thick petrous bone and clivus, the lower vault and the
    /// thin plates together).
    pub skull_base_slab: Option<Overlap>,
    /// DSC near metal: in the streak slab of each object ([`near_metal_in_slab`]) when the
    /// regions give its half-width, else within [`METAL_RADIUS_MM`] of the object's axis in 3-D.
    pub metal: Option<Overlap>,
}

/// Scores `predicted` against `reference` in each region of `r`; `band` is the rim band used.
pub fn region_scores(
    predicted: &Mask,
    reference: &Mask,
    g: &Geometry,
    r: &ScoringRegions,
    band: Option<&RimBand>,
) -> RegionScores {
    let rim = band.and_then(|b| overlap_where(predicted, reference, g, |p| b.contains(p)));
    let [lo, hi] = r.skull_base_z;
    let skull_base_slab = (hi > lo)
        .then(|| overlap_where(predicted, reference, g, |p| p[2] >= lo && p[2] <= hi))
        .flatten();
    let skull_base = if r.thin_plates.is_empty() {
        skull_base_slab
    } else {
        overlap_where(predicted, reference, g, |p| {
            r.thin_plates.iter().any(|b| b.contains(p))
        })
    };
    let metal = (!r.metal.is_empty())
        .then(|| {
            let n = g.normal();
            overlap_where(predicted, reference, g, |p| {
                r.metal.iter().any(|m| match r.metal_slab_half_mm {
                    Some(h) => near_metal_in_slab(p, m.a, m.b, m.radius_mm, n, h),
                    None => near_segment(p, m.a, m.b, METAL_RADIUS_MM + m.radius_mm),
                })
            })
        })
        .flatten();
    RegionScores {
        rim,
        skull_base,
        skull_base_slab,
        metal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn capsule(a: [f64; 3], b: [f64; 3], radius_mm: f64, kind: &str) -> MetalCapsule {
        MetalCapsule {
            a,
            b,
            radius_mm,
            kind: kind.into(),
        }
    }

    fn grid(n: usize) -> Geometry {
        Geometry::unit_cube(n)
    }

    #[test]
    fn slab_overlap_counts_only_inside() {
        let g = grid(10);
        let mut r = Array3::<u8>::zeros((10, 10, 10));
        r.fill(1);
        let mut p = r.clone();
        // Prediction misses slices 0-4 entirely; slab z in [5, 9] sees a perfect match.
        p.slice_mut(ndarray::s![0..5, .., ..]).fill(0);
        let regions = ScoringRegions {
            skull_base_z: [5.0, 9.0],
            metal: vec![capsule([0.0; 3], [0.0; 3], 0.0, "clip")],
            ..ScoringRegions::default()
        };
        let s = region_scores(&p, &r, &g, &regions, None);
        let sb = s.skull_base.unwrap();
        assert_eq!((sb.tp, sb.fp, sb.fn_), (500, 0, 0));
        assert!(s.rim.is_none());
        // Near the metal at the origin (20 mm) every voxel of slices 0-4 is missed, 5-9 found.
        let m = s.metal.unwrap();
        assert_eq!(m.tp + m.fn_, 1000);
        assert_eq!(m.fn_, 500);
        assert!((m.dsc - 2.0 * 500.0 / (1000.0 + 500.0)).abs() < 1e-12);
    }

    #[test]
    fn rim_band_overlap() {
        let g = grid(10);
        let r = Array3::<u8>::from_elem((10, 10, 10), 1);
        let p = Array3::<u8>::zeros((10, 10, 10));
        let regions = ScoringRegions {
            defect_rim: vec![vec![[0.0, 0.0, 0.0]]],
            ..ScoringRegions::default()
        };
        let band = regions.rim_band(1.0).unwrap();
        let s = region_scores(&p, &r, &g, &regions, Some(&band));
        // Voxel centres within 1 mm of the origin: the origin and its 3 in-volume neighbours.
        let o = s.rim.unwrap();
        assert_eq!((o.tp, o.fp, o.fn_), (0, 0, 4));
        assert!(s.skull_base.is_none() && s.metal.is_none());
    }

    #[test]
    fn thin_plate_boxes_replace_the_slab_for_the_skull_base_score() {
        let g = grid(10);
        let r = Array3::<u8>::from_elem((10, 10, 10), 1);
        let mut p = r.clone();
        // Prediction misses the box x 0-2, y 0-2, z 0-2 (27 voxels) only.
        p.slice_mut(ndarray::s![0..3, 0..3, 0..3]).fill(0);
        let b = OrientedBox {
            name: "test".into(),
            centre: [1.0, 1.0, 1.0],
            axes: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            half_mm: [2.0, 2.0, 2.0],
        };
        assert!(b.contains([3.0, 3.0, -1.0]) && !b.contains([3.1, 0.0, 0.0]));
        let regions = ScoringRegions {
            skull_base_z: [0.0, 9.0],
            thin_plates: vec![b],
            ..ScoringRegions::default()
        };
        let s = region_scores(&p, &r, &g, &regions, None);
        // Box: voxel centres 0-3 on each axis = 64 voxels, 27 of them missed.
        let sb = s.skull_base.unwrap();
        assert_eq!((sb.tp, sb.fp, sb.fn_), (37, 0, 27));
        let slab = s.skull_base_slab.unwrap();
        assert_eq!((slab.tp, slab.fn_), (973, 27));
    }

    #[test]
    fn near_metal_slab_holds_only_the_slices_the_metal_crosses() {
        let g = grid(10);
        let r = Array3::<u8>::from_elem((10, 10, 10), 1);
        let mut p = r.clone();
        // The prediction misses slice 5 (where the metal is) and nothing else.
        p.slice_mut(ndarray::s![5, .., ..]).fill(0);
        let mut regions = ScoringRegions {
            metal: vec![capsule([2.0, 2.0, 5.0], [4.0, 2.0, 5.0], 0.4, "filling")],
            metal_slab_half_mm: Some(0.5),
            ..ScoringRegions::default()
        };
        // Slab: |z - 5| <= 0.4 + 0.5, so slice 5 only: its 100 voxels are within 20 mm in-plane.
        let m = region_scores(&p, &r, &g, &regions, None).metal.unwrap();
        assert_eq!((m.tp, m.fp, m.fn_), (0, 0, 100));
        // Without the slab width the 3-D capsule (20.4 mm) holds every voxel of the cube.
        regions.metal_slab_half_mm = None;
        let m = region_scores(&p, &r, &g, &regions, None).metal.unwrap();
        assert_eq!((m.tp, m.fp, m.fn_), (900, 0, 100));
        // Same filling, axial slices (normal +z), slab half-width 0.5 mm.
        let near = |p| {
            near_metal_in_slab(
                p,
                [2.0, 2.0, 5.0],
                [4.0, 2.0, 5.0],
                0.4,
                [0.0, 0.0, 1.0],
                0.5,
            )
        };
        assert!(!near([3.0, 2.0, 6.0]));
        assert!(near([3.0, 22.3, 5.8]));
    }
}
