//! [`SqliteQueue`]: the [`JobQueue`] on the embedded SQLite database `data_dir/osteon.db` (WAL
//! journal, synchronous FULL), and [`open_database`], which the QA store shares.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{now_ms, Claim, ExportRecord, Job, JobQueue, JobState, NewJob, QueueError, DB_FILE};

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
