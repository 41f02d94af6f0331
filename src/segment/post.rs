//! Post-processing of a segmenter's thresholded mask, by [`PostMode`]: the marrow fill, the
//! half-maximum grow (session 12) and the choice of pieces ([`PostMode::Bones`], the CNN's
//! default since session 9), the paper's largest
//! component ([`PostMode::Largest`]), or nothing ([`PostMode::Raw`]). Returns the mask with a
//! [`PostProcessing`] record of what was done (logged, and written to `report.json`).

use ndarray::ArrayView3;

use super::bones::{keep_bones, min_voxels, Kept, PieceRules};
use super::components::{label, largest_component, Connectivity};
use super::fill::{self, fill_marrow, MarrowGate};
use super::grow::{self, grow_half_max, GrowGate, Grown};
use super::hysteresis::hysteresis;
use super::{GrowStats, Mask, PostMode, PostProcessing};
use crate::dicom::geometry::Geometry;

/// Post-processes `mask` (`[k, j, i]`, 1 = bone: a segmenter's thresholded output) of a scan with
/// grey values `grey` (same shape, the scan's own units) on `geometry`, whose normalisation
/// anchors air and soft tissue at `anchors` (`[air, tissue]`, the scan's units; HU on
/// calibrated CT). The marrow fill's gate and the pieces' air and metal levels go through the
/// anchors, so a linear map of the grey values (0.75 x HU + 200) moves them with it.
///
/// With [`PostMode::Bones`] and `uncertain` (`(probabilities, threshold)`: the network's bone
/// probability, same shape, and the threshold that made `mask`), uncertain bone joined to the
/// mask and above the half-maximum gate is added first ([`super::hysteresis`]).
///
/// # Panics
/// When `grey`, `mask` (and the probabilities) differ in shape (a caller bug).
pub fn post_process(
    mut mask: Mask,
    grey: ArrayView3<f32>,
    geometry: &Geometry,
    anchors: [f32; 2],
    mode: PostMode,
    uncertain: Option<(ArrayView3<f32>, f32)>,
) -> (Mask, PostProcessing) {
    assert_eq!(
        mask.dim(),
        grey.dim(),
        "mask and grey values differ in shape"
    );
    let mut post = PostProcessing {
        mode,
        ..PostProcessing::default()
    };
    let count = |m: &Mask| m.iter().filter(|&&v| v != 0).count() as u64;
    match mode {
        PostMode::Raw => {
            let found = label(&mask, Connectivity::TwentySix).count();
            post.pieces = Kept {
                found,
                kept: found,
                ..Kept::default()
            };
            post.marrow_fill_skipped = Some("post-processing raw".to_owned());
            (mask, post)
        }
        PostMode::Largest => {
            let before = count(&mask);
            let (largest, found) = largest_component(&mask, Connectivity::TwentySix);
            post.pieces = Kept {
                found,
                kept: usize::from(found > 0),
                dropped_voxels: before - count(&largest),
                ..Kept::default()
            };
            post.marrow_fill_skipped = Some("post-processing largest".to_owned());
            (largest, post)
        }
        PostMode::Bones => {
            let [air, tissue] = anchors;
            let max_gap = geometry
                .slice_spacings()
                .into_iter()
                .fold(geometry.nominal_slice_spacing(), f64::max);
            let anchored = MarrowGate::from_anchors(air, tissue);
            match anchored.filter(|_| fill::applies_to(geometry.pixel_spacing, max_gap)) {
                Some(gate) => {
                    let spacing = [
                        geometry.nominal_slice_spacing(),
                        geometry.pixel_spacing[0],
                        geometry.pixel_spacing[1],
                    ];
                    let f = fill_marrow(&mut mask, grey, gate, spacing);
                    post.marrow_fill = Some(f);
                    tracing::info!(
                        holes_filled = f.holes_filled,
                        holes_left = f.holes_left,
                        holes_too_thick = f.holes_too_thick,
                        voxels_added = f.voxels_added,
                        gate = ?[gate.lo, gate.hi],
                        "marrow fill"
                    );
                }
                None => {
                    let why = if anchored.is_none() {
                        "no grey-value anchors".to_owned()
                    } else {
                        format!(
                            "voxels coarser than {} mm (pixels {:.3} x {:.3} mm, largest slice \
                             gap {:.3} mm)",
                            fill::MAX_VOXEL_MM,
                            geometry.pixel_spacing[0],
                            geometry.pixel_spacing[1],
                            max_gap
                        )
                    };
                    tracing::info!(reason = %why, "marrow fill skipped");
                    post.marrow_fill_skipped = Some(why);
                }
            }
            let metal_level = anchored.map_or(f32::INFINITY, |gate| gate.hi);
            let reach_mm = grow::reach_mm(geometry.pixel_spacing, max_gap);
            match GrowGate::from_mask(&mask, grey, anchors, metal_level, reach_mm) {
                Ok(gate) => {
                    if let Some((prob, threshold)) = uncertain {
                        let h = hysteresis(&mut mask, prob, grey, threshold, gate);
                        if let Some(n) = h.undone_voxels {
                            tracing::warn!(
                                would_add = n,
                                low = h.low,
                                gate = ?[gate.lo, gate.hi],
                                "probability hysteresis undone: it would more than double the \
                                 network's own mask"
                            );
                        } else {
                            tracing::info!(
                                voxels_added = h.voxels_added,
                                low = h.low,
                                gate = ?[gate.lo, gate.hi],
                                "probability hysteresis (uncertain bone above the half-maximum, \
                                 joined to the mask)"
                            );
                        }
                        post.hysteresis = Some(h);
                    }
                    let spacing = [
                        geometry.nominal_slice_spacing(),
                        geometry.pixel_spacing[0],
                        geometry.pixel_spacing[1],
                    ];
                    let grown = grow_half_max(&mut mask, grey, gate, spacing);
                    let (added, undone) = match grown {
                        Grown::Added(n) => (n, None),
                        Grown::Undone(n) => (0, Some(n)),
                    };
                    if let Some(n) = undone {
                        tracing::warn!(
                            would_add = n,
                            gate = ?[gate.lo, gate.hi],
                            bone_level = gate.peak,
                            "half-maximum grow undone: it would more than double the network's \
                             own mask, so the gate is not at a bone edge (are the \
                             grey values calibrated, and is there bone in the series?)"
                        );
                    } else {
                        tracing::info!(
                            voxels_added = added,
                            gate = ?[gate.lo, gate.hi],
                            bone_level = gate.peak,
                            reach_mm = gate.reach_mm,
                            "half-maximum grow"
                        );
                    }
                    post.half_max_grow = Some(GrowStats {
                        gate,
                        voxels_added: added,
                        undone_voxels: undone,
                    });
                }
                Err(why) => {
                    tracing::info!(reason = %why, "half-maximum grow skipped");
                    post.half_max_grow_skipped = Some(why.to_string());
                }
            }
            let g = geometry;
            let voxel_ml =
                g.pixel_spacing[0] * g.pixel_spacing[1] * g.nominal_slice_spacing() / 1000.0;
            let rules = PieceRules {
                air_level: 0.5 * (air + tissue),
                metal_level,
                spacing_mm: [
                    g.nominal_slice_spacing(),
                    g.pixel_spacing[0],
                    g.pixel_spacing[1],
                ],
                min_voxels: min_voxels(voxel_ml),
            };
            let (kept_mask, kept) = keep_bones(&mask, grey, rules);
            tracing::info!(
                pieces = kept.found,
                kept = kept.kept,
                in_air = kept.in_air,
                intracranial = kept.intracranial,
                metal = kept.metal,
                dropped_voxels = kept.dropped_voxels,
                "bone pieces (the largest and separate bones inside the body; dropped: specks, \
                 pieces in air, inside the skull or of metal)"
            );
            post.pieces = kept;
            (kept_mask, post)
        }
    }
}
