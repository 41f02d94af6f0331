//! Helpers shared by the integration tests: where the shared data and the external validators are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/data` beside the checkout (read-only real CT and reference objects).
pub fn shared_data() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        p.is_dir(),
        "test data not found at {} (the checkout must sit beside shared/)",
        p.display()
    );
    p
}

/// Python interpreter with pydicom and numpy: `$OSTEON_PY`, else the set-up script's default venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OSTEON_PY") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or(home.join(".cache"));
    let p = cache.join("osteon/pyenv-validators-1/bin/python");
    assert!(
        p.exists(),
        "no validator Python at {}: run scripts/setup.sh (or set OSTEON_PY)",
        p.display()
    );
    p
}

/// Panics with a clear message unless `tool` is on PATH.
pub fn require_tool(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} not found on PATH: run scripts/setup.sh (Debian packages dcmtk, dicom3tools)"
    );
}

/// Runs dciodvfy on `file` and returns (error lines, full output). dciodvfy prints "Error - ..." lines
/// for IOD violations and "Warning - ..." lines for softer findings.
pub fn dciodvfy(file: &Path) -> (Vec<String>, String) {
    require_tool("dciodvfy");
    let out = Command::new("dciodvfy")
        .arg(file)
        .output()
        .expect("run dciodvfy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors = text
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(str::to_owned)
        .collect();
    (errors, text)
}

/// Runs the `osteon` binary of this build with `args` (no shell), capturing its output.
pub fn osteon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args(args)
        .output()
        .expect("run osteon")
}

/// A process's output bytes as text (lossy UTF-8).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
