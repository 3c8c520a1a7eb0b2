//! Deterministic generator of valid, varied emails: the Hamlet corpus.
//!
//! SCoP tests its parsers on millions of messages made here. The name comes
//! from the OCaml project whose generator used the text of *Hamlet*; this one
//! does too (the play is in the public domain), mixed with short snippets in a
//! dozen languages.
//!
//! ```text
//!  (seed, config, index) ──SplitMix64──► Rng ──► headers ──► MIME tree ──► bytes
//!                                                            │
//!            Crlf: as generated      Lf: every CRLF → LF  ◄──┘
//! ```
//!
//! Message `index` depends only on the seed, the [`Config`] and `index`, so
//! messages can be generated in parallel and in any order, and are the same
//! bytes on every platform (integer arithmetic only).
//!
//! # What is generated
//!
//! Every message is valid RFC 5322 + MIME (RFC 2045–2049), with:
//!
//! - **Addresses** (RFC 5322 section 3.4): display names plain, quoted with
//!   specials, with `\"` escapes, RFC 2047 encoded words (B and Q), RFC 6532
//!   raw UTF-8; bare addresses, `<addr>`, comments, quoted local parts, UTF-8
//!   local parts and domains; groups (`undisclosed-recipients:;`, named groups
//!   with members); From with several mailboxes plus Sender; Cc, Reply-To.
//! - **Subjects**: ASCII (some long and folded), RFC 2047 B and Q words in
//!   UTF-8, ISO-8859-1/2/5/7/15, Windows-1251/1252, KOI8-R, ISO-2022-JP,
//!   Shift_JIS, EUC-KR, GB2312, GBK and Big5 (only texts representable in the
//!   charset), mixed encoded and plain text, raw UTF-8.
//! - **Other headers**: Date in several forms and zones (including `-0000`),
//!   Message-ID, In-Reply-To, long folded References, Received chains,
//!   X- headers, Keywords, List-Unsubscribe, MIME-Version (sometimes with a
//!   comment). Headers are folded at whitespace to at most 78 characters.
//! - **Bodies**: text/plain (sometimes `format=flowed`) and text/html (tags,
//!   entities, links) in US-ASCII, UTF-8 and the legacy charsets above, with
//!   a matching `charset` parameter; every transfer encoding: 7bit, 8bit,
//!   binary (rare: some attachments, and message/rfc822 parts declared
//!   binary; never with [`LineEnding::Lf`]),
//!   quoted-printable (soft breaks, encoded trailing whitespace), base64.
//! - **Structure**: single part; multipart/mixed, alternative, related (HTML
//!   with inline images by Content-ID), digest (parts with and without an
//!   explicit Content-Type); multiparts nested up to five deep;
//!   message/rfc822 parts holding complete generated messages (two levels at
//!   most); preambles and epilogues; parts without headers; attachments (PDF,
//!   PNG, ZIP, octet-stream, iCalendar, CSV) with `filename` quoted, as a
//!   token, RFC 2231 extended (`filename*=utf-8''%E2%82%AC...`, with a
//!   language) and in continuations (`filename*0*=`, `filename*1*=`).
//!   Boundaries carry a random part and are checked against the content.
//!
//! Sizes are targets drawn uniformly in `[min_size, max_size]`; headers and
//! structure make the result approximate (see the crate tests for the
//! tolerance).
//!
//! [`Hamlet::features`] reports which constructs a message contains.
//!
//! ```
//! use scop_hamlet::{Config, Hamlet};
//!
//! let corpus = Hamlet::new(42, Config::default());
//! let first = corpus.message(0);
//! assert_eq!(first, corpus.messages().next().unwrap());
//! assert!(first.windows(2).any(|w| w == b"\r\n"));
//! ```
#![forbid(unsafe_code)]

mod charset;
mod encode;
mod features;
mod generate;
mod rng;
mod text;

pub use features::{Feature, Features};

use generate::{Ctx, Gen, Width};
use rng::{Rng, mix};

/// Line ending used for every line of the generated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineEnding {
    /// `\r\n`, as on the wire (RFC 5322 section 2.1).
    Crlf,
    /// `\n`, as stored by many local mailbox formats. The message is the
    /// CRLF one with every CRLF replaced by LF, except that binary parts are
    /// base64-encoded instead.
    Lf,
}

/// Generation parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// Approximate minimum size of a whole message, in bytes.
    pub min_size: usize,
    /// Approximate maximum size of a whole message, in bytes.
    pub max_size: usize,
    /// Line ending of every line.
    pub line_ending: LineEnding,
}

impl Default for Config {
    /// 500 to 20,000 bytes, CRLF.
    fn default() -> Self {
        Config {
            min_size: 500,
            max_size: 20_000,
            line_ending: LineEnding::Crlf,
        }
    }
}

/// The corpus generator: message `index` is a pure function of the seed, the
/// [`Config`] and `index`.
#[derive(Debug, Clone)]
pub struct Hamlet {
    seed: u64,
    config: Config,
}

impl Hamlet {
    /// Makes a generator. Cheap: shared tables are built once per process.
    pub fn new(seed: u64, config: Config) -> Hamlet {
        Hamlet { seed, config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Message number `index`.
    pub fn message(&self, index: u64) -> Vec<u8> {
        self.generate(index).0
    }

    /// Messages 0, 1, 2, ...
    pub fn messages(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        (0..).map(move |i| self.message(i))
    }

    /// The constructs message `index` contains (generates the message).
    pub fn features(&self, index: u64) -> Features {
        self.generate(index).1
    }

    /// Message `index` and the constructs it contains, in one generation.
    pub fn message_and_features(&self, index: u64) -> (Vec<u8>, Features) {
        self.generate(index)
    }

    fn generate(&self, index: u64) -> (Vec<u8>, Features) {
        let mut rng = Rng::new(mix(self.seed) ^ index);
        let (lo, hi) = (
            self.config.min_size.min(self.config.max_size),
            self.config.max_size.max(self.config.min_size),
        );
        let target = rng.range(lo, hi);
        let mut out = Vec::with_capacity(target + target / 4 + 512);
        let mut g = Gen::new(charset::tables(), index);
        let width = match self.config.line_ending {
            LineEnding::Crlf => Width::Binary,
            LineEnding::Lf => Width::Eight,
        };
        g.message(&mut rng, &mut out, target, Ctx::top(width));
        if self.config.line_ending == LineEnding::Lf {
            crlf_to_lf(&mut out);
        }
        (out, g.feats)
    }
}

/// Replaces every CRLF by LF in place.
fn crlf_to_lf(buf: &mut Vec<u8>) {
    let mut w = 0;
    for r in 0..buf.len() {
        let b = buf[r];
        if b == b'\r' && buf.get(r + 1) == Some(&b'\n') {
            continue;
        }
        buf[w] = b;
        w += 1;
    }
    buf.truncate(w);
}
