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
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
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

/// [`JobQueue`] on an embedded SQLite database (WAL journal, synchronous FULL).
pub struct SqliteQueue {
    db: PathBuf,
    conn: Mutex<Connection>,
    /// Wake-ups of idle workers (jobs enqueued or retried in this process), counted.
    work: (Mutex<u64>, Condvar),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    route TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    destinations TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    slices INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    export_attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER,
    error TEXT,
    result_dir TEXT,
    report TEXT,
    exports TEXT NOT NULL DEFAULT '[]',
    UNIQUE (series_uid, version)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
";

const COLUMNS: &str =
    "id, study_uid, series_uid, version, route, pipeline, destinations, calling_ae, \
     slices, state, attempts, export_attempts, created_ms, updated_ms, next_attempt_ms, error, \
     result_dir, report, exports";

/// Opens (creating) the node's SQLite database at `db` in WAL mode with a 10 s busy timeout; shared
/// by the job queue and the QA store, which keep their tables in the same file.
///
/// # Errors
/// The SQLite error (the caller names the file).
pub(crate) fn open_database(db: &Path) -> Result<Connection, rusqlite::Error> {
    const BUSY: std::time::Duration = std::time::Duration::from_secs(10);
    let conn = Connection::open(db)?;
    conn.busy_timeout(BUSY)?;
    // Switching a rollback-journal database (an older node's) to WAL needs an exclusive lock, and
    // SQLite answers SQLITE_BUSY at once, without the busy handler, where waiting could deadlock
    // (sqlite3_busy_handler: a connection holding a shared lock that wants to escalate), e.g.
    // when a node and `osteon qa` open it at the same moment: retry within the same 10 s.
    let start = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && start.elapsed() < BUSY =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other?,
        }
    }
    Ok(conn)
}

impl SqliteQueue {
    /// Opens (creating) `data_dir/osteon.db`.
    ///
    /// Errors: [`QueueError::Sqlite`] naming the file.
    pub fn open(data_dir: &Path) -> Result<SqliteQueue, QueueError> {
        let db = data_dir.join(DB_FILE);
        let err = |source| QueueError::Sqlite {
            db: db.clone(),
            source,
        };
        let conn = open_database(&db).map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteQueue {
            db: db.clone(),
            conn: Mutex::new(conn),
            work: (Mutex::new(0), Condvar::new()),
        })
    }

    /// Wakes the workers waiting in [`JobQueue::wait_for_work`].
    fn wake(&self) {
        let (count, cv) = &self.work;
        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_all();
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        move |source| QueueError::Sqlite {
            db: self.db.clone(),
            source,
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut guard = match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn job_of(&self, row: &Row<'_>) -> Result<Job, QueueError> {
        let e = self.err();
        let id: i64 = row.get(0).map_err(&e)?;
        let corrupt = |column: &'static str, reason: String| QueueError::Corrupt {
            db: self.db.clone(),
            id,
            column,
            reason,
        };
        let text = |i: usize| -> Result<String, QueueError> { row.get(i).map_err(&e) };
        let state_text = text(9)?;
        let state = JobState::parse(&state_text)
            .ok_or_else(|| corrupt("state", format!("unknown state {state_text:?}")))?;
        let report: Option<String> = row.get(17).map_err(&e)?;
        let report = match report {
            Some(r) => {
                Some(serde_json::from_str(&r).map_err(|x| corrupt("report", x.to_string()))?)
            }
            None => None,
        };
        Ok(Job {
            id,
            study_uid: text(1)?,
            series_uid: text(2)?,
            version: row.get(3).map_err(&e)?,
            route: text(4)?,
            pipeline: serde_json::from_str(&text(5)?)
                .map_err(|x| corrupt("pipeline", x.to_string()))?,
            destinations: serde_json::from_str(&text(6)?)
                .map_err(|x| corrupt("destinations", x.to_string()))?,
            calling_ae: text(7)?,
            slices: row.get(8).map_err(&e)?,
            state,
            attempts: row.get(10).map_err(&e)?,
            export_attempts: row.get(11).map_err(&e)?,
            created_ms: row.get(12).map_err(&e)?,
            updated_ms: row.get(13).map_err(&e)?,
            next_attempt_ms: row.get(14).map_err(&e)?,
            error: row.get(15).map_err(&e)?,
            result_dir: row.get(16).map_err(&e)?,
            report,
            exports: serde_json::from_str(&text(18)?)
                .map_err(|x| corrupt("exports", x.to_string()))?,
        })
    }

    fn query_jobs(
        &self,
        conn: &Connection,
        sql_tail: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Job>, QueueError> {
        let e = self.err();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM jobs {sql_tail}"))
            .map_err(&e)?;
        let mut rows = stmt.query(args).map_err(&e)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(&e)? {
            out.push(self.job_of(row)?);
        }
        Ok(out)
    }

    fn update(&self, sql: &str, args: &[&dyn rusqlite::ToSql], id: i64) -> Result<(), QueueError> {
        let n = self.with(|c| c.execute(sql, args).map_err(self.err()))?;
        if n == 0 {
            return Err(QueueError::NoSuchJob(id));
        }
        Ok(())
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

impl JobQueue for SqliteQueue {
    fn enqueue(&self, job: &NewJob) -> Result<i64, QueueError> {
        self.with(|c| {
            let e = self.err();
            let tx = c.transaction().map_err(&e)?;
            let version: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM jobs WHERE series_uid = ?1",
                    params![job.series_uid],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            let now = now_ms();
            tx.execute(
                "INSERT INTO jobs (study_uid, series_uid, version, route, pipeline, destinations, \
                 calling_ae, slices, state, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?9)",
                params![
                    job.study_uid,
                    job.series_uid,
                    version,
                    job.route,
                    json(&job.pipeline),
                    json(&job.destinations),
                    job.calling_ae,
                    job.slices as i64,
                    now
                ],
            )
            .map_err(&e)?;
            let id = tx.last_insert_rowid();
            tx.commit().map_err(&e)?;
            Ok(id)
        })
        .inspect(|_| self.wake())
    }

    fn claim(&self, now_ms: i64) -> Result<Option<Claim>, QueueError> {
        self.with(|c| {
            let e = self.err();
            let tx = c.transaction().map_err(&e)?;
            let queued: Option<i64> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            let claim = if let Some(id) = queued {
                tx.execute(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_ms = ?2 \
                     WHERE id = ?1",
                    params![id, now_ms],
                )
                .map_err(&e)?;
                Some((id, true))
            } else {
                let due: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM jobs WHERE state = 'exporting' AND next_attempt_ms IS NOT NULL \
                         AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT 1",
                        params![now_ms],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(&e)?;
                if let Some(id) = due {
                    tx.execute(
                        "UPDATE jobs SET next_attempt_ms = NULL, export_attempts = export_attempts + 1, \
                         updated_ms = ?2 WHERE id = ?1",
                        params![id, now_ms],
                    )
                    .map_err(&e)?;
                }
                due.map(|id| (id, false))
            };
            let out = match claim {
                Some((id, process)) => {
                    let job = self
                        .query_jobs(&tx, "WHERE id = ?1", &[&id])?
                        .pop()
                        .ok_or(QueueError::NoSuchJob(id))?;
                    Some(if process {
                        Claim::Process(job)
                    } else {
                        Claim::Export(job)
                    })
                }
                None => None,
            };
            tx.commit().map_err(&e)?;
            Ok(out)
        })
    }

    fn processed(
        &self,
        id: i64,
        result_dir: &Path,
        report: &serde_json::Value,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        self.update(
            "UPDATE jobs SET state = CASE WHEN destinations = '[]' THEN 'done' ELSE 'exporting' END, \
             next_attempt_ms = CASE WHEN destinations = '[]' THEN NULL ELSE ?2 END, \
             export_attempts = 0, result_dir = ?3, report = ?4, error = NULL, updated_ms = ?2 \
             WHERE id = ?1",
            &[&id, &now, &result_dir.display().to_string(), &json(report)],
            id,
        )
    }

    fn fail(&self, id: i64, error: &str) -> Result<(), QueueError> {
        self.update(
            "UPDATE jobs SET state = 'failed', error = ?2, updated_ms = ?3 WHERE id = ?1",
            &[&id, &error, &now_ms()],
            id,
        )
    }

    fn exported(
        &self,
        id: i64,
        records: &[ExportRecord],
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), QueueError> {
        let state = match (retry_at_ms, error) {
            (Some(_), _) => JobState::Exporting,
            (None, None) => JobState::Done,
            (None, Some(_)) => JobState::DeadLetter,
        };
        self.update(
            "UPDATE jobs SET state = ?2, next_attempt_ms = ?3, error = ?4, exports = ?5, \
             updated_ms = ?6 WHERE id = ?1",
            &[
                &id,
                &state.as_str(),
                &retry_at_ms,
                &error,
                &json(&records),
                &now_ms(),
            ],
            id,
        )
    }

    fn retry(&self, id: i64) -> Result<JobState, QueueError> {
        let job = self.get(id)?;
        let now = now_ms();
        let next = match job.state {
            JobState::Failed => {
                self.update(
                    "UPDATE jobs SET state = 'queued', updated_ms = ?2 WHERE id = ?1",
                    &[&id, &now],
                    id,
                )?;
                JobState::Queued
            }
            JobState::DeadLetter => {
                self.update(
                    "UPDATE jobs SET state = 'exporting', next_attempt_ms = ?2, export_attempts = 0, \
                     updated_ms = ?2 WHERE id = ?1",
                    &[&id, &now],
                    id,
                )?;
                JobState::Exporting
            }
            state => return Err(QueueError::NotRetryable { id, state }),
        };
        self.wake();
        Ok(next)
    }

    fn resume(&self, now_ms: i64) -> Result<usize, QueueError> {
        self.with(|c| {
            let e = self.err();
            let a = c
                .execute(
                    "UPDATE jobs SET state = 'queued', updated_ms = ?1 WHERE state = 'running'",
                    params![now_ms],
                )
                .map_err(&e)?;
            let b = c
                .execute(
                    "UPDATE jobs SET next_attempt_ms = ?1 WHERE state = 'exporting' \
                     AND next_attempt_ms IS NULL",
                    params![now_ms],
                )
                .map_err(&e)?;
            Ok(a + b)
        })
    }

    fn get(&self, id: i64) -> Result<Job, QueueError> {
        self.with(|c| self.query_jobs(c, "WHERE id = ?1", &[&id]))?
            .pop()
            .ok_or(QueueError::NoSuchJob(id))
    }

    fn list(&self) -> Result<Vec<Job>, QueueError> {
        self.with(|c| self.query_jobs(c, "ORDER BY id", &[]))
    }

    fn wait_for_work(&self, seen: &mut u64, timeout: Duration) {
        let (count, cv) = &self.work;
        let guard = count.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |n| *n == *seen)
            .unwrap_or_else(|p| p.into_inner());
        *seen = *guard;
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
