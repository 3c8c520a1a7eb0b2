//! Sender Policy Framework (RFC 7208) evaluation, sans-IO.
//!
//! The crate implements `check_host()` (RFC 7208 section 4) as a state
//! machine that does no I/O: it asks for DNS answers, and is told the time
//! and the receiving host's name. An SMTP server (or any driver) answers its
//! questions however it likes: synchronously through [`check_host_with`] and
//! a [`Resolver`], or asynchronously by looping on [`Evaluator::step`].
//!
//! ```text
//!   Request {ip, sender, helo}      Options {now, receiver, ...}
//!                 \                  /
//!                  v                v
//!              +-----------------------+   Step::Query(q)   +-----------+
//!              |       Evaluator       | -----------------> |  driver   |
//!              |  record::Record parse |                    | (resolver)|
//!              |  macros expansion     | <----------------- |           |
//!              |  limits, include,     |  answer(q, DnsAnswer)+----------+
//!              |  redirect, exp        |
//!              +-----------------------+
//!                         | Step::Done(Output {result: SpfResult, ...})
//!                         v
//!              header::ReceivedSpf  ->  "Received-SPF: pass (...) ..."
//! ```
//!
//! Modules follow the RFC: [`record`] (sections 4.5, 4.6, 5, 6, 12),
//! [`macros`] (section 7), [`eval`] (sections 4, 5, 6), [`header`] (section
//! 9.1). Every bound is a named constant below; parsers never panic (see
//! [`fuzz`]).
//!
//! Deliberate choices where the RFC leaves room:
//! - a target name that is not a valid DNS name after macro expansion (empty
//!   or over-long label) matches nothing and costs no lookup (section 4.8
//!   leaves this undefined);
//! - void lookups (section 4.6.4) are counted for the lookup a term itself
//!   makes (`a`, `mx`'s MX query, `ptr`'s PTR query, `exists`, and the TXT
//!   query of `include` and `redirect`), not for the address lookups of MX
//!   hosts or PTR names;
//! - `ptr` validates only the reverse names that fall under its target.
#![forbid(unsafe_code)]

mod error;
pub mod eval;
pub mod header;
pub mod macros;
pub mod record;

pub use error::{Error, MacroError, RecordError, TermProblem};
pub use eval::{
    DnsAnswer, Evaluator, Identity, Options, Output, Query, QueryType, RData, Request, Resolver,
    SpfResult, Step, check_host_with,
};
pub use header::ReceivedSpf;
pub use record::Record;

/// Longest SPF record accepted, in bytes after joining the TXT strings
/// (RFC 7208 has no limit; a DNS answer over UDP rarely carries more than
/// 512 bytes, so this is generous).
pub const MAX_RECORD_LEN: usize = 8192;
/// Most terms in one record.
pub const MAX_TERMS: usize = 512;
/// DNS-querying mechanisms and modifiers per evaluation (RFC 7208 section
/// 4.6.4).
pub const MAX_DNS_TERMS: u32 = 10;
/// Default limit of void lookups (RFC 7208 section 4.6.4).
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// MX records an `mx` mechanism may have (RFC 7208 section 4.6.4).
pub const MAX_MX_NAMES: usize = 10;
/// Reverse names looked at by `ptr` and `%{p}` (RFC 7208 section 4.6.4).
pub const MAX_PTR_NAMES: usize = 10;
/// Longest domain name, and the length a macro-expanded name is truncated
/// to (RFC 7208 section 7.3).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest output of one macro-string expansion (explanations included).
pub const MAX_EXPANSION_LEN: usize = 4096;
/// Deepest `include`/`redirect` nesting; the ten-term limit stops any
/// policy well before this.
pub const MAX_DEPTH: usize = 16;
/// Most distinct DNS questions per evaluation: 10 terms, each at most an MX
/// query and 10 address queries, plus the `ptr`/`%{p}` and `exp` lookups.
pub const MAX_QUERIES: usize = 256;

/// Entry points for fuzz targets: each must never panic on any input.
pub mod fuzz {
    use crate::macros::{MacroContext, MacroString, MacroValues};
    use crate::{MacroError, Record};

    /// Parses arbitrary bytes as a record; when that succeeds, the record's
    /// text form must parse back to the same record.
    pub fn parse_record(data: &[u8]) {
        if let Ok(record) = Record::parse_bytes(data) {
            let again = Record::parse(&record.to_string());
            assert_eq!(again.as_ref(), Ok(&record), "display round trip");
        }
    }

    struct Fixed;
    impl MacroValues for Fixed {
        type Error = MacroError;
        fn value(&mut self, letter: crate::macros::MacroLetter) -> Result<String, MacroError> {
            Ok(format!("{}.x-y+z@example.com", letter.as_char()).repeat(8))
        }
    }

    /// Parses arbitrary bytes as an explanation macro string and expands it
    /// with fixed values; the output must respect the expansion bound.
    pub fn expand_macro(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for context in [MacroContext::Domain, MacroContext::Explanation] {
            if let Ok(ms) = MacroString::parse(text, context) {
                let out = ms.expand(&mut Fixed);
                assert!(out.is_ok_and(|s| s.len() <= crate::MAX_EXPANSION_LEN));
            }
        }
    }
}
