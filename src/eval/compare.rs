//! Two evaluations of the same scans side by side (a CNN and the threshold baseline): the
//! per-scanner comparison table, one CSV with both, and the paper's Fig. 6 as SVG (Minnema et al.
//! 2018: per scan mean ± SD of the signed surface deviation, grouped by scanner).

use std::fmt::Write as _;

use super::{mean_sd, Evaluation, ScanScore};

/// Per scanner group and overall: n, mean DSC, mean |deviation| (mm), mean signed deviation (mm),
/// mean rim-band DSC and rim deviation, thin-skull-base and near-metal DSC, for `a` beside `b`.
pub fn comparison_table(a: &Evaluation, b: &Evaluation) -> String {
    let mut groups: Vec<&str> = a.scans.iter().map(|s| s.scanner.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut out = format!(
        "per scanner, {} | {} (means over the scans both scored; dev in mm, + = predicted larger; a \
         deviation with no point within 5 mm is left out of its mean)\n",
        a.segmenter, b.segmenter
    );
    let _ = writeln!(
        out,
        "{:<24} {:>3} {:>15} {:>15} {:>17} {:>15} {:>17} {:>15} {:>15}",
        "scanner", "n", "DSC", "|dev| mm", "dev mm", "rim DSC", "rim dev mm", "thin base", "metal"
    );
    let names: Vec<&str> = groups.iter().copied().chain(["ALL"]).collect();
    for g in names {
        // Paired: a scan counts only where both scored it (a failed CNN scan must not leave the
        // threshold's mean over more scans than the CNN's).
        let rows = || {
            a.scans
                .iter()
                .zip(&b.scans)
                .filter(move |(x, _)| g == "ALL" || x.scanner == g)
        };
        let (ra, rb): (Vec<ScanScore>, Vec<ScanScore>) = rows()
            .filter_map(|(x, y)| match (&x.score, &y.score) {
                (Ok(p), Ok(q)) => Some((p.clone(), q.clone())),
                _ => None,
            })
            .unzip();
        let failed = rows()
            .filter(|(x, y)| x.score.is_err() || y.score.is_err())
            .count();
        let cell = |f: &dyn Fn(&ScanScore) -> Option<f64>, prec: usize, signed: bool| -> String {
            let m = |rows: &[ScanScore]| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter_map(f)
                    .filter(|x| x.is_finite())
                    .collect();
                if v.is_empty() {
                    "-".to_owned()
                } else if signed {
                    format!("{:+.*}", prec, mean_sd(v.into_iter()).0)
                } else {
                    format!("{:.*}", prec, mean_sd(v.into_iter()).0)
                }
            };
            format!("{}|{}", m(&ra), m(&rb))
        };
        let _ = writeln!(
            out,
            "{:<24} {:>3} {:>15} {:>15} {:>17} {:>15} {:>17} {:>15} {:>15}{}",
            g,
            ra.len(),
            cell(&|x| Some(x.overlap.dsc), 4, false),
            cell(&|x| Some(x.deviation.mean_abs_mm), 3, false),
            cell(&|x| Some(x.deviation.mean_mm), 3, true),
            cell(
                &|x| x.regions.as_ref().and_then(|r| r.rim).map(|o| o.dsc),
                4,
                false
            ),
            cell(&|x| x.rim.map(|r| r.mean_mm), 3, true),
            cell(
                &|x| x.regions.as_ref().and_then(|r| r.skull_base).map(|o| o.dsc),
                4,
                false
            ),
            cell(
                &|x| x.regions.as_ref().and_then(|r| r.metal).map(|o| o.dsc),
                4,
                false
            ),
            if failed > 0 {
                format!("  ({failed} not scored by both, left out)")
            } else {
                String::new()
            },
        );
    }
    out
}

/// One CSV of both evaluations: the columns of [`Evaluation::csv`] preceded by `segmenter` (`a` or
/// `b` as named in their `segmenter` field's first word) and `fold` (from `fold_of`, per scan in
/// manifest order; 0 = final model).
pub fn combined_csv(a: &Evaluation, b: &Evaluation, fold_of: &[usize]) -> String {
    let mut out = String::new();
    let header = a.csv().lines().next().unwrap_or("").to_owned();
    let _ = writeln!(out, "segmenter,fold,{header}");
    for e in [a, b] {
        let tag = e
            .segmenter
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_lowercase();
        for (r, scan) in e.scans.iter().enumerate() {
            // One record per scan, cut from a one-scan CSV: a quoted field may hold newlines.
            let one = Evaluation {
                manifest: e.manifest.clone(),
                segmenter: e.segmenter.clone(),
                scans: vec![scan.clone()],
            }
            .csv();
            let record = one.split_once('\n').map_or("", |(_, rest)| rest);
            let fold = fold_of.get(r).map_or(String::new(), |f| f.to_string());
            let _ = write!(out, "{tag},{fold},{record}");
        }
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// SVG: per scan, mean ± SD of the signed surface deviation (mm) of `a` (blue) and `b` (orange),
/// scans grouped by scanner along x, groups separated by a rule and labelled; y from -d to +d where d
/// covers every mean ± SD (at least 1 mm).
pub fn deviation_plot_svg(a: &Evaluation, b: &Evaluation) -> String {
    let mut order: Vec<usize> = (0..a.scans.len()).collect();
    order.sort_by(|&x, &y| a.scans[x].scanner.cmp(&a.scans[y].scanner).then(x.cmp(&y)));
    let dev = |e: &Evaluation, i: usize| {
        e.scans
            .get(i)
            .and_then(|s| s.score.as_ref().ok())
            .map(|x| (x.deviation.mean_mm, x.deviation.sd_mm))
            .filter(|(m, s)| m.is_finite() && s.is_finite())
    };
    let mut span = 1.0f64;
    for &i in &order {
        for d in [dev(a, i), dev(b, i)].into_iter().flatten() {
            span = span.max(d.0.abs() + d.1);
        }
    }
    span = (span * 2.0).ceil() / 2.0;
    let (left, top, h, step) = (60.0, 44.0, 300.0, 22.0);
    // At least wide enough for the two title lines.
    let w = (step * order.len() as f64 + 20.0).max(560.0);
    let y = |v: f64| top + h / 2.0 - v / span * h / 2.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n",
        left + w + 20.0,
        top + h + 150.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"16\">Signed surface deviation per scan (mean ± SD, mm; + = \
         predicted larger)</text><text x=\"{left}\" y=\"32\">blue: {}; orange: {}</text>",
        xml(&a.segmenter),
        xml(&b.segmenter)
    );
    let mut t = -span;
    while t <= span + 1e-9 {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{t:+.1}</text>",
            left + w,
            y(t),
            y(t),
            if t.abs() < 1e-9 { "#000" } else { "#ddd" },
            left - 6.0,
            y(t) + 4.0
        );
        t += 0.5;
    }
    let mut prev: Option<&str> = None;
    let mut group_start = 0usize;
    let label_group = |s: &mut String, name: &str, from: usize, to: usize| {
        let cx = left + 10.0 + step * (from + to) as f64 / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" transform=\"rotate(35 {cx:.1} {:.1})\">{}</text>",
            top + h + 16.0,
            top + h + 16.0,
            xml(name)
        );
    };
    for (n, &i) in order.iter().enumerate() {
        let g = a.scans[i].scanner.as_str();
        if prev.is_some_and(|p| p != g) {
            let x = left + step * n as f64 + 10.0 - step / 2.0;
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#999\" \
                 stroke-dasharray=\"3,3\"/>",
                top + h
            );
            label_group(&mut s, prev.unwrap_or(""), group_start, n - 1);
            group_start = n;
        }
        prev = Some(g);
        for (e, dx, colour) in [(a, -3.0, "#1f77b4"), (b, 3.0, "#ff7f0e")] {
            if let Some((m, sd)) = dev(e, i) {
                let x = left + 10.0 + step * n as f64 + dx;
                let _ = writeln!(
                    s,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>\
                     <circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {m:+.3} ± {sd:.3} mm</title></circle>",
                    y((m - sd).max(-span)),
                    y((m + sd).min(span)),
                    y(m),
                    xml(&e.scans[i].name)
                );
            }
        }
    }
    if let Some(p) = prev {
        label_group(&mut s, p, group_start, order.len().saturating_sub(1));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::{Deviation, Overlap, Region};
    use crate::eval::ScanResult;

    fn eval(name: &str, devs: &[(f64, f64)]) -> Evaluation {
        Evaluation {
            manifest: "m".into(),
            segmenter: name.into(),
            scans: devs
                .iter()
                .enumerate()
                .map(|(i, &(m, sd))| ScanResult {
                    name: format!("s{i}"),
                    scanner: if i < 2 { "g-a".into() } else { "g-b".into() },
                    label: "seg".into(),
                    score: Ok(ScanScore {
                        overlap: Overlap {
                            dsc: 0.9 + 0.01 * i as f64,
                            tp: 1,
                            fp: 0,
                            fn_: 0,
                            tn: 0,
                        },
                        region: Region {
                            start: [0; 3],
                            end: [1; 3],
                        },
                        deviation: Deviation {
                            mean_mm: m,
                            sd_mm: sd,
                            mean_abs_mm: m.abs(),
                            max_abs_mm: m.abs() + sd,
                            n: 10,
                            n_total: 10,
                        },
                        rim: None,
                        regions: None,
                        hd95_mm: 1.0,
                        p95_ref_to_pred_mm: 1.0,
                        p95_pred_to_ref_mm: 1.0,
                        label_ml: 1.0,
                        predicted_ml: 1.0,
                    }),
                    ms: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn table_gives_group_and_overall_means_of_both() {
        let a = eval("cnn x", &[(0.1, 0.2), (0.3, 0.2), (-0.2, 0.1)]);
        let b = eval("threshold y", &[(1.0, 0.5), (1.0, 0.5), (1.0, 0.5)]);
        let t = comparison_table(&a, &b);
        // g-a: DSC (0.90 + 0.91) / 2 = 0.905; |dev| (0.1 + 0.3) / 2 = 0.2.
        assert!(t.contains("0.9050|0.9050"), "{t}");
        assert!(t.contains("0.200|1.000"), "{t}");
        // ALL: signed mean (0.1 + 0.3 - 0.2) / 3 = +0.067.
        let all = t.lines().find(|l| l.starts_with("ALL")).expect("ALL row");
        assert!(all.contains("+0.067|+1.000"), "{all}");
    }

    #[test]
    fn a_group_with_no_scored_scan_says_so() {
        let mut a = eval("threshold", &[(0.1, 0.2), (0.3, 0.2), (-0.2, 0.1)]);
        a.scans[2].score = Err("label refused".into());
        let t = a.table();
        let line = t
            .lines()
            .rev()
            .find(|l| l.starts_with("g-b"))
            .expect("g-b row");
        assert_eq!(
            line,
            format!("{:<28} {:>3} (no scan of this group was scored)", "g-b", 0)
        );
        assert!(!t.contains("NaN"), "{t}");
    }

    #[test]
    fn table_pairs_scans_and_csv_folds_survive_newlines_in_names() {
        let mut a = eval("cnn x", &[(0.1, 0.2), (0.3, 0.2), (-0.2, 0.1)]);
        let b = eval("threshold y", &[(1.0, 0.5), (2.0, 0.5), (1.0, 0.5)]);
        a.scans[1].score = Err("model failed".into());
        let t = comparison_table(&a, &b);
        // g-a: only s0 is scored by both: threshold |dev| 1.000, not (1 + 2) / 2.
        let ga = t.lines().find(|l| l.starts_with("g-a")).expect("g-a row");
        assert!(
            ga.contains("0.100|1.000") && ga.contains("(1 not scored by both"),
            "{ga}"
        );
        a.scans[0].name = "two\nlines".into();
        let c = combined_csv(&a, &b, &[4, 5, 6]);
        let folds: Vec<&str> = c
            .lines()
            .filter(|l| l.starts_with("cnn,") || l.starts_with("threshold,"))
            .map(|l| l.split(',').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(folds, vec!["4", "5", "6", "4", "5", "6"], "{c}");
    }

    #[test]
    fn csv_tags_rows_and_folds() {
        let a = eval("cnn x", &[(0.1, 0.2), (0.3, 0.2)]);
        let b = eval("threshold y", &[(1.0, 0.5), (1.0, 0.5)]);
        let c = combined_csv(&a, &b, &[3, 0]);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("segmenter,fold,scan,scanner,"));
        assert!(
            lines[1].starts_with("cnn,3,s0,g-a,seg,0.90000,"),
            "{}",
            lines[1]
        );
        assert!(lines[4].starts_with("threshold,0,s1,g-a,"), "{}", lines[4]);
    }

    #[test]
    fn plot_has_one_point_per_scan_and_segmenter_and_a_scale_covering_them() {
        let a = eval("cnn", &[(0.1, 0.2), (0.3, 0.2), (-0.2, 0.1)]);
        let b = eval("threshold", &[(1.0, 1.2), (1.0, 0.5), (1.0, 0.5)]);
        let svg = deviation_plot_svg(&a, &b);
        assert_eq!(svg.matches("<circle").count(), 6);
        // 1.0 + 1.2 = 2.2 -> scale to +-2.5 mm.
        assert!(svg.contains(">+2.5</text>") && svg.contains(">-2.5</text>"));
        assert!(!svg.contains(">+3.0</text>"));
        assert!(svg.contains(">g-a</text>") && svg.contains(">g-b</text>"));
    }
}
