//! `osteon serve`: the node's wiring. Today: the spool ([`super::spool`]) behind the SCP
//! ([`crate::net::scp`]), with the stored-instance notifications logged; the series assembler,
//! the job queue and export attach here (design.md, data flow).

use std::sync::Arc;

use tracing::{debug, info};

use super::spool::{Spool, SpoolError, StoredInstance};
use crate::config::Config;
use crate::net::scp::{self, ScpError, ScpOptions};

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

async fn serve(config: &Config) -> Result<(), ServeError> {
    let (spool, mut events) = Spool::open(&config.storage.data_dir, config.storage.min_free_bytes)?;
    info!(spool = %spool.root().display(), "spool ready");
    let listener = scp::bind(config).await?;
    // Placeholder consumer until the series assembler takes over this receiver.
    let consumer = tokio::spawn(async move {
        while let Some(StoredInstance {
            series_uid,
            sop_instance_uid,
            path,
            calling_ae,
            outcome,
            ..
        }) = events.recv().await
        {
            debug!(%series_uid, %sop_instance_uid, path = %path.display(), %calling_ae, ?outcome, "instance spooled");
        }
    });
    scp::serve(
        listener,
        ScpOptions::from_config(config),
        Arc::new(spool),
        shutdown_signal(),
    )
    .await;
    consumer.abort();
    info!("node stopped");
    Ok(())
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
