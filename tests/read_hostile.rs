//! Hostile input to the CT reader (the breaker's repros, built here in a tempdir from real files):
//! each is refused with its specific error naming the file and the attribute, before any large
//! allocation, and a healthy series beside it (Philips S2010, 28 slices) still loads.

mod common;

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use osteon::dicom::meta::{self, MetaError};
use osteon::dicom::pixels::PixelError;
use osteon::dicom::series::{self, SeriesError, SeriesLoad, SkipReason};

fn ge() -> PathBuf {
    common::shared_data().join("ct/ge-hispeed-dual-head-tilt")
}

fn philips() -> PathBuf {
    common::shared_data().join("ct/philips-ingenuity-head-phantom/S2010")
}

/// A copy of the GE series (28 slices) in a fresh tempdir.
fn ge_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(ge()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "dcm") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Rewrites `path` with one attribute replaced (dicom-object, explicit VR little endian kept).
fn set(path: &Path, tag: dicom_core::Tag, vr: VR, value: PrimitiveValue) {
    let mut o = dicom_object::open_file(path).unwrap();
    o.put(DataElement::new(tag, vr, value));
    o.write_to_file(path).unwrap();
}

/// Loads `hostile` together with the healthy Philips series; asserts the latter loaded (28
/// slices) and returns the whole result.
fn load_beside_healthy(hostile: &Path) -> SeriesLoad {
    let l = series::load_series(&[hostile.to_owned(), philips()]);
    let healthy: Vec<_> = l
        .volumes
        .iter()
        .filter(|v| v.info.manufacturer_model_name.contains("Ingenuity"))
        .collect();
    assert_eq!(healthy.len(), 1, "healthy series lost: {:?}", l.refused);
    assert_eq!(healthy[0].hu.dim(), (28, 512, 512));
    l
}

/// The single refusal of the GE series; asserts its message names `file` and every `words`.
fn only_refusal<'a>(l: &'a SeriesLoad, file: &str, words: &[&str]) -> &'a SeriesError {
    assert!(
        l.volumes
            .iter()
            .all(|v| v.info.manufacturer_model_name.contains("Ingenuity")),
        "the hostile series was built as a volume"
    );
    assert_eq!(l.refused.len(), 1, "{:?}", l.refused);
    let e = &l.refused[0];
    let m = e.to_string();
    assert!(m.contains(file), "message does not name {file}: {m}");
    for w in words {
        assert!(m.contains(w), "message does not name {w}: {m}");
    }
    e
}

#[test]
fn d1_number_of_frames_absurd_zero_negative_unparsable() {
    for value in ["2147483647", "0", "-3", "many"] {
        let dir = ge_copy();
        set(
            &dir.path().join("06.dcm"),
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(value),
        );
        let l = load_beside_healthy(dir.path());
        let e = only_refusal(&l, "06.dcm", &["NumberOfFrames (0028,0008)", value]);
        assert!(
            matches!(e, SeriesError::Pixel(PixelError::BadAttribute { attribute, .. }) if attribute.starts_with("NumberOfFrames")),
            "{value}: {e:?}"
        );
    }
}

#[test]
fn d2_rows_columns_larger_than_pixel_data() {
    let dir = ge_copy();
    let f = dir.path().join("06.dcm");
    set(&f, tags::ROWS, VR::US, PrimitiveValue::from(65535u16));
    set(&f, tags::COLUMNS, VR::US, PrimitiveValue::from(65535u16));
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        "06.dcm",
        &["PixelData (7FE0,0010)", "Rows 65535", "524288"],
    );
    assert!(
        matches!(
            e,
            SeriesError::Pixel(PixelError::PixelDataLength {
                got: 524288,
                expected: 8589672450,
                ..
            })
        ),
        "{e:?}"
    );
}

/// Bytes of the Philips slice I10 up to the end of its file meta group, and the rest.
fn philips_split() -> (Vec<u8>, Vec<u8>) {
    let b = std::fs::read(philips().join("I10")).unwrap();
    let mut i = 132;
    while u16::from_le_bytes([b[i], b[i + 1]]) == 2 {
        let vr = &b[i + 4..i + 6];
        i += if [&b"OB"[..], b"OW", b"UN", b"SQ", b"UT"].contains(&vr) {
            12 + u32::from_le_bytes([b[i + 8], b[i + 9], b[i + 10], b[i + 11]]) as usize
        } else {
            8 + u16::from_le_bytes([b[i + 6], b[i + 7]]) as usize
        };
    }
    (b[..i].to_vec(), b[i..].to_vec())
}

#[test]
fn d3_deeply_nested_sequences_refused_before_parsing() {
    let (meta_group, _) = philips_split();
    let mut b = meta_group;
    let n = 200_000;
    for _ in 0..n {
        b.extend_from_slice(&[
            0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..n {
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.dcm");
    std::fs::write(&evil, &b).unwrap();
    match meta::open(&evil) {
        Err(MetaError::Malformed { file, tag, reason }) => {
            assert_eq!(file, evil);
            assert_eq!(tag, dicom_core::Tag(0x0008, 0x1115));
            assert!(reason.contains("deeper than 32"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let l = load_beside_healthy(dir.path());
    assert_eq!(l.skipped.len(), 1);
    let reason = l.skipped[0].reason.to_string();
    assert!(
        reason.contains("evil.dcm") && reason.contains("(0008,1115)"),
        "{reason}"
    );
}

#[test]
fn d4_declared_length_past_end_of_file() {
    let (meta_group, rest) = philips_split();
    let mut b = meta_group;
    // (0009,1001) OB of 0xF000_0000 bytes in a 0.5 MB file.
    b.extend_from_slice(&[0x09, 0, 0x01, 0x10, b'O', b'B', 0, 0]);
    b.extend_from_slice(&0xF000_0000u32.to_le_bytes());
    b.extend_from_slice(&rest);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("long.dcm");
    std::fs::write(&f, &b).unwrap();
    match meta::open_header(&f) {
        Err(e @ MetaError::Malformed { .. }) => {
            let m = e.to_string();
            assert!(m.contains("long.dcm") && m.contains("(0009,1001)"), "{m}");
            assert!(m.contains("declared length 4026531840"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let l = load_beside_healthy(dir.path());
    assert!(matches!(&l.skipped[..], [s] if matches!(s.reason, SkipReason::Unreadable(_))));
}

#[test]
fn d5_fifo_and_device_skipped_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.dcm");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) is needed for this test");
    assert!(ok.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.dcm")).unwrap();
    for name in ["pipe.dcm", "zero.dcm"] {
        match meta::open(&dir.path().join(name)) {
            Err(e @ MetaError::NotRegularFile { .. }) => assert!(e.to_string().contains(name)),
            other => panic!("{name}: {other:?}"),
        }
    }
    let l = load_beside_healthy(dir.path());
    assert_eq!(l.skipped.len(), 2);
}

#[test]
fn d8_pixel_spacing_out_of_range_on_every_slice() {
    for value in ["1e-30\\1e-30", "1e30\\1e30", "0\\0", "-0.5\\-0.5"] {
        let dir = ge_copy();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            set(
                &e.unwrap().path(),
                tags::PIXEL_SPACING,
                VR::DS,
                PrimitiveValue::from(value),
            );
        }
        let l = load_beside_healthy(dir.path());
        let e = only_refusal(&l, ".dcm", &["PixelSpacing (0028,0030)", "[0.01, 50] mm"]);
        assert!(matches!(e, SeriesError::UnreadableSlice { .. }), "{e:?}");
    }
}

#[test]
fn d9_image_position_beyond_any_scanner_on_every_slice() {
    // 1e12 mm positions lose the slice spacing to rounding: refused by the reader, naming the
    // attribute, instead of failing later in the mesh (bad-input trial, session 38).
    let dir = ge_copy();
    for (k, e) in std::fs::read_dir(dir.path()).unwrap().enumerate() {
        set(
            &e.unwrap().path(),
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            PrimitiveValue::from(format!("1e12\\1e12\\{}", 1e12 + k as f64)),
        );
    }
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        ".dcm",
        &["ImagePositionPatient (0020,0032)", "beyond +-100000 mm"],
    );
    assert!(matches!(e, SeriesError::UnreadableSlice { .. }), "{e:?}");
}

#[test]
fn d10_truncated_slice_refuses_the_series() {
    let dir = ge_copy();
    let f = dir.path().join("06.dcm");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..300_000]).unwrap();
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(&l, "06.dcm", &["PixelData (7FE0,0010)", "truncated"]);
    assert!(matches!(e, SeriesError::UnreadableSlice { .. }), "{e:?}");
}

#[test]
fn d10_conflicting_duplicate_refused_identical_dropped() {
    let dir = ge_copy();
    let uid = dicom_object::open_file(dir.path().join("07.dcm"))
        .unwrap()
        .element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut o = dicom_object::open_file(dir.path().join("06.dcm")).unwrap();
    o.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(uid.as_str()),
    ));
    o.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
    o.write_to_file(dir.path().join("06.dcm")).unwrap();
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(&l, "06.dcm", &["07.dcm", "SOP Instance UID"]);
    assert!(
        matches!(e, SeriesError::ConflictingDuplicate { .. }),
        "{e:?}"
    );

    // A byte-identical copy is dropped with a reason; the series loads with its 28 slices.
    let dir = ge_copy();
    std::fs::copy(dir.path().join("06.dcm"), dir.path().join("06copy.dcm")).unwrap();
    let l = load_beside_healthy(dir.path());
    assert_eq!(l.volumes.len(), 2, "{:?}", l.refused);
    assert!(l
        .volumes
        .iter()
        .any(|v| v.hu.dim().0 == 28 && v.info.manufacturer.contains("GE")));
    assert!(
        matches!(&l.skipped[..], [s] if matches!(s.reason, SkipReason::Duplicate { .. })),
        "{:?}",
        l.skipped
    );
}

#[test]
fn d11_foreign_study_slice_forms_its_own_group() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("foreign.dcm");
    std::fs::copy(philips().join("I10"), &f).unwrap();
    let mut o = dicom_object::open_file(&f).unwrap();
    for (tag, v) in [
        (tags::STUDY_INSTANCE_UID, "1.2.3.999.1"),
        (tags::FRAME_OF_REFERENCE_UID, "1.2.3.999.2"),
        (tags::SOP_INSTANCE_UID, "1.2.3.999.3"),
    ] {
        o.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(v)));
    }
    o.put(DataElement::new(
        tags::PATIENT_ID,
        VR::LO,
        PrimitiveValue::from("OTHER"),
    ));
    o.update_meta(|m| m.media_storage_sop_instance_uid = "1.2.3.999.3".into());
    o.write_to_file(&f).unwrap();
    // The real series (same SeriesInstanceUID) still loads with its 28 slices.
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(&l, "foreign.dcm", &["1 slice(s)"]);
    assert!(
        matches!(e, SeriesError::TooFewSlices { count: 1, .. }),
        "{e:?}"
    );
}

#[test]
fn d14_rescale_values_refused_with_attribute() {
    for (tag, name, value) in [
        (tags::RESCALE_SLOPE, "RescaleSlope (0028,1053)", "0"),
        (tags::RESCALE_SLOPE, "RescaleSlope (0028,1053)", "NaN"),
        (tags::RESCALE_SLOPE, "RescaleSlope (0028,1053)", "abc"),
        (
            tags::RESCALE_INTERCEPT,
            "RescaleIntercept (0028,1052)",
            "inf",
        ),
    ] {
        let dir = ge_copy();
        set(
            &dir.path().join("06.dcm"),
            tag,
            VR::DS,
            PrimitiveValue::from(value),
        );
        let l = load_beside_healthy(dir.path());
        let e = only_refusal(&l, "06.dcm", &[name, value]);
        assert!(
            matches!(e, SeriesError::Pixel(PixelError::BadRescale { attribute, .. }) if *attribute == name),
            "{value}: {e:?}"
        );
    }
}

#[test]
fn d15_pixel_module_attributes_validated() {
    let cases: [(dicom_core::Tag, u16, &str); 3] = [
        (
            tags::PIXEL_REPRESENTATION,
            2,
            "PixelRepresentation (0028,0103)",
        ),
        (tags::HIGH_BIT, 11, "HighBit (0028,0102)"),
        (tags::BITS_STORED, 17, "BitsStored 17"),
    ];
    for (tag, v, name) in cases {
        let dir = ge_copy();
        set(
            &dir.path().join("06.dcm"),
            tag,
            VR::US,
            PrimitiveValue::from(v),
        );
        let l = load_beside_healthy(dir.path());
        let e = only_refusal(&l, "06.dcm", &[name]);
        assert!(
            matches!(
                e,
                SeriesError::Pixel(
                    PixelError::BadAttribute { .. } | PixelError::UnsupportedBits { .. }
                )
            ),
            "{name}: {e:?}"
        );
    }
}

/// Replaces the 20-byte TransferSyntaxUID value of 06.dcm (explicit VR LE) in place.
fn patch_ts(dir: &Path, new: &[u8; 20]) {
    let f = dir.join("06.dcm");
    let mut b = std::fs::read(&f).unwrap();
    let old = b"1.2.840.10008.1.2.1\0";
    let at = b[..1024].windows(20).position(|w| w == old).unwrap();
    b[at..at + 20].copy_from_slice(new);
    std::fs::write(&f, b).unwrap();
}

#[test]
fn d15_transfer_syntax_unknown_or_mismatching_pixel_data() {
    let dir = ge_copy();
    patch_ts(dir.path(), b"1.2.840.10008.1.2.5\0"); // RLE Lossless, native pixel data
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        "06.dcm",
        &["TransferSyntaxUID (0002,0010)", "1.2.840.10008.1.2.5"],
    );
    assert!(
        matches!(
            e,
            SeriesError::Pixel(PixelError::EncapsulationMismatch { .. })
        ),
        "{e:?}"
    );

    let dir = ge_copy();
    patch_ts(dir.path(), b"1.2.3.4.5.6.7.8.9.10");
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        "06.dcm",
        &["TransferSyntaxUID (0002,0010)", "1.2.3.4.5.6.7.8.9.10"],
    );
    assert!(
        matches!(
            e,
            SeriesError::Pixel(PixelError::UnknownTransferSyntax { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn invalid_series_instance_uid_skipped_without_raw_nul() {
    let dir = ge_copy();
    set(
        &dir.path().join("06.dcm"),
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.3\0/../../evil"),
    );
    let l = load_beside_healthy(dir.path());
    let s = l
        .skipped
        .iter()
        .find(|s| s.path.ends_with("06.dcm"))
        .expect("06.dcm not skipped");
    assert!(
        matches!(&s.reason, SkipReason::BadUid { attribute, .. } if attribute.starts_with("SeriesInstanceUID")),
        "{:?}",
        s.reason
    );
    let m = s.reason.to_string();
    assert!(
        !m.contains('\0') && m.contains("SeriesInstanceUID"),
        "{m:?}"
    );
}

#[test]
fn header_scan_with_pre_walk_stays_fast() {
    let s2020 = common::shared_data().join("ct/philips-ingenuity-head-phantom/S2020");
    let _ = series::scan(&[s2020.clone()]); // warm the page cache
    let t = std::time::Instant::now();
    let s = series::scan(&[s2020]);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    println!("scan of 140 slices: {ms:.1} ms");
    assert_eq!(s.groups.len(), 1);
    assert_eq!(s.groups[0].instances.len(), 140);
    assert!(s.groups[0].instances.iter().all(|i| i.defect.is_none()));
    // ~30 ms on 2 cores; a generous bound for a loaded machine.
    assert!(ms < 500.0, "{ms} ms");
}

/// Removes `tag` from `path` (dicom-object, transfer syntax kept).
fn remove(path: &Path, tag: dicom_core::Tag) {
    let mut o = dicom_object::open_file(path).unwrap();
    assert!(o.remove_element(tag), "{tag} was not in {}", path.display());
    o.write_to_file(path).unwrap();
}

#[test]
fn d13_a_slice_that_lost_its_rescale_is_refused_not_read_as_hu() {
    // Intercept alone gone: the pair is incomplete.
    let dir = ge_copy();
    remove(&dir.path().join("06.dcm"), tags::RESCALE_INTERCEPT);
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(&l, "06.dcm", &["RescaleIntercept (0028,1052)", "absent"]);
    assert!(
        matches!(e, SeriesError::Pixel(PixelError::BadRescale { .. })),
        "{e:?}"
    );
    // Both gone from one slice while the others have them: its stored values are not HU.
    let dir = ge_copy();
    remove(&dir.path().join("06.dcm"), tags::RESCALE_INTERCEPT);
    remove(&dir.path().join("06.dcm"), tags::RESCALE_SLOPE);
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        "06.dcm",
        &["RescaleIntercept (0028,1052)", "same series"],
    );
    assert!(matches!(e, SeriesError::MissingRescale { .. }), "{e:?}");
}

#[test]
fn d14_an_absurd_rescale_slope_is_named_in_the_refusal() {
    let dir = ge_copy();
    set(
        &dir.path().join("06.dcm"),
        tags::RESCALE_SLOPE,
        VR::DS,
        PrimitiveValue::from("1e30"),
    );
    let l = load_beside_healthy(dir.path());
    let e = only_refusal(
        &l,
        "06.dcm",
        &["RescaleSlope 1000000000000000000000000000000"],
    );
    assert!(
        matches!(e, SeriesError::Pixel(PixelError::ImplausibleHu { slope, .. }) if *slope == 1e30),
        "{e:?}"
    );
}
