//! Build script: makes the `osteon` binary find libtorch without LD_LIBRARY_PATH.
//!
//! * Adds an rpath to the libtorch `lib/` folder that torch-sys linked against (torch-sys exports it to
//!   direct dependents as `DEP_TCH_LIBTORCH_LIB`).
//! * Links `torch_cuda` with `--no-as-needed` when that library exists, otherwise the linker drops it
//!   (no symbol of ours references it) and CUDA is never detected (tch-rs issues 907 and 980).
//! * Records the libtorch version for `osteon --version`: `version.py` of a PyTorch wheel, else
//!   `build-version` of a standalone libtorch, else `include/torch/headeronly/version.h`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    let mut version = String::from("none (built without the `torch` feature)");
    if let Some(lib) = lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
        let root = lib.parent().map(PathBuf::from).unwrap_or_default();
        version = libtorch_version(&root)
            .unwrap_or_else(|| format!("unknown (no version file under {})", root.display()));
    }
    println!("cargo:rustc-env=OSTEON_LIBTORCH_VERSION={version}");
}

/// Version of the libtorch rooted at `root` (the folder holding `lib/` and `include/`).
fn libtorch_version(root: &std::path::Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return line.split('\'').nth(1).map(str::to_owned);
    }
    if let Ok(text) = std::fs::read_to_string(root.join("build-version")) {
        return Some(text.trim().to_owned());
    }
    let text = std::fs::read_to_string(root.join("include/torch/headeronly/version.h")).ok()?;
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")))
            .map(|v| v.trim().to_owned())
    };
    Some(format!(
        "{}.{}.{}",
        part("MAJOR")?,
        part("MINOR")?,
        part("PATCH")?
    ))
}
