//! Decoder conformance: every file in shared/data/transfer-syntax decodes to the HU of its
//! uncompressed reference (exactly for lossless transfer syntaxes, within an RMSE bound for lossy
//! ones) or is refused with an error naming the transfer syntax.
//! `cargo test --test read_transfer_syntax -- --nocapture` prints the rows of docs/transfer-syntax.md.

mod common;

use std::path::{Path, PathBuf};

use ndarray::Array2;
use osteon::dicom::meta;
use osteon::dicom::pixels::{self, PixelError};
use osteon::dicom::series::AIR_HU;

/// What a file must decode to.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// HU identical to the reference.
    Exact,
    /// RMSE (HU) against the reference at most this.
    Lossy(f64),
    /// Refused with PixelError::Decode naming the transfer syntax.
    Refused,
}

fn decode(path: &Path) -> Result<(String, Array2<f32>), PixelError> {
    let obj = meta::open(path).unwrap_or_else(|e| panic!("{}: open failed: {e}", path.display()));
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let mut frames = pixels::decode_hu(&obj, path)?;
    assert_eq!(frames.len(), 1, "{}: one frame expected", path.display());
    Ok((ts, frames.remove(0)))
}

fn rmse(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    let n = a.len() as f64;
    (a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// RMSE (HU) over the voxels that are not padding ([`AIR_HU`] from PixelPaddingValue) in the
/// reference: lossy codecs move padding values off the exact PixelPaddingValue, and those voxels
/// then read as very low HU (e.g. -3024) instead of air, which says nothing about tissue fidelity.
fn rmse_tissue(a: &Array2<f32>, reference: &Array2<f32>) -> (f64, usize) {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(reference)
        .filter(|(_, r)| **r != AIR_HU)
        .map(|(x, y)| (*x as f64, *y as f64))
        .collect();
    let n = pairs.len();
    (
        (pairs.iter().map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n as f64).sqrt(),
        reference.len() - n,
    )
}

fn min_max(a: &Array2<f32>) -> (f32, f32) {
    a.iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

fn ts_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.53" => "JPEG Spectral Selection (Process 6 & 8, retired)",
        "1.2.840.10008.1.2.4.55" => "JPEG Full Progression (Process 10 & 12, retired)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless (Process 14)",
        "1.2.840.10008.1.2.4.70" => "JPEG Lossless SV1 (Process 14, selection value 1)",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless Only",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        _ => "?",
    }
}

fn cases() -> Vec<(PathBuf, PathBuf, Expect)> {
    let ts = common::shared_data().join("transfer-syntax");
    let nema = ts.join("nema-wg04-ct1-ct2");
    let cs = ts.join("cornerstone-ct-16ts");
    let mut v = Vec::new();
    for ct in ["CT1", "CT2"] {
        let r = nema.join(format!("{ct}_UNC.dcm"));
        for (suffix, e) in [
            ("UNC", Expect::Exact),
            ("RLE", Expect::Exact),
            ("JPLL", Expect::Exact),
            ("JLSL", Expect::Exact),
            ("JLSN", Expect::Lossy(5.0)),
            ("J2KR", Expect::Exact),
            ("J2KI", Expect::Lossy(if ct == "CT1" { 50.0 } else { 40.0 })),
        ] {
            v.push((nema.join(format!("{ct}_{suffix}.dcm")), r.clone(), e));
        }
    }
    let r = cs.join("CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm");
    for (name, e) in [
        ("CTImage.dcm", Expect::Exact),
        (
            "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1",
            Expect::Exact,
        ),
        (
            "LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2",
            Expect::Exact,
        ),
        (
            "BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2",
            Expect::Exact,
        ),
        (
            "DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99",
            Expect::Exact,
        ),
        (
            "JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50",
            Expect::Lossy(30.0),
        ),
        // 12-bit lossy JPEG: jpeg-decoder 0.3 has no 12-bit sample precision.
        (
            "JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51",
            Expect::Refused,
        ),
        // Retired transfer syntaxes without a decoder in dicom-rs 0.10.1.
        (
            "JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53",
            Expect::Refused,
        ),
        (
            "JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55",
            Expect::Refused,
        ),
        (
            "JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57",
            Expect::Exact,
        ),
        (
            "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70",
            Expect::Exact,
        ),
        (
            "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80",
            Expect::Exact,
        ),
        (
            "JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81",
            Expect::Lossy(2.0),
        ),
        (
            "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90",
            Expect::Exact,
        ),
        (
            "JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91",
            Expect::Lossy(2.0),
        ),
        (
            "RLELosslessTransferSyntax_1.2.840.10008.1.2.5",
            Expect::Exact,
        ),
    ] {
        let f = if name == "CTImage.dcm" {
            cs.join(name)
        } else {
            cs.join(format!("CTImage.dcm_{name}.dcm"))
        };
        v.push((f, r.clone(), e));
    }
    v.push((
        ts.join("pydicom_CT_small.dcm"),
        ts.join("pydicom_CT_small.dcm"),
        Expect::Exact,
    ));
    v
}

#[test]
fn every_transfer_syntax_file_decodes_or_is_refused() {
    let root = common::shared_data().join("transfer-syntax");
    let cases = cases();
    // Every file of the folder is covered.
    let mut listed: Vec<PathBuf> = cases.iter().map(|c| c.0.clone()).collect();
    listed.sort();
    let mut on_disk: Vec<PathBuf> = ["nema-wg04-ct1-ct2", "cornerstone-ct-16ts"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(root.join(d))
                .unwrap()
                .map(|e| e.unwrap().path())
        })
        .filter(|p| p.to_string_lossy().ends_with(".dcm"))
        .chain([root.join("pydicom_CT_small.dcm")])
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);

    println!("| file | transfer syntax | result |");
    println!("|---|---|---|");
    let mut failures = Vec::new();
    for (file, reference, expect) in cases {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let (_, want) =
            decode(&reference).unwrap_or_else(|e| panic!("reference {}: {e}", reference.display()));
        let got = decode(&file);
        let row = match (&got, expect) {
            (Ok((ts, hu)), Expect::Exact) => {
                let r = rmse(hu, &want);
                if hu != &want {
                    failures.push(format!("{rel}: not exact, RMSE {r:.3} HU"));
                }
                format!("| {rel} | {ts} {} | exact |", ts_name(ts))
            }
            (Ok((ts, hu)), Expect::Lossy(bound)) => {
                let all = rmse(hu, &want);
                let (r, padding) = rmse_tissue(hu, &want);
                if r > bound || hu.dim() != want.dim() {
                    failures.push(format!("{rel}: RMSE {r:.3} HU above {bound}"));
                }
                format!(
                    "| {rel} | {ts} {} | lossy, RMSE {r:.2} HU ({all:.2} HU incl. {padding} padding voxels) |",
                    ts_name(ts)
                )
            }
            (
                Err(PixelError::Decode {
                    transfer_syntax,
                    reason,
                    ..
                }),
                Expect::Refused,
            ) => {
                let uid = rel
                    .rsplit('_')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".dcm");
                assert_eq!(
                    transfer_syntax, uid,
                    "{rel}: the refusal names the transfer syntax"
                );
                assert!(got.as_ref().unwrap_err().to_string().contains(uid));
                format!(
                    "| {rel} | {transfer_syntax} {} | refused: {reason} |",
                    ts_name(transfer_syntax)
                )
            }
            (Ok((ts, _)), Expect::Refused) => {
                failures.push(format!("{rel}: {ts} decoded but a refusal was expected"));
                format!("| {rel} | {ts} | decoded (unexpected) |")
            }
            (Err(e), _) => {
                failures.push(format!("{rel}: {e}"));
                format!("| {rel} | ? | error: {e} |")
            }
        };
        println!("{row}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn reference_values() {
    let root = common::shared_data().join("transfer-syntax");
    let (ts, ct1) = decode(&root.join("nema-wg04-ct1-ct2/CT1_UNC.dcm")).unwrap();
    assert_eq!(ts, "1.2.840.10008.1.2.1");
    assert_eq!(ct1.dim(), (512, 512));
    let (lo, hi) = min_max(&ct1);
    println!("CT1 min {lo} max {hi} centre {}", ct1[[256, 256]]);
    // Padding -2000 is air; the rest is stored - 1024.
    assert_eq!((lo, hi, ct1[[256, 256]]), (-1024.0, 1254.0, -59.0));
    assert_eq!(ct1[[0, 0]], AIR_HU);
    let (_, small) = decode(&root.join("pydicom_CT_small.dcm")).unwrap();
    assert_eq!(small.dim(), (128, 128));
    let (lo, hi) = min_max(&small);
    println!(
        "CT_small min {lo} max {hi} [0,0] {} [64,64] {}",
        small[[0, 0]],
        small[[64, 64]]
    );
    assert_eq!(
        (lo, hi, small[[0, 0]], small[[64, 64]]),
        (-896.0, 1167.0, -849.0, 904.0)
    );
    let (_, cs) = decode(&root.join("cornerstone-ct-16ts/CTImage.dcm")).unwrap();
    let (lo, hi) = min_max(&cs);
    println!("cornerstone min {lo} max {hi} [256,256] {}", cs[[256, 256]]);
    assert_eq!(cs.dim(), (512, 512));
    assert_eq!((lo, hi, cs[[256, 256]]), (-3024.0, 1378.0, 67.0));
}
