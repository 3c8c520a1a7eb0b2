//! The spam-filter stage of the receiving side (sans-IO): classify a
//! message with a scop-spam model, label it (`X-Spam-Score`,
//! `X-Spam-Verdict`, `X-Spam-Clues`, `X-Spam-Danger`), decide what to do
//! with it (deliver, quarantine in the Junk folder, reject above a
//! threshold), and keep the list of client addresses that sent the most
//! spam, which the MX consults to refuse them at MAIL (the seed's
//! firewall list).
//!
//! Labels a sender put in the message itself are removed first, so that a
//! spammer cannot pre-label a message as ham.

use std::collections::HashMap;
use std::net::IpAddr;

use scop_spam::{Label, Model};

/// The fields this stage owns (removed from incoming messages).
pub const OWN_FIELDS: &[&str] = scop_mta::headers::SPAM_LABELS;
/// Clues listed in `X-Spam-Clues`.
pub const CLUES_IN_HEADER: usize = 5;
/// Client addresses tracked at most by [`SourceList`].
pub const SOURCES_MAX: usize = 10_000;

/// What to do per verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Refuse (550) messages scoring at or above this; `None`: never.
    pub reject_at: Option<f64>,
    /// Deliver spam into the Junk folder (else into the inbox, labelled).
    pub quarantine_spam: bool,
    /// Deliver messages with dangerous attachments into the Junk folder,
    /// whatever their score.
    pub quarantine_dangerous: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            reject_at: None,
            quarantine_spam: true,
            quarantine_dangerous: true,
        }
    }
}

/// The decision for a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Deliver to the inbox.
    Deliver,
    /// Deliver to the Junk folder.
    Quarantine,
    /// Refuse with this text.
    Reject(String),
}

/// The result of [`inspect`].
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The label.
    pub label: Label,
    /// The score.
    pub score: f64,
    /// The header fields to prepend (CRLF-terminated).
    pub fields: String,
    /// The decision.
    pub action: Action,
}

fn clean_token(t: &str) -> String {
    t.chars()
        .map(|c| if c.is_control() || c == ',' { ' ' } else { c })
        .take(60)
        .collect()
}

/// Classifies `msg` and decides.
pub fn inspect(model: &Model, policy: &Policy, msg: &[u8]) -> Inspection {
    let v = model.classify(msg);
    let mut fields = format!(
        "X-Spam-Score: {:.4}\r\nX-Spam-Verdict: {}\r\n",
        v.score,
        v.label.as_str()
    );
    let clues: Vec<String> = v
        .clues
        .iter()
        .take(CLUES_IN_HEADER)
        .map(|c| format!("{} {:.3}", clean_token(&c.token), c.probability))
        .collect();
    if !clues.is_empty() {
        fields.push_str(&format!("X-Spam-Clues: {}\r\n", clues.join(", ")));
    }
    if v.is_dangerous() {
        let names: Vec<String> = v
            .dangerous
            .iter()
            .map(|a| clean_token(a.filename.as_deref().unwrap_or(&a.mime_type)))
            .collect();
        fields.push_str(&format!("X-Spam-Danger: {}\r\n", names.join(", ")));
    }
    let action = match policy.reject_at {
        Some(t) if v.score >= t => {
            Action::Reject(format!("Message refused as spam (score {:.4})", v.score))
        }
        _ if v.is_dangerous() && policy.quarantine_dangerous => Action::Quarantine,
        _ if v.label == Label::Spam && policy.quarantine_spam => Action::Quarantine,
        _ => Action::Deliver,
    };
    Inspection {
        label: v.label,
        score: v.score,
        fields,
        action,
    }
}

/// The refusal of a source that sent too much spam recently.
pub fn blocked_reply() -> scop_smtp::Reply {
    crate::reply(554, (5, 7, 1), "Your address sent too much spam recently")
}

/// `msg` without the header fields named in [`OWN_FIELDS`] (and their
/// continuation lines); the body is untouched.
pub fn strip_own_fields(msg: &[u8]) -> Vec<u8> {
    crate::headers::remove_fields(msg, |line| {
        OWN_FIELDS
            .iter()
            .any(|f| crate::headers::field_value(line, f).is_some())
    })
}

/// Spam counts per client address; an address that sent `threshold` spam
/// messages within `window` seconds is refused until the window passes.
#[derive(Debug, Clone)]
pub struct SourceList {
    threshold: u32,
    window: i64,
    sources: HashMap<IpAddr, Source>,
}

/// What is known of one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Spam messages in the current window.
    pub spam: u32,
    /// All messages in the current window.
    pub total: u32,
    /// Start of the current window.
    pub since: i64,
}

impl SourceList {
    /// A list that blocks after `threshold` spams within `window` seconds
    /// (`threshold` 0: never blocks).
    pub fn new(threshold: u32, window: i64) -> Self {
        SourceList {
            threshold,
            window,
            sources: HashMap::new(),
        }
    }

    /// Records a classified message from `ip`.
    pub fn record(&mut self, ip: IpAddr, label: Label, now: i64) {
        if self.sources.len() >= SOURCES_MAX && !self.sources.contains_key(&ip) {
            let window = self.window;
            self.sources.retain(|_, s| now - s.since < window);
            if self.sources.len() >= SOURCES_MAX {
                // Forget the address with the least spam.
                if let Some(k) = self
                    .sources
                    .iter()
                    .min_by_key(|(_, s)| (s.spam, s.total))
                    .map(|(k, _)| *k)
                {
                    self.sources.remove(&k);
                }
            }
        }
        let s = self.sources.entry(ip).or_insert(Source {
            spam: 0,
            total: 0,
            since: now,
        });
        if now - s.since >= self.window {
            *s = Source {
                spam: 0,
                total: 0,
                since: now,
            };
        }
        s.total = s.total.saturating_add(1);
        if label == Label::Spam {
            s.spam = s.spam.saturating_add(1);
        }
    }

    /// Whether `ip` is refused now.
    pub fn is_blocked(&self, ip: IpAddr, now: i64) -> bool {
        self.threshold > 0
            && self
                .sources
                .get(&ip)
                .is_some_and(|s| now - s.since < self.window && s.spam >= self.threshold)
    }

    /// The `n` addresses with the most spam in their window.
    pub fn top(&self, n: usize) -> Vec<(IpAddr, Source)> {
        let mut v: Vec<_> = self.sources.iter().map(|(k, s)| (*k, *s)).collect();
        v.sort_by(|a, b| b.1.spam.cmp(&a.1.spam).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::header_end;
    use scop_spam::Class;

    fn model() -> Model {
        let mut m = Model::new();
        for i in 0..20 {
            m.train(
                format!(
                    "Subject: meeting {i}\r\n\r\nSee you at the standup about the roadmap.\r\n"
                )
                .as_bytes(),
                Class::Ham,
            );
            m.train(
                format!(
                    "Subject: CHEAP pills {i}\r\n\r\nBuy cheap pills now, best price viagra!\r\n"
                )
                .as_bytes(),
                Class::Spam,
            );
        }
        m
    }

    #[test]
    fn spam_is_labelled_and_quarantined() {
        let m = model();
        let i = inspect(
            &m,
            &Policy::default(),
            b"Subject: cheap pills\r\n\r\nbuy cheap pills now viagra\r\n",
        );
        assert_eq!(i.label, Label::Spam);
        assert_eq!(i.action, Action::Quarantine);
        assert!(
            i.fields.contains("X-Spam-Verdict: spam\r\n"),
            "{}",
            i.fields
        );
        assert!(
            i.fields.starts_with("X-Spam-Score: ") && i.score > 0.9,
            "{}",
            i.fields
        );
        assert!(i.fields.contains("X-Spam-Clues: "));
        let h = inspect(
            &m,
            &Policy::default(),
            b"Subject: meeting\r\n\r\nsee you at the standup\r\n",
        );
        assert_eq!(h.label, Label::Ham);
        assert_eq!(h.action, Action::Deliver);
    }

    #[test]
    fn reject_threshold_applies() {
        let p = Policy {
            reject_at: Some(0.9),
            ..Policy::default()
        };
        let i = inspect(
            &model(),
            &p,
            b"Subject: cheap pills\r\n\r\nbuy cheap pills now viagra\r\n",
        );
        assert!(matches!(i.action, Action::Reject(_)), "{i:?}");
    }

    #[test]
    fn dangerous_attachments_are_quarantined_whatever_the_score() {
        let msg = scop_mime::Builder::new()
            .subject("meeting")
            .text("See you at the standup about the roadmap.\n")
            .attachment(
                "invoice.pdf.exe",
                "application/octet-stream",
                b"MZ".to_vec(),
            )
            .build();
        let i = inspect(&model(), &Policy::default(), &msg);
        assert_eq!(i.action, Action::Quarantine, "{i:?}");
        assert!(
            i.fields.contains("X-Spam-Danger: invoice.pdf.exe"),
            "{}",
            i.fields
        );
    }

    #[test]
    fn forged_labels_are_removed() {
        let msg = b"X-Spam-Verdict: ham\r\nSubject: x\r\nx-spam-score :\r\n 0.0\r\nX-Spam-Verdicts: keep\r\n\r\nX-Spam-Verdict: body stays\r\n";
        let out = strip_own_fields(msg);
        assert_eq!(
            out,
            b"Subject: x\r\nX-Spam-Verdicts: keep\r\n\r\nX-Spam-Verdict: body stays\r\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn stripping_never_panics_and_keeps_the_body(msg in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let out = strip_own_fields(&msg);
            let end = header_end(&msg);
            proptest::prop_assert!(out.len() <= msg.len());
            proptest::prop_assert!(out.ends_with(&msg[end..]));
            // Idempotent.
            proptest::prop_assert_eq!(strip_own_fields(&out), out);
        }
    }

    #[test]
    fn sources_block_after_the_threshold_and_expire() {
        let mut s = SourceList::new(3, 3600);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for t in 0..2 {
            s.record(ip, Label::Spam, t);
        }
        s.record(other, Label::Ham, 0);
        assert!(!s.is_blocked(ip, 10));
        s.record(ip, Label::Spam, 20);
        assert!(s.is_blocked(ip, 30));
        assert!(!s.is_blocked(other, 30));
        assert!(!s.is_blocked(ip, 3600));
        assert_eq!(s.top(1)[0].0, ip);
        assert!(!SourceList::new(0, 10).is_blocked(ip, 0));
    }

    #[test]
    fn source_list_is_bounded() {
        let mut s = SourceList::new(1, 3600);
        for i in 0..(SOURCES_MAX as u32 + 10) {
            s.record(IpAddr::from(i.to_be_bytes()), Label::Ham, 0);
        }
        assert!(s.sources.len() <= SOURCES_MAX);
    }
}
