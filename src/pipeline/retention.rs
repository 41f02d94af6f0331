//! Spool retention (`storage.spool_retention`, [`SpoolRetention`]): deleting the received instances
//! of processed series from `data_dir/spool/<Study>/<Series>/`.
//!
//! Only files older than a cutoff are deleted (one by one), then the series and study folders if
//! they are empty, so an instance that arrives while its series is being cleaned up is never lost:
//! it stays in the spool (and, per `pipeline.late_instances`, makes a re-run or a warning).
//! * `when-done`: [`on_job_done`] when a job reaches `done` (cutoff: the job's creation time,
//!   i.e. the instances its processing used), unless another job of the series is unfinished; a
//!   series that made no job (a localizer, dose pages, or a series refused for too few slices
//!   that may still be incomplete) is kept [`NO_JOB_GRACE`] after its newest instance, so that
//!   the rest of it, arriving later, is routed together with it; [`sweep`] deletes it then.
//! * a duration: [`sweep`], run periodically by `osteon serve`.
//! * `keep`: nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::assembler::{series_files, spooled_series};
use super::queue::{Job, JobQueue, JobState, QueueError};
use crate::config::SpoolRetention;

/// Deletes the files of `spool_root/<study>/<series>/` last modified before `cutoff`, then the
/// series and study folders when empty. Returns the number of files deleted; files that cannot
/// be deleted are logged and left.
pub fn delete_series(spool_root: &Path, study: &str, series: &str, cutoff: SystemTime) -> usize {
    let mut deleted = 0;
    for f in series_files(spool_root, study, series) {
        let old = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if !old {
            continue;
        }
        match std::fs::remove_file(&f) {
            Ok(()) => deleted += 1,
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "spool retention: cannot delete")
            }
        }
    }
    let dir = spool_root.join(study).join(series);
    // Fails (and keeps the folder) when something is left in it.
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(spool_root.join(study));
    deleted
}

fn unfinished(state: JobState) -> bool {
    matches!(
        state,
        JobState::Received
            | JobState::Queued
            | JobState::Running
            | JobState::Exporting
            | JobState::Failed
    )
}

fn ms_to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `when-done`: `job` has just reached `done`; deletes the instances its processing used unless
/// another job of the same series is unfinished. Returns the files deleted.
///
/// Errors: [`QueueError`] when the other jobs of the series cannot be listed (nothing deleted).
pub fn on_job_done(
    retention: SpoolRetention,
    spool_root: &Path,
    queue: &dyn JobQueue,
    job: &Job,
) -> Result<usize, QueueError> {
    if retention != SpoolRetention::WhenDone {
        return Ok(0);
    }
    let busy = queue
        .list()?
        .iter()
        .any(|j| j.series_uid == job.series_uid && j.id != job.id && unfinished(j.state));
    if busy {
        return Ok(0);
    }
    let n = delete_series(
        spool_root,
        &job.study_uid,
        &job.series_uid,
        ms_to_time(job.created_ms),
    );
    tracing::info!(job = job.id, series = %job.series_uid, files = n, "spool retention: deleted (when-done)");
    Ok(n)
}

/// How long `when-done` keeps a series that made no job after its newest instance.
pub const NO_JOB_GRACE: Duration = Duration::from_secs(3600);

/// A duration retention: deletes the spooled series whose newest instance is older than the
/// duration at `now` and whose jobs (if any) are all done or dead-letter. `when-done`: deletes the
/// series that have no job at all and whose newest instance is older than [`NO_JOB_GRACE`].
/// Returns (series cleaned, files deleted). `keep`: nothing.
///
/// Errors: [`QueueError`] when the jobs cannot be listed (nothing deleted).
pub fn sweep(
    retention: SpoolRetention,
    spool_root: &Path,
    queue: &dyn JobQueue,
    now: SystemTime,
) -> Result<(usize, usize), QueueError> {
    let (keep, jobless_only) = match retention {
        SpoolRetention::Keep => return Ok((0, 0)),
        SpoolRetention::WhenDone => (NO_JOB_GRACE, true),
        SpoolRetention::After(keep) => (keep, false),
    };
    let Some(cutoff) = now.checked_sub(keep) else {
        return Ok((0, 0));
    };
    // Per series with a job: whether one of its jobs is unfinished.
    let mut busy: HashMap<String, bool> = HashMap::new();
    for j in queue.list()? {
        *busy.entry(j.series_uid).or_default() |= unfinished(j.state);
    }
    let (mut series_n, mut files_n) = (0, 0);
    for (study, series) in spooled_series(spool_root) {
        match busy.get(&series) {
            Some(true) => continue,
            Some(false) if jobless_only => continue,
            _ => {}
        }
        let newest = series_files(spool_root, &study, &series)
            .iter()
            .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .max();
        if newest.is_some_and(|t| t >= cutoff) {
            continue;
        }
        let n = delete_series(spool_root, &study, &series, cutoff);
        series_n += 1;
        files_n += n;
    }
    if series_n > 0 {
        tracing::info!(
            series = series_n,
            files = files_n,
            "spool retention: deleted old series"
        );
    }
    Ok((series_n, files_n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::queue::{NewJob, PipelineSpec, SqliteQueue};

    fn spool_file(root: &Path, study: &str, series: &str, name: &str) {
        let d = root.join(study).join(series);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), b"x").unwrap();
    }

    fn job(series: &str) -> NewJob {
        NewJob {
            study_uid: "1.1".to_owned(),
            series_uid: series.to_owned(),
            route: "r".to_owned(),
            pipeline: PipelineSpec::of(&crate::config::RouteConfig::default()),
            destinations: Vec::new(),
            calling_ae: "CT".to_owned(),
            slices: 2,
        }
    }

    #[test]
    fn sweep_deletes_only_old_series_without_unfinished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let q = SqliteQueue::open(dir.path()).unwrap();
        for s in ["1.2.1", "1.2.2", "1.2.3"] {
            spool_file(&spool, "1.1", s, "a.dcm");
        }
        // 1.2.1 done, 1.2.2 queued, 1.2.3 no job.
        let done = q.enqueue(&job("1.2.1")).unwrap();
        let _ = q.claim(0).unwrap();
        q.processed(done, dir.path(), &serde_json::json!({}))
            .unwrap();
        q.enqueue(&job("1.2.2")).unwrap();
        let week = SpoolRetention::After(Duration::from_secs(7 * 86400));
        // Nothing is a week old yet.
        assert_eq!(sweep(week, &spool, &q, SystemTime::now()).unwrap(), (0, 0));
        let later = SystemTime::now() + Duration::from_secs(8 * 86400);
        assert_eq!(sweep(week, &spool, &q, later).unwrap(), (2, 2));
        assert!(!spool.join("1.1/1.2.1").exists());
        assert!(
            spool.join("1.1/1.2.2/a.dcm").exists(),
            "queued job keeps its series"
        );
        assert!(!spool.join("1.1/1.2.3").exists());
        assert_eq!(
            sweep(SpoolRetention::Keep, &spool, &q, later).unwrap(),
            (0, 0)
        );
    }

    #[test]
    fn when_done_keeps_instances_newer_than_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let q = SqliteQueue::open(dir.path()).unwrap();
        spool_file(&spool, "1.1", "1.2.1", "old.dcm");
        std::thread::sleep(Duration::from_millis(20));
        let id = q.enqueue(&job("1.2.1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        spool_file(&spool, "1.1", "1.2.1", "late.dcm");
        let j = q.get(id).unwrap();
        assert_eq!(
            on_job_done(SpoolRetention::Keep, &spool, &q, &j).unwrap(),
            0
        );
        assert_eq!(
            on_job_done(SpoolRetention::WhenDone, &spool, &q, &j).unwrap(),
            1
        );
        assert!(spool.join("1.1/1.2.1/late.dcm").exists());
        assert!(!spool.join("1.1/1.2.1/old.dcm").exists());
    }

    #[test]
    fn when_done_keeps_a_series_without_job_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let q = SqliteQueue::open(dir.path()).unwrap();
        // 1.2.1: no job (e.g. refused for too few slices, the rest still to come); 1.2.2: a done
        // job whose late instance stays (when-done deletes per job, not by sweeping).
        spool_file(&spool, "1.1", "1.2.1", "part.dcm");
        spool_file(&spool, "1.1", "1.2.2", "late.dcm");
        let done = q.enqueue(&job("1.2.2")).unwrap();
        let _ = q.claim(0).unwrap();
        q.processed(done, dir.path(), &serde_json::json!({}))
            .unwrap();
        let when_done = SpoolRetention::WhenDone;
        let soon = SystemTime::now() + NO_JOB_GRACE / 2;
        assert_eq!(sweep(when_done, &spool, &q, soon).unwrap(), (0, 0));
        assert!(spool.join("1.1/1.2.1/part.dcm").exists());
        let later = SystemTime::now() + NO_JOB_GRACE + Duration::from_secs(60);
        assert_eq!(sweep(when_done, &spool, &q, later).unwrap(), (1, 1));
        assert!(!spool.join("1.1/1.2.1").exists());
        assert!(spool.join("1.1/1.2.2/late.dcm").exists());
    }
}
