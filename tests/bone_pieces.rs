//! The CNN's post-processing on a rendered phantom head: every separate bone of the exact label
//! (besides the skull) survives `keep_bones`, while the patient table and head holder, glued to
//! the mask as a network's false bone would be, are dropped as objects in air; and the marrow fill
//! restores a phantom's cancellous bone cut out of the mask without closing a craniotomy; and the
//! half-maximum grow restores the partial-volume edge of a thick-slice head cut out of the mask,
//! again without closing the craniotomy or reaching the table.

use osteon::phantom::anatomy::{Head, Material};
use osteon::phantom::render::render;
use osteon::phantom::voxelize::voxelize;
use osteon::phantom::{grid, scanner, PhantomOptions};
use osteon::segment::bones::{keep_bones, min_voxels, PieceRules};
use osteon::segment::components::{label, Connectivity};
use osteon::segment::fill::{self, fill_marrow, MarrowGate};
use osteon::segment::grow::{self, grow_half_max, GrowGate, Grown};
use osteon::segment::Mask;

fn count(m: &Mask) -> usize {
    m.iter().filter(|&&v| v != 0).count()
}

/// Voxels of `mask` that are set and whose material (`Material as u8`, same shape) passes `which`.
fn set_where(mask: &Mask, material: &ndarray::Array3<u8>, which: impl Fn(u8) -> bool) -> usize {
    mask.iter()
        .zip(material.iter())
        .filter(|(&m, &mat)| m != 0 && which(mat))
        .count()
}

/// A whole head of scanner `profile` at `matrix` pixels and `slices` slices (`None`: the
/// profile's): the label, the rendered CT (scanner noise and blur), the material at each voxel
/// centre, the voxel volume (mL) and the `[slice, row, column]` spacing (mm).
fn head(
    profile: &str,
    seed: u64,
    craniotomy: bool,
    matrix: usize,
    slices: Option<usize>,
) -> (
    Mask,
    ndarray::Array3<f32>,
    ndarray::Array3<u8>,
    f64,
    [f64; 3],
) {
    let profile = scanner::profile(profile).expect("profile");
    let options = PhantomOptions {
        slices,
        matrix: Some(matrix),
        supersample: 1,
        ..PhantomOptions::default()
    };
    let head = Head::random(seed, Some(craniotomy));
    let g = grid(profile, &options, &head);
    let vox = voxelize(&head, &g, 1);
    let hu = render(vox.hu, &vox.material, &g, &head, profile, seed);
    let voxel_ml = g.pixel_spacing[0] * g.pixel_spacing[1] * g.nominal_slice_spacing() / 1000.0;
    let spacing = [
        g.nominal_slice_spacing(),
        g.pixel_spacing[0],
        g.pixel_spacing[1],
    ];
    (vox.label, hu, vox.material, voxel_ml, spacing)
}

#[test]
fn separate_bones_are_kept_and_the_table_and_holder_are_not() {
    // 1.2 mm pixels, about 2 mm slices.
    let (bone, hu, material, voxel_ml, spacing) =
        head("philips-ingenuity-ub", 1002, false, 192, Some(100));
    let min = min_voxels(voxel_ml);
    let pieces = label(&bone, Connectivity::TwentySix);
    let separate = pieces.sizes.iter().filter(|&&s| s >= min).count();
    assert!(
        separate >= 2,
        "the label holds the skull and a separate bone: {separate}"
    );
    let in_air = [Material::TableCarbon as u8, Material::HolderPlastic as u8];
    let mut mask = bone.clone();
    let mut objects = 0usize;
    for (m, &mat) in mask.iter_mut().zip(material.iter()) {
        if in_air.contains(&mat) {
            *m = 1;
            objects += 1;
        }
    }
    assert!(
        objects as u64 > min,
        "table and holder in the field: {objects} voxels"
    );
    // Air at -1000 HU, soft tissue at 40 HU: half-way.
    let rules = PieceRules {
        air_level: -480.0,
        metal_level: 2500.0,
        spacing_mm: spacing,
        min_voxels: min,
    };
    let (kept, stats) = keep_bones(&mask, hu.view(), rules);
    assert!(stats.in_air >= 1, "{stats:?}");
    assert_eq!(stats.kept, separate, "{stats:?}");
    let table_kept = set_where(&kept, &material, |mat| in_air.contains(&mat));
    assert_eq!(table_kept, 0);
    let bone_kept = kept
        .iter()
        .zip(bone.iter())
        .filter(|(&k, &b)| k != 0 && b != 0)
        .count();
    let small: u64 = pieces.sizes.iter().filter(|&&s| s < min).sum();
    assert_eq!(bone_kept as u64, count(&bone) as u64 - small);
}

#[test]
fn marrow_cut_from_the_mask_comes_back_and_the_craniotomy_stays_open() {
    // A sharp-kernel series of sub-millimetre voxels (0.54 mm pixels, 0.6 mm slices), the kind the
    // fill runs on.
    let (bone, hu, material, _, spacing) = head("siemens-definition-h70h", 1003, true, 320, None);
    assert!(fill::applies_to([spacing[1], spacing[2]], spacing[0]));
    let cancellous = Material::CancellousBone as u8;
    let mut mask = bone.clone();
    let mut cut = 0usize;
    for (m, &mat) in mask.iter_mut().zip(material.iter()) {
        if mat == cancellous && *m != 0 {
            *m = 0;
            cut += 1;
        }
    }
    assert!(cut > 1000, "the head has diploe: {cut} voxels");
    let stats = fill_marrow(&mut mask, hu.view(), MarrowGate::hu(), spacing);
    let back = set_where(&mask, &material, |mat| mat == cancellous);
    // Most of the cut diploe is enclosed by the tables in some plane and comes back; what is
    // added beyond the label is little (partial-volume rims, canals).
    assert!(
        back * 10 >= cut * 6,
        "{back} of {cut} diploe voxels filled ({stats:?})"
    );
    let extra = mask
        .iter()
        .zip(bone.iter())
        .filter(|(&m, &b)| m != 0 && b == 0)
        .count();
    assert!(
        extra * 10 < back,
        "{extra} voxels filled outside the label for {back}"
    );
    // The craniotomy stays open: of the scar filling the defect, almost nothing becomes bone.
    let scar = Material::Scar as u8;
    let scar_all = material.iter().filter(|&&m| m == scar).count();
    let scar_filled = set_where(&mask, &material, |mat| mat == scar);
    assert!(
        scar_all > 1000,
        "the head has a craniotomy: {scar_all} scar voxels"
    );
    let mut by_material = std::collections::BTreeMap::<u8, usize>::new();
    for ((&m, &b), &mat) in mask.iter().zip(bone.iter()).zip(material.iter()) {
        if m != 0 && b == 0 {
            *by_material.entry(mat).or_default() += 1;
        }
    }
    assert!(
        scar_filled * 20 < scar_all,
        "{scar_filled} of {scar_all} scar voxels filled; outside the label by material: \
         {by_material:?}"
    );
}

#[test]
fn the_half_maximum_grow_restores_a_thick_slice_edge_and_leaves_the_craniotomy_open() {
    // 5 mm slices, 0.98 mm pixels: the kind of series where the network missed the edge.
    let (bone, hu, material, _, spacing) = head("routine-5mm", 1004, true, 256, None);
    assert!(spacing[0] >= 4.9, "thick slices: {spacing:?}");
    // The mask without the label's in-plane edge (bone with a 4-neighbour outside the label in its
    // slice), as the network leaves a thick slice's oblique surfaces.
    let (nk, nj, ni) = bone.dim();
    let mut mask = bone.clone();
    let mut edge = 0usize;
    for k in 0..nk {
        for j in 1..nj - 1 {
            for i in 1..ni - 1 {
                let outside = [[k, j - 1, i], [k, j + 1, i], [k, j, i - 1], [k, j, i + 1]]
                    .iter()
                    .any(|&p| bone[p] == 0);
                if bone[[k, j, i]] != 0 && outside {
                    mask[[k, j, i]] = 0;
                    edge += 1;
                }
            }
        }
    }
    assert!(edge > 10_000, "the head has an edge: {edge} voxels");
    let reach_mm = grow::reach_mm([spacing[1], spacing[2]], spacing[0]);
    assert_eq!(reach_mm, spacing[0]);
    let gate =
        GrowGate::from_mask(&mask, hu.view(), [-1000.0, 40.0], 2500.0, reach_mm).expect("gate");
    assert!(gate.lo > 300.0 && gate.lo < gate.peak, "{gate:?}");
    let before = mask.clone();
    let added = match grow_half_max(&mut mask, hu.view(), gate, spacing) {
        Grown::Added(n) => n,
        undone => panic!("the grow of an edge was undone: {undone:?}"),
    };
    let back = mask
        .iter()
        .zip(before.iter())
        .zip(bone.iter())
        .filter(|((&m, &b0), &b)| m != 0 && b0 == 0 && b != 0)
        .count();
    let extra = mask
        .iter()
        .zip(bone.iter())
        .filter(|(&m, &b)| m != 0 && b == 0)
        .count();
    // Most of the edge is at least half bone and comes back (83 % when written); what the grow
    // adds beyond the label (voxels less than half bone that still read above the half-maximum)
    // is a small part of it (38 voxels of muscle).
    assert!(
        back * 4 >= edge * 3,
        "{back} of {edge} edge voxels back; {added} added ({gate:?})"
    );
    assert!(
        extra * 20 < back,
        "{extra} voxels outside the label for {back}"
    );
    // Soft tissue, the scar in the craniotomy, the table and the holder stay out.
    let scar = Material::Scar as u8;
    let scar_all = material.iter().filter(|&&m| m == scar).count();
    assert!(
        scar_all > 100,
        "the head has a craniotomy: {scar_all} scar voxels"
    );
    let not_bone = [
        Material::Scar as u8,
        Material::TableCarbon as u8,
        Material::HolderPlastic as u8,
        Material::Foam as u8,
        Material::GreyMatter as u8,
        Material::WhiteMatter as u8,
    ];
    let mut by_material = std::collections::BTreeMap::<u8, usize>::new();
    for ((&m, &b), &mat) in mask.iter().zip(bone.iter()).zip(material.iter()) {
        if m != 0 && b == 0 {
            *by_material.entry(mat).or_default() += 1;
        }
    }
    let wrong: usize = not_bone.iter().filter_map(|m| by_material.get(m)).sum();
    assert!(
        wrong * 20 < scar_all,
        "{wrong} voxels of scar, table, holder, foam or brain grown into; outside the label by \
         material: {by_material:?}"
    );
}
