//! Scoring regions of a phantom ([`crate::eval::regions::ScoringRegions`], written into
//! phantom.json): the craniotomy rim, the skull-base slab and the metal objects, in LPS mm, taken
//! from the analytic head (not from the image).

use super::anatomy::extras::tilt;
use super::anatomy::Head;
use crate::eval::regions::{MetalCapsule, ScoringRegions};

/// Points per flap rim loop and per burr-hole loop.
const RIM_STEPS: usize = 96;
const BURR_STEPS: usize = 24;

/// Skull-base slab in the head frame (standard-head mm): from below the foramen magnum and the
/// posterior fossa floor (-44 mm, plate 5 mm; anatomy/cranium.rs) up to just above the orbital roofs
/// and cribriform plate (anterior fossa floor at -20 mm).
pub const SKULL_BASE_Z_MM: [f64; 2] = [-52.0, -14.0];

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
    ScoringRegions {
        defect_rim,
        skull_base_z: [lo.min(hi), lo.max(hi)],
        metal,
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
}
