//! The patch classifier's architecture as data: filter counts, kernel sizes, receptive field and cost.
//!
//! The family is the paper's (Minnema et al. 2018, §2.3, derived from the brain-tumour patch CNN of
//! Pereira et al. 2016): four blocks `conv k x k (valid) -> ReLU -> batch norm -> 2x2 max-pool`, kernels
//! 7, 5, 5, 3, dropout 0.1 after each convolution (training only), then a 2-class layer. With pooling
//! stride 1 and valid convolutions every layer is translation-equivariant, so the 2-class layer is a
//! convolution over the map that remains of one patch and the whole classifier is a fully
//! convolutional network. Receptive field (all strides 1): `1 + sum(k - 1)` over the layers =
//! `1 + 6 + 1 + 4 + 1 + 4 + 1 + 2 + 1 + (f - 1)`, where `f` is the final kernel; for a 33x33 patch the
//! four blocks shrink it by 20 to a 13x13 map, so the 2-class layer is a 13x13 convolution
//! (`f = 13`) and the receptive field is exactly 33x33. (The "14x14 map" is the size before
//! the fourth pooling.)

use serde::{Deserialize, Serialize};

use super::planes::Neighbours;

/// Side of the square axial patch the classifier sees, voxels.
pub const PATCH: usize = 33;
/// Half patch: voxels of context on each side of the centre (`PATCH / 2`).
pub const HALF: usize = PATCH / 2;

/// Architecture of one model; written into the model's JSON and checked on load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Family name; only `minnema2018-patch-fcn` exists.
    pub family: String,
    /// Output channels of the four convolution blocks.
    pub filters: [usize; 4],
    /// Kernel sizes of the four convolutions (7, 5, 5, 3 in the paper).
    pub kernels: [usize; 4],
    /// Max-pool window (2) — stride is always 1.
    pub pool: usize,
    /// Dropout probability after each convolution during training (0.1).
    pub dropout: f64,
    /// Patch side the classifier is built for, voxels (33).
    pub patch: usize,
    /// Neighbour planes, mm: 0 = one input plane (the slice; models before this field existed read
    /// back as 0); `d > 0` = three planes, the slice and the planes `d` mm below and above it along
    /// the slice normal ([`super::planes::input_planes`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub neighbour_mm: f64,
    /// Neighbour planes that are the series' adjacent slices (`k - 1`, `k + 1`), whatever their
    /// distance ([`Neighbours::Adjacent`]); `neighbour_mm` is then 0. Absent (false) in models
    /// before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub neighbour_adjacent: bool,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The family name in [`Architecture::family`].
pub const FAMILY: &str = "minnema2018-patch-fcn";

impl Architecture {
    /// The paper's family with `filters` per block and a 33x33 patch.
    pub fn with_filters(filters: [usize; 4]) -> Architecture {
        Architecture {
            family: FAMILY.to_owned(),
            filters,
            kernels: [7, 5, 5, 3],
            pool: 2,
            dropout: 0.1,
            patch: PATCH,
            neighbour_mm: 0.0,
            neighbour_adjacent: false,
        }
    }

    /// The same with the neighbour planes `nb` ([`Neighbours::AtMm`] is not checked here:
    /// [`Architecture::validate`] does).
    pub fn with_neighbours(mut self, nb: Neighbours) -> Architecture {
        (self.neighbour_mm, self.neighbour_adjacent) = match nb {
            Neighbours::One => (0.0, false),
            Neighbours::AtMm(d) => (d, false),
            Neighbours::Adjacent => (0.0, true),
        };
        self
    }

    /// The neighbour planes the model reads.
    pub fn neighbours(&self) -> Neighbours {
        Neighbours::from_settings(self.neighbour_mm, self.neighbour_adjacent)
    }

    /// Input planes of the first convolution: 1, or 3 with neighbour planes.
    pub fn planes(&self) -> usize {
        self.neighbours().planes()
    }

    /// Voxels one side of the map loses through the four blocks (valid convs + stride-1 pools).
    pub fn shrink(&self) -> usize {
        self.kernels.iter().map(|k| k - 1).sum::<usize>() + 4 * (self.pool - 1)
    }

    /// Kernel of the final 2-class convolution: the map left of one patch (`patch - shrink`), or
    /// `None` when the blocks consume the whole patch.
    pub fn final_kernel(&self) -> Option<usize> {
        self.patch.checked_sub(self.shrink()).filter(|&f| f >= 1)
    }

    /// Receptive field of one output voxel, voxels (= `patch` for a valid architecture).
    pub fn receptive_field(&self) -> usize {
        1 + self.shrink() + self.final_kernel().map_or(0, |f| f - 1)
    }

    /// Multiply-accumulates per output voxel of dense inference (convolutions only).
    pub fn macs_per_voxel(&self) -> u64 {
        let mut c_in = self.planes() as u64;
        let mut total = 0u64;
        for (f, k) in self.filters.iter().zip(self.kernels) {
            total += (k * k) as u64 * c_in * *f as u64;
            c_in = *f as u64;
        }
        let fk = self.final_kernel().unwrap_or(0) as u64;
        total + fk * fk * c_in * 2
    }

    /// Number of trainable parameters (weights, biases, batch-norm scale and shift).
    pub fn parameters(&self) -> u64 {
        let mut c_in = self.planes() as u64;
        let mut total = 0u64;
        for (f, k) in self.filters.iter().zip(self.kernels) {
            let f = *f as u64;
            total += (k * k) as u64 * c_in * f + f + 2 * f;
            c_in = f;
        }
        let fk = self.final_kernel().unwrap_or(0) as u64;
        total + fk * fk * c_in * 2 + 2
    }

    /// Checks the family, kernels, pool and patch against what this build implements.
    ///
    /// # Errors
    /// A sentence naming the first field that differs.
    pub fn validate(&self) -> Result<(), String> {
        if self.family != FAMILY {
            return Err(format!("family {:?}, expected {FAMILY:?}", self.family));
        }
        if self.kernels != [7, 5, 5, 3] || self.pool != 2 || self.patch != PATCH {
            return Err(format!(
                "kernels {:?}, pool {}, patch {}: expected [7, 5, 5, 3], 2, {PATCH}",
                self.kernels, self.pool, self.patch
            ));
        }
        if self.filters.iter().any(|&f| f == 0 || f > 1024) {
            return Err(format!("filter counts {:?} outside 1..=1024", self.filters));
        }
        if !(self.neighbour_mm.is_finite() && (0.0..=20.0).contains(&self.neighbour_mm)) {
            return Err(format!(
                "neighbour planes at {} mm: expected 0 (one plane) to 20 mm",
                self.neighbour_mm
            ));
        }
        if self.neighbour_adjacent && self.neighbour_mm != 0.0 {
            return Err(format!(
                "neighbour planes both adjacent and at {} mm: expected one of the two",
                self.neighbour_mm
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} outside [0, 1)", self.dropout));
        }
        Ok(())
    }
}

/// Filter counts of the shipped default (see the module docs of [`super`] for the measured cost).
pub const DEFAULT_FILTERS: [usize; 4] = [16, 32, 32, 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receptive_field_is_the_33_patch() {
        let a = Architecture::with_filters(DEFAULT_FILTERS);
        assert_eq!(a.shrink(), 20);
        assert_eq!(a.final_kernel(), Some(13));
        assert_eq!(a.receptive_field(), 33);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn cost_of_the_paper_and_the_default() {
        let paper = Architecture::with_filters([64, 128, 128, 128]);
        // 49*64 + 25*64*128 + 25*128*128 + 9*128*128 + 169*128*2
        assert_eq!(
            paper.macs_per_voxel(),
            3136 + 204_800 + 409_600 + 147_456 + 43_264
        );
        let small = Architecture::with_filters([16, 32, 32, 32]);
        assert_eq!(
            small.macs_per_voxel(),
            784 + 12_800 + 25_600 + 9_216 + 10_816
        );
        assert_eq!(
            small.parameters(),
            (49 * 16 + 48)
                + (25 * 16 * 32 + 96)
                + (25 * 32 * 32 + 96)
                + (9 * 32 * 32 + 96)
                + 169 * 32 * 2
                + 2
        );
    }

    #[test]
    fn neighbour_planes_cost_and_json() {
        let one = Architecture::with_filters(DEFAULT_FILTERS);
        let three = one.clone().with_neighbours(Neighbours::AtMm(3.0));
        assert_eq!(three.planes(), 3);
        // Only the first convolution grows: 49 x 16 x 2 more multiply-adds and weights.
        assert_eq!(three.macs_per_voxel() - one.macs_per_voxel(), 1568);
        assert_eq!(three.parameters() - one.parameters(), 1568);
        // A one-plane model's JSON is unchanged, and one without the field reads back as one plane.
        let json = serde_json::to_string(&one).unwrap();
        assert!(!json.contains("neighbour_mm"));
        assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), one);
        let back: Architecture =
            serde_json::from_str(&serde_json::to_string(&three).unwrap()).unwrap();
        assert_eq!(back.neighbour_mm, 3.0);
        assert!(three.validate().is_ok());
        let adjacent = one.clone().with_neighbours(Neighbours::Adjacent);
        assert_eq!(adjacent.planes(), 3);
        assert_eq!(adjacent.parameters(), three.parameters());
        let json = serde_json::to_string(&adjacent).unwrap();
        assert!(json.contains("\"neighbour_adjacent\":true") && !json.contains("neighbour_mm"));
        let back: Architecture = serde_json::from_str(&json).unwrap();
        assert_eq!(back.neighbours(), Neighbours::Adjacent);
        assert!(adjacent.validate().is_ok());
        let both = Architecture {
            neighbour_mm: 3.0,
            ..adjacent
        };
        assert!(both.validate().unwrap_err().contains("both adjacent"));
        assert!(one
            .with_neighbours(Neighbours::AtMm(f64::NAN))
            .validate()
            .unwrap_err()
            .contains("neighbour"));
    }

    #[test]
    fn validate_names_the_wrong_field() {
        let mut a = Architecture::with_filters(DEFAULT_FILTERS);
        a.kernels = [5, 5, 5, 3];
        assert!(a.validate().unwrap_err().contains("kernels"));
        let mut b = Architecture::with_filters([0, 1, 1, 1]);
        b.family = "unet".into();
        assert!(b.validate().unwrap_err().contains("family"));
    }
}
