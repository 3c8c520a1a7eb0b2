//! Why an evaluation ended in `permerror` or `temperror`.
//!
//! SPF verdicts are data ([`SpfResult`](crate::SpfResult)); these types say
//! *why* a verdict is an error, sorted by who is at fault: the domain owner
//! who published the records ([`RecordError`], most of [`Error`]) or the DNS
//! path ([`Error::DnsTempFail`]).

use crate::{MAX_DNS_TERMS, MAX_MX_NAMES, MAX_RECORD_LEN, MAX_TERMS, MAX_VOID_LOOKUPS};

/// A syntax error in a macro string (RFC 7208 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacroError {
    /// A byte that is neither a macro-literal nor part of a macro.
    #[error("invalid character 0x{0:02x} in macro string")]
    InvalidCharacter(u8),
    /// `%` not followed by `{`, `%`, `_` or `-`.
    #[error("'%' must be followed by '{{', '%', '_' or '-'")]
    InvalidPercent,
    /// `%{x}` with an unknown letter.
    #[error("unknown macro letter 0x{0:02x}")]
    UnknownLetter(u8),
    /// `c`, `r` or `t` outside explanation text (RFC 7208 section 7.3).
    #[error("macro letter '{0}' is allowed only in explanation text")]
    ExplanationOnlyLetter(char),
    /// A digit transformer of zero (RFC 7208 section 7.3).
    #[error("the digit transformer must not be zero")]
    ZeroDigits,
    /// `%{` without its `}`.
    #[error("unterminated macro")]
    Unterminated,
}

/// What is wrong with one term (RFC 7208 section 12 grammar).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TermProblem {
    /// Not one of the eight mechanisms (section 5).
    #[error("unknown mechanism")]
    UnknownMechanism,
    /// Text after a mechanism that takes none, or a prefix length where
    /// none is allowed.
    #[error("unexpected argument")]
    UnexpectedArgument,
    /// `include` or `exists` without `:domain-spec`.
    #[error("missing domain-spec")]
    MissingDomain,
    /// A domain-spec that does not end in a macro or a valid top label
    /// (section 7.1).
    #[error("invalid domain-spec")]
    InvalidDomainSpec,
    /// A macro syntax error.
    #[error("invalid macro: {0}")]
    InvalidMacro(MacroError),
    /// A prefix length out of range or with a leading zero (section 5.6).
    #[error("invalid CIDR prefix length")]
    InvalidCidr,
    /// `ip4` or `ip6` without `:network`.
    #[error("missing network address")]
    MissingNetwork,
    /// Not a dotted-quad IPv4 address (section 5.6).
    #[error("invalid IPv4 network")]
    InvalidIp4,
    /// Not an IPv6 address (section 5.6).
    #[error("invalid IPv6 network")]
    InvalidIp6,
}

/// A malformed SPF record (RFC 7208 sections 4.5 and 4.6): a `permerror`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The text does not start with `v=spf1` and a space or its end.
    #[error("not an SPF version 1 record")]
    NotSpf,
    /// The record is not 7-bit ASCII (section 3.1).
    #[error("record is not 7-bit ASCII")]
    NonAscii,
    /// Longer than [`MAX_RECORD_LEN`].
    #[error("record longer than {MAX_RECORD_LEN} bytes")]
    TooLong,
    /// More than [`MAX_TERMS`] terms.
    #[error("record has more than {MAX_TERMS} terms")]
    TooManyTerms,
    /// A directive whose mechanism is not one of the eight (section 5).
    #[error("unknown mechanism `{0}`")]
    UnknownMechanism(String),
    /// A term that breaks the grammar.
    #[error("invalid term `{term}`: {problem}")]
    InvalidTerm {
        /// The term as written.
        term: String,
        /// What is wrong with it.
        problem: TermProblem,
    },
    /// `redirect` or `exp` given twice (section 6).
    #[error("modifier `{0}` appears more than once")]
    DuplicateModifier(String),
}

/// Why `check_host()` ended in `permerror` or `temperror`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SPF record of `domain` is malformed (permerror).
    #[error("SPF record of {domain}: {error}")]
    Record {
        /// Where the record was published.
        domain: String,
        /// What is wrong with it.
        error: RecordError,
    },
    /// More than one `v=spf1` record at `domain` (section 4.5, permerror).
    #[error("more than one SPF record at {domain}")]
    MultipleRecords {
        /// The domain.
        domain: String,
    },
    /// An `include` target has no SPF record (section 5.2, permerror).
    #[error("included domain {domain} has no SPF record")]
    IncludeWithoutRecord {
        /// The target domain.
        domain: String,
    },
    /// A `redirect` target has no SPF record (section 6.1, permerror).
    #[error("redirect target {domain} has no SPF record")]
    RedirectWithoutRecord {
        /// The target domain.
        domain: String,
    },
    /// More than [`MAX_DNS_TERMS`] terms that query DNS (section 4.6.4,
    /// permerror).
    #[error("more than {MAX_DNS_TERMS} DNS-querying terms")]
    TooManyDnsTerms,
    /// More than [`MAX_VOID_LOOKUPS`] lookups that found nothing (section
    /// 4.6.4, permerror).
    #[error("more than {MAX_VOID_LOOKUPS} void DNS lookups")]
    TooManyVoidLookups,
    /// An `mx` target with more than [`MAX_MX_NAMES`] MX records (section
    /// 4.6.4, permerror).
    #[error("{domain} has more than {MAX_MX_NAMES} MX records")]
    TooManyMxRecords {
        /// The `mx` target.
        domain: String,
    },
    /// The evaluation asked more DNS questions than any valid policy can
    /// need ([`MAX_QUERIES`](crate::MAX_QUERIES), permerror).
    #[error("too many DNS queries")]
    TooManyQueries,
    /// A DNS query failed: server failure or timeout (section 5,
    /// temperror).
    #[error("DNS lookup of {qtype} {name} failed")]
    DnsTempFail {
        /// The name queried.
        name: String,
        /// The record type queried.
        qtype: crate::QueryType,
    },
}

impl Error {
    /// Whether this is a `temperror` (the DNS path's fault) rather than a
    /// `permerror` (the domain owner's fault).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::DnsTempFail { .. })
    }
}
