//! What is not plain anatomy: skin envelope and soft tissue, contrast vessels and calcifications
//! (bright but not bone), craniotomy defects and implants, metal objects, head holder, foam and table.

use rand_chacha::ChaCha8Rng;

use super::cranium::Polar;
use super::field::{cell_wall_distance, range, unit, value_noise};
use super::{
    ellipsoid_depth, face, segment_distance, Defect, DefectKind, Head, Material, MetalObject,
};

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(a: [f64; 3]) -> [f64; 3] {
    let n = dot(a, a).sqrt().max(1e-12);
    [a[0] / n, a[1] / n, a[2] / n]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Orthonormal pair perpendicular to unit `d`.
fn basis(d: [f64; 3]) -> ([f64; 3], [f64; 3]) {
    let helper = if d[2].abs() < 0.9 {
        [0.0, 0.0, 1.0]
    } else {
        [1.0, 0.0, 0.0]
    };
    let e1 = normalize(cross(d, helper));
    (e1, cross(d, e1))
}

/// Direction at angle `a` (rad) from `d` towards azimuth `psi`.
pub(crate) fn tilt(d: [f64; 3], a: f64, psi: f64) -> [f64; 3] {
    let (e1, e2) = basis(d);
    let (c, s) = (a.cos(), a.sin());
    normalize([
        c * d[0] + s * (psi.cos() * e1[0] + psi.sin() * e2[0]),
        c * d[1] + s * (psi.cos() * e1[1] + psi.sin() * e2[1]),
        c * d[2] + s * (psi.cos() * e1[2] + psi.sin() * e2[2]),
    ])
}

/// A random craniotomy on the upper vault.
pub fn random_defect(rng: &mut ChaCha8Rng) -> Defect {
    let kinds = [
        DefectKind::BurrHoles,
        DefectKind::FlapReplaced,
        DefectKind::Craniectomy,
        DefectKind::PmmaImplant,
        DefectKind::TitaniumMesh,
    ];
    let kind = kinds[((unit(rng) * kinds.len() as f64) as usize).min(kinds.len() - 1)];
    let az = range(rng, 0.0, std::f64::consts::TAU);
    let el = range(rng, 15.0, 60.0).to_radians();
    let direction = [el.cos() * az.cos(), el.cos() * az.sin(), el.sin()];
    let half_angle_deg = range(rng, 18.0, 32.0);
    let mut burr_holes = Vec::new();
    if kind == DefectKind::BurrHoles {
        for _ in 0..(1 + (unit(rng) * 3.0) as usize).min(3) {
            let a = range(rng, 0.0, 25.0).to_radians();
            burr_holes.push(tilt(direction, a, range(rng, 0.0, std::f64::consts::TAU)));
        }
    } else {
        let n = 3 + (unit(rng) * 2.0) as usize;
        let psi0 = range(rng, 0.0, std::f64::consts::TAU);
        for k in 0..n {
            let psi = psi0 + k as f64 * std::f64::consts::TAU / n as f64;
            burr_holes.push(tilt(direction, half_angle_deg.to_radians(), psi));
        }
    }
    Defect {
        kind,
        direction,
        half_angle_deg,
        kerf_mm: range(rng, 1.2, 2.5),
        burr_radius_mm: range(rng, 5.0, 7.0),
        burr_holes,
    }
}

/// Aneurysm clips (probability 0.3) and dental amalgam fillings (probability 0.45): one filled
/// molar, and in 70 % of those heads 1-3 more on other molars. Adults with restorations usually have
/// several (caries experience accumulates over the molars first); several fillings in one slice
/// are what produces the dark bands between metal objects (Boas & Fleischmann 2012, see
/// `render::streaks`). The extra fillings come from a generator seeded by one draw of a copy of
/// `rng`, so the main stream (and so every other parameter of a seed's head) is unchanged.
pub fn random_metal(rng: &mut ChaCha8Rng, _defect: Option<&Defect>) -> Vec<MetalObject> {
    let mut out = Vec::new();
    if unit(rng) < 0.3 {
        for _ in 0..(1 + (unit(rng) * 2.0) as usize).min(2) {
            let c = [
                range(rng, -18.0, 18.0),
                range(rng, -18.0, -2.0),
                range(rng, -30.0, -20.0),
            ];
            let ax = normalize([
                range(rng, -1.0, 1.0),
                range(rng, -1.0, 1.0),
                range(rng, -1.0, 1.0),
            ]);
            let h = range(rng, 3.0, 5.0);
            out.push(MetalObject {
                kind: "clip",
                a: [c[0] - h * ax[0], c[1] - h * ax[1], c[2] - h * ax[2]],
                b: [c[0] + h * ax[0], c[1] + h * ax[1], c[2] + h * ax[2]],
                radius_mm: range(rng, 1.0, 1.5),
            });
        }
    }
    if unit(rng) < 0.45 {
        let molars = [5usize, 6, 12, 13, 19, 20, 26, 27];
        let n = molars[((unit(rng) * 8.0) as usize).min(7)];
        let t = face::teeth()[n];
        let z = if t.upper { -109.5 } else { -116.5 };
        out.push(MetalObject {
            kind: "filling",
            a: [t.x - 1.6, t.y, z],
            b: [t.x + 1.6, t.y, z],
            radius_mm: range(rng, 1.4, 2.0),
        });
        let mut side = {
            use rand_core::{RngCore, SeedableRng};
            ChaCha8Rng::seed_from_u64(rng.clone().next_u64() ^ 0xf111_1a9e)
        };
        if unit(&mut side) < 0.7 {
            let extra = 1 + ((unit(&mut side) * 3.0) as usize).min(2);
            let mut taken = vec![n];
            for _ in 0..extra {
                let m = molars[((unit(&mut side) * 8.0) as usize).min(7)];
                if taken.contains(&m) {
                    continue;
                }
                taken.push(m);
                let t = face::teeth()[m];
                let z = if t.upper { -109.5 } else { -116.5 };
                out.push(MetalObject {
                    kind: "filling",
                    a: [t.x - 1.6, t.y, z],
                    b: [t.x + 1.6, t.y, z],
                    radius_mm: range(&mut side, 1.4, 2.0),
                });
            }
        }
    }
    out
}

/// Titanium fixation plates across the kerf of a replaced flap (2-4 plates on the outer table).
pub fn fixation_plates(head: &Head) -> Vec<MetalObject> {
    let Some(d) = &head.defect else {
        return vec![];
    };
    if d.kind != DefectKind::FlapReplaced {
        return vec![];
    }
    let a = d.half_angle_deg.to_radians();
    (0..3)
        .map(|k| {
            let psi = 0.7 + k as f64 * 2.1;
            let p = |ang: f64| {
                let u = tilt(d.direction, ang, psi);
                let r = head.polar(u).r_out + 0.8;
                [u[0] * r, u[1] * r, u[2] * r]
            };
            MetalObject {
                kind: "plate",
                a: p(a - 0.06),
                b: p(a + 0.06),
                radius_mm: 0.8,
            }
        })
        .collect()
}

/// Metal at `q` (clips, fillings: [`Material::Metal`]; plates: [`Material::Titanium`]).
pub fn metal_at(head: &Head, q: [f64; 3]) -> Option<Material> {
    for m in &head.metal {
        let (d, _) = segment_distance(q, m.a, m.b);
        if d < m.radius_mm {
            return Some(if m.kind == "plate" {
                Material::Titanium
            } else {
                Material::Metal
            });
        }
    }
    None
}

/// Craniotomy at a vault-bone point `q` (`depth` mm below the outer table); `None` = bone stays.
pub fn defect_at(head: &Head, q: [f64; 3], pol: &Polar, depth: f64) -> Option<Material> {
    let d = head.defect.as_ref()?;
    let r = pol.r;
    for b in &d.burr_holes {
        let c = dot(pol.u, *b).clamp(-1.0, 1.0);
        if c > 0.9 && c.acos() * r < d.burr_radius_mm {
            return Some(Material::Scar);
        }
    }
    let alpha = d.half_angle_deg.to_radians();
    let c = dot(pol.u, d.direction).clamp(-1.0, 1.0);
    if c < (alpha + 0.1).cos() {
        return None;
    }
    let arc = (c.acos() - alpha) * r; // mm along the surface, < 0 inside the cut
    match d.kind {
        DefectKind::BurrHoles => None,
        DefectKind::FlapReplaced => (arc.abs() < d.kerf_mm / 2.0).then_some(Material::Scar),
        DefectKind::Craniectomy => (arc < 0.0).then_some(Material::Scar),
        DefectKind::PmmaImplant => {
            if arc < -0.8 {
                Some(Material::Pmma)
            } else {
                (arc < 0.0).then_some(Material::Scar)
            }
        }
        DefectKind::TitaniumMesh => {
            if arc >= 0.0 {
                None
            } else if depth < 0.7
                && cell_wall_distance(head.seed ^ 0x71, [q[0] / 3.0, q[1] / 3.0, q[2] / 3.0]) < 0.12
            {
                Some(Material::Titanium)
            } else {
                Some(Material::Scar)
            }
        }
    }
}

/// Bright intracranial non-bone: calcified pineal and choroid plexus, dural sinuses and arteries
/// (contrast-filled when [`Head::contrast`]). `e`: depth below the inner table, mm.
pub fn intracranial_bright(head: &Head, q: [f64; 3], e: f64) -> Option<Material> {
    let [x, y, z] = q;
    if head.pineal_mm > 0.0
        && x * x + (y - 26.0).powi(2) + (z - 4.0).powi(2) < head.pineal_mm.powi(2)
    {
        return Some(Material::Calcification);
    }
    if head.choroid_mm > 0.0 {
        for sx in [-1.0, 1.0] {
            if (x - sx * 21.0).powi(2) + (y - 28.0).powi(2) + (z - 12.0).powi(2)
                < head.choroid_mm.powi(2)
            {
                return Some(Material::Calcification);
            }
        }
    }
    // Superior sagittal and transverse sinuses, just inside the inner table.
    if z > 10.0 && y > -60.0 && x.abs() < 4.0 - 0.5 * e && e < 6.0 {
        return Some(Material::Blood);
    }
    if y > 40.0 && (z + 36.0).abs() < 3.5 && e < 7.0 {
        return Some(Material::Blood);
    }
    if z < -18.0 {
        let (d, _) = segment_distance(q, [0.0, 22.0, -39.0], [0.0, 9.0, -27.0]);
        if d < 1.6 {
            return Some(Material::Blood);
        }
        for sx in [-1.0, 1.0] {
            for (a, b, r) in [
                ([16.0, -10.0, -44.0], [14.0, -14.0, -26.0], 2.4),
                ([14.0, -14.0, -26.0], [40.0, -10.0, -21.0], 1.5),
                ([14.0, -14.0, -26.0], [2.0, -30.0, -20.0], 1.2),
            ] {
                let (d, _) = segment_distance(q, [sx * a[0], a[1], a[2]], [sx * b[0], b[1], b[2]]);
                if d < r {
                    return Some(Material::Blood);
                }
            }
        }
    }
    None
}

/// Carotid and vertebral arteries and jugular veins in the neck (through the carotid canal).
pub fn neck_vessels(_head: &Head, q: [f64; 3]) -> Option<Material> {
    if q[2] > -40.0 {
        return None;
    }
    for sx in [-1.0, 1.0] {
        if sx * q[0] < 0.0 {
            continue;
        }
        for (a, b, r) in [
            ([20.0, -4.0, -160.0], [18.0, -6.0, -60.0], 2.6),
            ([18.0, -6.0, -60.0], [16.0, -10.0, -44.0], 2.4),
            ([26.0, 10.0, -160.0], [31.0, 24.0, -48.0], 4.5),
            ([29.0, 16.0, -160.0], [29.0, 16.0, -64.0], 1.8),
            ([29.0, 16.0, -64.0], [8.0, 14.0, -52.0], 1.8),
        ] {
            let (d, _) = segment_distance(q, [sx * a[0], a[1], a[2]], [sx * b[0], b[1], b[2]]);
            if d < r {
                return Some(Material::Blood);
            }
        }
    }
    None
}

/// Depth (mm) below the skin: > 0 inside the body (cranium + scalp, face, nose, neck).
pub fn body_depth(head: &Head, q: [f64; 3], pol: &Polar) -> f64 {
    let mut depth = f64::NEG_INFINITY;
    if q[2] > -50.0 {
        let u = pol.u;
        let bump = |e0: f64, e1: f64, x: f64| {
            let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
            t * t * (3.0 - 2.0 * t)
        };
        // Temporalis muscle: a smooth bulge over the temporal squama.
        let temporal = 5.0
            * bump(0.55, 0.8, u[0].abs())
            * bump(-0.7, -0.45, u[2])
            * (1.0 - bump(0.15, 0.4, u[2]));
        depth = pol.r_out + head.scalp_mm + temporal - pol.r;
    }
    if q[2] < -5.0 {
        depth = depth.max(ellipsoid_depth(q, [0.0, -10.0, -80.0], [66.0, 84.0, 68.0]));
        depth = depth.max(ellipsoid_depth(q, [0.0, -96.0, -64.0], [11.0, 12.0, 24.0]));
    }
    if q[2] < -95.0 {
        let rho = (q[0] * q[0] + ((q[1] - 15.0) * 54.0 / 52.0).powi(2)).sqrt();
        depth = depth.max(54.0 - rho);
    }
    depth
}

/// Skin, subcutaneous fat, then muscle with fat pockets.
pub fn soft_tissue(head: &Head, q: [f64; 3], depth: f64) -> Material {
    if depth < 1.5 {
        return Material::Skin;
    }
    if depth < 4.0 {
        return Material::Fat;
    }
    if q[2] < -60.0 && value_noise(head.seed ^ 0xfa, [q[0] / 11.0, q[1] / 11.0, q[2] / 11.0]) > 0.35
    {
        return Material::Fat;
    }
    Material::Muscle
}

/// Radius (LPS mm, about the head centre's z axis) of the inside of the head holder cradle.
pub fn holder_radius(head: &Head) -> f64 {
    (head.cranium_semi_axes_mm[1] + head.scalp_mm + 9.0) * head.scale
}

/// Outside the body: foam pad, plastic cradle (posterior half), carbon table, else air. Works in LPS
/// about the head centre (the holder does not follow the head's pose).
pub fn fixture_at(head: &Head, p: [f64; 3]) -> Material {
    let dx = p[0] - head.center_lps[0];
    let dy = p[1] - head.center_lps[1];
    let dz = p[2] - head.center_lps[2];
    if dy < 20.0 || dz < -130.0 || dz > 70.0 {
        return Material::Air;
    }
    let rh = holder_radius(head);
    let rho = (dx * dx + dy * dy).sqrt();
    if rho >= rh && rho < rh + 4.0 {
        return Material::HolderPlastic;
    }
    if rho >= rh - 9.0 && rho < rh && dy > 45.0 {
        return Material::Foam;
    }
    let t = rh + 16.0;
    if dx.abs() < 220.0 && ((dy >= t && dy < t + 2.0) || (dy >= t + 10.0 && dy < t + 12.0)) {
        return Material::TableCarbon;
    }
    if dx.abs() < 220.0 && dy >= t + 2.0 && dy < t + 10.0 {
        return Material::Foam;
    }
    Material::Air
}
