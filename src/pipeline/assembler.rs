//! Series assembly and routing: stored-instance notifications from the spool
//! ([`super::spool::StoredInstance`]) are grouped by (StudyInstanceUID, SeriesInstanceUID) across
//! associations; a series is complete when none of its instances arrived for
//! `pipeline.quiet_period`, or `pipeline.max_wait` after its first one. A complete series is
//! scanned from its spool folder ([`crate::dicom::series::scan_files`]) and matched against the
//! `[[route]]` rules in order: the first match makes a job ([`super::queue::NewJob`]); no match
//! makes no job and a logged reason (localizers, dose pages, other modalities).
//!
//! Late instances (arriving after the series was closed) follow `pipeline.late_instances`
//! ([`LatePolicy`]): `rerun` opens the series again, and after a new quiet period the whole spool
//! folder (old and new instances) becomes a new job with the next version; `report` logs a warning
//! and makes nothing. A job's input is fixed when it is made, so instances are never mixed into a
//! job that has started.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::queue::{NewJob, PipelineSpec};
use super::spool::StoredInstance;
use crate::config::{Config, LatePolicy, RouteConfig};
use crate::dicom::series::{scan_files, SeriesInfo};

/// Key of a series: (StudyInstanceUID, SeriesInstanceUID).
pub type SeriesKey = (String, String);

/// A series whose quiet period (or max wait) has passed.
#[derive(Clone, Debug, PartialEq)]
pub struct CompleteSeries {
    /// StudyInstanceUID (0020,000D).
    pub study_uid: String,
    /// SeriesInstanceUID (0020,000E).
    pub series_uid: String,
    /// Calling AE title of the last association that sent an instance of it.
    pub calling_ae: String,
    /// Instances notified since the series was (re)opened.
    pub instances: usize,
    /// Whether it was reopened by late instances (a re-run).
    pub rerun: bool,
    /// Wall-clock time of its last instance.
    pub last_received: SystemTime,
}

struct Pending {
    calling_ae: String,
    sop_instances: HashSet<String>,
    first: Instant,
    last: Instant,
    last_received: SystemTime,
    rerun: bool,
}

impl Pending {
    /// A series found in the spool at start-up: its calling AE title is not known any more.
    fn restored(now: Instant, rerun: bool) -> Pending {
        Pending {
            calling_ae: String::new(),
            sop_instances: HashSet::new(),
            first: now,
            last: now,
            last_received: SystemTime::now(),
            rerun,
        }
    }
}

/// Groups notifications into series and decides when each is complete. Pure state: time is
/// passed in, so tests drive it without sleeping.
pub struct Assembler {
    quiet_period: Duration,
    max_wait: Duration,
    late: LatePolicy,
    pending: HashMap<SeriesKey, Pending>,
    closed: HashSet<SeriesKey>,
}

impl Assembler {
    /// An assembler with the `[pipeline]` settings of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            quiet_period: config.pipeline.quiet_period,
            max_wait: config.pipeline.max_wait,
            late: config.pipeline.late_instances,
            pending: HashMap::new(),
            closed: HashSet::new(),
        }
    }

    /// Marks a series as already made into a job (e.g. found in the queue at start-up), so its
    /// instances count as late.
    pub fn mark_closed(&mut self, key: SeriesKey) {
        self.closed.insert(key);
    }

    /// Reopens a series found in the spool at start-up without a job (the process stopped before
    /// its quiet period ended, e.g. kill -9): it completes one quiet period after `now`. Its
    /// calling AE title is not known any more (empty), so routes that filter on the calling AE
    /// do not match it.
    pub fn restore(&mut self, key: SeriesKey, now: Instant) {
        if self.closed.contains(&key) {
            return;
        }
        self.pending
            .entry(key)
            .or_insert_with(|| Pending::restored(now, false));
    }

    /// Re-opens a processed series found in the spool at start-up with instances newer than its
    /// last job (they arrived after it was made, and the process stopped before their re-run was
    /// recorded): it completes, as a re-run, one quiet period after `now`. Does nothing under
    /// `late_instances = report`.
    pub fn restore_late(&mut self, key: SeriesKey, now: Instant) {
        if self.late == LatePolicy::Report {
            return;
        }
        self.pending
            .entry(key)
            .or_insert_with(|| Pending::restored(now, true));
    }

    /// Takes one notification received at `now`. A discarded duplicate (same SOP Instance UID,
    /// other content: the spool kept the first copy) changes nothing in the spool, so it neither
    /// re-opens a processed series nor prolongs a pending one.
    pub fn on_instance(&mut self, inst: &StoredInstance, now: Instant) {
        if inst.outcome == crate::pipeline::spool::Outcome::DuplicateDiffering {
            return;
        }
        let key = (inst.study_uid.clone(), inst.series_uid.clone());
        let rerun = self.closed.contains(&key);
        if rerun && !self.pending.contains_key(&key) && self.late == LatePolicy::Report {
            warn!(study = %key.0, series = %key.1, sop_instance = %inst.sop_instance_uid,
                calling_ae = %inst.calling_ae,
                "late instance of a series already processed: kept in the spool, no new job (late_instances = report)");
            return;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            calling_ae: inst.calling_ae.clone(),
            sop_instances: HashSet::new(),
            first: now,
            last: now,
            last_received: inst.received_at,
            rerun,
        });
        if rerun && p.sop_instances.is_empty() {
            info!(series = %inst.series_uid, "late instance: the series will be processed again as a new job version");
        }
        p.sop_instances.insert(inst.sop_instance_uid.clone());
        p.calling_ae = inst.calling_ae.clone();
        p.last = now;
        p.last_received = inst.received_at;
    }

    /// Series complete at `now` (quiet period or max wait passed); they are closed.
    pub fn due(&mut self, now: Instant) -> Vec<CompleteSeries> {
        let ready: Vec<SeriesKey> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                now.duration_since(p.last) >= self.quiet_period
                    || now.duration_since(p.first) >= self.max_wait
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in ready {
            if let Some(p) = self.pending.remove(&key) {
                self.closed.insert(key.clone());
                out.push(CompleteSeries {
                    study_uid: key.0,
                    series_uid: key.1,
                    calling_ae: p.calling_ae,
                    instances: p.sop_instances.len(),
                    rerun: p.rerun,
                    last_received: p.last_received,
                });
            }
        }
        out
    }

    /// When the next pending series becomes due (its quiet period or max wait ends); `None`
    /// when nothing is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| (p.last + self.quiet_period).min(p.first + self.max_wait))
            .min()
    }

    /// Series still waiting for their quiet period.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// (StudyInstanceUID, SeriesInstanceUID) of every series folder in the spool
/// (`spool_root/<Study>/<Series>/`; `tmp/` left out).
pub fn spooled_series(spool_root: &Path) -> Vec<SeriesKey> {
    let dirs = |p: &Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for study in dirs(spool_root).into_iter().filter(|s| s != "tmp") {
        for series in dirs(&spool_root.join(&study)) {
            out.push((study.clone(), series));
        }
    }
    out.sort();
    out
}

/// Outcome of routing a complete series.
#[derive(Debug)]
pub enum Routed {
    /// A route matched: the job to enqueue.
    Job(Box<NewJob>),
    /// No job, with the reason (logged by the caller).
    NoJob(String),
}

/// Files of a series' spool folder `spool_root/<Study>/<Series>/` (`<SOP Instance UID>.dcm`;
/// hidden files are left out), sorted.
pub fn series_files(spool_root: &Path, study_uid: &str, series_uid: &str) -> Vec<PathBuf> {
    let dir = spool_root.join(study_uid).join(series_uid);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Scans the spool folder of `series` and matches it against `config.route` (blocking: reads
/// every file's header). The largest acquisition of the series decides the attributes and the
/// slice count.
pub fn route_series(config: &Config, spool_root: &Path, series: &CompleteSeries) -> Routed {
    let files = series_files(spool_root, &series.study_uid, &series.series_uid);
    let scan = scan_files(&files);
    let Some(group) = scan.groups.iter().max_by_key(|g| g.instances.len()) else {
        let mut reasons: Vec<String> = scan.skipped.iter().map(|s| s.reason.to_string()).collect();
        reasons.sort();
        reasons.dedup();
        return Routed::NoJob(format!(
            "no CT slices in {} file(s): {}",
            files.len(),
            reasons.join("; ")
        ));
    };
    let slices: usize = group.instances.iter().map(|i| i.frames.len()).sum();
    let Some(info) = group.instances.first().map(|i| &i.info) else {
        return Routed::NoJob("empty acquisition".to_owned());
    };
    let mut mismatches = Vec::new();
    for route in &config.route {
        match route_mismatch(
            route,
            info,
            &config.node.ae_title,
            &series.calling_ae,
            slices,
        ) {
            None => {
                let destinations = config
                    .destination
                    .iter()
                    .filter(|d| route.destinations.contains(&d.name))
                    .cloned()
                    .collect();
                return Routed::Job(Box::new(NewJob {
                    study_uid: series.study_uid.clone(),
                    series_uid: series.series_uid.clone(),
                    route: route.name.clone(),
                    pipeline: PipelineSpec::of(route),
                    destinations,
                    calling_ae: series.calling_ae.clone(),
                    slices,
                }));
            }
            Some(why) => mismatches.push(format!("route {:?}: {why}", route.name)),
        }
    }
    if mismatches.is_empty() {
        mismatches.push("no [[route]] configured".to_owned());
    }
    Routed::NoJob(mismatches.join("; "))
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| same(v, value))
}

/// Why `route` does not match a series with attributes `info` and `slices` slices received from
/// `calling_ae` calling us `called_ae`; `None` when it matches. An invalid SeriesDescription regex
/// (refused by [`Config::validate`] already) never matches.
pub fn route_mismatch(
    route: &RouteConfig,
    info: &SeriesInfo,
    called_ae: &str,
    calling_ae: &str,
    slices: usize,
) -> Option<String> {
    if !listed(&route.called_ae_titles, called_ae) {
        return Some(format!("called AE {called_ae:?} not listed"));
    }
    if !listed(&route.calling_ae_titles, calling_ae) {
        return Some(format!("calling AE {calling_ae:?} not listed"));
    }
    if !listed(&route.modalities, &info.modality) {
        return Some(format!("Modality {:?} not listed", info.modality));
    }
    if !listed(&route.body_parts, &info.body_part_examined) {
        return Some(format!(
            "BodyPartExamined {:?} not listed",
            info.body_part_examined
        ));
    }
    let has = |v: &String| info.image_type.iter().any(|t| same(t, v));
    if let Some(v) = route.image_type_all.iter().find(|v| !has(v)) {
        return Some(format!("ImageType {:?} lacks {v}", info.image_type));
    }
    if let Some(v) = route.image_type_none.iter().find(|v| has(v)) {
        return Some(format!("ImageType {:?} contains {v}", info.image_type));
    }
    if let Some(re) = &route.series_description {
        let ok = regex::Regex::new(re).is_ok_and(|r| r.is_match(&info.series_description));
        if !ok {
            return Some(format!(
                "SeriesDescription {:?} does not match {re:?}",
                info.series_description
            ));
        }
    }
    let thickness = info.slice_thickness;
    if let Some(min) = route.min_slice_thickness_mm {
        if thickness.is_none_or(|t| t < min) {
            return Some(format!("SliceThickness {thickness:?} below {min} mm"));
        }
    }
    if let Some(max) = route.max_slice_thickness_mm {
        if thickness.is_none_or(|t| t > max) {
            return Some(format!("SliceThickness {thickness:?} above {max} mm"));
        }
    }
    if slices < route.min_slices {
        return Some(format!("{slices} slices, fewer than {}", route.min_slices));
    }
    if let Some(max) = route.max_slices {
        if slices > max {
            return Some(format!("{slices} slices, more than {max}"));
        }
    }
    None
}

#[cfg(test)]
#[path = "assembler_tests.rs"]
mod tests;
