//! [`CnnSegmenter`]: a trained model (safetensors weights + JSON metadata) as a [`Segmenter`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array3, ArrayView3};
use tch::nn::VarStore;
use tch::Tensor;

use super::infer::{dense_probabilities, DenseOptions};
use super::meta::{meta_path, ModelMeta};
use super::net::Net;
use super::normalise::Normaliser;
use super::resample::InPlaneGrid;
use super::CnnError;
use crate::dicom::series::CtVolume;
use crate::segment::post::post_process;
use crate::segment::{AlgorithmIdentity, Mask, PostMode, PostProcessing, SegmentError, Segmenter};

/// The network and its variables (tch tensors are `Send` but not `Sync`, hence the mutex).
struct Loaded {
    vs: VarStore,
    net: Net,
}

/// The CNN segmenter: mask = bone probability >= the model's threshold, then its post-processing
/// ([`crate::segment::post`]; by default the marrow fill, gate from the scan's normalisation
/// anchors, then the skull and the separate bones inside the body).
pub struct CnnSegmenter {
    inner: Mutex<Loaded>,
    meta: ModelMeta,
    weights: PathBuf,
    /// SHA-256 of the weights file, hex: names the exact model in the SEG's AlgorithmVersion.
    weights_sha256: String,
    options: DenseOptions,
    /// Mean confidence of the last segmentation ([`Segmenter::mean_confidence`]).
    last_confidence: Mutex<Option<f64>>,
    /// How the thresholded mask is post-processed.
    post_mode: PostMode,
    /// Post-processing of the last segmentation ([`Segmenter::post_processing`]).
    last_post: Mutex<Option<PostProcessing>>,
    /// Normalisation anchors of the last segmentation ([`Segmenter::grey_anchors`]).
    last_anchors: Mutex<Option<[f64; 2]>>,
}

/// Uses every CPU thread for libtorch's intra-op parallelism (once per process is enough; repeated
/// calls are harmless).
pub fn use_all_cpu_threads() {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(n as i32);
}

/// Loads the model at `model_path` (a `.safetensors` file with its `.json` beside it), running on
/// CUDA when available (mixed precision there), else on every CPU thread, with the test-time
/// orientations its metadata names.
///
/// # Errors
/// [`CnnError::Io`] for a missing weights or JSON file, [`CnnError::Meta`] /
/// [`CnnError::Architecture`] for bad metadata (or a `weights_sha256` that names other weights), [`CnnError::Shape`] when a tensor is missing,
/// extra, or of the wrong shape for the architecture, [`CnnError::Torch`] when the file is not
/// safetensors.
pub fn load(model_path: &Path) -> Result<CnnSegmenter, CnnError> {
    load_with(model_path, DenseOptions::default())
}

/// [`load`] with explicit inference options (device, batch, region of interest); the test-time
/// orientations are always the model's ([`ModelMeta::test_time_orientations`]).
///
/// # Errors
/// As [`load`].
pub fn load_with(model_path: &Path, options: DenseOptions) -> Result<CnnSegmenter, CnnError> {
    if !model_path.is_file() {
        return Err(CnnError::Io {
            path: model_path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "model weights not found"),
        });
    }
    let meta = ModelMeta::read(&meta_path(model_path))?;
    let options = DenseOptions {
        orientations: meta.test_time_orientations,
        ..options
    };
    if !options.device.is_cuda() {
        use_all_cpu_threads();
    }
    let mut vs = VarStore::new(options.device);
    let net = Net::new(&vs.root(), &meta.architecture);
    load_weights(&mut vs, model_path)?;
    let bytes = std::fs::read(model_path).map_err(|source| CnnError::Io {
        path: model_path.to_owned(),
        source,
    })?;
    let weights_sha256: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Some(named) = meta.weights_sha256.as_deref() {
        if !named.eq_ignore_ascii_case(&weights_sha256) {
            return Err(CnnError::Meta {
                path: meta_path(model_path),
                message: format!(
                    "weights_sha256 {named} names other weights than {} (SHA-256 \
                     {weights_sha256}): this JSON and these weights do not belong together",
                    model_path.display()
                ),
            });
        }
    }
    Ok(CnnSegmenter {
        inner: Mutex::new(Loaded { vs, net }),
        meta,
        weights: model_path.to_owned(),
        weights_sha256,
        options,
        last_confidence: Mutex::new(None),
        post_mode: PostMode::default(),
        last_post: Mutex::new(None),
        last_anchors: Mutex::new(None),
    })
}

/// `true` when the normaliser's anchors (the scan's grey values) are within what CT and
/// cone-beam-like CT give: air from -1300 to -300, soft tissue from -300 to 400 and at least 300
/// above air. Outside it the CNN still runs (the anchors are what it normalises by), but the
/// series is unusual enough to be logged (bad-input trial, session 12: an inverted series gave air
/// -31 and soft tissue 992, a series of bone only gave soft tissue 1198).
pub fn anchors_look_like_ct(air: f32, tissue: f32) -> bool {
    (-1300.0..=-300.0).contains(&air) && (-300.0..=400.0).contains(&tissue) && tissue - air >= 300.0
}

/// Copies the tensors of the safetensors file `path` into `vs`, after checking that the names and
/// shapes match exactly (tch's own `VarStore::load` would broadcast a wrong shape).
///
/// # Errors
/// [`CnnError::Torch`] (unreadable file), [`CnnError::Shape`] (missing, extra or mis-shaped tensor).
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<(), CnnError> {
    let torch = |e: tch::TchError| CnnError::Torch(format!("{}: {e}", path.display()));
    let read: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(torch)?
        .into_iter()
        .collect();
    let shape_err = |name: &str, expected: String, found: String| CnnError::Shape {
        path: path.to_owned(),
        name: name.to_owned(),
        expected,
        found,
    };
    let vars = vs.variables();
    for name in read.keys() {
        if !vars.contains_key(name) {
            return Err(shape_err(name, "absent".into(), "present".into()));
        }
    }
    for (name, var) in &vars {
        let Some(src) = read.get(name) else {
            return Err(shape_err(
                name,
                format!("{:?}", var.size()),
                "missing".into(),
            ));
        };
        if src.size() != var.size() {
            return Err(shape_err(
                name,
                format!("{:?}", var.size()),
                format!("{:?}", src.size()),
            ));
        }
        // Weights must be floating point and finite (a NaN would only show as "no bone found").
        if !src.is_floating_point() {
            return Err(shape_err(
                name,
                "a floating-point tensor".into(),
                format!("{:?}", src.kind()),
            ));
        }
        let finite = src.isfinite().all().int64_value(&[]) != 0;
        if !finite {
            return Err(shape_err(
                name,
                "finite values".into(),
                "NaN or infinite values".into(),
            ));
        }
        if name.ends_with("running_var") && src.lt(0.0).any().int64_value(&[]) != 0 {
            return Err(shape_err(
                name,
                "variances >= 0".into(),
                "negative values".into(),
            ));
        }
    }
    let mut vars = vars;
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            if let Some(src) = read.get(name) {
                var.f_copy_(&src.to_device(var.device())).map_err(torch)?;
            }
        }
        Ok(())
    })
}

impl CnnSegmenter {
    /// The same segmenter with post-processing `mode` ([`PostMode::Bones`] when not set).
    pub fn with_post_processing(mut self, mode: PostMode) -> Self {
        self.post_mode = mode;
        self
    }

    /// The same segmenter averaging `n` test-time orientations instead of its metadata's
    /// ([`ModelMeta::test_time_orientations`]; for calibrating them, `osteon calibrate
    /// --orientations`): the identity names them.
    ///
    /// # Errors
    /// [`CnnError::Input`] when `n` is not one of [`super::infer::ORIENTATIONS`].
    pub fn with_orientations(mut self, n: usize) -> Result<Self, CnnError> {
        if !super::infer::ORIENTATIONS.contains(&n) {
            return Err(CnnError::Input(format!(
                "{n} test-time orientations: expected one of {:?}",
                super::infer::ORIENTATIONS
            )));
        }
        self.meta.test_time_orientations = n;
        self.options.orientations = n;
        Ok(self)
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// SHA-256 of the weights file, hex.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// The weights file.
    pub fn weights(&self) -> &Path {
        &self.weights
    }

    /// Bone probability `[k, j, i]` of every voxel of `hu` (grey values of one scan), each voxel's
    /// own patch at the scan's native spacing (the model's working spacing is not applied: see
    /// [`Self::probabilities_at`]). `slice_mm`: each slice's position along the normal, mm
    /// ([`crate::dicom::geometry::Geometry::slice_positions_mm`]); read only by a model with
    /// neighbour planes.
    ///
    /// # Errors
    /// [`CnnError::Normalise`] for a flat volume, [`CnnError::Torch`] when libtorch fails (its
    /// panics are caught), [`CnnError::Input`] when a model with neighbour planes gets no usable
    /// slice positions.
    pub fn probabilities(
        &self,
        hu: ArrayView3<f32>,
        slice_mm: &[f64],
    ) -> Result<Array3<f32>, CnnError> {
        self.probabilities_and_normaliser(hu, slice_mm, None)
            .map(|(p, _)| p)
    }

    /// [`Self::probabilities`] of a scan with PixelSpacing `spacing` (`[Δj, Δi]`, mm): when the
    /// model has a working pixel spacing and the scan's differs from it, the network runs on the
    /// resampled slices and the probabilities are resampled back ([`super::resample`]).
    ///
    /// # Errors
    /// As [`Self::probabilities`].
    pub fn probabilities_at(
        &self,
        hu: ArrayView3<f32>,
        slice_mm: &[f64],
        spacing: [f64; 2],
    ) -> Result<Array3<f32>, CnnError> {
        self.probabilities_and_normaliser(hu, slice_mm, Some(spacing))
            .map(|(p, _)| p)
    }

    /// The masks this segmenter would give `ct` at each decision threshold of `thresholds`
    /// (probabilities in 0..=1), handed to `each` in turn as `(threshold, mask)`: the network runs
    /// once, then its output is thresholded and post-processed (this segmenter's [`PostMode`],
    /// with the probability hysteresis at each threshold) exactly as [`Segmenter::segment`] does.
    /// For calibrating the threshold through the whole chain (`osteon calibrate`).
    ///
    /// # Errors
    /// [`CnnError`] of the network run (shape, device, normalisation).
    pub fn masks_at(
        &self,
        ct: &CtVolume,
        thresholds: &[f32],
        mut each: impl FnMut(f32, Mask),
    ) -> Result<(), CnnError> {
        let (p, norm) = self.probabilities_and_normaliser(
            ct.hu.view(),
            &ct.geometry.slice_positions_mm(),
            Some(ct.geometry.pixel_spacing),
        )?;
        for &t in thresholds {
            each(t, self.post_processed(ct, p.view(), &norm, t).0);
        }
        Ok(())
    }

    /// `prob >= threshold` of `ct` (probabilities `prob`, same shape), post-processed with this
    /// segmenter's [`PostMode`] and the scan's anchors `norm` (the hysteresis at `threshold`).
    fn post_processed(
        &self,
        ct: &CtVolume,
        prob: ArrayView3<f32>,
        norm: &Normaliser,
        threshold: f32,
    ) -> (Mask, PostProcessing) {
        post_process(
            prob.mapv(|v| u8::from(v >= threshold)),
            ct.hu.view(),
            &ct.geometry,
            [norm.anchors.air, norm.anchors.tissue],
            self.post_mode,
            Some((prob, threshold)),
        )
    }

    /// The working grid of a scan with `hu`'s slices and PixelSpacing `spacing`, if it is resampled.
    pub fn working_grid(&self, hu: ArrayView3<f32>, spacing: [f64; 2]) -> Option<InPlaneGrid> {
        let (_, rows, cols) = hu.dim();
        self.meta
            .working_pixel_mm
            .and_then(|w| InPlaneGrid::new(rows, cols, spacing, w))
    }

    /// Probabilities and the normalisation fitted to `hu` (on its native grey values, before any
    /// resampling).
    fn probabilities_and_normaliser(
        &self,
        hu: ArrayView3<f32>,
        slice_mm: &[f64],
        spacing: Option<[f64; 2]>,
    ) -> Result<(Array3<f32>, Normaliser), CnnError> {
        let norm = Normaliser::fit(self.meta.normalisation, hu)?;
        tracing::info!(
            air = norm.anchors.air,
            tissue = norm.anchors.tissue,
            "grey-value anchors of the CNN's normalisation (air -> 0, soft tissue -> 1)"
        );
        if !anchors_look_like_ct(norm.anchors.air, norm.anchors.tissue) {
            tracing::warn!(
                air = norm.anchors.air,
                tissue = norm.anchors.tissue,
                "grey-value anchors far from any CT seen (air about -1000 HU, soft tissue about \
                 40 HU; a cone-beam-like 0.75 x + 200 gives -550 and 230): the series may not be \
                 calibrated, inverted, or hold no air or soft tissue; check the result"
            );
        }
        let grid = spacing.and_then(|s| self.working_grid(hu, s));
        if let Some(g) = grid {
            g.check_size(hu.dim().0).map_err(CnnError::Input)?;
            tracing::info!(
                spacing_mm = ?g.spacing,
                working_mm = g.working_mm,
                working_grid = ?[g.work_rows, g.work_cols],
                "CNN runs on slices resampled to the model's working pixel spacing"
            );
        }
        let guard = self
            .inner
            .lock()
            .map_err(|_| CnnError::Torch("model mutex poisoned".into()))?;
        let run = std::panic::AssertUnwindSafe(|| match grid {
            None => dense_probabilities(&guard.net, &norm, hu, slice_mm, &self.options),
            Some(g) => {
                let work = g.to_working(hu);
                dense_probabilities(&guard.net, &norm, work.view(), slice_mm, &self.options)
                    .map(|p| g.to_native(p.view()))
            }
        });
        let p = std::panic::catch_unwind(run).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libtorch panicked".into());
            Err(CnnError::Torch(msg))
        })?;
        Ok((p, norm))
    }

    /// Number of trainable values of the loaded model.
    pub fn parameter_count(&self) -> i64 {
        self.inner.lock().map_or(0, |g| {
            g.vs.trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum()
        })
    }
}

/// AlgorithmVersion (0066,0031), VR LO, at most 64 characters (PS3.5 6.2): family, filters,
/// threshold, working pixel spacing when set, test-time orientations when more than one (`-o8`),
/// the first 8 hex digits of the weights' SHA-256
/// (which model file) and Osteon's version, e.g.
/// `minnema2018-patch-fcn-16x32x32x32-t0.725-w4abb7da0/0.1.0`. When that is too long (3-digit
/// filter counts with a working spacing), Osteon's version and then the filters are left out:
/// the weights' digest still names the model.
pub fn algorithm_version(
    family: &str,
    filters: &[usize],
    threshold: f32,
    working_pixel_mm: Option<f64>,
    orientations: usize,
    weights_sha8: &str,
) -> String {
    let filters = filters
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let p = working_pixel_mm.map_or(String::new(), |w| format!("-p{w:.3}"));
    let o = if orientations > 1 {
        format!("-o{orientations}")
    } else {
        String::new()
    };
    let tail = format!("-t{threshold:.3}{p}{o}-w{weights_sha8}");
    let version = env!("CARGO_PKG_VERSION");
    [
        format!("{family}-{filters}{tail}/{version}"),
        format!("{family}-{filters}{tail}"),
        format!("{family}{tail}"),
    ]
    .into_iter()
    .find(|v| v.len() <= 64)
    .unwrap_or_else(|| format!("{family}{tail}").chars().take(64).collect())
}

impl Segmenter for CnnSegmenter {
    fn identity(&self) -> AlgorithmIdentity {
        let f = &self.meta.architecture.filters;
        // A post-processing other than the default makes other masks from the same weights: it
        // is named after the weights' digest (`-wa6440620-largest`), the part always kept.
        let sha8 = self.weights_sha256.get(..8).unwrap_or("");
        let weights = match self.post_mode {
            PostMode::Bones => sha8.to_owned(),
            PostMode::Largest => format!("{sha8}-largest"),
            PostMode::Raw => format!("{sha8}-raw"),
        };
        AlgorithmIdentity {
            name: "osteon-cnn".to_owned(),
            version: algorithm_version(
                &self.meta.architecture.family,
                f,
                self.meta.threshold,
                self.meta.working_pixel_mm,
                self.meta.test_time_orientations,
                &weights,
            ),
            skull_specific: false,
        }
    }

    fn segment(&self, ct: &CtVolume) -> Result<Mask, SegmentError> {
        let (p, norm) = self
            .probabilities_and_normaliser(
                ct.hu.view(),
                &ct.geometry.slice_positions_mm(),
                Some(ct.geometry.pixel_spacing),
            )
            .map_err(|e| SegmentError::Runtime(e.to_string()))?;
        if let Ok(mut a) = self.last_anchors.lock() {
            *a = Some([f64::from(norm.anchors.air), f64::from(norm.anchors.tissue)]);
        }
        let t = self.meta.threshold;
        // Confidence: probability of the chosen class, over the voxels the network scored (inside
        // the head's box; voxels outside it are exactly 0).
        let (sum, n) = p
            .iter()
            .filter(|&&v| v > 0.0)
            .fold((0f64, 0u64), |(s, n), &v| {
                (s + f64::from(v.max(1.0 - v)), n + 1)
            });
        if let Ok(mut c) = self.last_confidence.lock() {
            *c = (n > 0).then(|| sum / n as f64);
        }
        let (mask, post) = self.post_processed(ct, p.view(), &norm, t);
        let kept = post.pieces;
        if let Ok(mut p) = self.last_post.lock() {
            *p = Some(post);
        }
        if kept.found == 0 {
            let grid = self
                .working_grid(ct.hu.view(), ct.geometry.pixel_spacing)
                .map_or(String::new(), |g| {
                    format!(
                        " (the network ran on {} x {} working slices at {} mm)",
                        g.work_rows, g.work_cols, g.working_mm
                    )
                });
            return Err(SegmentError::NoBone(format!(
                "no voxel with bone probability >= {t}{grid}"
            )));
        }
        Ok(mask)
    }

    fn mean_confidence(&self) -> Option<f64> {
        self.last_confidence.lock().ok().and_then(|c| *c)
    }

    fn grey_anchors(&self) -> Option<[f64; 2]> {
        self.last_anchors.lock().ok().and_then(|a| *a)
    }

    fn post_processing(&self) -> Option<PostProcessing> {
        self.last_post.lock().ok().and_then(|p| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::{algorithm_version, anchors_look_like_ct};

    #[test]
    fn ct_and_cone_beam_anchors_pass_and_inverted_or_bone_only_ones_do_not() {
        // Calibrated CT, the cone-beam-like 0.75 x + 200, the phantoms' cone-beam profile.
        assert!(anchors_look_like_ct(-1000.0, 40.0));
        assert!(anchors_look_like_ct(-550.0, 230.0));
        assert!(anchors_look_like_ct(-960.0, -208.5));
        // Inverted grey values, a series of bone only, no contrast.
        assert!(!anchors_look_like_ct(-31.0, 992.0));
        assert!(!anchors_look_like_ct(-1000.0, 1198.0));
        assert!(!anchors_look_like_ct(-400.0, -250.0));
        assert!(!anchors_look_like_ct(f32::NAN, 40.0));
    }

    #[test]
    fn algorithm_version_fits_the_64_characters_of_lo() {
        let v = algorithm_version(
            "minnema2018-patch-fcn",
            &[16, 32, 32, 32],
            0.725,
            None,
            1,
            "4abb7da0",
        );
        assert_eq!(
            v,
            format!(
                "minnema2018-patch-fcn-16x32x32x32-t0.725-w4abb7da0/{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let v = algorithm_version(
            "minnema2018-patch-fcn",
            &[16, 32, 32, 32],
            0.725,
            Some(0.488),
            1,
            "4abb7da0",
        );
        assert!(v.starts_with("minnema2018-patch-fcn-16x32x32x32-t0.725-p0.488-w4abb7da0/"));
        let v = algorithm_version(
            "minnema2018-patch-fcn",
            &[16, 32, 32, 32],
            0.725,
            Some(0.976),
            8,
            "4abb7da0",
        );
        // 66 characters with Osteon's version: the version goes, the orientations stay.
        assert_eq!(
            v,
            "minnema2018-patch-fcn-16x32x32x32-t0.725-p0.976-o8-w4abb7da0"
        );
        // 3-digit filters with a working spacing: 67 characters in full, so the version goes.
        let v = algorithm_version(
            "minnema2018-patch-fcn",
            &[128; 4],
            0.5,
            Some(3.0),
            1,
            "b991b94f",
        );
        assert_eq!(
            v,
            "minnema2018-patch-fcn-128x128x128x128-t0.500-p3.000-wb991b94f"
        );
        assert!(v.len() <= 64);
        let v = algorithm_version(&"f".repeat(60), &[128; 4], 0.5, Some(3.0), 8, "b991b94f");
        assert_eq!(v.len(), 64);
    }
}
