//! DMARC (RFC 7489), identifier alignment, `Authentication-Results`
//! (RFC 8601) and aggregate reports, sans-IO.
//!
//! The crate does no I/O: DNS answers, the SPF and DKIM verdicts and the
//! random number for `pct` sampling are inputs; the verdict and the
//! disposition come back as data ([`DmarcOutput`]).
//!
//! ```text
//!   message bytes --author_domain()--> AuthorDomain        RFC 7489 6.6.1
//!   scop_spf::Output  --SpfAuth::from_spf-->  \
//!   scop_dkim::DkimOutput --DkimAuth::from_dkim--> Input
//!                                              |
//!                   +--------------------------v---------+  Step::Query(q)   +--------+
//!                   | Evaluator                          | ----------------> | caller |
//!                   |  discovery: _dmarc.<from>, then    |                   |  DNS   |
//!                   |   _dmarc.<org domain> (6.6.3) or   | <---------------- |        |
//!                   |   the DMARCbis tree walk           |  answer(q, a)     +--------+
//!                   |  Record::parse (6.3, 6.4)          |
//!                   |  alignment (3.1, PSL org domain)   |
//!                   |  p / sp / np, pct sample (6.6.4)   |
//!                   +------------------+-----------------+
//!                                      | Step::Done(DmarcOutput {result, disposition, ..})
//!                 +--------------------+---------------------+
//!                 v                                          v
//!   AuthenticationResults (RFC 8601)            ReportBuilder::add(Row)
//!   "dmarc=fail (p=reject dis=reject)            -> to_xml()  (RFC 7489 appendix C)
//!    header.from=example.com policy.dmarc=reject"
//! ```
//!
//! Modules: [`record`] (RFC 7489 sections 6.3, 6.4, 6.6.3), [`domain`]
//! (sections 3.1, 3.2), [`eval`] (sections 4.2, 6.6), [`from`] (section
//! 6.6.1), [`authres`] (RFC 8601), [`report`] (section 7.2, appendix C),
//! [`failure`] (failure reports: section 7.3, RFC 6591).
//!
//! Choices where the RFC leaves room (each is tested):
//! - several From addresses with distinct domains, none, or one without a
//!   usable domain: `permerror`, disposition `reject` ([`AuthorDomain`]);
//! - several DMARC records at one name, or an invalid one: no DMARC
//!   processing (`none`), as section 6.6.3 steps 5 and 6 say; discovery
//!   does not go on to the organizational domain then;
//! - `np` (RFC 9091, DMARCbis) is honoured in both discovery modes; the
//!   author domain "does not exist" when its A query is a name error;
//! - with the DMARCbis tree walk on, the walk chooses the policy record
//!   and also finds the organizational domains used for relaxed alignment
//!   (`psd=n`, `psd=y`, else the record with the fewest labels), for the
//!   author domain and each identifier; without it, the public suffix list
//!   does. A transient DNS failure during those walks is a `temperror`.
#![forbid(unsafe_code)]

pub mod authres;
pub mod domain;
pub mod eval;
pub mod failure;
pub mod from;
pub mod record;
pub mod report;

pub use authres::{AuthResError, AuthenticationResults, MethodResult, Property};
pub use domain::{aligned, organizational_domain};
pub use eval::{
    Disposition, DkimAuth, DmarcOutput, DmarcResult, DnsAnswer, Evaluator, Input, Options,
    PolicySource, Problem, Query, QueryType, Resolver, SpfAuth, SpfScope, Step, evaluate_with,
};
pub use failure::{DeliveryResult, FailureReport, should_report};
pub use from::{AuthorDomain, author_domain};
pub use record::{
    Alignment, FailureOptions, Policy, Record, RecordError, RecordWarning, ReportUri,
};
pub use report::{PolicyPublished, ReportBuilder, ReportMetadata, Row};

/// Longest DMARC record accepted, in bytes after joining TXT strings.
pub const MAX_RECORD_LEN: usize = 4096;
/// Most tags in one record.
pub const MAX_TAGS: usize = 64;
/// Most URIs kept in `rua` or `ruf`.
pub const MAX_URIS: usize = 16;
/// Most distinct DNS questions per evaluation. RFC 7489 discovery needs at
/// most two TXT queries and one A query; the DMARCbis tree walk up to eight
/// for the author domain plus up to eight for each identifier whose
/// organizational domain it must find (shared ancestors are asked once).
/// A question beyond the bound is answered as a transient failure.
pub const MAX_QUERIES: usize = 40;
/// Most From addresses looked at.
pub const MAX_FROM_ADDRESSES: usize = 64;
/// Longest `Authentication-Results` value parsed.
pub const MAX_AUTHRES_LEN: usize = 64 * 1024;
/// Most results in one `Authentication-Results` field.
pub const MAX_RESULTS: usize = 64;
/// Most properties in one result.
pub const MAX_PROPERTIES: usize = 32;
/// Deepest nesting of comments parsed.
pub const MAX_COMMENT_DEPTH: usize = 16;
/// Most distinct rows in one aggregate report; further messages are
/// counted in an `<error>` element.
pub const MAX_REPORT_ROWS: usize = 100_000;

/// Evaluates DMARC for a raw message: finds its author domain, and runs
/// the [`Evaluator`] with `spf` and every verdict in `dkim` against
/// `resolver`. Returns the input used (for [`report::Row::new`]) and the
/// output.
pub fn check_message<R: Resolver + ?Sized>(
    resolver: &R,
    message: &[u8],
    spf: Option<SpfAuth>,
    dkim: &[scop_dkim::DkimOutput],
    options: Options,
) -> (Input, DmarcOutput) {
    let input = Input {
        from: author_domain(message),
        spf,
        dkim: dkim.iter().filter_map(DkimAuth::from_dkim).collect(),
    };
    let out = evaluate_with(resolver, input.clone(), options);
    (input, out)
}

/// Entry points for fuzz targets: each must never panic on any input.
pub mod fuzz {
    use crate::{AuthenticationResults, Record};

    /// Parses arbitrary bytes as a DMARC record; a record that parses must
    /// print to text that parses back to the same policy.
    pub fn parse_record(data: &[u8]) {
        if let Ok(record) = Record::parse_bytes(data) {
            let again = Record::parse(&record.to_string()).map(|mut r| {
                r.warnings.clear();
                r
            });
            let mut expected = record;
            expected.warnings.clear();
            assert_eq!(again, Ok(expected), "display round trip");
        }
    }

    /// Parses arbitrary bytes as an `Authentication-Results` value; a field
    /// that parses must re-emit to text that parses to the same field.
    pub fn parse_authentication_results(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(ar) = AuthenticationResults::parse(&text) {
            let again = AuthenticationResults::parse(&ar.to_string());
            assert_eq!(again.as_ref(), Ok(&ar), "re-emit round trip");
        }
    }
}
