//! Windowed-sinc smoothing of a closed triangle mesh, which removes the voxel staircase without
//! shrinking the solid.
//!
//! Idea: G. Taubin, T. Zhang, G. Golub, "Optimal surface smoothing as filter design" (ECCV 1996;
//! IBM RC-20404), as used by VTK's `vtkWindowedSincPolyDataFilter`. With `W` the umbrella operator
//! (average of the one-ring neighbours) and `K = I - W` the graph Laplacian (spectrum in `[0, 2]`),
//! the positions are filtered by a polynomial `f(K) = Σ_{n=0..N} c_n T_n(I - K/2)` where `T_n` are
//! Chebyshev polynomials, evaluated with the three-term recurrence `x_{n+1} = 2 (I - K/2) x_n -
//! x_{n-1}`. The coefficients are those of the ideal low-pass filter with cut-off `k_pb` (pass band,
//! VTK's convention: `θ_pb = acos(1 - k_pb / 2)`, `c_0 = θ_pb / π`, `c_n = 2 sin(n θ_pb) / (n π)`),
//! multiplied by a Hamming window, with VTK's offset of the cut-off that makes the pass band flat,
//! then normalised so that `f(0) = Σ c_n = 1` (see [`coefficients`]): the low frequencies
//! (translation, overall shape) pass unchanged, which is what keeps the volume.
//!
//! Neighbours are taken from outgoing half-edges, which lists each one-ring neighbour exactly once on
//! a closed, consistently oriented manifold (what [`super::tetra`] produces).

use rayon::prelude::*;

use super::Mesh;

/// Filter coefficients `c_0..=c_N` for `N = iterations` and pass band `k_pb`.
///
/// Hamming-windowed Chebyshev coefficients of the ideal low pass with cut-off angle `θ_pb + σ`; as in
/// VTK, `σ` is found by Newton's method so that the gain at the pass band edge is one, `f(k_pb) = 1`,
/// which makes the pass band flat (no shrinkage of the low frequencies); then the coefficients are
/// divided by their sum so that `f(0) = 1` exactly (a gain other than one at `k = 0` would scale the
/// mesh about the LPS origin; VTK avoids this only when normalising coordinates).
pub fn coefficients(iterations: u32, passband: f64) -> Vec<f64> {
    let n = iterations as usize;
    let pi = std::f64::consts::PI;
    let kpb = passband.clamp(1e-6, 2.0);
    let theta_pb = (1.0 - 0.5 * kpb).acos();
    let window: Vec<f64> = (0..=n)
        .map(|i| 0.54 + 0.46 * (i as f64 * pi / (n as f64 + 1.0)).cos())
        .collect();
    // Coefficients at cut-off θ and their derivative with respect to θ.
    let at = |theta: f64| -> (Vec<f64>, Vec<f64>) {
        (0..=n)
            .map(|i| {
                if i == 0 {
                    (window[0] * theta / pi, window[0] / pi)
                } else {
                    let x = i as f64;
                    (
                        2.0 * window[i] * (x * theta).sin() / (x * pi),
                        2.0 * window[i] * (x * theta).cos() / pi,
                    )
                }
            })
            .unzip()
    };
    let gain_at_pb = |c: &[f64]| -> f64 {
        c.iter()
            .enumerate()
            .map(|(i, ci)| ci * (i as f64 * theta_pb).cos())
            .sum()
    };
    let mut sigma = 0.0;
    let mut converged = false;
    for _ in 0..500 {
        let (c, dc) = at(theta_pb + sigma);
        let f = gain_at_pb(&c) - 1.0;
        if f.abs() < 1e-9 {
            converged = true;
            break;
        }
        let df = gain_at_pb(&dc);
        if df.abs() < 1e-300 || !df.is_finite() {
            break;
        }
        sigma -= f / df;
    }
    if !converged || !sigma.is_finite() {
        sigma = 0.0;
    }
    let (mut c, _) = at(theta_pb + sigma);
    let sum: f64 = c.iter().sum();
    if sum.abs() > 1e-12 {
        c.iter_mut().for_each(|v| *v /= sum);
    }
    c
}

/// Smooths `mesh` in place with `iterations` windowed-sinc steps and pass band `passband`; returns a
/// one-line description of what was done (0 iterations, or an empty mesh: nothing).
pub fn windowed_sinc(mesh: &mut Mesh, iterations: u32, passband: f64) -> String {
    if iterations == 0 || mesh.triangles.is_empty() {
        return "off".to_owned();
    }
    if !(passband > 0.0 && passband < 2.0) {
        return format!("off (pass band {passband} outside (0, 2))");
    }
    let nv = mesh.vertices.len();
    // CSR one-ring from outgoing half-edges.
    let mut start = vec![0u32; nv + 1];
    for t in &mesh.triangles {
        for &v in t {
            start[v as usize + 1] += 1;
        }
    }
    for v in 0..nv {
        start[v + 1] += start[v];
    }
    let mut fill = start.clone();
    let mut ring = vec![0u32; start[nv] as usize];
    for t in &mesh.triangles {
        for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
            ring[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
    }
    drop(fill);

    let c = coefficients(iterations, passband);
    let original = std::mem::take(&mut mesh.vertices);
    // avg(x)[v]: mean of the neighbours of v (v itself when isolated).
    let average = |x: &[[f32; 3]], v: usize| -> [f32; 3] {
        let (s, e) = (start[v] as usize, start[v + 1] as usize);
        if s == e {
            return x[v];
        }
        let mut acc = [0f32; 3];
        for &u in &ring[s..e] {
            let p = x[u as usize];
            acc[0] += p[0];
            acc[1] += p[1];
            acc[2] += p[2];
        }
        let inv = 1.0 / (e - s) as f32;
        [acc[0] * inv, acc[1] * inv, acc[2] * inv]
    };
    // x1 = (I - K/2) x0 = (x0 + avg x0) / 2; result = c0 x0 + c1 x1.
    let mut x1 = vec![[0f32; 3]; nv];
    let mut result = vec![[0f32; 3]; nv];
    let (c0, c1) = (c[0] as f32, c[1] as f32);
    x1.par_iter_mut()
        .zip(result.par_iter_mut())
        .enumerate()
        .for_each(|(v, (x1v, r))| {
            let a = average(&original, v);
            let p = original[v];
            for d in 0..3 {
                x1v[d] = 0.5 * (p[d] + a[d]);
                r[d] = c0 * p[d] + c1 * x1v[d];
            }
        });
    // x0 holds x_{n-1} (the original positions at first, read from `original`); the new iterate
    // x_{n+1} = 2 (I - K/2) x_n - x_{n-1} = x_n + avg x_n - x_{n-1} overwrites x_{n-1} in place
    // (it reads x_{n-1} at the same vertex only); result += c_{n+1} x_{n+1}. Four position arrays.
    let mut x0 = vec![[0f32; 3]; nv];
    for (n, &cn) in c[2..].iter().enumerate() {
        let cn = cn as f32;
        let x1r = &x1;
        x0.par_iter_mut()
            .zip(result.par_iter_mut())
            .enumerate()
            .for_each(|(v, (x0v, r))| {
                let a = average(x1r, v);
                let prev = if n == 0 { original[v] } else { *x0v };
                for d in 0..3 {
                    x0v[d] = x1r[v][d] + a[d] - prev[d];
                    r[d] += cn * x0v[d];
                }
            });
        std::mem::swap(&mut x0, &mut x1);
    }
    drop((x0, x1));
    let (sum, max) = result
        .par_iter()
        .zip(original.par_iter())
        .map(|(a, b)| {
            let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
            (d as f64, d as f64)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1.max(b.1)));
    mesh.vertices = result;
    format!(
        "windowed-sinc (Taubin-Zhang-Golub, Hamming window, flat pass band, f(0)=1): {iterations} iterations, \
         pass band {passband}; vertex displacement mean {:.3} mm, max {:.3} mm",
        sum / nv.max(1) as f64,
        max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_and_low_pass() {
        let c = coefficients(10, 0.1);
        assert_eq!(c.len(), 11);
        assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Gain f(k) = Σ c_n T_n(1 - k/2) = Σ c_n cos(n θ), θ = acos(1 - k/2): high frequencies damped.
        let gain = |k: f64| {
            let th = (1.0f64 - k / 2.0).acos();
            c.iter()
                .enumerate()
                .map(|(n, cn)| cn * (n as f64 * th).cos())
                .sum::<f64>()
        };
        assert!((gain(0.0) - 1.0).abs() < 1e-12);
        // Flat pass band (this is what keeps a sphere's size), damped voxel-scale frequencies.
        for k in [0.002, 0.01, 0.05, 0.1] {
            assert!((gain(k) - 1.0).abs() < 3e-3, "f({k}) = {}", gain(k));
        }
        assert!(gain(1.0).abs() < 0.15, "{}", gain(1.0));
        assert!(
            gain(1.5).abs() < 0.01 && gain(2.0).abs() < 0.01,
            "{}",
            gain(2.0)
        );
    }
}
