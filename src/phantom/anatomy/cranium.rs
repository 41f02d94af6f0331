//! Cranial vault (outer table, diploe, inner table; thickness varying over the head within the
//! per-head 2-10 mm range), sutures, skull base (fossae, foramina, thin cribriform plate and orbital
//! roofs) and the intracranial contents (CSF, grey and white matter, ventricles).

use super::field::cell_wall_distance;
use super::{bone, ellipsoid_depth, extras, face, Head, Material};

/// Polar description of a head-frame point relative to the vault: radius, unit direction, outer
/// table radius along that direction and vault thickness there (all mm).
#[derive(Clone, Copy, Debug)]
pub struct Polar {
    pub r: f64,
    pub u: [f64; 3],
    pub r_out: f64,
    pub thickness: f64,
}

fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Head {
    /// [`Polar`] of head-frame point `q`.
    pub fn polar(&self, q: [f64; 3]) -> Polar {
        let r = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt().max(1e-9);
        let u = [q[0] / r, q[1] / r, q[2] / r];
        let [a, b, c_up] = self.cranium_semi_axes_mm;
        let c = if u[2] >= 0.0 {
            c_up
        } else {
            self.cranium_inferior_mm
        };
        let re = 1.0 / ((u[0] / a).powi(2) + (u[1] / b).powi(2) + (u[2] / c).powi(2)).sqrt();
        let r_out = re * (1.0 + 0.025 * self.shape_field.eval(u));
        let [tmin, tmax] = self.vault_thickness_mm;
        let mut t = tmin + (tmax - tmin) * (0.5 + 0.5 * self.thickness_field.eval(u));
        // Temporal squama: the thinnest part of the vault.
        let temporal = smoothstep(0.6, 0.8, u[0].abs()) * (1.0 - smoothstep(0.2, 0.45, u[2]));
        t = t * (1.0 - 0.5 * temporal);
        // Frontal bone thickens around the frontal sinus.
        let f = -0.97 * u[1] - 0.24 * u[2];
        t += 11.0 * smoothstep(0.955, 0.99, f) * self.sinus_scale;
        Polar {
            r,
            u,
            r_out,
            thickness: t.max(tmin.min(2.0)).max(2.0),
        }
    }
}

/// Floor of the cranial cavity (z, head frame mm) and the plate thickness below it at `(x, y)`.
pub fn skull_base(head: &Head, x: f64, y: f64) -> (f64, f64) {
    let ant = 1.0 - smoothstep(-36.0, -24.0, y);
    let post = smoothstep(8.0, 22.0, y);
    let mid = 1.0 - ant - post;
    let central = 1.0 - smoothstep(10.0, 16.0, x.abs());
    let mut z = ant * -20.0 + mid * (-36.0 + 12.0 * central) + post * (-44.0 - 2.0 * central);
    // Sella turcica: a pit in the sphenoid body.
    let sella = ((x * x + (y + 8.0) * (y + 8.0)).sqrt() / 7.0).min(1.0);
    z -= 7.0 * (1.0 - sella * sella) * mid;
    let thin = head.thin_plate_mm + 0.3;
    let t = ant * thin + mid * (3.0 + 3.0 * central) + post * 5.0;
    (z, t)
}

/// Material of `q` when it belongs to the cranium (vault bone, skull base or cranial cavity);
/// `None` below the skull base and outside the outer table.
pub fn cranium_at(head: &Head, q: [f64; 3], pol: &Polar) -> Option<Material> {
    let depth = pol.r_out - pol.r;
    if depth < 0.0 {
        return None;
    }
    let (zb, tb) = skull_base(head, q[0], q[1]);
    if q[2] < zb - tb {
        return None;
    }
    let t = pol.thickness;
    if depth < t {
        return Some(vault_bone(head, q, pol, depth));
    }
    if q[2] < zb {
        return Some(base_plate(head, q, zb, tb));
    }
    // Cranial cavity.
    if let Some(m) = face::intracranial_bone(head, q) {
        return Some(m);
    }
    if let Some(m) = extras::intracranial_bright(head, q, depth - t) {
        return Some(m);
    }
    Some(brain(head, q, (depth - t).min(q[2] - zb)))
}

fn vault_bone(head: &Head, q: [f64; 3], pol: &Polar, depth: f64) -> Material {
    if let Some(m) = extras::defect_at(head, q, pol, depth) {
        return m;
    }
    let t = pol.thickness;
    if head.suture_mm > 0.0 && on_suture(head, q) {
        return Material::Scar;
    }
    // Frontal sinus: air inside the thickened frontal bone, 1.5 mm walls.
    let s = head.sinus_scale;
    if q[1] < -60.0 {
        let d = ellipsoid_depth(q, [0.0, -82.0, -8.0], [15.0 * s, 7.0 * s, 11.0 * s]);
        if d > 0.0 && depth > 1.5 && depth < t - 1.2 {
            return Material::Air;
        }
    }
    if t < head.outer_table_mm + head.inner_table_mm + 0.6 {
        return Material::CorticalBone;
    }
    if depth < head.outer_table_mm || depth > t - head.inner_table_mm {
        Material::CorticalBone
    } else {
        Material::CancellousBone
    }
}

/// Sagittal, coronal and lambdoid sutures: zig-zag gaps of width `suture_mm` through the vault.
fn on_suture(head: &Head, q: [f64; 3]) -> bool {
    let w = head.suture_mm * 0.5;
    let zig = |t: f64| 1.2 * (t * 0.9).sin() * (t * 0.37).cos();
    if q[2] > 10.0 {
        // Sagittal, from bregma to lambda.
        if q[1] > -28.0 && q[1] < 52.0 && (q[0] - zig(q[1])).abs() < w {
            return true;
        }
    }
    if q[2] > -25.0 {
        // Coronal: tilted backwards with height.
        let y0 = -30.0 + 0.12 * q[2];
        if (q[1] - y0 - zig(q[2] + q[0])).abs() < w {
            return true;
        }
    }
    if q[2] > -42.0 && q[1] > 30.0 {
        // Lambdoid: from lambda down to the asteria.
        let y0 = 48.0 + 0.3 * q[2] - 0.1 * q[0].abs();
        if (q[1] - y0 - zig(q[0] * 1.3)).abs() < w {
            return true;
        }
    }
    false
}

/// Skull-base plate between the cavity floor `zb` and `zb - tb`, with the foramina.
fn base_plate(head: &Head, q: [f64; 3], zb: f64, tb: f64) -> Material {
    let (x, y) = (q[0], q[1]);
    // Foramen magnum.
    if (x / 14.0).powi(2) + ((y - 26.0) / 18.0).powi(2) < 1.0 {
        return Material::Csf;
    }
    // Paired foramina: (x, y, radius, content).
    const FORAMINA: [(f64, f64, f64, Material); 5] = [
        (22.0, -6.0, 2.6, Material::Muscle),  // ovale
        (18.0, -15.0, 1.7, Material::Muscle), // rotundum
        (26.0, -1.0, 1.2, Material::Blood),   // spinosum
        (31.0, 24.0, 4.5, Material::Blood),   // jugular
        (17.0, 31.0, 2.4, Material::Muscle),  // hypoglossal canal
    ];
    for (fx, fy, fr, m) in FORAMINA {
        if (x.abs() - fx).powi(2) + (y - fy).powi(2) < fr * fr {
            return m;
        }
    }
    // Cribriform plate: thin and perforated.
    if x.abs() < 8.0 && y > -62.0 && y < -34.0 {
        if q[2] < zb - head.thin_plate_mm {
            return Material::Mucosa;
        }
        if cell_wall_distance(head.seed ^ 0xc1, [x / 2.5, y / 2.5, 0.0]) > 0.3 {
            return Material::Mucosa;
        }
        return Material::CorticalBone;
    }
    let d = (zb - q[2]).min(q[2] - (zb - tb));
    bone(d, if tb < 2.5 { tb } else { 1.0 })
}

/// CSF, grey and white matter at `depth` mm below the inner table / above the cavity floor.
fn brain(head: &Head, q: [f64; 3], depth: f64) -> Material {
    let csf = head.csf_mm;
    if depth < csf {
        return Material::Csf;
    }
    // Interhemispheric fissure (falx).
    if q[2] > -5.0 && q[0].abs() < 0.8 + 0.3 * csf {
        return Material::Csf;
    }
    let v = head.ventricle_mm;
    let lat = 2.0 + 0.8 * v;
    if q[2] > -5.0 && q[2] < 25.0 {
        for sx in [-1.0, 1.0] {
            if ellipsoid_depth(q, [sx * lat, 5.0, 12.0], [v, 24.0, 8.0]) > 0.0 {
                return Material::Csf;
            }
        }
        if ellipsoid_depth(q, [0.0, 5.0, -2.0], [1.5 + 0.2 * v, 12.0, 7.0]) > 0.0 {
            return Material::Csf;
        }
    }
    if ellipsoid_depth(q, [0.0, 40.0, -30.0], [5.0, 3.0, 5.0]) > 0.0 {
        return Material::Csf;
    }
    if depth < csf + 3.0 {
        return Material::GreyMatter;
    }
    for sx in [-1.0, 1.0] {
        if ellipsoid_depth(q, [sx * 11.0, 14.0, -1.0], [8.0, 13.0, 9.0]) > 0.0 {
            return Material::GreyMatter;
        }
    }
    Material::WhiteMatter
}
