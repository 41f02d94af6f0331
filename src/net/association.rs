//! One established association: receive PDUs with `receive()`, reassemble DIMSE messages
//! ([`super::dimse::Reassembler`]), answer C-ECHO, stream C-STORE data sets into the sink, send
//! each C-STORE-RSP after the sink committed the instance.
//!
//! Memory per association: one PDU (at most `node.max_pdu` bytes, held by dicom-ul), one command
//! set, and the sink writer's buffer; data fragments are written as they arrive.
//!
//! Ends: A-RELEASE-RQ (answered with A-RELEASE-RP), A-ABORT, a dropped connection, the idle
//! timeout (we send A-ABORT) or a protocol error (we send A-ABORT). An instance whose data set
//! did not complete is dropped, and the sink's writer removes what it wrote.

use std::net::SocketAddr;
use std::time::Instant;

use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::Association;
use dicom_ul::pdu::{Pdu, PresentationContextResultReason};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::dimse::{self, command_field, CommandSet, Fragment, Reassembler};
use super::echo;
use super::scp::ScpOptions;
use super::store::{status, InstanceSink, InstanceWriter, StoreRequest, StoreStatus};

type Assoc = AsyncServerAssociation<TcpStream>;

/// Where the data set of the C-STORE in progress goes.
enum Target {
    /// Into the sink.
    Sink(Box<dyn InstanceWriter>),
    /// Accepted and discarded (other storage SOP classes).
    Discard,
    /// Consumed and answered with this failure.
    Failed(StoreStatus),
}

/// The C-STORE whose data set is arriving.
struct Pending {
    pc_id: u8,
    message_id: u16,
    sop_class_uid: String,
    sop_instance_uid: String,
    target: Target,
    bytes: u64,
}

/// Counters for the end-of-association log line.
#[derive(Default)]
struct Tally {
    echoes: u32,
    stored: u32,
    discarded: u32,
    failed: u32,
    bytes: u64,
}

/// Why the loop stopped.
enum End {
    Released,
    PeerAborted,
    /// We abort (A-ABORT) for this reason.
    Abort(String),
    /// The connection is gone or unusable.
    Lost(String),
}

/// Runs the association until it ends; never panics on peer input.
pub(crate) async fn run(
    mut assoc: Assoc,
    peer: SocketAddr,
    options: &ScpOptions,
    sink: &dyn InstanceSink,
) {
    let started = Instant::now();
    let accepted: Vec<String> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| format!("{}:{}:{}", pc.id, pc.abstract_syntax, pc.transfer_syntax))
        .collect();
    info!(
        peer_max_pdu = assoc.peer_max_pdu_length(),
        our_max_pdu = assoc.local_max_pdu_length(),
        contexts_accepted = accepted.len(),
        contexts_proposed = assoc.presentation_contexts().len(),
        "association accepted"
    );
    debug!(contexts = ?accepted, "accepted presentation contexts");
    let calling_ae = assoc.peer_ae_title().to_owned();
    let mut tally = Tally::default();
    let mut reassembler = Reassembler::new();
    let mut pending: Option<Pending> = None;

    let end = 'outer: loop {
        let pdu = match assoc.receive().await {
            Ok(pdu) => pdu,
            Err(dicom_ul::association::Error::Timeout { .. }) => {
                break End::Abort(format!(
                    "idle for {:?} (node.association_timeout)",
                    options.association_timeout
                ));
            }
            Err(e) => break End::Lost(e.to_string()),
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    let fragment = match reassembler.push(pdv) {
                        Ok(f) => f,
                        Err(e) => break 'outer End::Abort(e.to_string()),
                    };
                    match fragment {
                        Fragment::Partial => {}
                        Fragment::Command {
                            pc_id,
                            command,
                            has_data,
                        } => {
                            let step = on_command(
                                &mut assoc,
                                &command,
                                pc_id,
                                has_data,
                                &calling_ae,
                                peer,
                                sink,
                                &mut tally,
                            )
                            .await;
                            match step {
                                Ok(p) => pending = p,
                                Err(end) => break 'outer end,
                            }
                        }
                        Fragment::Data { bytes, last } => {
                            let Some(p) = pending.as_mut() else {
                                break 'outer End::Abort("data set without a C-STORE".into());
                            };
                            p.bytes += bytes.len() as u64;
                            if let Target::Sink(w) = &mut p.target {
                                if let Err(s) = w.write(&bytes) {
                                    warn!(sop_instance_uid = %p.sop_instance_uid, code = s.code, comment = ?s.comment, "write failed");
                                    p.target = Target::Failed(s);
                                }
                            }
                            if last {
                                if let Some(p) = pending.take() {
                                    if let Err(end) = finish_store(&mut assoc, p, &mut tally).await
                                    {
                                        break 'outer end;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                if let Err(e) = assoc.send(&Pdu::ReleaseRP).await {
                    break End::Lost(e.to_string());
                }
                break End::Released;
            }
            Pdu::AbortRQ { source } => {
                debug!(?source, "A-ABORT received");
                break End::PeerAborted;
            }
            other => {
                break End::Abort(format!("unexpected PDU {}", other.short_description()));
            }
        }
    };

    if let Some(p) = pending.take() {
        // Dropping the writer removes its partial file.
        warn!(sop_instance_uid = %p.sop_instance_uid, bytes = p.bytes, "instance incomplete at the end of the association: discarded");
        tally.failed += 1;
    }
    let (how, detail) = match &end {
        End::Released => ("released", String::new()),
        End::PeerAborted => ("aborted by peer", String::new()),
        End::Abort(why) => ("aborted by us", why.clone()),
        End::Lost(why) => ("connection lost", why.clone()),
    };
    let summary = |level_warn: bool| {
        if level_warn {
            warn!(
                how,
                detail,
                echoes = tally.echoes,
                stored = tally.stored,
                discarded = tally.discarded,
                failed = tally.failed,
                bytes = tally.bytes,
                seconds = started.elapsed().as_secs_f64(),
                "association ended"
            );
        } else {
            info!(
                how,
                echoes = tally.echoes,
                stored = tally.stored,
                discarded = tally.discarded,
                failed = tally.failed,
                bytes = tally.bytes,
                seconds = started.elapsed().as_secs_f64(),
                "association ended"
            );
        }
    };
    match end {
        End::Released => summary(false),
        End::PeerAborted | End::Lost(_) => summary(true),
        End::Abort(_) => {
            summary(true);
            let _ = assoc.abort().await;
        }
    }
}

/// Handles a complete command; returns the C-STORE whose data set follows, if any.
#[allow(clippy::too_many_arguments)]
async fn on_command(
    assoc: &mut Assoc,
    command: &CommandSet,
    pc_id: u8,
    has_data: bool,
    calling_ae: &str,
    peer: SocketAddr,
    sink: &dyn InstanceSink,
    tally: &mut Tally,
) -> Result<Option<Pending>, End> {
    let Some(pc) = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == pc_id && pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
    else {
        return Err(End::Abort(format!(
            "message on presentation context {pc_id}, which was not accepted"
        )));
    };
    let field = command
        .command_field()
        .map_err(|e| End::Abort(e.to_string()))?;
    match field {
        command_field::C_ECHO_RQ if !has_data => {
            let rsp = echo::respond(command).map_err(|e| End::Abort(e.to_string()))?;
            send_command(assoc, pc_id, &rsp).await?;
            tally.echoes += 1;
            debug!("C-ECHO answered");
            Ok(None)
        }
        command_field::C_STORE_RQ => {
            let message_id = command
                .message_id()
                .map_err(|e| End::Abort(e.to_string()))?;
            let sop_class_uid = command
                .string(dimse::AFFECTED_SOP_CLASS_UID)
                .unwrap_or_default();
            let sop_instance_uid = command
                .string(dimse::AFFECTED_SOP_INSTANCE_UID)
                .unwrap_or_default();
            let target = if sop_instance_uid.is_empty() || sop_class_uid.is_empty() {
                Target::Failed(StoreStatus::with(
                    status::CANNOT_UNDERSTAND,
                    "C-STORE-RQ without AffectedSOPClassUID or AffectedSOPInstanceUID",
                ))
            } else if sop_class_uid != pc.abstract_syntax {
                Target::Failed(StoreStatus::with(
                    status::SOP_CLASS_NOT_SUPPORTED,
                    format!(
                        "SOP class {sop_class_uid} sent on the context of {}",
                        pc.abstract_syntax
                    ),
                ))
            } else if ScpOptions::stores(&sop_class_uid) {
                let request = StoreRequest {
                    sop_class_uid: sop_class_uid.clone(),
                    sop_instance_uid: sop_instance_uid.clone(),
                    transfer_syntax_uid: pc.transfer_syntax.clone(),
                    calling_ae: calling_ae.to_owned(),
                    peer,
                };
                match sink.begin(&request) {
                    Ok(w) => Target::Sink(w),
                    Err(s) => Target::Failed(s),
                }
            } else {
                Target::Discard
            };
            let pending = Pending {
                pc_id,
                message_id,
                sop_class_uid,
                sop_instance_uid,
                target,
                bytes: 0,
            };
            if has_data {
                Ok(Some(pending))
            } else {
                let mut p = pending;
                p.target = Target::Failed(StoreStatus::with(
                    status::CANNOT_UNDERSTAND,
                    "C-STORE-RQ without a data set",
                ));
                finish_store(assoc, p, tally).await?;
                Ok(None)
            }
        }
        command_field::C_CANCEL_RQ => Ok(None),
        other => Err(End::Abort(format!(
            "unsupported DIMSE command field {other:04X}H (only C-ECHO and C-STORE)"
        ))),
    }
}

/// Decides the status of a completed C-STORE (committing into the sink on the blocking pool) and
/// sends the C-STORE-RSP.
async fn finish_store(assoc: &mut Assoc, p: Pending, tally: &mut Tally) -> Result<(), End> {
    let discarded = matches!(p.target, Target::Discard);
    let result = match p.target {
        Target::Sink(writer) => match tokio::task::spawn_blocking(move || writer.commit()).await {
            Ok(s) => s,
            Err(e) => StoreStatus::with(
                status::OUT_OF_RESOURCES,
                format!("internal failure while storing: {e}"),
            ),
        },
        Target::Discard => StoreStatus::success(),
        Target::Failed(s) => s,
    };
    tally.bytes += p.bytes;
    let code = format!("{:04X}H", result.code);
    match result.code {
        status::SUCCESS if discarded => {
            tally.discarded += 1;
            debug!(sop_class_uid = %p.sop_class_uid, sop_instance_uid = %p.sop_instance_uid, "accepted and discarded (not CT)");
        }
        status::SUCCESS => tally.stored += 1,
        c if c & 0xF000 == 0xB000 => {
            tally.stored += 1;
            warn!(sop_instance_uid = %p.sop_instance_uid, code, comment = ?result.comment, "C-STORE warning");
        }
        _ => {
            tally.failed += 1;
            warn!(sop_instance_uid = %p.sop_instance_uid, code, comment = ?result.comment, "C-STORE failed");
        }
    }
    let rsp = dimse::c_store_rsp(
        p.message_id,
        &p.sop_class_uid,
        &p.sop_instance_uid,
        result.code,
        result.comment.as_deref(),
    );
    send_command(assoc, p.pc_id, &rsp).await
}

/// Sends a command set on `pc_id`, split to the peer's maximum PDU length.
async fn send_command(assoc: &mut Assoc, pc_id: u8, command: &CommandSet) -> Result<(), End> {
    let bytes = command.encode();
    for pdu in dimse::command_pdus(pc_id, &bytes, assoc.peer_max_pdu_length()) {
        assoc
            .send(&pdu)
            .await
            .map_err(|e| End::Lost(format!("sending a response: {e}")))?;
    }
    Ok(())
}
