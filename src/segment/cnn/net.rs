//! The patch classifier in tch as a fully convolutional network ([`Net`]).

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::arch::Architecture;
use super::planes::Neighbours;

/// The network of an [`Architecture`]: input `[N, P, H, W]` normalised grey values (`P` planes:
/// the slice, then with neighbour planes the planes below and above it), output
/// `[N, 2, H - 32, W - 32]` logits (channel 1 = bone), output voxel `(y, x)` being the class of
/// the 33x33 input patch whose top-left corner is `(y, x)`, i.e. centred on input `(y+16, x+16)`.
#[derive(Debug)]
pub struct Net {
    convs: Vec<nn::Conv2D>,
    norms: Vec<nn::BatchNorm>,
    last: nn::Conv2D,
    dropout: f64,
    neighbours: Neighbours,
}

impl Net {
    /// Creates the variables of `arch` under `vs` (names `conv{1..4}`, `bn{1..4}`, `classify`).
    /// The caller has validated `arch` ([`Architecture::validate`]).
    pub fn new(vs: &nn::Path, arch: &Architecture) -> Net {
        let mut convs = Vec::with_capacity(4);
        let mut norms = Vec::with_capacity(4);
        let mut c_in = arch.planes() as i64;
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
            neighbours: arch.neighbours(),
        }
    }

    /// Input planes `P` of the first convolution (1, or 3 with neighbour planes).
    pub fn planes(&self) -> usize {
        self.neighbours.planes()
    }

    /// The neighbour planes the net reads beside its slice.
    pub fn neighbours(&self) -> Neighbours {
        self.neighbours
    }

    /// Logits `[N, 2, H - 32, W - 32]` of `xs` `[N, P, H, W]`; `train` turns dropout on and makes
    /// batch norm use (and update) batch statistics.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (b, (conv, bn)) in self.convs.iter().zip(&self.norms).enumerate() {
            x = exact_conv(&x, conv);
            if b == 0 {
                x = channels_last(&x);
            }
            x = pool2_stride1(&x.dropout(self.dropout, train).relu().apply_t(bn, train));
        }
        exact_conv(&x, &self.last)
    }
}

/// Valid, stride-1 convolution with TF32 off: libtorch lets cuDNN round fp32 operands to TF32
/// (10-bit mantissa) by default, which would make GPU fp32 differ from the CPU by ~1e-3; with it
/// off, fp32 is fp32 on every device (under fp16 autocast the convolution still runs in fp16).
fn exact_conv(x: &Tensor, conv: &nn::Conv2D) -> Tensor {
    x.internal_convolution(
        &conv.ws,
        conv.bs.as_ref(),
        [1, 1],
        [0, 0],
        [1, 1],
        false,
        [0, 0],
        1,
        false,
        false,
        true,
        false,
    )
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Net::forward_t(self, xs, train)
    }
}

/// The same tensor in channels-last layout (NHWC strides, NCHW shape): oneDNN's convolutions on the
/// CPU run 1.3-2.4x faster on it (measured on this 2-core machine: 13x13 2-class layer 2.5 -> 1.05 s,
/// 5x5 32->32 0.87 -> 0.65 s for 4 slices of 420x420); later layers keep the layout.
fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// 2x2 max-pool with stride 1 as the maximum of shifted views: the same values as
/// `max_pool2d([2, 2], [1, 1])`, 3x faster on the CPU (stride-1 pooling is not a fast path there).
fn pool2_stride1(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let a = x.narrow(2, 0, h - 1).maximum(&x.narrow(2, 1, h - 1));
    a.narrow(3, 0, w - 1).maximum(&a.narrow(3, 1, w - 1))
}
