//! `scop-mime`: the email parser and encoder of SCoP.
//!
//! Sans-IO: bytes in, a tree and diagnostics out; a tree in, bytes out.
//!
//! ```text
//!             parse()                          encode()
//!  bytes ──────────────▶ Parsed { Message, Diagnostics } ──────────▶ canonical CRLF bytes
//!   ▲                      │                                            │
//!   └──── Message::raw() ◀─┘  (an unmodified message re-emits its        │
//!                              input byte for byte)                     ▼
//!                                                     parse() again: an `equivalent()` tree,
//!                                                     and encode() is a fixed point
//!
//!  Message ─┬─ headers: [Header]        RFC 5322 §2.2, §3.6 (names/values borrowed)
//!           └─ body ─┬─ Leaf            RFC 2045 §6 (decoded: base64/QP owned, 7bit/8bit borrowed)
//!                    ├─ Multipart       RFC 2046 §5.1 (preamble, parts: [Message], epilogue)
//!                    └─ Message         RFC 2046 §5.2.1 (message/rfc822)
//! ```
//!
//! * [`parse`] never panics; every size, depth and count is bounded by a named
//!   constant in [`limits`]. What it does not understand becomes a
//!   [`Diagnostic`], and it carries on with a best-effort reading.
//! * [`encode`] writes a canonical form (CRLF, folded headers, canonical
//!   transfer encodings) such that `parse(encode(m))` is [`equivalent`] to `m`
//!   and `encode(parse(encode(m))) == encode(m)`.
//! * [`Builder`] composes new messages (DKIM signer, bounces, reports).
//!
//! # Structure rules the parser and encoder share
//!
//! * A header block ends at the first empty line; a line that is neither a
//!   field (`name:` with optional whitespace before the colon) nor a
//!   continuation (leading space or tab) also ends it and starts the body
//!   ([`DiagnosticKind::MissingBlankLine`]). A block running to the end of
//!   the input has an empty body.
//! * A delimiter line is exactly `--boundary`, optionally `--`, optional
//!   spaces/tabs; the line break before it belongs to the delimiter. The
//!   first close delimiter ends the parts: everything after it is the
//!   epilogue. Each multipart level scans its own body once.
//! * `message/rfc822` and `message/global` bodies (7bit, 8bit, binary) are
//!   parsed as messages; with base64 or quoted-printable they stay leaves.
//!
//! # Line endings
//!
//! Input may use LF, CRLF or both. A line ends at LF, and a CR right before
//! that LF belongs to the line ending; any other CR is data. The decoded form
//! of 7bit, 8bit, quoted-printable and unknown-encoding bodies uses CRLF for
//! every line break (so LF and CRLF inputs decode identically); `binary` and
//! base64 bodies are byte-exact. Preambles and epilogues are normalised to
//! CRLF the same way. [`encode`] writes CRLF everywhere.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod builder;
mod bytes;
mod charset;
pub mod codec;
mod content_type;
mod date;
mod encode;
mod equivalent;
pub mod fuzz;
mod header;
mod message;
mod rfc2047;

pub use address::{Address, Mailbox};
pub use builder::{Attachment, Builder};
pub use content_type::{ContentDisposition, ContentType, TransferEncoding};
pub use date::DateTime;
pub use encode::encode;
pub use equivalent::{Difference, equivalent};
pub use header::Header;
pub use message::{Body, Leaf, Message, Multipart, parse};

/// Named limits. Exceeding one yields a [`Diagnostic`] and a best-effort
/// continuation, except [`limits::MAX_MESSAGE_SIZE`], which is a [`ParseError`].
pub mod limits {
    /// Largest accepted input, in bytes.
    pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
    /// Deepest nesting of multiparts and message/rfc822 bodies; deeper
    /// entities are kept as opaque leaf bodies.
    pub const MAX_DEPTH: usize = 32;
    /// Most header fields kept in one header block; further fields are dropped.
    pub const MAX_HEADERS: usize = 1_000;
    /// Most header fields kept in the whole message; further fields are dropped.
    pub const MAX_TOTAL_HEADERS: usize = 20_000;
    /// Most body parts (entities inside multiparts) in the whole message;
    /// the rest of a multipart beyond it is kept in that multipart's epilogue.
    pub const MAX_PARTS: usize = 5_000;
    /// RFC 5322 §2.1.1 hard line length limit (excluding CRLF); longer
    /// header lines are reported (once per header block) and kept. Body
    /// lines are not checked.
    pub const MAX_LINE_LENGTH: usize = 998;
    /// Largest header field (name, colon and folded value); larger fields are
    /// reported and kept.
    pub const MAX_HEADER_SIZE: usize = 64 * 1024;
    /// Most diagnostics recorded for one parse; later ones are dropped.
    pub const MAX_DIAGNOSTICS: usize = 1_000;
    /// Longest accepted multipart boundary (RFC 2046 §5.1.1 allows 70).
    pub const MAX_BOUNDARY_LENGTH: usize = 200;
    /// Most RFC 2231 continuation sections merged for one parameter.
    pub const MAX_PARAM_SECTIONS: usize = 100;
    /// Preferred header line length when folding (RFC 5322 §2.1.1).
    pub const PREFERRED_LINE_LENGTH: usize = 78;
}

/// The result of [`parse`]: what was understood, plus what was not.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// The message tree.
    pub message: Message<'a>,
    /// Problems met while parsing, in input order (at most
    /// [`limits::MAX_DIAGNOSTICS`]).
    pub diagnostics: Vec<Diagnostic>,
}

/// Input that is not a message at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is empty.
    #[error("empty input")]
    Empty,
    /// The input is larger than [`limits::MAX_MESSAGE_SIZE`].
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The first line is neither a header field (RFC 5322 §2.2), an mbox
    /// `From ` line, nor blank.
    #[error("the first line is neither a header field nor blank")]
    NotAMessage,
}

/// Something the parser did not fully understand, with the byte offset in the
/// input where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Diagnostic {
    /// What went wrong.
    pub kind: DiagnosticKind,
    /// Byte offset in the parsed input.
    pub offset: usize,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

/// Kinds of [`Diagnostic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// An mbox `From ` separator line before the headers was skipped.
    MboxFromLine,
    /// A line in the header block is not a header field (RFC 5322 §2.2); the
    /// body is taken to start there.
    MissingBlankLine,
    /// A header line is longer than [`limits::MAX_LINE_LENGTH`] (RFC 5322
    /// §2.1.1).
    LineTooLong,
    /// A header field is larger than [`limits::MAX_HEADER_SIZE`].
    HeaderTooLarge,
    /// More than [`limits::MAX_HEADERS`] / [`limits::MAX_TOTAL_HEADERS`]
    /// fields; the rest were dropped.
    TooManyHeaders,
    /// More than [`limits::MAX_PARTS`] parts; the rest of the multipart was
    /// kept as its epilogue.
    TooManyParts,
    /// Nesting deeper than [`limits::MAX_DEPTH`]; the entity was kept as an
    /// opaque leaf.
    TooDeep,
    /// A NUL byte in a header block.
    NulInHeader,
    /// A CR not followed by LF in a header block.
    BareCarriageReturn,
    /// A header field holds bytes that are not UTF-8 (RFC 6532).
    InvalidUtf8Header,
    /// A multipart has no (usable) boundary parameter (RFC 2046 §5.1.1); it
    /// was kept as a leaf.
    MissingBoundary,
    /// No delimiter line for the boundary was found; the entity was kept as
    /// a leaf (RFC 2046 §5.1.1 requires at least one body part).
    BoundaryNotFound,
    /// The close delimiter (RFC 2046 §5.1.1) is missing.
    MissingCloseDelimiter,
    /// Base64 text holds characters outside the alphabet (RFC 2045 §6.8);
    /// they were skipped.
    InvalidBase64,
    /// Quoted-printable text holds an invalid escape (RFC 2045 §6.7); it was
    /// kept literally.
    InvalidQuotedPrintable,
    /// A message/rfc822 body with a base64 or quoted-printable encoding
    /// (forbidden by RFC 2046 §5.2.1); kept as a leaf.
    EncodedMessageBody,
    /// The Content-Type field could not be parsed (RFC 2045 §5); the default
    /// applies.
    InvalidContentType,
}

impl std::fmt::Display for DiagnosticKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::MboxFromLine => "mbox From_ line skipped",
            Self::MissingBlankLine => "header block ends without a blank line",
            Self::LineTooLong => "line longer than 998 bytes",
            Self::HeaderTooLarge => "header field too large",
            Self::TooManyHeaders => "too many header fields",
            Self::TooManyParts => "too many body parts",
            Self::TooDeep => "nesting too deep",
            Self::NulInHeader => "NUL byte in header",
            Self::BareCarriageReturn => "bare CR in header",
            Self::InvalidUtf8Header => "header is not valid UTF-8",
            Self::MissingBoundary => "multipart without boundary",
            Self::BoundaryNotFound => "multipart boundary never found",
            Self::MissingCloseDelimiter => "multipart close delimiter missing",
            Self::InvalidBase64 => "invalid base64",
            Self::InvalidQuotedPrintable => "invalid quoted-printable",
            Self::EncodedMessageBody => "message/rfc822 with base64 or quoted-printable encoding",
            Self::InvalidContentType => "invalid Content-Type",
        };
        f.write_str(s)
    }
}
