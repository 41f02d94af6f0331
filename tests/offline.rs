//! End-to-end tests of `osteon segment` on real CT (../shared/data/ct) and on a synthetic tilted,
//! non-square series with a marker cube, checked with independent tools (dciodvfy, pydicom).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::Array3;
use osteon::dicom::geometry::Geometry;
use osteon::dicom::seg::read_seg_mask;
use osteon::dicom::series::{load_volume, scan, SeriesInfo};
use osteon::mesh::{topology, Mesh, MeshOptions};
use osteon::pipeline::offline::{self, OfflineOptions, SegmenterChoice, Summary};
use osteon::segment::threshold::ThresholdSegmenter;
use osteon::segment::{Mask, Segmenter};

fn options() -> OfflineOptions {
    OfflineOptions {
        segmenter: SegmenterChoice::Threshold,
        threshold_hu: 226.0,
        model_dir: PathBuf::from("models"),
        model: None,
        thick_model: None,
        thick_from_mm: osteon::segment::pair::THICK_FROM_MM,
        mesh: MeshOptions::default(),
        progress: false,
        post_processing: osteon::segment::PostMode::default(),
    }
}

fn run(inputs: &[PathBuf], out: &Path) -> Summary {
    offline::run(inputs, out, &options()).expect("offline run")
}

/// Reads a binary STL into a [`Mesh`] with stl_io (independent of our writer).
fn read_stl(path: &Path) -> Mesh {
    let mut f = std::fs::File::open(path).expect("open STL");
    let m = stl_io::read_stl(&mut f).expect("parse STL");
    Mesh {
        vertices: m.vertices.iter().map(|v| [v[0], v[1], v[2]]).collect(),
        triangles: m
            .faces
            .iter()
            .map(|f| {
                [
                    f.vertices[0] as u32,
                    f.vertices[1] as u32,
                    f.vertices[2] as u32,
                ]
            })
            .collect(),
    }
}

fn stl_bbox(mesh: &Mesh) -> [[f64; 3]; 2] {
    let mut b = [[f64::INFINITY; 3], [f64::NEG_INFINITY; 3]];
    for v in &mesh.vertices {
        for a in 0..3 {
            b[0][a] = b[0][a].min(v[a] as f64);
            b[1][a] = b[1][a].max(v[a] as f64);
        }
    }
    b
}

/// LPS bounding box of the centres of the mask's voxels.
fn mask_bbox(mask: &Mask, g: &Geometry) -> [[f64; 3]; 2] {
    let mut b = [[f64::INFINITY; 3], [f64::NEG_INFINITY; 3]];
    for ((k, j, i), &v) in mask.indexed_iter() {
        if v != 0 {
            let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
            for a in 0..3 {
                b[0][a] = b[0][a].min(p[a]);
                b[1][a] = b[1][a].max(p[a]);
            }
        }
    }
    b
}

/// Runs tests/py/<script> with the validator Python and returns its JSON output.
fn py(script: &str, args: &[&Path]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(common::python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// The SEG at `seg` equals `mask` voxel for voxel, read by pydicom (independent reader).
fn assert_seg_equals_mask_pydicom(seg: &Path, mask: &Mask, dir: &Path) {
    let raw = dir.join("frames.raw");
    let info = py("read_seg.py", &[seg, &raw]);
    let (nk, nj, ni) = mask.dim();
    assert_eq!(info["frames"], nk as u64);
    assert_eq!(info["rows"], nj as u64);
    assert_eq!(info["columns"], ni as u64);
    assert_eq!(
        info["pixel_array_agrees"], true,
        "pydicom's pixel_array disagrees with unpackbits"
    );
    let frames = std::fs::read(&raw).expect("frames.raw");
    let ours: Vec<u8> = mask.iter().copied().collect();
    assert_eq!(frames.len(), ours.len());
    let differing = frames.iter().zip(&ours).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing, 0,
        "SEG read by pydicom differs from the mask in {differing} voxels"
    );
    assert_eq!(
        info["set_pixels"],
        mask.iter().filter(|&&v| v != 0).count() as u64
    );
}

fn assert_dciodvfy_clean(path: &Path) {
    let (errors, text) = common::dciodvfy(path);
    assert!(
        errors.is_empty(),
        "dciodvfy errors for {}:\n{text}",
        path.display()
    );
}

/// The Encapsulated STL holds exactly skull.stl (read by pydicom), and the STL is a closed solid.
fn assert_stl_object(dir: &Path, ct_info: &SeriesInfo) -> Mesh {
    let extracted = dir.join("extracted.stl");
    let info = py("read_stl.py", &[&dir.join("skull-stl.dcm"), &extracted]);
    let stl = std::fs::read(dir.join("skull.stl")).expect("skull.stl");
    assert_eq!(
        std::fs::read(&extracted).expect("extracted"),
        stl,
        "Encapsulated STL differs from skull.stl"
    );
    assert_eq!(info["length"], stl.len() as u64);
    assert_eq!(info["modality"], "M3D");
    assert_eq!(info["mime"], "model/stl");
    assert_eq!(
        info["frame_of_reference_uid"],
        ct_info.frame_of_reference_uid.as_str()
    );
    assert_eq!(
        info["study_instance_uid"],
        ct_info.study_instance_uid.as_str()
    );
    let mesh = read_stl(&dir.join("skull.stl"));
    let topo = topology(&mesh);
    assert_eq!(topo.boundary_edges, 0, "STL not watertight: {topo:?}");
    assert_eq!(
        topo.non_manifold_edges, 0,
        "STL has non-manifold edges: {topo:?}"
    );
    assert!(
        topo.signed_volume_mm3 > 0.0,
        "STL volume not positive: {topo:?}"
    );
    mesh
}

#[test]
fn philips_study_folder_gives_objects_for_both_axial_series_only() {
    let study = common::shared_data().join("ct/philips-ingenuity-head-phantom");
    let tmp = tempfile::tempdir().expect("tmp");
    let summary = run(&[study.clone()], tmp.path());
    assert_eq!(summary.failed(), 0, "{:?}", summary.lines());
    let mut numbers: Vec<_> = summary.series.iter().map(|s| s.series_number).collect();
    numbers.sort();
    assert_eq!(numbers, vec![Some(201), Some(202)]);
    // Localizer (S1000) and the six dose pages (S4010) produce no series, each with a reason.
    assert_eq!(summary.skipped.len(), 7, "{:?}", summary.skipped);
    assert_eq!(
        summary
            .skipped
            .iter()
            .filter(|s| s.reason.contains("LOCALIZER"))
            .count(),
        1
    );
    assert_eq!(
        summary
            .skipped
            .iter()
            .filter(|s| s.path.contains("S4010"))
            .count(),
        6
    );
    assert!(tmp.path().join("report.json").is_file());

    for outcome in &summary.series {
        let dir = PathBuf::from(&outcome.out_dir);
        let report = outcome.report.as_ref().expect("report");
        let slices = if outcome.series_number == Some(202) {
            140
        } else {
            28
        };
        assert_eq!(report.geometry.dims, [slices, 512, 512]);
        assert_dciodvfy_clean(&dir.join("seg.dcm"));
        assert_dciodvfy_clean(&dir.join("skull-stl.dcm"));
        // Recompute the mask from the source series and compare with what pydicom reads from the SEG.
        let folder = if slices == 140 { "S2020" } else { "S2010" };
        let found = scan(&[study.join(folder)]);
        let ct = load_volume(&found.groups[0]).expect("load");
        let mask = ThresholdSegmenter::default().segment(&ct).expect("mask");
        assert_seg_equals_mask_pydicom(&dir.join("seg.dcm"), &mask, &dir);
        let mesh = assert_stl_object(&dir, &ct.info);
        assert_eq!(mesh.triangles.len(), report.mesh.triangles);
    }
}

#[test]
fn ge_tilted_head_frames_keep_source_ipp_and_stl_matches_mask_bbox() {
    let series = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    let tmp = tempfile::tempdir().expect("tmp");
    let summary = run(&[series.clone()], tmp.path());
    assert_eq!(summary.failed(), 0, "{:?}", summary.lines());
    assert_eq!(summary.series.len(), 1);
    let dir = tmp.path();
    assert_dciodvfy_clean(&dir.join("seg.dcm"));
    assert_dciodvfy_clean(&dir.join("skull-stl.dcm"));

    let ct = load_volume(&scan(&[series]).groups[0]).expect("load");
    assert!(
        (ct.geometry.tilt_deg() - 18.5).abs() < 0.1,
        "tilt {}",
        ct.geometry.tilt_deg()
    );
    let seg = read_seg_mask(&dir.join("seg.dcm")).expect("read SEG");
    assert_eq!(seg.ipp.len(), 28);
    for k in 0..28 {
        assert_eq!(
            seg.ipp[k], ct.geometry.ipp[k],
            "frame {k} IPP differs from its source slice"
        );
        assert_eq!(
            seg.source_sop_instance_uids[k],
            vec![ct.slices[k].sop_instance_uid.clone()]
        );
    }
    let mask = ThresholdSegmenter::default().segment(&ct).expect("mask");
    assert_eq!(seg.frames, mask, "SEG frames differ from the mask");
    assert_seg_equals_mask_pydicom(&dir.join("seg.dcm"), &mask, dir);
    let mesh = assert_stl_object(dir, &ct.info);
    let (sb, mb) = (stl_bbox(&mesh), mask_bbox(&mask, &ct.geometry));
    // One voxel: the largest of the pixel spacing and the largest slice spacing along each axis.
    let spacings = ct.geometry.slice_spacings();
    let max_slice = spacings.iter().cloned().fold(0.0, f64::max);
    let voxel = ct.geometry.pixel_spacing[0]
        .max(ct.geometry.pixel_spacing[1])
        .max(max_slice);
    for a in 0..3 {
        for e in 0..2 {
            assert!(
                (sb[e][a] - mb[e][a]).abs() <= voxel,
                "axis {a} bound {e}: STL {} vs mask {}",
                sb[e][a],
                mb[e][a]
            );
        }
    }
}

#[test]
fn marker_cube_in_one_lps_corner_of_a_tilted_non_square_series() {
    // 10 slices of 384 rows x 512 columns, pixel spacing 0.6 mm (rows) x 0.5 mm (columns), IOP axial,
    // gantry tilt: each slice 1.25 mm along z and 0.5 mm along y; slices 6.. are 2.5 mm apart.
    let (nk, nj, ni) = (10usize, 384usize, 512usize);
    let ipp: Vec<[f64; 3]> = (0..nk)
        .map(|k| {
            let z = if k <= 5 {
                1.25 * k as f64
            } else {
                6.25 + 2.5 * (k - 5) as f64
            };
            [-100.0, -80.0 + 0.4 * z, 30.0 + z]
        })
        .collect();
    let geometry = Geometry {
        ipp: ipp.clone(),
        iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        pixel_spacing: [0.6, 0.5],
        rows: nj,
        cols: ni,
    };
    let mut hu = Array3::<f32>::from_elem((nk, nj, ni), -1000.0);
    // Cube at high i (patient left), low j (anterior), slices 2..7 (through the spacing change).
    let (ks, js, is) = (2..7usize, 10..40usize, 470..500usize);
    for k in ks.clone() {
        for j in js.clone() {
            for i in is.clone() {
                hu[[k, j, i]] = 1200.0;
            }
        }
    }
    let info = SeriesInfo {
        patient_name: "MARKER^CUBE".into(),
        patient_id: "OSTEON-TEST".into(),
        series_number: Some(7),
        manufacturer: "Osteon test".into(),
        ..Default::default()
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let ct_dir = tmp.path().join("ct");
    osteon::dicom::ct_writer::write_ct_series(hu.view(), &geometry, &info, &ct_dir)
        .expect("write CT");
    let out = tmp.path().join("out");
    let summary = run(&[ct_dir], &out);
    assert_eq!(summary.failed(), 0, "{:?}", summary.lines());
    assert_dciodvfy_clean(&out.join("seg.dcm"));

    // SEG: exactly the cube's voxels, in frames whose IPP is the source slice's.
    let seg = read_seg_mask(&out.join("seg.dcm")).expect("read SEG");
    assert_eq!(seg.frames.dim(), (nk, nj, ni));
    assert_eq!(seg.ipp, ipp);
    assert_eq!(seg.frames.iter().filter(|&&v| v == 1).count(), 5 * 30 * 30);
    for k in 0..nk {
        for (j, i) in [(10, 470), (39, 499)] {
            assert_eq!(
                seg.frames[[k, j, i]],
                u8::from(ks.contains(&k)),
                "voxel ({k}, {j}, {i})"
            );
        }
    }
    // Expected LPS extent of the cube's voxel centres, by hand: x = -100 + 0.5 i,
    // y = -80 + 0.4 z_k + 0.6 j, z = 30 + z_k with z_2 = 2.5, z_6 = 8.75.
    let lo = [
        -100.0 + 0.5 * 470.0,
        -80.0 + 0.4 * 2.5 + 0.6 * 10.0,
        30.0 + 2.5,
    ];
    let hi = [
        -100.0 + 0.5 * 499.0,
        -80.0 + 0.4 * 8.75 + 0.6 * 39.0,
        30.0 + 8.75,
    ];
    assert_eq!(lo, [135.0, -73.0, 32.5]);
    assert!(
        lo[0] > 0.0 && hi[1] < 0.0,
        "the cube sits on the patient's left (+x), anterior (-y)"
    );
    // STL: the surface vertices are the midpoints of the axis edges leaving the cube, half a step
    // outside the voxel centres along one index direction at a time, inside the index box
    // [1.5, 6.5] x [9.5, 39.5] x [469.5, 499.5]. Mapped by hand: x = -100 + 0.5 i; z(k) interpolates
    // the slice positions (z(1.5) = 1.875, z(2) = 2.5, z(6) = 8.75, z(6.5) = 10);
    // y = -80 + 0.4 z + 0.6 j, whose extremes pair a k-edge with a j-edge end:
    //   y min = min(0.4 z(1.5) + 0.6 * 10, 0.4 z(2) + 0.6 * 9.5) - 80 = min(-73.25, -73.3) = -73.3
    //   y max = max(0.4 z(6.5) + 0.6 * 39, 0.4 z(6) + 0.6 * 39.5) - 80 = max(-52.6, -52.8) = -52.6
    // Smoothing rounds the corners: allow half a voxel per axis.
    let lo = [134.75, -73.3, 31.875];
    let hi = [149.75, -52.6, 40.0];
    let mesh = read_stl(&out.join("skull.stl"));
    let b = stl_bbox(&mesh);
    let tol = [0.25, 0.3, 1.25];
    for a in 0..3 {
        assert!(
            (b[0][a] - lo[a]).abs() <= tol[a],
            "axis {a}: STL min {} vs {}",
            b[0][a],
            lo[a]
        );
        assert!(
            (b[1][a] - hi[a]).abs() <= tol[a],
            "axis {a}: STL max {} vs {}",
            b[1][a],
            hi[a]
        );
    }
    let topo = topology(&mesh);
    assert_eq!((topo.boundary_edges, topo.non_manifold_edges), (0, 0));
    assert!(topo.signed_volume_mm3 > 0.0);
}

#[test]
fn cli_refuses_a_series_with_a_missing_slice_naming_the_reason() {
    let series = common::shared_data()
        .join("odd/geometry-placeholder-pixels/dicom2nifti_sliceincrement/002");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args(["segment", "--segmenter", "threshold", "--out"])
        .arg(tmp.path())
        .arg(&series)
        .output()
        .expect("run osteon");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("missing slice"), "{text}");
    assert!(!tmp.path().join("seg.dcm").exists());
}

#[test]
fn cli_cnn_without_its_model_names_the_missing_file() {
    let series = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("no-such-model.safetensors");
    // The CNN asked for, and the default segmenter given an explicit --model that is not there
    // or is a folder: the same refusal, never the threshold in its place (bad-input trial,
    // session 38).
    let folder = tmp.path().to_owned();
    for (segmenter, given, why) in [
        (Some("cnn"), &model, "does not exist"),
        (None, &model, "does not exist"),
        (None, &folder, "is a folder"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osteon"));
        cmd.arg("segment");
        if let Some(s) = segmenter {
            cmd.args(["--segmenter", s]);
        }
        let out = cmd
            .arg("--model")
            .arg(given)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg(&series)
            .output()
            .expect("run osteon");
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!("{} {why}", given.display())),
            "{text}"
        );
        assert!(!tmp.path().join("out").join("seg.dcm").exists());
    }
}

#[test]
fn cli_version_names_libtorch_and_cuda_state() {
    let out = Command::new(env!("CARGO_BIN_EXE_osteon"))
        .arg("--version")
        .output()
        .expect("run osteon");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("osteon {} (libtorch ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("CUDA: "), "{text}");
    #[cfg(feature = "torch")]
    assert!(text.contains("libtorch 2.11.0"), "{text}");
}

#[test]
fn cli_refuses_unusable_options_as_usage_errors() {
    let series = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    for (flag, value) in [
        ("--threshold", "NaN"),
        ("--threshold", "-inf"),
        ("--smooth-iterations", "100000"),
        ("--max-triangles", "1"),
    ] {
        let bad = [format!("{flag}={value}")];
        let tmp = tempfile::tempdir().expect("tmp");
        let out = Command::new(env!("CARGO_BIN_EXE_osteon"))
            .args(["segment", "--out"])
            .arg(tmp.path())
            .args(&bad)
            .arg(&series)
            .output()
            .expect("run osteon");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {text}");
        assert!(text.contains(flag), "{bad:?}: {text}");
        assert!(!tmp.path().join("seg.dcm").exists());
    }
}

/// report.json says what the CNN's post-processing did (issue 4; session 9's fill and pieces), so
/// a reader can tell a filled or dropped region from the network's own output: on the real GE
/// head (0.49 mm pixels, 1.25-7 mm slices) the marrow fill is skipped with its reason, and the
/// mandible is kept beside the skull (2 pieces). `--post-processing largest` keeps one piece and
/// `raw` all, the half-maximum grow runs in `bones` only, and the voxel counts of the three add up
/// exactly. The threshold baseline has no post-processing.
#[cfg(feature = "torch")]
#[test]
fn report_records_the_cnn_post_processing() {
    let series = common::shared_data().join("ct/ge-hispeed-dual-head-tilt");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osteon-cnn-cpu-3.safetensors");
    let tmp = tempfile::tempdir().expect("tmp");
    let report = |segmenter: &str, post: &str| -> serde_json::Value {
        let out = tmp.path().join(format!("{segmenter}-{post}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osteon"));
        cmd.args(["segment", "--segmenter", segmenter]);
        if segmenter == "cnn" {
            cmd.args(["--post-processing", post])
                .arg("--model")
                .arg(&model);
        }
        let run = cmd
            .arg("--out")
            .arg(&out)
            .arg(&series)
            .output()
            .expect("run osteon");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let text = std::fs::read_to_string(out.join("report.json")).expect("report.json");
        serde_json::from_str(&text).expect("report.json is JSON")
    };
    let cnn = report("cnn", "bones");
    let post = &cnn["segmentation"]["post_processing"];
    assert_eq!(post["mode"], "bones");
    assert!(post["marrow_fill"].is_null(), "{post}");
    let why = post["marrow_fill_skipped"].as_str().expect("a reason");
    assert!(
        why.starts_with(
            "voxels coarser than 0.7 mm (pixels 0.488 x 0.488 mm, largest slice gap 6.9"
        ),
        "{why}"
    );
    let pieces = &post["pieces"];
    assert_eq!(pieces["kept"], 2, "skull and mandible: {pieces}");
    let found = pieces["found"].as_u64().expect("found");
    assert!(found > 2, "{pieces}");
    let dropped = pieces["dropped_voxels"].as_u64().expect("dropped");
    assert!(dropped > 0, "{pieces}");
    let voxels = |r: &serde_json::Value| r["segmentation"]["bone_voxels"].as_u64().expect("voxels");
    let raw = report("cnn", "raw");
    let raw_post = &raw["segmentation"]["post_processing"];
    assert_eq!(raw_post["mode"], "raw");
    // The grow adds voxels joined to the mask: it can merge pieces, never make one.
    let raw_found = raw_post["pieces"]["found"].as_u64().expect("found");
    assert!(raw_found >= found, "{raw_post}");
    assert_eq!(raw_post["pieces"]["kept"], raw_found, "{raw_post}");
    // No fill ran, so the bones mode's mask is the raw one plus the half-maximum grow less the
    // pieces it dropped. The grow's gate is half-way between the soft-tissue anchor and the bone
    // level; its reach is the 5 mm cap (the slice gap is 6.9 mm).
    let grow = &post["half_max_grow"];
    let grown = grow["voxels_added"].as_u64().expect("the grow ran");
    assert!(grown > 0 && grow["undone_voxels"].is_null(), "{grow}");
    assert_eq!(grow["gate"]["reach_mm"], 5.0, "{grow}");
    let tissue = cnn["image_qa"]["tissue_anchor_hu"]
        .as_f64()
        .expect("tissue");
    let (lo, peak) = (
        grow["gate"]["lo"].as_f64().expect("lo"),
        grow["gate"]["peak"].as_f64().expect("peak"),
    );
    assert!((lo - 0.5 * (tissue + peak)).abs() < 0.01, "{grow} {tissue}");
    assert!(peak > tissue + 400.0, "{grow}");
    // Before the grow, the probability hysteresis (same gate; low level half the threshold).
    let hyst = &post["hysteresis"];
    let joined = hyst["voxels_added"].as_u64().expect("the hysteresis ran");
    assert!(hyst["undone_voxels"].is_null(), "{hyst}");
    // The model's threshold is in its AlgorithmVersion ("...-t0.650-...").
    let version = cnn["segmentation"]["algorithm"]["version"]
        .as_str()
        .expect("version");
    let t: f64 = version
        .split('-')
        .find_map(|p| p.strip_prefix('t').and_then(|v| v.parse().ok()))
        .expect("threshold in the version");
    assert!(
        (hyst["low"].as_f64().expect("low") - 0.5 * t).abs() < 1e-3,
        "{hyst} {version}"
    );
    assert_eq!(voxels(&raw) + joined + grown, voxels(&cnn) + dropped);
    assert!(raw_post["half_max_grow"].is_null(), "{raw_post}");
    assert!(raw_post["hysteresis"].is_null(), "{raw_post}");
    let largest = report("cnn", "largest");
    let l_post = &largest["segmentation"]["post_processing"];
    assert_eq!(l_post["mode"], "largest");
    assert_eq!(l_post["pieces"]["kept"], 1, "{l_post}");
    assert!(l_post["half_max_grow"].is_null(), "{l_post}");
    assert!(l_post["hysteresis"].is_null(), "{l_post}");
    let l_dropped = l_post["pieces"]["dropped_voxels"]
        .as_u64()
        .expect("dropped");
    assert_eq!(voxels(&raw), voxels(&largest) + l_dropped);
    assert!(
        voxels(&largest) < voxels(&cnn),
        "the mandible is a piece of its own"
    );
    // A mode other than the default names itself in the SEG's AlgorithmVersion.
    let version = |r: &serde_json::Value| {
        r["segmentation"]["algorithm"]["version"]
            .as_str()
            .expect("version")
            .to_owned()
    };
    assert!(
        version(&largest).ends_with("-wa6440620-largest"),
        "{}",
        version(&largest)
    );
    assert!(
        version(&raw).ends_with("-wa6440620-raw"),
        "{}",
        version(&raw)
    );
    assert!(version(&cnn).contains("-wa6440620/"), "{}", version(&cnn));
    // The threshold segmenter refuses the option rather than ignoring it.
    let refused = Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args([
            "segment",
            "--segmenter",
            "threshold",
            "--post-processing",
            "raw",
            "--out",
        ])
        .arg(tmp.path().join("refused"))
        .arg(&series)
        .output()
        .expect("run osteon");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("applies to the CNN"));
    let threshold = report("threshold", "bones");
    assert!(
        threshold["segmentation"]["post_processing"].is_null(),
        "{}",
        threshold["segmentation"]
    );
}
