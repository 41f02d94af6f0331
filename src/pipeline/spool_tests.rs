use super::*;

const SERIES_DIR: &str = "/work/shared/data/ct/philips-ingenuity-head-phantom/S2020";

/// First file of the Philips axial series: (data set bytes after the meta group, SOP Instance UID).
fn sample() -> (Vec<u8>, String) {
    let mut files: Vec<_> = fs::read_dir(SERIES_DIR)
        .unwrap_or_else(|e| panic!("{SERIES_DIR}: {e} (shared test data missing)"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let bytes = fs::read(&files[0]).unwrap();
    let off = data_set_offset(&files[0]).unwrap() as usize;
    let obj = meta::open_header(&files[0]).unwrap();
    let uid = attr(&obj, tags::SOP_INSTANCE_UID).unwrap();
    (bytes[off..].to_vec(), uid)
}

fn request(uid: &str) -> StoreRequest {
    StoreRequest {
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_owned(),
        sop_instance_uid: uid.to_owned(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_owned(),
        calling_ae: "CALLER".to_owned(),
        peer: "127.0.0.1:1".parse().unwrap(),
    }
}

/// Stores `data` in fragments of 1000 bytes.
fn store(spool: &Spool, uid: &str, data: &[u8]) -> StoreStatus {
    let mut w = match spool.begin(&request(uid)) {
        Ok(w) => w,
        Err(s) => return s,
    };
    for chunk in data.chunks(1000) {
        if let Err(s) = w.write(chunk) {
            return s;
        }
    }
    w.commit()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn store_duplicate_and_differing_duplicate() {
    let (data, uid) = sample();
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut rx) = Spool::open(dir.path(), 0).unwrap();

    assert_eq!(store(&spool, &uid, &data), StoreStatus::success());
    let ev = rx.try_recv().unwrap();
    assert_eq!(ev.outcome, Outcome::New);
    assert_eq!(ev.sop_instance_uid, uid);
    assert_eq!(
        ev.path,
        spool
            .instance_path(&ev.study_uid, &ev.series_uid, &uid)
            .unwrap()
    );
    let written = fs::read(&ev.path).unwrap();
    let off = data_set_offset(&ev.path).unwrap() as usize;
    assert_eq!(&written[off..], &data[..], "data set stored byte for byte");
    assert_eq!(&written[128..132], b"DICM");

    // Same bytes again: success, still one file, no notification.
    assert_eq!(store(&spool, &uid, &data), StoreStatus::success());
    assert!(rx.try_recv().is_err());
    // Different bytes (last pixel byte changed): warning, first copy kept.
    let mut other = data.clone();
    let n = other.len();
    other[n - 1] ^= 0x55;
    let s = store(&spool, &uid, &other);
    assert_eq!(s.code, status::WARNING_DUPLICATE_KEPT_FIRST);
    assert_eq!(rx.try_recv().unwrap().outcome, Outcome::DuplicateDiffering);
    assert_eq!(fs::read(&ev.path).unwrap(), written);

    let files = files_under(spool.root());
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn failures_leave_nothing_behind() {
    let (data, uid) = sample();
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path(), 0).unwrap();

    // Not a data set.
    let s = store(&spool, &uid, b"\x08\x00\x16\x00garbage that is not DICOM");
    assert_eq!(s.code, status::CANNOT_UNDERSTAND, "{s:?}");
    // Command names another SOP Instance UID.
    let s = store(&spool, "1.2.3", &data);
    assert_eq!(s.code, status::DATA_SET_MISMATCH, "{s:?}");
    // Writer dropped mid-way (association aborted).
    let mut w = spool.begin(&request(&uid)).unwrap();
    w.write(&data[..5000]).unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join("spool/tmp")).unwrap().count(),
        1
    );
    drop(w);
    assert!(files_under(spool.root()).is_empty());
}

#[test]
fn watermark_refuses_and_stale_partials_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("spool/tmp")).unwrap();
    fs::write(dir.path().join("spool/tmp/old.part"), b"x").unwrap();
    let (spool, _rx) = Spool::open(dir.path(), u64::MAX).unwrap();
    assert!(files_under(spool.root()).is_empty());
    let reason = spool.accepting().unwrap_err();
    assert!(reason.contains("min_free_bytes"), "{reason}");
    let s = spool.begin(&request("1.2.3")).err().unwrap();
    assert_eq!(s.code, status::OUT_OF_RESOURCES);
    let (spool, _rx) = Spool::open(dir.path(), 0).unwrap();
    assert!(spool.accepting().is_ok());
    assert!(spool.free_bytes().unwrap() > 0);
}

#[test]
fn uids_become_path_components_only_when_valid() {
    assert!(is_uid("1.2.840.10008.5.1.4.1.1.2"));
    for bad in [
        "",
        "..",
        "1..2",
        "1.2.",
        "../1",
        "1/2",
        "1.2a",
        &"1".repeat(65),
    ] {
        assert!(!is_uid(bad), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path(), 0).unwrap();
    assert!(spool.instance_path("1.2", "..", "1.3").is_none());
    assert_eq!(
        spool.instance_path("1.2", "1.3", "1.4").unwrap(),
        dir.path().join("spool/1.2/1.3/1.4.dcm")
    );
}
