use super::*;

fn new_job(series: &str, destinations: usize) -> NewJob {
    NewJob {
        study_uid: "1.2.3".to_owned(),
        series_uid: series.to_owned(),
        route: "cranial-ct".to_owned(),
        pipeline: PipelineSpec::of(&RouteConfig::default()),
        destinations: (0..destinations)
            .map(|i| DestinationConfig {
                name: format!("pacs{i}"),
                ae_title: "PACS".to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 104,
            })
            .collect(),
        calling_ae: "CT01".to_owned(),
        slices: 140,
    }
}

#[test]
fn lifecycle_versions_claims_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(dir.path()).unwrap();
    let a = q.enqueue(&new_job("1.2.3.4", 1)).unwrap();
    let b = q.enqueue(&new_job("1.2.3.4", 0)).unwrap();
    assert_eq!(q.get(a).unwrap().version, 1);
    assert_eq!(q.get(b).unwrap().version, 2);
    assert_eq!(q.get(a).unwrap().state, JobState::Queued);

    let Some(Claim::Process(j)) = q.claim(1000).unwrap() else {
        panic!("expected a job to process")
    };
    assert_eq!((j.id, j.state, j.attempts), (a, JobState::Running, 1));
    let report = serde_json::json!({"bone_volume_ml": 512.5});
    q.processed(a, Path::new("/r/1"), &report).unwrap();
    let j = q.get(a).unwrap();
    assert_eq!(j.state, JobState::Exporting);
    assert_eq!(j.report, Some(report));
    assert_eq!(j.result_dir.as_deref(), Some("/r/1"));

    // The queued job b comes before the due export of a.
    let Some(Claim::Process(j)) = q.claim(now_ms()).unwrap() else {
        panic!("expected b")
    };
    assert_eq!(j.id, b);
    q.processed(b, Path::new("/r/2"), &serde_json::json!({}))
        .unwrap();
    assert_eq!(q.get(b).unwrap().state, JobState::Done, "no destinations");

    let Some(Claim::Export(j)) = q.claim(now_ms()).unwrap() else {
        panic!("expected the export of a")
    };
    assert_eq!((j.id, j.export_attempts, j.next_attempt_ms), (a, 1, None));
    assert_eq!(
        q.claim(now_ms()).unwrap(),
        None,
        "claimed export is not handed out twice"
    );
    let rec = ExportRecord {
        destination: "pacs0".to_owned(),
        sop_instance_uid: "2.25.1".to_owned(),
        status: None,
        delivered: false,
        detail: "connection refused".to_owned(),
    };
    q.exported(
        a,
        std::slice::from_ref(&rec),
        Some("connection refused"),
        Some(now_ms() + 60_000),
    )
    .unwrap();
    assert_eq!(q.claim(now_ms()).unwrap(), None, "not due yet");
    q.exported(
        a,
        std::slice::from_ref(&rec),
        Some("connection refused"),
        None,
    )
    .unwrap();
    let j = q.get(a).unwrap();
    assert_eq!(j.state, JobState::DeadLetter);
    assert_eq!(j.exports, vec![rec]);
    assert_eq!(q.retry(a).unwrap(), JobState::Exporting);
    assert!(matches!(q.claim(now_ms()).unwrap(), Some(Claim::Export(_))));
    q.exported(a, &[], None, None).unwrap();
    assert_eq!(q.get(a).unwrap().state, JobState::Done);
    assert!(matches!(
        q.retry(a),
        Err(QueueError::NotRetryable {
            state: JobState::Done,
            ..
        })
    ));
    assert!(matches!(q.get(99), Err(QueueError::NoSuchJob(99))));
}

#[test]
fn unfinished_jobs_resume_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let q = SqliteQueue::open(dir.path()).unwrap();
        let a = q.enqueue(&new_job("1.2.3.4", 1)).unwrap();
        let b = q.enqueue(&new_job("1.2.3.5", 1)).unwrap();
        assert!(matches!(q.claim(0).unwrap(), Some(Claim::Process(_))));
        assert!(matches!(q.claim(0).unwrap(), Some(Claim::Process(_))));
        q.processed(b, Path::new("/r"), &serde_json::json!({}))
            .unwrap();
        assert!(matches!(q.claim(now_ms()).unwrap(), Some(Claim::Export(_))));
        // "crash": a running, b claimed for export.
        (a, b)
    };
    let q = SqliteQueue::open(dir.path()).unwrap();
    assert_eq!(q.resume(now_ms()).unwrap(), 2);
    assert_eq!(q.get(a).unwrap().state, JobState::Queued);
    assert_eq!(q.list().unwrap().len(), 2);
    let Some(Claim::Process(j)) = q.claim(now_ms()).unwrap() else {
        panic!("a resumes")
    };
    assert_eq!((j.id, j.attempts), (a, 2));
    let Some(Claim::Export(j)) = q.claim(now_ms()).unwrap() else {
        panic!("b resumes exporting")
    };
    assert_eq!(j.id, b);
}

#[test]
fn an_enqueue_wakes_a_waiting_worker() {
    let dir = tempfile::tempdir().unwrap();
    let q = std::sync::Arc::new(SqliteQueue::open(dir.path()).unwrap());
    let mut seen = 0;
    // Nothing happened yet: the wait runs out and the count stays.
    q.wait_for_work(&mut seen, Duration::from_millis(10));
    assert_eq!(seen, 0);
    let worker = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            let t = std::time::Instant::now();
            q.wait_for_work(&mut seen, Duration::from_secs(60));
            (seen, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    q.enqueue(&new_job("1.2.3.9", 0)).unwrap();
    let (seen, waited) = worker.join().unwrap();
    assert_eq!(seen, 1, "one wake-up counted");
    assert!(
        waited < Duration::from_secs(30),
        "woken by the enqueue, not the 60 s timeout: {waited:?}"
    );
    // A wake-up since the caller's count returns at once.
    let mut stale = 0;
    let t = std::time::Instant::now();
    q.wait_for_work(&mut stale, Duration::from_secs(60));
    assert_eq!(stale, 1);
    assert!(t.elapsed() < Duration::from_secs(30));
}
