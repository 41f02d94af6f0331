use super::table::{csv, scanner_key, table, Spread};
use super::*;
use crate::dicom::geometry::Geometry;
use crate::dicom::series::{SeriesInfo, AIR_HU};
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A 12-slice 128 x 128 head stand-in (1 mm pixels, 2 mm slices): a 20 mm-radius cylinder of
/// 40 HU in a 4 mm bone ring of 1000 HU, air at -1000 HU plus Gaussian noise of `sd` HU, and
/// constant padding outside the inscribed circle (as scanners write outside the field of view).
fn head(sd: f64) -> CtVolume {
    let (nk, n) = (12, 128);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut gauss = move || {
        // Box-Muller.
        let u = |r: &mut rand_chacha::ChaCha8Rng| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (a, b) = (u(&mut rng).max(1e-12), u(&mut rng));
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    };
    let c = (n as f64 - 1.0) / 2.0;
    let hu = ndarray::Array3::from_shape_fn((nk, n, n), |(_, j, i)| {
        let r = ((j as f64 - c).powi(2) + (i as f64 - c).powi(2)).sqrt();
        let base = if r > n as f64 / 2.0 {
            return AIR_HU;
        } else if r < 16.0 {
            40.0
        } else if r < 20.0 {
            1000.0
        } else {
            -1000.0
        };
        (base + sd * gauss()) as f32
    });
    CtVolume {
        hu,
        geometry: Geometry {
            ipp: (0..nk).map(|k| [0.0, 0.0, 2.0 * k as f64]).collect(),
            iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [1.0, 1.0],
            rows: n,
            cols: n,
        },
        slices: Vec::new(),
        info: SeriesInfo::default(),
    }
}

#[test]
fn air_noise_recovers_the_simulated_sd() {
    for sd in [8.0, 20.0] {
        let a = air_noise_hu(&head(sd)).expect("air found");
        assert!(
            (a.sd_hu - sd).abs() < 0.08 * sd,
            "sd {sd}: estimated {}",
            a.sd_hu
        );
        assert!((a.median_hu + 1000.0).abs() < 1.0, "{a:?}");
        // Outside a 20 mm radius + 20 mm margin box, inside 0.9 x 64 px: a few thousand voxels.
        assert!(a.voxels > 2000 && a.voxels < 12 * 64 * 64, "{a:?}");
    }
}

#[test]
fn constant_air_has_no_noise_figure() {
    assert_eq!(air_noise_hu(&head(0.0)), None);
}

#[test]
fn dice_counts_overlap() {
    let mut a = Mask::zeros((1, 2, 4));
    let mut b = Mask::zeros((1, 2, 4));
    a.slice_mut(ndarray::s![0, 0, ..]).fill(1);
    b.slice_mut(ndarray::s![0, .., 0]).fill(1);
    // |A| = 4, |B| = 2, |A∩B| = 1.
    assert_eq!(dice(&a, &b), Some(2.0 / 6.0));
    assert_eq!(dice(&a, &a), Some(1.0));
    assert_eq!(dice(&Mask::zeros((1, 1, 1)), &Mask::zeros((1, 1, 1))), None);
    assert_eq!(dice(&a, &Mask::zeros((1, 1, 1))), None);
}

/// A segmenter that is not the threshold: bone above 500 HU, with a confidence.
struct High;
impl Segmenter for High {
    fn identity(&self) -> crate::segment::AlgorithmIdentity {
        crate::segment::AlgorithmIdentity {
            name: "test-high".to_owned(),
            version: "1".to_owned(),
            skull_specific: false,
        }
    }
    fn segment(&self, ct: &CtVolume) -> Result<Mask, crate::segment::SegmentError> {
        Ok(ct.hu.mapv(|v| u8::from(v > 500.0)))
    }
    fn mean_confidence(&self) -> Option<f64> {
        Some(0.75)
    }
    fn grey_anchors(&self) -> Option<[f64; 2]> {
        Some([-1001.5, 37.25])
    }
}

#[test]
fn image_qa_runs_the_baseline_for_other_segmenters_only() {
    let ct = head(5.0);
    let t = ThresholdSegmenter::default();
    let mask = t.segment(&ct).unwrap();
    let q = image_qa(&ct, &mask, &t);
    assert_eq!(q.dsc_threshold_baseline, Some(1.0));
    assert_eq!(q.mean_confidence, None);
    assert_eq!((q.air_anchor_hu, q.tissue_anchor_hu), (None, None));
    assert!((q.noise_air_hu.unwrap() - 5.0).abs() < 0.4, "{q:?}");

    // Half the mask: DSC = 2 * (n / 2) / (n + n / 2) = 2/3.
    let mut half = mask.clone();
    half.slice_mut(ndarray::s![..6, .., ..]).fill(0);
    let q = image_qa(&ct, &half, &High);
    assert_eq!(q.mean_confidence, Some(0.75));
    assert_eq!(
        (q.air_anchor_hu, q.tissue_anchor_hu),
        (Some(-1001.5), Some(37.25))
    );
    let dsc = q.dsc_threshold_baseline.unwrap();
    assert!((dsc - 2.0 / 3.0).abs() < 1e-9, "{dsc}");
}

#[test]
fn quartiles_interpolate() {
    let s = Spread::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]).unwrap();
    assert_eq!(
        (s.n, s.median, s.q1, s.q3, s.min, s.max),
        (4, 2.5, 1.75, 3.25, 1.0, 4.0)
    );
    assert_eq!(Spread::of(&[]), None);
}

fn record(job: i64, manufacturer: &str, slices: i64, volume: f64) -> QaRecord {
    QaRecord {
        job_id: job,
        version: 1,
        series_uid: format!("1.2.{job}"),
        manufacturer: manufacturer.to_owned(),
        model_name: "M, \"x\"".to_owned(),
        kvp: Some(120.0),
        slices,
        bone_volume_ml: volume,
        pixel_spacing_row_mm: 0.5,
        queued_ms: 1000,
        started_ms: 1500,
        queue_wait_ms: 500,
        last_received_ms: Some(900),
        ..QaRecord::default()
    }
}

#[test]
fn store_round_trips_and_records_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let store = QaStore::open(dir.path()).unwrap();
    let a = record(1, "Philips", 140, 612.5);
    let b = record(2, "GE MEDICAL SYSTEMS", 28, 480.0);
    store.record(&a).unwrap();
    store.record(&b).unwrap();
    store.record(&a).unwrap(); // replaced, not doubled
    store.exported(2, 250.0, Some(3400)).unwrap();
    let got = store.list().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], a);
    assert_eq!(got[1].export_ms, Some(250.0));
    assert_eq!(got[1].done_ms, Some(3400));
    // Columns are exactly the record's fields plus the two extra ones.
    let v = serde_json::to_value(&a).unwrap();
    let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(fields.len() + 2, store::COLUMNS.len());
    for f in fields {
        assert!(store::COLUMNS.iter().any(|(n, _)| n == f), "{f}");
    }
}

#[test]
fn a_table_of_an_older_osteon_gains_the_new_columns_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    // The qa table as the release before the anchor columns made it, with one row.
    let old: Vec<String> = store::COLUMNS
        .iter()
        .filter(|(n, _)| !n.ends_with("_anchor_hu"))
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(crate::pipeline::queue::DB_FILE)).unwrap();
        conn.execute_batch(&format!("CREATE TABLE qa ({});", old.join(", ")))
            .unwrap();
    }
    let store = QaStore::open(dir.path()).unwrap();
    let a = record(1, "Philips", 140, 612.5);
    store.record(&a).unwrap();
    drop(store);
    // Reopened (the columns exist now: no second ALTER), a CNN row with anchors beside it.
    let store = QaStore::open(dir.path()).unwrap();
    let b = QaRecord {
        air_anchor_hu: Some(-999.5),
        tissue_anchor_hu: Some(31.0),
        ..record(2, "GE MEDICAL SYSTEMS", 28, 480.0)
    };
    store.record(&b).unwrap();
    let got = store.list().unwrap();
    assert_eq!(got, vec![a, b]);
    assert_eq!(got[0].air_anchor_hu, None);
}

#[test]
fn concurrent_first_opens_of_an_older_table_all_succeed_and_a_failed_migration_changes_nothing() {
    // An older table (nullable columns here) with one row.
    let old_table = |dir: &std::path::Path, keep: &dyn Fn(&str) -> bool| {
        let cols: Vec<String> = store::COLUMNS
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, t)| format!("{n} {}", t.replace(" NOT NULL", "")))
            .collect();
        let conn = rusqlite::Connection::open(dir.join(crate::pipeline::queue::DB_FILE)).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE qa ({}); INSERT INTO qa (job_id) VALUES (1);",
            cols.join(", ")
        ))
        .unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    old_table(dir.path(), &|n| !n.ends_with("_anchor_hu"));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let d = dir.path().to_owned();
            std::thread::spawn(move || QaStore::open(&d).map(|_| ()).map_err(|e| e.to_string()))
        })
        .collect();
    for t in opened {
        assert_eq!(t.join().unwrap(), Ok(()));
    }
    // A table with rows that lacks a NOT NULL column cannot be migrated: the error names the
    // database and the table keeps its columns (no anchor column half-added).
    let dir = tempfile::tempdir().unwrap();
    old_table(dir.path(), &|n| {
        !n.ends_with("_anchor_hu") && n != "recorded_ms"
    });
    let e = QaStore::open(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("osteon.db: qa table") && e.contains("NOT NULL"),
        "{e}"
    );
    let conn =
        rusqlite::Connection::open(dir.path().join(crate::pipeline::queue::DB_FILE)).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('qa') WHERE name LIKE '%_anchor_hu'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn table_groups_by_scanner_and_csv_quotes() {
    let rs = vec![
        record(1, "Philips", 140, 600.0),
        record(2, "Philips", 140, 620.0),
        record(3, "GE MEDICAL SYSTEMS", 28, 480.0),
    ];
    assert_eq!(scanner_key(&rs[0])[2], "-");
    let t = table(&rs);
    assert!(t.contains("Scanner: GE MEDICAL SYSTEMS"), "{t}");
    assert!(t.contains("Scanner: Philips"), "{t}");
    let philips = t.split("Scanner: Philips").nth(1).unwrap();
    let line = philips
        .lines()
        .find(|l| l.trim_start().starts_with("bone volume"))
        .unwrap();
    // n 2, median 610, IQR 605 .. 615, min .. max 600 .. 620.
    assert!(
        line.contains(" 2 ") && line.contains("610") && line.contains("605 .. 615"),
        "{line}"
    );
    assert!(line.ends_with("600 .. 620"), "{line}");
    assert!(philips.contains("received->stored (s)"), "{t}");
    // Negative values stay readable: a gantry tilt of -25 and 0 degrees.
    let mut tilted = vec![record(4, "GE", 28, 500.0), record(5, "GE", 28, 500.0)];
    tilted[0].tilt_deg = -25.0;
    let t2 = table(&tilted);
    let tilt = t2.lines().find(|l| l.contains("tilt (deg)")).unwrap();
    assert!(tilt.ends_with("-25 .. 0"), "{tilt}");
    let c = csv(&rs);
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[0].starts_with("job_id,version,study_uid"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("\"M, \"\"x\"\"\""), "{}", lines[1]);
}
