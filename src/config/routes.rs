//! The pipeline side of the configuration: series completion (`[pipeline]`), export (`[export]`),
//! routing rules (`[[route]]`) and destination AEs (`[[destination]]`). Defaults live here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_ae_title, Config, ConfigError};

/// What happens to instances of a series that arrive after its job was made (docs/conformance.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// The series is assembled again (all its spooled instances, old and new) after a new quiet
    /// period and processed as a new job with the next version number; earlier results stay.
    #[default]
    Rerun,
    /// The late instances are kept in the spool and logged as a warning; no new job.
    Report,
}

/// `[pipeline]`: series completion and workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// A series is complete when no instance of it arrived for this long.
    #[serde(with = "humantime_serde")]
    pub quiet_period: Duration,
    /// ... or at the latest this long after its first instance, even if instances keep coming.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Parallel CPU workers (each processes one job at a time).
    pub workers: usize,
    /// Instances arriving after a series' job was made.
    pub late_instances: LatePolicy,
    /// Folder of the shipped CNN models (`osteon-cnn.safetensors`, and for a thin/thick pair
    /// `osteon-cnn-thick.safetensors`, each with its `.json`): a route's `segmenter = "default"`
    /// is the CNN when the thin model is there, else the threshold. Relative to the node's
    /// working directory; an installed node names an absolute folder
    /// (e.g. `/usr/local/share/osteon/models`).
    pub model_dir: PathBuf,
    /// Median slice gap (mm, above 0 and at most 20) from which a series goes to the thick
    /// model of a pair ([`crate::segment::pair`]; default 3 mm).
    pub thick_from_mm: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            quiet_period: Duration::from_secs(30),
            max_wait: Duration::from_secs(600),
            workers: 1,
            late_instances: LatePolicy::Rerun,
            model_dir: PathBuf::from(crate::pipeline::offline::DEFAULT_MODEL_DIR),
            thick_from_mm: crate::segment::pair::THICK_FROM_MM,
        }
    }
}

/// `[export]`: C-STORE of the results to destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Attempts per destination before the job goes to dead-letter (transient failures only; a
    /// permanent reject is final at once).
    pub max_attempts: u32,
    /// Wait before the 2nd attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Upper bound of the wait between attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Connect / read / write timeout of one association.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// C-ECHO every destination at start-up and log the outcome (never fatal).
    pub echo_at_start: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
            echo_at_start: true,
        }
    }
}

/// Segmenter a route runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SegmenterName {
    /// The CNN when a model ships, else the threshold baseline.
    #[default]
    Default,
    /// Global threshold + largest component.
    Threshold,
}

/// `[[route]]`: which series are processed, how, and where the results go. Empty lists and
/// absent bounds match anything. String comparisons trim spaces and ignore ASCII case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Name in logs and `osteon jobs`.
    pub name: String,
    /// Called AE titles (ours, as the peer called us) this route applies to.
    pub called_ae_titles: Vec<String>,
    /// Calling AE titles (the sender) this route applies to.
    pub calling_ae_titles: Vec<String>,
    /// Modality (0008,0060) values.
    pub modalities: Vec<String>,
    /// BodyPartExamined (0018,0015) values.
    pub body_parts: Vec<String>,
    /// ImageType (0008,0008) values that must all be present.
    pub image_type_all: Vec<String>,
    /// ImageType values none of which may be present.
    pub image_type_none: Vec<String>,
    /// Regular expression (regex crate syntax) SeriesDescription (0008,103E) must match.
    pub series_description: Option<String>,
    /// Smallest SliceThickness (0018,0050), mm.
    pub min_slice_thickness_mm: Option<f64>,
    /// Largest SliceThickness, mm.
    pub max_slice_thickness_mm: Option<f64>,
    /// Fewest slices.
    pub min_slices: usize,
    /// Most slices.
    pub max_slices: Option<usize>,
    /// Segmenter of the pipeline.
    pub segmenter: SegmenterName,
    /// Threshold (HU) of the threshold segmenter.
    pub threshold_hu: f32,
    /// Windowed-sinc smoothing iterations of the mesh (0 = off).
    pub smoothing_iterations: u32,
    /// Triangle budget of the mesh (0 = no decimation).
    pub max_triangles: usize,
    /// Post-processing of the CNN's mask: `bones` (default), `largest` or `raw` (see
    /// [`crate::segment::PostMode`]).
    pub post_processing: crate::segment::PostMode,
    /// Names of `[[destination]]` entries receiving the SEG and the Encapsulated STL.
    pub destinations: Vec<String>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            name: "cranial-ct".to_owned(),
            called_ae_titles: Vec::new(),
            calling_ae_titles: Vec::new(),
            modalities: vec!["CT".to_owned()],
            body_parts: Vec::new(),
            image_type_all: vec!["AXIAL".to_owned()],
            image_type_none: vec!["LOCALIZER".to_owned()],
            series_description: None,
            min_slice_thickness_mm: None,
            max_slice_thickness_mm: Some(5.0),
            min_slices: 20,
            max_slices: None,
            segmenter: SegmenterName::Default,
            threshold_hu: crate::segment::threshold::DEFAULT_THRESHOLD_HU,
            smoothing_iterations: 10,
            max_triangles: 1_000_000,
            post_processing: crate::segment::PostMode::Bones,
            destinations: Vec::new(),
        }
    }
}

/// `[[destination]]`: a DICOM Storage SCP receiving results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Name routes refer to.
    pub name: String,
    /// Its AE title (called AE of our association).
    pub ae_title: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Default routes: one cranial CT route without destinations (results stay in data_dir/results).
pub fn default_routes() -> Vec<RouteConfig> {
    vec![RouteConfig::default()]
}

/// Checks routes and destinations (called by [`Config::validate`]).
/// Most job workers a node runs (each holds a whole volume and its mesh in memory).
pub const MAX_WORKERS: usize = 64;

pub(super) fn validate(c: &Config) -> Result<(), ConfigError> {
    let p = &c.pipeline;
    if p.workers == 0 || p.workers > MAX_WORKERS {
        return Err(invalid(
            "pipeline.workers",
            format!("{} is outside 1..={MAX_WORKERS}", p.workers),
        ));
    }
    if p.quiet_period.is_zero() {
        return Err(invalid(
            "pipeline.quiet_period",
            "must be longer than 0 s".to_owned(),
        ));
    }
    if p.max_wait < p.quiet_period {
        return Err(invalid(
            "pipeline.max_wait",
            "must be at least pipeline.quiet_period".to_owned(),
        ));
    }
    if let Err(reason) = crate::segment::pair::check_thick_from_mm(p.thick_from_mm) {
        return Err(invalid("pipeline.thick_from_mm", reason));
    }
    if p.model_dir.as_os_str().is_empty() {
        return Err(invalid("pipeline.model_dir", "empty path".to_owned()));
    }
    if c.export.max_attempts == 0 || c.export.timeout.is_zero() {
        return Err(invalid(
            "export",
            "max_attempts and timeout must be > 0".to_owned(),
        ));
    }
    for d in &c.destination {
        check_ae_title(&d.ae_title).map_err(|r| invalid("destination.ae_title", r))?;
        if d.port == 0 || d.host.trim().is_empty() || d.name.is_empty() {
            return Err(invalid(
                "destination",
                format!("{:?}: needs a name, a host and a non-zero port", d.name),
            ));
        }
    }
    for (n, d) in c.destination.iter().enumerate() {
        if c.destination[..n].iter().any(|e| e.name == d.name) {
            return Err(invalid(
                "destination.name",
                format!("{:?} is used by two [[destination]] entries", d.name),
            ));
        }
    }
    for (n, r) in c.route.iter().enumerate() {
        if c.route[..n].iter().any(|e| e.name == r.name) {
            return Err(invalid(
                "route.name",
                format!("{:?} is used by two [[route]] entries", r.name),
            ));
        }
        for (key, t) in [
            ("route.min_slice_thickness_mm", r.min_slice_thickness_mm),
            ("route.max_slice_thickness_mm", r.max_slice_thickness_mm),
        ] {
            if t.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                return Err(invalid(
                    key,
                    format!("route {:?}: must be a positive number of mm", r.name),
                ));
            }
        }
        if let Some(re) = &r.series_description {
            regex::Regex::new(re)
                .map_err(|e| invalid("route.series_description", format!("{:?}: {e}", r.name)))?;
        }
        if let Some(missing) = r
            .destinations
            .iter()
            .find(|n| !c.destination.iter().any(|d| &d.name == *n))
        {
            return Err(invalid(
                "route.destinations",
                format!("route {:?} names unknown destination {missing:?}", r.name),
            ));
        }
        if !r.threshold_hu.is_finite() {
            return Err(invalid(
                "route.threshold_hu",
                "not a finite number".to_owned(),
            ));
        }
    }
    Ok(())
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| ConfigError::Parse {
            origin: "tempdir".into(),
            reason: e.to_string(),
        })?;
        let f = dir.path().join("o.toml");
        std::fs::write(&f, text).map_err(|e| ConfigError::Parse {
            origin: "write".into(),
            reason: e.to_string(),
        })?;
        Config::load_with_env(Some(&f), Some(config::Map::new()))
    }

    /// The error `text` is refused with, as the administrator reads it.
    fn refusal(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn routes_in_a_file_replace_the_default_route() {
        let c = load(
            "[pipeline]\nquiet_period = \"2s\"\nworkers = 2\n\
             [[destination]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 4242\n\
             [[route]]\nname = \"a\"\nmin_slices = 3\ndestinations = [\"pacs\"]\n\
             [[route]]\nname = \"b\"\nseries_description = \"(?i)brain\"\n",
        )
        .unwrap();
        assert_eq!(c.pipeline.quiet_period, Duration::from_secs(2));
        assert_eq!(c.pipeline.workers, 2);
        assert_eq!(c.route.len(), 2);
        assert_eq!(c.route[0].name, "a");
        assert_eq!(c.route[0].min_slices, 3);
        assert_eq!(c.route[0].modalities, vec!["CT"]);
        assert_eq!(c.route[0].destinations, vec!["pacs"]);
        assert_eq!(c.route[1].series_description.as_deref(), Some("(?i)brain"));
        assert_eq!(c.route[1].min_slices, 20);
        assert_eq!(c.destination[0].port, 4242);
        let back: Config = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_routes_are_refused_naming_the_key() {
        let e = load("[[route]]\nname = \"a\"\ndestinations = [\"nowhere\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("route.destinations"), "{e}");
        let e = load("[[route]]\nname = \"a\"\nseries_description = \"(\"\n").unwrap_err();
        assert!(e.to_string().starts_with("route.series_description"), "{e}");
        let e = load("[pipeline]\nworkers = 0\n").unwrap_err();
        assert!(e.to_string().starts_with("pipeline.workers"), "{e}");
        let e = load("[[destination]]\nname = \"p\"\nae_title = \"\"\nhost = \"h\"\nport = 1\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("destination.ae_title"), "{e}");
    }

    #[test]
    fn duplicate_names_bad_thickness_and_absurd_workers_are_refused() {
        let dest = "[[destination]]\nname = \"p\"\nae_title = \"PACS\"\nhost = \"h\"\nport = 1\n";
        let e = refusal(&format!("{dest}{dest}"));
        assert!(e.starts_with("destination.name"), "{e}");
        let e = load("[[route]]\nname = \"a\"\n[[route]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("route.name"), "{e}");
        let e = load("[[route]]\nname = \"a\"\nmax_slice_thickness_mm = -5.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("route.max_slice_thickness_mm"), "{e}");
        let e = refusal("[pipeline]\nworkers = 100000\n");
        assert!(e.starts_with("pipeline.workers"), "{e}");
    }

    #[test]
    fn model_folder_and_thick_split_are_read_and_checked() {
        let c = load("").unwrap();
        assert_eq!(c.pipeline.model_dir, PathBuf::from("models"));
        assert_eq!(c.pipeline.thick_from_mm, 3.0);
        let c = load(
            "[pipeline]\nmodel_dir = \"/usr/local/share/osteon/models\"\nthick_from_mm = 4.5\n",
        )
        .unwrap();
        assert_eq!(
            c.pipeline.model_dir,
            PathBuf::from("/usr/local/share/osteon/models")
        );
        assert_eq!(c.pipeline.thick_from_mm, 4.5);
        for bad in ["0.0", "-3.0", "25.0", "nan"] {
            let e = refusal(&format!("[pipeline]\nthick_from_mm = {bad}\n"));
            assert!(e.starts_with("pipeline.thick_from_mm"), "{bad}: {e}");
        }
        let e = load("[pipeline]\nmodel_dir = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pipeline.model_dir"), "{e}");
    }
}
