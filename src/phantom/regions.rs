//! Scoring regions of a phantom ([`crate::eval::regions::ScoringRegions`], written into
//! phantom.json): the craniotomy rim, the skull-base slab, the thin plates of the skull base and
//! orbits and the metal objects, in LPS mm, taken from the analytic head (not from the image).

use super::anatomy::extras::tilt;
use super::anatomy::Head;
use crate::eval::regions::{MetalCapsule, OrientedBox, ScoringRegions};

/// Points per flap rim loop and per burr-hole loop.
const RIM_STEPS: usize = 96;
const BURR_STEPS: usize = 24;

/// Skull-base slab in the head frame (standard-head mm): from below the foramen magnum and the
/// posterior fossa floor (-44 mm, plate 5 mm; anatomy/cranium.rs) up to just above the orbital roofs
/// and cribriform plate (anterior fossa floor at -20 mm).
pub const SKULL_BASE_Z_MM: [f64; 2] = [-52.0, -14.0];

/// Boxes around the thin plates (head frame, standard-head mm: name, centre, half-sizes along x, y,
/// z), chosen from the model in anatomy/cranium.rs and anatomy/face.rs so that they hold thin bone
/// only: the anterior fossa floor over the orbits with the cribriform plate (floor at z -20, plate
/// `thin_plate_mm + 0.3` thick; the box stays behind y -56, clear of the frontal bone, which
/// thickens to 15-22 mm around the frontal sinus) and, below it, the medial orbital walls (lamina
/// papyracea, `thin_plate_mm`), the ethmoid cells' septa, the nasal septum and the turbinates'
/// bony cores (|x| < 20, in front of the sphenoid body at y -34; the vault does not reach below the
/// skull base). The petrous bones, clivus, sphenoid body and the vault are outside them.
pub const THIN_PLATE_BOXES: [(&str, [f64; 3], [f64; 3]); 2] = [
    (
        "anterior fossa floor (orbital roofs, cribriform plate)",
        [0.0, -46.0, -20.5],
        [28.0, 10.0, 4.5],
    ),
    (
        "medial orbital walls, ethmoid septa, nasal septum",
        [0.0, -55.0, -37.0],
        [20.0, 19.0, 15.0],
    ),
];

/// A closed loop on the vault, mid-way between the outer and inner table, through the directions
/// `u(psi)`, `psi` in `[0, 2 pi)`, as LPS points.
fn vault_loop(head: &Head, steps: usize, u: impl Fn(f64) -> [f64; 3]) -> Vec<[f64; 3]> {
    let mut line: Vec<[f64; 3]> = (0..steps)
        .map(|n| {
            let d = u(n as f64 / steps as f64 * std::f64::consts::TAU);
            let pol = head.polar(d);
            let r = pol.r_out - 0.5 * pol.thickness;
            head.to_lps([d[0] * r, d[1] * r, d[2] * r])
        })
        .collect();
    if let Some(&first) = line.first() {
        line.push(first);
    }
    line
}

/// The scoring regions of `head`.
pub fn scoring_regions(head: &Head) -> ScoringRegions {
    let mut defect_rim = Vec::new();
    if let Some(d) = &head.defect {
        if d.kind != super::anatomy::DefectKind::BurrHoles {
            let a = d.half_angle_deg.to_radians();
            defect_rim.push(vault_loop(head, RIM_STEPS, |psi| tilt(d.direction, a, psi)));
        }
        for b in &d.burr_holes {
            // Angular radius of the hole at the vault's radius in that direction.
            let r = head.polar(*b).r_out.max(1.0);
            let a = (d.burr_radius_mm / r).min(0.4);
            defect_rim.push(vault_loop(head, BURR_STEPS, |psi| tilt(*b, a, psi)));
        }
    }
    let z = |h: f64| head.to_lps([0.0, 0.0, h])[2];
    let (lo, hi) = (z(SKULL_BASE_Z_MM[0]), z(SKULL_BASE_Z_MM[1]));
    let metal = head
        .metal
        .iter()
        .map(|m| MetalCapsule {
            a: head.to_lps(m.a),
            b: head.to_lps(m.b),
            radius_mm: m.radius_mm * head.scale,
            kind: m.kind.to_owned(),
        })
        .collect();
    let origin = head.to_lps([0.0; 3]);
    let axis = |e: [f64; 3]| {
        let p = head.to_lps(e);
        let d = [p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]];
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-12);
        [d[0] / n, d[1] / n, d[2] / n]
    };
    let axes = [
        axis([1.0, 0.0, 0.0]),
        axis([0.0, 1.0, 0.0]),
        axis([0.0, 0.0, 1.0]),
    ];
    let thin_plates = THIN_PLATE_BOXES
        .iter()
        .map(|(name, c, h)| OrientedBox {
            name: (*name).to_owned(),
            centre: head.to_lps(*c),
            axes,
            half_mm: [h[0] * head.scale, h[1] * head.scale, h[2] * head.scale],
        })
        .collect();
    ScoringRegions {
        defect_rim,
        skull_base_z: [lo.min(hi), lo.max(hi)],
        metal,
        thin_plates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flap_rim_lies_in_the_vault_and_skull_base_below_the_centre() {
        let head = Head::random(3, Some(true));
        let r = scoring_regions(&head);
        let d = head.defect.as_ref().unwrap();
        let loops = usize::from(d.kind != crate::phantom::anatomy::DefectKind::BurrHoles)
            + d.burr_holes.len();
        assert_eq!(r.defect_rim.len(), loops);
        for line in &r.defect_rim {
            assert_eq!(line.first(), line.last());
            for p in line {
                // Mid-vault: 50-100 mm from the head centre for every head size.
                let q = head.to_head(*p);
                let rr = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
                assert!((50.0..100.0).contains(&rr), "rim point at {rr} mm");
            }
        }
        let c = head.center_lps[2];
        assert!(r.skull_base_z[1] < c - 5.0 && r.skull_base_z[0] > c - 70.0);
        assert!(Head::random(3, Some(false)).defect.is_none());
        assert!(scoring_regions(&Head::random(3, Some(false)))
            .defect_rim
            .is_empty());
    }

    #[test]
    fn thin_plate_boxes_hold_thin_bone_and_no_vault() {
        for seed in [1u64, 2, 5] {
            let head = Head::random(seed, Some(false));
            let r = scoring_regions(&head);
            assert_eq!(r.thin_plates.len(), THIN_PLATE_BOXES.len());
            // Sample each box on a 1 mm grid (head frame): bone is there (the plates), and every
            // bone sample has non-bone within 1.5 mm along some axis (thin, not a thick block).
            for (b, (_, c, h)) in r.thin_plates.iter().zip(THIN_PLATE_BOXES) {
                let (mut bone, mut thick) = (0, 0);
                let n = |v: f64| (v.floor() as i64).max(1);
                for ix in -n(h[0])..=n(h[0]) {
                    for iy in -n(h[1])..=n(h[1]) {
                        for iz in -n(h[2])..=n(h[2]) {
                            let q = [c[0] + ix as f64, c[1] + iy as f64, c[2] + iz as f64];
                            let p = head.to_lps(q);
                            if !b.contains(p) {
                                continue;
                            }
                            let is_bone = |q: [f64; 3]| head.material(head.to_lps(q)).is_bone();
                            if !is_bone(q) {
                                continue;
                            }
                            bone += 1;
                            let open = (0..3).any(|a| {
                                [-1.5, 1.5].iter().any(|d| {
                                    let mut o = q;
                                    o[a] += d;
                                    !is_bone(o)
                                })
                            });
                            if !open {
                                thick += 1;
                            }
                        }
                    }
                }
                assert!(bone > 200, "seed {seed} {}: {bone} bone samples", b.name);
                assert!(
                    (thick as f64) < 0.1 * bone as f64,
                    "seed {seed} {}: {thick} of {bone} bone samples inside thick bone",
                    b.name
                );
            }
        }
    }
}
