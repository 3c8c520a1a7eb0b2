//! `scop-spam`: the Bayesian spam classifier of SCoP.
//!
//! Sans-IO: message bytes in, tokens, verdicts and model bytes out. No file,
//! clock or randomness is touched here; the `scop spam` commands and the
//! spam-filter compartment do the I/O.
//!
//! ```text
//!  message bytes
//!       │ scop_mime::parse (raw lossy text when it is not a message)
//!       ▼
//!  tokenize() ──▶ Features { tokens (deduplicated, tagged): 64-bit keys
//!       │                   + text for explanations, attachments }
//!       │                              │
//!       │ Model::train / untrain       │ dangerous attachments are flagged
//!       ▼                              │ whatever the score
//!  Model { per-key document counts,    │
//!          ham/spam message counts,    │
//!          Params { s, x, min_dev, cutoffs } }
//!       │ Model::classify: Robinson f(w), Fisher chi-square combining
//!       ▼                              ▼
//!  Verdict { score 0..1, Label::{Ham, Unsure, Spam}, clues, dangerous }
//!
//!  Model::to_bytes / Model::from_bytes: "SCOPSPAM" v2 file (token keys,
//!  not text), checked on load into an ordered probing table in one
//!  linear pass (a lookup reads one cache line)
//!  eval::Evaluation: FP/FN/unsure at the cutoffs, ROC curve, (1-AUC)%
//! ```
//!
//! # Tokens
//!
//! [`tokenize`] reads the decoded message: header fields tagged by field
//! (`subject:`, `from:name:`, `from:domain:`, `reply-to:`, `received:`,
//! `content-type:`, `x-mailer:`, ...), body text with HTML reduced to text,
//! URL hosts (`url:`), Unicode words, lowercased (`caps:` marks words
//! written in capitals; Han, Kana and Hangul runs become character
//! bigrams), adjacent word pairs, and attachment features
//! (extensions, double extensions such as `.pdf.exe`, executable and macro
//! types). Every per-message quantity is bounded by a constant in [`limits`].
//!
//! Each token is counted under its 64-bit key ([`token_key`], a fixed,
//! specified hash of its bytes): the model never stores token text, so it
//! is compact and loads fast, and the tokenizer allocates nothing per
//! token. The message's own token texts travel with its [`Features`] so
//! that a verdict still names its clues. On the SpamAssassin corpus (all
//! five groups, 702,420 distinct tokens) no two tokens share a key.
//!
//! # Scoring
//!
//! Gary Robinson's method, as in bogofilter and SpamBayes: for a token seen
//! in `n` training messages with spam probability `p(w)`,
//! `f(w) = (s·x + n·p(w)) / (s + n)`; tokens with `|f(w) − ½| ≥ min_dev`
//! (at most `max_clues` of them, the strongest) are combined with Fisher's
//! inverse chi-square into `S` and `H`, and the score is `(1 + S − H) / 2`
//! (see [`Params`]). When both `S` and `H` saturate (overwhelming evidence
//! both ways), the message stays unsure, in a band of ±10⁻⁹ around ½, ordered
//! by the log-ratio of the chi-square tails so that rankings keep the
//! information. Every [`Verdict`] lists the clues that weighed most.
//!
//! The default [`Params`] come from forward-chaining cross-validation in time
//! on the SpamAssassin training groups only (`examples/crossval.rs`).
//!
//! ```
//! use scop_spam::{Class, Label, Model};
//!
//! let mut model = Model::new();
//! model.train(b"Subject: meeting notes\r\n\r\nSee you at the standup.\r\n", Class::Ham);
//! model.train(b"Subject: CHEAP pills\r\n\r\nBuy cheap pills now!\r\n", Class::Spam);
//! let verdict = model.classify(b"Subject: cheap pills\r\n\r\nbuy now\r\n");
//! assert!(verdict.score > 0.5);
//! let bytes = model.to_bytes();
//! let again = Model::from_bytes(&bytes).unwrap();
//! assert_eq!(again.classify(b"Subject: cheap pills\r\n\r\nbuy now\r\n").label, verdict.label);
//! # let _ = Label::Ham;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chi2;
pub mod eval;
mod file;
pub mod fuzz;
mod hash;
mod html;
mod model;
mod text;
mod tokenize;

pub use file::{FORMAT_VERSION, MAGIC};
pub use hash::token_key;
pub use model::{Class, Clue, Counts, Label, Model, Params, Verdict};
pub use tokenize::{Attachment, Danger, Features, tokenize};

/// Named limits. Every per-message and per-file quantity is bounded by one.
pub mod limits {
    /// Most distinct tokens kept for one message; later ones are dropped.
    pub const MAX_TOKENS_PER_MESSAGE: usize = 20_000;
    /// Longest token in bytes (tag included, at most 255: the model file
    /// stores the length in one byte); longer tokens (mostly word pairs) are
    /// dropped.
    pub const MAX_TOKEN_LEN: usize = 64;
    /// Longest word in characters turned into a token as is; a longer word
    /// becomes a `skip:` token that records only its first character and
    /// length class.
    pub const MAX_WORD_CHARS: usize = 40;
    /// Bytes of decoded text read from one message (all parts together).
    pub const MAX_TEXT_BYTES: usize = 512 * 1024;
    /// Header fields read from one message (all entities together).
    pub const MAX_HEADER_FIELDS: usize = 500;
    /// Attachments described for one message.
    pub const MAX_ATTACHMENTS: usize = 100;
    /// Most clues (discriminating tokens) combined into one score.
    pub const MAX_CLUES: usize = 150;
    /// Most distinct tokens in a model (a file announcing more is rejected).
    pub const MAX_MODEL_TOKENS: usize = 50_000_000;
}

/// Why a model file was rejected by [`Model::from_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The data does not start with [`MAGIC`]: not a scop-spam model.
    #[error("not a scop-spam model file (bad magic)")]
    BadMagic,
    /// The file was written by a format version this build does not read.
    #[error("unsupported model format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The file ends before the data its header announces.
    #[error("model file truncated at byte {offset}")]
    Truncated {
        /// Where the data ran out.
        offset: usize,
    },
    /// The checksum over the file does not match: the file is corrupt.
    #[error("model file checksum mismatch (corrupt file)")]
    BadChecksum,
    /// A field holds a value that cannot be right (a count, a parameter, a
    /// token that is not UTF-8, a repeated token, ...).
    #[error("invalid model file: {what} at byte {offset}")]
    Invalid {
        /// What is wrong.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// Bytes follow the end of the data.
    #[error("{extra} unexpected bytes after the end of the model")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}
