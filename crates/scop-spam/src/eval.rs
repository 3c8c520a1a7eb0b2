//! Evaluation of scores against known classes: error counts at the cutoffs,
//! the ROC curve and the area under it, and the curve as CSV or SVG.
//!
//! Pure functions of the scores: usable for any classifier (the benchmark
//! feeds bogofilter's scores through the same code).

use crate::model::Class;
use std::fmt::Write as _;

/// One point of a ROC curve: at `threshold`, the share of ham scored at or
/// above it (`false_positive_rate`) and the share of spam
/// (`true_positive_rate`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    /// The score threshold (a message is called spam when its score is at
    /// least this).
    pub threshold: f64,
    /// Ham at or above the threshold / all ham.
    pub false_positive_rate: f64,
    /// Spam at or above the threshold / all spam.
    pub true_positive_rate: f64,
}

/// Error counts at the cutoffs and ROC analysis of one labelled score set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Ham messages scored.
    pub ham: usize,
    /// Spam messages scored.
    pub spam: usize,
    /// Ham scored at or above the spam cutoff.
    pub false_positives: usize,
    /// Spam scored at or below the ham cutoff.
    pub false_negatives: usize,
    /// Ham between the cutoffs.
    pub unsure_ham: usize,
    /// Spam between the cutoffs.
    pub unsure_spam: usize,
    /// The ham cutoff used.
    pub ham_cutoff: f64,
    /// The spam cutoff used.
    pub spam_cutoff: f64,
    /// Area under the ROC curve (ties count half; 1 is perfect).
    pub auc: f64,
    /// The ROC curve from (0, 0) to (1, 1), one point per distinct score.
    pub roc: Vec<RocPoint>,
}

fn rate(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

impl Evaluation {
    /// Evaluates `scores` (score, true class) at the given cutoffs. NaN
    /// scores count as ½.
    pub fn new(scores: &[(f64, Class)], ham_cutoff: f64, spam_cutoff: f64) -> Evaluation {
        let mut v: Vec<(f64, Class)> = scores
            .iter()
            .map(|&(s, c)| (if s.is_nan() { 0.5 } else { s }, c))
            .collect();
        let ham = v.iter().filter(|x| x.1 == Class::Ham).count();
        let spam = v.len() - ham;
        let mut e = Evaluation {
            ham,
            spam,
            false_positives: 0,
            false_negatives: 0,
            unsure_ham: 0,
            unsure_spam: 0,
            ham_cutoff,
            spam_cutoff,
            auc: 0.0,
            roc: Vec::new(),
        };
        for &(s, c) in &v {
            let unsure = s > ham_cutoff && s < spam_cutoff;
            match c {
                Class::Ham if s >= spam_cutoff => e.false_positives += 1,
                Class::Ham if unsure => e.unsure_ham += 1,
                Class::Spam if s <= ham_cutoff => e.false_negatives += 1,
                Class::Spam if unsure => e.unsure_spam += 1,
                _ => {}
            }
        }
        // ROC: walk thresholds from the highest score down.
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut tp = 0usize;
        let mut fp = 0usize;
        let mut area = 0.0;
        e.roc.push(RocPoint {
            threshold: f64::INFINITY,
            false_positive_rate: 0.0,
            true_positive_rate: 0.0,
        });
        let mut i = 0;
        while i < v.len() {
            let t = v[i].0;
            let (tp0, fp0) = (tp, fp);
            while i < v.len() && v[i].0 == t {
                match v[i].1 {
                    Class::Ham => fp += 1,
                    Class::Spam => tp += 1,
                }
                i += 1;
            }
            // Trapezoid: ties between ham and spam count half.
            area += (fp - fp0) as f64 * (tp0 + tp) as f64 / 2.0;
            e.roc.push(RocPoint {
                threshold: t,
                false_positive_rate: rate(fp, ham),
                true_positive_rate: rate(tp, spam),
            });
        }
        e.auc = if ham == 0 || spam == 0 {
            1.0
        } else {
            area / (ham as f64 * spam as f64)
        };
        e
    }

    /// False positives / ham.
    pub fn false_positive_rate(&self) -> f64 {
        rate(self.false_positives, self.ham)
    }

    /// False negatives / spam.
    pub fn false_negative_rate(&self) -> f64 {
        rate(self.false_negatives, self.spam)
    }

    /// Unsure messages (both classes).
    pub fn unsure(&self) -> usize {
        self.unsure_ham + self.unsure_spam
    }

    /// Unsure messages / all messages.
    pub fn unsure_rate(&self) -> f64 {
        rate(self.unsure(), self.ham + self.spam)
    }

    /// `(1 − AUC) × 100`: the percentage of (ham, spam) pairs ranked the
    /// wrong way (lower is better).
    pub fn one_minus_auc_percent(&self) -> f64 {
        (1.0 - self.auc) * 100.0
    }

    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        format!(
            "{} ham, {} spam; cutoffs ham <= {} < unsure < {} <= spam\n\
             false positives {} ({:.3}% of ham), false negatives {} ({:.3}% of spam), \
             unsure {} ({:.3}%: {} ham, {} spam)\n\
             (1-AUC)% = {:.4}",
            self.ham,
            self.spam,
            self.ham_cutoff,
            self.spam_cutoff,
            self.false_positives,
            100.0 * self.false_positive_rate(),
            self.false_negatives,
            100.0 * self.false_negative_rate(),
            self.unsure(),
            100.0 * self.unsure_rate(),
            self.unsure_ham,
            self.unsure_spam,
            self.one_minus_auc_percent(),
        )
    }

    /// The ROC curve as CSV: `threshold,false_positive_rate,true_positive_rate`.
    pub fn roc_csv(&self) -> String {
        let mut s = String::from("threshold,false_positive_rate,true_positive_rate\n");
        for p in &self.roc {
            let _ = writeln!(
                s,
                "{},{},{}",
                if p.threshold.is_finite() {
                    p.threshold.to_string()
                } else {
                    "inf".into()
                },
                p.false_positive_rate,
                p.true_positive_rate
            );
        }
        s
    }
}

/// Draws ROC curves as a standalone SVG document: a linear panel of the
/// whole curve and a panel with a logarithmic false-positive axis
/// (10⁻⁴..1), where good filters differ. `curves` are (name, evaluation).
pub fn roc_svg(curves: &[(&str, &Evaluation)]) -> String {
    const W: f64 = 420.0;
    const H: f64 = 360.0;
    const M: f64 = 50.0;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">",
        2.0 * W,
        H + 30.0 + 18.0 * curves.len() as f64
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    for panel in 0..2 {
        let ox = panel as f64 * W;
        let pw = W - 2.0 * M;
        let ph = H - 2.0 * M;
        let log = panel == 1;
        let xmap = |fpr: f64| -> f64 {
            let t = if log {
                ((fpr.max(1e-4)).log10() + 4.0) / 4.0
            } else {
                fpr
            };
            ox + M + t.clamp(0.0, 1.0) * pw
        };
        let ymap = |tpr: f64| M + (1.0 - tpr.clamp(0.0, 1.0)) * ph;
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{M}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>",
            ox + M
        );
        let title = if log {
            "ROC, log false-positive rate"
        } else {
            "ROC"
        };
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{title}</text>",
            ox + W / 2.0,
            M - 15.0
        );
        // Grid and tick labels.
        let xticks: Vec<(f64, String)> = if log {
            (0..=4)
                .map(|k| (10f64.powi(k - 4), format!("1e{}", k - 4)))
                .collect()
        } else {
            (0..=5)
                .map(|k| (k as f64 / 5.0, format!("{:.1}", k as f64 / 5.0)))
                .collect()
        };
        for (v, label) in xticks {
            let x = xmap(v);
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{M}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
                M + ph,
                M + ph + 15.0
            );
        }
        for k in 0..=5 {
            let v = k as f64 / 5.0;
            let y = ymap(v);
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>",
                ox + M,
                ox + M + pw,
                ox + M - 5.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">false-positive rate (ham called spam)</text>",
            ox + M + pw / 2.0,
            M + ph + 32.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">true-positive rate (spam caught)</text>",
            ox + 14.0,
            M + ph / 2.0,
            ox + 14.0,
            M + ph / 2.0
        );
        for (i, (_, e)) in curves.iter().enumerate() {
            let mut d = String::new();
            // Step curve: horizontal then vertical moves.
            let mut last: Option<(f64, f64)> = None;
            for p in &e.roc {
                let (x, y) = (xmap(p.false_positive_rate), ymap(p.true_positive_rate));
                match last {
                    None => {
                        let _ = write!(d, "M{x:.2},{y:.2}");
                    }
                    Some((lx, ly)) if (lx - x).abs() < 0.05 && (ly - y).abs() < 0.05 => continue,
                    Some(_) => {
                        let _ = write!(d, " L{x:.2},{y:.2}");
                    }
                }
                last = Some((x, y));
            }
            let _ = writeln!(
                s,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>",
                COLORS[i % COLORS.len()]
            );
        }
    }
    for (i, (name, e)) in curves.iter().enumerate() {
        let y = H + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{M}\" y=\"{}\" width=\"20\" height=\"4\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}: (1-AUC)% = {:.4}, {} ham, {} spam</text>",
            y - 4.0,
            COLORS[i % COLORS.len()],
            M + 28.0,
            y,
            xml_escape(name),
            e.one_minus_auc_percent(),
            e.ham,
            e.spam
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Class::{Ham, Spam};

    #[test]
    fn counts_and_auc() {
        let scores = [
            (0.0, Ham),
            (0.1, Ham),
            (0.5, Ham),
            (0.95, Ham),
            (0.2, Spam),
            (0.99, Spam),
            (1.0, Spam),
        ];
        let e = Evaluation::new(&scores, 0.3, 0.9);
        assert_eq!((e.ham, e.spam), (4, 3));
        assert_eq!(e.false_positives, 1);
        assert_eq!(e.false_negatives, 1);
        assert_eq!((e.unsure_ham, e.unsure_spam), (1, 0));
        // Pairs ranked right: spam 0.2 beats 2 ham; 0.99 and 1.0 beat all 4.
        assert!((e.auc - 10.0 / 12.0).abs() < 1e-12);
        assert_eq!(
            e.roc
                .last()
                .map(|p| (p.false_positive_rate, p.true_positive_rate)),
            Some((1.0, 1.0))
        );
    }

    #[test]
    fn ties_count_half() {
        let e = Evaluation::new(&[(0.5, Ham), (0.5, Spam)], 0.3, 0.9);
        assert!((e.auc - 0.5).abs() < 1e-12);
        let svg = roc_svg(&[("ours", &e)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(e.roc_csv().lines().count() == 3);
    }
}
