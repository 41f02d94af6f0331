//! Virtual scanners: the table of profiles `osteon phantom --profile NAME` accepts (docs/phantom.md
//! lists them). Each fixes the grid, the image formation (in-plane PSF with edge overshoot for
//! sharp kernels, slice profile, noise level and grain, HU calibration, cupping, metal streaks) and
//! the DICOM identity (Manufacturer, ManufacturerModelName, ConvolutionKernel, KVP,
//! XRayTubeCurrent) that per-scanner QA keys on.
//!
//! The first six span the scanners and grids of the paper's gold-standard set (pixel 0.34-0.57 mm,
//! slice 0.6-1.5 mm, 512x512); `routine-5mm` and `routine-4mm-tilt` are routine thick-slice head
//! CT (4-5 mm slab: broad partial-volume bands where the slices cut the vault obliquely);
//! `lowdose` and `cbct` are the hard cases. Manufacturer/model names
//! are those of real product lines so that QA groups them as it would real scans; the series
//! description and station name say "synthetic".

use serde::Serialize;

use crate::dicom::ct_writer::PixelStorage;

/// One virtual scanner.
#[derive(Clone, Debug, Serialize)]
pub struct ScannerProfile {
    /// `--profile` name.
    pub name: &'static str,
    /// One line for the docs and `--list`.
    pub summary: &'static str,
    pub manufacturer: &'static str,
    pub model: &'static str,
    /// ConvolutionKernel (0018,1210).
    pub kernel: &'static str,
    /// KVP (0018,0060), kV.
    pub kvp: f64,
    /// XRayTubeCurrent (0018,1151), mA.
    pub tube_current_ma: f64,
    /// Rotation time, s (Exposure = mA x s).
    pub rotation_s: f64,
    /// Matrix (Rows = Columns).
    pub matrix: usize,
    /// PixelSpacing, mm.
    pub pixel_mm: f64,
    /// Distance between slice centres, mm.
    pub slice_spacing_mm: f64,
    /// Nominal SliceThickness (FWHM of the slice profile), mm.
    pub slice_thickness_mm: f64,
    /// Default scan length along the slice normal, standard-head mm (scaled by the head's size):
    /// from above the vertex down through C1/C2, so that the skull base is always scanned.
    pub coverage_mm: f64,
    /// Gantry tilt, degrees (slices sheared along the column direction).
    pub tilt_deg: f64,
    /// In-plane PSF: Gaussian sigma, mm.
    pub psf_sigma_mm: f64,
    /// Edge overshoot weight `a` of the PSF `(1 + a) G(σ) - a G(2.5 σ)` (0 = smooth kernel).
    pub overshoot: f64,
    /// Noise SD (HU) in soft tissue at the profile's tube current.
    pub noise_sd_hu: f64,
    /// Noise SD in air outside the head, as a fraction of `noise_sd_hu` (image-domain noise only).
    pub air_noise_ratio: f64,
    /// Noise grain (Gaussian sigma of the noise filter), mm: larger = blotchier texture
    /// (image-domain noise only).
    pub noise_grain_mm: f64,
    /// Noise simulated in the projection domain: Poisson photon counts on the rays of the
    /// noise-free slice, reconstructed by filtered back-projection ([`super::fbp_noise`]), so it
    /// follows the attenuation of the rays (photon starvation and its streaks at the skull base,
    /// less noise at the periphery); `noise_sd_hu` is then the SD where every ray has the
    /// attenuation of the middle of the head at vault level. Off: stationary image-domain noise
    /// of grain `noise_grain_mm`.
    pub projection_noise: bool,
    /// HU calibration: stored HU = scale x HU + offset.
    pub hu_scale: f64,
    pub hu_offset: f64,
    /// Beam-hardening cupping: HU lost at the head centre relative to its edge.
    pub cupping_hu: f64,
    /// Peak amplitude of metal streaks next to a dental filling (radius 1.5 mm), HU. Published
    /// streaks beside amalgam reach several hundred to over 1000 HU (Gong et al., *Dentomaxillofac
    /// Radiol* 42:20120105, 2013; Boas & Fleischmann, *Imaging Med* 4:229-240, 2012); they are
    /// stronger with sharp kernels (the ramp filter's high frequencies), at lower kV (beam
    /// hardening) and at low dose (photon starvation): 1000 HU for smooth kernels, 1100 for
    /// standard, 1300-1400 for bone kernels, 1600 for the 80 kV / 2 mAs profile.
    pub streak_hu: f64,
    /// Largest value the scanner reports (e.g. 3071 for a 12-bit range).
    pub max_hu: f64,
    /// Smallest value the scanner reports: -1024 for most (air noise is clipped there), lower for
    /// a scanner that keeps the negative tail of the noise in air (signed storage).
    pub min_hu: f64,
    /// Pixel encoding.
    #[serde(skip)]
    pub storage: PixelStorage,
}

/// Default coverage (standard-head mm): the scan starts 82 mm above the head centre (above the
/// vertex: outer vault 66-74 mm + scalp 4-8 mm, anatomy/mod.rs) and ends 103 mm below it, past the
/// foramen magnum (posterior fossa floor at -44 mm), C1 (-54 to -70 mm) and the dens and body of C2
/// (to -97 mm) in src/phantom/anatomy/face.rs, with room for +-8 degrees of head pitch.
pub const COVERAGE_MM: f64 = 185.0;

/// Largest head size factor drawn by `anatomy::Head::random`.
const MAX_HEAD_SCALE: f64 = 1.06;

const PHILIPS_UNSIGNED: PixelStorage = PixelStorage::Unsigned { intercept: -1024 };

impl ScannerProfile {
    /// Default number of slices: enough to cover [`ScannerProfile::coverage_mm`] at the profile's
    /// slice spacing for the largest head (size factor 1.06), e.g. 315 at 0.625 mm, 158 at 1.25 mm.
    pub fn default_slices(&self) -> usize {
        (self.coverage_mm * MAX_HEAD_SCALE / self.slice_spacing_mm).ceil() as usize + 1
    }
}

/// All profiles.
pub fn profiles() -> &'static [ScannerProfile] {
    &PROFILES
}

/// The profile named `name`.
pub fn profile(name: &str) -> Option<&'static ScannerProfile> {
    PROFILES.iter().find(|p| p.name == name)
}

static PROFILES: [ScannerProfile; 10] = [
    ScannerProfile {
        name: "philips-ingenuity-ub",
        summary: "Philips Ingenuity CT, kernel UB (standard brain, iDose), 0.45 mm, 1 mm slices",
        manufacturer: "Philips",
        model: "Ingenuity CT",
        kernel: "UB",
        kvp: 120.0,
        tube_current_ma: 300.0,
        rotation_s: 0.75,
        matrix: 512,
        pixel_mm: 0.451,
        slice_spacing_mm: 1.0,
        slice_thickness_mm: 1.0,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.55,
        overshoot: 0.0,
        noise_sd_hu: 6.0,
        air_noise_ratio: 0.85,
        noise_grain_mm: 0.55,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 4.0,
        streak_hu: 1000.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PHILIPS_UNSIGNED,
    },
    ScannerProfile {
        name: "ge-lightspeed-bone",
        summary: "GE LightSpeed VCT, kernel BONE (sharp, overshoot), 0.49 mm, 0.625 mm slices",
        manufacturer: "GE MEDICAL SYSTEMS",
        model: "LightSpeed VCT",
        kernel: "BONE",
        kvp: 120.0,
        tube_current_ma: 250.0,
        rotation_s: 1.0,
        matrix: 512,
        pixel_mm: 0.488,
        slice_spacing_mm: 0.625,
        slice_thickness_mm: 0.625,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.28,
        overshoot: 0.35,
        noise_sd_hu: 28.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.3,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 3.0,
        streak_hu: 1300.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "siemens-definition-h70h",
        summary: "Siemens SOMATOM Definition AS+, kernel H70h (very sharp), 0.34 mm, 0.6 mm slices",
        manufacturer: "SIEMENS",
        model: "SOMATOM Definition AS+",
        kernel: "H70h",
        kvp: 120.0,
        tube_current_ma: 320.0,
        rotation_s: 1.0,
        matrix: 512,
        pixel_mm: 0.34,
        slice_spacing_mm: 0.6,
        slice_thickness_mm: 0.6,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.22,
        overshoot: 0.45,
        noise_sd_hu: 45.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.22,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 2.0,
        streak_hu: 1400.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PHILIPS_UNSIGNED,
    },
    ScannerProfile {
        name: "siemens-sensation-h30s",
        summary: "Siemens Sensation 64, kernel H30s (smooth), 0.43 mm, 1.5 mm slices at 1.0 mm",
        manufacturer: "SIEMENS",
        model: "Sensation 64",
        kernel: "H30s",
        kvp: 120.0,
        tube_current_ma: 280.0,
        rotation_s: 1.0,
        matrix: 512,
        pixel_mm: 0.43,
        slice_spacing_mm: 1.0,
        slice_thickness_mm: 1.5,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.55,
        overshoot: 0.0,
        noise_sd_hu: 4.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.7,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 6.0,
        streak_hu: 1000.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PHILIPS_UNSIGNED,
    },
    ScannerProfile {
        name: "toshiba-aquilion-fc30",
        summary: "Toshiba Aquilion ONE, kernel FC30 (bone head), 0.57 mm, 1 mm slices, +3 HU offset",
        manufacturer: "TOSHIBA",
        model: "Aquilion ONE",
        kernel: "FC30",
        kvp: 120.0,
        tube_current_ma: 200.0,
        rotation_s: 1.0,
        matrix: 512,
        pixel_mm: 0.57,
        slice_spacing_mm: 1.0,
        slice_thickness_mm: 1.0,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.38,
        overshoot: 0.2,
        noise_sd_hu: 14.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.4,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 3.0,
        cupping_hu: 5.0,
        streak_hu: 1100.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "ge-hispeed-tilt",
        summary: "GE HiSpeed, kernel STANDARD, 0.49 mm, 1.25 mm slices, 15 deg gantry tilt",
        manufacturer: "GE MEDICAL SYSTEMS",
        model: "HiSpeed Dual",
        kernel: "STANDARD",
        kvp: 120.0,
        tube_current_ma: 200.0,
        rotation_s: 1.0,
        matrix: 512,
        pixel_mm: 0.488,
        slice_spacing_mm: 1.25,
        slice_thickness_mm: 1.25,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 15.0,
        psf_sigma_mm: 0.5,
        overshoot: 0.05,
        noise_sd_hu: 7.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.55,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: -4.0,
        cupping_hu: 12.0,
        streak_hu: 1100.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "routine-5mm",
        summary: "GE Optima CT660, kernel STANDARD, routine head: 5 mm slices every 5 mm, 0.49 mm, 260 mAs",
        manufacturer: "GE MEDICAL SYSTEMS",
        model: "Optima CT660",
        kernel: "STANDARD",
        // Routine adult head CT: 120 kV, 250-300 mAs, 5 mm axial images of brain kernel (AAPM
        // "Adult Routine Head CT Protocols", GE protocol pages; ACR-ASNR-SPR practice parameter for
        // head CT; ImPACT CT scanner evaluation reports use 120 kV, ~260-300 mAs and 5 mm images
        // for their head technique). Figures quoted from memory, not re-checked against the
        // documents here.
        kvp: 120.0,
        tube_current_ma: 260.0,
        rotation_s: 1.0,
        matrix: 512,
        // 250 mm display field of view (head), as `ge-hispeed-tilt`.
        pixel_mm: 0.488,
        slice_spacing_mm: 5.0,
        slice_thickness_mm: 5.0,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.5,
        overshoot: 0.05,
        // Quantum noise SD scales as 1 / sqrt(mAs x slice thickness) (Hsieh, *Computed Tomography*,
        // 2nd ed., §5.3): the STANDARD profile `ge-hispeed-tilt` has 7 HU at 200 mAs and 1.25 mm;
        // 260 mAs and 5 mm give 7 x sqrt(200/260 x 1.25/5) = 3.1 HU. ImPACT/ACR head-technique
        // noise at 5 mm is ~3-5 HU in a 20 cm water phantom; 3.5 HU (the head's bone and
        // shoulders make it a little noisier than water).
        noise_sd_hu: 3.5,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.6,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 10.0,
        streak_hu: 1100.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "routine-4mm-tilt",
        summary: "GE HiSpeed QX/i, kernel STANDARD, routine head: 4 mm slices every 4 mm, 15 deg gantry tilt, 0.49 mm",
        manufacturer: "GE MEDICAL SYSTEMS",
        model: "HiSpeed QX/i",
        kernel: "STANDARD",
        // Older 4-slice routine head: axial 4 x 1.25 mm summed into 4 mm images, gantry tilted
        // along the orbitomeatal line (15-25 deg; 15 deg keeps the vertex inside the default
        // series, tests/phantom.rs) to keep the orbits out of the beam; 120 kV,
        // 170 mA, 2 s rotation (340 mAs), as in GE HiSpeed head protocols (quoted from memory).
        kvp: 120.0,
        tube_current_ma: 170.0,
        rotation_s: 2.0,
        matrix: 512,
        pixel_mm: 0.488,
        slice_spacing_mm: 4.0,
        slice_thickness_mm: 4.0,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 15.0,
        psf_sigma_mm: 0.5,
        overshoot: 0.05,
        // 7 x sqrt(200/340 x 1.25/4) = 3.0 HU by the same scaling; 4.0 for the older, less
        // efficient detector.
        noise_sd_hu: 4.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.6,
        projection_noise: false,
        hu_scale: 1.0,
        hu_offset: -4.0,
        cupping_hu: 12.0,
        streak_hu: 1100.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "lowdose",
        summary: "GE Revolution, kernel STANDARD at 80 kV / 2 mAs (ultra-low dose): noise SD ~140-165 HU in the brain, photon starvation at the skull base, 0.49 mm, 1.25 mm",
        manufacturer: "GE MEDICAL SYSTEMS",
        model: "Revolution CT",
        kernel: "STANDARD",
        kvp: 80.0,
        tube_current_ma: 4.0,
        rotation_s: 0.5,
        matrix: 512,
        pixel_mm: 0.488,
        slice_spacing_mm: 1.25,
        slice_thickness_mm: 1.25,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.5,
        overshoot: 0.05,
        // Quantum noise SD scales as 1/sqrt(mAs) (Hsieh, *Computed Tomography*, 2nd ed., §5.3). The
        // standard-dose STANDARD profile (`ge-hispeed-tilt`) has 7 HU at 200 mAs; 2 mAs gives x 10.
        // At 80 kV instead of 120 kV, a head (~18 cm of water) lets through ~0.54 as many photons
        // (water 0.227 vs 0.193 cm^2/g at the ~50 and ~70 keV effective energies, NIST XCOM) from a
        // tube giving ~(80/120)^2.5 = 0.36 as many: ~0.2 of the photons, noise x 2.2. Together
        // ~150 HU, the top of the 90-150 HU of low-dose head CT read with a standard kernel. The
        // noise is simulated as photon counts and reconstructed (`projection_noise`), with the SD
        // set for rays through the middle of the head at vault level (`fbp_noise::L_REF`): the
        // brain of a real head there comes out near it (larger heads noisier), and lateral rays
        // through the petrous bones and shoulders starve, leaving streaks at the skull base.
        noise_sd_hu: 140.0,
        air_noise_ratio: 0.85,
        noise_grain_mm: 0.6,
        projection_noise: true,
        hu_scale: 1.0,
        hu_offset: 0.0,
        cupping_hu: 15.0,
        streak_hu: 1600.0,
        max_hu: 3071.0,
        min_hu: -2048.0,
        storage: PixelStorage::Signed,
    },
    ScannerProfile {
        name: "cbct",
        summary: "Cone-beam-like: 0.5 mm isotropic, 256 mm FOV, uncalibrated grey values (x0.75 - 150), strong cupping",
        manufacturer: "Planmeca",
        model: "ProMax 3D Max",
        kernel: "CBCT",
        kvp: 96.0,
        tube_current_ma: 8.0,
        rotation_s: 12.0,
        matrix: 512,
        pixel_mm: 0.5,
        slice_spacing_mm: 0.5,
        slice_thickness_mm: 0.5,
        coverage_mm: COVERAGE_MM,
        tilt_deg: 0.0,
        psf_sigma_mm: 0.4,
        overshoot: 0.1,
        noise_sd_hu: 55.0,
        air_noise_ratio: 0.8,
        noise_grain_mm: 0.45,
        projection_noise: false,
        hu_scale: 0.75,
        hu_offset: -150.0,
        cupping_hu: 180.0,
        streak_hu: 1200.0,
        max_hu: 3071.0,
        min_hu: -1024.0,
        storage: PixelStorage::Signed,
    },
];

#[cfg(test)]
mod tests {
    #[test]
    fn profiles_span_the_paper_grids() {
        let p = super::profiles();
        assert!(p.len() >= 8);
        let px: Vec<f64> = p.iter().map(|p| p.pixel_mm).collect();
        assert!(px.iter().any(|&v| v <= 0.34) && px.iter().any(|&v| v >= 0.57));
        let names: std::collections::HashSet<_> = p.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), p.len());
        assert!(super::profile("cbct").is_some() && super::profile("nope").is_none());
    }
}
