//! The two result writers: DICOM SEG (`osteon::dicom::seg`) and Encapsulated STL
//! (`osteon::dicom::stl_object`). Each object is validated with dciodvfy (zero "Error" lines), read
//! back with our reader, and read back independently with pydicom (tests/py/*.py), voxel for voxel and
//! byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_dictionary_std::tags;
use ndarray::Array3;
use osteon::dicom::geometry::Geometry;
use osteon::dicom::seg::{self, format_ds, read_seg_mask, SegError, SegmentDescription};
use osteon::dicom::series::{CtVolume, SeriesInfo, SliceRef};
use osteon::dicom::stl_object::{self, build_encapsulated_stl, extract_stl, StlDescription};

const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

/// Series identity shared by the synthetic volumes.
fn info() -> SeriesInfo {
    SeriesInfo {
        study_instance_uid: "1.2.826.0.1.3680043.8.498.10".into(),
        series_instance_uid: "1.2.826.0.1.3680043.8.498.11".into(),
        frame_of_reference_uid: "1.2.826.0.1.3680043.8.498.12".into(),
        modality: "CT".into(),
        patient_name: "Müller^Jürgen".into(),
        patient_id: "PID-42".into(),
        patient_birth_date: "19700101".into(),
        patient_sex: "M".into(),
        study_date: "20240102".into(),
        study_time: "101112".into(),
        study_id: "S1".into(),
        accession_number: "ACC1".into(),
        series_number: Some(3),
        ..Default::default()
    }
}

/// 5 slices of 23 x 38 (874 pixels per frame: not a multiple of 8), gantry tilt as a shear of the IPPs
/// (+0.3 mm in y per slice), 2.5 mm spacing, IPP values with many decimals.
fn synthetic_ct() -> CtVolume {
    let n = 5;
    let ipp: Vec<[f64; 3]> = (0..n)
        .map(|k| [-100.123456, -120.5 + 0.3 * k as f64, 40.0 + 2.5 * k as f64])
        .collect();
    let slices = (0..n)
        .map(|k| SliceRef {
            sop_class_uid: CT_IMAGE_STORAGE.into(),
            sop_instance_uid: format!("1.2.826.0.1.3680043.8.498.13.{}", k + 1),
            frame_number: None,
            path: PathBuf::from(format!("slice{k}.dcm")),
        })
        .collect();
    CtVolume {
        hu: Array3::zeros((n, 23, 38)),
        geometry: Geometry {
            ipp,
            iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.7, 0.45],
            rows: 23,
            cols: 38,
        },
        slices,
        info: info(),
    }
}

/// Known pattern; slice 2 stays empty (it must still get a frame).
fn pattern(dims: [usize; 3]) -> Array3<u8> {
    Array3::from_shape_fn((dims[0], dims[1], dims[2]), |(k, j, i)| {
        u8::from(k != 2 && (k * 7 + j * 3 + i) % 5 == 0)
    })
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs a script of tests/py with the validator Python; returns its JSON output.
fn py(script: &str, args: &[&Path]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(common::python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run validator Python");
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the Python reader")
}

fn assert_dciodvfy_clean(path: &Path) -> String {
    let (errors, text) = common::dciodvfy(path);
    assert!(
        errors.is_empty(),
        "dciodvfy errors for {}:\n{text}",
        path.display()
    );
    text
}

/// Writes the SEG of `mask` on `ct`, validates it and reads it back three ways.
fn check_seg_round_trip(
    ct: &CtVolume,
    mask: &Array3<u8>,
    d: &SegmentDescription,
) -> (tempfile::TempDir, PathBuf) {
    let tmpdir = tmp();
    let dir = tmpdir.path().to_owned();
    let path = dir.join("seg.dcm");
    let obj = seg::build_seg(ct, mask.view(), d).expect("build SEG");
    // SeriesNumber follows the source's (100 x n + 1) unless the description sets one.
    let number = obj
        .element(dicom_dictionary_std::tags::SERIES_NUMBER)
        .expect("SeriesNumber")
        .to_int::<i64>()
        .expect("IS");
    let want = d
        .series_number
        .unwrap_or(100 * ct.info.series_number.unwrap_or(99) + 1);
    assert_eq!(number, want);
    seg::write(&obj, &path).expect("write SEG");
    let report = assert_dciodvfy_clean(&path);
    eprintln!("dciodvfy {}:\n{report}", path.display());

    // our reader
    let back = read_seg_mask(&path).expect("read our SEG");
    assert_eq!(back.frames, *mask, "read_seg_mask differs from the mask");
    assert_eq!(
        back.ipp, ct.geometry.ipp,
        "frame IPP differs from source IPP"
    );
    let expected_sources: Vec<Vec<String>> = ct
        .slices
        .iter()
        .map(|s| vec![s.sop_instance_uid.clone()])
        .collect();
    assert_eq!(back.source_sop_instance_uids, expected_sources);
    assert!(back.segment_numbers.iter().all(|&s| s == Some(1)));

    // pydicom, unpacking independently
    let raw = dir.join("frames.raw");
    let j = py("read_seg.py", &[&path, &raw]);
    let frames = std::fs::read(&raw).expect("read frames.raw");
    assert_eq!(frames.len(), mask.len());
    assert!(
        frames.iter().zip(mask.iter()).all(|(a, b)| a == b),
        "pydicom frames differ from the mask"
    );
    let total = mask.len();
    assert_eq!(
        j["pixel_data_length"],
        serde_json::json!(total.div_ceil(8).next_multiple_of(2))
    );
    assert_eq!(
        j["set_pixels"],
        serde_json::json!(mask.iter().filter(|&&v| v == 1).count())
    );
    assert_eq!(j["pixel_array_agrees"], serde_json::json!(true));
    assert_eq!(j["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.66.4");
    for (k, p) in ct.geometry.ipp.iter().enumerate() {
        let strs: Vec<String> = p.iter().map(|&v| format_ds(v).expect("finite")).collect();
        assert_eq!(j["ipp"][k], serde_json::json!(strs), "frame {k}");
        for c in 0..3 {
            let s = j["ipp"][k][c].as_str().expect("IPP string");
            assert_eq!(
                s.trim().parse::<f64>().expect("DS"),
                p[c],
                "frame {k} component {c}: {s}"
            );
        }
    }
    assert_eq!(j["sources"], serde_json::json!(expected_sources));
    (tmpdir, path)
}

#[test]
fn seg_of_synthetic_tilted_volume_is_valid_and_round_trips() {
    let ct = synthetic_ct();
    let mask = pattern(ct.geometry.dims());
    assert!(mask.iter().filter(|&&v| v == 1).count() > 100);
    let (_dir, path) = check_seg_round_trip(&ct, &mask, &SegmentDescription::default());

    let obj = dicom_object::open_file(&path).expect("open");
    let s = |tag| {
        obj.element(tag)
            .expect("element")
            .to_str()
            .expect("str")
            .trim()
            .to_string()
    };
    assert_eq!(s(tags::STUDY_INSTANCE_UID), ct.info.study_instance_uid);
    assert_eq!(
        s(tags::FRAME_OF_REFERENCE_UID),
        ct.info.frame_of_reference_uid
    );
    assert_ne!(s(tags::SERIES_INSTANCE_UID), ct.info.series_instance_uid);
    assert_eq!(s(tags::PATIENT_NAME), "Müller^Jürgen");
    assert_eq!(s(tags::NUMBER_OF_FRAMES), "5");
    assert_eq!(
        obj.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2.1"
    );
    assert_eq!(
        obj.meta().implementation_class_uid().trim_end_matches('\0'),
        osteon::dicom::write::IMPLEMENTATION_CLASS_UID
    );
    // uniform 2.5 mm spacing along the normal: SpacingBetweenSlices present
    let shared = &obj
        .element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .expect("shared")
        .items()
        .expect("items")[0];
    let pm = &shared
        .element(tags::PIXEL_MEASURES_SEQUENCE)
        .expect("pm")
        .items()
        .expect("items")[0];
    let num = |tag| pm.element(tag).expect("el").to_multi_float64().expect("ds");
    assert_eq!(num(tags::SPACING_BETWEEN_SLICES), vec![2.5]);
    assert_eq!(num(tags::SLICE_THICKNESS), vec![2.5]);
    assert_eq!(num(tags::PIXEL_SPACING), vec![0.7, 0.45]);
    // category/type codes: Tissue / Bone
    let segment = &obj
        .element(tags::SEGMENT_SEQUENCE)
        .expect("seg seq")
        .items()
        .expect("items")[0];
    let code = |tag| {
        let it = &segment
            .element(tag)
            .expect("code seq")
            .items()
            .expect("items")[0];
        it.element(tags::CODE_VALUE)
            .expect("cv")
            .to_str()
            .expect("str")
            .trim()
            .to_string()
    };
    assert_eq!(
        code(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE),
        "85756007"
    );
    assert_eq!(
        code(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE),
        "272673000"
    );
}

#[test]
fn seg_of_variable_spacing_multiframe_source_and_skull_codes() {
    let mut ct = synthetic_ct();
    // variable spacing; every slice is a frame of one Enhanced CT instance
    ct.geometry.ipp[4][2] += 1.75;
    for (k, s) in ct.slices.iter_mut().enumerate() {
        s.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2.1".into();
        s.sop_instance_uid = "1.2.826.0.1.3680043.8.498.14".into();
        s.frame_number = Some(k as u32 + 1);
    }
    let mask = pattern(ct.geometry.dims()).mapv(|v| 1 - v);
    let d = SegmentDescription {
        skull_specific: true,
        segment_label: "Skull".into(),
        ..Default::default()
    };
    let (_dir, path) = check_seg_round_trip(&ct, &mask, &d);

    let obj = dicom_object::open_file(&path).expect("open");
    let shared = &obj
        .element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .expect("shared")
        .items()
        .expect("items")[0];
    let pm = &shared
        .element(tags::PIXEL_MEASURES_SEQUENCE)
        .expect("pm")
        .items()
        .expect("items")[0];
    assert!(
        pm.get(tags::SPACING_BETWEEN_SLICES).is_none(),
        "non-uniform spacing must omit SpacingBetweenSlices"
    );
    let frames = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .expect("pf")
        .items()
        .expect("items");
    for (k, f) in frames.iter().enumerate() {
        let der = &f
            .element(tags::DERIVATION_IMAGE_SEQUENCE)
            .expect("der")
            .items()
            .expect("items")[0];
        let src = &der
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .expect("src")
            .items()
            .expect("items")[0];
        let frame = src
            .element(tags::REFERENCED_FRAME_NUMBER)
            .expect("ReferencedFrameNumber");
        assert_eq!(frame.to_int::<u32>().expect("int"), k as u32 + 1);
    }
    let rs = &obj
        .element(tags::REFERENCED_SERIES_SEQUENCE)
        .expect("rs")
        .items()
        .expect("items")[0];
    assert_eq!(
        rs.element(tags::REFERENCED_INSTANCE_SEQUENCE)
            .expect("ri")
            .items()
            .expect("items")
            .len(),
        1
    );
    let segment = &obj
        .element(tags::SEGMENT_SEQUENCE)
        .expect("seg seq")
        .items()
        .expect("items")[0];
    let it = &segment
        .element(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
        .expect("type")
        .items()
        .expect("items")[0];
    assert_eq!(
        it.element(tags::CODE_VALUE)
            .expect("cv")
            .to_str()
            .expect("s")
            .trim(),
        "89546000"
    );
}

#[test]
fn seg_refuses_bad_inputs() {
    let ct = synthetic_ct();
    let wrong = Array3::<u8>::zeros((5, 23, 37));
    assert!(matches!(
        seg::build_seg(&ct, wrong.view(), &SegmentDescription::default()),
        Err(SegError::ShapeMismatch {
            mask: [5, 23, 37],
            volume: [5, 23, 38]
        })
    ));
    let mask = pattern(ct.geometry.dims());
    let mut no_for = synthetic_ct();
    no_for.info.frame_of_reference_uid.clear();
    assert!(matches!(
        seg::build_seg(&no_for, mask.view(), &SegmentDescription::default()),
        Err(SegError::MissingSource(a)) if a.starts_with("FrameOfReferenceUID")
    ));
    let bad_label = SegmentDescription {
        content_label: "bone label".into(),
        ..Default::default()
    };
    assert!(matches!(
        seg::build_seg(&ct, mask.view(), &bad_label),
        Err(SegError::BadValue { .. })
    ));
    let mut nan = synthetic_ct();
    nan.geometry.ipp[1][0] = f64::NAN;
    assert!(matches!(
        seg::build_seg(&nan, mask.view(), &SegmentDescription::default()),
        Err(SegError::BadValue { .. })
    ));
    assert!(matches!(
        read_seg_mask(Path::new("/nonexistent/seg.dcm")),
        Err(SegError::Open { .. })
    ));
}

#[test]
fn read_seg_mask_unpacks_non_byte_aligned_reference() {
    // pydicom-data liver SEG: 3 frames of 510 x 510 (260100 pixels, 260100 % 8 = 4).
    let path =
        common::shared_data().join("seg-reference/pydicom-data-liver/liver_nonbyte_aligned.dcm");
    let ours = read_seg_mask(&path).expect("read reference SEG");
    assert_eq!(ours.frames.dim(), (3, 510, 510));
    let dir = tmp();
    let raw = dir.path().join("frames.raw");
    let j = py("read_seg.py", &[&path, &raw]);
    assert_eq!(j["pixel_array_agrees"], serde_json::json!(true), "{j}");
    let theirs = std::fs::read(&raw).expect("raw");
    assert_eq!(theirs.len(), ours.frames.len());
    assert!(
        theirs.iter().zip(ours.frames.iter()).all(|(a, b)| a == b),
        "frames differ from pydicom"
    );
    let set = ours.frames.iter().filter(|&&v| v == 1).count();
    assert_eq!(j["set_pixels"], serde_json::json!(set));
    assert!(set > 0);
    for (k, p) in ours.ipp.iter().enumerate() {
        let theirs: Vec<f64> = (0..3)
            .map(|c| {
                j["ipp"][k][c]
                    .as_str()
                    .expect("s")
                    .trim()
                    .parse()
                    .expect("f64")
            })
            .collect();
        assert_eq!(p.to_vec(), theirs);
    }
    assert_eq!(ours.ipp[0], [-235.2, -226.8, -128.69]);
}

/// Binary STL of one triangle (84 + 50 bytes) plus `extra` bytes to make odd lengths.
fn stl_bytes(extra: usize) -> Vec<u8> {
    let mut v = vec![0u8; 80];
    v[..6].copy_from_slice(b"osteon");
    v.extend_from_slice(&1u32.to_le_bytes());
    for f in [
        0.0f32, 0.0, 1.0, -100.5, 20.25, 3.0, -99.5, 20.25, 3.0, -100.5, 21.25, 3.0,
    ] {
        v.extend_from_slice(&f.to_le_bytes());
    }
    v.extend_from_slice(&[0, 0]);
    v.extend((0..extra).map(|x| x as u8 ^ 0x5a));
    v
}

fn check_stl_round_trip(ct: &CtVolume, stl: &[u8]) {
    let dir = tmp();
    let path = dir.path().join("stl.dcm");
    let obj =
        build_encapsulated_stl(ct, stl, &StlDescription::default()).expect("build STL object");
    assert_eq!(extract_stl(&obj).expect("extract"), stl);
    let number = obj
        .element(dicom_dictionary_std::tags::SERIES_NUMBER)
        .expect("SeriesNumber")
        .to_int::<i64>()
        .expect("IS");
    assert_eq!(number, 100 * ct.info.series_number.unwrap_or(99) + 2);
    stl_object::write(&obj, &path).expect("write");
    let report = assert_dciodvfy_clean(&path);
    eprintln!("dciodvfy {}:\n{report}", path.display());
    let back = dicom_object::open_file(&path).expect("open");
    assert_eq!(extract_stl(&back).expect("extract from file"), stl);
    let out = dir.path().join("out.stl");
    let j = py("read_stl.py", &[&path, &out]);
    assert_eq!(std::fs::read(&out).expect("out.stl"), stl);
    assert_eq!(j["length"], serde_json::json!(stl.len()));
    assert_eq!(
        j["stored_length"],
        serde_json::json!(stl.len().next_multiple_of(2))
    );
    assert_eq!(j["modality"], "M3D");
    assert_eq!(j["mime"], "model/stl");
    assert_eq!(j["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.104.3");
    assert_eq!(
        j["frame_of_reference_uid"],
        serde_json::json!(ct.info.frame_of_reference_uid)
    );
    assert_eq!(
        j["study_instance_uid"],
        serde_json::json!(ct.info.study_instance_uid)
    );
    assert_eq!(j["units"], serde_json::json!(["mm", "UCUM"]));
}

#[test]
fn encapsulated_stl_is_valid_and_returns_exact_bytes_even_and_odd() {
    let ct = synthetic_ct();
    check_stl_round_trip(&ct, &stl_bytes(0)); // 134 bytes
    check_stl_round_trip(&ct, &stl_bytes(3)); // 137 bytes: padded to 138, length says 137
    assert!(matches!(
        build_encapsulated_stl(&ct, &[], &StlDescription::default()),
        Err(stl_object::StlObjectError::BadLength(0))
    ));
}

#[test]
fn extract_stl_of_reference_object_and_wrong_objects() {
    // Orthanc's Encapsulated STL sample has an empty document and no EncapsulatedDocumentLength.
    let path =
        common::shared_data().join("seg-reference/orthanc_Issue137_encapsulated_stl_empty.dcm");
    let obj = dicom_object::open_file(&path).expect("open reference");
    assert_eq!(extract_stl(&obj).expect("extract"), Vec::<u8>::new());
    let ct_slice = common::shared_data().join("seg-reference/highdicom/ct_image.dcm");
    let ct = dicom_object::open_file(&ct_slice).expect("open CT");
    assert!(matches!(
        extract_stl(&ct),
        Err(stl_object::StlObjectError::BadObject { .. })
    ));
}

/// CtVolume of the real GE head series with gantry tilt (headers only; pixels are not needed by the
/// writers), slices sorted along the normal as the series reader does.
fn real_tilted_ct() -> (CtVolume, Vec<[String; 3]>) {
    let dir = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    let mut first = None;
    for f in &files {
        let obj = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(f)
            .expect("open CT header");
        let s = |tag| {
            obj.element(tag)
                .map(|e| e.to_str().expect("str").trim().to_string())
                .unwrap_or_default()
        };
        let ipp_str = s(tags::IMAGE_POSITION_PATIENT);
        let parts: Vec<String> = ipp_str.split('\\').map(|x| x.trim().to_string()).collect();
        let ipp = [0, 1, 2].map(|c| parts[c].parse::<f64>().expect("IPP"));
        let iop: Vec<f64> = s(tags::IMAGE_ORIENTATION_PATIENT)
            .split('\\')
            .map(|x| x.trim().parse().expect("IOP"))
            .collect();
        let ps: Vec<f64> = s(tags::PIXEL_SPACING)
            .split('\\')
            .map(|x| x.trim().parse().expect("PS"))
            .collect();
        let slice = SliceRef {
            sop_class_uid: s(tags::SOP_CLASS_UID),
            sop_instance_uid: s(tags::SOP_INSTANCE_UID),
            frame_number: None,
            path: f.clone(),
        };
        if first.is_none() {
            first = Some((
                SeriesInfo {
                    study_instance_uid: s(tags::STUDY_INSTANCE_UID),
                    series_instance_uid: s(tags::SERIES_INSTANCE_UID),
                    frame_of_reference_uid: s(tags::FRAME_OF_REFERENCE_UID),
                    modality: s(tags::MODALITY),
                    patient_name: s(tags::PATIENT_NAME),
                    patient_id: s(tags::PATIENT_ID),
                    study_date: s(tags::STUDY_DATE),
                    study_time: s(tags::STUDY_TIME),
                    ..Default::default()
                },
                [iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]],
                [ps[0], ps[1]],
                s(tags::ROWS).parse::<usize>().expect("rows"),
                s(tags::COLUMNS).parse::<usize>().expect("cols"),
            ));
        }
        rows.push((
            ipp,
            [parts[0].clone(), parts[1].clone(), parts[2].clone()],
            slice,
        ));
    }
    let (info, iop, ps, r, c) = first.expect("files");
    let g0 = Geometry {
        ipp: vec![],
        iop,
        pixel_spacing: ps,
        rows: r,
        cols: c,
    };
    let n = g0.normal();
    rows.sort_by(|a, b| {
        osteon::dicom::geometry::dot(a.0, n).total_cmp(&osteon::dicom::geometry::dot(b.0, n))
    });
    let geometry = Geometry {
        ipp: rows.iter().map(|x| x.0).collect(),
        ..g0
    };
    let strings = rows.iter().map(|x| x.1.clone()).collect();
    let slices = rows.into_iter().map(|x| x.2).collect();
    (
        CtVolume {
            hu: Array3::zeros((0, 0, 0)),
            geometry,
            slices,
            info,
        },
        strings,
    )
}

#[test]
fn seg_and_stl_of_real_tilted_series() {
    let (ct, source_ipp_strings) = real_tilted_ct();
    assert_eq!(ct.slices.len(), 28);
    assert!(
        ct.geometry.tilt_deg() > 10.0,
        "tilt {}",
        ct.geometry.tilt_deg()
    );
    // a ball of "bone" in the middle of the volume
    let [nk, nj, ni] = ct.geometry.dims();
    let mask = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
        let (dk, dj, di) = (k as f64 - 14.0, j as f64 - 256.0, i as f64 - 200.0);
        u8::from(dk * dk * 400.0 + dj * dj + di * di < 90.0 * 90.0)
    });
    let (_dir, path) = check_seg_round_trip(&ct, &mask, &SegmentDescription::default());
    // per-frame IPP equals the source file's IPP string as a number, component by component
    let back = read_seg_mask(&path).expect("read");
    for (k, strs) in source_ipp_strings.iter().enumerate() {
        for c in 0..3 {
            assert_eq!(
                back.ipp[k][c],
                strs[c].parse::<f64>().expect("f64"),
                "slice {k}: {strs:?}"
            );
        }
    }
    check_stl_round_trip(&ct, &stl_bytes(1));
}

/// LossyImageCompression (0028,2110), ratio and method of a written object, as text.
fn lossy_attributes(path: &Path) -> (String, Option<String>, Option<String>) {
    let obj = dicom_object::open_file(path).expect("open");
    let text = |t| {
        obj.element_opt(t)
            .expect("element")
            .map(|e| e.to_str().expect("text").trim().to_string())
    };
    (
        text(tags::LOSSY_IMAGE_COMPRESSION).expect("LossyImageCompression"),
        text(tags::LOSSY_IMAGE_COMPRESSION_RATIO),
        text(tags::LOSSY_IMAGE_COMPRESSION_METHOD),
    )
}

/// A SEG made from a JPEG-LS near-lossless series (compressed by DCMTK's dcmcjpls) says the source
/// went through lossy compression: LossyImageCompression "01" with the largest of the slices' ratios
/// and the method, as PS3.3 C.7.6.1.1.5 asks; the same series uncompressed gives "00".
#[test]
fn seg_of_lossy_source_carries_lossy_history() {
    use osteon::dicom::ct_writer::{write_ct_series_with, CtWriteOptions, PixelStorage};
    common::require_tool("dcmcjpls");
    let dir = tmp();
    let mut ct = synthetic_ct();
    ct.hu = Array3::from_shape_fn(ct.hu.raw_dim(), |(k, j, i)| {
        ((k * 131 + j * 17 + i * 29) % 400) as f32 - 200.0
    });
    let options = CtWriteOptions {
        storage: PixelStorage::Unsigned { intercept: -1024 },
        ..Default::default()
    };
    let plain = dir.path().join("plain");
    let files = write_ct_series_with(ct.hu.view(), &ct.geometry, &ct.info, &plain, &options)
        .expect("write CT");
    let lossy = dir.path().join("lossy");
    std::fs::create_dir_all(&lossy).unwrap();
    let mut ratios = Vec::new();
    for f in &files {
        let out = lossy.join(f.file_name().unwrap());
        let status = Command::new("dcmcjpls")
            .args(["--encode-nearlossless", "--max-deviation", "3"])
            .arg(f)
            .arg(&out)
            .status()
            .expect("run dcmcjpls");
        assert!(status.success(), "dcmcjpls {}", f.display());
        let (flag, ratio, method) = lossy_attributes(&out);
        assert_eq!(flag, "01", "dcmcjpls flags its output");
        assert_eq!(method.as_deref(), Some("ISO_14495_1"));
        ratios.push(
            ratio
                .expect("dcmcjpls records the ratio")
                .parse::<f64>()
                .unwrap(),
        );
    }
    let worst = ratios.iter().copied().fold(0.0, f64::max);

    let mask = pattern(ct.geometry.dims());
    for (source, want) in [
        (&plain, ("00".to_string(), None, None)),
        (
            &lossy,
            (
                "01".to_string(),
                Some(format_ds(worst).unwrap()),
                Some("ISO_14495_1".to_string()),
            ),
        ),
    ] {
        let load = osteon::dicom::series::load_series(std::slice::from_ref(source));
        assert_eq!(load.volumes.len(), 1, "{:?}", load.refused);
        let src = &load.volumes[0];
        let path = dir.path().join(format!(
            "seg-{}.dcm",
            source.file_name().unwrap().to_string_lossy()
        ));
        let obj = seg::build_seg(src, mask.view(), &SegmentDescription::default()).expect("SEG");
        seg::write(&obj, &path).expect("write SEG");
        assert_dciodvfy_clean(&path);
        assert_eq!(lossy_attributes(&path), want, "{}", source.display());
    }
}
