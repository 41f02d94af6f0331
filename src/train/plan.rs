//! Which model scores which scan: the leave-2-out plan of the paper's protocol (Minnema et al.
//! 2018, §2.5), used by `osteon evaluate --folds` (src/train/folds.rs trains and scores by it).
//!
//! With `n` pool scans (the manifest's `train`/`validation` scans) and `m = ceil(n / 2)` folds,
//! fold `f` holds out the pair `{pool[f], pool[f + m]}` (two scans far apart in manifest order, so
//! a pair rarely comes from one scanner), calibrates its decision threshold on the next fold's
//! pair and trains on the rest. The final model trains on all the pool but fold 0's pair (its
//! validation pair) and scores the `test` scans.

use super::TrainError;
use crate::eval::manifest::{Manifest, Split};

/// One fold: indices into the manifest's scan list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fold {
    /// Scans scored by this fold's model.
    pub held_out: Vec<usize>,
    /// Scans that calibrate the decision threshold (not trained on).
    pub validation: Vec<usize>,
    /// Scans the model trains on.
    pub train: Vec<usize>,
}

/// The folds of a manifest plus the final model's split.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FoldPlan {
    /// Cross-validation folds.
    pub folds: Vec<Fold>,
    /// The final model: held out = the manifest's `test` scans.
    pub last: Fold,
}

/// The leave-2-out plan of `manifest` (see the module documentation).
///
/// # Errors
/// [`TrainError::Settings`] when fewer than 5 scans are not `test` (each fold needs a held-out pair,
/// a validation pair and at least one training scan).
pub fn leave_two_out(manifest: &Manifest) -> Result<FoldPlan, TrainError> {
    let pool: Vec<usize> = (0..manifest.scan.len())
        .filter(|&i| manifest.scan[i].split != Split::Test)
        .collect();
    let tests: Vec<usize> = (0..manifest.scan.len())
        .filter(|&i| manifest.scan[i].split == Split::Test)
        .collect();
    let n = pool.len();
    if n < 5 {
        return Err(TrainError::Settings(format!(
            "leave-2-out needs at least 5 scans that are not split = \"test\"; the manifest has {n}"
        )));
    }
    let m = n.div_ceil(2);
    let pair = |f: usize| -> Vec<usize> {
        [f, f + m]
            .into_iter()
            .filter(|&p| p < n)
            .map(|p| pool[p])
            .collect()
    };
    let rest = |out: &[usize]| -> Vec<usize> {
        pool.iter().copied().filter(|i| !out.contains(i)).collect()
    };
    let folds = (0..m)
        .map(|f| {
            let held_out = pair(f);
            let validation = pair((f + 1) % m);
            let train = rest(&[held_out.as_slice(), validation.as_slice()].concat());
            Fold {
                held_out,
                validation,
                train,
            }
        })
        .collect();
    let validation = pair(0);
    let last = Fold {
        held_out: tests,
        train: rest(&validation),
        validation,
    };
    Ok(FoldPlan { folds, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(splits: &[Split]) -> Manifest {
        let text: String = splits
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "[[scan]]\nname = \"s{i}\"\nseries = \"Cargo.toml\"\nscanner = \"g{}\"\nsplit = \"{}\"\nlabel = {{ kind = \"reference\" }}\n",
                    i % 3,
                    match s {
                        Split::Train => "train",
                        Split::Validation => "validation",
                        Split::Test => "test",
                    }
                )
            })
            .collect();
        toml::from_str(&format!("[manifest]\nname = \"t\"\n{text}")).expect("test manifest")
    }

    #[test]
    fn every_pool_scan_is_held_out_exactly_once_and_never_trained_on_in_its_fold() {
        let mut splits = vec![Split::Train; 9];
        splits.extend([Split::Test, Split::Test]);
        let m = manifest(&splits);
        let plan = leave_two_out(&m).expect("plan");
        assert_eq!(plan.folds.len(), 5);
        assert_eq!(plan.folds[0].held_out, vec![0, 5]);
        assert_eq!(plan.folds[4].held_out, vec![4]);
        assert_eq!(plan.folds[4].validation, vec![0, 5]);
        let mut seen = vec![0; 9];
        for f in &plan.folds {
            for &i in &f.held_out {
                seen[i] += 1;
                assert!(!f.train.contains(&i) && !f.validation.contains(&i));
            }
            for &i in &f.validation {
                assert!(!f.train.contains(&i));
            }
            assert!(!f.train.contains(&9) && !f.train.contains(&10));
            assert_eq!(
                f.train.len() + f.validation.len() + f.held_out.len(),
                9,
                "{f:?}"
            );
        }
        assert_eq!(seen, vec![1; 9]);
        assert_eq!(plan.last.held_out, vec![9, 10]);
        assert_eq!(plan.last.validation, vec![0, 5]);
        assert_eq!(plan.last.train, vec![1, 2, 3, 4, 6, 7, 8]);
    }

    #[test]
    fn too_few_scans_is_a_clear_error() {
        let m = manifest(&[
            Split::Train,
            Split::Train,
            Split::Train,
            Split::Train,
            Split::Test,
        ]);
        let e = leave_two_out(&m).expect_err("4 pool scans");
        assert!(e.to_string().contains("at least 5"), "{e}");
    }
}
