//! `osteon serve` against real DCMTK peers (echoscu, storescu) and a raw upper-layer client, each
//! test with its own node (child process, temp config, free port on 127.0.0.1).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed, UserVariableItem,
};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A running node; killed on drop.
struct Node {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts `osteon serve` with `[node]` extra lines `node_toml` and waits until it listens.
    fn start(node_toml: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("osteon.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nport = {port}\n{node_toml}\n[storage]\ndata_dir = \"{}\"\nmin_free_bytes = 0\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_osteon"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("OSTEON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start osteon serve");
        let node = Node { child, port, dir };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "node did not listen:\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("data/spool")
    }

    /// `.dcm` files in the spool (outside tmp/).
    fn spooled(&self) -> Vec<PathBuf> {
        files(&self.spool())
            .into_iter()
            .filter(|p| !p.starts_with(self.spool().join("tmp")))
            .collect()
    }

    fn partials(&self) -> usize {
        files(&self.spool().join("tmp")).len()
    }

    fn echo(&self, calling: &str, called: &str) -> Output {
        common::require_tool("echoscu");
        Command::new("echoscu")
            .args(["-aet", calling, "-aec", called, "127.0.0.1"])
            .arg(self.port.to_string())
            .output()
            .expect("run echoscu")
    }

    fn store(&self, dir: &Path) -> Output {
        common::require_tool("storescu");
        Command::new("storescu")
            .args(["-aet", "CALLER", "-aec", "OSTEON", "+sd", "127.0.0.1"])
            .arg(self.port.to_string())
            .arg(dir)
            .output()
            .expect("run storescu")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The data set bytes of a Part-10 file (after preamble, magic and meta group).
fn data_set(path: &Path) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[128..132], b"DICM", "{}", path.display());
    let len = u32::from_le_bytes([b[140], b[141], b[142], b[143]]) as usize;
    b[144 + len..].to_vec()
}

fn series_2020() -> PathBuf {
    common::shared_data().join("ct/philips-ingenuity-head-phantom/S2020")
}

#[test]
fn echo_succeeds_and_strangers_are_rejected_with_the_reason() {
    let node = Node::start("[node.allow]\ncalling_ae_titles = [\"CALLER\"]");
    let ok = node.echo("CALLER", "OSTEON");
    assert!(ok.status.success(), "{}\n{}", text(&ok), node.log());

    let stranger = node.echo("STRANGER", "OSTEON");
    assert_eq!(stranger.status.code(), Some(1), "{}", text(&stranger));
    assert!(
        text(&stranger).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&stranger)
    );
    let wrong_called = node.echo("CALLER", "osteon");
    assert!(
        text(&wrong_called).contains("Called AE Title Not Recognized"),
        "{}",
        text(&wrong_called)
    );
    let log = node.log();
    assert!(
        log.contains("STRANGER")
            && log.contains("127.0.0.1")
            && log.contains("association rejected"),
        "{log}"
    );
}

#[test]
fn called_ae_ignore_case_accepts_other_case() {
    let node = Node::start("called_ae_case = \"ignore-case\"");
    let o = node.echo("ANYONE", "osteon");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn storescu_series_lands_byte_for_byte_and_a_resend_adds_nothing() {
    let node = Node::start("");
    let src = series_2020();
    let sent = node.store(&src);
    assert!(sent.status.success(), "{}\n{}", text(&sent), node.log());
    let spooled = node.spooled();
    assert_eq!(spooled.len(), 140, "{}", node.log());
    assert_eq!(node.partials(), 0);

    // Original data sets by SOP Instance UID.
    let mut originals = BTreeMap::new();
    for f in files(&src) {
        let obj = osteon::dicom::meta::open_header(&f).unwrap();
        let uid = obj
            .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_owned();
        originals.insert(uid, f);
    }
    assert_eq!(originals.len(), 140);
    let series_dirs: std::collections::BTreeSet<_> = spooled
        .iter()
        .map(|p| p.parent().unwrap().to_owned())
        .collect();
    assert_eq!(series_dirs.len(), 1, "one study/series folder");
    for p in &spooled {
        let uid = p.file_stem().unwrap().to_str().unwrap();
        let original = originals
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} was not sent"));
        assert!(
            data_set(p) == data_set(original),
            "{uid}: data set differs from {}",
            original.display()
        );
    }

    let again = node.store(&src);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(node.spooled().len(), 140);
    assert_eq!(node.partials(), 0);
}

/// Raw requestor: A-ASSOCIATE-RQ for CT in explicit VR little endian.
fn associate(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "RAW".into(),
        called_ae_title: "OSTEON".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: CT.into(),
            transfer_syntaxes: vec![EXPLICIT_LE.into()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID("1.2.3.4".into()),
            // An unknown user-information sub-item must be ignored, not stall negotiation.
            UserVariableItem::Unknown(0x5F, vec![1, 2, 3, 4]),
        ],
    });
    send(&mut s, &rq);
    match read_pdu(&mut s) {
        Some(Pdu::AssociationAC(ac)) => assert_eq!(ac.presentation_contexts.len(), 1),
        other => panic!("no A-ASSOCIATE-AC: {other:?}"),
    }
    s
}

fn send(s: &mut TcpStream, pdu: &Pdu) {
    let mut b = Vec::new();
    dicom_ul::write_pdu(&mut b, pdu).unwrap();
    s.write_all(&b).unwrap();
}

/// Next PDU, `None` when the connection closed first.
fn read_pdu(s: &mut TcpStream) -> Option<Pdu> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(p)) = dicom_ul::read_pdu(&buf[..], 1 << 24, false) {
            return Some(p);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// C-STORE-RQ command plus the first `data_bytes` of the data set of `file`, as two PDUs.
fn partial_store(s: &mut TcpStream, file: &Path, data_bytes: usize) {
    use osteon::net::dimse::{self, command_field, CommandSet};
    let obj = osteon::dicom::meta::open_header(file).unwrap();
    let uid = obj
        .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_owned();
    let cmd = CommandSet::new()
        .with_uid(dimse::AFFECTED_SOP_CLASS_UID, CT)
        .with_u16(dimse::COMMAND_FIELD, command_field::C_STORE_RQ)
        .with_u16(dimse::MESSAGE_ID, 1)
        .with_u16(dimse::PRIORITY, 0)
        .with_u16(dimse::COMMAND_DATA_SET_TYPE, 0)
        .with_uid(dimse::AFFECTED_SOP_INSTANCE_UID, &uid)
        .encode();
    let pdv = |command: bool, last: bool, data: Vec<u8>| PDataValue {
        presentation_context_id: 1,
        value_type: if command {
            PDataValueType::Command
        } else {
            PDataValueType::Data
        },
        is_last: last,
        data,
    };
    let data = data_set(file);
    send(
        s,
        &Pdu::PData {
            data: vec![pdv(true, true, cmd)],
        },
    );
    for chunk in data[..data_bytes].chunks(16000) {
        send(
            s,
            &Pdu::PData {
                data: vec![pdv(false, false, chunk.to_vec())],
            },
        );
    }
}

fn wait_until(what: &str, node: &Node, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out waiting: {what}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn abort_or_dropped_connection_mid_transfer_leaves_nothing_and_node_keeps_serving() {
    let node = Node::start("");
    let file = files(&series_2020()).remove(0);
    for abort in [true, false] {
        let mut s = associate(node.port);
        partial_store(&mut s, &file, 200_000);
        // Streamed to disk as it arrives: the partial file exists before the data set ends.
        wait_until("partial file in spool/tmp", &node, || node.partials() == 1);
        if abort {
            send(
                &mut s,
                &Pdu::AbortRQ {
                    source: dicom_ul::pdu::AbortRQSource::ServiceUser,
                },
            );
        }
        drop(s);
        wait_until("partial file removed", &node, || node.partials() == 0);
        assert!(node.spooled().is_empty());
        let o = node.echo("CALLER", "OSTEON");
        assert!(o.status.success(), "{}\n{}", text(&o), node.log());
    }
    let log = node.log();
    assert!(log.contains("aborted by peer"), "{log}");
    assert!(log.contains("incomplete"), "{log}");
}

#[test]
fn association_cap_idle_timeout_and_artim() {
    let node =
        Node::start("max_associations = 1\nassociation_timeout = \"1s\"\nartim_timeout = \"1s\"");
    // Let the readiness probe of Node::start release its slot first.
    std::thread::sleep(Duration::from_millis(300));
    // Hold the only slot; a second association is rejected transiently.
    let mut held = associate(node.port);
    let o = node.echo("CALLER", "OSTEON");
    assert!(!o.status.success());
    assert!(text(&o).contains("Local Limit Exceeded"), "{}", text(&o));
    // The idle held association is aborted by the node after 1 s.
    let t = Instant::now();
    match read_pdu(&mut held) {
        Some(Pdu::AbortRQ { .. }) | None => {}
        other => panic!("expected A-ABORT, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // A connection that never sends an A-ASSOCIATE-RQ is closed after the ARTIM timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut b = [0u8; 1];
    assert!(matches!(silent.read(&mut b), Ok(0) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The slot is free again.
    wait_until("echo after the cap freed", &node, || {
        node.echo("CALLER", "OSTEON").status.success()
    });
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let mut node = Node::start("");
    let pid = node.child.id().to_string();
    let k = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(k.success());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "{status}\n{}", node.log());
            break;
        }
        assert!(Instant::now() < until, "node did not stop\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.log().contains("node stopped"), "{}", node.log());
}
