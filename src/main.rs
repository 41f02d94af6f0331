//! `osteon`: command-line entry point. Each subcommand is a thin shell over the library.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use osteon::pipeline::offline::{self, OfflineOptions, SegmenterChoice};

/// Osteon: cranial CT in, bone segmentation (DICOM SEG) and skull model (STL, Encapsulated STL) out.
#[derive(Parser)]
#[command(name = "osteon", about, long_about = None, disable_version_flag = true)]
struct Cli {
    /// Print the version, the libtorch version and whether CUDA is usable.
    #[arg(short = 'V', long)]
    version: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Segment the CT series found in folders or files and write the DICOM SEG, the STL, the
    /// Encapsulated STL and report.json for each series.
    ///
    /// One series: the files go straight into --out. Several series (e.g. a whole study folder):
    /// one sub-folder per series, named after SeriesNumber, and --out/report.json lists them all.
    /// Localizers, dose pages and other non-CT objects are skipped with a logged reason.
    Segment {
        /// Folders (searched recursively) and/or DICOM files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Segmenter: `cnn` needs a model (--model, or osteon-cnn.safetensors in --model-dir); the
        /// default is `cnn` when that model file exists, else `threshold`.
        #[arg(long, value_enum)]
        segmenter: Option<SegmenterArg>,
        /// Folder of the shipped models, used when neither --model nor --thick-model is given:
        /// osteon-cnn.safetensors (thin) and, when present, osteon-cnn-thick.safetensors (thick).
        #[arg(long, default_value = osteon::pipeline::offline::DEFAULT_MODEL_DIR)]
        model_dir: PathBuf,
        /// CNN weights (safetensors, trained by `osteon train`; its .json metadata beside it).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Thick-slice CNN of a thin/thick pair: series whose slab (median slice gap or
        /// SliceThickness) is at least
        /// --thick-from-mm go to it, the others to --model (default, when no --model is
        /// given: osteon-cnn-thick.safetensors in --model-dir if it exists).
        #[arg(long)]
        thick_model: Option<PathBuf>,
        /// Median slice gap (mm) from which a series goes to the thick model of a pair (default
        /// 3); refused when the run has no pair.
        #[arg(long, value_parser = osteon::segment::pair::parse_thick_from_mm)]
        thick_from_mm: Option<f64>,
        /// Bone threshold in HU for the threshold segmenter (a finite number).
        #[arg(long, default_value_t = osteon::segment::threshold::DEFAULT_THRESHOLD_HU,
              value_parser = finite_hu)]
        threshold: f32,
        /// Mesh smoothing iterations (windowed-sinc/Taubin, volume preserving); 0 turns it off.
        #[arg(long, default_value_t = osteon::mesh::MeshOptions::default().smoothing_iterations,
              value_parser = clap::value_parser!(u32).range(0..=MAX_SMOOTH_ITERATIONS as i64))]
        smooth_iterations: u32,
        /// Triangle budget for mesh decimation; 0 turns decimation off.
        #[arg(long, default_value_t = osteon::mesh::MeshOptions::default().max_triangles.unwrap_or(0),
              value_parser = triangle_budget)]
        max_triangles: usize,
        /// Post-processing of the CNN's mask: `bones` (marrow fill on voxels of 0.7 mm or less,
        /// half-maximum grow into the partial-volume edge, then the skull and every separate bone
        /// inside the body), `largest` (the largest
        /// 26-connected component, as the paper), `raw` (the network's thresholded output).
        /// Default `bones`; refused with `--segmenter threshold`, which keeps its largest
        /// component.
        #[arg(long, value_enum)]
        post_processing: Option<osteon::segment::PostMode>,
    },
    /// Generate a synthetic head CT (DICOM series) with its exact bone label (DICOM SEG + STL) from a
    /// virtual scanner profile; see docs/phantom.md.
    Phantom(osteon::phantom::cli::PhantomArgs),
    /// Train the CNN segmenter on the scans of a manifest; writes safetensors weights and JSON
    /// metadata (architecture, normalisation, threshold, SHA-256 of the training data).
    Train(osteon::train::cli::TrainArgs),
    /// Calibrate a model's decision threshold through the whole segmenter (post-processed masks)
    /// on its validation scans, and with --write store it in the model's JSON.
    #[cfg(feature = "torch")]
    Calibrate(osteon::train::calibrate::CalibrateArgs),
    /// Write a bone label (DICOM SEG) on the grid of a CT series: either a closed STL in LPS mm
    /// voxelised onto the grid (--stl), or the documented reference procedure for real scans
    /// (--reference; docs/labels.md).
    Label {
        /// Folder (or files) holding the CT series the label is for.
        #[arg(long, required = true)]
        ct: Vec<PathBuf>,
        /// Closed STL (binary or ASCII) in the CT's LPS mm.
        #[arg(
            long,
            conflicts_with = "reference",
            required_unless_present = "reference"
        )]
        stl: Option<PathBuf>,
        /// Use the reference procedure (threshold, largest component, thin-bridge removal).
        #[arg(long)]
        reference: bool,
        /// Which series when --ct holds several: SeriesInstanceUID or SeriesNumber.
        #[arg(long)]
        series: Option<String>,
        /// Threshold in HU of the reference procedure.
        #[arg(long, default_value_t = osteon::label::reference::ReferenceOptions::default().threshold_hu)]
        threshold: f32,
        /// Output SEG file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a segmenter on the scans of a manifest (DSC in the label's region, signed surface
    /// deviation within +-5 mm); prints a per-scan and per-scanner table and writes a CSV.
    Evaluate(osteon::eval::cli::EvaluateArgs),
    /// Run the DICOM node: C-ECHO and C-STORE SCP receiving CT into the spool
    /// (docs/conformance.md). Stops on SIGTERM or Ctrl-C after the associations in flight end.
    Serve {
        /// TOML file (see conf/osteon.toml); without it, the built-in defaults plus the
        /// environment (OSTEON__SECTION__KEY).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Configuration of the node (conf/osteon.toml, OSTEON__SECTION__KEY overrides).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Per-scanner QA of the node's jobs (data_dir/osteon.db): count, median, IQR and min-max of
    /// each figure per Manufacturer + model + station + serial; --csv writes one row per job.
    Qa {
        /// TOML file of the node (for storage.data_dir).
        #[arg(long)]
        config: Option<PathBuf>,
        /// CSV file with one row per job.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Jobs of the node (data_dir/osteon.db): list, show ID, retry ID.
    Jobs {
        #[command(subcommand)]
        command: JobsArg,
        /// TOML file of the node (for storage.data_dir).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum JobsArg {
    /// One line per job.
    List,
    /// One job as JSON (exports, per-instance statuses, report).
    Show { id: i64 },
    /// Failed -> queued; dead-letter -> exporting (a running node picks it up).
    Retry { id: i64 },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (defaults, then FILE, then the environment) and print the
    /// effective configuration as TOML. Exit status 1 when it is invalid.
    Check {
        /// TOML file; without it, the built-in defaults plus the environment.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SegmenterArg {
    Threshold,
    Cnn,
}

/// Upper bound of --smooth-iterations: windowed-sinc smoothing converges in tens of iterations;
/// thousands only cost time.
const MAX_SMOOTH_ITERATIONS: u32 = 500;

/// Smallest non-zero --max-triangles: below this a skull is no longer a model of anything.
const MIN_TRIANGLE_BUDGET: usize = 1000;

fn finite_hu(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{s} is not a finite HU value")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

fn triangle_budget(s: &str) -> Result<usize, String> {
    let v: usize = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if v != 0 && v < MIN_TRIANGLE_BUDGET {
        return Err(format!(
            "{v} is below the smallest budget {MIN_TRIANGLE_BUDGET} (0 turns decimation off)"
        ));
    }
    Ok(v)
}

/// Routes panics (a dependency's decoder failing on hostile input, caught and turned into an error
/// by the reader) into the log as one line, instead of a backtrace on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string payload".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::warn!(%location, %message, "internal failure (panic); a decoder's is reported as an unreadable file, any other stops the command");
    }));
}

fn version_line() -> String {
    format!(
        "osteon {} ({})",
        env!("CARGO_PKG_VERSION"),
        osteon::torch_info::describe()
    )
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSTEON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The node: latency counts, memory is held anyway; keep freed memory for the next stage
    // (see heap). `osteon segment` keeps the C library's defaults and the smaller peak.
    if matches!(cli.command, Some(Command::Serve { .. })) {
        osteon::pipeline::heap::tune();
    }
    if cli.version {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    init_logging(cli.log_format);
    install_panic_hook();
    let Some(command) = cli.command else {
        eprintln!("osteon: no command given; see `osteon --help`");
        return ExitCode::from(2);
    };
    match command {
        Command::Phantom(args) => osteon::phantom::cli::run(&args),
        Command::Train(args) => osteon::train::cli::run(&args),
        #[cfg(feature = "torch")]
        Command::Calibrate(args) => osteon::train::calibrate::run(&args),
        Command::Segment {
            inputs,
            out,
            segmenter,
            model_dir,
            model,
            thick_model,
            thick_from_mm,
            threshold,
            smooth_iterations,
            max_triangles,
            post_processing,
        } => {
            if thick_model.is_some() && matches!(segmenter, Some(SegmenterArg::Threshold)) {
                eprintln!("osteon segment: --thick-model is a CNN; not with --segmenter threshold");
                return ExitCode::from(2);
            }
            if post_processing.is_some() && matches!(segmenter, Some(SegmenterArg::Threshold)) {
                eprintln!(
                    "osteon segment: --post-processing applies to the CNN; the threshold \
                     segmenter keeps its largest component"
                );
                return ExitCode::from(2);
            }
            let post_processing = post_processing.unwrap_or_default();
            let options = OfflineOptions {
                segmenter: match segmenter {
                    Some(SegmenterArg::Threshold) => SegmenterChoice::Threshold,
                    Some(SegmenterArg::Cnn) => SegmenterChoice::Cnn,
                    None => SegmenterChoice::Default,
                },
                threshold_hu: threshold,
                model_dir,
                model,
                thick_model,
                thick_from_mm: thick_from_mm.unwrap_or(osteon::segment::pair::THICK_FROM_MM),
                mesh: osteon::mesh::MeshOptions {
                    smoothing_iterations: smooth_iterations,
                    max_triangles: (max_triangles > 0).then_some(max_triangles),
                    ..Default::default()
                },
                progress: true,
                post_processing,
            };
            // A split without a pair would be silently unused.
            if let (Some(mm), None) = (thick_from_mm, offline::pair_thick_model(&options)) {
                eprintln!(
                    "osteon segment: --thick-from-mm {mm} splits a thin/thick pair, and this run \
                     has none: give --thick-model (or put {} beside {} in --model-dir, without \
                     --model)",
                    offline::THICK_MODEL_FILE,
                    offline::MODEL_FILE
                );
                return ExitCode::from(2);
            }
            match offline::run(&inputs, &out, &options) {
                Ok(summary) => {
                    for line in summary.lines() {
                        println!("{line}");
                    }
                    if summary.failed() > 0 {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("osteon segment: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Label {
            ct,
            stl,
            reference,
            series,
            threshold,
            out,
        } => {
            use osteon::label::{run_label, LabelOptions, LabelSource};
            let source = match (stl, reference) {
                (Some(path), _) => LabelSource::Stl(path),
                (None, _) => LabelSource::Reference(osteon::label::reference::ReferenceOptions {
                    threshold_hu: threshold,
                    ..Default::default()
                }),
            };
            let options = LabelOptions {
                ct,
                series,
                source,
                out,
            };
            match run_label(&options) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("osteon label: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Serve { config } => {
            let config = match osteon::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("osteon serve: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            match osteon::pipeline::serve::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("osteon serve: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Jobs { command, config } => {
            use osteon::pipeline::serve::{jobs_command, JobsCommand};
            let command = match command {
                JobsArg::List => JobsCommand::List,
                JobsArg::Show { id } => JobsCommand::Show(id),
                JobsArg::Retry { id } => JobsCommand::Retry(id),
            };
            match osteon::config::Config::load(config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|c| jobs_command(&c, &command).map_err(|e| e.to_string()))
            {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("osteon jobs: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Qa { config, csv } => {
            match osteon::config::Config::load(config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    osteon::pipeline::qa::table::qa_command(&c.storage.data_dir, csv.as_deref())
                }) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("osteon qa: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let c = match osteon::config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("osteon config check: error: {e}");
                    return ExitCode::from(1);
                }
            };
            // The models the node would load at start (a route's "default" segmenter).
            let id = match osteon::pipeline::serve::default_segmenter(&c) {
                Ok(s) => s.identity(),
                Err(e) => {
                    eprintln!("osteon config check: error: pipeline.model_dir: {e}");
                    return ExitCode::from(1);
                }
            };
            match c.to_toml() {
                Ok(text) => {
                    println!(
                        "# default segmenter: {} {} (model_dir {})",
                        id.name,
                        id.version,
                        c.pipeline.model_dir.display()
                    );
                    if let Some(note) = osteon::pipeline::serve::unused_split_note(&c) {
                        println!("# note: {note}");
                    }
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("osteon config check: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Evaluate(args) => osteon::eval::cli::run(args),
    }
}
