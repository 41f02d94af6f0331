//! RMSprop whose state can be saved: a checkpoint holds the running averages, so a run that is
//! stopped and resumed (`osteon train --resume`, a leave-2-out fold trained over several sessions)
//! takes the same steps as one that was never stopped. libtorch's optimizer, as `tch` wraps it,
//! does not expose its state; restarting the averages at zero made the first steps after a resume
//! about three times too large.
//!
//! The update is PyTorch's `torch.optim.RMSprop` without momentum, centring or weight decay
//! (Tieleman & Hinton 2012, the optimizer of Minnema et al. 2018 §2.3 through Keras), per
//! trainable tensor `p` with gradient `g`:
//!
//! ```text
//! v <- rho * v + (1 - rho) * g^2
//! p <- p - lr * g / (sqrt(v) + eps)
//! ```

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Name of the step counter in a saved state (not a variable name: those contain no `#`).
const STEP: &str = "#step";

/// RMSprop over the trainable variables of a [`VarStore`], in name order.
pub struct RmsProp {
    vars: Vec<(String, Tensor)>,
    avg: Vec<Tensor>,
    rho: f64,
    eps: f64,
}

impl RmsProp {
    /// An optimizer of `vs`'s trainable variables with running averages at zero; `rho` (Keras'
    /// 0.9) weighs the old average, `eps` (Keras' 1e-7) keeps the divisor above zero.
    pub fn new(vs: &VarStore, rho: f64, eps: f64) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let avg = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        Self {
            vars,
            avg,
            rho,
            eps,
        }
    }

    /// Gradients of `loss`, then one update at learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        for (_, p) in &mut self.vars {
            p.zero_grad();
        }
        loss.backward();
        tch::no_grad(|| {
            for ((_, p), v) in self.vars.iter().zip(&self.avg) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut v = v.shallow_clone();
                let _ = v.g_mul_scalar_(self.rho);
                let _ = v.addcmul_(&(&g * (1.0 - self.rho)), &g);
                let denom = v.sqrt() + self.eps;
                let mut p = p.shallow_clone();
                let _ = p.addcdiv_(&(&g * -lr), &denom);
            }
        });
    }

    /// Writes the running averages and `step` (the number of updates they include) to `path`
    /// (safetensors, one tensor per variable name, on the CPU).
    ///
    /// # Errors
    /// The write's error.
    pub fn save(&self, path: &Path, step: usize) -> Result<(), tch::TchError> {
        let mut named: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .zip(&self.avg)
            .map(|((name, _), v)| (name.clone(), v.to_device(Device::Cpu)))
            .collect();
        named.push((STEP.to_owned(), Tensor::from_slice(&[step as i64])));
        Tensor::write_safetensors(&named, path)
    }

    /// Reads the running averages written by [`RmsProp::save`] and returns their step.
    ///
    /// # Errors
    /// A message naming the file: unreadable, a variable missing or extra, or a shape that differs.
    pub fn load(&mut self, path: &Path) -> Result<usize, String> {
        let at = |why: String| format!("{}: {why}", path.display());
        let mut read: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| at(e.to_string()))?
            .into_iter()
            .collect();
        let step = read
            .remove(STEP)
            .filter(|t| t.numel() == 1 && t.kind() == Kind::Int64)
            .map(|t| t.int64_value(&[0]))
            .ok_or_else(|| at("no step counter: not an RMSprop state".into()))?;
        if read.len() != self.vars.len() {
            return Err(at(format!(
                "{} averages for {} trainable variables",
                read.len(),
                self.vars.len()
            )));
        }
        for ((name, _), v) in self.vars.iter().zip(&mut self.avg) {
            let src = read
                .get(name)
                .ok_or_else(|| at(format!("no average for variable {name}")))?;
            if src.size() != v.size() {
                return Err(at(format!(
                    "average of {name} is {:?}, the variable {:?}",
                    src.size(),
                    v.size()
                )));
            }
            tch::no_grad(|| v.copy_(src));
        }
        usize::try_from(step).map_err(|_| at(format!("step {step} is negative")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};

    fn net(vs: &VarStore) -> impl Module {
        let root = vs.root();
        nn::seq()
            .add(nn::linear(&root / "a", 5, 7, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "b", 7, 2, Default::default()))
    }

    /// Batch `step`, from a formula: the global random generator is shared with tests running
    /// on other threads, so two loops drawing from it would not see the same batches.
    fn data(step: i64) -> (Tensor, Tensor) {
        let t = Tensor::arange(16 * 7, tch::kind::FLOAT_CPU) * 0.37 + step as f64 * 1.3;
        let t = t.sin().reshape([16, 7]);
        (t.narrow(1, 0, 5), t.narrow(1, 5, 2) * 2.0)
    }

    fn loss(m: &impl Module, step: i64) -> Tensor {
        let (x, y) = data(step);
        (m.forward(&x) - y).square().mean(Kind::Float)
    }

    fn flat(vs: &VarStore) -> Vec<f32> {
        let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.iter()
            .flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap())
            .collect()
    }

    #[test]
    fn takes_the_steps_of_libtorchs_rmsprop() {
        // Same start, same batches, learning rate decaying as in training: after 20 steps the
        // weights agree with libtorch's RMSprop to float rounding.
        tch::manual_seed(7);
        let vs_a = VarStore::new(Device::Cpu);
        let a = net(&vs_a);
        let mut vs_b = VarStore::new(Device::Cpu);
        let b = net(&vs_b);
        vs_b.copy(&vs_a).unwrap();
        let mut theirs = nn::RmsProp {
            alpha: 0.9,
            eps: 1e-7,
            ..Default::default()
        }
        .build(&vs_a, 0.005)
        .unwrap();
        let mut ours = RmsProp::new(&vs_b, 0.9, 1e-7);
        for t in 0..20 {
            let lr = 0.005 / (1.0 + 0.01 * t as f64);
            theirs.set_lr(lr);
            theirs.backward_step(&loss(&a, t));
            ours.backward_step(&loss(&b, t), lr);
        }
        let (wa, wb) = (flat(&vs_a), flat(&vs_b));
        assert_eq!(wa.len(), 5 * 7 + 7 + 7 * 2 + 2);
        let worst = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "max |difference| {worst}");
        // The weights moved: the comparison is not of two untouched copies.
        let mut vs_c = VarStore::new(Device::Cpu);
        let _c = net(&vs_c);
        tch::manual_seed(7);
        let vs_d = VarStore::new(Device::Cpu);
        let _d = net(&vs_d);
        vs_c.copy(&vs_d).unwrap();
        let moved = flat(&vs_c)
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(moved > 1e-3, "the weights did not move: {moved}");
    }

    #[test]
    fn a_saved_state_resumes_the_same_steps() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("opt.safetensors");
        tch::manual_seed(3);
        let vs_a = VarStore::new(Device::Cpu);
        let a = net(&vs_a);
        let mut vs_b = VarStore::new(Device::Cpu);
        let b = net(&vs_b);
        vs_b.copy(&vs_a).unwrap();
        // a: 12 steps in one go; b: 6 steps, state saved, a fresh optimizer loads it, 6 more.
        let mut oa = RmsProp::new(&vs_a, 0.9, 1e-7);
        for t in 0..12 {
            oa.backward_step(&loss(&a, t), 0.005);
        }
        let mut ob = RmsProp::new(&vs_b, 0.9, 1e-7);
        for t in 0..6 {
            ob.backward_step(&loss(&b, t), 0.005);
        }
        ob.save(&state, 6).unwrap();
        let mut ob = RmsProp::new(&vs_b, 0.9, 1e-7);
        assert_eq!(ob.load(&state).unwrap(), 6);
        for t in 6..12 {
            ob.backward_step(&loss(&b, t), 0.005);
        }
        assert_eq!(flat(&vs_a), flat(&vs_b));
        // Without the state (averages restarted at zero) the weights end elsewhere.
        let mut vs_c = VarStore::new(Device::Cpu);
        let c = net(&vs_c);
        tch::manual_seed(3);
        let vs_0 = VarStore::new(Device::Cpu);
        let _z = net(&vs_0);
        vs_c.copy(&vs_0).unwrap();
        let mut oc = RmsProp::new(&vs_c, 0.9, 1e-7);
        for t in 0..6 {
            oc.backward_step(&loss(&c, t), 0.005);
        }
        let mut oc = RmsProp::new(&vs_c, 0.9, 1e-7);
        for t in 6..12 {
            oc.backward_step(&loss(&c, t), 0.005);
        }
        assert_ne!(flat(&vs_a), flat(&vs_c));
        // A state of another network is refused, naming the file.
        let vs_x = VarStore::new(Device::Cpu);
        let _x = nn::linear(vs_x.root() / "a", 5, 3, Default::default());
        let e = RmsProp::new(&vs_x, 0.9, 1e-7).load(&state).unwrap_err();
        assert!(
            e.contains("opt.safetensors") && e.contains("averages for 2"),
            "{e}"
        );
    }
}
