//! `osteon qa`: the per-scanner table (jobs grouped by Manufacturer + ManufacturerModelName +
//! StationName + DeviceSerialNumber; count, median, interquartile range and min–max of each numeric
//! figure) and the CSV export (one row per job, the columns of [`QaRecord`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::QaRecord;

/// The scanner of a record: [Manufacturer, ManufacturerModelName, StationName, DeviceSerialNumber],
/// each trimmed, `-` when empty.
pub fn scanner_key(r: &QaRecord) -> [String; 4] {
    [
        &r.manufacturer,
        &r.model_name,
        &r.station_name,
        &r.device_serial_number,
    ]
    .map(|s| {
        let t = s.trim();
        if t.is_empty() {
            "-".to_owned()
        } else {
            t.to_owned()
        }
    })
}

/// Summary of one numeric figure over a scanner's jobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Jobs with a value.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile (linear interpolation between order statistics).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// Summary of `values` (non-finite values ignored); `None` when none is left.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let x = p * (v.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
        };
        Some(Spread {
            n: v.len(),
            median: q(0.5),
            q1: q(0.25),
            q3: q(0.75),
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Numeric figures of the table: (label with unit, value of a record).
pub type Figure = (&'static str, fn(&QaRecord) -> Option<f64>);

/// The figures of the per-scanner table, in print order.
pub const FIGURES: [Figure; 24] = [
    ("KVP (kV)", |r| r.kvp),
    ("tube current (mA)", |r| r.tube_current_ma),
    ("exposure (mAs)", |r| r.exposure_mas),
    ("SliceThickness (mm)", |r| r.slice_thickness_mm),
    ("PixelSpacing row (mm)", |r| Some(r.pixel_spacing_row_mm)),
    ("PixelSpacing col (mm)", |r| Some(r.pixel_spacing_col_mm)),
    ("tilt (deg)", |r| Some(r.tilt_deg)),
    ("slices", |r| Some(r.slices as f64)),
    ("queue wait (ms)", |r| Some(r.queue_wait_ms as f64)),
    ("read (ms)", |r| Some(r.read_ms)),
    ("segment (ms)", |r| Some(r.segment_ms)),
    ("mesh (ms)", |r| Some(r.mesh_ms)),
    ("SEG write (ms)", |r| Some(r.seg_write_ms)),
    ("STL write (ms)", |r| Some(r.stl_write_ms)),
    ("export (ms)", |r| r.export_ms),
    ("received->stored (s)", |r| {
        Some((r.done_ms? - r.last_received_ms?) as f64 / 1e3)
    }),
    ("bone volume (mL)", |r| Some(r.bone_volume_ml)),
    ("bone parts (components)", |r| Some(r.components as f64)),
    ("triangles", |r| Some(r.triangles as f64)),
    ("mean confidence", |r| r.mean_confidence),
    ("DSC vs threshold", |r| r.dsc_threshold_baseline),
    ("noise in air (HU)", |r| r.noise_air_hu),
    ("CNN air anchor (HU)", |r| r.air_anchor_hu),
    ("CNN tissue anchor (HU)", |r| r.tissue_anchor_hu),
];

/// Records grouped by [`scanner_key`], keys sorted.
pub fn by_scanner(records: &[QaRecord]) -> BTreeMap<[String; 4], Vec<&QaRecord>> {
    let mut groups: BTreeMap<[String; 4], Vec<&QaRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(scanner_key(r)).or_default().push(r);
    }
    groups
}

fn num(x: f64) -> String {
    if x == x.round() && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn distinct<'a>(rs: &[&'a QaRecord], f: impl Fn(&'a QaRecord) -> &'a str) -> String {
    let mut v: Vec<&str> = rs.iter().map(|r| f(r)).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

/// The per-scanner table as printed by `osteon qa`: a header line per scanner (jobs, kernels,
/// models) and one line per figure with n, median, IQR (`Q1 .. Q3`) and `min .. max` (`..`, not
/// `-`, so that negative values such as a gantry tilt read unambiguously). "bone parts" is the
/// number of connected components of the mask (26-connected): skull, mandible, vertebrae and any
/// loose fragment; a rise on one scanner points at noise or artefacts.
pub fn table(records: &[QaRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        out.push_str("no QA records (no job has been processed yet)\n");
        return out;
    }
    for (key, rs) in by_scanner(records) {
        let _ = writeln!(
            out,
            "Scanner: {} | {} | station {} | serial {}   jobs: {}",
            key[0],
            key[1],
            key[2],
            key[3],
            rs.len()
        );
        let _ = writeln!(
            out,
            "  kernels: {}   models: {}",
            distinct(&rs, |r| &r.convolution_kernel),
            distinct(&rs, |r| &r.model_version)
        );
        let _ = writeln!(
            out,
            "  {:<24} {:>3} {:>12} {:>25} {:>25}",
            "figure", "n", "median", "IQR (Q1 .. Q3)", "min .. max"
        );
        for (label, f) in FIGURES {
            let values: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            match Spread::of(&values) {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  {:<24} {:>3} {:>12} {:>25} {:>25}",
                        label,
                        s.n,
                        num(s.median),
                        format!("{} .. {}", num(s.q1), num(s.q3)),
                        format!("{} .. {}", num(s.min), num(s.max))
                    );
                }
                None => {
                    let _ = writeln!(out, "  {:<24} {:>3} {:>12}", label, 0, "-");
                }
            }
        }
        out.push('\n');
    }
    out
}

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV text (RFC 4180): a header with the [`QaRecord`] field names, one row per record;
/// absent values are empty.
pub fn csv(records: &[QaRecord]) -> String {
    let names: Vec<&str> = super::store::COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !["scanner", "recorded_ms"].contains(n))
        .collect();
    let mut out = names.join(",");
    out.push('\n');
    for r in records {
        let v = serde_json::to_value(r).unwrap_or(Value::Null);
        let row: Vec<String> = names
            .iter()
            .map(|n| csv_field(v.get(*n).unwrap_or(&Value::Null)))
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// `osteon qa`: the table of the QA rows in `data_dir/osteon.db`; with `csv_path`, also writes
/// the CSV there.
///
/// Errors: the database or the CSV file, as text naming the file.
pub fn qa_command(data_dir: &Path, csv_path: Option<&Path>) -> Result<String, String> {
    if let Some(path) = csv_path {
        crate::pipeline::report::check_csv_target(path)?;
    }
    if !data_dir.join(crate::pipeline::queue::DB_FILE).is_file() {
        return Err(format!(
            "{}: no database (has the node run with this storage.data_dir?)",
            data_dir.join(crate::pipeline::queue::DB_FILE).display()
        ));
    }
    let store = super::QaStore::open(data_dir).map_err(|e| e.to_string())?;
    let records = store.list().map_err(|e| e.to_string())?;
    let mut text = table(&records);
    if let Some(path) = csv_path {
        std::fs::write(path, csv(&records)).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(text, "CSV ({} rows): {}", records.len(), path.display());
    }
    Ok(text)
}
