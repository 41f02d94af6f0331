//! Scoring regions of a phantom ([`crate::eval::regions::ScoringRegions`], written into
//! phantom.json): the craniotomy rim, the skull-base slab, the thin plates of the skull base and
//! orbits and the metal objects, in LPS mm, taken from the analytic head (not from the image).

use super::anatomy::extras::tilt;
use super::anatomy::Head;
use crate::dicom::geometry::Geometry;
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

/// Whether the capsule `a`-`b` (LPS mm, radius `r`) reaches the scanned volume of `g`: its extent
/// along the slice normal overlaps the slabs of the slices (first centre - `half_slab_mm` to last
/// centre + `half_slab_mm`: the test render.rs uses to draw a metal object's streaks into a slice)
/// and its extent along the rows and columns overlaps the field of view.
pub fn metal_in_scan(g: &Geometry, a: [f64; 3], b: [f64; 3], r: f64, half_slab_mm: f64) -> bool {
    let (Some(first), Some(last)) = (g.ipp.first(), g.ipp.last()) else {
        return false;
    };
    let dot = |u: [f64; 3], v: [f64; 3]| u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    let overlaps = |dir: [f64; 3], lo: f64, hi: f64| {
        let (pa, pb) = (dot(a, dir), dot(b, dir));
        pa.max(pb) + r >= lo.min(hi) && pa.min(pb) - r <= lo.max(hi)
    };
    let n = g.normal();
    let (n0, n1) = (dot(*first, n), dot(*last, n));
    let along = overlaps(n, n0.min(n1) - half_slab_mm, n0.max(n1) + half_slab_mm);
    // In-plane: the FOV of the first slice (every slice shares it, shifted along the stack).
    let (rd, cd) = (g.row_dir(), g.col_dir());
    let (di, dj) = (g.pixel_spacing[1], g.pixel_spacing[0]);
    let proj = |p: [f64; 3], d: [f64; 3]| dot(p, d);
    let mut ok = along;
    for (d, len) in [
        (rd, (g.cols as f64 - 1.0) * di),
        (cd, (g.rows as f64 - 1.0) * dj),
    ] {
        // Positions of all slice origins along `d` (a gantry tilt shifts them along the columns).
        let (lo, hi) = g.ipp.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            let x = proj(*p, d);
            (lo.min(x), hi.max(x))
        });
        ok = ok && overlaps(d, lo - 0.5 * di.max(dj), hi + len + 0.5 * di.max(dj));
    }
    ok
}

/// The scoring regions of `head` scanned on `g`. Metal objects are listed only when they reach
/// the scanned volume ([`metal_in_scan`], `half_slab_mm` = half of max(slice thickness, spacing)):
/// a filling below the last slice has no streaks in the image, and its 20 mm "near metal" region
/// would otherwise score the last slices as if it had.
pub fn scoring_regions(head: &Head, g: &Geometry, half_slab_mm: f64) -> ScoringRegions {
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
        .filter(|c| metal_in_scan(g, c.a, c.b, c.radius_mm, half_slab_mm))
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
        metal_slab_half_mm: Some(half_slab_mm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default series of `philips-ingenuity-ub` (1 mm slices, vertex to C2) around `head`.
    fn full_scan(head: &Head) -> Geometry {
        let p = crate::phantom::scanner::profile("philips-ingenuity-ub").unwrap();
        crate::phantom::grid(p, &crate::phantom::PhantomOptions::default(), head)
    }

    #[test]
    fn metal_outside_the_scanned_slices_is_not_listed() {
        // First seed with a dental filling (teeth at head z -109 to -117 mm).
        let head = (1u64..200)
            .map(|s| Head::random(s, Some(false)))
            .find(|h| h.metal.iter().any(|m| m.kind == "filling"))
            .unwrap();
        let fillings = head.metal.iter().filter(|m| m.kind == "filling").count();
        let g = full_scan(&head);
        let all = scoring_regions(&head, &g, 0.5);
        assert_eq!(
            all.metal.iter().filter(|m| m.kind == "filling").count(),
            fillings
        );
        // Keep only the slices above head z -70 (above the maxilla): no filling is scanned.
        let z_cut = head.to_lps([0.0, 0.0, -70.0])[2];
        let mut top = g.clone();
        top.ipp.retain(|p| p[2] > z_cut);
        assert!(top.ipp.len() > 100 && top.ipp.len() < g.ipp.len());
        let r = scoring_regions(&head, &top, 0.5);
        assert_eq!(r.metal.iter().filter(|m| m.kind == "filling").count(), 0);
        // A slab reaching down to the fillings brings them back.
        assert!(metal_in_scan(&g, all.metal[0].a, all.metal[0].b, 1.5, 0.5));
        let below = [[0.0, 0.0, z_cut - 60.0], [1.0, 0.0, z_cut - 60.0]];
        assert!(!metal_in_scan(&top, below[0], below[1], 2.0, 0.5));
        assert!(metal_in_scan(&top, below[0], below[1], 2.0, 70.0));
    }

    #[test]
    fn flap_rim_lies_in_the_vault_and_skull_base_below_the_centre() {
        let head = Head::random(3, Some(true));
        let r = scoring_regions(&head, &full_scan(&head), 0.5);
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
        let plain = Head::random(3, Some(false));
        assert!(scoring_regions(&plain, &full_scan(&plain), 0.5)
            .defect_rim
            .is_empty());
    }

    #[test]
    fn thin_plate_boxes_hold_thin_bone_and_no_vault() {
        for seed in [1u64, 2, 5] {
            let head = Head::random(seed, Some(false));
            let r = scoring_regions(&head, &full_scan(&head), 0.5);
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
