//! DMARC evaluation (RFC 7489 sections 4.2, 6.6) as a sans-IO state
//! machine.
//!
//! Like `scop_spf::Evaluator`, the evaluation is a pure function of its
//! input and of the DNS answers given so far: [`Evaluator::step`] replays it
//! and stops at the first question without an answer. At most
//! [`MAX_QUERIES`](crate::MAX_QUERIES) distinct questions are asked (the
//! `_dmarc` names of policy discovery and one existence check for `np`).

use std::collections::HashMap;
use std::fmt;

use scop_dkim::DkimResult;
use scop_spf::SpfResult;

use crate::domain::{aligned, discovery_names, normalize, organizational_domain};
use crate::from::AuthorDomain;
use crate::record::{Alignment, Policy, Record, RecordError, starts_with_version};

/// A DNS record type DMARC asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    /// TXT: the policy record at `_dmarc.<domain>` (RFC 7489 section 6.1).
    Txt,
    /// A: whether the author domain exists, for `np` (RFC 9091 section
    /// 2.6: a name error means it does not).
    A,
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueryType::Txt => "TXT",
            QueryType::A => "A",
        })
    }
}

/// A DNS question: lower-case name, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The name.
    pub name: String,
    /// The type.
    pub qtype: QueryType,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.qtype)
    }
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    /// Records of the asked type. For TXT, one entry per record with its
    /// character-strings joined (RFC 7489 section 6.6.3 step 1); for A the
    /// contents are not looked at.
    Records(Vec<Vec<u8>>),
    /// The name exists without records of the type.
    NoData,
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// Timeout, SERVFAIL or any other transient failure.
    TempFail,
}

/// A synchronous DNS source for [`evaluate_with`].
pub trait Resolver {
    /// Answers one question.
    fn lookup(&self, query: &Query) -> DnsAnswer;
}

/// Which identity SPF authenticated (RFC 7489 section 3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpfScope {
    /// The MAIL FROM domain (`smtp.mailfrom`, report scope `mfrom`).
    MailFrom,
    /// The HELO name, used when MAIL FROM is null (report scope `helo`).
    Helo,
}

impl SpfScope {
    /// The aggregate report keyword (RFC 7489 appendix C).
    pub fn as_str(self) -> &'static str {
        match self {
            SpfScope::MailFrom => "mfrom",
            SpfScope::Helo => "helo",
        }
    }
}

/// An SPF verdict as DMARC sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpfAuth {
    /// The SPF result.
    pub result: SpfResult,
    /// The domain SPF checked (MAIL FROM domain, or HELO name).
    pub domain: String,
    /// Which identity that domain is.
    pub scope: SpfScope,
}

impl SpfAuth {
    /// From a `scop-spf` evaluation. A null MAIL FROM (or a HELO-identity
    /// request) gives the HELO scope, as RFC 7489 section 3.1.2 asks.
    pub fn from_spf(request: &scop_spf::Request, output: &scop_spf::Output) -> SpfAuth {
        let null = request.sender.trim_matches(['<', '>']).is_empty();
        let scope = if request.identity == scop_spf::Identity::Helo || null {
            SpfScope::Helo
        } else {
            SpfScope::MailFrom
        };
        SpfAuth {
            result: output.result,
            domain: output.domain.to_ascii_lowercase(),
            scope,
        }
    }
}

/// A DKIM verdict as DMARC sees it (one per signature).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DkimAuth {
    /// The DKIM result.
    pub result: DkimResult,
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: Option<String>,
}

impl DkimAuth {
    /// From a `scop-dkim` verdict; `None` for a signature unreadable up to
    /// its `d=`.
    pub fn from_dkim(output: &scop_dkim::DkimOutput) -> Option<DkimAuth> {
        Some(DkimAuth {
            result: output.result,
            domain: output.domain.as_ref()?.to_ascii_lowercase(),
            selector: output.selector.clone(),
        })
    }
}

/// What DMARC evaluates: the author domain and the SPF and DKIM verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The RFC5322.From domain ([`crate::author_domain`]).
    pub from: AuthorDomain,
    /// The SPF verdict, when SPF was checked.
    pub spf: Option<SpfAuth>,
    /// Every DKIM verdict.
    pub dkim: Vec<DkimAuth>,
}

/// Evaluation settings; randomness is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Policy discovery by the DMARCbis DNS tree walk instead of RFC 7489's
    /// author domain then organizational domain.
    pub tree_walk: bool,
    /// A uniformly random number in `0..100` for `pct` sampling (RFC 7489
    /// section 6.6.4): the policy applies when `sample < pct`.
    pub sample: u8,
}

impl Options {
    /// RFC 7489 discovery, with the given `pct` sample.
    pub fn with_sample(sample: u8) -> Options {
        Options {
            tree_walk: false,
            sample: sample % 100,
        }
    }

    /// The same options with the DMARCbis tree walk on or off.
    pub fn tree_walk(mut self, on: bool) -> Options {
        self.tree_walk = on;
        self
    }
}

impl Default for Options {
    /// RFC 7489 discovery, sample 0 (the policy always applies).
    fn default() -> Self {
        Options::with_sample(0)
    }
}

/// The DMARC result (RFC 8601 section 2.7.1 with RFC 7489 section 11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmarcResult {
    /// An aligned identifier passed.
    Pass,
    /// A policy exists and no aligned identifier passed.
    Fail,
    /// No policy published.
    None,
    /// A transient DNS error during policy discovery.
    TempError,
    /// The message cannot be evaluated (no usable From domain).
    PermError,
}

impl DmarcResult {
    /// The RFC 8601 keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::None => "none",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for DmarcResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the receiver should do (RFC 7489 section 6.6.4; appendix C
/// `DispositionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disposition {
    /// Deliver normally.
    None,
    /// Deliver to quarantine (spam folder).
    Quarantine,
    /// Reject.
    Reject,
}

impl Disposition {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::None => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }
}

impl From<Policy> for Disposition {
    fn from(p: Policy) -> Self {
        match p {
            Policy::None => Disposition::None,
            Policy::Quarantine => Disposition::Quarantine,
            Policy::Reject => Disposition::Reject,
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which policy tag applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// `p`: the record is the author domain's own.
    Domain,
    /// `sp`: the record was found at a parent (organizational) domain.
    Subdomain,
    /// `np`: found at a parent, and the author domain does not exist.
    NonExistent,
}

/// Why the result is `none`, `temperror` or `permerror`, or what was odd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The message has no From field, or no address in it.
    #[error("no RFC5322.From address")]
    NoFrom,
    /// The From addresses have no usable domain (RFC 7489 section 6.6.1).
    #[error("invalid RFC5322.From domain {0:?}")]
    InvalidFrom(String),
    /// The From addresses name several domains (section 6.6.1).
    #[error("several RFC5322.From domains: {}", .0.join(", "))]
    SeveralFromDomains(Vec<String>),
    /// A `_dmarc` query failed transiently.
    #[error("DNS temporary failure for {0}")]
    DnsTempFail(String),
    /// Several DMARC records at one name (section 6.6.3 step 5).
    #[error("several DMARC records at {0}")]
    SeveralRecords(String),
    /// The record at this name is unusable (section 6.6.3 step 6).
    #[error("invalid DMARC record at {0}: {1}")]
    InvalidRecord(String, RecordError),
    /// No DMARC record found.
    #[error("no DMARC record")]
    NoRecord,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DmarcOutput {
    /// The result.
    pub result: DmarcResult,
    /// What to do with the message (after `pct` sampling).
    pub disposition: Disposition,
    /// The author domain (`header.from`), when there is exactly one.
    pub header_from: Option<String>,
    /// Where the policy record was found.
    pub policy_domain: Option<String>,
    /// The author domain's organizational domain.
    pub organizational_domain: Option<String>,
    /// The policy record.
    pub record: Option<Record>,
    /// The requested policy that applied (`p`, `sp` or `np`), before
    /// sampling: what `policy.dmarc` reports (RFC 7489 section 11.2).
    pub policy: Option<Policy>,
    /// Which tag that policy came from.
    pub policy_source: Option<PolicySource>,
    /// The message failed, but `pct` sampling left it out of the policy
    /// (the disposition was lowered one step).
    pub sampled_out: bool,
    /// SPF passed for an aligned domain.
    pub spf_aligned: bool,
    /// A DKIM signature passed for an aligned domain; its `d=`.
    pub dkim_aligned: Option<String>,
    /// Why the result is not `pass`/`fail`, or what was odd.
    pub problem: Option<Problem>,
}

impl DmarcOutput {
    fn bare(result: DmarcResult, disposition: Disposition, problem: Problem) -> DmarcOutput {
        DmarcOutput {
            result,
            disposition,
            header_from: None,
            policy_domain: None,
            organizational_domain: None,
            record: None,
            policy: None,
            policy_source: None,
            sampled_out: false,
            spf_aligned: false,
            dkim_aligned: None,
            problem: Some(problem),
        }
    }

    /// Whether DKIM produced an aligned pass.
    pub fn dkim_pass(&self) -> bool {
        self.dkim_aligned.is_some()
    }
}

/// What the caller must do next.
// A `Step` is matched at once and never stored in bulk: boxing the output
// would only add an allocation per evaluation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer this question with [`Evaluator::answer`].
    Query(Query),
    /// The evaluation is over.
    Done(DmarcOutput),
}

/// The sans-IO DMARC evaluator.
///
/// ```
/// use scop_dmarc::{AuthorDomain, DkimAuth, DmarcResult, DnsAnswer, Evaluator, Input, Options, Step};
/// use scop_dkim::DkimResult;
///
/// let input = Input {
///     from: AuthorDomain::One("example.com".into()),
///     spf: None,
///     dkim: vec![DkimAuth { result: DkimResult::Pass, domain: "mail.example.com".into(), selector: None }],
/// };
/// let mut eval = Evaluator::new(input, Options::default());
/// let out = loop {
///     match eval.step() {
///         Step::Query(q) => {
///             let answer = if q.name == "_dmarc.example.com" {
///                 DnsAnswer::Records(vec![b"v=DMARC1; p=reject".to_vec()])
///             } else {
///                 DnsAnswer::NxDomain
///             };
///             eval.answer(q, answer);
///         }
///         Step::Done(out) => break out,
///     }
/// };
/// assert_eq!(out.result, DmarcResult::Pass);
/// ```
#[derive(Debug, Clone)]
pub struct Evaluator {
    input: Input,
    options: Options,
    cache: HashMap<Query, DnsAnswer>,
    done: Option<DmarcOutput>,
}

/// Runs a whole evaluation against a synchronous resolver.
pub fn evaluate_with<R: Resolver + ?Sized>(
    resolver: &R,
    input: Input,
    options: Options,
) -> DmarcOutput {
    let mut eval = Evaluator::new(input, options);
    loop {
        match eval.step() {
            Step::Query(q) => {
                let a = resolver.lookup(&q);
                eval.answer(q, a);
            }
            Step::Done(out) => return out,
        }
    }
}

impl Evaluator {
    /// Starts an evaluation.
    pub fn new(input: Input, options: Options) -> Evaluator {
        Evaluator {
            input,
            options,
            cache: HashMap::new(),
            done: None,
        }
    }

    /// Advances as far as the answers so far allow.
    pub fn step(&mut self) -> Step {
        if let Some(out) = &self.done {
            return Step::Done(out.clone());
        }
        match self.run() {
            Ok(out) => {
                self.done = Some(out.clone());
                Step::Done(out)
            }
            Err(q) => Step::Query(q),
        }
    }

    /// Supplies the answer to a question [`Evaluator::step`] asked.
    /// Answers beyond [`MAX_QUERIES`](crate::MAX_QUERIES) are dropped.
    pub fn answer(&mut self, query: Query, answer: DnsAnswer) {
        if self.cache.len() < crate::MAX_QUERIES {
            self.cache.insert(query, answer);
        }
    }

    fn ask(&self, name: String, qtype: QueryType) -> Result<&DnsAnswer, Query> {
        let q = Query { name, qtype };
        match self.cache.get(&q) {
            Some(a) => Ok(a),
            None if self.cache.len() >= crate::MAX_QUERIES => Ok(&DnsAnswer::TempFail),
            None => Err(q),
        }
    }

    /// Whether `identifier` aligns with the author domain `from` (whose
    /// organizational domain is `from_org`) in `mode`. With the tree walk
    /// on, the identifier's organizational domain comes from
    /// [`Evaluator::org_domain_walk`], otherwise from the public suffix
    /// list. `Ok(Err(name))` is a transient DNS failure at `name`.
    fn aligned_with(
        &self,
        from: &str,
        from_org: &str,
        identifier: &str,
        mode: Alignment,
    ) -> Result<Result<bool, String>, Query> {
        if !self.options.tree_walk || mode == Alignment::Strict || identifier == from {
            return Ok(Ok(aligned(from, identifier, mode)));
        }
        Ok(self.org_domain_walk(identifier)?.map(|org| org == from_org))
    }

    /// The organizational domain of `name` by the DMARCbis tree walk
    /// (section 4.10.2): the `_dmarc` records from `name` up to its last
    /// label are looked at in order; the first with `psd=n` names the
    /// organizational domain; the first with `psd=y`, other than the one
    /// at `name` itself, makes the name one label below it the
    /// organizational domain; otherwise the record with the fewest labels
    /// does, and without any record `name` is its own. Unusable records
    /// (invalid, or several at one name) are passed over. `Ok(Err(name))`
    /// is a transient DNS failure at `name`.
    fn org_domain_walk(&self, name: &str) -> Result<Result<String, String>, Query> {
        let names = discovery_names(name, true);
        let mut fewest = None;
        for (i, candidate) in names.iter().enumerate() {
            let dmarc_name = format!("_dmarc.{candidate}");
            let record = match self.ask(dmarc_name.clone(), QueryType::Txt)? {
                DnsAnswer::TempFail => return Ok(Err(dmarc_name)),
                DnsAnswer::NxDomain | DnsAnswer::NoData => continue,
                DnsAnswer::Records(r) => usable_record(r),
            };
            let Some(record) = record else { continue };
            match record.psd {
                Some(false) => return Ok(Ok(candidate.clone())),
                Some(true) if i > 0 => return Ok(Ok(one_label_below(name, candidate))),
                _ => fewest = Some(candidate.clone()),
            }
        }
        Ok(Ok(fewest.unwrap_or_else(|| name.to_string())))
    }

    fn run(&self) -> Result<DmarcOutput, Query> {
        // RFC 7489 section 6.6.1: one author domain, or a permerror (our
        // choice: reject, a message without a single From domain is not a
        // valid RFC 5322 message).
        let from = match &self.input.from {
            AuthorDomain::One(d) => match normalize(d) {
                Some(d) => d,
                None => {
                    return Ok(DmarcOutput::bare(
                        DmarcResult::PermError,
                        Disposition::Reject,
                        Problem::InvalidFrom(d.clone()),
                    ));
                }
            },
            AuthorDomain::None => {
                return Ok(DmarcOutput::bare(
                    DmarcResult::PermError,
                    Disposition::Reject,
                    Problem::NoFrom,
                ));
            }
            AuthorDomain::Invalid(d) => {
                return Ok(DmarcOutput::bare(
                    DmarcResult::PermError,
                    Disposition::Reject,
                    Problem::InvalidFrom(d.clone()),
                ));
            }
            AuthorDomain::Several(ds) => {
                return Ok(DmarcOutput::bare(
                    DmarcResult::PermError,
                    Disposition::Reject,
                    Problem::SeveralFromDomains(ds.clone()),
                ));
            }
        };
        let mut out = DmarcOutput::bare(DmarcResult::None, Disposition::None, Problem::NoRecord);
        out.header_from = Some(from.clone());
        let org = if self.options.tree_walk {
            match self.org_domain_walk(&from)? {
                Ok(org) => org,
                Err(name) => return Ok(temp_error(out, name)),
            }
        } else {
            organizational_domain(&from)
        };
        out.organizational_domain = Some(org.clone());

        // Policy discovery (section 6.6.3, or the DMARCbis tree walk).
        let mut found = None;
        for name in discovery_names(&from, self.options.tree_walk) {
            let dmarc_name = format!("_dmarc.{name}");
            let records = match self.ask(dmarc_name.clone(), QueryType::Txt)? {
                DnsAnswer::TempFail => {
                    out.result = DmarcResult::TempError;
                    out.problem = Some(Problem::DnsTempFail(dmarc_name));
                    return Ok(out);
                }
                DnsAnswer::NxDomain | DnsAnswer::NoData => continue,
                DnsAnswer::Records(r) => r,
            };
            let candidates: Vec<&Vec<u8>> = records
                .iter()
                .filter(|r| std::str::from_utf8(r).is_ok_and(starts_with_version))
                .collect();
            match candidates.as_slice() {
                [] => continue,
                [one] => match Record::parse_bytes(one) {
                    Ok(rec) => {
                        found = Some((name, rec));
                        break;
                    }
                    Err(e) => {
                        out.problem = Some(Problem::InvalidRecord(name, e));
                        return Ok(out);
                    }
                },
                _ => {
                    out.problem = Some(Problem::SeveralRecords(name));
                    return Ok(out);
                }
            }
        }
        let Some((policy_domain, record)) = found else {
            return Ok(out);
        };
        out.problem = None;

        // Identifier alignment (section 3.1; DMARCbis section 4.4 when the
        // organizational domains come from the tree walk).
        let spf_domain = self
            .input
            .spf
            .as_ref()
            .filter(|spf| spf.result == SpfResult::Pass)
            .and_then(|spf| normalize(&spf.domain));
        out.spf_aligned = match spf_domain {
            Some(d) => match self.aligned_with(&from, &org, &d, record.aspf)? {
                Ok(yes) => yes,
                Err(name) => return Ok(temp_error(out, name)),
            },
            None => false,
        };
        let passing: Vec<String> = self
            .input
            .dkim
            .iter()
            .filter(|d| d.result == DkimResult::Pass)
            .filter_map(|d| normalize(&d.domain))
            .collect();
        for d in passing {
            match self.aligned_with(&from, &org, &d, record.adkim)? {
                Ok(true) => {
                    out.dkim_aligned = Some(d);
                    break;
                }
                Ok(false) => {}
                Err(name) => return Ok(temp_error(out, name)),
            }
        }

        // Policy selection (section 6.6.4; `np` from RFC 9091 section 4.1).
        let (policy, source) = if policy_domain == from {
            (record.policy, PolicySource::Domain)
        } else if let Some(np) = record.nonexistent_policy {
            match self.ask(from.clone(), QueryType::A)? {
                DnsAnswer::NxDomain => (np, PolicySource::NonExistent),
                _ => (record.effective_subdomain_policy(), PolicySource::Subdomain),
            }
        } else {
            (record.effective_subdomain_policy(), PolicySource::Subdomain)
        };
        out.policy = Some(policy);
        out.policy_source = Some(source);
        out.policy_domain = Some(policy_domain);

        if out.spf_aligned || out.dkim_aligned.is_some() {
            out.result = DmarcResult::Pass;
            out.disposition = Disposition::None;
        } else {
            out.result = DmarcResult::Fail;
            let subject = self.options.sample < record.pct;
            out.disposition = match (policy, subject) {
                (p, true) => p.into(),
                // Section 6.6.4: outside the sample, reject becomes
                // quarantine and quarantine becomes none.
                (Policy::Reject, false) => Disposition::Quarantine,
                (_, false) => Disposition::None,
            };
            out.sampled_out = !subject && policy != Policy::None;
        }
        out.record = Some(record);
        Ok(out)
    }
}

/// `out` turned into a `temperror` for a transient failure at `name`.
fn temp_error(mut out: DmarcOutput, name: String) -> DmarcOutput {
    out.result = DmarcResult::TempError;
    out.problem = Some(Problem::DnsTempFail(name));
    out
}

/// The one valid DMARC record among a name's TXT records, if there is
/// exactly one.
fn usable_record(records: &[Vec<u8>]) -> Option<Record> {
    let mut candidates = records
        .iter()
        .filter(|r| std::str::from_utf8(r).is_ok_and(starts_with_version));
    let one = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    Record::parse_bytes(one).ok()
}

/// The suffix of `name` that has one label more than its ancestor
/// `ancestor` (both normalized, `ancestor` a proper suffix of `name`).
fn one_label_below(name: &str, ancestor: &str) -> String {
    let labels: Vec<&str> = name.split('.').collect();
    let keep = (ancestor.split('.').count() + 1).min(labels.len());
    labels[labels.len() - keep..].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zone(Vec<(&'static str, DnsAnswer)>);

    impl Resolver for Zone {
        fn lookup(&self, q: &Query) -> DnsAnswer {
            let key = match q.qtype {
                QueryType::Txt => q.name.clone(),
                QueryType::A => format!("A {}", q.name),
            };
            self.0
                .iter()
                .find(|(n, _)| *n == key)
                .map_or(DnsAnswer::NxDomain, |(_, a)| a.clone())
        }
    }

    fn txt(s: &str) -> DnsAnswer {
        DnsAnswer::Records(vec![s.as_bytes().to_vec()])
    }

    fn input(from: &str, spf: Option<(&str, SpfResult)>, dkim: &[(&str, DkimResult)]) -> Input {
        Input {
            from: AuthorDomain::One(from.into()),
            spf: spf.map(|(d, r)| SpfAuth {
                result: r,
                domain: d.into(),
                scope: SpfScope::MailFrom,
            }),
            dkim: dkim
                .iter()
                .map(|(d, r)| DkimAuth {
                    result: *r,
                    domain: (*d).into(),
                    selector: Some("s".into()),
                })
                .collect(),
        }
    }

    fn run(zone: &Zone, input: Input, options: Options) -> DmarcOutput {
        evaluate_with(zone, input, options)
    }

    #[test]
    fn no_record_is_none() {
        let z = Zone(vec![]);
        let out = run(&z, input("example.com", None, &[]), Options::default());
        assert_eq!(out.result, DmarcResult::None);
        assert_eq!(out.disposition, Disposition::None);
        assert_eq!(out.problem, Some(Problem::NoRecord));
    }

    #[test]
    fn relaxed_and_strict_alignment() {
        let z = Zone(vec![("_dmarc.example.com", txt("v=DMARC1; p=reject"))]);
        let i = input(
            "example.com",
            Some(("bounce.example.com", SpfResult::Pass)),
            &[],
        );
        let out = run(&z, i.clone(), Options::default());
        assert_eq!(out.result, DmarcResult::Pass);
        assert!(out.spf_aligned);
        let z = Zone(vec![(
            "_dmarc.example.com",
            txt("v=DMARC1; p=reject; aspf=s"),
        )]);
        let out = run(&z, i, Options::default());
        assert_eq!(out.result, DmarcResult::Fail);
        assert_eq!(out.disposition, Disposition::Reject);
        assert_eq!(out.policy, Some(Policy::Reject));
    }

    #[test]
    fn dkim_alignment() {
        let z = Zone(vec![(
            "_dmarc.example.com",
            txt("v=DMARC1; p=quarantine; adkim=s"),
        )]);
        let i = input(
            "example.com",
            Some(("example.net", SpfResult::Pass)),
            &[
                ("mail.example.com", DkimResult::Pass),
                ("example.com", DkimResult::Fail),
            ],
        );
        let out = run(&z, i, Options::default());
        assert_eq!(out.result, DmarcResult::Fail);
        assert_eq!(out.disposition, Disposition::Quarantine);
        let i = input("example.com", None, &[("example.com", DkimResult::Pass)]);
        let out = run(&z, i, Options::default());
        assert_eq!(out.dkim_aligned.as_deref(), Some("example.com"));
        assert_eq!(out.result, DmarcResult::Pass);
    }

    #[test]
    fn subdomain_policy_from_org_domain() {
        let z = Zone(vec![
            ("_dmarc.example.com", txt("v=DMARC1; p=none; sp=reject")),
            ("A sub.example.com", DnsAnswer::Records(vec![vec![]])),
        ]);
        let out = run(&z, input("sub.example.com", None, &[]), Options::default());
        assert_eq!(out.result, DmarcResult::Fail);
        assert_eq!(out.policy_domain.as_deref(), Some("example.com"));
        assert_eq!(out.policy_source, Some(PolicySource::Subdomain));
        assert_eq!(out.disposition, Disposition::Reject);
        let out = run(&z, input("example.com", None, &[]), Options::default());
        assert_eq!(out.disposition, Disposition::None);
        assert_eq!(out.policy_source, Some(PolicySource::Domain));
    }

    #[test]
    fn nonexistent_subdomain_policy() {
        let z = Zone(vec![
            (
                "_dmarc.example.com",
                txt("v=DMARC1; p=none; sp=quarantine; np=reject"),
            ),
            ("A real.example.com", DnsAnswer::NoData),
        ]);
        let out = run(
            &z,
            input("ghost.example.com", None, &[]),
            Options::default(),
        );
        assert_eq!(out.policy_source, Some(PolicySource::NonExistent));
        assert_eq!(out.disposition, Disposition::Reject);
        let out = run(&z, input("real.example.com", None, &[]), Options::default());
        assert_eq!(out.policy_source, Some(PolicySource::Subdomain));
        assert_eq!(out.disposition, Disposition::Quarantine);
    }

    #[test]
    fn pct_sampling() {
        let z = Zone(vec![(
            "_dmarc.example.com",
            txt("v=DMARC1; p=reject; pct=30"),
        )]);
        let i = input("example.com", None, &[]);
        let inside = run(&z, i.clone(), Options::with_sample(29));
        assert_eq!(inside.disposition, Disposition::Reject);
        assert!(!inside.sampled_out);
        let outside = run(&z, i.clone(), Options::with_sample(30));
        assert_eq!(outside.disposition, Disposition::Quarantine);
        assert!(outside.sampled_out);
        let z = Zone(vec![(
            "_dmarc.example.com",
            txt("v=DMARC1; p=quarantine; pct=0"),
        )]);
        let out = run(&z, i, Options::with_sample(0));
        assert_eq!(out.disposition, Disposition::None);
        assert_eq!(out.policy, Some(Policy::Quarantine));
    }

    #[test]
    fn temp_error_and_several_records() {
        let z = Zone(vec![("_dmarc.example.com", DnsAnswer::TempFail)]);
        let out = run(&z, input("example.com", None, &[]), Options::default());
        assert_eq!(out.result, DmarcResult::TempError);
        let z = Zone(vec![(
            "_dmarc.example.com",
            DnsAnswer::Records(vec![
                b"v=DMARC1; p=reject".to_vec(),
                b"v=DMARC1; p=none".to_vec(),
            ]),
        )]);
        let out = run(&z, input("example.com", None, &[]), Options::default());
        assert_eq!(out.result, DmarcResult::None);
        assert!(matches!(out.problem, Some(Problem::SeveralRecords(_))));
    }

    #[test]
    fn non_dmarc_txt_records_are_skipped() {
        let z = Zone(vec![(
            "_dmarc.example.com",
            DnsAnswer::Records(vec![
                b"v=spf1 -all".to_vec(),
                b"v=DMARC1; p=quarantine".to_vec(),
            ]),
        )]);
        let out = run(&z, input("example.com", None, &[]), Options::default());
        assert_eq!(out.disposition, Disposition::Quarantine);
    }

    #[test]
    fn invalid_record_stops_discovery() {
        let z = Zone(vec![
            ("_dmarc.a.example.com", txt("v=DMARC1; p=bogus")),
            ("_dmarc.example.com", txt("v=DMARC1; p=reject")),
        ]);
        let out = run(&z, input("a.example.com", None, &[]), Options::default());
        assert_eq!(out.result, DmarcResult::None);
        assert!(matches!(out.problem, Some(Problem::InvalidRecord(..))));
    }

    #[test]
    fn from_problems_are_permerror_reject() {
        let z = Zone(vec![]);
        for from in [
            AuthorDomain::None,
            AuthorDomain::Several(vec!["a.example".into(), "b.example".into()]),
            AuthorDomain::Invalid("[192.0.2.1]".into()),
            AuthorDomain::One("bad..name".into()),
        ] {
            let i = Input {
                from,
                spf: None,
                dkim: vec![],
            };
            let out = run(&z, i, Options::default());
            assert_eq!(out.result, DmarcResult::PermError);
            assert_eq!(out.disposition, Disposition::Reject);
        }
    }

    #[test]
    fn tree_walk_finds_intermediate_record() {
        let z = Zone(vec![
            ("_dmarc.b.example.com", txt("v=DMARC1; p=quarantine")),
            ("_dmarc.example.com", txt("v=DMARC1; p=none")),
            ("A a.b.example.com", DnsAnswer::NoData),
        ]);
        let i = input("a.b.example.com", None, &[]);
        let classic = run(&z, i.clone(), Options::default());
        assert_eq!(classic.policy_domain.as_deref(), Some("example.com"));
        assert_eq!(classic.disposition, Disposition::None);
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.policy_domain.as_deref(), Some("b.example.com"));
        assert_eq!(bis.disposition, Disposition::Quarantine);
    }

    #[test]
    fn tree_walk_org_domain_with_psd_n() {
        // `b.example.com` declares itself an organizational domain: a
        // signature from a sibling under `example.com` no longer aligns.
        let z = Zone(vec![
            ("_dmarc.b.example.com", txt("v=DMARC1; p=reject; psd=n")),
            ("_dmarc.example.com", txt("v=DMARC1; p=none")),
        ]);
        let i = input(
            "a.b.example.com",
            None,
            &[("c.b.example.com", DkimResult::Pass)],
        );
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.organizational_domain.as_deref(), Some("b.example.com"));
        assert_eq!(bis.result, DmarcResult::Pass);
        let i = input(
            "a.b.example.com",
            None,
            &[("x.example.com", DkimResult::Pass)],
        );
        let classic = run(&z, i.clone(), Options::default());
        assert_eq!(
            classic.result,
            DmarcResult::Pass,
            "the PSL says example.com"
        );
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.result, DmarcResult::Fail);
        assert_eq!(bis.disposition, Disposition::Reject);
    }

    #[test]
    fn tree_walk_org_domain_below_a_psd() {
        // `hosting.test` publishes psd=y: each customer's name one label
        // below it is its own organizational domain, where the public
        // suffix list (which does not know the name) would join them all.
        let z = Zone(vec![
            ("_dmarc.hosting.test", txt("v=DMARC1; p=reject; psd=y")),
            ("_dmarc.alice.hosting.test", txt("v=DMARC1; p=reject")),
        ]);
        let from = "mail.alice.hosting.test";
        let i = input(from, Some(("bob.hosting.test", SpfResult::Pass)), &[]);
        let classic = run(&z, i.clone(), Options::default());
        assert!(classic.spf_aligned, "PSL: one organizational domain");
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(
            bis.organizational_domain.as_deref(),
            Some("alice.hosting.test")
        );
        assert!(!bis.spf_aligned);
        assert_eq!(bis.result, DmarcResult::Fail);
        let i = input(
            from,
            Some(("bounce.alice.hosting.test", SpfResult::Pass)),
            &[],
        );
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert!(bis.spf_aligned);
        assert_eq!(bis.result, DmarcResult::Pass);
        // psd=y at the walk's own starting name is an ordinary record.
        let i = input(
            "hosting.test",
            None,
            &[("x.hosting.test", DkimResult::Pass)],
        );
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.organizational_domain.as_deref(), Some("hosting.test"));
        assert_eq!(bis.result, DmarcResult::Fail, "x.hosting.test is its own");
    }

    #[test]
    fn tree_walk_org_domain_is_the_fewest_labels_record() {
        let z = Zone(vec![
            ("_dmarc.sub.example.com", txt("v=DMARC1; p=quarantine")),
            ("_dmarc.example.com", txt("v=DMARC1; p=none")),
        ]);
        let i = input(
            "x.sub.example.com",
            None,
            &[("example.com", DkimResult::Pass)],
        );
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.policy_domain.as_deref(), Some("sub.example.com"));
        assert_eq!(bis.organizational_domain.as_deref(), Some("example.com"));
        assert_eq!(bis.dkim_aligned.as_deref(), Some("example.com"));
        // psd=y deeper in a long name: the suffix one label longer.
        assert_eq!(
            one_label_below("a.b.c.example.com", "example.com"),
            "c.example.com"
        );
    }

    #[test]
    fn tree_walk_temp_failure_in_org_walk_is_temperror() {
        let z = Zone(vec![
            ("_dmarc.example.com", txt("v=DMARC1; p=reject")),
            ("_dmarc.other.example.com", DnsAnswer::TempFail),
        ]);
        let i = input(
            "example.com",
            None,
            &[("other.example.com", DkimResult::Pass)],
        );
        let bis = run(&z, i.clone(), Options::default().tree_walk(true));
        assert_eq!(bis.result, DmarcResult::TempError);
        assert_eq!(
            bis.problem,
            Some(Problem::DnsTempFail("_dmarc.other.example.com".into()))
        );
        // Strict alignment needs no walk.
        let z = Zone(vec![
            ("_dmarc.example.com", txt("v=DMARC1; p=reject; adkim=s")),
            ("_dmarc.other.example.com", DnsAnswer::TempFail),
        ]);
        let bis = run(&z, i, Options::default().tree_walk(true));
        assert_eq!(bis.result, DmarcResult::Fail);
    }

    #[test]
    fn helo_scope_from_null_mail_from() {
        let req = scop_spf::Request::mail_from("192.0.2.1".parse().unwrap(), "", "mx.example.com");
        let z = Zone(vec![("mx.example.com", txt("v=spf1 ip4:192.0.2.1 -all"))]);
        struct Spf<'a>(&'a Zone);
        impl scop_spf::Resolver for Spf<'_> {
            fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
                match self.0.lookup(&Query {
                    name: q.name.clone(),
                    qtype: QueryType::Txt,
                }) {
                    DnsAnswer::Records(r) if q.qtype == scop_spf::QueryType::Txt => {
                        scop_spf::DnsAnswer::Records(
                            r.into_iter()
                                .map(|t| scop_spf::RData::Txt(vec![t]))
                                .collect(),
                        )
                    }
                    _ => scop_spf::DnsAnswer::NxDomain,
                }
            }
        }
        let out = scop_spf::check_host_with(&Spf(&z), req.clone(), scop_spf::Options::default());
        let auth = SpfAuth::from_spf(&req, &out);
        assert_eq!(auth.scope, SpfScope::Helo);
        assert_eq!(auth.domain, "mx.example.com");
        assert_eq!(auth.result, SpfResult::Pass);
    }

    #[test]
    fn step_asks_each_name_once() {
        let mut e = Evaluator::new(input("a.example.com", None, &[]), Options::default());
        let Step::Query(q1) = e.step() else { panic!() };
        assert_eq!(q1.name, "_dmarc.a.example.com");
        e.answer(q1, DnsAnswer::NxDomain);
        let Step::Query(q2) = e.step() else { panic!() };
        assert_eq!(q2.name, "_dmarc.example.com");
        e.answer(q2, DnsAnswer::NoData);
        assert!(matches!(e.step(), Step::Done(o) if o.result == DmarcResult::None));
    }
}
