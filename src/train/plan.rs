//! Which model scores which scan: the leave-2-out plan of the paper's protocol (Minnema et al.
//! 2018, §2.5), used by `osteon evaluate --folds` (src/train/folds.rs trains and scores by it).
//!
//! With `n` pool scans (the manifest's `train`/`validation` scans) and `m = ceil(n / 2)` folds,
//! fold `f` holds out the pair `{pool[f], pool[f + m]}` (two scans far apart in manifest order, so
//! a pair rarely comes from one scanner), calibrates its decision threshold on the next fold's
//! pair and trains on the rest. The final model trains on all the pool but fold 0's pair (its
//! validation pair) and scores the `test` scans. `extra` scans train every model and are never
//! held out or calibrated on (more heads to learn from, while each held-out scan stays unseen).
//!
//! The hold-out plan ([`holdout`]) is one model on the manifest's own split: it trains on the
//! `train` scans, calibrates on the `validation` scans and scores the `test` scans. It is a
//! single estimate where leave-2-out's `m + 1` models cannot be afforded (a CPU-only machine:
//! ~1.5 s per step here against 20 ms on a GPU), not a substitute for the cross-validation.

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

/// How `osteon evaluate --folds` assigns scans to models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scheme {
    /// [`leave_two_out`].
    LeaveTwoOut,
    /// [`holdout`].
    Holdout,
}

impl Scheme {
    /// The plan of `manifest` under this scheme.
    ///
    /// # Errors
    /// As [`leave_two_out`] or [`holdout`].
    pub fn plan(self, manifest: &Manifest) -> Result<FoldPlan, TrainError> {
        match self {
            Scheme::LeaveTwoOut => leave_two_out(manifest),
            Scheme::Holdout => holdout(manifest),
        }
    }
}

/// The hold-out plan of `manifest`: no folds; the final model trains on the `train` scans,
/// calibrates on the `validation` scans and holds out the `test` scans (see the module
/// documentation).
///
/// # Errors
/// [`TrainError::Settings`] when the manifest has no `train` or no `test` scan.
pub fn holdout(manifest: &Manifest) -> Result<FoldPlan, TrainError> {
    let of = |split: Split| -> Vec<usize> {
        (0..manifest.scan.len())
            .filter(|&i| manifest.scan[i].split == split)
            .collect()
    };
    let last = Fold {
        held_out: of(Split::Test),
        validation: of(Split::Validation),
        train: [of(Split::Train), of(Split::Extra)].concat(),
    };
    for (set, split) in [(&last.train, "train"), (&last.held_out, "test")] {
        if set.is_empty() {
            return Err(TrainError::Settings(format!(
                "the hold-out plan needs at least one scan with split = \"{split}\"; the manifest \
                 has none"
            )));
        }
    }
    Ok(FoldPlan {
        folds: Vec::new(),
        last,
    })
}

/// One model of a plan, as `osteon evaluate --folds leave-2-out --train-only --models` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelPick {
    /// Fold `f` (1-based).
    Fold(usize),
    /// The final model.
    Final,
}

/// The models a `--models` list names, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelList(pub Vec<ModelPick>);

/// Parses a `--models` list: comma-separated fold numbers (from 1), ranges `a-b`, and `final`,
/// e.g. `1,2`, `3-5,final`.
///
/// # Errors
/// A message naming the part that is not a fold number, a range or `final`.
pub fn parse_models(text: &str) -> Result<ModelList, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let num = |t: &str| -> Result<usize, String> {
            match t.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "{part:?}: expected a fold number from 1, a range like 3-5, or final"
                )),
            }
        };
        if part == "final" {
            out.push(ModelPick::Final);
        } else if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("{part:?}: the range runs backwards"));
            }
            if b - a >= 10_000 {
                return Err(format!("{part:?}: more than 10000 models"));
            }
            out.extend((a..=b).map(ModelPick::Fold));
        } else {
            out.push(ModelPick::Fold(num(part)?));
        }
    }
    Ok(ModelList(out))
}

/// Every scan some model of `plan` holds out (manifest order) with the number of that model: 1..m
/// for the folds, 0 for the final model.
pub fn scored(plan: &FoldPlan) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = plan
        .folds
        .iter()
        .enumerate()
        .flat_map(|(f, fold)| fold.held_out.iter().map(move |&i| (i, f + 1)))
        .chain(plan.last.held_out.iter().map(|&i| (i, 0)))
        .collect();
    out.sort_unstable();
    out
}

/// The leave-2-out plan of `manifest` (see the module documentation).
///
/// # Errors
/// [`TrainError::Settings`] when fewer than 5 scans are not `test` (each fold needs a held-out pair,
/// a validation pair and at least one training scan).
pub fn leave_two_out(manifest: &Manifest) -> Result<FoldPlan, TrainError> {
    let of = |keep: &dyn Fn(Split) -> bool| -> Vec<usize> {
        (0..manifest.scan.len())
            .filter(|&i| keep(manifest.scan[i].split))
            .collect()
    };
    let pool = of(&|s| matches!(s, Split::Train | Split::Validation));
    let tests = of(&|s| s == Split::Test);
    let extra = of(&|s| s == Split::Extra);
    let n = pool.len();
    if n < 5 {
        return Err(TrainError::Settings(format!(
            "leave-2-out needs at least 5 scans with split = \"train\" or \"validation\"; the \
             manifest has {n}"
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
    // Every model trains on the pool but its held-out and validation pairs, and on the extras.
    let rest = |out: &[usize]| -> Vec<usize> {
        pool.iter()
            .copied()
            .filter(|i| !out.contains(i))
            .chain(extra.iter().copied())
            .collect()
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
                        Split::Extra => "extra",
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
    fn extra_scans_train_every_model_and_are_never_held_out_or_calibrated_on() {
        // Pool 0..=6 (seven scans, four folds), extras 7 and 9 between them, test 8.
        let mut splits = vec![Split::Train; 7];
        splits.extend([Split::Extra, Split::Test, Split::Extra]);
        let m = manifest(&splits);
        let plan = leave_two_out(&m).expect("plan");
        assert_eq!(plan.folds.len(), 4);
        assert_eq!(plan.folds[0].held_out, vec![0, 4]);
        assert_eq!(plan.folds[0].validation, vec![1, 5]);
        assert_eq!(plan.folds[0].train, vec![2, 3, 6, 7, 9]);
        for f in &plan.folds {
            assert!(f.train.contains(&7) && f.train.contains(&9), "{f:?}");
            assert!(
                !f.held_out.contains(&7) && !f.validation.contains(&9),
                "{f:?}"
            );
            assert!(!f.train.contains(&8), "{f:?}");
        }
        assert_eq!(plan.last.held_out, vec![8]);
        assert_eq!(plan.last.validation, vec![0, 4]);
        assert_eq!(plan.last.train, vec![1, 2, 3, 5, 6, 7, 9]);
        // Extras do not count towards the five pool scans leave-2-out needs.
        let e = leave_two_out(&manifest(&[
            Split::Train,
            Split::Train,
            Split::Train,
            Split::Train,
            Split::Extra,
            Split::Extra,
        ]))
        .expect_err("4 pool scans");
        assert!(e.to_string().contains("has 4"), "{e}");
        // The hold-out plan trains on them too.
        let m = manifest(&[Split::Train, Split::Extra, Split::Validation, Split::Test]);
        assert_eq!(holdout(&m).expect("plan").last.train, vec![0, 1]);
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

    #[test]
    fn holdout_scores_only_the_test_scans_by_one_model() {
        let m = manifest(&[
            Split::Validation,
            Split::Train,
            Split::Test,
            Split::Train,
            Split::Test,
        ]);
        let plan = holdout(&m).expect("plan");
        assert!(plan.folds.is_empty());
        assert_eq!(plan.last.train, vec![1, 3]);
        assert_eq!(plan.last.validation, vec![0]);
        assert_eq!(plan.last.held_out, vec![2, 4]);
        assert_eq!(scored(&plan), vec![(2, 0), (4, 0)]);
        let e = holdout(&manifest(&[Split::Train, Split::Validation])).expect_err("no test scan");
        assert!(e.to_string().contains("split = \"test\""), "{e}");
    }

    #[test]
    fn leave_two_out_scores_every_scan_once() {
        let mut splits = vec![Split::Train; 6];
        splits.push(Split::Test);
        let plan = Scheme::LeaveTwoOut.plan(&manifest(&splits)).expect("plan");
        let s = scored(&plan);
        assert_eq!(
            s.iter().map(|p| p.0).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        assert_eq!(s[0], (0, 1));
        assert_eq!(s[3], (3, 1));
        assert_eq!(s[6], (6, 0));
    }

    #[test]
    fn a_models_list_reads_numbers_ranges_and_final() {
        use ModelPick::{Final, Fold};
        assert_eq!(
            parse_models("1, 3-5,final").unwrap().0,
            [Fold(1), Fold(3), Fold(4), Fold(5), Final]
        );
        assert!(parse_models("0")
            .unwrap_err()
            .contains("\"0\": expected a fold number"));
        assert!(parse_models("5-3").unwrap_err().contains("runs backwards"));
        assert!(parse_models("2,").unwrap_err().contains("\"\": expected"));
    }
}
