//! What libtorch this binary was built against and whether CUDA is usable (for `osteon --version`).

/// libtorch version recorded at build time from libtorch's `torch/version.h` (see `build.rs`).
pub const LIBTORCH_VERSION: &str = env!("OSTEON_LIBTORCH_VERSION");

/// One line: libtorch version and CUDA state, e.g. `libtorch 2.11.0, CUDA: not available (CPU)`.
pub fn describe() -> String {
    format!("libtorch {LIBTORCH_VERSION}, CUDA: {}", cuda_state())
}

#[cfg(feature = "torch")]
fn cuda_state() -> String {
    if tch::Cuda::is_available() {
        format!(
            "available ({} device(s), cuDNN {})",
            tch::Cuda::device_count(),
            if tch::Cuda::cudnn_is_available() {
                "yes"
            } else {
                "no"
            }
        )
    } else {
        "not available (CPU)".to_owned()
    }
}

#[cfg(not(feature = "torch"))]
fn cuda_state() -> String {
    "not built (no `torch` feature)".to_owned()
}
