//! `osteon serve` end to end with real DCMTK peers started here: `storescu` sends a whole study to
//! the node, a DCMTK `storescp` acts as the PACS receiving the results, `osteon jobs` is read back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SEG_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
const STL_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.104.3";
/// SeriesInstanceUIDs of the Philips phantom's axial series (S2010: 28 x 5 mm, S2020: 140 x 1 mm).
const AXIAL_5MM: &str = "1.3.46.670589.33.1.6002432791750815306.26862469513794233732";
const AXIAL_1MM: &str = "1.3.46.670589.33.1.3963937485511329090.25659488233390035616";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(port: u16, what: &str, log: &dyn Fn() -> String) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not listen:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// DCMTK storescp as PACS (AE title PACS, every transfer syntax) writing into `dir`.
fn start_pacs(dir: &Path, port: u16) -> Proc {
    common::require_tool("storescp");
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new("storescp")
        .args(["-aet", "PACS", "+xa", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start storescp");
    let p = Proc(child);
    wait_listening(port, "storescp", &String::new);
    p
}

struct Node {
    _proc: Proc,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
}

impl Node {
    /// `osteon serve` with `quiet` period, one route (threshold segmenter) sending to the PACS
    /// on `pacs_port`; `extra` is appended to the configuration (inside the route table first).
    fn start(dir: &Path, pacs_port: u16, quiet: &str, extra: &str) -> Node {
        Node::start_with(
            dir,
            pacs_port,
            quiet,
            "threshold",
            &dir.join("no-models"),
            extra,
        )
    }

    /// As [`Node::start`] with the route's `segmenter` and `[pipeline] model_dir = models`.
    fn start_with(
        dir: &Path,
        pacs_port: u16,
        quiet: &str,
        segmenter: &str,
        models: &Path,
        extra: &str,
    ) -> Node {
        let port = free_port();
        let config = dir.join("osteon.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nport = {port}\n\
                 [storage]\ndata_dir = \"{}\"\nmin_free_bytes = 0\naccept_other_storage = true\n\
                 [pipeline]\nquiet_period = \"{quiet}\"\nmax_wait = \"2m\"\nworkers = 2\nmodel_dir = \"{}\"\n\
                 [[destination]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {pacs_port}\n\
                 [[route]]\nname = \"cranial-ct\"\nsegmenter = \"{segmenter}\"\ndestinations = [\"pacs\"]\n{extra}\n",
                dir.join("data").display(),
                models.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_osteon"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("OSTEON_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start osteon serve");
        let node = Node {
            _proc: Proc(child),
            port,
            dir: dir.to_owned(),
            config,
        };
        wait_listening(port, "osteon serve", &|| node.log());
        node
    }

    /// The node's log with ANSI colour sequences removed.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// `osteon jobs ARGS --config ...` stdout (asserting success).
    fn jobs(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_osteon"))
            .arg("jobs")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run osteon jobs");
        assert!(
            out.status.success(),
            "osteon jobs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (id, state) of every job.
    fn states(&self) -> Vec<(i64, String)> {
        self.jobs(&["list"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.parse().ok()?, w.next()?.to_owned()))
            })
            .collect()
    }

    /// Waits until every job is in one of `states` (and there are `n` jobs); fails at once when
    /// a job ends (done, failed, dead-letter) in a state not in `states`.
    fn wait_jobs(&self, n: usize, states: &[&str], limit: Duration) -> Vec<(i64, String)> {
        let until = Instant::now() + limit;
        loop {
            let s = self.states();
            if s.len() == n && s.iter().all(|(_, st)| states.contains(&st.as_str())) {
                return s;
            }
            let stuck = s.iter().find(|(_, st)| {
                ["done", "failed", "dead-letter"].contains(&st.as_str())
                    && !states.contains(&st.as_str())
            });
            assert!(
                stuck.is_none(),
                "job {stuck:?} ended in a state other than {states:?}:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < until,
                "jobs {s:?} not all {states:?} after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Sends `inputs` (files, or folders scanned recursively) in one association.
fn storescu(port: u16, inputs: &[PathBuf]) {
    common::require_tool("storescu");
    let out = Command::new("storescu")
        .args(["+sd", "+r", "-aec", "OSTEON", "-aet", "CT01", "127.0.0.1"])
        .arg(port.to_string())
        .args(inputs)
        .output()
        .expect("run storescu");
    assert!(
        out.status.success(),
        "storescu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (SOPClassUID, referenced SeriesInstanceUIDs in (0008,1115)) of every file in `dir`.
fn received(dir: &Path) -> Vec<(String, BTreeSet<String>)> {
    common::require_tool("dcmdump");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| {
            let out = Command::new("dcmdump")
                .args(["-Un", "+p", "+P", "0008,0016", "+P", "0020,000e"])
                .arg(f)
                .output()
                .expect("run dcmdump");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let value = |line: &str| {
                line.split('[')
                    .nth(1)
                    .and_then(|v| v.split(']').next())
                    .unwrap_or("")
                    .to_owned()
            };
            let class = text
                .lines()
                .find(|l| l.starts_with("(0008,0016)"))
                .map(value)
                .unwrap_or_default();
            let refs = text
                .lines()
                .filter(|l| l.starts_with("(0008,1115).(0020,000e)"))
                .map(value)
                .collect();
            (class, refs)
        })
        .collect()
}

#[test]
fn phantom_study_yields_one_seg_and_one_stl_per_axial_series_and_no_other_job() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let node = Node::start(tmp.path(), pacs_port, "1s", "");
    let study = common::shared_data().join("ct/philips-ingenuity-head-phantom");
    storescu(node.port, &[study]);

    let states = node.wait_jobs(2, &["done"], Duration::from_secs(900));
    assert_eq!(states.len(), 2, "localizer and dose pages make no job");
    let list = node.jobs(&["list"]);
    assert!(
        list.contains(AXIAL_5MM) && list.contains(AXIAL_1MM),
        "{list}"
    );

    let got = received(&pacs_dir);
    let mut per_series: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (class, refs) in &got {
        assert_eq!(refs.len(), 1, "{class} references {refs:?}");
        for r in refs {
            *per_series.entry((class.clone(), r.clone())).or_default() += 1;
        }
    }
    let expected: BTreeMap<(String, String), usize> = [
        ((SEG_STORAGE, AXIAL_5MM), 1),
        ((SEG_STORAGE, AXIAL_1MM), 1),
        ((STL_STORAGE, AXIAL_5MM), 1),
        ((STL_STORAGE, AXIAL_1MM), 1),
    ]
    .into_iter()
    .map(|((c, s), n)| ((c.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(per_series, expected, "PACS received {got:?}");
    for f in std::fs::read_dir(&pacs_dir).unwrap().flatten() {
        let (errors, text) = common::dciodvfy(&f.path());
        assert!(errors.is_empty(), "{}:\n{text}", f.path().display());
    }

    let log = node.log();
    assert!(
        log.contains("series complete: no job") && log.contains("ImageType contains LOCALIZER"),
        "the localizer's reason is logged:\n{log}"
    );
    assert!(
        log.contains("discarded=6"),
        "the 6 dose pages are accepted and discarded:\n{log}"
    );
    let show = node.jobs(&["show", &states[0].0.to_string()]);
    assert!(
        show.contains("\"delivered\": true") && show.contains("\"status\": 0"),
        "{show}"
    );
    // Times are given as RFC 3339 UTC text beside the epoch milliseconds.
    let job: serde_json::Value = serde_json::from_str(&show).expect("jobs show prints JSON");
    let created = job["created_ms"].as_i64().expect("created_ms");
    let expected = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(created)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        job["created_utc"].as_str(),
        Some(expected.as_str()),
        "{show}"
    );
    assert!(
        expected.ends_with('Z') && expected.len() == 24,
        "{expected}"
    );
    assert!(job["next_attempt_utc"].is_null(), "{show}");
}

#[test]
fn destination_down_dead_letters_and_retry_delivers() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    // Small, fast pipeline; two quick attempts.
    let node = Node::start(
        tmp.path(),
        pacs_port,
        "1s",
        "max_triangles = 50000\nsmoothing_iterations = 0\n\
         [export]\nmax_attempts = 2\nbackoff = \"500ms\"\ntimeout = \"5s\"\n",
    );
    let series = common::shared_data().join("ct/philips-ingenuity-head-phantom/S2010");
    storescu(node.port, std::slice::from_ref(&series));
    let states = node.wait_jobs(1, &["dead-letter"], Duration::from_secs(600));
    let id = states[0].0.to_string();
    let show = node.jobs(&["show", &id]);
    assert!(
        show.contains("gave up after 2 attempts") && show.contains("cannot associate"),
        "{show}"
    );

    let _pacs = start_pacs(&pacs_dir, pacs_port);
    assert_eq!(node.jobs(&["retry", &id]), format!("job {id}: exporting\n"));
    node.wait_jobs(1, &["done"], Duration::from_secs(60));
    let got = received(&pacs_dir);
    let classes: BTreeSet<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(classes, BTreeSet::from([SEG_STORAGE, STL_STORAGE]));
    assert!(got.iter().all(|(_, r)| r.contains(AXIAL_5MM)));
}

#[test]
fn kill_9_before_the_quiet_period_ends_then_restart_exports_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let fast = "max_triangles = 50000\nsmoothing_iterations = 0\n";
    let node = Node::start(tmp.path(), pacs_port, "30s", fast);
    let series = common::shared_data().join("ct/philips-ingenuity-head-phantom/S2010");
    storescu(node.port, std::slice::from_ref(&series));
    assert!(node.states().is_empty(), "no job before the quiet period");
    drop(node); // SIGKILL

    let node = Node::start(tmp.path(), pacs_port, "1s", fast);
    let states = node.wait_jobs(1, &["done"], Duration::from_secs(600));
    assert_eq!(states[0].0, 1);
    let got = received(&pacs_dir);
    assert_eq!(got.len(), 2, "exported once: {got:?}");
    assert!(got.iter().all(|(_, r)| r.contains(AXIAL_5MM)));
    assert!(
        node.log().contains("spooled series without a job"),
        "{}",
        node.log()
    );
}

#[test]
fn two_associations_5_s_apart_form_one_series_and_one_job() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let node = Node::start(
        tmp.path(),
        pacs_port,
        "8s",
        "max_triangles = 50000\nsmoothing_iterations = 0\n",
    );
    let ge = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ge)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 28);
    storescu(node.port, &files[..14]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        node.states().is_empty(),
        "no job 5 s into an 8 s quiet period"
    );
    storescu(node.port, &files[14..]);
    let states = node.wait_jobs(1, &["done"], Duration::from_secs(600));
    assert_eq!(states.len(), 1);
    let show = node.jobs(&["show", &states[0].0.to_string()]);
    assert!(
        show.contains("\"slices\": 28") && show.contains("\"version\": 1"),
        "{show}"
    );
    // Nothing else comes: no re-run.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node.states().len(), 1);
    assert_eq!(received(&pacs_dir).len(), 2);
}

#[test]
fn a_late_instance_reruns_the_series_as_version_2_which_fills_the_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let node = Node::start(
        tmp.path(),
        pacs_port,
        "1s",
        "max_triangles = 50000\nsmoothing_iterations = 0\n",
    );
    let s2010 = common::shared_data().join("ct/philips-ingenuity-head-phantom/S2010");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&s2010)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 28);
    // Held back: a slice in the middle (file names are not in slice order), so version 1 has a gap.
    storescu(node.port, &files[..27]);
    node.wait_jobs(1, &["failed"], Duration::from_secs(600));
    storescu(node.port, &files[27..]);
    let states = node.wait_jobs(2, &["done", "failed"], Duration::from_secs(600));
    assert_eq!(
        states.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["failed", "done"]
    );
    let first = node.jobs(&["show", &states[0].0.to_string()]);
    let second = node.jobs(&["show", &states[1].0.to_string()]);
    assert!(
        first.contains("\"version\": 1")
            && first.contains("\"slices\": 27")
            && first.contains("missing slice(s)"),
        "{first}"
    );
    assert!(
        second.contains("\"version\": 2") && second.contains("\"slices\": 28"),
        "{second}"
    );
    assert!(node.log().contains("late instance"), "{}", node.log());
    let got = received(&pacs_dir);
    assert_eq!(got.len(), 2, "only version 2 has results: {got:?}");
    assert!(got.iter().all(|(_, r)| r.contains(AXIAL_5MM)));
}

/// `osteon qa --csv` rows keyed by column name, one map per job.
fn qa_rows(node: &Node, csv: &Path) -> (String, Vec<BTreeMap<String, String>>) {
    let out = Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args(["qa", "--config"])
        .arg(&node.config)
        .arg("--csv")
        .arg(csv)
        .output()
        .expect("run osteon qa");
    assert!(
        out.status.success(),
        "osteon qa: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(csv).expect("CSV written");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("CSV header").split(',').collect();
    let rows = lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), rows)
}

fn f(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key} = {:?} is not a number", row[key]))
}

#[test]
fn qa_shows_the_philips_and_ge_scanners_with_their_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let node = Node::start(
        tmp.path(),
        pacs_port,
        "1s",
        "max_triangles = 50000\nsmoothing_iterations = 0\n",
    );
    let data = common::shared_data().join("ct");
    storescu(
        node.port,
        &[data.join("philips-ingenuity-head-phantom/S2020")],
    );
    storescu(node.port, &[data.join("ge-hispeed-dual-head-tilt")]);
    node.wait_jobs(2, &["done"], Duration::from_secs(900));
    assert!(
        node.log().contains("destination C-ECHO: success"),
        "start-up C-ECHO of the PACS is logged:\n{}",
        node.log()
    );
    assert_eq!(
        node.log().matches("osteon::qa: qa job=").count(),
        2,
        "one qa event per job:\n{}",
        node.log()
    );

    let (table, rows) = qa_rows(&node, &tmp.path().join("qa.csv"));
    println!("{table}");
    assert!(
        table.contains("Scanner: Philips | Ingenuity CT | station CT4 | serial 336067   jobs: 1")
            && table.contains(
                "Scanner: GE MEDICAL SYSTEMS | HiSpeed Dual | station - | serial -   jobs: 1"
            )
            && table.contains("kernels: UB")
            && table.contains("kernels: STD+"),
        "{table}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let philips = rows
        .iter()
        .find(|r| r["manufacturer"] == "Philips")
        .expect("Philips row");
    let ge = rows
        .iter()
        .find(|r| r["manufacturer"] == "GE MEDICAL SYSTEMS")
        .expect("GE row");

    // Acquisition figures, as in the headers of the two series.
    assert_eq!(philips["series_uid"], AXIAL_1MM);
    assert_eq!(
        (
            f(philips, "slices"),
            f(philips, "kvp"),
            f(philips, "tube_current_ma")
        ),
        (140.0, 120.0, 112.0)
    );
    assert_eq!(
        (f(philips, "exposure_mas"), f(philips, "slice_thickness_mm")),
        (143.0, 1.0)
    );
    assert_eq!(f(philips, "pixel_spacing_row_mm"), 0.451171875);
    assert!(f(philips, "tilt_deg").abs() < 0.01);
    assert_eq!(
        (f(ge, "slices"), f(ge, "kvp"), f(ge, "tube_current_ma")),
        (28.0, 120.0, 180.0)
    );
    assert_eq!(
        ge["exposure_mas"], "",
        "the GE series has no Exposure (0018,1152)"
    );
    assert_eq!(f(ge, "slice_thickness_mm"), 4.0);
    assert!(
        (f(ge, "tilt_deg") - 18.5).abs() < 0.05,
        "{}",
        ge["tilt_deg"]
    );

    // Results: the threshold baseline's bone volume of each head (375 mL and 583 mL when written).
    let (pv, gv) = (f(philips, "bone_volume_ml"), f(ge, "bone_volume_ml"));
    assert!((340.0..410.0).contains(&pv), "Philips bone volume {pv} mL");
    assert!((530.0..640.0).contains(&gv), "GE bone volume {gv} mL");
    for r in [philips, ge] {
        assert_eq!(r["model"], "osteon-threshold");
        assert_eq!(
            r["dsc_threshold_baseline"], "1.0",
            "the baseline itself: 1 by definition"
        );
        assert_eq!(
            r["mean_confidence"], "",
            "no confidence for the threshold segmenter"
        );
        assert!(
            f(r, "components") >= 1.0 && f(r, "triangles") > 10_000.0,
            "{r:?}"
        );
        // Noise in air: 3.8 HU (Philips) and 3.6 HU (GE) when written.
        let noise = f(r, "noise_air_hu");
        assert!((2.0..6.0).contains(&noise), "noise in air {noise} HU");
        // Timeline: received <= queued <= started, exported and stored afterwards.
        let (first, last) = (f(r, "first_received_ms"), f(r, "last_received_ms"));
        let (queued, started, done) = (f(r, "queued_ms"), f(r, "started_ms"), f(r, "done_ms"));
        assert!(
            first <= last && last <= queued && queued <= started && started < done,
            "{r:?}"
        );
        assert!(
            queued - last >= 1000.0,
            "the 1 s quiet period separates them: {r:?}"
        );
        assert!(f(r, "export_ms") > 0.0 && f(r, "segment_ms") > 0.0, "{r:?}");
    }
}

/// The node's default route runs the CNN of its model folder (issue 4, "Ship": the node uses the
/// CNN by default when the model file is present), here a thin/thick pair (the experimental
/// `cpu-3` as thin model, the cpu-8 leave-2-out's final model as thick one): the tilted GE head
/// (median slice gap 4 mm) goes to the thick model, and the SEG the PACS receives, the QA row and
/// report.json all name it.
#[cfg(feature = "torch")]
#[test]
fn the_default_route_runs_the_cnn_pair_of_the_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    for (src, name) in [
        ("models/osteon-cnn-cpu-3", "osteon-cnn"),
        ("models/leave-2-out-cpu-8/final", "osteon-cnn-thick"),
    ] {
        for ext in ["safetensors", "json"] {
            std::fs::copy(
                root.join(format!("{src}.{ext}")),
                models.join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
    }
    let pacs_dir = tmp.path().join("pacs");
    let pacs_port = free_port();
    let _pacs = start_pacs(&pacs_dir, pacs_port);
    let node = Node::start_with(tmp.path(), pacs_port, "1s", "default", &models, "");
    let log = node.log();
    assert!(
        log.contains("default segmenter") && log.contains("algorithm=osteon-cnn"),
        "the node says at start that its default segmenter is the CNN:\n{log}"
    );
    storescu(
        node.port,
        &[common::shared_data().join("ct/ge-hispeed-dual-head-tilt")],
    );
    let states = node.wait_jobs(1, &["done"], Duration::from_secs(600));

    // The SEG at the PACS names the thick model (0.976 mm working pixels) and is valid.
    let mut seg = None;
    for f in std::fs::read_dir(&pacs_dir).unwrap().flatten() {
        let (errors, text) = common::dciodvfy(&f.path());
        assert!(errors.is_empty(), "{}:\n{text}", f.path().display());
        let out = Command::new("dcmdump")
            .args(["-Un", "+P", "0062,0009", "+P", "0066,0031"])
            .arg(f.path())
            .output()
            .expect("run dcmdump");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("(0062,0009)") {
            seg = Some(text);
        }
    }
    let seg = seg.expect("the PACS received a SEG");
    assert!(seg.contains("[osteon-cnn]"), "{seg}");
    assert!(
        seg.contains("-p0.976-"),
        "AlgorithmVersion of the thick model: {seg}"
    );

    // The QA row: the CNN, its confidence, and its agreement with the threshold baseline.
    let (_, rows) = qa_rows(&node, &tmp.path().join("qa.csv"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["model"], "osteon-cnn");
    assert!(r["model_version"].contains("-p0.976-"), "{r:?}");
    let confidence = f(r, "mean_confidence");
    assert!((0.5..=1.0).contains(&confidence), "{r:?}");
    let dsc = f(r, "dsc_threshold_baseline");
    assert!((0.6..0.99).contains(&dsc), "CNN vs threshold DSC {dsc}");

    // report.json of the job: the pair's choice from the median slice gap.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            tmp.path()
                .join(format!("data/results/{}/report.json", states[0].0)),
        )
        .expect("report.json in the job's results"),
    )
    .unwrap();
    let choice = &report["segmentation"]["model_choice"];
    assert_eq!(choice["model"], "thick", "{report}");
    let gap = choice["median_slice_gap_mm"].as_f64().unwrap();
    assert!(
        (gap - 4.0).abs() < 0.01,
        "median gap 4.0 mm (4.0019): {report}"
    );
}
