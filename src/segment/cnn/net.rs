//! The patch classifier in tch as a fully convolutional network ([`Net`]).

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::arch::Architecture;

/// The network of an [`Architecture`]: input `[N, 1, H, W]` normalised grey values, output
/// `[N, 2, H - 32, W - 32]` logits (channel 1 = bone), output voxel `(y, x)` being the class of
/// the 33x33 input patch whose top-left corner is `(y, x)`, i.e. centred on input `(y+16, x+16)`.
#[derive(Debug)]
pub struct Net {
    convs: Vec<nn::Conv2D>,
    norms: Vec<nn::BatchNorm>,
    last: nn::Conv2D,
    dropout: f64,
}

impl Net {
    /// Creates the variables of `arch` under `vs` (names `conv{1..4}`, `bn{1..4}`, `classify`).
    /// The caller has validated `arch` ([`Architecture::validate`]).
    pub fn new(vs: &nn::Path, arch: &Architecture) -> Net {
        let mut convs = Vec::with_capacity(4);
        let mut norms = Vec::with_capacity(4);
        let mut c_in = 1i64;
        for (b, (&f, &k)) in arch.filters.iter().zip(arch.kernels.iter()).enumerate() {
            let f = f as i64;
            convs.push(nn::conv2d(
                vs / format!("conv{}", b + 1),
                c_in,
                f,
                k as i64,
                Default::default(),
            ));
            norms.push(nn::batch_norm2d(
                vs / format!("bn{}", b + 1),
                f,
                Default::default(),
            ));
            c_in = f;
        }
        let fk = arch.final_kernel().unwrap_or(1) as i64;
        let last = nn::conv2d(vs / "classify", c_in, 2, fk, Default::default());
        Net {
            convs,
            norms,
            last,
            dropout: arch.dropout,
        }
    }

    /// Logits `[N, 2, H - 32, W - 32]` of `xs` `[N, 1, H, W]`; `train` turns dropout on and makes
    /// batch norm use (and update) batch statistics.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn) in self.convs.iter().zip(&self.norms) {
            x = x
                .apply(conv)
                .dropout(self.dropout, train)
                .relu()
                .apply_t(bn, train)
                .max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false);
        }
        x.apply(&self.last)
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Net::forward_t(self, xs, train)
    }
}
