//! The durable job queue of `osteon serve`, behind the [`JobQueue`] trait so a shared engine can
//! replace the embedded SQLite ([`SqliteQueue`], file `data_dir/osteon.db`) later.
//!
//! States (column `state`): `received` (reserved: recorded, not yet routed) -> `queued` (routed,
//! waiting for a worker) -> `running` (segmentation and mesh) -> `exporting` (C-STORE to the
//! destinations; waits between attempts with `next_attempt_at`) -> `done`; `failed` when the
//! pipeline failed (input or processing error, final until `osteon jobs retry`); `dead-letter`
//! when an export failed permanently or ran out of attempts. On start-up ([`JobQueue::resume`])
//! `running` jobs go back to `queued` and `exporting` jobs are due at once, so nothing stored with
//! success status is lost by a crash. Timestamps are Unix milliseconds (UTC).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{DestinationConfig, RouteConfig, SegmenterName};

/// File name of the database under the data folder.
pub const DB_FILE: &str = "osteon.db";

/// Errors of the queue; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite failed (open, schema, statement).
    #[error("{db}: {source}")]
    Sqlite {
        db: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored JSON column does not decode.
    #[error("{db}: job {id}: column {column}: {reason}")]
    Corrupt {
        db: PathBuf,
        id: i64,
        column: &'static str,
        reason: String,
    },
    /// The data folder holds no job database (the node never ran with this `storage.data_dir`).
    #[error("{0}: no database (has the node run with this storage.data_dir?)")]
    NoDatabase(PathBuf),
    /// No job with this id.
    #[error("no job {0}")]
    NoSuchJob(i64),
    /// `retry` of a job that is not failed or dead-letter.
    #[error("job {id} is {state}, only failed and dead-letter jobs can be retried")]
    NotRetryable { id: i64, state: JobState },
}

/// State of a job (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Reserved: recorded, not yet routed (the assembler routes before recording today).
    Received,
    /// Waiting for a worker.
    Queued,
    /// Being segmented and meshed.
    Running,
    /// Results made; being sent, or waiting for the next export attempt.
    Exporting,
    /// Results stored and delivered to every destination.
    Done,
    /// The pipeline failed (final until `osteon jobs retry`).
    Failed,
    /// Export failed permanently or ran out of attempts.
    DeadLetter,
}

impl JobState {
    /// The name stored in the database and shown by `osteon jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Exporting => "exporting",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::DeadLetter => "dead-letter",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Received,
            JobState::Queued,
            JobState::Running,
            JobState::Exporting,
            JobState::Done,
            JobState::Failed,
            JobState::DeadLetter,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pipeline a route names, frozen into the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// Segmenter to run.
    pub segmenter: SegmenterName,
    /// Threshold (HU) of the threshold segmenter.
    pub threshold_hu: f32,
    /// Mesh smoothing iterations.
    pub smoothing_iterations: u32,
    /// Triangle budget; 0 = no decimation.
    pub max_triangles: usize,
    /// Post-processing of the CNN's mask (jobs queued before the setting existed: the default).
    #[serde(default)]
    pub post_processing: crate::segment::PostMode,
}

impl PipelineSpec {
    /// The pipeline settings of `route`.
    pub fn of(route: &RouteConfig) -> Self {
        Self {
            segmenter: route.segmenter,
            threshold_hu: route.threshold_hu,
            smoothing_iterations: route.smoothing_iterations,
            max_triangles: route.max_triangles,
            post_processing: route.post_processing,
        }
    }
}

/// A job to enqueue (made by [`super::assembler::route_series`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// SeriesInstanceUID (0020,000E) of the source CT series.
    pub series_uid: String,
    /// Name of the matching route.
    pub route: String,
    /// Pipeline settings of that route.
    pub pipeline: PipelineSpec,
    /// Destinations, frozen at routing time.
    pub destinations: Vec<DestinationConfig>,
    /// Calling AE title of the sender (last association).
    pub calling_ae: String,
    /// Slices of the routed acquisition.
    pub slices: usize,
}

/// Result of the C-STORE of one instance to one destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// Destination name.
    pub destination: String,
    /// SOP Instance UID sent.
    pub sop_instance_uid: String,
    /// DIMSE status (PS3.7 C), `None` when no response came.
    pub status: Option<u16>,
    /// Delivered (success or warning status).
    pub delivered: bool,
    /// Error text when not delivered.
    pub detail: String,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    /// Job id (positive, increasing).
    pub id: i64,
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// SeriesInstanceUID (0020,000E) of the source CT series.
    pub series_uid: String,
    /// 1 for the first job of a series, +1 for each re-run after late instances.
    pub version: i64,
    /// Name of the route that made it.
    pub route: String,
    /// Pipeline settings.
    pub pipeline: PipelineSpec,
    /// Destinations receiving the results.
    pub destinations: Vec<DestinationConfig>,
    /// Calling AE title of the sender.
    pub calling_ae: String,
    /// Slices of the routed acquisition.
    pub slices: i64,
    /// Current state.
    pub state: JobState,
    /// Processing attempts.
    pub attempts: i64,
    /// Export attempts since the last processing or retry.
    pub export_attempts: i64,
    /// When the job was recorded (Unix ms).
    pub created_ms: i64,
    /// Last change (Unix ms).
    pub updated_ms: i64,
    /// Due time of the next export attempt (`exporting` jobs), Unix ms; `None` while claimed.
    pub next_attempt_ms: Option<i64>,
    /// Last error.
    pub error: Option<String>,
    /// `data_dir/results/<id>/` once processed.
    pub result_dir: Option<String>,
    /// `report.json` content once processed.
    pub report: Option<serde_json::Value>,
    /// Per-destination, per-instance export results (latest attempt).
    pub exports: Vec<ExportRecord>,
}

/// What a worker got from [`JobQueue::claim`].
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// A queued job, now `running`: process it.
    Process(Job),
    /// An `exporting` job due now: send its results.
    Export(Job),
}

/// The job queue interface. Implementations are shared between threads; every method is one
/// atomic transition.
pub trait JobQueue: Send + Sync {
    /// Records a job in state `queued` with the next version for its series; returns its id.
    fn enqueue(&self, job: &NewJob) -> Result<i64, QueueError>;
    /// Takes the oldest queued job (-> `running`, attempts + 1) or else the oldest exporting job
    /// due at `now_ms` (its `next_attempt_ms` cleared while claimed).
    fn claim(&self, now_ms: i64) -> Result<Option<Claim>, QueueError>;
    /// Processing succeeded: stores the result folder and report; -> `exporting` due now, or
    /// `done` when the job has no destinations.
    fn processed(
        &self,
        id: i64,
        result_dir: &Path,
        report: &serde_json::Value,
    ) -> Result<(), QueueError>;
    /// Processing failed: -> `failed` with `error`.
    fn fail(&self, id: i64, error: &str) -> Result<(), QueueError>;
    /// Records an export attempt: `retry_at_ms` Some -> stays `exporting`, due then; else `done`
    /// when `error` is None, `dead-letter` otherwise.
    fn exported(
        &self,
        id: i64,
        records: &[ExportRecord],
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), QueueError>;
    /// `osteon jobs retry`: a failed job -> `queued`; a dead-letter job -> `exporting` due now
    /// with its export attempts reset.
    fn retry(&self, id: i64) -> Result<JobState, QueueError>;
    /// Start-up recovery: `running` -> `queued`, claimed `exporting` -> due now. Returns how
    /// many jobs were resumed.
    fn resume(&self, now_ms: i64) -> Result<usize, QueueError>;
    /// One job.
    fn get(&self, id: i64) -> Result<Job, QueueError>;
    /// All jobs, oldest first.
    fn list(&self) -> Result<Vec<Job>, QueueError>;
    /// Blocks an idle worker until work may be waiting or `timeout` has passed. `seen` is the
    /// caller's count of wake-ups (start at 0): the call returns at once when jobs were enqueued
    /// or retried through this queue since that count, and updates it. Work from elsewhere (another
    /// process's `osteon jobs retry`, an export retry that falls due) is found after `timeout`.
    /// Default: sleeps `timeout`.
    fn wait_for_work(&self, seen: &mut u64, timeout: Duration) {
        let _ = seen;
        std::thread::sleep(timeout);
    }
}

/// Current time, Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[path = "queue_sqlite.rs"]
mod sqlite;
pub(crate) use sqlite::open_database;
pub use sqlite::SqliteQueue;

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
