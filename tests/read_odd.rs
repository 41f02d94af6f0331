//! Inputs that break naive readers (shared/data/odd): each file either loads (asserting what it
//! loads as) or is refused with a specific error variant; nothing panics.

mod common;

use std::path::{Path, PathBuf};

use ndarray::Array2;
use osteon::dicom::meta::{self, MetaError, OpenedAs, ReadMode};
use osteon::dicom::pixels::{self, PixelError};
use osteon::dicom::series::{self, read_header, SeriesError, SkipReason, AIR_HU};

fn odd(rel: &str) -> PathBuf {
    common::shared_data().join("odd").join(rel)
}

fn decode(rel: &str) -> Result<Vec<Array2<f32>>, PixelError> {
    let p = odd(rel);
    let obj = meta::open(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
    pixels::decode_hu(&obj, &p)
}

fn min_max(a: &Array2<f32>) -> (f32, f32) {
    a.iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// Loads as one frame of the given size with the given HU range.
fn loads(rel: &str, dim: (usize, usize), range: (f32, f32)) -> Array2<f32> {
    let mut f = decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(f.len(), 1, "{rel}");
    let f = f.remove(0);
    assert_eq!(f.dim(), dim, "{rel}");
    assert_eq!(min_max(&f), range, "{rel}");
    f
}

fn skipped(rel: &str) -> SkipReason {
    match read_header(&odd(rel)) {
        Ok(h) => panic!(
            "{rel}: kept as CT ({} frames) but should be skipped",
            h.frames.len()
        ),
        Err(s) => s.reason,
    }
}

#[test]
fn every_file_is_handled_without_panic() {
    // Every file under odd/ (DICOM or not) goes through the scan; the counts pin the outcome.
    let s = series::scan(&[odd("")]);
    let kept: usize = s.groups.iter().map(|g| g.instances.len()).sum();
    let files = walk(&odd(""));
    assert_eq!(kept + s.skipped.len(), files.len());
    let unreadable = s
        .skipped
        .iter()
        .filter(|k| matches!(k.reason, SkipReason::Unreadable(_)))
        .count();
    println!(
        "odd/: {} files, {kept} CT instances kept, {} skipped ({unreadable} unreadable)",
        files.len(),
        s.skipped.len()
    );
    // Not DICOM: screenshots, NRRD, NIfTI, info.txt; plus GH177 (broken item).
    assert_eq!(unreadable, 4 + 2 + 2 + 1 + 1);
    // Loading every group refuses or loads, never panics.
    let load = series::load_series(&[odd("")]);
    println!(
        "odd/: {} volumes, {} refused",
        load.volumes.len(),
        load.refused.len()
    );
    assert_eq!(load.volumes.len() + load.refused.len(), s.groups.len());
}

fn walk(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flat_map(|e| walk(&e.unwrap().path()))
            .collect()
    } else {
        vec![p.to_owned()]
    }
}

#[test]
fn rle_with_fragments_loads_exactly() {
    // dicom-rs 0.10.1 panics on this file; our Annex G decoder reads it.
    let got = loads(
        "private-compression-corrupt/D_CLUNIE_CT1_RLE_FRAGS.dcm",
        (512, 512),
        (-1024.0, 1254.0),
    );
    let reference = common::shared_data().join("transfer-syntax/nema-wg04-ct1-ct2/CT1_UNC.dcm");
    let want = pixels::decode_hu(&meta::open(&reference).unwrap(), &reference).unwrap();
    assert_eq!(got, want[0]);
}

#[test]
fn fragmented_jpeg_without_offset_table_is_split_then_refused_as_12_bit() {
    let rel = "enhanced-multiframe/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm";
    let p = odd(rel);
    let obj = meta::open(&p).unwrap();
    let frames = pixels::encapsulated_frames(&obj, &p).unwrap().unwrap();
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert_eq!(&f[..2], &[0xFF, 0xD8], "frame starts with SOI");
        assert!(f.windows(2).any(|w| w == [0xFF, 0xD9]), "frame holds EOI");
    }
    match decode(rel) {
        Err(PixelError::Decode {
            transfer_syntax,
            reason,
            ..
        }) => {
            assert_eq!(transfer_syntax, "1.2.840.10008.1.2.4.51");
            assert!(reason.contains("SamplePrecision(12)"), "{reason}");
        }
        other => panic!("{rel}: {other:?}"),
    }
    let h = read_header(&p).unwrap();
    assert_eq!(h.frames.len(), 2);
    assert_eq!(h.frames[1].frame_number, Some(2));
}

#[test]
fn enhanced_and_legacy_multiframe() {
    let f = decode("enhanced-multiframe/eCT_Supplemental.dcm").unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].dim(), (512, 512));
    assert_eq!(min_max(&f[0]), (-1024.0, 172.0));
    let h = read_header(&odd("enhanced-multiframe/eCT_Supplemental.dcm")).unwrap();
    assert_eq!(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2.1");
    assert_eq!(h.frames.len(), 2);
    // Legacy Converted Enhanced CT equals its single-frame source, frame by frame.
    for d in ["dcmqi_23x38x3", "dcmqi_24x38x3"] {
        let mf = decode(&format!("enhanced-multiframe/{d}/multiframe/mf.dcm")).unwrap();
        assert_eq!(mf.len(), 3);
        let cols = if d.starts_with("dcmqi_23") { 23 } else { 24 };
        assert_eq!(mf[0].dim(), (38, cols));
        let single = series::load_series(&[odd(&format!("enhanced-multiframe/{d}/image"))]);
        let multi = series::load_series(&[odd(&format!("enhanced-multiframe/{d}/multiframe"))]);
        assert_eq!(
            (single.volumes.len(), multi.volumes.len()),
            (1, 1),
            "{d}: {:?} {:?}",
            single.refused,
            multi.refused
        );
        let (s, m) = (&single.volumes[0], &multi.volumes[0]);
        assert_eq!(s.hu, m.hu, "{d}");
        assert_eq!(s.geometry, m.geometry, "{d}");
        assert_eq!(
            m.slices.iter().map(|r| r.frame_number).collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3)]
        );
        assert_eq!(s.slices[0].frame_number, None);
        assert_eq!(
            skipped(&format!("enhanced-multiframe/{d}/seg/label.seg")),
            SkipReason::SopClass("1.2.840.10008.5.1.4.1.1.66.4".into())
        );
        assert!(matches!(
            decode(&format!("enhanced-multiframe/{d}/seg/label.seg")),
            Err(PixelError::UnsupportedBits {
                bits_allocated: 1,
                ..
            })
        ));
    }
}

#[test]
fn geometry_placeholder_series() {
    let g = "geometry-placeholder-pixels";
    let tilt = series::load_series(&[odd(&format!("{g}/dicom2nifti_gantrytilting"))]);
    assert_eq!(tilt.volumes.len(), 1, "{:?}", tilt.refused);
    assert_eq!(tilt.volumes[0].hu.dim(), (4, 512, 512));
    println!(
        "dicom2nifti_gantrytilting tilt {:.3} deg",
        tilt.volumes[0].geometry.tilt_deg()
    );
    assert!((tilt.volumes[0].geometry.tilt_deg() - 14.0).abs() < 1e-6);
    let inc = series::load_series(&[odd(&format!("{g}/dicom2nifti_sliceincrement/001"))]);
    // Two AcquisitionNumbers (4: 5 mm increment, 5: 10 mm) are two acquisitions, loaded apart.
    assert_eq!(inc.volumes.len(), 2, "{:?}", inc.refused);
    let spacings: Vec<Vec<f64>> = inc
        .volumes
        .iter()
        .map(|v| v.geometry.slice_spacings())
        .collect();
    assert!(
        (spacings[0][0] - 5.0).abs() < 1e-3 && (spacings[1][0] - 10.0).abs() < 1e-3,
        "{spacings:?}"
    );
    let gap = series::load_series(&[odd(&format!("{g}/dicom2nifti_sliceincrement/002"))]);
    assert!(gap.volumes.is_empty());
    match &gap.refused[..] {
        [SeriesError::MissingSlices {
            instance_before,
            instance_after,
            file_after,
            ..
        }] => {
            assert_eq!((*instance_before, *instance_after), (3, 5));
            assert!(file_after.ends_with("IM-0001-0005.dcm"));
        }
        other => panic!("{other:?}"),
    }
    let nav = series::load_series(&[odd(&format!("{g}/dicom2nifti_notavolume"))]);
    assert!(nav.volumes.is_empty());
    assert!(
        matches!(&nav.refused[..], [SeriesError::NotAVolume { .. }]),
        "{:?}",
        nav.refused
    );
}

#[test]
fn localizers_and_secondary_captures_are_skipped() {
    let l = "localizer-nonsquare";
    assert_eq!(
        skipped(&format!("{l}/GH1728_SC_568x652.dcm")),
        SkipReason::SopClass("1.2.840.10008.5.1.4.1.1.7".into())
    );
    for f in [
        "GH342_Philips_IngenuityFlex_Surview.dcm",
        "MAROTECH_Philips_Brilliance64_localizer_716x512_j2k_lossy.dcm",
        "barre_GE_HiSpeed_chest_localizer_400x512_jpegll70.dcm",
        "orthanc_Philips_AccessCT_localizer.dcm",
    ] {
        assert_eq!(skipped(&format!("{l}/{f}")), SkipReason::Localizer, "{f}");
    }
    // They still decode (odd sizes, J2K lossy with a rebuilt meta group, JPEG lossless).
    loads(
        &format!("{l}/MAROTECH_Philips_Brilliance64_localizer_716x512_j2k_lossy.dcm"),
        (716, 512),
        (-1024.0, 2988.0),
    );
    loads(
        &format!("{l}/barre_GE_HiSpeed_chest_localizer_400x512_jpegll70.dcm"),
        (400, 512),
        (-196.0, 406.0),
    );
    let (_, how) = meta::open_with(
        &odd(&format!(
            "{l}/MAROTECH_Philips_Brilliance64_localizer_716x512_j2k_lossy.dcm"
        )),
        ReadMode::HeaderOnly,
    )
    .unwrap();
    assert_eq!(how, OpenedAs::RebuiltMeta);
}

#[test]
fn missing_meta_ipp_pixels() {
    let m = "missing-meta-ipp-pixels";
    match meta::open(&odd(&format!(
        "{m}/GH177_D_CLUNIE_CT1_IVRLE_BigEndian_ELE_undefinded_length.dcm"
    ))) {
        Err(MetaError::NotDicom { reason, .. }) => {
            assert!(reason.contains("data set token"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        skipped(&format!("{m}/GH223.dcm")),
        SkipReason::Modality(String::new())
    );
    assert_eq!(
        skipped(&format!("{m}/GH487.dcm")),
        SkipReason::Modality(String::new())
    );
    assert_eq!(
        skipped(&format!("{m}/GH355_private_SOPclass_Philips3D.dcm")),
        SkipReason::SopClass("1.3.46.670589.11.0.0.12.1".into())
    );
    assert_eq!(
        skipped(&format!("{m}/barre_CT-MONO2-16-ankle_SC_noIPP.dcm")),
        SkipReason::SopClass("1.2.840.10008.5.1.4.1.1.7".into())
    );
    let nometa = odd(&format!(
        "{m}/barre_Siemens_PLUS4_nopreamble_nometa_noIPP.dcm"
    ));
    let (_, how) = meta::open_with(&nometa, ReadMode::Full).unwrap();
    assert_eq!(how, OpenedAs::NoMeta("1.2.840.10008.1.2"));
    assert_eq!(
        skipped(&format!(
            "{m}/barre_Siemens_PLUS4_nopreamble_nometa_noIPP.dcm"
        )),
        SkipReason::SopClass(String::new())
    );
    assert!(matches!(
        decode(&format!("{m}/GH223.dcm")),
        Err(PixelError::NotMonochrome { .. })
    ));
}

#[test]
fn oriented_synthetic_volume() {
    // The synthetic slices carry one SeriesInstanceUID but a different StudyInstanceUID each:
    // never merged into one volume (each is its own group, refused as a single slice).
    let v = series::load_series(&[odd("oriented-synthetic")]);
    assert!(v.volumes.is_empty());
    assert_eq!(v.refused.len(), 3, "{:?}", v.refused);
    assert!(v
        .refused
        .iter()
        .all(|e| matches!(e, SeriesError::TooFewSlices { count: 1, .. })));
    // With a common StudyInstanceUID they form the oblique volume.
    let dir = tempfile::tempdir().unwrap();
    for f in ["0.dcm", "1.dcm", "2.dcm"] {
        let mut o = dicom_object::open_file(odd(&format!("oriented-synthetic/{f}"))).unwrap();
        o.put(dicom_core::DataElement::new(
            dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from("1.2.3.4"),
        ));
        o.write_to_file(dir.path().join(f)).unwrap();
    }
    let v = series::load_series(&[dir.path().to_owned()]);
    assert_eq!(v.volumes.len(), 1, "{:?}", v.refused);
    let vol = &v.volumes[0];
    assert_eq!(vol.hu.dim(), (3, 50, 100));
    assert_eq!(vol.geometry.pixel_spacing, [3.5, 2.5]);
    // RescaleSlope 0.001: HU within ±10.
    let (lo, hi) = vol
        .hu
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(lo >= -10.0 && hi <= 10.0 && hi - lo > 19.0, "{lo} {hi}");
    println!("oriented-synthetic IOP {:?}", vol.geometry.iop);
}

#[test]
fn pixel_representation_and_padding() {
    let p = "pixel-representation-padding";
    // PixelPaddingValue 63536 in a US tag with signed pixels = -2000 -> air.
    let f = loads(
        &format!("{p}/GH1308_GE_Optima_pr1_pad63536.dcm"),
        (512, 512),
        (-1000.0, 1376.0),
    );
    let air = f.iter().filter(|v| **v == AIR_HU).count();
    println!("GH1308 padding voxels {air}");
    assert!(air > 10_000, "{air}");
    let a = loads(
        &format!("{p}/TOSHIBA_J2K_SIZ0_PixRep1.dcm"),
        (512, 512),
        (-2048.0, 1717.0),
    );
    // Signed codestream, PixelRepresentation 0: read as signed, same pixels as its twin.
    let b = loads(
        &format!("{p}/TOSHIBA_J2K_SIZ1_PixRep0.dcm"),
        (512, 512),
        (-2048.0, 1717.0),
    );
    assert_eq!(a, b);
    loads(
        &format!("{p}/TOSHIBA_J2K_OpenJPEGv2Regression.dcm"),
        (512, 512),
        (-2048.0, 1969.0),
    );
    loads(
        &format!("{p}/orthanc_GE_BrightSpeed_knee.dcm"),
        (512, 512),
        (-1024.0, 2366.0),
    );
    loads(
        &format!("{p}/orthanc_SignedCT_GE_BrightSpeed.dcm"),
        (512, 512),
        (-1024.0, 3018.0),
    );
}

#[test]
fn private_compression_and_corrupt() {
    let c = "private-compression-corrupt";
    loads(
        &format!("{c}/2020-09-11-Christopher-ELSCINT1-Raw.dcm"),
        (512, 512),
        (-1024.0, 1265.0),
    );
    assert_eq!(
        skipped(&format!("{c}/2020-09-12-ELSCINT1-PMSCT_RLE1.dcm")),
        SkipReason::NoPixelData
    );
    assert!(matches!(
        decode(&format!("{c}/2020-09-12-ELSCINT1-PMSCT_RLE1.dcm")),
        Err(PixelError::NoPixelData { .. })
    ));
    match decode(&format!("{c}/JPEGLossless_1s_1f_i_16_16_bad.dcm")) {
        Err(PixelError::ImplausibleHu { fraction_pct, .. }) => {
            println!("bad JPEG: {fraction_pct:.1}% implausible");
            assert!(fraction_pct > 30.0);
        }
        other => panic!("{other:?}"),
    }
    loads(
        &format!("{c}/bad_sequence.dcm"),
        (512, 512),
        (-1011.0, 1243.0),
    );
    // Explicit VR UN attributes decoded by their dictionary VR.
    loads(
        &format!("{c}/explicit_VR-UN.dcm"),
        (512, 512),
        (-1024.0, 1186.0),
    );
    let h = read_header(&odd(&format!("{c}/explicit_VR-UN.dcm"))).unwrap();
    assert_eq!(h.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
}
