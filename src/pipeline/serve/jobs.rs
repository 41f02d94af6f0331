//! The job workers of `osteon serve` (`pipeline.workers` threads) and the `osteon jobs` command.
//!
//! A worker claims the next job ([`JobQueue::claim`]): a queued job is processed — its series is
//! read from the spool folder as it is when the job starts (scan_files + load_volume, largest
//! acquisition; every smaller acquisition and every unread file is logged as a warning), segmented and meshed by [`process_volume`] into `data_dir/results/<job id>/` —
//! and a due exporting job is sent ([`export_job`]). A panic inside the pipeline marks the job
//! failed instead of killing the worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, info_span, warn};

use super::super::assembler::series_files;
use super::super::export::export_job;
use super::super::offline::{segmenter_for, OfflineOptions, SegmenterChoice};
use super::super::qa::{QaRecord, QaStore};
use super::super::queue::{now_ms, Claim, Job, JobQueue, JobState, QueueError, SqliteQueue};
use super::super::report::SeriesReport;
use super::super::retention::on_job_done;
use super::super::worker::process_volume;
use crate::config::{Config, SegmenterName};
use crate::dicom::series::{load_volume, scan_files};
use crate::mesh::MeshOptions;

/// Folder of the results of all jobs under the data folder.
pub const RESULTS_DIR: &str = "results";

/// Longest an idle worker waits before asking the queue again (a claim is one indexed SQLite
/// query). A job enqueued or retried by this node wakes it at once ([`JobQueue::wait_for_work`]);
/// this bound is for work from elsewhere (`osteon jobs retry`, export retries falling due).
const IDLE: Duration = Duration::from_millis(250);

/// Idle time after which a worker gives the memory kept for reuse back to the OS: series
/// arriving back to back reuse the pages of the one before, a quiet node does not hold them.
const RELEASE_AFTER: Duration = Duration::from_secs(60);

/// Starts `config.pipeline.workers` worker threads; they stop after their current step once
/// `stop` is set. Each processed job's QA record goes to `qa` (when the table could be opened)
/// and to the log.
pub fn start(
    config: Arc<Config>,
    queue: Arc<dyn JobQueue>,
    qa: Option<Arc<QaStore>>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..config.pipeline.workers)
        .filter_map(|n| {
            let (config, queue, stop) = (config.clone(), queue.clone(), stop.clone());
            let qa = qa.clone();
            std::thread::Builder::new()
                .name(format!("osteon-worker-{n}"))
                .spawn(move || work(&config, queue.as_ref(), qa.as_deref(), &stop))
                .map_err(|e| error!(worker = n, error = %e, "cannot start a worker thread"))
                .ok()
        })
        .collect()
}

fn work(config: &Config, queue: &dyn JobQueue, qa: Option<&QaStore>, stop: &AtomicBool) {
    let mut seen = 0;
    // Since when this worker has been idle with memory kept for reuse that should go back to
    // the OS after RELEASE_AFTER (see heap::release); None once released.
    let mut idle_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        match queue.claim(now_ms()) {
            Ok(Some(Claim::Process(job))) => {
                let _span = info_span!("job", job = job.id, series = %job.series_uid).entered();
                run_process(config, queue, qa, &job);
                idle_since = Some(Instant::now());
            }
            Ok(Some(Claim::Export(job))) => {
                let _span = info_span!("job", job = job.id, series = %job.series_uid).entered();
                run_export(config, queue, qa, &job);
                idle_since = Some(Instant::now());
            }
            Ok(None) => {
                if idle_since.is_some_and(|t| t.elapsed() >= RELEASE_AFTER) {
                    crate::pipeline::heap::release();
                    idle_since = None;
                }
                queue.wait_for_work(&mut seen, IDLE);
            }
            Err(e) => {
                error!(error = %e, "job queue");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn run_process(config: &Config, queue: &dyn JobQueue, qa: Option<&QaStore>, job: &Job) {
    let started = Instant::now();
    let started_ms = now_ms();
    info!(job = job.id, series = %job.series_uid, version = job.version, attempt = job.attempts,
        queue_wait_ms = now_ms() - job.created_ms, "processing");
    let outcome = catch_unwind(AssertUnwindSafe(|| process(config, job)))
        .unwrap_or_else(|_| Err("the pipeline panicked".to_owned()));
    let recorded = match outcome {
        Ok((dir, report)) => {
            info!(job = job.id, series = %job.series_uid, ms = started.elapsed().as_millis() as u64,
                results = %dir.display(), "processed");
            let record = QaRecord::of(job, &report, started_ms, received_times(config, job));
            record.emit();
            if let Some(Err(e)) = qa.map(|store| store.record(&record)) {
                error!(job = job.id, error = %e, "cannot store the QA record");
            }
            let report = serde_json::to_value(&report).unwrap_or_default();
            let recorded = queue.processed(job.id, &dir, &report);
            if recorded.is_ok() && job.destinations.is_empty() {
                retain(config, queue, job);
            }
            recorded
        }
        Err(e) => {
            warn!(job = job.id, series = %job.series_uid, error = %e, "job failed");
            queue.fail(job.id, &e)
        }
    };
    if let Err(e) = recorded {
        error!(job = job.id, error = %e, "cannot record the job's outcome");
    }
}

/// (first, last) modification time of the series' spooled instances, Unix ms.
fn received_times(config: &Config, job: &Job) -> (Option<i64>, Option<i64>) {
    let spool = config.storage.data_dir.join("spool");
    let times: Vec<i64> = series_files(&spool, &job.study_uid, &job.series_uid)
        .iter()
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .collect();
    (times.iter().min().copied(), times.iter().max().copied())
}

fn process(config: &Config, job: &Job) -> Result<(PathBuf, SeriesReport), String> {
    let t = Instant::now();
    let spool = config.storage.data_dir.join("spool");
    let files = series_files(&spool, &job.study_uid, &job.series_uid);
    let scan = scan_files(&files);
    let group = scan
        .groups
        .iter()
        .max_by_key(|g| g.instances.len())
        .ok_or_else(|| format!("no CT slices among {} spooled file(s)", files.len()))?;
    // What the job leaves out is said, never dropped silently: the smaller acquisitions (another
    // AcquisitionNumber, geometry, Frame of Reference or patient under the same Series Instance
    // UID) and the files that are not CT slices of this series.
    for other in scan.groups.iter().filter(|g| !std::ptr::eq(*g, group)) {
        let first = other.instances.first().map(|i| &i.info);
        warn!(
            job = job.id,
            series = %job.series_uid,
            acquisition = ?other.acquisition_number,
            frame_of_reference = first.map_or("", |i| i.frame_of_reference_uid.as_str()),
            patient_id = first.map_or("", |i| i.patient_id.as_str()),
            instances = other.instances.len(),
            processed_instances = group.instances.len(),
            "a smaller acquisition of the series is not processed (the job takes the largest)"
        );
    }
    for skipped in &scan.skipped {
        warn!(
            job = job.id,
            series = %job.series_uid,
            file = %skipped.path.display(),
            reason = %skipped.reason,
            "a spooled file of the series is not processed"
        );
    }
    let ct = load_volume(group).map_err(|e| e.to_string())?;
    let read_ms = t.elapsed().as_secs_f64() * 1e3;
    let p = &job.pipeline;
    let mesh = MeshOptions {
        smoothing_iterations: p.smoothing_iterations,
        max_triangles: (p.max_triangles > 0).then_some(p.max_triangles),
        ..MeshOptions::default()
    };
    let segmenter = segmenter_for(&OfflineOptions {
        segmenter: match p.segmenter {
            SegmenterName::Default => SegmenterChoice::Default,
            SegmenterName::Threshold => SegmenterChoice::Threshold,
        },
        threshold_hu: p.threshold_hu,
        model_dir: config.pipeline.model_dir.clone(),
        model: None,
        thick_model: None,
        thick_from_mm: config.pipeline.thick_from_mm,
        mesh: mesh.clone(),
        progress: false,
        post_processing: p.post_processing,
    })
    .map_err(|e| e.to_string())?;
    let out = result_dir(&config.storage.data_dir, job.id);
    let report =
        process_volume(ct, segmenter.as_ref(), &mesh, &out, read_ms).map_err(|e| e.to_string())?;
    Ok((out, report))
}

/// `data_dir/results/<job id>/`.
pub fn result_dir(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join(RESULTS_DIR).join(id.to_string())
}

fn run_export(config: &Config, queue: &dyn JobQueue, qa: Option<&QaStore>, job: &Job) {
    let t = Instant::now();
    let decision = export_job(job, &config.export, &config.node.ae_title, now_ms());
    let done_ms = decision.error.is_none().then(now_ms);
    if let Some(Err(e)) = qa.map(|s| s.exported(job.id, t.elapsed().as_secs_f64() * 1e3, done_ms)) {
        error!(job = job.id, error = %e, "cannot store the export in the QA record");
    }
    match (&decision.error, decision.retry_at_ms) {
        (None, _) => info!(job = job.id, series = %job.series_uid, "exported"),
        (Some(e), Some(at)) => warn!(job = job.id, attempt = job.export_attempts,
            retry_in_ms = at - now_ms(), error = %e, "export will be retried"),
        (Some(e), None) => error!(job = job.id, error = %e, "export failed: dead-letter"),
    }
    match queue.exported(
        job.id,
        &decision.records,
        decision.error.as_deref(),
        decision.retry_at_ms,
    ) {
        Ok(()) if decision.error.is_none() => retain(config, queue, job),
        Ok(()) => {}
        Err(e) => error!(job = job.id, error = %e, "cannot record the export"),
    }
}

/// Spool retention `when-done` for a job that has just reached `done`.
fn retain(config: &Config, queue: &dyn JobQueue, job: &Job) {
    let spool = config.storage.data_dir.join("spool");
    if let Err(e) = on_job_done(config.storage.spool_retention, &spool, queue, job) {
        warn!(job = job.id, error = %e, "spool retention skipped");
    }
}

/// `osteon jobs ...` sub-commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobsCommand {
    /// One line per job.
    List,
    /// One job as JSON.
    Show(i64),
    /// Failed -> queued, dead-letter -> exporting (picked up by a running node).
    Retry(i64),
}

/// The JSON of `osteon jobs show`: the job's fields, and beside each epoch-millisecond time
/// (`created_ms`, `updated_ms`, `next_attempt_ms`) the same instant as RFC 3339 UTC text
/// (`created_utc`, ...), for the administrator reading it.
pub fn job_json(job: &Job) -> serde_json::Value {
    let mut v = serde_json::to_value(job).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = v.as_object_mut() {
        for (ms, utc) in [
            (Some(job.created_ms), "created_utc"),
            (Some(job.updated_ms), "updated_utc"),
            (job.next_attempt_ms, "next_attempt_utc"),
        ] {
            let text = ms
                .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            obj.insert(
                utc.to_owned(),
                text.map_or(serde_json::Value::Null, Into::into),
            );
        }
    }
    v
}

/// Runs `osteon jobs` on the database of `config.storage.data_dir`; returns the text to print.
///
/// Errors: [`QueueError`] (no database yet, database unusable, no such job, job not retryable).
pub fn jobs_command(config: &Config, command: &JobsCommand) -> Result<String, QueueError> {
    let db = config.storage.data_dir.join(super::super::queue::DB_FILE);
    if !db.is_file() {
        return Err(QueueError::NoDatabase(db));
    }
    let queue = SqliteQueue::open(&config.storage.data_dir)?;
    match command {
        JobsCommand::List => {
            let mut out = format!(
                "{:>5} {:<11} {:>3} {:>4} {:>4} {:<14} {:<64} {}\n",
                "ID", "STATE", "V", "RUNS", "SENDS", "ROUTE", "SERIES", "ERROR"
            );
            for j in queue.list()? {
                out.push_str(&format!(
                    "{:>5} {:<11} {:>3} {:>4} {:>5} {:<14} {:<64} {}\n",
                    j.id,
                    j.state.as_str(),
                    j.version,
                    j.attempts,
                    j.export_attempts,
                    j.route,
                    j.series_uid,
                    j.error.as_deref().unwrap_or("")
                ));
            }
            Ok(out)
        }
        JobsCommand::Show(id) => {
            let job = queue.get(*id)?;
            Ok(
                serde_json::to_string_pretty(&job_json(&job)).unwrap_or_else(|e| e.to_string())
                    + "\n",
            )
        }
        JobsCommand::Retry(id) => {
            let state: JobState = queue.retry(*id)?;
            Ok(format!("job {id}: {state}\n"))
        }
    }
}
