//! `osteon phantom` command line.
use std::process::ExitCode;

/// Arguments of `osteon phantom`.
#[derive(clap::Args, Debug)]
pub struct PhantomArgs {}

/// Runs `osteon phantom`; exit code 0 on success, 1 on failure, 2 on bad usage.
pub fn run(_args: &PhantomArgs) -> ExitCode {
    ExitCode::from(2)
}
