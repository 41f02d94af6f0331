//! `osteon serve` speed (issue "Speed"), printed as a table:
//! 1. **receive throughput** on loopback: DCMTK `storescu` sends the 140-slice Philips series
//!    (../shared/data/ct/philips-ingenuity-head-phantom/S2020) to osteon's SCP and, in the same run,
//!    to DCMTK `storescp` writing to the same disk (both under target/); runs alternate, medians
//!    compared (target: osteon / storescp >= 0.8). osteon fsyncs every instance before its success
//!    response; storescp does not.
//! 2. **latency** from the last instance received to the results stored at the destination
//!    (C-STORE-RSP success from a DCMTK storescp PACS), from the node's QA record, minus the quiet
//!    period and the segmentation stage (target <= 2 s). The mesh is not segmentation: it counts.
//!
//! Run: `. scripts/setup.sh && cargo bench --bench serve` (needs DCMTK storescu/storescp);
//! `OSTEON_BENCH_LATENCY_ONLY=1` skips part 1, `OSTEON_BENCH_LATENCY_RUNS=N` sets the latency
//! runs (default 3), `OSTEON_BENCH_BIN=PATH` benches another `osteon` binary (e.g. an older build).

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const LATENCY_RUNS: usize = 3;

/// The `osteon` binary under test: `OSTEON_BENCH_BIN` when set (to compare a build of another
/// commit in the same conditions), else the one cargo built with this bench.
fn osteon_bin() -> PathBuf {
    std::env::var_os("OSTEON_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_osteon")))
}

/// Latency runs: `OSTEON_BENCH_LATENCY_RUNS` when set (at least 1), else [`LATENCY_RUNS`].
fn latency_runs() -> usize {
    std::env::var("OSTEON_BENCH_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LATENCY_RUNS)
        .max(1)
}
const QUIET_MS: f64 = 1000.0;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn storescp(dir: &Path, port: u16) -> Proc {
    storescp_with(dir, port, &[])
}

/// storescp with extra options (e.g. `+B` bit-preserving, `-pdu 131072`).
fn storescp_with(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).expect("PACS dir");
    let child = Command::new("storescp")
        .args(["-aet", "PACS", "+xa"])
        .args(extra)
        .arg("-od")
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp (DCMTK) must be installed");
    wait_listening(port, "storescp");
    Proc(child)
}

/// `osteon serve` with its data folder in `dir`; `extra` appended to the TOML.
fn node(dir: &Path, quiet: &str, extra: &str) -> (Proc, u16, PathBuf) {
    let port = free_port();
    std::fs::create_dir_all(dir).expect("node dir");
    let config = dir.join("osteon.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nport = {port}\n[storage]\ndata_dir = \"{}\"\nmin_free_bytes = 0\n\
             [pipeline]\nquiet_period = \"{quiet}\"\nmax_wait = \"2h\"\n{extra}\n",
            dir.join("data").display()
        ),
    )
    .expect("config");
    let child = Command::new(osteon_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("OSTEON_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).expect("log file"))
        .spawn()
        .expect("osteon serve");
    wait_listening(port, "osteon serve");
    (Proc(child), port, config)
}

/// Seconds storescu takes to send `series` to `port` as called AE `aec`.
fn send(port: u16, aec: &str, series: &Path) -> f64 {
    let t = Instant::now();
    let out = Command::new("storescu")
        .args(["+sd", "-aec", aec, "-aet", "BENCH", "127.0.0.1"])
        .arg(port.to_string())
        .arg(series)
        .output()
        .expect("storescu (DCMTK) must be installed");
    let s = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident memory of process `pid` (VmHWM in /proc), MiB; NaN when unreadable.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The node's QA record of its first job once it is done (results stored at the PACS), read
/// in this process from the node's database: polling with `osteon qa` would start a process (and
/// load libtorch, ~0.7 s of CPU) every poll and slow the node it measures.
fn qa_done(data_dir: &Path) -> Option<osteon::pipeline::qa::QaRecord> {
    let store = osteon::pipeline::qa::QaStore::open(data_dir).ok()?;
    store
        .list()
        .ok()?
        .into_iter()
        .next()
        .filter(|r| r.done_ms.is_some())
}

fn main() {
    let series = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/ct/philips-ingenuity-head-phantom/S2020");
    let files: Vec<PathBuf> = std::fs::read_dir(&series)
        .expect("S2020 (../shared/data) is needed")
        .flatten()
        .map(|e| e.path())
        .collect();
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mb = bytes as f64 / 1e6;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/tmp")
        .join(format!("bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("bench dir under target/");

    // 1. Throughput, alternating.
    let latency_only = std::env::var_os("OSTEON_BENCH_LATENCY_ONLY").is_some();
    // 0: storescp defaults (16 KiB PDUs, data set decoded and re-encoded); 1: storescp +B -pdu
    // 131072 (bit-preserving, largest PDU it takes: its fastest); 2: osteon serve.
    let mut times: [Vec<f64>; 3] = Default::default();
    for run in 0..if latency_only { 0 } else { RUNS } {
        let order = if run % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            let dir = root.join(format!("run{run}-{which}"));
            let t = match which {
                0 | 1 => {
                    let port = free_port();
                    let extra: &[&str] = if which == 0 {
                        &[]
                    } else {
                        &["+B", "-pdu", "131072"]
                    };
                    let _scp = storescp_with(&dir, port, extra);
                    send(port, "PACS", &series)
                }
                _ => {
                    let (_node, port, _) = node(&dir, "1h", "");
                    send(port, "OSTEON", &series)
                }
            };
            times[which].push(t);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let [dcmtk, dcmtk_fast, osteon] = &mut times;
    if !latency_only {
        let (td, tf, to) = (median(dcmtk), median(dcmtk_fast), median(osteon));
        println!(
        "\nreceive throughput: Philips S2020, {} instances, {mb:.1} MB, storescu -> SCP on loopback, \
         {RUNS} alternating runs each, disk of {}",
        files.len(),
        root.display()
    );
        println!(
            "{:<22} {:>10} {:>10} {:>12}",
            "SCP", "median s", "MB/s", "instances/s"
        );
        for (name, t) in [
            ("DCMTK storescp", td),
            ("storescp +B -pdu 131072", tf),
            ("osteon serve", to),
        ] {
            println!(
                "{:<22} {:>10.3} {:>10.1} {:>12.1}",
                name,
                t,
                mb / t,
                files.len() as f64 / t
            );
        }
        println!(
        "ratio osteon / storescp (throughput): {:.2} vs defaults, {:.2} vs +B -pdu 131072   \
         (target >= 0.8)\nruns s: storescp {dcmtk:.3?}, storescp +B {dcmtk_fast:.3?}, osteon {osteon:.3?}",
        td / to,
        tf / to
    );
    }

    // 2. Latency.
    let pacs_port = free_port();
    let mut rows: Vec<BTreeMap<String, f64>> = Vec::new();
    let latency_runs = latency_runs();
    for run in 0..latency_runs {
        let dir = root.join(format!("latency{run}"));
        let _pacs = storescp(&dir.join("pacs"), pacs_port);
        let (node_proc, port, config) = node(
            &dir,
            "1s",
            &format!(
                "[[destination]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\n\
                 port = {pacs_port}\n[[route]]\nname = \"cranial-ct\"\nsegmenter = \"threshold\"\n\
                 destinations = [\"pacs\"]\n"
            ),
        );
        send(port, "OSTEON", &series);
        let until = Instant::now() + Duration::from_secs(600);
        let data_dir = config.with_file_name("data");
        let row = loop {
            if let Some(r) = qa_done(&data_dir) {
                break r;
            }
            assert!(Instant::now() < until, "job not done in 10 min");
            std::thread::sleep(Duration::from_millis(200));
        };
        let ms = |t: Option<i64>| t.map_or(f64::NAN, |t| t as f64);
        let mut m = BTreeMap::new();
        let total = ms(row.done_ms) - ms(row.last_received_ms);
        m.insert("1 total: last instance -> stored at PACS".to_owned(), total);
        m.insert(
            "2 series closed after the quiet period (incl. 1 s quiet)".to_owned(),
            row.queued_ms as f64 - ms(row.last_received_ms),
        );
        m.insert("3 queue wait".to_owned(), row.queue_wait_ms as f64);
        m.insert("4 read + decode".to_owned(), row.read_ms);
        m.insert("5 segment (excluded)".to_owned(), row.segment_ms);
        m.insert("6 mesh".to_owned(), row.mesh_ms);
        m.insert("7 SEG build + write".to_owned(), row.seg_write_ms);
        m.insert(
            "8 STL + Encapsulated STL write".to_owned(),
            row.stl_write_ms,
        );
        m.insert(
            "9 export (C-STORE SEG + STL)".to_owned(),
            row.export_ms.unwrap_or(f64::NAN),
        );
        m.insert("mesh triangles (count)".to_owned(), row.triangles as f64);
        m.insert(
            "node peak RSS (MiB, VmHWM)".to_owned(),
            peak_rss_mib(node_proc.0.id()),
        );
        m.insert(
            "latency excl. quiet period and segment".to_owned(),
            total - QUIET_MS - row.segment_ms,
        );
        rows.push(m);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "\nlatency: Philips S2020 (threshold segmenter), last instance received -> results stored at \
         a DCMTK storescp PACS, {latency_runs} runs, ms, binary {}",
        osteon_bin().display()
    );
    println!("{:<52} {:>10} {:>22}", "stage", "median", "runs");
    for key in rows[0].keys() {
        let mut v: Vec<f64> = rows.iter().map(|r| r[key]).collect();
        let runs = format!("{v:.0?}");
        println!("{:<52} {:>10.0} {:>22}", key, median(&mut v), runs);
    }
    println!("target: latency excl. quiet period and segment <= 2000 ms");
    let _ = std::fs::remove_dir_all(&root);
}
