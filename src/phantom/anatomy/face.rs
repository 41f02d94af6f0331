//! Face, temporal bone and upper cervical spine (standard-head mm, head frame): orbits and eyes,
//! ethmoid cells, nasal cavity with septum and turbinates, maxillary and sphenoid sinuses, zygoma,
//! maxilla and palate, mandible, teeth with enamel, petrous bone, mastoid air cells, clivus,
//! occipital condyles, styloid processes, C1-C4, spinal canal, pharynx.

use std::sync::OnceLock;

use super::field::cell_wall_distance;
use super::{bone, ellipsoid_depth, extras, segment_distance, Head, Material};

/// One tooth: axis position in the horizontal plane, crown radius, upper or lower jaw.
#[derive(Clone, Copy, Debug)]
pub struct Tooth {
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    pub upper: bool,
}

/// Upper arch (alveolar ridge centre line) `y(x)`.
fn upper_arch(x: f64) -> f64 {
    -70.0 + 0.045 * x * x
}

/// Lower arch `y(x)` (teeth line of the mandible).
fn lower_arch(x: f64) -> f64 {
    -66.0 + 0.042 * x * x
}

/// Mandible body centre line `y(x)` for `|x| <= 48`.
fn mandible_arch(x: f64) -> f64 {
    -66.0 + 0.031 * x * x
}

/// Crown z ranges (head frame): upper crowns [-112, -104], lower crowns [-122, -114].
const UPPER_CROWN: [f64; 2] = [-112.0, -104.0];
const LOWER_CROWN: [f64; 2] = [-122.0, -114.0];

/// The 28 teeth (0-13 upper, 14-27 lower), placed by mesiodistal width along the arches.
pub fn teeth() -> &'static [Tooth] {
    static TEETH: OnceLock<Vec<Tooth>> = OnceLock::new();
    TEETH.get_or_init(|| {
        // Half mesiodistal widths (mm), midline outwards: incisors, canine, premolars, molars.
        const HALF: [f64; 7] = [4.3, 3.3, 3.9, 3.5, 3.3, 5.0, 4.6];
        let mut out = Vec::with_capacity(28);
        for upper in [true, false] {
            let arch = if upper { upper_arch } else { lower_arch };
            for side in [-1.0f64, 1.0] {
                // Walk the arch by arc length.
                let (mut x, mut s) = (0.0f64, 0.0f64);
                let mut target = 0.0;
                for (n, h) in HALF.iter().enumerate() {
                    let scale = if upper { 1.0 } else { 0.92 };
                    target += if n == 0 {
                        h * scale
                    } else {
                        (HALF[n - 1] + h) * scale
                    };
                    while s < target {
                        let dx = 0.05;
                        let dy = arch(x + dx) - arch(x);
                        s += (dx * dx + dy * dy).sqrt();
                        x += dx;
                    }
                    out.push(Tooth {
                        x: side * x,
                        y: arch(x),
                        radius: (h * 0.8).clamp(2.6, 4.6),
                        upper,
                    });
                }
            }
        }
        out
    })
}

/// Enamel/dentin of the teeth (crowns and tapered roots); `None` elsewhere.
pub fn teeth_at(head: &Head, q: [f64; 3]) -> Option<Material> {
    if q[2] < -137.0 || q[2] > -91.0 || q[0].abs() > 40.0 || q[1] < -80.0 || q[1] > -5.0 {
        return None;
    }
    for (n, t) in teeth().iter().enumerate() {
        let (dx, dy) = (q[0] - t.x, q[1] - t.y);
        if dx.abs() > t.radius || dy.abs() > t.radius {
            continue;
        }
        if head.missing_teeth.contains(&n) {
            continue;
        }
        let rho = (dx * dx + dy * dy).sqrt();
        let (crown, root_end) = if t.upper {
            (UPPER_CROWN, -92.0)
        } else {
            (LOWER_CROWN, -136.0)
        };
        let z = q[2];
        if z >= crown[0] && z <= crown[1] {
            // Crown: rounded towards the occlusal surface.
            let occlusal = if t.upper { z - crown[0] } else { crown[1] - z };
            let r = t.radius * (0.75 + 0.25 * (occlusal / 2.0).min(1.0));
            if rho < r {
                let enamel = r - rho < 1.2 || occlusal < 1.3;
                return Some(if enamel {
                    Material::Enamel
                } else {
                    Material::Dentin
                });
            }
        } else {
            let (near, far) = if t.upper {
                (crown[1], root_end)
            } else {
                (crown[0], root_end)
            };
            let f = (z - near) / (far - near);
            if (0.0..=1.0).contains(&f) && rho < t.radius * 0.75 * (1.0 - 0.65 * f) {
                return Some(Material::Dentin);
            }
        }
    }
    None
}

/// Dense bone that rises above the cavity floor: petrous ridges, clivus/dorsum sellae.
pub fn intracranial_bone(head: &Head, q: [f64; 3]) -> Option<Material> {
    if q[2] > -22.0 {
        return None;
    }
    petrous_clivus(head, q)
}

fn petrous_clivus(_head: &Head, q: [f64; 3]) -> Option<Material> {
    for sx in [-1.0, 1.0] {
        let (d, _) = segment_distance(q, [sx * 50.0, 24.0, -42.0], [sx * 18.0, -3.0, -37.0]);
        if d < 7.0 {
            if (q[0] - sx * 33.0).powi(2) + (q[1] - 11.0).powi(2) + (q[2] + 39.0).powi(2) < 6.0 {
                return Some(Material::Csf); // inner ear
            }
            return Some(bone(7.0 - d, 3.0));
        }
    }
    let (d, _) = segment_distance(q, [0.0, -2.0, -30.0], [0.0, 20.0, -50.0]);
    if d < 7.0 {
        return Some(bone(7.0 - d, 1.5));
    }
    None
}

/// Material of the face, temporal bone and neck at `q` (below the skull base or outside the
/// cranium); `None` leaves it to the soft tissue.
pub fn face_at(head: &Head, q: [f64; 3]) -> Option<Material> {
    if q[2] > -18.0 {
        return None;
    }
    if let Some(m) = extras::neck_vessels(head, q) {
        return Some(m);
    }
    let [x, y, z] = q;
    let s = head.sinus_scale;
    let thin = head.thin_plate_mm;
    // Orbits with eyes.
    if y < -35.0 && z > -58.0 {
        for sx in [-1.0, 1.0] {
            let c = [sx * 33.0, -62.0, -38.0];
            let od = ellipsoid_depth(q, c, [17.0, 22.0, 16.0]);
            if od > 0.0 {
                if ellipsoid_depth(q, [sx * 33.0, -74.0, -38.0], [12.0, 12.0, 12.0]) > 0.0 {
                    return Some(Material::Vitreous);
                }
                return Some(Material::Fat);
            }
            let wall = if sx * x < 22.0 { thin } else { 1.4 };
            if od > -wall && y > -78.0 {
                return Some(Material::CorticalBone);
            }
        }
    }
    // Nasal bones.
    if y < -84.0 && z > -56.0 {
        for sx in [-1.0, 1.0] {
            let (d, _) = segment_distance(q, [sx * 4.0, -90.0, -24.0], [sx * 6.0, -99.0, -52.0]);
            if d < 2.5 {
                return Some(Material::CorticalBone);
            }
        }
    }
    // Ethmoid air cells between the orbits: thin septa.
    if x.abs() > 1.5 && x.abs() < 15.0 && y > -74.0 && y < -36.0 && z > -52.0 && z < -21.0 {
        let w = cell_wall_distance(head.seed ^ 0xe7, [x / 4.5, y / 4.5, z / 4.5]);
        return Some(if w < 0.5 * thin / 4.5 {
            Material::CorticalBone
        } else {
            Material::Air
        });
    }
    // Nasal cavity: septum, turbinates with bony cores, air.
    if x.abs() < 13.0 && y > -90.0 && y < -30.0 && z > -87.0 && z < -35.0 {
        if x.abs() < 1.0 {
            return Some(if y > -80.0 {
                Material::CorticalBone
            } else {
                Material::Muscle
            });
        }
        if y < -36.0 {
            for (z0, r) in [(-45.0, 3.5), (-58.0, 4.5), (-73.0, 5.0)] {
                let d = ((x.abs() - 9.5).powi(2) + (z - z0).powi(2)).sqrt();
                if d < r {
                    return Some(if d < 0.6 {
                        Material::CorticalBone
                    } else {
                        Material::Mucosa
                    });
                }
            }
        }
        return Some(Material::Air);
    }
    // Maxillary sinuses.
    if z > -90.0 && z < -40.0 && y < -30.0 {
        for sx in [-1.0, 1.0] {
            let ed = ellipsoid_depth(q, [sx * 31.0, -56.0, -64.0], [14.0 * s, 17.0 * s, 17.0 * s]);
            if ed > 0.0 {
                return Some(if ed < 1.0 {
                    Material::Mucosa
                } else {
                    Material::Air
                });
            }
            let wall = if y < -66.0 { thin + 0.3 } else { 1.5 };
            if ed > -wall {
                return Some(Material::CorticalBone);
            }
        }
    }
    // Sphenoid body and sinus.
    if y > -34.0 && y < -2.0 && z > -58.0 {
        let bd = ellipsoid_depth(q, [0.0, -18.0, -44.0], [17.0, 15.0, 12.0]);
        if bd > 0.0 {
            if ellipsoid_depth(q, [0.0, -18.0, -44.0], [12.0 * s, 11.0 * s, 8.0 * s]) > 0.0 {
                return Some(Material::Air);
            }
            return Some(bone(bd, 1.2));
        }
    }
    if let Some(m) = petrous_clivus(head, q) {
        return Some(m);
    }
    if let Some(m) = temporal(head, q) {
        return Some(m);
    }
    if let Some(m) = jaws(head, q) {
        return Some(m);
    }
    if let Some(m) = spine(q) {
        return Some(m);
    }
    // Naso- and oropharynx.
    if x.abs() < 12.0 && y > -30.0 && y < -6.0 && z > -150.0 && z < -50.0 {
        if y < -14.0 || z < -85.0 {
            return Some(Material::Air);
        }
    }
    None
}

/// Mastoid air cells, external auditory canal, zygoma, occipital condyles, styloid processes.
fn temporal(head: &Head, q: [f64; 3]) -> Option<Material> {
    let [x, y, z] = q;
    if z < -80.0 {
        return None;
    }
    for sx in [-1.0, 1.0] {
        if sx * x < 0.0 {
            continue;
        }
        if x.abs() > 40.0 && (y - 10.0).powi(2) + (z + 47.0).powi(2) < 16.0 {
            return Some(Material::Air);
        }
        let md = ellipsoid_depth(q, [sx * 52.0, 28.0, -52.0], [12.0, 14.0, 16.0]);
        if md > 0.0 {
            if md < 1.2 {
                return Some(Material::CorticalBone);
            }
            let w = cell_wall_distance(head.seed ^ 0x3a, [x / 4.0, y / 4.0, z / 4.0]);
            return Some(if w < 0.07 {
                Material::CorticalBone
            } else {
                Material::Air
            });
        }
        let (d, _) = segment_distance(q, [sx * 44.0, -62.0, -52.0], [sx * 62.0, -6.0, -46.0]);
        if d < 4.5 {
            return Some(bone(4.5 - d, 1.2));
        }
        let zd = ellipsoid_depth(q, [sx * 44.0, -64.0, -60.0], [9.0, 8.0, 13.0]);
        if zd > 0.0 {
            return Some(bone(zd, 1.2));
        }
        let cd = ellipsoid_depth(q, [sx * 13.0, 24.0, -52.0], [6.0, 11.0, 6.0]);
        if cd > 0.0 {
            return Some(bone(cd, 1.5));
        }
        let (d, _) = segment_distance(q, [sx * 34.0, 12.0, -50.0], [sx * 30.0, 4.0, -76.0]);
        if d < 1.4 {
            return Some(Material::CorticalBone);
        }
    }
    None
}

/// Maxilla (alveolar ridge, palate) and mandible (body, rami, condyles).
fn jaws(head: &Head, q: [f64; 3]) -> Option<Material> {
    let [x, y, z] = q;
    let _ = head;
    if z < -150.0 || z > -48.0 {
        return None;
    }
    // Palate.
    if z > -91.0 && z < -87.0 && x.abs() < 24.0 && y > upper_arch(x) + 2.0 && y < -22.0 {
        return Some(bone((z + 91.0).min(-87.0 - z), 1.0));
    }
    // Upper alveolar ridge.
    if z > -105.0 && z < -89.0 && x.abs() < 38.0 {
        let dh = arch_distance(upper_arch, x, y, 36.0);
        let d = (7.0 - dh).min(8.0 - (z + 97.0).abs());
        if d > 0.0 {
            return Some(bone(d, 1.5));
        }
    }
    for sx in [-1.0, 1.0] {
        if sx * x < 0.0 {
            continue;
        }
        // Condyle and ramus.
        let cd = ellipsoid_depth(q, [sx * 50.0, 12.0, -56.0], [10.0, 5.0, 5.0]);
        if cd > 0.0 {
            return Some(bone(cd, 1.5));
        }
        let (_, t) = segment_distance(q, [sx * 49.0, 6.0, -130.0], [sx * 50.0, 12.0, -60.0]);
        let c = [sx * (49.0 + t), 6.0 + 6.0 * t, -130.0 + 70.0 * t];
        if t > 0.0 && t < 1.0 {
            let e = ((x - c[0]) / 3.5).powi(2) + ((y - c[1]) / 8.0).powi(2);
            if e < 1.0 {
                return Some(bone((1.0 - e.sqrt()) * 3.5, 1.5));
            }
        }
    }
    // Mandible body.
    if z > -145.0 && z < -115.0 && x.abs() < 52.0 {
        let dh = arch_distance(mandible_arch, x, y, 49.0);
        let e = (dh / 6.5).powi(2) + ((z + 130.0) / 14.0).powi(2);
        if e < 1.0 {
            return Some(bone((1.0 - e.sqrt()) * 6.5, 2.0));
        }
    }
    None
}

/// Horizontal distance from `(x, y)` to the arch curve `y = f(x)`, `|x| <= xmax`, sampled.
fn arch_distance(f: fn(f64) -> f64, x: f64, y: f64, xmax: f64) -> f64 {
    let mut best = f64::INFINITY;
    let x0 = x.clamp(-xmax, xmax);
    // The nearest point lies within a few mm of x on this shallow-to-steep curve; scan around it.
    let mut xs = x0 - 12.0;
    while xs <= x0 + 12.0 {
        let xc = xs.clamp(-xmax, xmax);
        let d = (x - xc).powi(2) + (y - f(xc)).powi(2);
        best = best.min(d);
        xs += 0.5;
    }
    best.sqrt()
}

/// C1 (atlas), C2 (axis with dens), C3, C4, intervertebral discs, spinal canal and cord.
fn spine(q: [f64; 3]) -> Option<Material> {
    let [x, y, z] = q;
    if z > -50.0 || y < -8.0 || y > 62.0 || x.abs() > 42.0 {
        return None;
    }
    let canal = (x * x + (y - 30.0).powi(2)).sqrt();
    if canal < 9.0 {
        return Some(if canal < 5.0 {
            Material::WhiteMatter
        } else {
            Material::Csf
        });
    }
    // C1.
    if z > -70.0 && z < -54.0 {
        let (d, _) = segment_distance(q, [-9.0, 1.0, -62.0], [9.0, 1.0, -62.0]);
        if d < 4.5 {
            return Some(bone(4.5 - d, 1.2));
        }
        for sx in [-1.0, 1.0] {
            let ld = ellipsoid_depth(q, [sx * 19.0, 16.0, -62.0], [8.0, 11.0, 7.0]);
            if ld > 0.0 {
                return Some(bone(ld, 1.2));
            }
            if (x - sx * 29.0).powi(2) + (y - 16.0).powi(2) < 6.0 {
                return Some(Material::Blood); // foramen transversarium
            }
            let (d, _) = segment_distance(q, [sx * 19.0, 16.0, -62.0], [sx * 37.0, 16.0, -60.0]);
            if d < 4.0 {
                return Some(bone(4.0 - d, 1.2));
            }
            for (a, b) in [([19.0, 24.0], [12.0, 40.0]), ([12.0, 40.0], [0.0, 44.0])] {
                let (d, _) =
                    segment_distance(q, [sx * a[0], a[1], -62.0], [sx * b[0], b[1], -62.0]);
                if d < 3.5 {
                    return Some(bone(3.5 - d, 1.0));
                }
            }
        }
    }
    // Dens and vertebral bodies (discs between them).
    let (d, _) = segment_distance(q, [0.0, 8.0, -80.0], [0.0, 8.0, -56.0]);
    if d < 5.0 {
        return Some(bone(5.0 - d, 1.2));
    }
    for (top, bottom) in [(-78.0, -97.0), (-101.0, -118.0), (-122.0, -139.0)] {
        let rho = (x * x / 1.2 + (y - 10.0).powi(2)).sqrt();
        if rho < 9.0 {
            if z <= top && z >= bottom {
                return Some(bone((9.0 - rho).min(top - z).min(z - bottom), 1.0));
            }
            if z > top && z < top + 4.0 && top < -80.0 {
                return Some(Material::Muscle); // disc
            }
        }
    }
    // Posterior arches and spinous processes of C2-C4.
    for zc in [-87.0, -109.0, -130.0] {
        if (z - zc).abs() > 5.0 {
            continue;
        }
        for sx in [-1.0, 1.0] {
            for (a, b) in [([8.0, 16.0], [11.0, 38.0]), ([11.0, 38.0], [0.0, 46.0])] {
                let (d, _) = segment_distance(q, [sx * a[0], a[1], zc], [sx * b[0], b[1], zc]);
                if d < 4.0 {
                    return Some(bone(4.0 - d, 1.2));
                }
            }
        }
        let (d, _) = segment_distance(q, [0.0, 46.0, zc], [0.0, 58.0, zc - 4.0]);
        if d < 4.5 {
            return Some(bone(4.5 - d, 1.2));
        }
    }
    None
}
