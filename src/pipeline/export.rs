//! Export of a job's results: C-STORE of `seg.dcm` (Segmentation Storage) and `skull-stl.dcm`
//! (Encapsulated STL Storage) to each destination of its route ([`crate::net::scu`]), and the
//! decision that follows (PS3.4 B.2.3 statuses):
//! * every instance stored (success or warning) at every destination -> done;
//! * a permanent failure (association rejected permanently, SOP class not accepted, a failure
//!   status other than out-of-resources) -> dead-letter at once;
//! * otherwise a transient failure -> another attempt after `export.backoff`, doubled per
//!   attempt up to `export.backoff_max`, until `export.max_attempts`, then dead-letter.
//!
//! Destinations that received everything in an earlier attempt are not sent to again.

use std::path::PathBuf;

use super::queue::{ExportRecord, Job};
use super::worker::{SEG_FILE, STL_OBJECT_FILE};
use crate::config::ExportConfig;
use crate::net::scu::{self, status_kind, StatusKind, StoreTarget};

/// What one export attempt decided; fed to [`super::queue::JobQueue::exported`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExportDecision {
    /// Per destination and instance, this attempt (or the earlier one for destinations done before).
    pub records: Vec<ExportRecord>,
    /// Summary of the failures; `None` when everything was delivered.
    pub error: Option<String>,
    /// When to try again (Unix ms); `None` for done or dead-letter.
    pub retry_at_ms: Option<i64>,
}

/// Wait before attempt `attempt + 1` (1-based `attempt` just made): backoff × 2^(attempt−1),
/// at most `backoff_max`.
pub fn backoff_ms(export: &ExportConfig, attempt: i64) -> i64 {
    let base = export.backoff.as_millis() as f64;
    let factor = 2f64.powi((attempt.max(1) - 1).min(30) as i32);
    (base * factor).min(export.backoff_max.as_millis() as f64) as i64
}

/// Sends the results of `job` (processed, with `result_dir`) to its destinations as
/// `calling_ae`; `now_ms` is the time of this attempt (attempt number `job.export_attempts`).
/// Never fails: every problem becomes part of the decision.
pub fn export_job(
    job: &Job,
    export: &ExportConfig,
    calling_ae: &str,
    now_ms: i64,
) -> ExportDecision {
    let mut records = Vec::new();
    let mut failures = Vec::new();
    let mut permanent = false;
    let dir = job.result_dir.as_deref().map(PathBuf::from);
    let files: Vec<PathBuf> = match &dir {
        Some(d) => vec![d.join(SEG_FILE), d.join(STL_OBJECT_FILE)],
        None => Vec::new(),
    };
    let outgoing: Result<Vec<scu::Outgoing>, scu::ScuError> =
        files.iter().map(|f| scu::outgoing(f)).collect();
    let outgoing = match (dir.as_deref(), outgoing) {
        (Some(_), Ok(o)) => o,
        (None, _) => return dead(records, "job has no results to export".to_owned()),
        (Some(d), Err(e)) => return dead(records, format!("{}: {e}", d.display())),
    };
    for dest in &job.destinations {
        let before: Vec<&ExportRecord> = job
            .exports
            .iter()
            .filter(|r| r.destination == dest.name)
            .collect();
        let done_before = outgoing.iter().all(|o| {
            before
                .iter()
                .any(|r| r.delivered && r.sop_instance_uid == o.sop_instance_uid)
        });
        if done_before {
            records.extend(before.into_iter().cloned());
            continue;
        }
        let target = StoreTarget {
            called_ae: dest.ae_title.clone(),
            host: dest.host.clone(),
            port: dest.port,
            calling_ae: calling_ae.to_owned(),
            timeout: export.timeout,
        };
        match scu::store(&target, &outgoing) {
            Ok(statuses) => {
                for s in statuses {
                    let kind = status_kind(s.status);
                    let delivered = matches!(kind, StatusKind::Success | StatusKind::Warning);
                    let detail = s.comment.clone().unwrap_or_default();
                    if !delivered {
                        permanent |= kind == StatusKind::Permanent;
                        failures.push(format!(
                            "{}: {} status {:04X}H {detail}",
                            dest.name, s.sop_instance_uid, s.status
                        ));
                    }
                    tracing::info!(job = job.id, destination = %dest.name, sop_instance = %s.sop_instance_uid,
                        status = format!("{:04X}H", s.status), delivered, "C-STORE response");
                    records.push(ExportRecord {
                        destination: dest.name.clone(),
                        sop_instance_uid: s.sop_instance_uid,
                        status: Some(s.status),
                        delivered,
                        detail,
                    });
                }
            }
            Err(e) => {
                permanent |= !e.is_transient();
                tracing::warn!(job = job.id, destination = %dest.name, error = %e, transient = e.is_transient(), "export failed");
                failures.push(format!("{}: {e}", dest.name));
                records.extend(outgoing.iter().map(|o| ExportRecord {
                    destination: dest.name.clone(),
                    sop_instance_uid: o.sop_instance_uid.clone(),
                    status: None,
                    delivered: false,
                    detail: e.to_string(),
                }));
            }
        }
    }
    if failures.is_empty() {
        return ExportDecision {
            records,
            error: None,
            retry_at_ms: None,
        };
    }
    let error = failures.join("; ");
    if permanent {
        return dead(records, format!("permanent failure: {error}"));
    }
    if job.export_attempts >= i64::from(export.max_attempts) {
        return dead(
            records,
            format!("gave up after {} attempts: {error}", job.export_attempts),
        );
    }
    ExportDecision {
        records,
        error: Some(error),
        retry_at_ms: Some(now_ms + backoff_ms(export, job.export_attempts)),
    }
}

fn dead(records: Vec<ExportRecord>, error: String) -> ExportDecision {
    ExportDecision {
        records,
        error: Some(error),
        retry_at_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let e = ExportConfig {
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(35),
            ..ExportConfig::default()
        };
        assert_eq!(backoff_ms(&e, 1), 10_000);
        assert_eq!(backoff_ms(&e, 2), 20_000);
        assert_eq!(backoff_ms(&e, 3), 35_000);
        assert_eq!(backoff_ms(&e, 60), 35_000);
    }
}
