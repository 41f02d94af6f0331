//! First pass of series assembly: read every file's header ([`super::header`]), drop what is not
//! axial CT (with a logged reason), group by SeriesInstanceUID, split acquisitions, drop duplicate
//! SOP Instance UIDs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::header::{read_header, InstanceHeader, SkipReason, Skipped, SliceDefect};

/// One acquisition of one series: the unit [`super::load_volume`] turns into a volume.
#[derive(Clone, Debug)]
pub struct SeriesGroup {
    pub series_instance_uid: String,
    pub acquisition_number: Option<i64>,
    /// Instances in file-walk order (sorted by path).
    pub instances: Vec<InstanceHeader>,
}

/// Result of [`scan`]: acquisitions to load and files left out.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Sorted by SeriesInstanceUID then AcquisitionNumber.
    pub groups: Vec<SeriesGroup>,
    pub skipped: Vec<Skipped>,
}

/// Scans files and folders (recursively): see [`scan_files`]. Unlistable folders are recorded as
/// [`SkipReason::Unreadable`].
pub fn scan(inputs: &[PathBuf]) -> Scan {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in inputs {
        walk(p, &mut files, &mut skipped);
    }
    files.sort();
    files.dedup();
    let mut s = scan_files(&files);
    skipped.append(&mut s.skipped);
    s.skipped = skipped;
    s
}

fn walk(p: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>) {
    if p.is_dir() {
        match std::fs::read_dir(p) {
            Ok(rd) => {
                for e in rd.flatten() {
                    walk(&e.path(), files, skipped);
                }
            }
            Err(e) => skipped.push(Skipped {
                path: p.to_owned(),
                reason: SkipReason::Unreadable(e.to_string()),
            }),
        }
    } else {
        files.push(p.to_owned());
    }
}

/// Reads the header of each file (in parallel) and groups the CT instances: by SeriesInstanceUID,
/// then by AcquisitionNumber when every acquisition holds at least 2 slices (else the series stays
/// one group with `acquisition_number: None`), then by geometry (Rows/Columns, IOP, PixelSpacing) when every
/// geometry sub-group holds at least 2 slices (a lone odd slice stays in place, and
/// [`super::load_volume`] refuses the acquisition as inconsistent). Duplicate SOP Instance UIDs
/// keep the first path. Every file left out is logged (`tracing::info`) and listed in
/// [`Scan::skipped`].
pub fn scan_files(paths: &[PathBuf]) -> Scan {
    let results: Vec<Result<InstanceHeader, Skipped>> =
        paths.par_iter().map(|p| read_header(p)).collect();
    let mut scan = Scan::default();
    let mut by_series: BTreeMap<(Identity, Option<i64>), Vec<InstanceHeader>> = BTreeMap::new();
    let mut seen: BTreeMap<String, InstanceHeader> = BTreeMap::new();
    for r in results {
        match r {
            Err(s) => {
                tracing::info!(file = %s.path.display(), reason = %s.reason, "file skipped");
                scan.skipped.push(s);
            }
            Ok(mut h) => {
                if let Some(kept) = seen.get(&h.sop_instance_uid) {
                    if same_content(kept, &h) {
                        let s = Skipped {
                            path: h.path.clone(),
                            reason: SkipReason::Duplicate {
                                kept: kept.path.clone(),
                            },
                        };
                        tracing::info!(file = %s.path.display(), reason = %s.reason, "file skipped");
                        scan.skipped.push(s);
                        continue;
                    }
                    tracing::warn!(file = %h.path.display(), other = %kept.path.display(), "same SOP Instance UID, different content");
                    h.defect = Some(SliceDefect::ConflictingDuplicate {
                        other: kept.path.clone(),
                    });
                } else {
                    seen.insert(h.sop_instance_uid.clone(), h.clone());
                }
                let key = (identity(&h), h.acquisition_number);
                by_series.entry(key).or_default().push(h);
            }
        }
    }
    // Merge the acquisitions of a series back when any of them holds a single slice (e.g. GE
    // axial scanning gives every slice its own AcquisitionNumber).
    let mut series: BTreeMap<Identity, Vec<(Option<i64>, Vec<InstanceHeader>)>> = BTreeMap::new();
    for ((id, acq), instances) in by_series {
        series.entry(id).or_default().push((acq, instances));
    }
    for (id, mut acquisitions) in series {
        let series_instance_uid = id.1.clone();
        let slices = |v: &Vec<InstanceHeader>| v.iter().map(|h| h.frames.len()).sum::<usize>();
        if acquisitions.len() > 1 {
            if acquisitions.iter().all(|(_, v)| slices(v) >= 2) {
                tracing::info!(series = %series_instance_uid, acquisitions = acquisitions.len(), "series split by AcquisitionNumber");
            } else {
                let all = acquisitions.drain(..).flat_map(|(_, v)| v).collect();
                acquisitions.push((None, all));
            }
        }
        for (acquisition_number, instances) in acquisitions {
            for part in split_by_geometry(instances) {
                scan.groups.push(SeriesGroup {
                    series_instance_uid: series_instance_uid.clone(),
                    acquisition_number,
                    instances: part,
                });
            }
        }
    }
    scan
}

/// (StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID, PatientID): slices that differ in
/// any of these never share a volume, whatever their SeriesInstanceUID says.
type Identity = (String, String, String, String);

fn identity(h: &InstanceHeader) -> Identity {
    let i = &h.info;
    (
        i.study_instance_uid.clone(),
        i.series_instance_uid.clone(),
        i.frame_of_reference_uid.clone(),
        i.patient_id.clone(),
    )
}

/// Two instances with the same SOP Instance UID are the same when their files hold the same bytes
/// (a copy sent twice); anything else is a conflict.
fn same_content(a: &InstanceHeader, b: &InstanceHeader) -> bool {
    if a.frames != b.frames {
        return false;
    }
    match (std::fs::metadata(&a.path), std::fs::metadata(&b.path)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    matches!((std::fs::read(&a.path), std::fs::read(&b.path)), (Ok(x), Ok(y)) if x == y)
}

/// Geometry key: Rows, Columns, IOP and PixelSpacing rounded to 1e-4.
fn geometry_key(h: &InstanceHeader) -> Vec<i64> {
    let f = &h.frames[0];
    let mut k = vec![h.rows as i64, h.cols as i64];
    k.extend(
        f.iop
            .iter()
            .chain(f.pixel_spacing.iter())
            .map(|v| (v * 1e4).round() as i64),
    );
    k
}

fn split_by_geometry(instances: Vec<InstanceHeader>) -> Vec<Vec<InstanceHeader>> {
    let mut parts: BTreeMap<Vec<i64>, Vec<InstanceHeader>> = BTreeMap::new();
    for h in &instances {
        parts.entry(geometry_key(h)).or_default().push(h.clone());
    }
    let slices = |v: &Vec<InstanceHeader>| v.iter().map(|h| h.frames.len()).sum::<usize>();
    if parts.len() > 1 && parts.values().all(|v| slices(v) >= 2) {
        tracing::info!(
            series = %instances[0].info.series_instance_uid,
            groups = parts.len(),
            "acquisition split by Rows/Columns/IOP/PixelSpacing"
        );
        parts.into_values().collect()
    } else {
        vec![instances]
    }
}
