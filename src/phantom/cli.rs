//! `osteon phantom`: generate a phantom, list the profiles, or measure scans for the realism table.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{generate, scanner, write_phantom, PhantomOptions};

/// Arguments of `osteon phantom`.
#[derive(clap::Args, Debug)]
pub struct PhantomArgs {
    /// Virtual scanner (see --list).
    #[arg(long, required_unless_present_any = ["list", "measure"])]
    pub profile: Option<String>,
    /// Seed of the anatomy, defects and noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder: ct/, label-seg.dcm, label.stl, phantom.json.
    #[arg(long, required_unless_present_any = ["list", "measure"])]
    pub out: Option<PathBuf>,
    /// Number of slices (spread over the profile's coverage; for quick tests), 2 to 2000.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=2000))]
    pub slices: Option<usize>,
    /// Matrix size (the field of view is kept; for quick tests), 16 to 2048.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=2048))]
    pub matrix: Option<usize>,
    /// Small and quick: 128x128, 24 slices, no STL.
    #[arg(long)]
    pub fast: bool,
    /// Force a craniotomy (`true`) or none (`false`); default: drawn from the seed.
    #[arg(long)]
    pub craniotomy: Option<bool>,
    /// Force a homogeneous, resin-like skull of one density (`true`, as in anthropomorphic head
    /// phantoms) or a layered one with tables and diploe (`false`); default: drawn from the seed
    /// (one head in ten).
    #[arg(long)]
    pub homogeneous_skull: Option<bool>,
    /// Do not write label.stl.
    #[arg(long)]
    pub no_stl: bool,
    /// List the profiles and exit.
    #[arg(long, conflicts_with_all = ["profile", "out", "measure"])]
    pub list: bool,
    /// Measure the realism figures of the CT series in these folders and exit (generation
    /// options do not apply).
    #[arg(
        long,
        num_args = 1..,
        conflicts_with_all = ["profile", "out", "slices", "matrix", "fast", "craniotomy",
            "homogeneous_skull", "no_stl"]
    )]
    pub measure: Vec<PathBuf>,
    /// With --measure: write the reference slice of each measured series side by side to this PNG
    /// (0.5 mm per pixel, 240 mm square, window -600..1400 HU).
    #[arg(long, requires = "measure")]
    pub png: Option<PathBuf>,
}

/// Runs `osteon phantom`; exit code 0 on success, 1 on failure, 2 on bad usage.
pub fn run(args: &PhantomArgs) -> ExitCode {
    if args.list {
        for p in scanner::profiles() {
            println!("{:<26} {}", p.name, p.summary);
        }
        return ExitCode::SUCCESS;
    }
    if !args.measure.is_empty() {
        return measure(&args.measure, args.png.as_deref());
    }
    let (Some(name), Some(out)) = (&args.profile, &args.out) else {
        eprintln!("osteon phantom: --profile and --out are required");
        return ExitCode::from(2);
    };
    let Some(profile) = scanner::profile(name) else {
        let names: Vec<&str> = scanner::profiles().iter().map(|p| p.name).collect();
        eprintln!(
            "osteon phantom: unknown profile {name:?}; known: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let mut options = PhantomOptions {
        slices: args.slices,
        matrix: args.matrix,
        craniotomy: args.craniotomy,
        homogeneous_skull: args.homogeneous_skull,
        stl: !args.no_stl,
        ..Default::default()
    };
    if args.fast {
        options.slices = options.slices.or(Some(24));
        options.matrix = options.matrix.or(Some(128));
        options.stl = false;
    }
    if let Err(e) = super::output::check_out(out) {
        eprintln!("osteon phantom: error: {e}");
        return ExitCode::from(1);
    }
    let mut phantom = generate(profile, args.seed, &options);
    match write_phantom(&mut phantom, out) {
        Ok(s) => {
            println!(
                "phantom {} seed {}: {:?} voxels, {} label voxels ({:.1} mL), {} ms -> {}",
                s.profile,
                s.seed,
                s.dims_kji,
                s.label_voxels,
                s.label_volume_ml,
                s.timings.total_ms.round(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osteon phantom: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn measure(dirs: &[PathBuf], png: Option<&std::path::Path>) -> ExitCode {
    let mut panels = Vec::new();
    println!(
        "| series | bone mean | bone SD | soft mean | soft SD | air mean | air SD | edge 10-90 mm |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for dir in dirs {
        let load = crate::dicom::series::load_series(std::slice::from_ref(dir));
        if load.volumes.is_empty() {
            let why = if !dir.exists() {
                "it does not exist".to_owned()
            } else if let Some(e) = load.refused.first() {
                format!("series refused: {e}")
            } else if let Some(s) = load.skipped.first() {
                format!(
                    "{} file(s) left out, e.g. {}: {}",
                    load.skipped.len(),
                    s.path.display(),
                    s.reason
                )
            } else {
                "no DICOM file found".to_owned()
            };
            eprintln!(
                "osteon phantom --measure: no CT volume in {}: {why}",
                dir.display()
            );
            failed = true;
        }
        let several = load.volumes.len() > 1;
        for v in &load.volumes {
            let r = super::realism::measure(v.hu.view(), &v.geometry);
            panels.push(super::realism::slice_preview(
                v.hu.view(),
                &v.geometry,
                r.slice,
                480,
                0.5,
                [-600.0, 1400.0],
            ));
            // Several series under one folder: each row names its series.
            let name = if several {
                format!(
                    "{} series {} {}",
                    dir.display(),
                    v.info.series_number.map_or("-".into(), |n| n.to_string()),
                    v.info.series_instance_uid
                )
            } else {
                dir.display().to_string()
            };
            println!(
                "| {} ({}) | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                name,
                v.info.convolution_kernel,
                r.bone_mean_hu,
                r.bone_sd_hu,
                r.soft_mean_hu,
                r.soft_sd_hu,
                r.air_mean_hu,
                r.air_sd_hu,
                r.edge_10_90_mm
            );
        }
    }
    // The PNG only when every input was measured: a partial one would replace a good figure.
    if let (Some(path), false) = (png, failed) {
        if let Err(e) = super::realism::write_png(&panels, path) {
            eprintln!("osteon phantom --png: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
