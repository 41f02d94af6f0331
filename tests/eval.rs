//! Evaluation metrics and manifests through the public API: DSC of known overlaps, signed surface
//! deviation of concentric spheres (value and sign), the rim band, manifest parsing and validation
//! errors, and `evaluate_manifest` end to end on a synthetic scan with a SEG label.

mod common;

use std::collections::HashMap;
use std::path::Path;

use ndarray::Array3;
use osteon::dicom::ct_writer::write_ct_series;
use osteon::dicom::geometry::Geometry;
use osteon::dicom::seg::{build_seg, SegmentDescription};
use osteon::dicom::series::SeriesInfo;
use osteon::eval::manifest::{LabelSpec, Manifest, ManifestError, Split};
use osteon::eval::metrics::{deviations, dice, Deviation, Region, RimBand, SurfaceIndex};
use osteon::eval::{evaluate_manifest, MAX_DEVIATION_MM};
use osteon::mesh::Mesh;
use osteon::phantom::scanner;
use osteon::segment::fill;
use osteon::segment::threshold::ThresholdSegmenter;
use osteon::segment::Mask;

/// Icosphere of radius `r` (mm) around `c`: icosahedron subdivided `level` times, vertices projected
/// on the sphere; outward, closed.
fn icosphere(c: [f64; 3], r: f64, level: u32) -> Mesh {
    let t = (1.0 + 5f64.sqrt()) / 2.0;
    let mut v: Vec<[f64; 3]> = vec![
        [-1.0, t, 0.0],
        [1.0, t, 0.0],
        [-1.0, -t, 0.0],
        [1.0, -t, 0.0],
        [0.0, -1.0, t],
        [0.0, 1.0, t],
        [0.0, -1.0, -t],
        [0.0, 1.0, -t],
        [t, 0.0, -1.0],
        [t, 0.0, 1.0],
        [-t, 0.0, -1.0],
        [-t, 0.0, 1.0],
    ];
    let mut f: Vec<[u32; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    for _ in 0..level {
        let mut mid: HashMap<(u32, u32), u32> = HashMap::new();
        let mut next = Vec::with_capacity(f.len() * 4);
        for tri in &f {
            let mut m = [0u32; 3];
            for e in 0..3 {
                let (a, b) = (tri[e], tri[(e + 1) % 3]);
                let key = (a.min(b), a.max(b));
                m[e] = *mid.entry(key).or_insert_with(|| {
                    let (p, q) = (v[a as usize], v[b as usize]);
                    v.push([
                        (p[0] + q[0]) / 2.0,
                        (p[1] + q[1]) / 2.0,
                        (p[2] + q[2]) / 2.0,
                    ]);
                    (v.len() - 1) as u32
                });
            }
            next.push([tri[0], m[0], m[2]]);
            next.push([tri[1], m[1], m[0]]);
            next.push([tri[2], m[2], m[1]]);
            next.push(m);
        }
        f = next;
    }
    let vertices = v
        .iter()
        .map(|p| {
            let l = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            [
                (c[0] + r * p[0] / l) as f32,
                (c[1] + r * p[1] / l) as f32,
                (c[2] + r * p[2] / l) as f32,
            ]
        })
        .collect();
    Mesh {
        vertices,
        triangles: f,
    }
}

fn points(m: &Mesh) -> Vec<[f64; 3]> {
    osteon::eval::metrics::surface_points(m)
}

#[test]
fn icosphere_is_closed_and_outward() {
    let s = icosphere([0.0; 3], 10.0, 3);
    let t = osteon::mesh::topology(&s);
    assert!(t.is_watertight(), "{t:?}");
    assert!(t.signed_volume_mm3 > 0.0);
}

#[test]
fn concentric_spheres_give_plus_or_minus_half_a_millimetre() {
    let c = [12.0, -30.0, 55.0];
    let reference = icosphere(c, 20.0, 5);
    let pts = points(&reference);
    // Predicted larger (r + 0.5): the reference points lie inside it -> +0.5 mm.
    let larger = SurfaceIndex::new(&icosphere(c, 20.5, 5)).expect("index");
    let d = Deviation::of(
        &deviations(&pts, &larger, MAX_DEVIATION_MM),
        MAX_DEVIATION_MM,
    );
    assert_eq!(d.n, pts.len());
    // Chordal error of the predicted icosphere (edge ~1.1 mm at r 20.5) is below 0.01 mm.
    assert!((d.mean_mm - 0.5).abs() < 0.01, "{d:?}");
    assert!(d.sd_mm < 0.01, "{d:?}");
    assert!((d.mean_abs_mm - 0.5).abs() < 0.01, "{d:?}");
    // Predicted smaller: -0.5 mm.
    let smaller = SurfaceIndex::new(&icosphere(c, 19.5, 5)).expect("index");
    let d = Deviation::of(
        &deviations(&pts, &smaller, MAX_DEVIATION_MM),
        MAX_DEVIATION_MM,
    );
    assert!((d.mean_mm + 0.5).abs() < 0.01, "{d:?}");
    // Offset 7 mm: everything beyond the +-5 mm window is left out.
    let far = SurfaceIndex::new(&icosphere(c, 27.0, 4)).expect("index");
    let d = Deviation::of(&deviations(&pts, &far, MAX_DEVIATION_MM), MAX_DEVIATION_MM);
    assert_eq!((d.n, d.n_total), (0, pts.len()));
    assert!(d.mean_mm.is_nan());
    // Same radius, coarse mesh: its flat faces cut inside the true sphere, so the fine points lie
    // just outside it (negative, the chordal sag); points nearest to its edges and vertices get their
    // sign from the pseudo-normals.
    let coarse = SurfaceIndex::new(&icosphere(c, 20.0, 2)).expect("index");
    let d = Deviation::of(
        &deviations(&pts, &coarse, MAX_DEVIATION_MM),
        MAX_DEVIATION_MM,
    );
    assert!(d.mean_mm < 0.0 && d.mean_mm > -0.5, "{d:?}");
}

#[test]
fn rim_band_selects_the_points_near_the_rim() {
    let c = [0.0, 0.0, 0.0];
    let reference = icosphere(c, 20.0, 4);
    let pts = points(&reference);
    let larger = SurfaceIndex::new(&icosphere(c, 20.5, 4)).expect("index");
    let all = deviations(&pts, &larger, MAX_DEVIATION_MM);
    // A ring of latitude z = 10 (radius sqrt(300)); band 2 mm wide.
    let ring: Vec<[f64; 3]> = (0..=64)
        .map(|n| {
            let a = n as f64 / 64.0 * std::f64::consts::TAU;
            [300f64.sqrt() * a.cos(), 300f64.sqrt() * a.sin(), 10.0]
        })
        .collect();
    let band = RimBand {
        polylines: vec![ring],
        radius_mm: 2.0,
    };
    let rim = band.filter(&pts, &all);
    let in_band = pts
        .iter()
        .filter(|p| (p[2] - 10.0).abs() < 1.0 && p[2] > 0.0)
        .count();
    assert!(
        rim.len() >= in_band && rim.len() < pts.len() / 5,
        "{} {in_band}",
        rim.len()
    );
    let d = Deviation::of(&rim, MAX_DEVIATION_MM);
    assert!((d.mean_mm - 0.5).abs() < 0.02, "{d:?}");
}

#[test]
fn dice_counts_only_inside_the_reference_region() {
    let mut reference = Mask::zeros((10, 10, 10));
    reference.slice_mut(ndarray::s![2..6, 2..6, 2..6]).fill(1); // 64
    let mut predicted = Mask::zeros((10, 10, 10));
    predicted.slice_mut(ndarray::s![3..7, 2..6, 2..6]).fill(1); // 48 shared, 16 beyond k = 5
    predicted[[9, 9, 9]] = 1; // outside the region: a table voxel
    let region = Region::bounding_box(&reference, 0).expect("bbox");
    assert_eq!(region.voxels(), 64);
    let o = dice(&predicted, &reference, &region).expect("dice");
    assert_eq!((o.tp, o.fp, o.fn_, o.tn), (48, 0, 16, 0));
    assert_eq!(o.dsc, 96.0 / 112.0);
    let o = dice(&predicted, &reference, &Region::full([10, 10, 10])).expect("dice");
    assert_eq!((o.tp, o.fp, o.fn_), (48, 17, 16));
    assert_eq!(o.dsc, 96.0 / 129.0);
    assert!(dice(&predicted, &Mask::zeros((10, 10, 9)), &region).is_err());
}

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    Manifest::parse(text, base, Path::new("test.toml"))
}

#[test]
fn manifest_parses_and_reports_every_problem() {
    let ok = parse(
        r#"
        [manifest]
        name = "t"
        root = ".."
        [[scan]]
        name = "ge"
        series = "shared/data/ct/ge-hispeed-dual-head-tilt"
        scanner = "ge-hispeed"
        split = "train"
        fold = 1
        label = { kind = "reference", threshold_hu = 300.0 }
        "#,
    )
    .expect("valid");
    assert_eq!(ok.scan.len(), 1);
    assert_eq!(ok.scan[0].split, Split::Train);
    assert_eq!(ok.scan[0].fold, Some(1));
    assert!(ok.scan[0].series.is_dir());
    let opts = ok.scan[0].label.reference_options().expect("reference");
    assert_eq!(opts.threshold_hu, 300.0);
    assert_eq!(opts.opening_radius_mm, 1.0);

    // Unknown label kind: parse error naming the line.
    let err = parse(
        "[manifest]\nname = \"t\"\n[[scan]]\nname = \"a\"\nseries = \".\"\nscanner = \"x\"\n\
         label = { kind = \"nifti\", path = \"a.nii\" }\n",
    )
    .expect_err("bad kind");
    let msg = err.to_string();
    assert!(matches!(err, ManifestError::Parse { .. }), "{msg}");
    assert!(msg.contains("nifti") && msg.contains("line 7"), "{msg}");

    // Misspelt field: refused, not ignored.
    let err = parse(
        "[manifest]\nname = \"t\"\n[[scan]]\nname = \"a\"\nseries = \".\"\nscaner = \"x\"\n\
         label = { kind = \"reference\" }\n",
    )
    .expect_err("unknown field");
    assert!(err.to_string().contains("scaner"), "{err}");

    // Missing files, duplicate names, bad rim: all listed at once.
    let err = parse(
        r#"
        [manifest]
        name = "t"
        [[scan]]
        name = "a"
        series = "no/such/series"
        scanner = "x"
        label = { kind = "seg", path = "no/such/label.dcm" }
        [[scan]]
        name = "a"
        series = "."
        scanner = "x"
        label = { kind = "stl", path = "Cargo.toml" }
        rim = { polylines = [[[0.0, 0.0, 0.0]]], radius_mm = 0.0 }
        "#,
    )
    .expect_err("invalid");
    match err {
        ManifestError::Invalid { problems, .. } => {
            assert_eq!(problems.len(), 4, "{problems:?}");
            assert!(problems[0].contains("no/such/series"));
            assert!(problems[1].contains("no/such/label.dcm"));
            assert!(problems[2].contains("name used twice"));
            assert!(problems[3].contains("radius_mm"));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_real_manifest_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/real.toml");
    let m = Manifest::load(&path).expect("manifests/real.toml");
    assert_eq!(m.scan.len(), 2);
    assert!(m
        .scan
        .iter()
        .all(|s| s.series.is_dir() && matches!(s.label, LabelSpec::Reference { .. })));
}

/// `manifests/<name>` read as TOML only (paths unchecked): the phantoms need not be generated for
/// the checks that use it.
fn manifest_toml(name: &str) -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_independent_test_set_holds_no_scan_a_shipped_model_trained_on() {
    // manifests/independent.toml (session 11): 10 virtual scanners x 3 seeds + the 2 real series,
    // all `test`; none of them may be a training or validation scan of a model in models/, nor a
    // phantom of the standard manifest (seeds 1-3) that the models draw their training sets from.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = manifest_toml;
    let m = read("independent.toml");
    assert_eq!(m.scan.len(), 32);
    assert!(m.scan.iter().all(|s| s.split == Split::Test));
    let mut per_scanner: HashMap<&str, usize> = HashMap::new();
    for s in &m.scan {
        *per_scanner.entry(s.scanner.as_str()).or_default() += 1;
    }
    assert_eq!(per_scanner.len(), 12);
    assert_eq!(per_scanner.values().filter(|&&n| n == 3).count(), 10);
    let standard = read("standard.toml");
    let phantoms = m.scan.iter().filter(|s| s.phantom.is_some());
    for s in phantoms {
        assert!(
            standard
                .scan
                .iter()
                .all(|t| t.series != s.series && t.name != s.name),
            "{} is a standard phantom",
            s.name
        );
    }
    let mut models = 0;
    for entry in std::fs::read_dir(root.join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let trained: Vec<&str> = doc["training"]["scans"]
            .as_array()
            .expect("training.scans")
            .iter()
            .map(|t| t["name"].as_str().expect("name"))
            .collect();
        assert!(
            trained.len() >= 20,
            "{}: {} scans",
            path.display(),
            trained.len()
        );
        for s in &m.scan {
            assert!(
                !trained.contains(&s.name.as_str()),
                "{} trained on {}",
                path.display(),
                s.name
            );
        }
        models += 1;
    }
    // The default pair (osteon-cnn, osteon-cnn-thick) and three experimental models.
    assert_eq!(models, 5, "a model JSON per shipped model");
}

#[test]
fn the_submillimetre_manifest_is_every_independent_phantom_the_marrow_fill_runs_on() {
    // manifests/independent-submm.toml (session 16): the independent phantoms whose virtual
    // scanner's pixels and slice spacing are all <= 0.7 mm (segment::fill::applies_to), each entry
    // as it is in independent.toml; a change to the fill is validated on these.
    let m = manifest_toml("independent-submm.toml");
    let independent = manifest_toml("independent.toml");
    let fine = |scanner: &str| {
        scanner::profile(scanner)
            .is_some_and(|p| fill::applies_to([p.pixel_mm, p.pixel_mm], p.slice_spacing_mm))
    };
    let expected: Vec<&str> = independent
        .scan
        .iter()
        .filter(|s| s.phantom.is_some() && fine(&s.scanner))
        .map(|s| s.name.as_str())
        .collect();
    let names: Vec<&str> = m.scan.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, expected);
    assert_eq!(names.len(), 9);
    for s in &m.scan {
        let t = independent.scan.iter().find(|t| t.name == s.name).unwrap();
        assert_eq!(
            (&s.series, &s.scanner, s.split, &s.phantom),
            (&t.series, &t.scanner, t.split, &t.phantom)
        );
        assert!(matches!(&s.label, LabelSpec::Seg { path } if path.parent() == s.series.parent()));
    }
}

#[test]
fn the_reference_on_phantoms_manifest_scores_each_phantom_against_both_labels() {
    // manifests/reference-on-phantoms.toml (session 15): each independent phantom twice, once
    // against its exact SEG and once against the reference procedure run on its CT, in groups
    // `<profile>-exact` / `<profile>-reference`; all `test`, none a standard phantom.
    let read = manifest_toml;
    let m = read("reference-on-phantoms.toml");
    let independent = read("independent.toml");
    assert_eq!(m.scan.len(), 12);
    let mut series: HashMap<&Path, (usize, usize)> = HashMap::new();
    for s in &m.scan {
        assert_eq!(s.split, Split::Test, "{}", s.name);
        assert!(
            independent
                .scan
                .iter()
                .any(|t| t.series == s.series && t.phantom == s.phantom),
            "{} is not an independent phantom",
            s.name
        );
        let entry = series.entry(s.series.as_path()).or_default();
        match &s.label {
            LabelSpec::Seg { path } => {
                assert!(s.name.ends_with("-exact") && s.scanner.ends_with("-exact"));
                assert_eq!(path.parent(), s.series.parent(), "{}", s.name);
                entry.0 += 1;
            }
            LabelSpec::Reference { .. } => {
                assert!(s.name.ends_with("-reference") && s.scanner.ends_with("-reference"));
                entry.1 += 1;
            }
            other => panic!("{}: unexpected label {other:?}", s.name),
        }
    }
    assert_eq!(series.len(), 6);
    assert!(series.values().all(|&n| n == (1, 1)));
}

/// Evaluates (threshold) a one-scan manifest `name` in `dir` whose scan has the TOML lines `scan`,
/// and returns the error that stopped the scan.
fn first_scan_error(dir: &Path, name: &str, scan: &str) -> String {
    let manifest = dir.join(format!("{name}.toml"));
    std::fs::write(
        &manifest,
        format!("[manifest]\nname = \"{name}\"\n[[scan]]\nname = \"s\"\nscanner = \"p\"\n{scan}\n"),
    )
    .expect("manifest");
    let e = evaluate_manifest(
        &manifest,
        &ThresholdSegmenter::default(),
        &dir.join(format!("{name}.csv")),
    )
    .expect("evaluate");
    e.scans[0].score.as_ref().expect_err("scan refused").clone()
}

#[test]
fn evaluate_manifest_scores_a_synthetic_scan_exactly() {
    // A 30-slice ellipsoidal shell; the label SEG is the shell itself and the CT is 1200 HU inside,
    // so the threshold baseline reproduces it exactly (DSC 1, deviation 0); a second scan whose
    // label is the shell grown by one voxel in-plane gives a negative deviation.
    let g = Geometry {
        ipp: (0..30).map(|k| [-20.0, -20.0, k as f64 * 1.25]).collect(),
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [0.8, 0.8],
        rows: 50,
        cols: 50,
    };
    let mask: Mask = Array3::from_shape_fn((30, 50, 50), |(k, j, i)| {
        let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
        let r =
            ((p[0] - 0.0).powi(2) + (p[1] - 0.0).powi(2) + ((p[2] - 18.0) / 1.2).powi(2)).sqrt();
        u8::from((11.0..=16.0).contains(&r))
    });
    let grown: Mask = Array3::from_shape_fn((30, 50, 50), |(k, j, i)| {
        let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
        let r =
            ((p[0] - 0.0).powi(2) + (p[1] - 0.0).powi(2) + ((p[2] - 18.0) / 1.2).powi(2)).sqrt();
        u8::from((10.0..=17.0).contains(&r))
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let ct = tmp.path().join("ct");
    let hu = mask.mapv(|v| if v != 0 { 1200.0f32 } else { -1000.0 });
    let info = SeriesInfo {
        patient_name: "EVAL^SYNTH".into(),
        patient_id: "OSTEON-TEST".into(),
        series_number: Some(1),
        ..Default::default()
    };
    write_ct_series(hu.view(), &g, &info, &ct).expect("write CT");
    let vol = osteon::label::load_ct(std::slice::from_ref(&ct), None).expect("load");
    for (name, m) in [("exact.dcm", &mask), ("grown.dcm", &grown)] {
        let seg = build_seg(&vol, m.view(), &SegmentDescription::default()).expect("seg");
        osteon::dicom::seg::write(&seg, &tmp.path().join(name)).expect("write seg");
    }
    std::fs::write(
        tmp.path().join("m.toml"),
        r#"
        [manifest]
        name = "synthetic"
        [[scan]]
        name = "exact"
        series = "ct"
        scanner = "synthetic-a"
        label = { kind = "seg", path = "exact.dcm" }
        [[scan]]
        name = "grown"
        series = "ct"
        scanner = "synthetic-b"
        label = { kind = "seg", path = "grown.dcm" }
        "#,
    )
    .expect("manifest");
    let csv = tmp.path().join("eval.csv");
    let e = evaluate_manifest(
        &tmp.path().join("m.toml"),
        &ThresholdSegmenter::default(),
        &csv,
    )
    .expect("evaluate");
    assert_eq!(e.failed(), 0, "{}", e.table());
    let exact = e.scans[0].score.as_ref().expect("exact");
    assert_eq!(exact.overlap.dsc, 1.0);
    assert_eq!(exact.deviation.mean_mm, 0.0);
    assert_eq!(exact.deviation.n, exact.deviation.n_total);
    assert_eq!(exact.hd95_mm, 0.0);
    assert_eq!(
        (exact.p95_ref_to_pred_mm, exact.p95_pred_to_ref_mm),
        (0.0, 0.0)
    );
    let grown = e.scans[1].score.as_ref().expect("grown");
    assert!(
        grown.overlap.dsc < 0.9 && grown.overlap.dsc > 0.5,
        "{grown:?}"
    );
    // The label surface lies about 1 mm outside the prediction on both sides of the shell.
    assert!(
        grown.deviation.mean_mm < -0.5 && grown.deviation.mean_mm > -1.5,
        "{grown:?}"
    );
    // Both surfaces 1 mm apart in-plane and 1.2 mm along z: HD95 near that, from both directions.
    assert!(grown.hd95_mm > 0.8 && grown.hd95_mm < 1.6, "{grown:?}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(text.lines().count(), 3);
    assert!(text
        .lines()
        .nth(1)
        .expect("row")
        .starts_with("exact,synthetic-a,seg,1.00000,"));
    let table = e.table();
    assert!(
        table.contains("synthetic-a") && table.contains("synthetic-b"),
        "{table}"
    );
    assert!(
        !tmp.path().join("eval.csv.tmp").exists(),
        "no temporary CSV left"
    );
    // A run stopped part-way (here a segmenter that dies on the second scan) keeps the rows it
    // had scored: the CSV is rewritten after every scan.
    struct DiesOnSecondScan(ThresholdSegmenter, std::sync::atomic::AtomicUsize);
    impl osteon::segment::Segmenter for DiesOnSecondScan {
        fn identity(&self) -> osteon::segment::AlgorithmIdentity {
            self.0.identity()
        }
        fn segment(
            &self,
            ct: &osteon::dicom::series::CtVolume,
        ) -> Result<Mask, osteon::segment::SegmentError> {
            let n = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(n == 0, "killed during the second scan");
            self.0.segment(ct)
        }
    }
    let stopped = tmp.path().join("stopped.csv");
    let dies = DiesOnSecondScan(ThresholdSegmenter::default(), 0.into());
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        evaluate_manifest(&tmp.path().join("m.toml"), &dies, &stopped)
    }));
    assert!(run.is_err(), "the second scan stops the run");
    let partial = std::fs::read_to_string(&stopped).expect("the partial CSV");
    assert_eq!(partial.lines().count(), 2, "{partial}");
    assert_eq!(
        partial
            .lines()
            .nth(1)
            .map(|l| l.split(',').take(4).collect::<Vec<_>>()),
        Some(vec!["exact", "synthetic-a", "seg", "1.00000"]),
        "{partial}"
    );
    // The rewrite keeps what the user made of the file: a symbolic link stays a link (its target
    // gets the rows), and a rerun keeps the file's permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let target = tmp.path().join("target.csv");
        std::fs::write(&target, "old\n").expect("target");
        let link = tmp.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        evaluate_manifest(
            &tmp.path().join("m.toml"),
            &ThresholdSegmenter::default(),
            &link,
        )
        .expect("evaluate through the link");
        assert!(std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&target)
                .expect("target")
                .lines()
                .count(),
            3
        );
        std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        evaluate_manifest(
            &tmp.path().join("m.toml"),
            &ThresholdSegmenter::default(),
            &csv,
        )
        .expect("rerun");
        let mode = std::fs::metadata(&csv).expect("csv").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
    // Another series of the same frame of reference, same positions: the SEG made for the first
    // series is refused for it (its frames name the first series' slices).
    let first = osteon::label::load_ct(std::slice::from_ref(&ct), None).expect("load");
    let twin = SeriesInfo {
        study_instance_uid: first.info.study_instance_uid.clone(),
        frame_of_reference_uid: first.info.frame_of_reference_uid.clone(),
        series_number: Some(2),
        ..info.clone()
    };
    write_ct_series(hu.view(), &g, &twin, &tmp.path().join("ct2")).expect("write twin");
    let err = first_scan_error(
        tmp.path(),
        "twin",
        "series = \"ct2\"\nlabel = { kind = \"seg\", path = \"exact.dcm\" }",
    );
    assert!(
        err.contains("frame 1 derives from SOP Instance UID") && err.contains("another series"),
        "{err}"
    );
}

#[test]
fn phantom_regions_are_scored_from_phantom_json() {
    use osteon::phantom::{generate, scanner, write_phantom, PhantomOptions};
    // A small craniotomy phantom (seed 3) and one without; 24 slices about 8 mm apart and 1.8 mm
    // pixels, so the 3 mm rim band holds only some tens of bone voxels.
    let tmp = tempfile::tempdir().expect("tmp");
    let profile = scanner::profile("philips-ingenuity-ub").expect("profile");
    for (dir, crani) in [("a", true), ("b", false)] {
        let opts = PhantomOptions {
            slices: Some(24),
            matrix: Some(128),
            craniotomy: Some(crani),
            stl: false,
            ..Default::default()
        };
        write_phantom(&mut generate(profile, 3, &opts), &tmp.path().join(dir)).expect("write");
    }
    let regions = osteon::eval::regions::ScoringRegions::from_phantom_json(
        &tmp.path().join("a/phantom.json"),
    )
    .expect("regions");
    assert!(!regions.defect_rim.is_empty());
    assert!(regions.skull_base_z[1] - regions.skull_base_z[0] > 30.0);
    std::fs::write(
        tmp.path().join("m.toml"),
        r#"
        [manifest]
        name = "regions"
        [[scan]]
        name = "crani"
        series = "a/ct"
        scanner = "p"
        label = { kind = "seg", path = "a/label-seg.dcm" }
        phantom = "a/phantom.json"
        [[scan]]
        name = "intact"
        series = "b/ct"
        scanner = "p"
        label = { kind = "seg", path = "b/label-seg.dcm" }
        phantom = "b/phantom.json"
        "#,
    )
    .expect("manifest");
    let csv = tmp.path().join("eval.csv");
    let e = evaluate_manifest(
        &tmp.path().join("m.toml"),
        &ThresholdSegmenter::default(),
        &csv,
    )
    .expect("evaluate");
    assert_eq!(e.failed(), 0, "{}", e.table());
    println!("{}", e.table());
    let a = e.scans[0].score.as_ref().expect("crani");
    let rim = a.rim.expect("rim deviation from phantom.json");
    assert!(rim.n > 20, "{rim:?}");
    let r = a.regions.as_ref().expect("regions");
    let rim_dsc = r.rim.expect("rim DSC");
    assert!(rim_dsc.tp + rim_dsc.fn_ > 10, "{rim_dsc:?}");
    assert!(rim_dsc.dsc > 0.3 && rim_dsc.dsc < 1.0, "{rim_dsc:?}");
    let base = r.skull_base.expect("skull-base DSC");
    assert!(
        base.dsc > 0.3 && base.dsc < a.overlap.dsc + 0.05,
        "{base:?}"
    );
    let b = e.scans[1].score.as_ref().expect("intact");
    assert!(b.rim.is_none() && b.regions.as_ref().expect("regions").rim.is_none());
    let text = std::fs::read_to_string(&csv).expect("csv");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let row: Vec<&str> = text.lines().nth(1).expect("row").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    assert_eq!(header.len(), row.len());
    assert!(row[col("rim_dsc")].parse::<f64>().is_ok(), "{text}");
    assert!(row[col("skull_base_dsc")].parse::<f64>().is_ok(), "{text}");
    // The other scan's phantom.json is refused (it names another series), and so are regions no
    // generator writes.
    let err = first_scan_error(
        tmp.path(),
        "swap",
        "series = \"a/ct\"\nlabel = { kind = \"seg\", path = \"a/label-seg.dcm\" }\n\
         phantom = \"b/phantom.json\"",
    );
    assert!(err.contains("the phantom.json of another scan"), "{err}");
    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("a/phantom.json")).expect("read"),
    )
    .expect("json");
    json["regions"]["skull_base_z"] = serde_json::json!([40.0, -10.0]);
    std::fs::write(tmp.path().join("reversed.json"), json.to_string()).expect("write");
    let err =
        osteon::eval::regions::ScoringRegions::from_phantom_json(&tmp.path().join("reversed.json"))
            .expect_err("reversed slab")
            .to_string();
    assert!(err.contains("skull_base_z [40, -10]"), "{err}");
    // A phantom.json that does not exist is a manifest problem, reported with the path.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[manifest]\nname = \"x\"\n[[scan]]\nname = \"s\"\nseries = \"a/ct\"\nscanner = \"p\"\n\
         label = { kind = \"seg\", path = \"a/label-seg.dcm\" }\nphantom = \"nope/phantom.json\"\n",
    )
    .expect("write");
    let err = Manifest::load(&bad)
        .expect_err("missing phantom.json")
        .to_string();
    assert!(err.contains("nope/phantom.json"), "{err}");
}

#[test]
fn the_heads_pool_is_thirty_heads_with_three_resin_skulls_in_the_standard_fold_order() {
    // manifests/heads.toml (session 34): the standard pool's scanners in the standard order (so
    // the same folds pair the same scanners), but one head per scan, seeds 101-130: none of the
    // standard (1-3) or independent (21-23) heads, and three homogeneous resin-like skulls.
    let heads = manifest_toml("heads.toml");
    let standard = manifest_toml("standard.toml");
    assert_eq!(heads.scan.len(), 32);
    assert_eq!(heads.scan.len(), standard.scan.len());
    let mut seeds = Vec::new();
    for (h, s) in heads.scan.iter().zip(&standard.scan) {
        assert_eq!(h.scanner, s.scanner);
        assert_eq!(h.split, s.split);
        if h.phantom.is_none() {
            assert_eq!(h.name, s.name, "the real series are the same");
            continue;
        }
        let seed: u64 = h.name.rsplit("-s").next().unwrap().parse().unwrap();
        assert!(
            h.series
                .to_str()
                .unwrap()
                .starts_with("target/phantoms-heads/"),
            "{}",
            h.series.display()
        );
        seeds.push(seed);
    }
    assert_eq!(seeds, (101..=130).collect::<Vec<u64>>());
    // The kind of skull make-phantoms forces for scans 6, 16 and 26 (pool places 5, 15, 25).
    let resin: Vec<u64> = seeds
        .iter()
        .copied()
        .filter(|s| (s - 101) % 10 == 5)
        .collect();
    assert_eq!(resin, [106, 116, 126]);
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-phantoms"),
    )
    .unwrap();
    assert!(
        script.contains("[ $((n % 10)) = 5 ] && h=true"),
        "make-phantoms forces them"
    );
}
