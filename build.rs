//! Build script: makes the `osteon` binary find libtorch without LD_LIBRARY_PATH.
//!
//! * Adds an rpath to the libtorch `lib/` folder that torch-sys linked against (torch-sys exports it to
//!   direct dependents as `DEP_TCH_LIBTORCH_LIB`).
//! * Links `torch_cuda` with `--no-as-needed` when that library exists, otherwise the linker drops it
//!   (no symbol of ours references it) and CUDA is never detected (tch-rs issues 907 and 980).
//! * Records the libtorch version (from `torch/csrc/api/include/torch/version.h`) for `osteon --version`.
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
        let header = root.join("include/torch/csrc/api/include/torch/version.h");
        version = std::fs::read_to_string(&header)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.contains("#define TORCH_VERSION "))
                    .and_then(|l| l.split('"').nth(1).map(str::to_owned))
            })
            .unwrap_or_else(|| format!("unknown (no {})", header.display()));
    }
    println!("cargo:rustc-env=OSTEON_LIBTORCH_VERSION={version}");
}
