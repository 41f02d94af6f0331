//! `osteon serve`: the node's wiring (design.md, data flow). The SCP ([`crate::net::scp`]) stores
//! into the spool ([`super::spool`]); its notifications feed the series assembler
//! ([`super::assembler`]), which enqueues routed series in the job queue ([`super::queue`],
//! `data_dir/osteon.db`); `pipeline.workers` worker threads ([`jobs`]) process jobs into
//! `data_dir/results/<job id>/` and export them ([`super::export`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::assembler::{route_series, spooled_series, Assembler, Routed};
use super::queue::{JobQueue, QueueError, SqliteQueue};
use super::spool::{Spool, SpoolError, StoredInstance};
use crate::config::Config;
use crate::net::scp::{self, ScpError, ScpOptions};

mod jobs;
pub use jobs::{jobs_command, JobsCommand};

/// Errors that stop the node before it serves.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The spool folder is unusable.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The listening socket could not be bound.
    #[error(transparent)]
    Scp(#[from] ScpError),
    /// The job database is unusable.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The default segmenter (the CNN model when its file exists) cannot be loaded: refused at
    /// start-up rather than failing every job.
    #[error("segmenter: {0}")]
    Segmenter(#[from] super::offline::OfflineError),
}

/// Runs the node until SIGTERM or Ctrl-C, then stops accepting and returns once the associations
/// in flight have ended. Blocks the calling thread (builds its own multi-threaded runtime).
///
/// Errors: [`ServeError`] when the runtime, the spool or the listener cannot be set up.
pub fn run(config: &Config) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("osteon-node")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(serve(config))
}

/// The segmenter a route's `segmenter = "default"` runs on this node: the CNN (a thin/thick pair
/// when both files are there) of `[pipeline] model_dir`, else the threshold baseline. `osteon
/// serve` checks it at start, `osteon config check` names it.
///
/// # Errors
/// [`super::offline::OfflineError`] when a model in the folder cannot be loaded, or a thick model
/// lies there without its thin one.
pub fn default_segmenter(
    config: &Config,
) -> Result<Box<dyn crate::segment::Segmenter>, super::offline::OfflineError> {
    let p = &config.pipeline;
    super::offline::segmenter_for(&super::offline::OfflineOptions {
        segmenter: super::offline::SegmenterChoice::Default,
        threshold_hu: crate::segment::threshold::DEFAULT_THRESHOLD_HU,
        model_dir: p.model_dir.clone(),
        model: None,
        thick_model: None,
        thick_from_mm: p.thick_from_mm,
        mesh: crate::mesh::MeshOptions::default(),
        progress: false,
        post_processing: crate::segment::PostMode::default(),
    })
}

/// A note when `[pipeline] thick_from_mm` is set away from its default but `model_dir` holds no
/// thick model, so the split is unused (the node still starts: the model may be installed later;
/// `osteon serve` logs it, `osteon config check` prints it).
pub fn unused_split_note(config: &Config) -> Option<String> {
    let p = &config.pipeline;
    let thick = p.model_dir.join(super::offline::THICK_MODEL_FILE);
    (p.thick_from_mm != crate::segment::pair::THICK_FROM_MM && !thick.exists()).then(|| {
        format!(
            "pipeline.thick_from_mm = {} is unused: {} does not exist (no thin/thick pair)",
            p.thick_from_mm,
            thick.display()
        )
    })
}

async fn serve(config: &Config) -> Result<(), ServeError> {
    // Fail fast on a model that cannot be loaded (jobs load it again; this only checks it), and
    // say which segmenter a route's "default" means on this node.
    let id = default_segmenter(config)?.identity();
    info!(
        model_dir = %config.pipeline.model_dir.display(),
        algorithm = %id.name,
        version = %id.version,
        "default segmenter"
    );
    if let Some(note) = unused_split_note(config) {
        tracing::warn!("{note}");
    }
    // The marching-tetrahedra case table is derived once per process (~0.1 s of CPU): now,
    // rather than inside the first job.
    crate::mesh::cube_table::cube_table();
    let (spool, events) = Spool::open(&config.storage.data_dir, config.storage.min_free_bytes)?;
    info!(spool = %spool.root().display(), "spool ready");
    if config.route.iter().all(|r| r.destinations.is_empty()) {
        tracing::warn!(
            results = %config.storage.data_dir.join(jobs::RESULTS_DIR).display(),
            "no route names a destination: results are kept in the results folder and sent nowhere"
        );
    }
    let queue: Arc<dyn JobQueue> = Arc::new(SqliteQueue::open(&config.storage.data_dir)?);
    let resumed = queue.resume(super::queue::now_ms())?;
    if resumed > 0 {
        info!(resumed, "unfinished jobs resumed");
    }
    let config = Arc::new(config.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let qa = match super::qa::QaStore::open(&config.storage.data_dir) {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            error!(error = %e, "QA table unusable: jobs run without QA records");
            None
        }
    };
    let workers = jobs::start(config.clone(), queue.clone(), qa, stop.clone());
    let listener = scp::bind(&config).await?;
    if config.export.echo_at_start {
        tokio::task::spawn_blocking({
            let config = config.clone();
            move || echo_destinations(&config)
        });
    }
    let sweeper = tokio::spawn(sweep_spool(
        config.clone(),
        queue.clone(),
        spool.root().to_owned(),
    ));
    let assembler = tokio::spawn(assemble(
        config.clone(),
        queue.clone(),
        spool.root().to_owned(),
        events,
    ));
    scp::serve(
        listener,
        ScpOptions::from_config(&config),
        Arc::new(spool),
        shutdown_signal(),
    )
    .await;
    assembler.abort();
    sweeper.abort();
    stop.store(true, Ordering::SeqCst);
    // Workers finish the step in hand; an interrupted job resumes at the next start.
    drop(workers);
    info!("node stopped");
    Ok(())
}

/// The assembler task: takes spool notifications, closes series after their quiet period and
/// routes them (blocking scan on the blocking pool) into the queue.
async fn assemble(
    config: Arc<Config>,
    queue: Arc<dyn JobQueue>,
    spool_root: std::path::PathBuf,
    mut events: tokio::sync::mpsc::UnboundedReceiver<StoredInstance>,
) {
    let mut assembler = Assembler::new(&config);
    // When each series' newest job was made (Unix ms).
    let mut last_job: std::collections::HashMap<(String, String), i64> = Default::default();
    match queue.list() {
        Ok(jobs) => {
            for j in jobs {
                let key = (j.study_uid, j.series_uid);
                let t = last_job.entry(key.clone()).or_insert(j.created_ms);
                *t = (*t).max(j.created_ms);
                assembler.mark_closed(key);
            }
        }
        Err(e) => error!(error = %e, "cannot list jobs: late instances of old series count as new"),
    }
    let now = Instant::now();
    for key in spooled_series(&spool_root) {
        match last_job.get(&key) {
            None => assembler.restore(key, now),
            Some(&made) => {
                let newest =
                    newest_file_ms(&super::assembler::series_files(&spool_root, &key.0, &key.1));
                if newest.is_some_and(|t| t > made) {
                    info!(study = %key.0, series = %key.1,
                        "instances newer than the series' last job found at start-up: re-run after a quiet period");
                    assembler.restore_late(key, now);
                }
            }
        }
    }
    if assembler.pending() > 0 {
        info!(
            series = assembler.pending(),
            "spooled series without a job: they complete after a quiet period"
        );
    }
    // A series closes when its quiet period (or max wait) ends: the task sleeps until the next
    // deadline, or until the next notification moves it.
    loop {
        let next = assembler
            .next_due()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            event = events.recv() => match event {
                Some(inst) => {
                    debug!(series = %inst.series_uid, sop_instance = %inst.sop_instance_uid,
                        calling_ae = %inst.calling_ae, outcome = ?inst.outcome, "instance spooled");
                    assembler.on_instance(&inst, Instant::now());
                }
                None => return,
            },
            _ = tokio::time::sleep_until(next) => {
                for series in assembler.due(Instant::now()) {
                    let (config, queue, root) = (config.clone(), queue.clone(), spool_root.clone());
                    let routed = tokio::task::spawn_blocking(move || {
                        let _span = tracing::info_span!("series", study = %series.study_uid,
                            series = %series.series_uid).entered();
                        let routed = route_series(&config, &root, &series);
                        let id = match &routed {
                            Routed::Job(job) => Some(queue.enqueue(job)),
                            Routed::NoJob(_) => None,
                        };
                        (series, routed, id)
                    })
                    .await;
                    match routed {
                        Ok((series, Routed::Job(job), Some(Ok(id)))) => info!(job = id,
                            study = %series.study_uid, series = %series.series_uid, route = %job.route,
                            slices = job.slices, rerun = series.rerun, "series complete: job queued"),
                        Ok((series, Routed::NoJob(reason), _)) => info!(
                            study = %series.study_uid, series = %series.series_uid,
                            instances = series.instances, %reason, "series complete: no job"),
                        Ok((series, _, Some(Err(e)))) => error!(series = %series.series_uid,
                            error = %e, "series complete but the job could not be recorded"),
                        Ok((series, Routed::Job(_), None)) => warn!(series = %series.series_uid, "job not recorded"),
                        Err(e) => error!(error = %e, "routing task failed"),
                    }
                }
            }
        }
    }
}

/// Newest modification time of `files`, Unix ms (`None` when none can be read).
fn newest_file_ms(files: &[std::path::PathBuf]) -> Option<i64> {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .max()
}

/// C-ECHO of every configured destination, logged (never fatal: a PACS that is down at start-up
/// only delays exports, which are retried).
fn echo_destinations(config: &Config) {
    for d in &config.destination {
        let target = crate::net::scu::StoreTarget {
            called_ae: d.ae_title.clone(),
            host: d.host.clone(),
            port: d.port,
            calling_ae: config.node.ae_title.clone(),
            timeout: config.export.timeout,
        };
        match crate::net::scu::echo(&target) {
            Ok(0) => info!(destination = %d.name, ae = %d.ae_title, host = %d.host, port = d.port,
                "destination C-ECHO: success"),
            Ok(status) => warn!(destination = %d.name, ae = %d.ae_title, host = %d.host,
                port = d.port, status = format!("{status:#06x}"), "destination C-ECHO: failure status"),
            Err(e) => warn!(destination = %d.name, error = %e,
                "destination C-ECHO failed (exports will be retried)"),
        }
    }
}

/// Periodic spool retention sweep for a duration policy (and, under `when-done`, for series that
/// made no job; see retention): first after `max_wait + quiet_period` (every series restored from
/// the spool has been routed by then), then every tenth of the retention (of the no-job grace
/// under `when-done`), between 1 min and 1 h.
async fn sweep_spool(
    config: Arc<Config>,
    queue: Arc<dyn JobQueue>,
    spool_root: std::path::PathBuf,
) {
    let keep = match config.storage.spool_retention {
        crate::config::SpoolRetention::Keep => return,
        crate::config::SpoolRetention::WhenDone => super::retention::NO_JOB_GRACE,
        crate::config::SpoolRetention::After(keep) => keep,
    };
    tokio::time::sleep(config.pipeline.max_wait + config.pipeline.quiet_period).await;
    let period = (keep / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    loop {
        let (config, queue, root) = (config.clone(), queue.clone(), spool_root.clone());
        let swept = tokio::task::spawn_blocking(move || {
            super::retention::sweep(
                config.storage.spool_retention,
                &root,
                queue.as_ref(),
                std::time::SystemTime::now(),
            )
        })
        .await;
        if let Ok(Err(e)) = swept {
            warn!(error = %e, "spool retention sweep skipped");
        }
        tokio::time::sleep(period).await;
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("Ctrl-C: shutting down"),
        _ = term => info!("SIGTERM: shutting down"),
    }
}
