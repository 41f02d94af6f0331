//! Analytic head model in LPS mm: materials with HU figures (sources in docs/phantom.md) and the
//! per-seed anatomy parameters. [`Head::material`] answers "what is at this point" for any LPS point;
//! the voxeliser samples it (supersampled at boundaries) for both the image and the exact label.
//!
//! Head frame: origin at the centre of the cranial ellipsoid, axes as LPS (x = patient left,
//! y = posterior, z = superior) after the head's pose (small yaw/pitch/roll); sizes are those of a
//! "standard" adult head scaled by [`Head::scale`].
//!
//! Submodules: [`field`] (random fields), [`cranium`] (vault, sutures, skull base, brain),
//! [`face`] (orbits, sinuses, facial bones, mandible, teeth, temporal bone, C1-C3),
//! [`extras`] (vessels, calcifications, craniotomy defects, implants, clips, head holder).

pub mod cranium;
pub mod extras;
pub mod face;
pub mod field;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::Serialize;

use field::{range, unit, SphereField};

/// What occupies a point. Bone = [`Material::is_bone`] (cortical, cancellous, dentin, enamel);
/// everything else — implants, clips, calcifications, contrast, the head holder — is not bone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum Material {
    Air = 0,
    Fat,
    Skin,
    Muscle,
    GreyMatter,
    WhiteMatter,
    Csf,
    CorticalBone,
    CancellousBone,
    Enamel,
    Dentin,
    Blood,
    Calcification,
    HolderPlastic,
    Foam,
    TableCarbon,
    Pmma,
    Titanium,
    Metal,
    Scar,
    Vitreous,
    Mucosa,
}

/// Number of [`Material`] variants.
pub const MATERIALS: usize = 22;

impl Material {
    /// `true` for the bone label: cortical and cancellous bone, dentin and enamel.
    pub fn is_bone(self) -> bool {
        matches!(
            self,
            Material::CorticalBone | Material::CancellousBone | Material::Enamel | Material::Dentin
        )
    }

    /// All variants in discriminant order.
    pub fn all() -> [Material; MATERIALS] {
        use Material::*;
        [
            Air,
            Fat,
            Skin,
            Muscle,
            GreyMatter,
            WhiteMatter,
            Csf,
            CorticalBone,
            CancellousBone,
            Enamel,
            Dentin,
            Blood,
            Calcification,
            HolderPlastic,
            Foam,
            TableCarbon,
            Pmma,
            Titanium,
            Metal,
            Scar,
            Vitreous,
            Mucosa,
        ]
    }
}

/// HU of each material for one head (true attenuation before any scanner effect; metals exceed the
/// 12-bit CT range on purpose and are clipped by the scanner model).
#[derive(Clone, Debug, Serialize)]
pub struct MaterialHu {
    /// Indexed by `Material as usize`.
    pub hu: [f32; MATERIALS],
    /// Amplitude (HU) of the trabecular texture added to cancellous bone.
    pub cancellous_texture_hu: f32,
}

impl MaterialHu {
    fn random(rng: &mut ChaCha8Rng, contrast: bool) -> MaterialHu {
        use Material::*;
        let mut hu = [0f32; MATERIALS];
        let mut set = |m: Material, lo: f64, hi: f64, rng: &mut ChaCha8Rng| {
            hu[m as usize] = range(rng, lo, hi) as f32
        };
        set(Air, -1000.0, -1000.0, rng);
        set(Fat, -110.0, -85.0, rng);
        set(Skin, 25.0, 45.0, rng);
        set(Muscle, 40.0, 58.0, rng);
        set(GreyMatter, 36.0, 44.0, rng);
        set(WhiteMatter, 24.0, 31.0, rng);
        set(Csf, 3.0, 12.0, rng);
        set(CorticalBone, 1300.0, 1900.0, rng);
        set(CancellousBone, 250.0, 650.0, rng);
        set(Enamel, 2500.0, 3000.0, rng);
        set(Dentin, 1600.0, 2100.0, rng);
        if contrast {
            set(Blood, 220.0, 400.0, rng);
        } else {
            set(Blood, 40.0, 60.0, rng);
        }
        set(Calcification, 100.0, 300.0, rng);
        set(HolderPlastic, 80.0, 320.0, rng);
        set(Foam, -960.0, -900.0, rng);
        set(TableCarbon, 150.0, 350.0, rng);
        set(Pmma, 100.0, 150.0, rng);
        set(Titanium, 5000.0, 7000.0, rng);
        set(Metal, 8000.0, 12000.0, rng);
        set(Scar, 15.0, 40.0, rng);
        set(Vitreous, 5.0, 15.0, rng);
        set(Mucosa, 20.0, 45.0, rng);
        MaterialHu {
            hu,
            cancellous_texture_hu: range(rng, 80.0, 200.0) as f32,
        }
    }
}

/// Kind of craniotomy defect (none in most heads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefectKind {
    /// 1-3 burr holes (10-14 mm) through the vault.
    BurrHoles,
    /// Bone flap put back: kerf gaps along the cut, burr holes at the corners, titanium plates.
    FlapReplaced,
    /// Bone flap missing (craniectomy): soft tissue where the bone was.
    Craniectomy,
    /// Flap replaced by a PMMA implant (100-150 HU, not bone).
    PmmaImplant,
    /// Flap replaced by a perforated titanium mesh on the outer surface (metal, not bone).
    TitaniumMesh,
}

/// One craniotomy defect: a cone around `direction` (unit, head frame) of half-angle `half_angle_deg`.
#[derive(Clone, Debug, Serialize)]
pub struct Defect {
    pub kind: DefectKind,
    /// Axis of the flap (or position of the burr holes), unit vector in the head frame.
    pub direction: [f64; 3],
    /// Half-angle of the flap cone, degrees.
    pub half_angle_deg: f64,
    /// Width of the saw cut (kerf), mm.
    pub kerf_mm: f64,
    /// Burr-hole radius, mm.
    pub burr_radius_mm: f64,
    /// Burr-hole directions (unit, head frame).
    pub burr_holes: Vec<[f64; 3]>,
}

/// A small metal object (aneurysm clip, dental filling): a capsule between two head-frame points.
#[derive(Clone, Debug, Serialize)]
pub struct MetalObject {
    /// `clip` or `filling`.
    pub kind: &'static str,
    /// End points of the capsule axis, head frame, mm.
    pub a: [f64; 3],
    pub b: [f64; 3],
    /// Capsule radius, mm.
    pub radius_mm: f64,
}

/// All per-seed parameters of one head. Serialised into phantom.json.
#[derive(Clone, Debug, Serialize)]
pub struct Head {
    pub seed: u64,
    /// LPS position (mm) of the head-frame origin (centre of the cranial ellipsoid).
    pub center_lps: [f64; 3],
    /// Pose: yaw (about S), pitch (about L), roll (about P), degrees.
    pub pose_deg: [f64; 3],
    /// Isotropic size factor relative to the standard head.
    pub scale: f64,
    /// Outer-table semi-axes of the cranial vault (standard head mm): left-right, antero-posterior,
    /// superior; the inferior half uses `cranium_inferior_mm`.
    pub cranium_semi_axes_mm: [f64; 3],
    pub cranium_inferior_mm: f64,
    /// Vault thickness range (outer to inner table), mm; each head varies in 2-10 mm.
    pub vault_thickness_mm: [f64; 2],
    /// Outer and inner table (cortical) thickness, mm.
    pub outer_table_mm: f64,
    pub inner_table_mm: f64,
    /// Scalp thickness (skin + fat + galea), mm.
    pub scalp_mm: f64,
    /// Subarachnoid CSF layer, mm (larger = atrophy).
    pub csf_mm: f64,
    /// Half-width of the lateral ventricles, mm.
    pub ventricle_mm: f64,
    /// Suture gap width, mm (0 = fused).
    pub suture_mm: f64,
    /// Thickness of the thinnest plates (cribriform, lamina papyracea, ethmoid septa, anterior
    /// maxillary wall), mm: 0.2-0.8. The lamina papyracea is "paper-thin", about 0.2-0.4 mm
    /// (Standring, *Gray's Anatomy*, 41st ed., orbit; figure not checked against a primary
    /// measurement here); the orbital roofs and cribriform plate are this + 0.3 mm.
    pub thin_plate_mm: f64,
    /// Size factor of the paranasal sinuses.
    pub sinus_scale: f64,
    /// Contrast-enhanced vessels.
    pub contrast: bool,
    /// Radius of the calcified pineal gland (0 = none), mm.
    pub pineal_mm: f64,
    /// Radius of the choroid-plexus calcifications (0 = none), mm.
    pub choroid_mm: f64,
    /// Missing teeth (index 0-13 upper, 14-27 lower).
    pub missing_teeth: Vec<usize>,
    pub defect: Option<Defect>,
    pub metal: Vec<MetalObject>,
    pub materials: MaterialHu,
    /// Bone mineral factor of this head: cortical and cancellous HU (and the diploe texture) are
    /// the standard figures times this, 0.6-1.15 ([`BONE_DENSITY_RANGE`]). 1 when
    /// `homogeneous_skull`.
    pub bone_density_scale: f64,
    /// Tables and diploe of one density, as in anthropomorphic phantoms whose skull simulant is a
    /// uniform bone-equivalent resin (10 % of heads, [`HOMOGENEOUS_SKULL_P`]).
    pub homogeneous_skull: bool,
    #[serde(skip)]
    pub(crate) rot: [[f64; 3]; 3],
    #[serde(skip)]
    pub(crate) shape_field: SphereField,
    #[serde(skip)]
    pub(crate) thickness_field: SphereField,
}

impl Head {
    /// Random head for `seed` (ChaCha8 stream; the same seed always gives the same head).
    /// `craniotomy`: `Some(true)` forces a defect, `Some(false)` forbids one, `None` draws one with
    /// probability 0.4.
    pub fn random(seed: u64, craniotomy: Option<bool>) -> Head {
        Head::random_with(seed, craniotomy, None)
    }

    /// As [`Head::random`], with the skull's kind forced: `homogeneous` `Some(true)` makes a
    /// homogeneous (resin-like) skull, `Some(false)` a layered one with tables and diploe, `None`
    /// draws it ([`HOMOGENEOUS_SKULL_P`]). The side generator's draws are the same either way, so
    /// every other parameter of the seed's head (and its density scale, when layered) is
    /// unchanged.
    pub fn random_with(seed: u64, craniotomy: Option<bool>, homogeneous: Option<bool>) -> Head {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05_7e_0e_4e_ad);
        let pose_deg = [
            range(&mut rng, -6.0, 6.0),
            range(&mut rng, -8.0, 8.0),
            range(&mut rng, -4.0, 4.0),
        ];
        let scale = range(&mut rng, 0.92, 1.06);
        let contrast = unit(&mut rng) < 0.4;
        let t_min = range(&mut rng, 2.0, 3.5);
        let t_max = range(&mut rng, 6.0, 10.0);
        let shape_field = SphereField::new(&mut rng, 7, 2.5);
        let thickness_field = SphereField::new(&mut rng, 6, 2.0);
        let with_defect = craniotomy.unwrap_or_else(|| unit(&mut rng) < 0.4);
        let defect = with_defect.then(|| extras::random_defect(&mut rng));
        let mut missing_teeth = Vec::new();
        for _ in 0..(unit(&mut rng) * 4.0) as usize {
            missing_teeth.push((unit(&mut rng) * 28.0) as usize);
        }
        let metal = extras::random_metal(&mut rng, defect.as_ref());
        let mut materials = MaterialHu::random(&mut rng, contrast);
        // Bone mineral variation from a side generator seeded by the seed alone, so the main
        // stream (every other parameter of a seed's head) is unchanged.
        let mut side = ChaCha8Rng::seed_from_u64(field::mix64(seed ^ 0xb0_4e_de_45));
        let (bone_density_scale, homogeneous_skull) =
            bone_mineral(&mut side, &mut materials, homogeneous);
        let mut head = Head {
            seed,
            center_lps: [
                range(&mut rng, -4.0, 4.0),
                range(&mut rng, -4.0, 4.0),
                range(&mut rng, -3.0, 3.0),
            ],
            pose_deg,
            scale,
            cranium_semi_axes_mm: [
                range(&mut rng, 68.0, 76.0),
                range(&mut rng, 88.0, 96.0),
                range(&mut rng, 66.0, 74.0),
            ],
            cranium_inferior_mm: range(&mut rng, 52.0, 58.0),
            vault_thickness_mm: [t_min, t_max],
            outer_table_mm: range(&mut rng, 1.0, 2.0),
            inner_table_mm: range(&mut rng, 0.7, 1.5),
            scalp_mm: range(&mut rng, 4.0, 8.0),
            csf_mm: range(&mut rng, 1.0, 4.0),
            ventricle_mm: range(&mut rng, 4.0, 9.0),
            suture_mm: if unit(&mut rng) < 0.7 {
                range(&mut rng, 0.3, 1.2)
            } else {
                0.0
            },
            thin_plate_mm: range(&mut rng, 0.2, 0.8),
            sinus_scale: range(&mut rng, 0.75, 1.15),
            contrast,
            pineal_mm: if unit(&mut rng) < 0.7 {
                range(&mut rng, 1.5, 4.0)
            } else {
                0.0
            },
            choroid_mm: if unit(&mut rng) < 0.5 {
                range(&mut rng, 1.5, 3.0)
            } else {
                0.0
            },
            missing_teeth,
            defect,
            metal,
            materials,
            bone_density_scale,
            homogeneous_skull,
            rot: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            shape_field,
            thickness_field,
        };
        head.rot = rotation(head.pose_deg);
        let plates = extras::fixation_plates(&head);
        head.metal.extend(plates);
        head
    }

    /// Head-frame point (standard-head mm) of an LPS point.
    pub fn to_head(&self, p: [f64; 3]) -> [f64; 3] {
        let d = [
            p[0] - self.center_lps[0],
            p[1] - self.center_lps[1],
            p[2] - self.center_lps[2],
        ];
        let r = &self.rot;
        // q = R^T d / scale
        let s = 1.0 / self.scale;
        [
            (r[0][0] * d[0] + r[1][0] * d[1] + r[2][0] * d[2]) * s,
            (r[0][1] * d[0] + r[1][1] * d[1] + r[2][1] * d[2]) * s,
            (r[0][2] * d[0] + r[1][2] * d[1] + r[2][2] * d[2]) * s,
        ]
    }

    /// LPS point of a head-frame point (inverse of [`Head::to_head`]).
    pub fn to_lps(&self, q: [f64; 3]) -> [f64; 3] {
        let r = &self.rot;
        let s = self.scale;
        let mut p = self.center_lps;
        for (a, pa) in p.iter_mut().enumerate() {
            *pa += s * (r[a][0] * q[0] + r[a][1] * q[1] + r[a][2] * q[2]);
        }
        p
    }

    /// Material at an LPS point (mm).
    pub fn material(&self, p: [f64; 3]) -> Material {
        let q = self.to_head(p);
        if let Some(m) = extras::metal_at(self, q) {
            return m;
        }
        if let Some(m) = face::teeth_at(self, q) {
            return m;
        }
        let pol = self.polar(q);
        let body = extras::body_depth(self, q, &pol);
        if body <= 0.0 {
            return extras::fixture_at(self, p);
        }
        if let Some(m) = cranium::cranium_at(self, q, &pol) {
            return m;
        }
        if let Some(m) = face::face_at(self, q) {
            return m;
        }
        extras::soft_tissue(self, q, body)
    }

    /// HU of `m` at LPS point `p` (texture for cancellous bone), before any scanner effect.
    pub fn hu(&self, m: Material, p: [f64; 3]) -> f32 {
        let base = self.materials.hu[m as usize];
        if m == Material::CancellousBone {
            let t = field::value_noise(self.seed ^ 0xb0e, [p[0] * 0.9, p[1] * 0.9, p[2] * 0.9]);
            base + self.materials.cancellous_texture_hu * t as f32
        } else {
            base
        }
    }
}

/// Range of [`Head::bone_density_scale`]. Cortical and trabecular bone density fall with age and
/// osteoporosis: vertebral trabecular HU of osteoporotic patients is about half that of normal
/// bone (Schreiber et al., "Hounsfield units for assessing bone mineral density and strength",
/// *J Bone Joint Surg Am* 93:1057-1063, 2011), and cortical density also falls with age (less,
/// by roughly 5-15 % from young adults to the elderly; figure not checked against a primary
/// measurement here).
/// 0.6 covers an osteoporotic elderly skull and scanners/kV that under-read bone; 1.15 a dense
/// young skull. With the standard 1300-1900 HU tables and 250-650 HU diploe, the low end gives
/// 780-1140 HU tables and 150-390 HU diploe, where a 226 HU threshold starts to lose diploe.
pub const BONE_DENSITY_RANGE: [f64; 2] = [0.6, 1.15];

/// Probability of a homogeneous skull ([`Head::homogeneous_skull`]).
pub const HOMOGENEOUS_SKULL_P: f64 = 0.1;

/// HU range of a homogeneous skull: anthropomorphic head phantoms use bone-equivalent resins of
/// roughly cortical-to-average-skull density (e.g. 400-1000 HU at 120 kV; the Philips head phantom
/// of `../shared/data` reads ~600 HU).
pub const HOMOGENEOUS_SKULL_HU: [f64; 2] = [450.0, 1000.0];

/// Draws the bone mineral variation of one head from `side` and applies it to `materials`
/// (cortical and cancellous bone; teeth unchanged): returns (density scale, homogeneous skull).
/// `force` overrides the homogeneous-skull draw (the draw is still taken).
fn bone_mineral(
    side: &mut ChaCha8Rng,
    materials: &mut MaterialHu,
    force: Option<bool>,
) -> (f64, bool) {
    let scale = range(side, BONE_DENSITY_RANGE[0], BONE_DENSITY_RANGE[1]);
    let drawn = unit(side) < HOMOGENEOUS_SKULL_P;
    let homogeneous = force.unwrap_or(drawn);
    let hu_one = range(side, HOMOGENEOUS_SKULL_HU[0], HOMOGENEOUS_SKULL_HU[1]) as f32;
    let (c, t) = (
        Material::CorticalBone as usize,
        Material::CancellousBone as usize,
    );
    if homogeneous {
        materials.hu[c] = hu_one;
        materials.hu[t] = hu_one;
        // A cast resin has no trabecular structure; a little texture for density variation.
        materials.cancellous_texture_hu *= 0.3;
        return (1.0, true);
    }
    materials.hu[c] *= scale as f32;
    materials.hu[t] *= scale as f32;
    materials.cancellous_texture_hu *= scale as f32;
    (scale, false)
}

/// Rotation matrix (columns = head axes in LPS) for yaw about z, pitch about x, roll about y.
fn rotation(pose_deg: [f64; 3]) -> [[f64; 3]; 3] {
    let [yaw, pitch, roll] = pose_deg.map(f64::to_radians);
    let rz = [
        [yaw.cos(), -yaw.sin(), 0.0],
        [yaw.sin(), yaw.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, pitch.cos(), -pitch.sin()],
        [0.0, pitch.sin(), pitch.cos()],
    ];
    let ry = [
        [roll.cos(), 0.0, roll.sin()],
        [0.0, 1.0, 0.0],
        [-roll.sin(), 0.0, roll.cos()],
    ];
    mat_mul(mat_mul(rz, rx), ry)
}

fn mat_mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// Distance (mm) from `p` to the segment `a`-`b`, and the parameter `t` in `[0, 1]` of the nearest
/// point.
pub fn segment_distance(p: [f64; 3], a: [f64; 3], b: [f64; 3]) -> (f64, f64) {
    let ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let ap = [p[0] - a[0], p[1] - a[1], p[2] - a[2]];
    let len2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
    let t = if len2 > 0.0 {
        ((ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let d = [ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]];
    ((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt(), t)
}

/// Approximate depth (mm, > 0 inside) of `p` in the ellipsoid centred at `c` with semi-axes `r`:
/// `(1 - ρ) · |p - c| / ρ` with `ρ` the normalised radius (exact for a sphere).
pub fn ellipsoid_depth(p: [f64; 3], c: [f64; 3], r: [f64; 3]) -> f64 {
    let d = [p[0] - c[0], p[1] - c[1], p[2] - c[2]];
    let rho = ((d[0] / r[0]).powi(2) + (d[1] / r[1]).powi(2) + (d[2] / r[2]).powi(2)).sqrt();
    if rho < 1e-9 {
        return r[0].min(r[1]).min(r[2]);
    }
    let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    (1.0 - rho) * len / rho
}

/// Bone material at depth `depth` (mm) inside a bony structure whose cortex is `cortex` mm thick.
pub fn bone(depth: f64, cortex: f64) -> Material {
    if depth < cortex {
        Material::CorticalBone
    } else {
        Material::CancellousBone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bone_density_scale_spans_its_range_and_one_head_in_ten_is_homogeneous() {
        let heads: Vec<Head> = (1u64..=300).map(|s| Head::random(s, Some(false))).collect();
        let scales: Vec<f64> = heads
            .iter()
            .filter(|h| !h.homogeneous_skull)
            .map(|h| h.bone_density_scale)
            .collect();
        let min = scales.iter().cloned().fold(f64::MAX, f64::min);
        let max = scales.iter().cloned().fold(f64::MIN, f64::max);
        assert!(min >= 0.6 && min < 0.63, "min scale {min}");
        assert!(max <= 1.15 && max > 1.12, "max scale {max}");
        let low = scales.iter().filter(|&&s| s < 0.75).count();
        assert!(low > 40, "{low} of {} heads below 0.75", scales.len());
        let homogeneous = heads.iter().filter(|h| h.homogeneous_skull).count();
        assert!(
            (15..=45).contains(&homogeneous),
            "{homogeneous} homogeneous"
        );
        for h in &heads {
            let c = h.materials.hu[Material::CorticalBone as usize];
            let t = h.materials.hu[Material::CancellousBone as usize];
            if h.homogeneous_skull {
                assert_eq!(c, t);
                assert!((450.0..=1000.0).contains(&c), "{c}");
            } else {
                let s = h.bone_density_scale as f32;
                assert!(c >= 1300.0 * s - 0.5 && c <= 1900.0 * s + 0.5, "{c} at {s}");
                assert!(t >= 250.0 * s - 0.5 && t <= 650.0 * s + 0.5, "{t} at {s}");
            }
            // Teeth keep their density.
            assert!(h.materials.hu[Material::Enamel as usize] >= 2500.0);
        }
    }

    #[test]
    fn bone_mineral_draws_do_not_change_the_rest_of_the_head() {
        // Values of seed 1 drawn from the main stream, as before the bone mineral variation was
        // added (it comes from a side generator).
        let h = Head::random(1, None);
        assert!((h.scale - 0.9293999108523878).abs() < 1e-12, "{}", h.scale);
        assert!((h.vault_thickness_mm[1] - 8.543121314754387).abs() < 1e-12);
        assert!((h.materials.hu[Material::Fat as usize] + 90.77388).abs() < 1e-4);
        assert!((h.bone_density_scale - 0.9373657675479157).abs() < 1e-12);
    }

    #[test]
    fn the_skull_kind_can_be_forced_without_changing_the_rest_of_the_head() {
        let drawn = Head::random(1, None);
        assert!(!drawn.homogeneous_skull);
        let resin = Head::random_with(1, None, Some(true));
        assert!(resin.homogeneous_skull);
        let (c, t) = (
            resin.materials.hu[Material::CorticalBone as usize],
            resin.materials.hu[Material::CancellousBone as usize],
        );
        assert_eq!(c, t);
        assert!((450.0..=1000.0).contains(&c), "{c}");
        assert_eq!(resin.bone_density_scale, 1.0);
        // Shape, pose and the soft tissues are the seed's.
        assert_eq!(resin.scale, drawn.scale);
        assert_eq!(resin.vault_thickness_mm, drawn.vault_thickness_mm);
        assert_eq!(
            resin.materials.hu[Material::Fat as usize],
            drawn.materials.hu[Material::Fat as usize]
        );
        // Forcing the drawn kind changes nothing.
        let layered = Head::random_with(1, None, Some(false));
        assert_eq!(layered.bone_density_scale, drawn.bone_density_scale);
        assert_eq!(
            layered.materials.hu[Material::CorticalBone as usize],
            drawn.materials.hu[Material::CorticalBone as usize]
        );
    }
}
