//! Series assembly on real CT: the Philips study as a scanner sends it, the GE tilted head, and the
//! refusals (missing slice, not a volume).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use osteon::dicom::series::{self, SeriesError, SkipReason, AIR_HU};

fn ct(rel: &str) -> PathBuf {
    common::shared_data().join("ct").join(rel)
}

#[test]
fn philips_study_gives_two_ct_series() {
    let study = ct("philips-ingenuity-head-phantom");
    let scan = series::scan(&[study.clone()]);
    let mut sizes: Vec<usize> = scan.groups.iter().map(|g| g.instances.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![28, 140]);
    let localizers: Vec<_> = scan
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::Localizer)
        .collect();
    assert_eq!(localizers.len(), 1);
    assert!(localizers[0].path.starts_with(study.join("S1000")));
    let dose: Vec<_> = scan
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::SopClass("1.2.840.10008.5.1.4.1.1.7".into()))
        .collect();
    assert_eq!(dose.len(), 6);
    assert!(dose.iter().all(|s| s.path.starts_with(study.join("S4010"))));
    assert_eq!(scan.skipped.len(), 7);

    let g2020 = scan
        .groups
        .iter()
        .find(|g| g.instances.len() == 140)
        .unwrap();
    let t = Instant::now();
    let v = series::load_volume(g2020).unwrap();
    println!(
        "S2020 load_volume (read + decode, 140 slices): {:?}",
        t.elapsed()
    );
    assert_eq!(v.hu.dim(), (140, 512, 512));
    let g = &v.geometry;
    assert_eq!((g.rows, g.cols), (512, 512));
    assert_eq!(g.pixel_spacing, [0.451171875, 0.451171875]);
    assert_eq!(g.iop, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    assert!(
        g.slice_spacings().iter().all(|s| (s - 1.0).abs() < 1e-4),
        "{:?}",
        g.slice_spacings()
    );
    assert!(g.tilt_deg() < 1e-6);
    // Sorted by ascending projection on the normal.
    assert!(g.ipp.windows(2).all(|w| w[1][2] > w[0][2]));
    assert_eq!(v.slices.len(), 140);
    assert!(v
        .slices
        .iter()
        .all(|s| s.frame_number.is_none() && s.path.starts_with(study.join("S2020"))));
    let i = &v.info;
    assert_eq!(i.modality, "CT");
    assert_eq!(i.manufacturer, "Philips");
    assert_eq!(i.manufacturer_model_name, "Ingenuity CT");
    assert_eq!(i.series_description, "STD BRAIN 1MM, iDose");
    assert_eq!(i.convolution_kernel, "UB");
    assert_eq!(i.series_number, Some(202));
    assert_eq!(i.kvp, Some(120.0));
    assert_eq!(i.slice_thickness, Some(1.0));
    assert_eq!(i.image_type, vec!["ORIGINAL", "PRIMARY", "AXIAL"]);
    assert_eq!(
        i.study_instance_uid,
        "1.3.46.670589.33.1.27492712521914879309.27169771283235650014"
    );
    // A phantom skull: air around it, bone inside the HU range.
    let (lo, hi) =
        v.hu.iter()
            .fold((f32::MAX, f32::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    println!("S2020 HU range {lo} .. {hi}");
    assert!(lo <= -1000.0 && hi > 1000.0);

    let all = series::load_series(&[study]);
    assert_eq!(all.volumes.len(), 2);
    assert!(all.refused.is_empty(), "{:?}", all.refused);
    let s2010 = all.volumes.iter().find(|v| v.hu.dim().0 == 28).unwrap();
    assert!(s2010
        .geometry
        .slice_spacings()
        .iter()
        .all(|s| (s - 5.0).abs() < 1e-4));
}

#[test]
fn ge_tilted_head_loads_with_exact_geometry() {
    let load = series::load_series(&[ct("ge-hispeed-dual-head-tilt")]);
    assert!(load.refused.is_empty(), "{:?}", load.refused);
    assert_eq!(load.volumes.len(), 1);
    let v = &load.volumes[0];
    assert_eq!(v.hu.dim(), (28, 512, 512));
    let g = &v.geometry;
    println!(
        "GE tilt {:.4} deg, spacings {:?}",
        g.tilt_deg(),
        g.slice_spacings()
    );
    assert!((g.tilt_deg() - 18.5).abs() < 1e-3);
    let s = g.slice_spacings();
    let (lo, hi) = s
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    assert!(
        (lo - 1.081).abs() < 1e-3 && (hi - 6.9986).abs() < 1e-3,
        "{lo} {hi}"
    );
    assert!((g.pixel_spacing[0] - 0.488).abs() < 1e-3);
    // PixelPaddingValue -1500 (signed) -> air; nothing below the padding's HU remains.
    let air = v.hu.iter().filter(|x| **x == AIR_HU).count();
    let below = v.hu.iter().filter(|x| **x < -1024.0).count();
    println!("GE air voxels {air}, below -1024 HU {below}");
    assert!(air > 100_000);
    assert_eq!(below, 0);
}

#[test]
fn refusals() {
    let odd = common::shared_data().join("odd/geometry-placeholder-pixels");
    let gap = series::load_series(&[odd.join("dicom2nifti_sliceincrement/002")]);
    assert!(matches!(
        &gap.refused[..],
        [SeriesError::MissingSlices {
            instance_before: 3,
            instance_after: 5,
            ..
        }]
    ));
    let nav = series::load_series(&[odd.join("dicom2nifti_notavolume")]);
    match &nav.refused[..] {
        [e @ SeriesError::NotAVolume { file_a, file_b, .. }] => {
            assert_ne!(file_a, file_b);
            assert!(e.to_string().contains("same position"));
        }
        other => panic!("{other:?}"),
    }
    // A single slice is not a volume.
    let one = series::scan_files(&[ct("ge-hispeed-dual-head-tilt/01.dcm")]);
    assert_eq!(one.groups.len(), 1);
    assert!(matches!(
        series::load_volume(&one.groups[0]),
        Err(SeriesError::TooFewSlices { count: 1, .. })
    ));
    // A refused series does not poison another one loaded together.
    let both = series::load_series(&[
        odd.join("dicom2nifti_notavolume"),
        ct("ge-hispeed-dual-head-tilt"),
    ]);
    assert_eq!((both.volumes.len(), both.refused.len()), (1, 1));
    // Duplicate SOP Instance UIDs are dropped at scan.
    let dup = series::scan_files(&[
        ct("ge-hispeed-dual-head-tilt/01.dcm"),
        ct("ge-hispeed-dual-head-tilt/01.dcm"),
    ]);
    assert!(matches!(
        dup.skipped[..],
        [series::Skipped {
            reason: SkipReason::Duplicate { .. },
            ..
        }]
    ));
}
