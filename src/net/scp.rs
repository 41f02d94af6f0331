//! The listener of `osteon serve`: accepts TCP connections, decides on each A-ASSOCIATE-RQ
//! (PS3.8 9.3.2-9.3.4) and runs one task per association ([`super::association`]).
//!
//! Acceptance policy (docs/conformance.md):
//! * more than `max_associations` at once, or the sink refusing (disk watermark): A-ASSOCIATE-RJ
//!   transient, source service-provider (presentation), reason local-limit-exceeded;
//! * called AE title not ours (per [`AeCase`]): RJ permanent, service-user, "called AE title not
//!   recognized";
//! * calling AE title not on the allow-list, or the peer host not on the host list: RJ permanent,
//!   service-user, "calling AE title not recognized"; both logged with AE titles and IP address;
//! * no complete A-ASSOCIATE-RQ within the ARTIM timeout: connection closed.
//!
//! Shutdown: when the `shutdown` future of [`serve`] completes, no new connection is accepted and
//! [`serve`] returns once every association in flight has ended (released, aborted or timed out).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::association::Association;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, Pdu, UserIdentity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, info_span, warn, Instrument};

use super::association;
use super::sop_classes;
use super::store::InstanceSink;
use crate::config::{AeCase, Config};

/// Errors of the listener itself (a single association's failure is logged, never returned).
#[derive(Debug, thiserror::Error)]
pub enum ScpError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the SCP needs from the configuration ([`ScpOptions::from_config`]).
#[derive(Clone, Debug)]
pub struct ScpOptions {
    /// Our AE title.
    pub ae_title: String,
    /// Largest PDU accepted (bytes of PDU body, as dicom-ul takes it: never 0).
    pub max_pdu: u32,
    /// Concurrent associations.
    pub max_associations: usize,
    /// Idle timeout of an established association.
    pub association_timeout: Duration,
    /// ARTIM timeout for the A-ASSOCIATE-RQ.
    pub artim_timeout: Duration,
    /// Called AE comparison.
    pub called_ae_case: AeCase,
    /// Allowed calling AE titles (empty = any).
    pub allowed_calling: Vec<String>,
    /// Allowed peer hosts (empty = any).
    pub allowed_hosts: Vec<IpAddr>,
    /// Accept (and discard) storage SOP classes other than CT.
    pub accept_other_storage: bool,
}

impl ScpOptions {
    /// Takes the `[node]` values and `storage.accept_other_storage`.
    pub fn from_config(config: &Config) -> Self {
        let n = &config.node;
        Self {
            ae_title: n.ae_title.trim().to_owned(),
            max_pdu: config.max_pdu_effective(),
            max_associations: n.max_associations,
            association_timeout: n.association_timeout,
            artim_timeout: n.artim_timeout,
            called_ae_case: n.called_ae_case,
            allowed_calling: n
                .allow
                .calling_ae_titles
                .iter()
                .map(|a| a.trim().to_owned())
                .collect(),
            allowed_hosts: n.allow.hosts.iter().map(|ip| ip.to_canonical()).collect(),
            accept_other_storage: config.storage.accept_other_storage,
        }
    }

    /// Whether instances of `sop_class_uid` go to the sink (the CT classes) rather than being
    /// discarded.
    pub fn stores(sop_class_uid: &str) -> bool {
        sop_classes::STORED.contains(&sop_class_uid)
    }
}

/// Binds the listening socket of `config` (`node.bind`:`node.port`).
///
/// Errors: [`ScpError::Bind`] (address in use, no permission).
pub async fn bind(config: &Config) -> Result<TcpListener, ScpError> {
    let addr = SocketAddr::new(config.node.bind, config.node.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ScpError::Bind { addr, source })
}

/// Accepts associations on `listener` until `shutdown` completes, then waits for the associations
/// in flight to end. Instances go to `sink`.
pub async fn serve(
    listener: TcpListener,
    options: ScpOptions,
    sink: Arc<dyn InstanceSink>,
    shutdown: impl Future<Output = ()>,
) {
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.max_associations));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, ae_title = %options.ae_title, "listening");
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let permit = permits.clone().try_acquire_owned().ok();
                    let span = info_span!("association", %peer, calling_ae = tracing::field::Empty);
                    tasks.spawn(
                        connection(socket, peer, options.clone(), sink.clone(), permit)
                            .instrument(span),
                    );
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => log_join(done),
        }
    }
    drop(listener);
    info!(
        in_flight = tasks.len(),
        "no longer accepting; waiting for associations in flight"
    );
    while let Some(done) = tasks.join_next().await {
        log_join(done);
    }
    info!("all associations ended");
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        warn!(error = %e, "association task failed");
    }
}

/// One TCP connection: the checks before negotiation, negotiation, then the association loop.
async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    options: Arc<ScpOptions>,
    sink: Arc<dyn InstanceSink>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = socket.set_nodelay(true);
    if permit.is_none() {
        warn!(
            max_associations = options.max_associations,
            "association limit reached: rejecting (transient, local limit exceeded)"
        );
        reject_transient(&mut socket, &options).await;
        return;
    }
    if let Err(reason) = sink.accepting() {
        warn!(%reason, "not accepting: rejecting (transient, local limit exceeded)");
        reject_transient(&mut socket, &options).await;
        return;
    }
    let access = PeerAccess {
        options: &options,
        peer_ip: peer.ip().to_canonical(),
    };
    let mut negotiation = ServerAssociationOptions::new()
        .ae_access_control(access)
        .ae_title(options.ae_title.clone())
        .max_pdu_length(options.max_pdu)
        .read_timeout(options.association_timeout)
        .write_timeout(options.association_timeout)
        .with_abstract_syntax(uids::VERIFICATION);
    for class in sop_classes::STORED {
        negotiation = negotiation.with_abstract_syntax(class);
    }
    if options.accept_other_storage {
        for class in sop_classes::OTHER_STORAGE {
            negotiation = negotiation.with_abstract_syntax(*class);
        }
    }
    for ts in super::TRANSFER_SYNTAXES {
        negotiation = negotiation.with_transfer_syntax(ts);
    }
    let established =
        tokio::time::timeout(options.artim_timeout, negotiation.establish_async(socket)).await;
    let assoc = match established {
        Err(_) => {
            warn!(artim_timeout = ?options.artim_timeout, "no A-ASSOCIATE-RQ before the ARTIM timeout; closed");
            return;
        }
        Ok(Err(dicom_ul::association::Error::Rejected { association_rj, .. })) => {
            info!(result = ?association_rj.result, source = ?association_rj.source, "association rejected");
            return;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "association negotiation failed");
            return;
        }
        Ok(Ok(assoc)) => assoc,
    };
    tracing::Span::current().record("calling_ae", tracing::field::display(assoc.peer_ae_title()));
    association::run(assoc, peer, &options, sink.as_ref()).await;
    drop(permit);
}

/// Reads the A-ASSOCIATE-RQ (within the ARTIM timeout, at most one PDU of our maximum length) and
/// answers A-ASSOCIATE-RJ transient / service-provider (presentation) / local-limit-exceeded
/// (PS3.8 9.3.4), so the peer retries later.
async fn reject_transient(socket: &mut TcpStream, options: &ScpOptions) {
    let read_rq = async {
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match dicom_ul::read_pdu(&buf[..], options.max_pdu, true) {
                Ok(Some(pdu)) => return Some(pdu),
                Ok(None) => {}
                Err(_) => return None,
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let Ok(Some(Pdu::AssociationRQ(rq))) =
        tokio::time::timeout(options.artim_timeout, read_rq).await
    else {
        return;
    };
    warn!(calling_ae = %rq.calling_ae_title, called_ae = %rq.called_ae_title, "A-ASSOCIATE-RJ sent (transient, local limit exceeded)");
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::with_capacity(16);
    if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
        let _ = tokio::time::timeout(options.artim_timeout, socket.write_all(&out)).await;
        let _ = socket.shutdown().await;
    }
}

/// AE title and host checks of one connection (dicom-ul calls it with the AE titles of the
/// A-ASSOCIATE-RQ, already stripped of padding spaces).
struct PeerAccess<'a> {
    options: &'a ScpOptions,
    peer_ip: IpAddr,
}

impl AccessControl for PeerAccess<'_> {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let o = self.options;
        let called = called_ae_title.trim();
        let called_ok = match o.called_ae_case {
            AeCase::Exact => called == this_ae_title.trim(),
            AeCase::IgnoreCase => called.eq_ignore_ascii_case(this_ae_title.trim()),
        };
        let calling = calling_ae_title.trim();
        let refusal = if !called_ok {
            Some((
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
                "called AE title is not ours",
            ))
        } else if !o.allowed_hosts.is_empty() && !o.allowed_hosts.contains(&self.peer_ip) {
            Some((
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                "peer host not on node.allow.hosts",
            ))
        } else if !o.allowed_calling.is_empty() && !o.allowed_calling.iter().any(|a| a == calling) {
            Some((
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                "calling AE title not on node.allow.calling_ae_titles",
            ))
        } else {
            None
        };
        match refusal {
            None => Ok(()),
            Some((reason, why)) => {
                warn!(
                    calling_ae = %calling,
                    called_ae = %called,
                    peer_ip = %self.peer_ip,
                    %reason,
                    why,
                    "association rejected"
                );
                Err(reason)
            }
        }
    }
}
