//! Loading the scans of a manifest for training: CT, label, normalisation, provenance hashes.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::sample::ScanData;
use super::TrainError;
use crate::eval::manifest::{ScanEntry, Split};
use crate::segment::cnn::normalise::{Normalisation, Normaliser};
use crate::segment::cnn::resample::InPlaneGrid;

/// Provenance of one scan: the SHA-256 of its source files.
#[derive(Clone, Debug, Serialize)]
pub struct ScanRecord {
    /// Manifest name.
    pub name: String,
    /// Scanner group.
    pub scanner: String,
    /// `train` or `validation`.
    pub split: String,
    /// Series folder or file.
    pub series: PathBuf,
    /// Number of files hashed under `series`.
    pub series_files: usize,
    /// SHA-256 over the `sha256sum`-style lines (`<hex>  <relative path>\n`, sorted by path) of the
    /// series files.
    pub series_sha256: String,
    /// SHA-256 of the label file (SEG/STL); empty for reference labels.
    pub label_sha256: String,
    /// Shape `[k, j, i]`.
    pub shape: [usize; 3],
    /// Bone voxels of the label.
    pub bone_voxels: u64,
    /// Normalisation anchors (grey values): air, tissue.
    pub anchors: [f32; 2],
}

/// SHA-256 of a file, hex.
///
/// # Errors
/// [`TrainError::Io`] naming the file.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Files under `root` (itself when a file), sorted.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, TrainError> {
    if root.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| TrainError::Io {
            path: d.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hash of a series folder: (number of files, SHA-256 of its `sha256sum` listing).
///
/// # Errors
/// [`TrainError::Io`].
pub fn sha256_series(root: &Path) -> Result<(usize, String), TrainError> {
    let files = files_under(root)?;
    let mut listing = String::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap_or(f);
        listing.push_str(&format!("{}  {}\n", sha256_file(f)?, rel.display()));
    }
    Ok((files.len(), hex(&Sha256::digest(listing.as_bytes()))))
}

/// Loads one manifest entry: CT (HU), label on its grid, normalised image; the provenance record.
/// With `working_mm` ([`TrainOptions::working_pixel_mm`](super::fit::TrainOptions)), a scan whose
/// PixelSpacing differs from it by more than 10 % is resampled in-plane to it
/// ([`InPlaneGrid`]): the image linearly (normalisation fitted on the native grey values), the
/// label as the interpolated label >= 0.5; the record keeps the native shape.
///
/// # Errors
/// [`TrainError::Scan`] naming the scan (CT or label failed, shapes differ, flat volume),
/// [`TrainError::Io`] when a source file cannot be hashed.
pub fn load_scan(
    entry: &ScanEntry,
    mode: Normalisation,
    margin: usize,
    working_mm: Option<f64>,
) -> Result<(ScanData, ScanRecord), TrainError> {
    let fail = |message: String| TrainError::Scan {
        scan: entry.name.clone(),
        message,
    };
    let ct = crate::label::load_ct(
        std::slice::from_ref(&entry.series),
        entry.series_selector.as_deref(),
    )
    .map_err(|e| fail(e.to_string()))?;
    let label = crate::eval::label_for(&ct, &entry.label).map_err(|e| fail(e.to_string()))?;
    if label.dim() != ct.hu.dim() {
        return Err(fail(format!(
            "label shape {:?} differs from CT {:?}",
            label.dim(),
            ct.hu.dim()
        )));
    }
    let norm = Normaliser::fit(mode, ct.hu.view()).map_err(|e| fail(e.to_string()))?;
    let grid = working_mm.and_then(|w| {
        let (_, rows, cols) = ct.hu.dim();
        InPlaneGrid::new(rows, cols, ct.geometry.pixel_spacing, w)
    });
    if let Some(g) = grid {
        g.check_size(ct.hu.dim().0).map_err(fail)?;
    }
    let (image, work_label): (Array3<f32>, Option<Array3<u8>>) = match grid {
        None => (ct.hu.mapv(|v| norm.apply(v)), None),
        Some(g) => (
            g.to_working(ct.hu.view()).mapv(|v| norm.apply(v)),
            Some(
                g.to_working(label.mapv(f32::from).view())
                    .mapv(|v| u8::from(v >= 0.5)),
            ),
        ),
    };
    let (series_files, series_sha256) = sha256_series(&entry.series)?;
    let label_sha256 = match &entry.label {
        crate::eval::manifest::LabelSpec::Seg { path }
        | crate::eval::manifest::LabelSpec::Stl { path } => sha256_file(path)?,
        crate::eval::manifest::LabelSpec::Reference { .. } => String::new(),
    };
    let (k, j, i) = ct.hu.dim();
    let record = ScanRecord {
        name: entry.name.clone(),
        scanner: entry.scanner.clone(),
        split: match entry.split {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Extra => "extra",
        }
        .to_owned(),
        series: entry.series.clone(),
        series_files,
        series_sha256,
        label_sha256,
        shape: [k, j, i],
        bone_voxels: label.iter().filter(|&&v| v != 0).count() as u64,
        anchors: [norm.anchors.air, norm.anchors.tissue],
    };
    let slice_mm = ct.geometry.slice_positions_mm();
    let label = work_label.unwrap_or(label);
    let data = ScanData::new(entry.name.clone(), image, label, norm.identity(), margin)
        .with_slice_positions(slice_mm);
    Ok((data, record))
}
