//! Typed configuration of `osteon serve`: one place for defaults ([`Config::default`] and the
//! `Default` impls below), loaded from a TOML file plus environment overrides.
//!
//! Sources, later ones win ([`Config::load`]):
//! 1. the built-in defaults (this file);
//! 2. the TOML file (`--config FILE`, e.g. `conf/osteon.toml`);
//! 3. environment variables `OSTEON__SECTION__KEY` (the `config` crate's convention with prefix
//!    `OSTEON` and separator `__`), e.g. `OSTEON__NODE__PORT=11113`,
//!    `OSTEON__NODE__ALLOW__CALLING_AE_TITLES=CT01,PACS` (comma-separated lists).
//!
//! Unknown keys are errors (a typo never silently falls back to a default), and [`Config::validate`]
//! checks the values (AE titles per PS3.5 6.2, PDU sizes per PS3.8 9.3.1, non-zero timeouts).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment prefix of the overrides (`OSTEON__...`).
pub const ENV_PREFIX: &str = "OSTEON";
/// Separator between the section and key names in environment overrides.
pub const ENV_SEPARATOR: &str = "__";
/// Keys whose environment override is a comma-separated list.
const ENV_LIST_KEYS: [&str; 2] = ["node.allow.calling_ae_titles", "node.allow.hosts"];

/// Smallest accepted non-zero `node.max_pdu` (bytes). The A-ASSOCIATE-RQ is read under the same
/// limit, and a requestor proposing ~128 presentation contexts sends about 15 KB.
pub const MIN_MAX_PDU: u32 = 16_384;
/// Largest `node.max_pdu` the upper layer can express (dicom-ul's MAXIMUM_PDU_SIZE).
pub const MAX_MAX_PDU: u32 = dicom_ul::pdu::MAXIMUM_PDU_SIZE;

/// Errors of loading and validating a configuration; each names the file or the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist or cannot be read.
    #[error("{file}: cannot read configuration: {reason}")]
    Read { file: PathBuf, reason: String },
    /// The merged sources do not deserialize (bad TOML, unknown key, wrong type).
    #[error("{origin}: {reason}")]
    Parse { origin: String, reason: String },
    /// A value is out of range or malformed.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The DICOM node: AE title, network, association policy.
    pub node: NodeConfig,
    /// Where received instances and state live.
    pub storage: StorageConfig,
    /// Series completion and the job workers.
    pub pipeline: PipelineConfig,
    /// Sending results to destinations (SCU).
    pub export: ExportConfig,
    /// Routing rules (`[[route]]`), tried in order; the first match makes the job.
    pub route: Vec<RouteConfig>,
    /// Destination AEs (`[[destination]]`), named by routes.
    pub destination: Vec<DestinationConfig>,
}

/// How the called AE title of an A-ASSOCIATE-RQ is compared with ours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AeCase {
    /// Byte-for-byte after trimming spaces (PS3.8 9.3.2: leading/trailing spaces are not
    /// significant; AE titles are otherwise case-sensitive).
    #[default]
    Exact,
    /// ASCII case-insensitive, for peers that upper-case what they are given.
    IgnoreCase,
}

/// `[node]`: the DICOM node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Our AE title (1..=16 characters of the default repertoire, no backslash, not all spaces).
    pub ae_title: String,
    /// Address to listen on (`127.0.0.1` by default: nothing reachable from outside until set).
    pub bind: IpAddr,
    /// TCP port (11112, the IANA-registered non-privileged DICOM port).
    pub port: u16,
    /// Largest P-DATA-TF PDU we accept (bytes, PS3.8 D.1 Maximum Length); also the bound of the
    /// per-association receive buffer. 0 = unlimited (no memory bound). Sent PDUs follow the
    /// peer's limit.
    pub max_pdu: u32,
    /// Concurrent associations; one more is rejected (transient, local limit exceeded).
    pub max_associations: usize,
    /// Idle timeout of an established association: no PDU for this long -> A-ABORT.
    #[serde(with = "humantime_serde")]
    pub association_timeout: Duration,
    /// ARTIM timer (PS3.8 9.1.5): a connection that sends no complete A-ASSOCIATE-RQ within this
    /// time is closed.
    #[serde(with = "humantime_serde")]
    pub artim_timeout: Duration,
    /// Comparison of the called AE title with ours.
    pub called_ae_case: AeCase,
    /// Who may associate.
    pub allow: AllowConfig,
}

/// `[node.allow]`: calling AE titles (and hosts) allowed to associate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowConfig {
    /// Calling AE titles allowed (exact, after trimming spaces). Empty = any calling AE title.
    pub calling_ae_titles: Vec<String>,
    /// Peer IP addresses allowed. Empty = any host.
    pub hosts: Vec<IpAddr>,
}

/// `[storage]`: spool and state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data folder (spool, later the job database); relative paths are relative to the working
    /// directory of the process.
    pub data_dir: PathBuf,
    /// What happens to received instances once their series is processed
    /// ([`SpoolRetention`]; `"keep"`, `"when-done"` or a duration such as `"7days"`).
    pub spool_retention: SpoolRetention,
    /// Disk watermark: below this many free bytes on the data folder's file system, new
    /// associations are rejected (transient, local limit exceeded).
    pub min_free_bytes: u64,
    /// Accept instances of storage SOP classes other than CT (e.g. secondary capture dose pages)
    /// and discard them with success status, instead of rejecting their presentation contexts.
    pub accept_other_storage: bool,
}

/// `storage.spool_retention`: what happens to a series' spooled instances (the received CT) once
/// the series is processed (src/pipeline/retention.rs). Written as a string in TOML and the
/// environment: `"keep"`, `"when-done"`, or a duration (`"7days"`, `"12h"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolRetention {
    /// Never deleted by the node.
    Keep,
    /// Deleted as soon as every job of the series is done (results stored at every destination);
    /// series that make no job (localizer, dose pages) are deleted once routed. Failed and
    /// dead-letter jobs keep their instances. Instances received after the job started are kept.
    WhenDone,
    /// Deleted when the newest instance of the series is older than this and no job of the series
    /// is queued, running, exporting or failed (a periodic sweep, first run
    /// `pipeline.max_wait + pipeline.quiet_period` after start-up).
    After(Duration),
}

impl std::fmt::Display for SpoolRetention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolRetention::Keep => f.write_str("keep"),
            SpoolRetention::WhenDone => f.write_str("when-done"),
            SpoolRetention::After(d) => {
                write!(f, "{}", humantime_serde::re::humantime::format_duration(*d))
            }
        }
    }
}

impl std::str::FromStr for SpoolRetention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "keep" => Ok(SpoolRetention::Keep),
            "when-done" => Ok(SpoolRetention::WhenDone),
            other => match humantime_serde::re::humantime::parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(SpoolRetention::After(d)),
                Ok(_) => Err("0 s: use \"when-done\" to delete at once".to_owned()),
                Err(e) => Err(format!(
                    "{other:?}: not \"keep\", \"when-done\" or a duration ({e})"
                )),
            },
        }
    }
}

impl Serialize for SpoolRetention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SpoolRetention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            storage: StorageConfig::default(),
            pipeline: PipelineConfig::default(),
            export: ExportConfig::default(),
            route: default_routes(),
            destination: Vec::new(),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            ae_title: "OSTEON".to_owned(),
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 11112,
            max_pdu: 262_144,
            max_associations: 16,
            association_timeout: Duration::from_secs(60),
            artim_timeout: Duration::from_secs(30),
            called_ae_case: AeCase::Exact,
            allow: AllowConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("osteon-data"),
            spool_retention: SpoolRetention::After(Duration::from_secs(7 * 24 * 3600)),
            min_free_bytes: 1 << 30,
            accept_other_storage: false,
        }
    }
}

pub use routes::*;

/// The config crate names an unknown enum value by the Rust type ("enum SegmenterName does not
/// have variant constructor cnn"); the administrator needs the values the key takes.
fn with_valid_values(reason: String) -> String {
    let hint = if reason.contains("SegmenterName") {
        "valid: \"default\" (the CNN when osteon-cnn.safetensors is in [pipeline] model_dir, \
         else the threshold) or \"threshold\"; other CNN models run offline only \
         (osteon segment --segmenter cnn --model FILE)"
    } else if reason.contains("LatePolicy") {
        "valid: \"rerun\" or \"report\""
    } else if reason.contains("AeCase") {
        "valid: \"exact\" or \"ignore-case\""
    } else if reason.contains("PostMode") {
        "valid: \"bones\", \"largest\" or \"raw\""
    } else {
        return reason;
    };
    format!("{reason} ({hint})")
}

impl Config {
    /// Loads the defaults, then `file` (when given), then the process environment
    /// (`OSTEON__SECTION__KEY`), and validates the result.
    ///
    /// Errors: [`ConfigError::Read`] for a missing file, [`ConfigError::Parse`] for bad TOML,
    /// unknown keys or wrong types, [`ConfigError::Invalid`] from [`Config::validate`].
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// [`Config::load`] with the environment given as a map (`None` = the process environment);
    /// for tests.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Config, ConfigError> {
        let defaults =
            config::Config::try_from(&Config::default()).map_err(|e| ConfigError::Parse {
                origin: "built-in defaults".to_owned(),
                reason: e.to_string(),
            })?;
        let mut builder = config::Config::builder().add_source(defaults);
        let origin = match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::Read {
                        file: path.to_owned(),
                        reason: "no such file".to_owned(),
                    });
                }
                builder = builder.add_source(
                    config::File::from(path)
                        .format(config::FileFormat::Toml)
                        .required(true),
                );
                format!("{} (with environment overrides)", path.display())
            }
            None => "defaults (with environment overrides)".to_owned(),
        };
        // `[[route]]` and `[[destination]]` are arrays of tables, which the environment cannot
        // address (the config crate reads OSTEON__ROUTE__X as a table and then fails with "invalid
        // type: map, expected a sequence"): name the variable and the way out instead.
        let array_var = |k: &str| {
            let k = k.to_ascii_uppercase();
            ["ROUTE", "DESTINATION"].iter().any(|t| {
                k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}{t}{ENV_SEPARATOR}"))
                    || k == format!("{ENV_PREFIX}{ENV_SEPARATOR}{t}")
            })
        };
        let names: Vec<String> = match &env {
            Some(m) => m.keys().cloned().collect(),
            None => std::env::vars().map(|(k, _)| k).collect(),
        };
        if let Some(k) = names.iter().find(|k| array_var(k)) {
            return Err(ConfigError::Invalid {
                key: "environment",
                reason: format!(
                    "{k}: [[route]] and [[destination]] entries cannot be set from the \
                     environment (they are lists of tables); set them in the configuration file"
                ),
            });
        }
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment.source(env));
        let merged = builder.build().map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        let config: Config = merged.try_deserialize().map_err(|e| ConfigError::Parse {
            origin,
            reason: with_valid_values(e.to_string()),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the first problem is returned naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.node;
        check_ae_title(&n.ae_title).map_err(|reason| ConfigError::Invalid {
            key: "node.ae_title",
            reason,
        })?;
        for ae in &n.allow.calling_ae_titles {
            check_ae_title(ae).map_err(|reason| ConfigError::Invalid {
                key: "node.allow.calling_ae_titles",
                reason,
            })?;
        }
        if n.max_pdu != 0 && !(MIN_MAX_PDU..=MAX_MAX_PDU).contains(&n.max_pdu) {
            return Err(ConfigError::Invalid {
                key: "node.max_pdu",
                reason: format!(
                    "{} is outside {MIN_MAX_PDU}..={MAX_MAX_PDU} (0 = unlimited)",
                    n.max_pdu
                ),
            });
        }
        if n.port == 0 {
            return Err(ConfigError::Invalid {
                key: "node.port",
                reason: "0 is not a port".to_owned(),
            });
        }
        if !(1..=MAX_ASSOCIATIONS).contains(&n.max_associations) {
            return Err(ConfigError::Invalid {
                key: "node.max_associations",
                reason: format!(
                    "{} is outside 1..={MAX_ASSOCIATIONS} (each association holds a task, a \
                     socket and up to one PDU of memory)",
                    n.max_associations
                ),
            });
        }
        if let SpoolRetention::After(d) = self.storage.spool_retention {
            if d < MIN_RETENTION {
                return Err(ConfigError::Invalid {
                    key: "storage.spool_retention",
                    reason: format!(
                        "{} is shorter than {}: a re-run or a late instance would find the series \
                         gone; use \"when-done\" to delete as soon as the results are stored",
                        humantime_serde::re::humantime::format_duration(d),
                        humantime_serde::re::humantime::format_duration(MIN_RETENTION)
                    ),
                });
            }
        }
        for (key, d) in [
            ("node.association_timeout", n.association_timeout),
            ("node.artim_timeout", n.artim_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be longer than 0 s".to_owned(),
                });
            }
        }
        let retention = match self.storage.spool_retention {
            SpoolRetention::After(d) => d,
            _ => Duration::ZERO,
        };
        for (key, d) in [
            ("node.association_timeout", n.association_timeout),
            ("node.artim_timeout", n.artim_timeout),
            ("storage.spool_retention", retention),
            ("pipeline.quiet_period", self.pipeline.quiet_period),
            ("pipeline.max_wait", self.pipeline.max_wait),
            ("export.timeout", self.export.timeout),
        ] {
            if d > MAX_DURATION {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!(
                        "{} is longer than {} days (the node adds durations to clock readings)",
                        humantime_serde::re::humantime::format_duration(d),
                        MAX_DURATION.as_secs() / 86400
                    ),
                });
            }
        }
        if self.storage.min_free_bytes > MAX_MIN_FREE_BYTES {
            return Err(ConfigError::Invalid {
                key: "storage.min_free_bytes",
                reason: format!(
                    "{} is above {MAX_MIN_FREE_BYTES} (1 PiB): no disk could satisfy it, and every \
                     association would be refused",
                    self.storage.min_free_bytes
                ),
            });
        }
        routes::validate(self)?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.data_dir",
                reason: "empty path".to_owned(),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `osteon config check` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            origin: "effective configuration".to_owned(),
            reason: e.to_string(),
        })
    }

    /// The largest PDU we accept as dicom-ul takes it: 0 (unlimited) becomes its maximum.
    pub fn max_pdu_effective(&self) -> u32 {
        if self.node.max_pdu == 0 {
            MAX_MAX_PDU
        } else {
            self.node.max_pdu
        }
    }
}

mod routes;

/// Longest duration any setting may hold (10 years of 365 days): far beyond any sensible
/// value, and small enough that clock readings plus durations never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);
/// Upper bound of `node.max_associations`.
pub const MAX_ASSOCIATIONS: usize = 1024;
/// Upper bound of `storage.min_free_bytes` (1 PiB; TOML integers stop at 2^63 - 1 anyway).
pub const MAX_MIN_FREE_BYTES: u64 = 1 << 50;
/// Shortest `storage.spool_retention` duration.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);

/// AE title rules (PS3.5 6.2, VR AE): 1..=16 characters of the default character repertoire
/// without control characters or backslash, not only spaces.
pub fn check_ae_title(ae: &str) -> Result<(), String> {
    let trimmed = ae.trim_matches(' ');
    if trimmed.is_empty() {
        return Err(format!(
            "{ae:?}: an AE title must not be empty or all spaces"
        ));
    }
    if ae.len() > 16 {
        return Err(format!("{ae:?}: longer than 16 characters"));
    }
    if let Some(c) = ae.chars().find(|c| !(' '..='~').contains(c) || *c == '\\') {
        return Err(format!(
            "{ae:?}: character {c:?} is not allowed in an AE title"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.node.port, 11112);
        let text = c.to_toml().unwrap();
        assert!(text.contains("association_timeout = \"1m\""), "{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn file_then_environment_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("o.toml");
        std::fs::write(
            &f,
            "[node]\nae_title = \"NODE1\"\nport = 4242\ncalled_ae_case = \"ignore-case\"\n\
             [node.allow]\ncalling_ae_titles = [\"CT1\"]\n[storage]\nmin_free_bytes = 5\n",
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(&f),
            env(&[
                ("OSTEON__NODE__PORT", "5555"),
                ("OSTEON__NODE__ALLOW__CALLING_AE_TITLES", "A,B"),
                ("OSTEON__NODE__ALLOW__HOSTS", "10.0.0.1,::1"),
                ("OSTEON__NODE__ARTIM_TIMEOUT", "5s"),
                ("OSTEON__STORAGE__ACCEPT_OTHER_STORAGE", "true"),
                ("OSTEON_LOG", "debug"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node.ae_title, "NODE1");
        assert_eq!(c.node.port, 5555);
        assert_eq!(c.node.called_ae_case, AeCase::IgnoreCase);
        assert_eq!(c.node.allow.calling_ae_titles, vec!["A", "B"]);
        assert_eq!(c.node.allow.hosts.len(), 2);
        assert_eq!(c.node.artim_timeout, Duration::from_secs(5));
        assert_eq!(c.storage.min_free_bytes, 5);
        assert!(c.storage.accept_other_storage);
    }

    #[test]
    fn durations_beyond_ten_years_are_refused_by_key() {
        let mut c = Config::default();
        c.pipeline.max_wait = Duration::from_secs(3651 * 86400);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("pipeline.max_wait") && e.contains("longer than 3650 days"),
            "{e}"
        );
        let mut c = Config::default();
        c.storage.spool_retention = "200000000000000days".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.spool_retention"), "{e}");
        let mut c = Config::default();
        c.pipeline.max_wait = MAX_DURATION;
        c.storage.spool_retention = SpoolRetention::After(MAX_DURATION);
        c.validate().unwrap();
    }

    #[test]
    fn absurd_association_cap_and_nanosecond_retention_are_refused_by_key() {
        let mut c = Config::default();
        c.node.max_associations = 1_000_000;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("node.max_associations") && e.contains("1..=1024"),
            "{e}"
        );
        let mut c = Config::default();
        c.storage.spool_retention = "1ns".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("storage.spool_retention") && e.contains("shorter than 1m"),
            "{e}"
        );
        c.storage.spool_retention = "2min".parse().unwrap();
        assert!(c.validate().is_ok());
        c.storage.min_free_bytes = u64::MAX;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("storage.min_free_bytes") && e.contains("1 PiB"),
            "{e}"
        );
    }

    #[test]
    fn spool_retention_values() {
        let get = |v: &str| {
            Config::load_with_env(None, env(&[("OSTEON__STORAGE__SPOOL_RETENTION", v)]))
                .map(|c| c.storage.spool_retention)
        };
        assert_eq!(get("keep").unwrap(), SpoolRetention::Keep);
        assert_eq!(get("when-done").unwrap(), SpoolRetention::WhenDone);
        assert_eq!(
            get("2days").unwrap(),
            SpoolRetention::After(Duration::from_secs(2 * 86400))
        );
        let e = get("sometimes").unwrap_err();
        assert!(
            e.to_string().contains("spool_retention") || e.to_string().contains("sometimes"),
            "{e}"
        );
        assert!(get("0s").is_err());
        let text = Config::default().to_toml().unwrap();
        assert!(text.contains("spool_retention = \"7days\""), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("o.toml");
        std::fs::write(&f, "[node]\nae_titel = \"X\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("ae_titel"), "{e}");

        let e = Config::load_with_env(None, env(&[("OSTEON__NODE__MAX_PDU", "100")])).unwrap_err();
        assert!(e.to_string().starts_with("node.max_pdu"), "{e}");
        let e = Config::load_with_env(
            None,
            env(&[("OSTEON__NODE__AE_TITLE", "WAY_TOO_LONG_AE_TITLE")]),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("node.ae_title"), "{e}");
        let e =
            Config::load_with_env(Some(Path::new("/nonexistent/o.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        let c = Config::load_with_env(None, env(&[("OSTEON__NODE__MAX_PDU", "0")])).unwrap();
        assert_eq!(c.max_pdu_effective(), MAX_MAX_PDU);
        // An unknown enum value lists the values the key takes.
        std::fs::write(&f, "[[route]]\nname = \"r\"\nsegmenter = \"cnn\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cnn") && e.contains("(valid: \"default\"") && e.contains("\"threshold\""),
            "{e}"
        );
        std::fs::write(&f, "[pipeline]\nlate_instances = \"drop\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("(valid: \"rerun\" or \"report\")"), "{e}");
        // Route and destination keys cannot come from the environment: the variable is named.
        let e = Config::load_with_env(None, env(&[("OSTEON__ROUTE__POST_PROCESSING", "raw")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("OSTEON__ROUTE__POST_PROCESSING") && e.contains("configuration file"),
            "{e}"
        );
        std::fs::write(&f, "[[route]]\nname = \"r\"\npost_processing = \"fill\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fill") && e.ends_with("(valid: \"bones\", \"largest\" or \"raw\")"),
            "{e}"
        );
    }

    #[test]
    fn shipped_file_is_the_defaults() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/osteon.toml");
        let c = Config::load_with_env(Some(&f), env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn ae_title_rules() {
        assert!(check_ae_title("OSTEON").is_ok());
        assert!(check_ae_title(" CT 1 ").is_ok());
        assert!(check_ae_title("    ").is_err());
        assert!(check_ae_title("A\\B").is_err());
        assert!(check_ae_title("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(check_ae_title("Ä").is_err());
    }
}
