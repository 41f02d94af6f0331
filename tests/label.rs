//! `osteon label` through its public API: mesh-to-label round trip on an oblique, tilted, variably
//! spaced grid; refusal of open meshes and meshes outside the CT; reference labels of the real
//! Philips S2020 and GE tilted head series (dciodvfy-clean SEGs with asserted voxel counts).

mod common;

use std::path::{Path, PathBuf};

use ndarray::Array3;
use osteon::dicom::ct_writer::write_ct_series;
use osteon::dicom::geometry::Geometry;
use osteon::dicom::series::SeriesInfo;
use osteon::eval::metrics::{dice, Region};
use osteon::label::reference::ReferenceOptions;
use osteon::label::{run_label, seg_mask_on_grid, LabelError, LabelOptions, LabelSource};
use osteon::mesh::{build_mesh, stl_bytes, Mesh, MeshOptions};
use osteon::segment::Mask;

/// 48 slices of 72 x 64, PixelSpacing [0.6, 0.5] mm, in-plane rotation 25° (oblique IOP), slices
/// alternately 0.7 and 1.3 mm apart along the normal, sheared along the column direction by 0.3 mm
/// per mm (gantry tilt ≈ 16.7°).
fn oblique_grid() -> Geometry {
    let a = 25f64.to_radians();
    let row = [a.cos(), a.sin(), 0.0];
    let col = [-a.sin(), a.cos(), 0.0];
    let normal = [0.0, 0.0, 1.0];
    let mut z = 0.0;
    let ipp = (0..48)
        .map(|k| {
            if k > 0 {
                z += if k % 2 == 1 { 0.7 } else { 1.3 };
            }
            let shear = 0.3 * z;
            [
                -10.0 + shear * col[0] + z * normal[0],
                -12.0 + shear * col[1] + z * normal[1],
                40.0 + z,
            ]
        })
        .collect();
    Geometry {
        ipp,
        iop: [row[0], row[1], row[2], col[0], col[1], col[2]],
        pixel_spacing: [0.6, 0.5],
        rows: 72,
        cols: 64,
    }
}

/// Ellipsoid-with-hole solid (a thick shell with a 'burr hole'), evaluated at voxel centres in LPS.
fn shell_mask(g: &Geometry) -> Mask {
    let [nk, nj, ni] = g.dims();
    let c = g.voxel_to_lps(nk as f64 / 2.0, nj as f64 / 2.0, ni as f64 / 2.0);
    Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
        let p = g.voxel_to_lps(k as f64, j as f64, i as f64);
        let d = [
            (p[0] - c[0]) / 1.0,
            (p[1] - c[1]) / 1.1,
            (p[2] - c[2]) / 1.2,
        ];
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let hole = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) < 9.0 && p[2] > c[2];
        u8::from((9.0..=15.0).contains(&r) && !hole)
    })
}

fn write_ct(mask: &Mask, g: &Geometry, dir: &Path) {
    let hu = mask.mapv(|v| if v != 0 { 1200.0f32 } else { -1000.0 });
    let info = SeriesInfo {
        patient_name: "LABEL^ROUNDTRIP".into(),
        patient_id: "OSTEON-TEST".into(),
        series_number: Some(3),
        ..Default::default()
    };
    write_ct_series(hu.view(), g, &info, dir).expect("write CT");
}

fn write_stl(mesh: &Mesh, path: &Path) {
    std::fs::write(path, stl_bytes(mesh).expect("stl bytes")).expect("write STL");
}

fn label(ct: &Path, stl: &Path, out: &Path) -> Result<osteon::label::LabelReport, LabelError> {
    run_label(&LabelOptions {
        ct: vec![ct.to_owned()],
        series: None,
        source: LabelSource::Stl(stl.to_owned()),
        out: out.to_owned(),
    })
}

fn assert_dciodvfy_clean(path: &Path) {
    let (errors, text) = common::dciodvfy(path);
    assert!(
        errors.is_empty(),
        "dciodvfy errors for {}:\n{text}",
        path.display()
    );
}

#[test]
fn mesh_to_label_round_trip_on_oblique_tilted_variable_grid() {
    let g = oblique_grid();
    assert!(g.tilt_deg() > 15.0, "tilt {}", g.tilt_deg());
    let mask = shell_mask(&g);
    let voxels = mask.iter().filter(|&&v| v != 0).count();
    assert!(voxels > 20_000, "{voxels}");
    let tmp = tempfile::tempdir().expect("tmp");
    let ct = tmp.path().join("ct");
    write_ct(&mask, &g, &ct);

    // Exact surface (no smoothing): it passes midway between inside and outside voxel centres, so
    // centre sampling gives back the mask exactly.
    let exact = MeshOptions {
        smoothing_iterations: 0,
        max_triangles: None,
        ..MeshOptions::default()
    };
    let (mesh, _) = build_mesh(&mask, &g, &exact).expect("mesh");
    let stl = tmp.path().join("exact.stl");
    write_stl(&mesh, &stl);
    let out = tmp.path().join("exact-label.dcm");
    let report = label(&ct, &stl, &out).expect("label");
    assert_dciodvfy_clean(&out);
    // The SEG read back from disk, put on the grid of the series as loaded by our reader.
    let ct_volume = osteon::label::load_ct(std::slice::from_ref(&ct), None).expect("load");
    let back = seg_mask_on_grid(&out, &ct_volume.geometry).expect("read SEG");
    let o = dice(&back, &mask, &Region::full(g.dims())).expect("dice");
    assert_eq!(report.voxels as usize, voxels);
    assert_eq!((o.fp, o.fn_), (0, 0), "{o:?}");
    assert_eq!(o.dsc, 1.0);

    // Default mesh (smoothed, decimated as `osteon segment` writes it): DSC >= 0.99.
    let (smooth, _) = build_mesh(&mask, &g, &MeshOptions::default()).expect("mesh");
    let stl = tmp.path().join("smooth.stl");
    write_stl(&smooth, &stl);
    let out = tmp.path().join("smooth-label.dcm");
    label(&ct, &stl, &out).expect("label");
    let back = seg_mask_on_grid(&out, &ct_volume.geometry).expect("read SEG");
    let o = dice(&back, &mask, &Region::full(g.dims())).expect("dice");
    // Windowed-sinc smoothing moves the surface by less than the half voxel to the nearest centre
    // here, so even the smoothed mesh gives the mask back (the issue asks for >= 0.99).
    assert!(o.dsc >= 0.99, "smoothed round trip DSC {o:?}");
    assert!(o.fp + o.fn_ <= voxels as u64 / 200, "{o:?}");
}

#[test]
fn open_mesh_and_mesh_outside_the_ct_are_refused() {
    let g = oblique_grid();
    let mask = shell_mask(&g);
    let tmp = tempfile::tempdir().expect("tmp");
    let ct = tmp.path().join("ct");
    write_ct(&mask, &g, &ct);
    let (mesh, _) = build_mesh(&mask, &g, &MeshOptions::default()).expect("mesh");

    let mut open = mesh.clone();
    open.triangles.truncate(open.triangles.len() - 2);
    let stl = tmp.path().join("open.stl");
    write_stl(&open, &stl);
    let out = tmp.path().join("open.dcm");
    match label(&ct, &stl, &out) {
        Err(LabelError::NotClosed {
            boundary_edges,
            non_manifold_edges: 0,
        }) => assert!((4..=6).contains(&boundary_edges), "{boundary_edges}"),
        other => panic!("expected NotClosed, got {other:?}"),
    }
    assert!(!out.exists());

    let mut far = mesh.clone();
    for v in &mut far.vertices {
        v[0] += 500.0;
    }
    let stl = tmp.path().join("far.stl");
    write_stl(&far, &stl);
    let err = label(&ct, &stl, &out).expect_err("outside");
    assert!(
        matches!(err, LabelError::OutsideVolume { vertices_outside, vertices, .. } if vertices_outside == vertices),
        "{err:?}"
    );
    assert!(err.to_string().contains("outside the CT volume"), "{err}");

    // Half outside: labelled where it overlaps (with a warning), fewer voxels than the whole.
    let mut half = mesh.clone();
    let shift = 0.5 * 64.0 * 0.5;
    let r = [g.iop[0] as f32, g.iop[1] as f32, g.iop[2] as f32];
    for v in &mut half.vertices {
        for a in 0..3 {
            v[a] += shift as f32 * r[a];
        }
    }
    let stl = tmp.path().join("half.stl");
    write_stl(&half, &stl);
    let rep = label(&ct, &stl, &out).expect("half");
    let whole = mask.iter().filter(|&&v| v != 0).count() as u64;
    assert!(
        rep.voxels > whole / 4 && rep.voxels < 3 * whole / 4,
        "{} of {whole}",
        rep.voxels
    );
    assert!(rep.details["vertices_outside"].as_u64().unwrap_or(0) > 0);
}

fn reference_label(dir: PathBuf, out: &Path) -> osteon::label::LabelReport {
    run_label(&LabelOptions {
        ct: vec![dir],
        series: None,
        source: LabelSource::Reference(ReferenceOptions::default()),
        out: out.to_owned(),
    })
    .expect("reference label")
}

#[test]
fn reference_labels_of_the_real_scans() {
    let data = common::shared_data().join("ct");
    let tmp = tempfile::tempdir().expect("tmp");

    // Philips phantom, 140 x 512 x 512: the U-shaped head holder (about 437 k voxels >= 226 HU) goes,
    // the skull stays.
    let out = tmp.path().join("philips.dcm");
    let rep = reference_label(data.join("philips-ingenuity-head-phantom/S2020"), &out);
    assert_dciodvfy_clean(&out);
    assert_eq!(rep.dims, [140, 512, 512]);
    let d = &rep.details;
    assert_eq!(d["thresholded"], 2_268_518);
    assert!((1_820_000..1_845_000).contains(&rep.voxels), "{rep}");
    assert!((365.0..380.0).contains(&rep.volume_ml), "{rep}");
    assert!(d["removed"].as_u64().unwrap_or(0) > 400_000, "{d}");
    assert_eq!(d["opening_radius_px"], 2);

    // GE tilted head, 28 x 512 x 512, variable spacing: the head rest goes.
    let out = tmp.path().join("ge.dcm");
    let rep = reference_label(data.join("ge-hispeed-dual-head-tilt"), &out);
    assert_dciodvfy_clean(&out);
    assert_eq!(rep.dims, [28, 512, 512]);
    let d = &rep.details;
    assert_eq!(d["thresholded"], 504_457);
    assert!((455_000..470_000).contains(&rep.voxels), "{rep}");
    assert!((565.0..590.0).contains(&rep.volume_ml), "{rep}");
    assert!(d["removed"].as_u64().unwrap_or(0) > 30_000, "{d}");
}

#[test]
fn a_study_folder_needs_a_series_choice() {
    let data = common::shared_data().join("ct/philips-ingenuity-head-phantom");
    let err =
        osteon::label::load_ct(std::slice::from_ref(&data), None).expect_err("two axial series");
    let msg = err.to_string();
    assert!(
        msg.contains("choose one (osteon label --series, or series_selector in a manifest)"),
        "{msg}"
    );
    assert!(
        msg.contains("SeriesNumber 202 ") && msg.contains("SeriesNumber 201 "),
        "{msg}"
    );
    let ct = osteon::label::load_ct(std::slice::from_ref(&data), Some("202"))
        .expect("S2020 by SeriesNumber");
    assert_eq!(ct.geometry.dims(), [140, 512, 512]);
    let err = osteon::label::load_ct(&[data], Some("7")).expect_err("no such series");
    assert!(err.to_string().contains("matching \"7\""), "{err}");
}

#[test]
fn phantom_label_stl_round_trips_to_its_seg() {
    // `osteon phantom` (small tilted scan with a craniotomy) writes ct/, label-seg.dcm and label.stl
    // in one frame of reference; voxelising label.stl must give label-seg.dcm back (issue: DSC >= 0.99).
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("phantom");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_osteon"))
        .args([
            "phantom",
            "--profile",
            "ge-hispeed-tilt",
            "--seed",
            "5",
            "--slices",
            "40",
        ])
        .args(["--matrix", "192", "--craniotomy", "true", "--out"])
        .arg(&dir)
        .output()
        .expect("run osteon phantom");
    assert!(
        out.status.success(),
        "osteon phantom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relabel = tmp.path().join("relabel.dcm");
    let rep = label(&dir.join("ct"), &dir.join("label.stl"), &relabel).expect("label");
    assert_dciodvfy_clean(&relabel);
    let ct = osteon::label::load_ct(&[dir.join("ct")], None).expect("load phantom");
    assert!(
        (ct.geometry.tilt_deg() - 15.0).abs() < 0.01,
        "{}",
        ct.geometry.tilt_deg()
    );
    let truth = seg_mask_on_grid(&dir.join("label-seg.dcm"), &ct.geometry).expect("phantom SEG");
    let back = seg_mask_on_grid(&relabel, &ct.geometry).expect("our SEG");
    // The same SEG with another FrameOfReferenceUID lines up by position but is refused: positions
    // of two frames of reference are not comparable.
    let other = tmp.path().join("other-for.dcm");
    let mut obj = dicom_object::open_file(dir.join("label-seg.dcm")).expect("open SEG");
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::FRAME_OF_REFERENCE_UID,
        dicom_core::VR::UI,
        "1.2.3.4.5.6",
    ));
    obj.write_to_file(&other).expect("write SEG");
    let spec = osteon::eval::manifest::LabelSpec::Seg {
        path: other.clone(),
    };
    let e = osteon::eval::label_for(&ct, &spec).expect_err("other frame of reference");
    assert!(
        e.to_string()
            .contains("FrameOfReferenceUID (0020,0052) 1.2.3.4.5.6 differs from the CT's"),
        "{e}"
    );
    let o = dice(&back, &truth, &Region::full(ct.geometry.dims())).expect("dice");
    // Measured 0.9992 (the STL leaves out a few tiny label parts).
    assert!(o.dsc >= 0.99, "{o:?}");
    assert_eq!(rep.voxels, o.tp + o.fp);
}
