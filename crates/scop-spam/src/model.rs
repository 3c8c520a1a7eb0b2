//! The model: per-token document counts, Robinson's correction and Fisher's
//! chi-square combining.

use crate::chi2::chi2q_ln;
use crate::limits::MAX_CLUES;
use crate::tokenize::{Attachment, Features, tokenize};
use std::collections::HashMap;

/// The class of a training message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Wanted mail.
    Ham,
    /// Unwanted mail.
    Spam,
}

/// The label of a classified message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Score at or below [`Params::ham_cutoff`].
    Ham,
    /// Score between the cutoffs: the filter cannot tell.
    Unsure,
    /// Score at or above [`Params::spam_cutoff`].
    Spam,
}

impl Label {
    /// `ham`, `unsure` or `spam`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Ham => "ham",
            Label::Unsure => "unsure",
            Label::Spam => "spam",
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Numbers of ham and spam training messages (for the model as a whole, or
/// the messages a token appeared in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Ham messages.
    pub ham: u32,
    /// Spam messages.
    pub spam: u32,
}

/// Scoring parameters, stored in the model file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Robinson's `s`: the strength of the prior `x` against the evidence
    /// (in messages). Must be positive.
    pub s: f64,
    /// Robinson's `x`: the spam probability assumed for a token never seen.
    /// In (0, 1).
    pub x: f64,
    /// Tokens whose `f(w)` lies within `min_dev` of ½ are ignored. In [0, ½).
    pub min_dev: f64,
    /// Scores at or below this are [`Label::Ham`].
    pub ham_cutoff: f64,
    /// Scores at or above this are [`Label::Spam`]; in between is
    /// [`Label::Unsure`].
    pub spam_cutoff: f64,
    /// Brown's correction for dependent clues: the chi-square statistics
    /// are divided by `dependence` and so are the degrees of freedom
    /// (1 = Fisher's method as is). Overlapping tokens (a word, its pair,
    /// a domain and its parents) are not independent; without it both
    /// `S` and `H` saturate and too many messages land at ½. At least 1.
    pub dependence: f64,
    /// Most clues combined per message (1..=[`MAX_CLUES`]).
    pub max_clues: u32,
}

impl Default for Params {
    /// Values chosen by cross-validation on the SpamAssassin training groups
    /// (easy-ham-1, hard-ham-1, spam-1) only, forward chaining in time (train
    /// on the older fifths, test on the next); see `examples/crossval.rs`.
    fn default() -> Self {
        Params {
            s: 0.05,
            x: 0.8,
            min_dev: 0.1,
            ham_cutoff: 0.3,
            spam_cutoff: 0.9,
            dependence: 1.0,
            max_clues: 50,
        }
    }
}

impl Params {
    /// Whether every field is in its documented range.
    pub fn is_valid(&self) -> bool {
        self.s.is_finite()
            && self.s > 0.0
            && self.x > 0.0
            && self.x < 1.0
            && self.min_dev >= 0.0
            && self.min_dev < 0.5
            && (0.0..=1.0).contains(&self.ham_cutoff)
            && (0.0..=1.0).contains(&self.spam_cutoff)
            && self.ham_cutoff <= self.spam_cutoff
            && self.dependence.is_finite()
            && self.dependence >= 1.0
            && self.dependence <= 1000.0
            && (1..=MAX_CLUES as u32).contains(&self.max_clues)
    }
}

/// A token that weighed in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Clue {
    /// The token (see [`tokenize`]).
    pub token: String,
    /// Its Robinson-corrected spam probability `f(w)`.
    pub probability: f64,
    /// The training messages it appeared in.
    pub counts: Counts,
}

/// The outcome of [`Model::classify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Spam score in [0, 1]: `(1 + S − H) / 2`.
    pub score: f64,
    /// The label the cutoffs give the score.
    pub label: Label,
    /// The clues that were combined, strongest first (farthest from ½).
    pub clues: Vec<Clue>,
    /// Distinct tokens of the message.
    pub tokens: usize,
    /// Dangerous attachments, reported whatever the score.
    pub dangerous: Vec<Attachment>,
}

impl Verdict {
    /// Whether the message carries a dangerous attachment.
    pub fn is_dangerous(&self) -> bool {
        !self.dangerous.is_empty()
    }
}

/// A trained Bayesian model. Cheap to clone for per-account copies; all
/// operations are in memory (see [`Model::to_bytes`] and
/// [`Model::from_bytes`] for the file form).
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub(crate) params: Params,
    pub(crate) messages: Counts,
    pub(crate) tokens: HashMap<Box<str>, Counts, foldhash::fast::RandomState>,
}

impl Model {
    /// An empty model with the default [`Params`].
    pub fn new() -> Model {
        Model::default()
    }

    /// An empty model with the given parameters (`None` if they are not
    /// valid, see [`Params::is_valid`]).
    pub fn with_params(params: Params) -> Option<Model> {
        params.is_valid().then(|| Model {
            params,
            ..Model::default()
        })
    }

    /// The scoring parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the scoring parameters; returns `false` (and changes
    /// nothing) if they are not valid.
    pub fn set_params(&mut self, params: Params) -> bool {
        let ok = params.is_valid();
        if ok {
            self.params = params;
        }
        ok
    }

    /// How many ham and spam messages were trained.
    pub fn messages(&self) -> Counts {
        self.messages
    }

    /// How many distinct tokens the model knows.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The training counts of one token.
    pub fn token(&self, token: &str) -> Option<Counts> {
        self.tokens.get(token).copied()
    }

    /// Tokenizes and trains one message.
    pub fn train(&mut self, message: &[u8], class: Class) {
        self.train_features(&tokenize(message), class);
    }

    /// Trains one already tokenized message.
    pub fn train_features(&mut self, features: &Features, class: Class) {
        bump(&mut self.messages, class, true);
        for t in &features.tokens {
            match self.tokens.get_mut(t.as_str()) {
                Some(c) => bump(c, class, true),
                None => {
                    let mut c = Counts::default();
                    bump(&mut c, class, true);
                    self.tokens.insert(t.as_str().into(), c);
                }
            }
        }
    }

    /// Removes one message previously trained as `class` (to correct a
    /// mistake, or before re-training it as the other class). Counts never
    /// go below zero; tokens left with no count are forgotten.
    pub fn untrain_features(&mut self, features: &Features, class: Class) {
        bump(&mut self.messages, class, false);
        for t in &features.tokens {
            if let Some(c) = self.tokens.get_mut(t.as_str()) {
                bump(c, class, false);
                if c.ham == 0 && c.spam == 0 {
                    self.tokens.remove(t.as_str());
                }
            }
        }
    }

    /// Tokenizes and untrains one message (see [`Model::untrain_features`]).
    pub fn untrain(&mut self, message: &[u8], class: Class) {
        self.untrain_features(&tokenize(message), class);
    }

    /// Train-on-error: classifies the message and trains it as `class` only
    /// when the label was wrong or unsure. Returns whether it trained.
    pub fn train_on_error(&mut self, message: &[u8], class: Class) -> bool {
        let features = tokenize(message);
        let verdict = self.classify_features(&features);
        let right = matches!(
            (verdict.label, class),
            (Label::Ham, Class::Ham) | (Label::Spam, Class::Spam)
        );
        if !right {
            self.train_features(&features, class);
        }
        !right
    }

    /// Robinson's corrected spam probability `f(w)` of a token with these
    /// counts.
    pub fn probability(&self, counts: Counts) -> f64 {
        let p = &self.params;
        let n = f64::from(counts.ham) + f64::from(counts.spam);
        if n == 0.0 {
            return p.x;
        }
        let ham_ratio = if self.messages.ham > 0 {
            f64::from(counts.ham) / f64::from(self.messages.ham)
        } else {
            0.0
        };
        let spam_ratio = if self.messages.spam > 0 {
            f64::from(counts.spam) / f64::from(self.messages.spam)
        } else {
            0.0
        };
        let pw = if ham_ratio + spam_ratio > 0.0 {
            spam_ratio / (ham_ratio + spam_ratio)
        } else {
            p.x
        };
        (p.s * p.x + n * pw) / (p.s + n)
    }

    /// Tokenizes and classifies one message.
    pub fn classify(&self, message: &[u8]) -> Verdict {
        self.classify_features(&tokenize(message))
    }

    /// Classifies one already tokenized message.
    pub fn classify_features(&self, features: &Features) -> Verdict {
        let p = &self.params;
        let mut clues: Vec<(f64, &str, Counts)> = Vec::new();
        for t in &features.tokens {
            let Some(&counts) = self.tokens.get(t.as_str()) else {
                continue;
            };
            let f = self.probability(counts);
            if (f - 0.5).abs() >= p.min_dev {
                clues.push((f, t.as_str(), counts));
            }
        }
        // Strongest first; ties broken by token for determinism.
        let order = |a: &(f64, &str, Counts), b: &(f64, &str, Counts)| {
            (b.0 - 0.5)
                .abs()
                .total_cmp(&(a.0 - 0.5).abs())
                .then_with(|| a.1.cmp(b.1))
        };
        let keep = p.max_clues as usize;
        if clues.len() > keep {
            clues.select_nth_unstable_by(keep, order);
            clues.truncate(keep);
        }
        clues.sort_unstable_by(order);
        let score = combine(clues.iter().map(|c| c.0), p.dependence);
        let label = if score >= p.spam_cutoff {
            Label::Spam
        } else if score <= p.ham_cutoff {
            Label::Ham
        } else {
            Label::Unsure
        };
        Verdict {
            score,
            label,
            clues: clues
                .into_iter()
                .map(|(probability, token, counts)| Clue {
                    token: token.to_string(),
                    probability,
                    counts,
                })
                .collect(),
            tokens: features.tokens.len(),
            dangerous: features.dangerous().cloned().collect(),
        }
    }
}

fn bump(c: &mut Counts, class: Class, up: bool) {
    let slot = match class {
        Class::Ham => &mut c.ham,
        Class::Spam => &mut c.spam,
    };
    *slot = if up {
        slot.saturating_add(1)
    } else {
        slot.saturating_sub(1)
    };
}

/// Fisher's combining of the clue probabilities: `S = 1 − Q(−2 Σ ln(1 − f))`,
/// `H = 1 − Q(−2 Σ ln f)`, score `(1 + S − H) / 2`; ½ with no clue.
fn combine(probs: impl Iterator<Item = f64>, dependence: f64) -> f64 {
    let mut ln_f = 0.0;
    let mut ln_1f = 0.0;
    let mut n = 0usize;
    for f in probs {
        let f = f.clamp(1e-12, 1.0 - 1e-12);
        ln_f += f.ln();
        ln_1f += (1.0 - f).ln();
        n += 1;
    }
    if n == 0 {
        return 0.5;
    }
    // Brown: statistic / c with 2n / c degrees of freedom (rounded up to an
    // even number, at least 2).
    let c = dependence.max(1.0);
    let dof = 2 * ((n as f64 / c).ceil() as usize).max(1);
    let ln_qs = chi2q_ln(-2.0 * ln_1f / c, dof);
    let ln_qh = chi2q_ln(-2.0 * ln_f / c, dof);
    // (1 + S − H) / 2 with S = 1 − Qs, H = 1 − Qh.
    let diff = ln_qh.exp() - ln_qs.exp();
    if diff.abs() >= 2.0 * SATURATION_BAND {
        return (0.5 + diff / 2.0).clamp(0.0, 1.0);
    }
    // Saturated: both kinds of evidence are overwhelming (or balanced) and
    // the difference of the tail probabilities is lost to rounding. The
    // message stays unsure, inside a narrow band around ½, ordered by the
    // log-ratio of the tails so that rankings (ROC) keep the information.
    0.5 + SATURATION_BAND * ((ln_qh - ln_qs) / 100.0).tanh()
}

/// Half-width of the band around ½ where saturated scores are ordered by
/// the log-ratio of the chi-square tails.
const SATURATION_BAND: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_is_symmetric() {
        let a = combine([0.9, 0.8, 0.99].into_iter(), 1.0);
        let b = combine([0.1, 0.2, 0.01].into_iter(), 1.0);
        assert!((a + b - 1.0).abs() < 1e-9, "{a} {b}");
        assert!(a > 0.9);
        assert_eq!(combine(std::iter::empty(), 1.0), 0.5);
        let c = combine([0.9, 0.8, 0.99].into_iter(), 3.0);
        assert!(c > 0.5 && c < a, "{c} {a}");
    }

    #[test]
    fn train_untrain() {
        let mut m = Model::new();
        let msg = b"Subject: hello\r\n\r\nhello world\r\n";
        m.train(msg, Class::Ham);
        assert_eq!(m.messages(), Counts { ham: 1, spam: 0 });
        assert_eq!(m.token("hello"), Some(Counts { ham: 1, spam: 0 }));
        m.untrain(msg, Class::Ham);
        assert_eq!(m.messages(), Counts::default());
        assert_eq!(m.token_count(), 0);
    }

    #[test]
    fn train_on_error_learns_once() {
        let mut m = Model::new();
        let spam = b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n";
        let ham = b"Subject: lunch\r\n\r\nlunch at noon with the team\r\n";
        assert!(m.train_on_error(spam, Class::Spam));
        assert!(m.train_on_error(ham, Class::Ham));
        assert!(!m.train_on_error(spam, Class::Spam));
        assert_eq!(m.classify(spam).label, Label::Spam);
    }
}
