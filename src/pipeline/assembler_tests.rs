use std::net::SocketAddr;

use super::*;
use crate::pipeline::spool::Outcome;

fn instance(series: &str, sop: &str) -> StoredInstance {
    StoredInstance {
        study_uid: "1.2".to_owned(),
        series_uid: series.to_owned(),
        sop_instance_uid: sop.to_owned(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_owned(),
        path: PathBuf::from("/nonexistent"),
        calling_ae: "CT01".to_owned(),
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        received_at: SystemTime::UNIX_EPOCH,
        outcome: Outcome::New,
    }
}

fn assembler(quiet: u64, max_wait: u64, late: LatePolicy) -> Assembler {
    let mut c = Config::default();
    c.pipeline.quiet_period = Duration::from_secs(quiet);
    c.pipeline.max_wait = Duration::from_secs(max_wait);
    c.pipeline.late_instances = late;
    Assembler::new(&c)
}

#[test]
fn quiet_period_groups_across_associations_and_max_wait_bounds() {
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    let t0 = Instant::now();
    let s = Duration::from_secs;
    a.on_instance(&instance("1.2.3", "1"), t0);
    a.on_instance(&instance("1.2.3", "2"), t0 + s(1));
    a.on_instance(&instance("1.2.4", "9"), t0 + s(1));
    assert!(a.due(t0 + s(2)).is_empty());
    // A second association 1.5 s later still lands in the same series.
    a.on_instance(&instance("1.2.3", "3"), t0 + s(2));
    a.on_instance(&instance("1.2.3", "3"), t0 + s(2));
    let due = a.due(t0 + s(3));
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].series_uid.as_str(), due[0].instances), ("1.2.4", 1));
    let due = a.due(t0 + s(4));
    assert_eq!(
        (due[0].series_uid.as_str(), due[0].instances, due[0].rerun),
        ("1.2.3", 3, false)
    );
    assert_eq!(a.pending(), 0);

    // An instance every second never goes quiet: max wait closes it.
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    for i in 0..10u64 {
        a.on_instance(&instance("1.2.5", &i.to_string()), t0 + s(i));
        assert!(a.due(t0 + s(i)).is_empty(), "second {i}");
    }
    assert_eq!(a.due(t0 + s(10)).len(), 1);
}

#[test]
fn late_instances_rerun_or_report() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut a = assembler(1, 10, LatePolicy::Rerun);
    a.on_instance(&instance("1.2.3", "1"), t0);
    assert_eq!(a.due(t0 + s(1)).len(), 1);
    a.on_instance(&instance("1.2.3", "2"), t0 + s(5));
    let due = a.due(t0 + s(6));
    assert_eq!((due.len(), due[0].rerun, due[0].instances), (1, true, 1));

    let mut a = assembler(1, 10, LatePolicy::Report);
    a.mark_closed(("1.2".to_owned(), "1.2.3".to_owned()));
    a.on_instance(&instance("1.2.3", "2"), t0);
    assert_eq!(a.pending(), 0);
    assert!(a.due(t0 + s(5)).is_empty());
}

fn axial_info() -> SeriesInfo {
    SeriesInfo {
        modality: "CT".to_owned(),
        image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
        series_description: "STD BRAIN 1MM, iDose".to_owned(),
        body_part_examined: "HEAD".to_owned(),
        slice_thickness: Some(1.0),
        ..SeriesInfo::default()
    }
}

#[test]
fn route_rules_name_the_first_mismatch() {
    let r = RouteConfig::default();
    let info = axial_info();
    assert_eq!(route_mismatch(&r, &info, "OSTEON", "CT01", 140), None);
    let mut loc = info.clone();
    loc.image_type = vec!["ORIGINAL".into(), "PRIMARY".into(), "LOCALIZER".into()];
    assert_eq!(
        route_mismatch(&r, &loc, "OSTEON", "CT01", 1).as_deref(),
        Some("ImageType [\"ORIGINAL\", \"PRIMARY\", \"LOCALIZER\"] lacks AXIAL")
    );
    let mut mr = info.clone();
    mr.modality = "MR".to_owned();
    assert_eq!(
        route_mismatch(&r, &mr, "OSTEON", "CT01", 140).as_deref(),
        Some("Modality \"MR\" not listed")
    );
    assert_eq!(
        route_mismatch(&r, &info, "OSTEON", "CT01", 19).as_deref(),
        Some("19 slices, fewer than 20")
    );
    let mut thick = info.clone();
    thick.slice_thickness = Some(7.5);
    assert!(
        route_mismatch(&r, &thick, "OSTEON", "CT01", 140).is_some_and(|m| m.contains("above 5 mm"))
    );

    let mut r2 = RouteConfig {
        calling_ae_titles: vec!["ct01 ".to_owned()],
        series_description: Some("(?i)brain".to_owned()),
        body_parts: vec!["head".to_owned()],
        min_slice_thickness_mm: Some(0.5),
        max_slices: Some(200),
        ..RouteConfig::default()
    };
    assert_eq!(route_mismatch(&r2, &info, "OSTEON", "CT01", 140), None);
    assert!(
        route_mismatch(&r2, &info, "OSTEON", "CT02", 140).is_some_and(|m| m.contains("calling AE"))
    );
    assert!(route_mismatch(&r2, &info, "OSTEON", "CT01", 201).is_some());
    r2.series_description = Some("^BONE".to_owned());
    assert!(route_mismatch(&r2, &info, "OSTEON", "CT01", 140)
        .is_some_and(|m| m.contains("does not match")));
    r2.series_description = None;
    r2.called_ae_titles = vec!["OTHER".to_owned()];
    assert!(route_mismatch(&r2, &info, "OSTEON", "CT01", 140).is_some());
}

#[test]
fn phantom_study_routes_two_axial_series_and_no_localizer_or_dose_pages() {
    let root = Path::new("/work/shared/data/ct/philips-ingenuity-head-phantom");
    assert!(root.is_dir(), "test data missing: {}", root.display());
    let config = Config::default();
    let mut jobs = 0;
    let mut no_jobs = Vec::new();
    for folder in ["S1000", "S2010", "S2020", "S4010"] {
        let files = series_files(root, ".", folder);
        assert!(!files.is_empty(), "{folder}");
        // series_files reads <root>/<study>/<series>; the test data folders are flat.
        let series = CompleteSeries {
            study_uid: ".".to_owned(),
            series_uid: folder.to_owned(),
            calling_ae: "CT01".to_owned(),
            instances: files.len(),
            rerun: false,
            last_received: SystemTime::UNIX_EPOCH,
        };
        match route_series(&config, root, &series) {
            Routed::Job(j) => {
                jobs += 1;
                assert!(j.slices == 28 || j.slices == 140, "{folder}: {}", j.slices);
            }
            Routed::NoJob(reason) => no_jobs.push((folder, reason)),
        }
    }
    assert_eq!(jobs, 2, "{no_jobs:?}");
    assert_eq!(no_jobs.len(), 2);
    assert_eq!(no_jobs[0].0, "S1000");
    assert!(no_jobs[0].1.contains("LOCALIZER"), "{}", no_jobs[0].1);
    assert_eq!(no_jobs[1].0, "S4010");
    assert!(
        no_jobs[1].1.contains("not CT image storage"),
        "{}",
        no_jobs[1].1
    );
}

#[test]
fn restored_series_complete_after_a_quiet_period_unless_closed() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    a.mark_closed(("1.2".to_owned(), "1.2.3".to_owned()));
    a.restore(("1.2".to_owned(), "1.2.3".to_owned()), t0);
    a.restore(("1.2".to_owned(), "1.2.4".to_owned()), t0);
    assert_eq!(a.pending(), 1);
    assert!(a.due(t0 + s(1)).is_empty());
    let due = a.due(t0 + s(2));
    assert_eq!(
        (
            due.len(),
            due[0].series_uid.as_str(),
            due[0].calling_ae.as_str()
        ),
        (1, "1.2.4", "")
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("1.2/1.2.4")).unwrap();
    std::fs::create_dir_all(dir.path().join("1.2/1.2.3")).unwrap();
    assert_eq!(
        spooled_series(dir.path()),
        vec![
            ("1.2".to_owned(), "1.2.3".to_owned()),
            ("1.2".to_owned(), "1.2.4".to_owned())
        ]
    );
}

#[test]
fn next_due_is_the_earliest_quiet_or_max_wait_deadline() {
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    assert_eq!(a.next_due(), None, "nothing pending");
    let t0 = Instant::now();
    let s = Duration::from_secs;
    a.on_instance(&instance("1.2.3", "1"), t0);
    a.on_instance(&instance("1.2.4", "1"), t0 + s(1));
    assert_eq!(a.next_due(), Some(t0 + s(2)));
    // Series 1.2.3 keeps receiving: its quiet deadline moves, 1.2.4's is next.
    a.on_instance(&instance("1.2.3", "2"), t0 + s(2));
    assert_eq!(a.next_due(), Some(t0 + s(3)));
    assert_eq!(a.due(t0 + s(3)).len(), 1);
    // An instance every second: the max wait (first + 10 s) comes before the quiet deadline.
    for i in 3..10u64 {
        a.on_instance(&instance("1.2.3", &i.to_string()), t0 + s(i));
    }
    a.on_instance(
        &instance("1.2.3", "x"),
        t0 + s(9) + Duration::from_millis(500),
    );
    assert_eq!(a.next_due(), Some(t0 + s(10)));
    assert_eq!(a.due(t0 + s(10)).len(), 1);
    assert_eq!(a.next_due(), None);
}

#[test]
fn a_discarded_duplicate_neither_reopens_nor_prolongs_a_series() {
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    let t0 = Instant::now();
    let s = Duration::from_secs;
    a.on_instance(&instance("1.2.3", "1"), t0);
    let mut dup = instance("1.2.3", "1");
    dup.outcome = Outcome::DuplicateDiffering;
    // Pending: the discarded copy does not move the quiet deadline.
    a.on_instance(&dup, t0 + s(1));
    assert_eq!(a.next_due(), Some(t0 + s(2)));
    assert_eq!(a.due(t0 + s(2)).len(), 1);
    // Processed: it does not start a re-run.
    a.on_instance(&dup, t0 + s(3));
    assert_eq!(a.pending(), 0);
    assert_eq!(a.next_due(), None);
}

#[test]
fn late_instances_found_at_start_up_reopen_the_series_as_a_rerun() {
    let t0 = Instant::now();
    let key = ("1.2".to_owned(), "1.2.3".to_owned());
    let mut a = assembler(2, 10, LatePolicy::Rerun);
    a.mark_closed(key.clone());
    a.restore(key.clone(), t0);
    assert_eq!(a.pending(), 0, "restore leaves a processed series closed");
    a.restore_late(key.clone(), t0);
    let due = a.due(t0 + Duration::from_secs(2));
    assert_eq!(due.len(), 1);
    assert!(due[0].rerun);
    let mut a = assembler(2, 10, LatePolicy::Report);
    a.mark_closed(key.clone());
    a.restore_late(key, t0);
    assert_eq!(a.pending(), 0, "late_instances = report: no re-run");
}
