//! Plain-text report of the degraded copies of leave-2-out (see [`super::folds`]).

use super::folds::VariantRow;

/// Plain-text table of [`FoldReport::variants`]: per scan CNN|threshold DSC clean and per variant
/// with the drop from clean; then the mean drop and the worst CNN drop.
pub fn variants_table(rows: &[VariantRow]) -> String {
    use std::fmt::Write as _;
    let names = rows
        .iter()
        .find(|r| !r.names.is_empty())
        .map_or_else(Vec::new, |r| r.names.clone());
    let mut out = String::from("DSC on degraded copies, CNN|threshold (drop vs clean)\n");
    let _ = write!(out, "{:<30}", "scan");
    for n in &names {
        let _ = write!(out, " {:>27}", n);
    }
    out.push('\n');
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.3}"));
    let mut drops = vec![[Vec::new(), Vec::new()]; names.len()];
    for r in rows {
        let _ = write!(out, "{:<30}", r.name);
        if let Some(e) = &r.error {
            let _ = writeln!(out, " FAILED: {e}");
            continue;
        }
        for (v, d) in r.dsc.iter().enumerate() {
            let drop = |s: usize| match (r.dsc[0][s], d[s]) {
                (Some(c), Some(x)) => Some(c - x),
                _ => None,
            };
            if v == 0 {
                let _ = write!(out, " {:>27}", format!("{}|{}", f(d[0]), f(d[1])));
            } else {
                for s in 0..2 {
                    if let Some(x) = drop(s) {
                        drops[v][s].push(x);
                    }
                }
                let cell = format!(
                    "{}|{} ({}|{})",
                    f(d[0]),
                    f(d[1]),
                    drop(0).map_or("-".into(), |x| format!("{x:+.3}")),
                    drop(1).map_or("-".into(), |x| format!("{x:+.3}"))
                );
                let _ = write!(out, " {cell:>27}");
            }
        }
        out.push('\n');
    }
    for (v, n) in names.iter().enumerate().skip(1) {
        if drops[v][0].is_empty() && drops[v][1].is_empty() {
            let _ = writeln!(
                out,
                "{n}: no scan scored on both the clean and the degraded copy"
            );
            continue;
        }
        let mean = |x: &Vec<f64>| x.iter().sum::<f64>() / x.len().max(1) as f64;
        let worst = drops[v][0].iter().copied().fold(f64::NAN, f64::max);
        let _ = writeln!(
            out,
            "{n}: mean DSC drop CNN {:+.4}, threshold {:+.4}; largest CNN drop {worst:+.4} ({} scans)",
            mean(&drops[v][0]),
            mean(&drops[v][1]),
            drops[v][0].len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, dsc: Vec<[Option<f64>; 2]>, error: Option<&str>) -> VariantRow {
        VariantRow {
            name: name.into(),
            scanner: "s".into(),
            dsc,
            names: vec!["clean".into(), "noise".into()],
            error: error.map(Into::into),
        }
    }

    #[test]
    fn drops_are_summarised_and_an_unscored_variant_says_so() {
        let t = variants_table(&[
            row(
                "a",
                vec![[Some(0.9), Some(0.8)], [Some(0.88), Some(0.5)]],
                None,
            ),
            row(
                "b",
                vec![[Some(0.9), Some(0.8)], [Some(0.86), Some(0.7)]],
                None,
            ),
        ]);
        assert!(t.contains("0.880|0.500 (+0.020|+0.300)"), "{t}");
        assert!(
            t.contains("noise: mean DSC drop CNN +0.0300, threshold +0.2000; largest CNN drop +0.0400 (2 scans)"),
            "{t}"
        );
        let t = variants_table(&[row("c", vec![], Some("unreadable"))]);
        assert!(
            t.contains("c                              FAILED: unreadable"),
            "{t}"
        );
        assert!(!t.contains("NaN"), "{t}");
    }
}
