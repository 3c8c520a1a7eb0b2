//! The `check_host()` function of RFC 7208 section 4 as a sans-IO state
//! machine.
//!
//! # How suspension works
//!
//! The evaluation is written as plain recursive code (`check_host` calls
//! itself for `include` and `redirect`) over a cache of DNS answers. When it
//! needs an answer that is not cached yet it stops with that question;
//! [`Evaluator::step`] hands the question to the caller, [`Evaluator::answer`]
//! stores the answer, and the next `step` runs the evaluation again from the
//! start, now further. Every run is a pure function of the request, the
//! options and the answers, so replays are deterministic, and the processing
//! limits of section 4.6.4 bound the number of distinct questions (see
//! [`MAX_QUERIES`]), so the replays cost at most a few hundred cheap passes
//! while the code keeps the shape of the RFC's prose.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::rc::Rc;

use crate::macros::{MacroContext, MacroLetter, MacroString, MacroValues};
use crate::record::{DomainSpec, DualCidr, Expansion, Mechanism, Qualifier, Record, is_spf_record};
use crate::{
    Error, MAX_DEPTH, MAX_DNS_TERMS, MAX_DOMAIN_LEN, MAX_LABEL_LEN, MAX_MX_NAMES, MAX_PTR_NAMES,
    MAX_QUERIES, MAX_VOID_LOOKUPS,
};

/// A DNS record type SPF asks for (RFC 7208 sections 4.4 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryType {
    /// TXT: SPF records and explanations.
    Txt,
    /// A: IPv4 addresses (`a`, `mx`, `ptr`, `exists`).
    A,
    /// AAAA: IPv6 addresses (`a`, `mx`, `ptr`).
    Aaaa,
    /// MX: mail exchangers (`mx`).
    Mx,
    /// PTR: reverse names (`ptr`, `%{p}`).
    Ptr,
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Txt => "TXT",
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Mx => "MX",
            Self::Ptr => "PTR",
        })
    }
}

/// A DNS question: a lower-case, fully qualified name without the trailing
/// dot, and a type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The name, lower case, no trailing dot, valid per RFC 1035 lengths.
    pub name: String,
    /// The record type.
    pub qtype: QueryType,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.qtype)
    }
}

/// One record of an answer. Records of a type other than the question's
/// are ignored, so a resolver may pass whole answer sections through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// The character-strings of one TXT record, in order (they are joined
    /// without separator, RFC 7208 section 3.3).
    Txt(Vec<Vec<u8>>),
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger; an empty or `.` exchange is a null MX (RFC 7505).
    Mx {
        /// Preference (lower first).
        preference: u16,
        /// Exchange host name.
        exchange: String,
    },
    /// A reverse name.
    Ptr(String),
}

/// The answer to a [`Query`] (CNAME chains already followed by the
/// resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    /// RCODE 0 with records.
    Records(Vec<RData>),
    /// RCODE 3, "Name Error": the name does not exist.
    NxDomain,
    /// RCODE 0 without records of the type.
    NoData,
    /// A server failure, a timeout, or any other error: `temperror`.
    TempFail,
}

/// Which identity is checked (RFC 7208 section 2.3 and 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The MAIL FROM identity (`identity=mailfrom`).
    MailFrom,
    /// The HELO identity (`identity=helo`).
    Helo,
}

impl Identity {
    /// The `identity=` value of `Received-SPF` (RFC 7208 section 9.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MailFrom => "mailfrom",
            Self::Helo => "helo",
        }
    }
}

/// The arguments of `check_host()` (RFC 7208 section 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `<ip>`: the SMTP client's address. An IPv4-mapped IPv6 address is
    /// evaluated as IPv4 (section 5, last paragraph of the introduction).
    pub ip: IpAddr,
    /// The MAIL FROM reverse-path as given (may be empty for bounces).
    pub sender: String,
    /// The HELO/EHLO argument.
    pub helo: String,
    /// Which identity is checked.
    pub identity: Identity,
}

impl Request {
    /// A MAIL FROM check (section 2.4). A null reverse-path is checked as
    /// `postmaster@<helo>`.
    pub fn mail_from(ip: IpAddr, sender: impl Into<String>, helo: impl Into<String>) -> Self {
        Self {
            ip,
            sender: sender.into(),
            helo: helo.into(),
            identity: Identity::MailFrom,
        }
    }

    /// A HELO check (section 2.3): `<domain>` is the HELO name and
    /// `<sender>` is `postmaster@<helo>`.
    pub fn helo(ip: IpAddr, helo: impl Into<String>) -> Self {
        Self {
            ip,
            sender: String::new(),
            helo: helo.into(),
            identity: Identity::Helo,
        }
    }

    /// The effective `<sender>`, local-part and domain (section 4.3: a
    /// missing local-part becomes `postmaster`).
    fn sender_parts(&self) -> (String, String) {
        let sender = match self.identity {
            Identity::Helo => "",
            Identity::MailFrom => self.sender.as_str(),
        };
        let sender = sender.trim_start_matches('<').trim_end_matches('>');
        if sender.is_empty() {
            return ("postmaster".into(), self.helo.clone());
        }
        match sender.rsplit_once('@') {
            Some(("", domain)) => ("postmaster".into(), domain.into()),
            Some((local, domain)) => (local.into(), domain.into()),
            None => ("postmaster".into(), sender.into()),
        }
    }

    /// The `<domain>` that is checked.
    pub fn domain(&self) -> String {
        self.sender_parts().1
    }
}

/// Inputs that are not part of the request: time, the receiving host, and
/// local policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seconds since the Unix epoch, for the `t` macro.
    pub now_unix: u64,
    /// The receiving host's domain name, for the `r` macro and
    /// `Received-SPF` (RFC 7208 section 7.3: `unknown` when not known).
    pub receiver_host: String,
    /// Explanation for a `fail` whose record has no usable `exp=`: a macro
    /// string in explanation syntax (used as plain text if it does not
    /// parse). `None` leaves the explanation empty.
    pub default_explanation: Option<String>,
    /// Void-lookup limit (section 4.6.4 recommends two, which is the
    /// default).
    pub max_void_lookups: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            now_unix: 0,
            receiver_host: "unknown".into(),
            default_explanation: None,
            max_void_lookups: MAX_VOID_LOOKUPS,
        }
    }
}

/// An SPF result (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// No syntactically valid domain or no SPF record (2.6.1).
    None,
    /// The domain owner makes no assertion (2.6.2).
    Neutral,
    /// The client is authorized (2.6.3).
    Pass,
    /// The client is not authorized (2.6.4).
    Fail,
    /// Probably not authorized (2.6.5).
    SoftFail,
    /// A transient DNS error (2.6.6).
    TempError,
    /// The published records could not be interpreted (2.6.7).
    PermError,
}

impl SpfResult {
    /// The result's name as RFC 7208 writes it in `Received-SPF`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Neutral => "neutral",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Qualifier> for SpfResult {
    fn from(q: Qualifier) -> Self {
        match q {
            Qualifier::Pass => Self::Pass,
            Qualifier::Fail => Self::Fail,
            Qualifier::SoftFail => Self::SoftFail,
            Qualifier::Neutral => Self::Neutral,
        }
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The verdict.
    pub result: SpfResult,
    /// The `<domain>` that was checked.
    pub domain: String,
    /// For `fail`: the expanded `exp=` text (section 6.2), else the
    /// expanded [`Options::default_explanation`].
    pub explanation: Option<String>,
    /// The directive that decided the result, as text (for a match inside
    /// an `include`, the `include` directive itself).
    pub mechanism: Option<String>,
    /// Why the result is `permerror` or `temperror`.
    pub problem: Option<Error>,
    /// DNS-querying terms evaluated (at most [`MAX_DNS_TERMS`] unless the
    /// result is the permerror for exceeding it).
    pub dns_terms: u32,
    /// Void lookups seen (section 4.6.4).
    pub void_lookups: u32,
    /// Distinct DNS questions answered.
    pub queries: u32,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer this question with [`Evaluator::answer`].
    Query(Query),
    /// The evaluation is over.
    Done(Output),
}

/// A synchronous DNS source for [`check_host_with`].
pub trait Resolver {
    /// Answers one question.
    fn lookup(&self, query: &Query) -> DnsAnswer;
}

/// Runs a whole evaluation against a synchronous resolver.
pub fn check_host_with<R: Resolver + ?Sized>(
    resolver: &R,
    request: Request,
    options: Options,
) -> Output {
    // One pass that asks the resolver inline: the same code as the
    // sans-IO replay, without the replays.
    let mut eval = Evaluator::new(request, options);
    eval.cache = SPARE_CACHE.with(|spare| spare.take());
    let resolver: &dyn Resolver = &Inline(resolver);
    let output = match Run::new(&eval.ctx, &eval.options, &mut eval.cache, Some(resolver)).top() {
        Ok(out) => out,
        // Unreachable: with a resolver every question is answered inline.
        Err(q) => {
            let answer = resolver.lookup(&q);
            eval.answer(q, answer);
            loop {
                match eval.step() {
                    Step::Query(q) => {
                        let answer = resolver.lookup(&q);
                        eval.answer(q, answer);
                    }
                    Step::Done(output) => break output,
                }
            }
        }
    };
    let mut cache = eval.cache;
    cache.clear();
    SPARE_CACHE.with(|spare| spare.replace(cache));
    output
}

thread_local! {
    /// The emptied cache of this thread's last [`check_host_with`], so that
    /// the next one finds its buffers allocated. It is taken out for the
    /// evaluation, so a resolver that itself evaluates SPF just starts with
    /// an empty one. Its size is bounded by [`MAX_QUERIES`].
    static SPARE_CACHE: RefCell<Cache> = RefCell::default();
}

/// Adapts a possibly unsized resolver to `&dyn Resolver`.
struct Inline<'r, R: Resolver + ?Sized>(&'r R);

impl<R: Resolver + ?Sized> Resolver for Inline<'_, R> {
    fn lookup(&self, query: &Query) -> DnsAnswer {
        self.0.lookup(query)
    }
}

/// The answers so far. There are at most [`MAX_QUERIES`] of them (a few
/// in practice), so a list scanned in order beats hashing. Answers are
/// stored inline and named by their index, so caching one costs no
/// allocation of its own.
#[derive(Debug, Clone, Default)]
struct Cache {
    /// Type, name (a range of `names`) and answer of each question.
    entries: Vec<(QueryType, Range<usize>, DnsAnswer)>,
    /// The names asked for, one after the other.
    names: String,
    /// A reusable question for a resolver called inline.
    scratch: Option<Query>,
}

impl Cache {
    /// The index of the answer to a question, if it is cached.
    fn find(&self, name: &str, qtype: QueryType) -> Option<usize> {
        self.entries.iter().position(|(t, r, _)| {
            *t == qtype && self.names.as_bytes()[r.clone()] == *name.as_bytes()
        })
    }

    /// The answer at an index from [`Cache::find`] or [`Cache::resolve`].
    fn answer(&self, index: usize) -> &DnsAnswer {
        &self.entries[index].2
    }

    fn insert(&mut self, query: Query, answer: DnsAnswer) {
        match self.find(&query.name, query.qtype) {
            Some(i) => self.entries[i].2 = answer,
            None => {
                self.push(&query.name, query.qtype, answer);
            }
        }
    }

    /// Adds the answer to a question not asked before; its index.
    fn push(&mut self, name: &str, qtype: QueryType, answer: DnsAnswer) -> usize {
        if self.entries.capacity() == 0 {
            self.entries.reserve(8);
            self.names.reserve(256);
        }
        let start = self.names.len();
        self.names.push_str(name);
        self.entries.push((qtype, start..self.names.len(), answer));
        self.entries.len() - 1
    }

    /// Asks `resolver` and stores the answer; its index.
    fn resolve(&mut self, resolver: &dyn Resolver, name: &str, qtype: QueryType) -> usize {
        let mut query = self.scratch.take().unwrap_or(Query {
            name: String::new(),
            qtype,
        });
        query.name.clear();
        query.name.push_str(name);
        query.qtype = qtype;
        // Only called for a question not in the cache.
        let answer = resolver.lookup(&query);
        self.scratch = Some(query);
        self.push(name, qtype, answer)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the answers and keeps the buffers.
    fn clear(&mut self) {
        self.entries.clear();
        self.names.clear();
    }
}

/// A parsed record with the text of each directive (for
/// [`Output::mechanism`]).
#[derive(Debug)]
struct Parsed {
    record: Record,
    texts: Box<[String]>,
}

/// A word-at-a-time multiplicative hash (as rustc's `FxHasher`): the keys
/// are short, and the cache is bounded, so collisions cost little.
#[derive(Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Parsed records by their exact text, shared by the evaluations of a
/// thread: parsing is a pure function of the text, and the records of
/// popular domains repeat from one message to the next. Bounded: emptied
/// when full. Per thread rather than behind a lock, so that a hit costs a
/// hash and a compare, without atomic operations (a lock and an `Arc`
/// took a third of the time of a whole record fetch).
fn parse_record(text: &[u8]) -> Result<Rc<Parsed>, crate::RecordError> {
    const MAX_ENTRIES: usize = 1024;
    type Map = HashMap<Box<[u8]>, Rc<Parsed>, BuildHasherDefault<Fx>>;
    thread_local! {
        static PARSED: RefCell<Map> = RefCell::default();
    }
    if let Some(record) = PARSED.with(|map| map.borrow().get(text).cloned()) {
        return Ok(record);
    }
    let record = Record::parse_bytes(text)?;
    let texts = record.directives().map(ToString::to_string).collect();
    let record = Rc::new(Parsed { record, texts });
    PARSED.with(|map| {
        let mut map = map.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(text.into(), Rc::clone(&record));
    });
    Ok(record)
}

/// The sans-IO evaluator of `check_host()` (RFC 7208 section 4).
///
/// ```
/// use scop_spf::{DnsAnswer, Evaluator, Options, RData, Request, SpfResult, Step};
///
/// let request = Request::mail_from("192.0.2.1".parse().unwrap(), "a@example.com", "mx.example.com");
/// let mut eval = Evaluator::new(request, Options::default());
/// let output = loop {
///     match eval.step() {
///         Step::Query(q) => {
///             let answer = if q.name == "example.com" {
///                 DnsAnswer::Records(vec![RData::Txt(vec![b"v=spf1 ip4:192.0.2.0/24 -all".to_vec()])])
///             } else {
///                 DnsAnswer::NxDomain
///             };
///             eval.answer(q, answer);
///         }
///         Step::Done(output) => break output,
///     }
/// };
/// assert_eq!(output.result, SpfResult::Pass);
/// assert_eq!(output.mechanism.as_deref(), Some("ip4:192.0.2.0/24"));
/// ```
#[derive(Debug, Clone)]
pub struct Evaluator {
    ctx: Context,
    options: Options,
    cache: Cache,
    done: Option<Output>,
}

/// Request values derived once.
#[derive(Debug, Clone)]
struct Context {
    /// The client address, IPv4-mapped IPv6 already unmapped.
    ip: IpAddr,
    /// The effective `<sender>`, `local@domain`; the domain is also the
    /// `<domain>` checked.
    sender: String,
    /// Where the `@` is in `sender`.
    at: usize,
    helo: String,
}

impl Context {
    fn local(&self) -> &str {
        &self.sender[..self.at]
    }

    fn sender_domain(&self) -> &str {
        &self.sender[self.at + 1..]
    }
}

impl Evaluator {
    /// Starts an evaluation.
    pub fn new(request: Request, options: Options) -> Self {
        let ip = match request.ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        // The common case, `local@domain` as given, keeps the request's
        // string.
        let plain = match request.identity {
            Identity::MailFrom => request
                .sender
                .bytes()
                .rposition(|b| b == b'@')
                .filter(|&at| {
                    at > 0 && !request.sender.starts_with('<') && !request.sender.ends_with('>')
                }),
            Identity::Helo => None,
        };
        let (sender, at) = match plain {
            Some(at) => (request.sender, at),
            None => {
                let (local, domain) = request.sender_parts();
                (format!("{local}@{domain}"), local.len())
            }
        };
        let ctx = Context {
            ip,
            sender,
            at,
            helo: request.helo,
        };
        Self {
            ctx,
            options,
            cache: Cache::default(),
            done: None,
        }
    }

    /// Advances the evaluation as far as the answers so far allow.
    pub fn step(&mut self) -> Step {
        if let Some(out) = &self.done {
            return Step::Done(out.clone());
        }
        match Run::new(&self.ctx, &self.options, &mut self.cache, None).top() {
            Ok(out) => {
                self.done = Some(out.clone());
                Step::Done(out)
            }
            Err(q) => Step::Query(q),
        }
    }

    /// Supplies the answer to a question that [`Evaluator::step`] asked.
    pub fn answer(&mut self, query: Query, answer: DnsAnswer) {
        self.cache.insert(query, answer);
    }
}

/// Why a run stopped early.
enum Halt {
    /// An answer is missing.
    Suspend(Query),
    /// `permerror` or `temperror`.
    Fail(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Self::Fail(e)
    }
}

/// The result of one (possibly recursive) `check_host()`.
struct Verdict {
    result: SpfResult,
    /// The directive that decided, if one did.
    matched: Option<Matched>,
}

/// A matching directive: its record, its index among the record's
/// directives, and, for a `fail`, the record's domain (for `exp=`). The
/// text of the directive and the `exp=` are only needed at the top, so
/// they are not built on the way.
struct Matched {
    record: Rc<Parsed>,
    index: usize,
    domain: String,
}

/// Who asks for a `check_host()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The evaluation itself: a domain without records is not a void
    /// lookup.
    Top,
    /// A `redirect=` outside any `include`: the verdict, matching
    /// directive included, becomes the caller's.
    Redirect,
    /// An `include`, or a `redirect=` under one: only the result counts.
    Include,
}

impl Verdict {
    const NONE: Self = Self {
        result: SpfResult::None,
        matched: None,
    };
}

/// One pass of the evaluation over the cached answers (and, with a
/// resolver, over answers asked for inline).
struct Run<'a> {
    ctx: &'a Context,
    options: &'a Options,
    cache: &'a mut Cache,
    resolver: Option<&'a dyn Resolver>,
    dns_terms: u32,
    void: u32,
    validated: Option<Vec<String>>,
}

impl<'a> Run<'a> {
    fn new(
        ctx: &'a Context,
        options: &'a Options,
        cache: &'a mut Cache,
        resolver: Option<&'a dyn Resolver>,
    ) -> Self {
        Self {
            ctx,
            options,
            cache,
            resolver,
            dns_terms: 0,
            void: 0,
            validated: None,
        }
    }

    /// Evaluates and builds the output, or returns the missing question.
    fn top(mut self) -> Result<Output, Query> {
        let ctx = self.ctx;
        let domain = ctx.sender_domain();
        let mut out = Output {
            result: SpfResult::None,
            domain: domain.to_string(),
            explanation: None,
            mechanism: None,
            problem: None,
            dns_terms: 0,
            void_lookups: 0,
            queries: 0,
        };
        let verdict = match query_name(domain) {
            Some(name) => self.check_host(&name, 0, Caller::Top),
            None => Ok(Verdict::NONE),
        };
        match verdict {
            Err(Halt::Suspend(q)) => return Err(q),
            Err(Halt::Fail(e)) => {
                out.result = if e.is_temporary() {
                    SpfResult::TempError
                } else {
                    SpfResult::PermError
                };
                out.problem = Some(e);
            }
            Ok(v) => {
                out.result = v.result;
                if let Some(m) = v.matched {
                    out.mechanism = m.record.texts.get(m.index).cloned();
                    if v.result == SpfResult::Fail {
                        out.explanation = match m.record.record.explanation() {
                            Some(spec) => match self.explain(spec, &m.domain) {
                                Err(Halt::Suspend(q)) => return Err(q),
                                Err(Halt::Fail(_)) => None,
                                Ok(text) => text,
                            },
                            None => None,
                        };
                        if out.explanation.is_none() {
                            out.explanation = self.default_explanation(&m.domain)?;
                        }
                    }
                }
            }
        }
        out.dns_terms = self.dns_terms;
        out.void_lookups = self.void;
        out.queries = u32::try_from(self.cache.len()).unwrap_or(u32::MAX);
        Ok(out)
    }

    fn default_explanation(&mut self, domain: &str) -> Result<Option<String>, Query> {
        let Some(text) = self.options.default_explanation.clone() else {
            return Ok(None);
        };
        let Ok(ms) = MacroString::parse(&text, MacroContext::Explanation) else {
            return Ok(Some(text));
        };
        match self.expand(&ms, domain) {
            Ok(s) => Ok(Some(s)),
            Err(Halt::Suspend(q)) => Err(q),
            Err(Halt::Fail(_)) => Ok(Some(text)),
        }
    }

    /// `check_host(<ip>, <domain>, <sender>)` (section 4), for a `<domain>`
    /// already normalized by [`query_name`] (as [`Run::expand_domain`]
    /// returns them).
    fn check_host(&mut self, name: &str, depth: usize, caller: Caller) -> Result<Verdict, Halt> {
        if depth > MAX_DEPTH {
            return Err(Error::TooManyDnsTerms.into());
        }
        let Some(record) = self.fetch_record(name, caller != Caller::Top)? else {
            return Ok(Verdict::NONE);
        };
        for (index, directive) in record.record.directives().enumerate() {
            if self.matches(&directive.mechanism, name, depth)? {
                let result = SpfResult::from(directive.qualifier);
                let matched = (caller != Caller::Include).then(|| Matched {
                    record: Rc::clone(&record),
                    index,
                    domain: if result == SpfResult::Fail {
                        name.to_string()
                    } else {
                        String::new()
                    },
                });
                return Ok(Verdict { result, matched });
            }
        }
        if let Some(spec) = record.record.redirect() {
            self.count_term()?;
            let target = self.expand_domain(spec, name)?;
            let Some(target) = target else {
                return Err(Error::RedirectWithoutRecord {
                    domain: spec.to_string(),
                }
                .into());
            };
            let inner = match caller {
                Caller::Top | Caller::Redirect => Caller::Redirect,
                Caller::Include => Caller::Include,
            };
            let v = self.check_host(&target, depth + 1, inner)?;
            if v.result == SpfResult::None {
                return Err(Error::RedirectWithoutRecord {
                    domain: target.into_owned(),
                }
                .into());
            }
            return Ok(v);
        }
        Ok(Verdict {
            result: SpfResult::Neutral,
            matched: None,
        })
    }

    /// Record lookup and selection (sections 4.4 and 4.5).
    fn fetch_record(&mut self, name: &str, count_void: bool) -> Result<Option<Rc<Parsed>>, Halt> {
        let index = self.lookup(name, QueryType::Txt)?;
        let records: &[RData] = match self.cache.answer(index) {
            DnsAnswer::TempFail => return Err(temp(name, QueryType::Txt)),
            DnsAnswer::NxDomain | DnsAnswer::NoData => &[],
            DnsAnswer::Records(rs) => rs,
        };
        if !records.iter().any(|r| matches!(r, RData::Txt(_))) {
            if count_void {
                self.count_void()?;
            }
            return Ok(None);
        }
        // The TXT records, their strings joined (borrowed when there is one).
        let mut texts = records.iter().filter_map(|r| match r {
            RData::Txt(strings) => Some(match strings.as_slice() {
                [one] => Cow::Borrowed(one.as_slice()),
                many => Cow::Owned(many.concat()),
            }),
            _ => None,
        });
        let mut spf = texts.by_ref().filter(|r| is_spf_record(r));
        let Some(text) = spf.next() else {
            return Ok(None);
        };
        if spf.next().is_some() {
            return Err(Error::MultipleRecords {
                domain: name.to_string(),
            }
            .into());
        }
        parse_record(&text).map(Some).map_err(|error| {
            Halt::Fail(Error::Record {
                domain: name.to_string(),
                error,
            })
        })
    }

    /// Whether a mechanism matches (section 5).
    fn matches(&mut self, mech: &Mechanism, domain: &str, depth: usize) -> Result<bool, Halt> {
        if mech.queries_dns() {
            self.count_term()?;
        }
        match mech {
            Mechanism::All => Ok(true),
            Mechanism::Include(spec) => {
                let target = self.expand_domain(spec, domain)?;
                let Some(target) = target else {
                    return Err(Error::IncludeWithoutRecord {
                        domain: spec.to_string(),
                    }
                    .into());
                };
                let v = self.check_host(&target, depth + 1, Caller::Include)?;
                match v.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::None => Err(Error::IncludeWithoutRecord {
                        domain: target.into_owned(),
                    }
                    .into()),
                    _ => Ok(false),
                }
            }
            Mechanism::A { domain: spec, cidr } => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                let (client, cidr) = (self.ctx.ip, *cidr);
                self.any_address(&target, true, |a| cidr_match(client, a, cidr))
            }
            Mechanism::Mx { domain: spec, cidr } => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                self.mx_matches(&target, *cidr)
            }
            Mechanism::Ptr(spec) => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                self.ptr_matches(&target)
            }
            Mechanism::Ip4 { addr, prefix } => Ok(match self.ctx.ip {
                IpAddr::V4(ip) => prefix_match_v4(ip, *addr, prefix.unwrap_or(32)),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6 { addr, prefix } => Ok(match self.ctx.ip {
                IpAddr::V6(ip) => prefix_match_v6(ip, *addr, prefix.unwrap_or(128)),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Exists(spec) => {
                let Some(target) = self.expand_domain(spec, domain)? else {
                    return Ok(false);
                };
                let index = self.lookup(&target, QueryType::A)?;
                match self.cache.answer(index) {
                    DnsAnswer::TempFail => Err(temp(&target, QueryType::A)),
                    DnsAnswer::Records(rs) if rs.iter().any(|r| matches!(r, RData::A(_))) => {
                        Ok(true)
                    }
                    _ => {
                        self.count_void()?;
                        Ok(false)
                    }
                }
            }
        }
    }

    /// `mx` (section 5.4).
    fn mx_matches(&mut self, target: &str, cidr: DualCidr) -> Result<bool, Halt> {
        let index = self.lookup(target, QueryType::Mx)?;
        let records: &[RData] = match self.cache.answer(index) {
            DnsAnswer::TempFail => return Err(temp(target, QueryType::Mx)),
            DnsAnswer::Records(rs) => rs,
            DnsAnswer::NxDomain | DnsAnswer::NoData => &[],
        };
        // Preference and position among the answer's records of each
        // exchange: the names stay in the cache, which the address lookups
        // below grow.
        let mut exchanges = [(0u16, 0usize); MAX_MX_NAMES];
        let mut count = 0;
        for (at, r) in records.iter().enumerate() {
            if let RData::Mx { preference, .. } = r {
                if let Some(slot) = exchanges.get_mut(count) {
                    *slot = (*preference, at);
                }
                count += 1;
            }
        }
        if count == 0 {
            self.count_void()?;
            return Ok(false);
        }
        if count > MAX_MX_NAMES {
            return Err(Error::TooManyMxRecords {
                domain: target.to_string(),
            }
            .into());
        }
        let exchanges = &mut exchanges[..count];
        // Stable, as the answer's order breaks ties.
        exchanges.sort_by_key(|(pref, _)| *pref);
        let client = self.ctx.ip;
        let mut host = NameBuf::new();
        for &(_, at) in exchanges.iter() {
            let DnsAnswer::Records(records) = self.cache.answer(index) else {
                break;
            };
            let Some(RData::Mx { exchange, .. }) = records.get(at) else {
                continue;
            };
            // A null MX (RFC 7505) or a malformed name has no addresses.
            let Some(name) = query_name(exchange) else {
                continue;
            };
            let name = host.set(&name);
            if self.any_address(name, false, |a| cidr_match(client, a, cidr))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `ptr` (section 5.5): a validated reverse name equal to or under the
    /// target.
    fn ptr_matches(&mut self, target: &str) -> Result<bool, Halt> {
        let names = self.ptr_names(true)?;
        let suffix = format!(".{target}");
        for name in names {
            if (name == target || name.ends_with(&suffix)) && self.validates(&name)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The first [`MAX_PTR_NAMES`] reverse names of the client, lower case;
    /// a DNS error yields none (section 5.5).
    fn ptr_names(&mut self, count_void: bool) -> Result<Vec<String>, Halt> {
        let rev = reverse_name(self.ctx.ip);
        let index = self.lookup(&rev, QueryType::Ptr)?;
        match self.cache.answer(index) {
            DnsAnswer::TempFail => Ok(Vec::new()),
            DnsAnswer::Records(rs) if rs.iter().any(|r| matches!(r, RData::Ptr(_))) => Ok(rs
                .iter()
                .filter_map(|r| match r {
                    RData::Ptr(p) => dns_name(p),
                    _ => None,
                })
                .take(MAX_PTR_NAMES)
                .collect()),
            _ => {
                if count_void {
                    self.count_void()?;
                }
                Ok(Vec::new())
            }
        }
    }

    /// Whether a reverse name resolves back to the client; DNS errors make
    /// it unvalidated (section 5.5).
    fn validates(&mut self, name: &str) -> Result<bool, Halt> {
        let ip = self.ctx.ip;
        match self.any_address(name, false, |a| a == ip) {
            Ok(found) => Ok(found),
            Err(Halt::Fail(_)) => Ok(false),
            Err(suspend) => Err(suspend),
        }
    }

    /// The `p` macro (section 7.3): a validated name, preferring the
    /// current domain, then a subdomain of it, else the first; `unknown`.
    fn validated_domain(&mut self, domain: &str) -> Result<String, Halt> {
        let names = match &self.validated {
            Some(v) => v.clone(),
            None => {
                let mut valid = Vec::new();
                for name in self.ptr_names(false)? {
                    if self.validates(&name)? {
                        valid.push(name);
                    }
                }
                self.validated = Some(valid.clone());
                valid
            }
        };
        let suffix = format!(".{domain}");
        let pick = names
            .iter()
            .find(|n| *n == domain)
            .or_else(|| names.iter().find(|n| n.ends_with(&suffix)))
            .or_else(|| names.first());
        Ok(pick.cloned().unwrap_or_else(|| "unknown".into()))
    }

    /// The client-family addresses of `name` (A for IPv4, AAAA for IPv6).
    /// Whether one of them satisfies `pred` (a name without any is a void
    /// lookup when `count_void`).
    fn any_address(
        &mut self,
        name: &str,
        count_void: bool,
        pred: impl Fn(IpAddr) -> bool,
    ) -> Result<bool, Halt> {
        let qtype = match self.ctx.ip {
            IpAddr::V4(_) => QueryType::A,
            IpAddr::V6(_) => QueryType::Aaaa,
        };
        let index = self.lookup(name, qtype)?;
        let (mut any, mut hit) = (false, false);
        match self.cache.answer(index) {
            DnsAnswer::TempFail => return Err(temp(name, qtype)),
            DnsAnswer::Records(rs) => {
                for r in rs {
                    let addr = match (r, qtype) {
                        (RData::A(a), QueryType::A) => IpAddr::V4(*a),
                        (RData::Aaaa(a), QueryType::Aaaa) => IpAddr::V6(*a),
                        _ => continue,
                    };
                    any = true;
                    if pred(addr) {
                        hit = true;
                        break;
                    }
                }
            }
            DnsAnswer::NxDomain | DnsAnswer::NoData => {}
        }
        if !any && count_void {
            self.count_void()?;
        }
        Ok(hit)
    }
}

fn cidr_match(client: IpAddr, addr: IpAddr, cidr: DualCidr) -> bool {
    match (client, addr) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => prefix_match_v4(ip, net, cidr.v4.unwrap_or(32)),
        (IpAddr::V6(ip), IpAddr::V6(net)) => prefix_match_v6(ip, net, cidr.v6.unwrap_or(128)),
        _ => false,
    }
}

impl Run<'_> {
    /// The explanation of section 6.2; any problem yields `None`.
    fn explain(&mut self, spec: &DomainSpec, domain: &str) -> Result<Option<String>, Halt> {
        let Some(target) = self.expand_domain(spec, domain)? else {
            return Ok(None);
        };
        let index = self.lookup(&target, QueryType::Txt)?;
        let DnsAnswer::Records(rs) = self.cache.answer(index) else {
            return Ok(None);
        };
        let mut txts = rs.iter().filter_map(|r| match r {
            RData::Txt(strings) => Some(strings.concat()),
            _ => None,
        });
        let (Some(text), None) = (txts.next(), txts.next()) else {
            return Ok(None);
        };
        let Ok(text) = String::from_utf8(text) else {
            return Ok(None);
        };
        if !text.is_ascii() {
            return Ok(None);
        }
        let Ok(ms) = MacroString::parse(&text, MacroContext::Explanation) else {
            return Ok(None);
        };
        self.expand(&ms, domain).map(Some)
    }

    /// The target of `a`, `mx` or `ptr`: the spec expanded, or the current
    /// domain.
    fn target<'s>(
        &mut self,
        spec: Option<&'s DomainSpec>,
        domain: &'s str,
    ) -> Result<Option<Cow<'s, str>>, Halt> {
        match spec {
            Some(spec) => self.expand_domain(spec, domain),
            None => Ok(Some(Cow::Borrowed(domain))),
        }
    }

    /// Expands a domain-spec into a query name (section 7.3: trailing dot
    /// dropped, left labels removed beyond 253 characters). `None` when the
    /// result is not a valid DNS name (the term then matches nothing).
    fn expand_domain<'s>(
        &mut self,
        spec: &'s DomainSpec,
        domain: &str,
    ) -> Result<Option<Cow<'s, str>>, Halt> {
        // Without macros the spec is its own expansion, known since parsing.
        if let Expansion::Fixed(name) = spec.expansion() {
            return Ok(name.as_deref().map(Cow::Borrowed));
        }
        let mut name = self.expand(spec.macro_string(), domain)?;
        if name.ends_with('.') {
            name.pop();
        }
        while name.len() > MAX_DOMAIN_LEN {
            match name.find('.') {
                Some(dot) => {
                    name.drain(..=dot);
                }
                None => return Ok(None),
            }
        }
        Ok(dns_name(&name).map(Cow::Owned))
    }

    fn expand(&mut self, ms: &MacroString, domain: &str) -> Result<String, Halt> {
        let mut values = Values { run: self, domain };
        ms.expand(&mut values)
    }

    /// The cache index of the answer to a question (see [`Cache::answer`]).
    fn lookup(&mut self, name: &str, qtype: QueryType) -> Result<usize, Halt> {
        if let Some(index) = self.cache.find(name, qtype) {
            return Ok(index);
        }
        if self.cache.len() >= MAX_QUERIES {
            return Err(Error::TooManyQueries.into());
        }
        match self.resolver {
            Some(resolver) => Ok(self.cache.resolve(resolver, name, qtype)),
            None => Err(Halt::Suspend(Query {
                name: name.to_string(),
                qtype,
            })),
        }
    }

    fn count_term(&mut self) -> Result<(), Halt> {
        self.dns_terms += 1;
        if self.dns_terms > MAX_DNS_TERMS {
            return Err(Error::TooManyDnsTerms.into());
        }
        Ok(())
    }

    fn count_void(&mut self) -> Result<(), Halt> {
        self.void += 1;
        if self.void > self.options.max_void_lookups {
            return Err(Error::TooManyVoidLookups.into());
        }
        Ok(())
    }
}

fn temp(name: &str, qtype: QueryType) -> Halt {
    Halt::Fail(Error::DnsTempFail {
        name: name.to_string(),
        qtype,
    })
}

struct Values<'r, 'a> {
    run: &'r mut Run<'a>,
    domain: &'r str,
}

impl MacroValues for Values<'_, '_> {
    type Error = Halt;

    fn value(&mut self, letter: MacroLetter) -> Result<String, Halt> {
        let ctx = &self.run.ctx;
        Ok(match letter {
            MacroLetter::Sender => ctx.sender.clone(),
            MacroLetter::LocalPart => ctx.local().to_string(),
            MacroLetter::SenderDomain => ctx.sender_domain().to_string(),
            MacroLetter::Domain => self.domain.to_string(),
            MacroLetter::Ip => dotted_ip(ctx.ip),
            MacroLetter::IpVersion => match ctx.ip {
                IpAddr::V4(_) => "in-addr".into(),
                IpAddr::V6(_) => "ip6".into(),
            },
            MacroLetter::Helo => ctx.helo.clone(),
            MacroLetter::ClientIp => ctx.ip.to_string(),
            MacroLetter::Receiver => self.run.options.receiver_host.clone(),
            MacroLetter::Timestamp => self.run.options.now_unix.to_string(),
            MacroLetter::ValidatedDomain => {
                let domain = self.domain;
                self.run.validated_domain(domain)?
            }
        })
    }
}

/// The `i` macro: dotted quad, or 32 dot-separated lower-case nibbles
/// (section 7.3).
fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            out
        }
    }
}

/// The `in-addr.arpa` / `ip6.arpa` name of an address.
fn reverse_name(ip: IpAddr) -> String {
    let dotted = dotted_ip(ip);
    let mut parts: Vec<&str> = dotted.split('.').collect();
    parts.reverse();
    let suffix = match ip {
        IpAddr::V4(_) => "in-addr.arpa",
        IpAddr::V6(_) => "ip6.arpa",
    };
    format!("{}.{suffix}", parts.join("."))
}

/// Normalizes a domain name for a query: lower case, trailing dot dropped;
/// `None` if it is not a multi-label name within RFC 1035 lengths, or is a
/// domain literal (section 4.3).
pub(crate) fn dns_name(name: &str) -> Option<String> {
    query_name(name).map(Cow::into_owned)
}

/// [`dns_name`], borrowing when the name needs no change.
pub(crate) fn query_name(name: &str) -> Option<Cow<'_, str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DOMAIN_LEN || name.starts_with('[') {
        return None;
    }
    let (mut labels, mut label_len, mut upper) = (1, 0, false);
    for &b in name.as_bytes() {
        if b == b'.' {
            if label_len == 0 || label_len > MAX_LABEL_LEN {
                return None;
            }
            labels += 1;
            label_len = 0;
        } else {
            label_len += 1;
            upper |= b.is_ascii_uppercase();
        }
    }
    if label_len == 0 || label_len > MAX_LABEL_LEN || labels < 2 {
        return None;
    }
    Some(if upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

/// A query name (at most [`MAX_DOMAIN_LEN`] bytes) copied to the stack.
struct NameBuf([u8; MAX_DOMAIN_LEN]);

impl NameBuf {
    fn new() -> Self {
        Self([0; MAX_DOMAIN_LEN])
    }

    /// Copies `name`, a [`query_name`], and returns the copy.
    fn set(&mut self, name: &str) -> &str {
        let len = name.len().min(MAX_DOMAIN_LEN);
        self.0[..len].copy_from_slice(&name.as_bytes()[..len]);
        // A whole `str` was copied, so this cannot fail.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }
}

fn prefix_match_v4(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn prefix_match_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(prefix_match_v4(a("1.2.3.4"), a("1.2.3.0"), 24));
        assert!(!prefix_match_v4(a("1.2.4.4"), a("1.2.3.0"), 24));
        assert!(prefix_match_v4(a("9.9.9.9"), a("1.2.3.0"), 0));
        assert!(prefix_match_v4(a("1.2.3.4"), a("1.2.3.4"), 32));
        let b = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert!(prefix_match_v6(
            b("cafe:babe:8000::1"),
            b("cafe:babe:8000::"),
            33
        ));
        assert!(!prefix_match_v6(
            b("cafe:babe::1"),
            b("cafe:babe:8000::"),
            33
        ));
        assert!(prefix_match_v6(b("::1"), b("ffff::"), 0));
    }

    #[test]
    fn names() {
        assert_eq!(dns_name("Example.COM."), Some("example.com".into()));
        assert_eq!(dns_name("localhost"), None);
        assert_eq!(dns_name("a..b"), None);
        assert_eq!(dns_name("[1.2.3.4]"), None);
        assert_eq!(dns_name(&format!("{}.com", "a".repeat(64))), None);
        assert_eq!(
            reverse_name("192.0.2.3".parse().unwrap()),
            "3.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::cb01".parse().unwrap()),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn sender_parts() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let r = Request::mail_from(ip, "", "mx.example.org");
        assert_eq!(
            r.sender_parts(),
            ("postmaster".into(), "mx.example.org".into())
        );
        let r = Request::mail_from(ip, "@example.net", "x");
        assert_eq!(
            r.sender_parts(),
            ("postmaster".into(), "example.net".into())
        );
        let r = Request::mail_from(ip, "a@b@example.net", "x");
        assert_eq!(r.sender_parts(), ("a@b".into(), "example.net".into()));
        let r = Request::helo(ip, "mx.example.org");
        assert_eq!(r.domain(), "mx.example.org");
    }

    struct Zone(Vec<(&'static str, QueryType, DnsAnswer)>);
    impl Resolver for Zone {
        fn lookup(&self, q: &Query) -> DnsAnswer {
            self.0
                .iter()
                .find(|(n, t, _)| *n == q.name && *t == q.qtype)
                .map_or(DnsAnswer::NxDomain, |(_, _, a)| a.clone())
        }
    }

    fn txt(s: &str) -> DnsAnswer {
        DnsAnswer::Records(vec![RData::Txt(vec![s.as_bytes().to_vec()])])
    }

    #[test]
    fn inline_resolver_matches_the_state_machine() {
        let a = |ip: &str| DnsAnswer::Records(vec![RData::A(ip.parse().unwrap())]);
        let zone = Zone(vec![
            (
                "example.com",
                QueryType::Txt,
                txt(
                    "v=spf1 ip4:192.0.2.0/28 a mx include:inc.example.net exists:%{l}.%{o}.x.example.com redirect=r.example.org exp=e.example.com",
                ),
            ),
            ("example.com", QueryType::A, a("192.0.2.20")),
            (
                "example.com",
                QueryType::Mx,
                DnsAnswer::Records(vec![RData::Mx {
                    preference: 5,
                    exchange: "MX.example.com.".into(),
                }]),
            ),
            ("mx.example.com", QueryType::A, a("192.0.2.30")),
            (
                "inc.example.net",
                QueryType::Txt,
                txt("v=spf1 ip4:198.51.100.0/24 -all"),
            ),
            ("ok.example.com.x.example.com", QueryType::A, a("127.0.0.2")),
            (
                "r.example.org",
                QueryType::Txt,
                txt("v=spf1 ?ip4:203.0.113.1 -all exp=e.example.com"),
            ),
            (
                "e.example.com",
                QueryType::Txt,
                txt("%{s} is not allowed from %{i}"),
            ),
            ("helo.example", QueryType::Txt, txt("v=spf1 ptr -all")),
        ]);
        let ips = [
            "192.0.2.1",
            "192.0.2.20",
            "192.0.2.30",
            "198.51.100.9",
            "203.0.113.1",
            "203.0.113.2",
            "::ffff:192.0.2.1",
        ];
        let senders = [
            "u@example.com",
            "ok@example.com",
            "<u@example.com>",
            "",
            "example.com",
            "@example.com",
            "x@nowhere.example",
        ];
        for ip in ips {
            let ip: IpAddr = ip.parse().unwrap();
            let mut requests: Vec<Request> = senders
                .iter()
                .map(|s| Request::mail_from(ip, *s, "example.com"))
                .collect();
            requests.push(Request::helo(ip, "helo.example"));
            for request in requests {
                let inline = check_host_with(&zone, request.clone(), Options::default());
                let mut eval = Evaluator::new(request.clone(), Options::default());
                let stepped = loop {
                    match eval.step() {
                        Step::Query(q) => {
                            let answer = zone.lookup(&q);
                            eval.answer(q, answer);
                        }
                        Step::Done(out) => break out,
                    }
                };
                assert_eq!(inline, stepped, "{request:?}");
            }
        }
    }

    /// The per-thread buffers (spare cache, parsed records) are not held
    /// while the resolver runs: a resolver may itself evaluate SPF, and
    /// the answers of one evaluation never leak into the next.
    #[test]
    fn reentrant_resolver_and_reused_buffers() {
        struct Nested(Zone);
        impl Resolver for Nested {
            fn lookup(&self, q: &Query) -> DnsAnswer {
                let ip = "192.0.2.9".parse().unwrap();
                let inner = check_host_with(
                    &self.0,
                    Request::mail_from(ip, "a@inner.example", "h"),
                    Options::default(),
                );
                assert_eq!(inner.result, SpfResult::Fail);
                self.0.lookup(q)
            }
        }
        let zone = Nested(Zone(vec![
            ("outer.example", QueryType::Txt, txt("v=spf1 a -all")),
            (
                "outer.example",
                QueryType::A,
                DnsAnswer::Records(vec![RData::A(Ipv4Addr::new(192, 0, 2, 1))]),
            ),
            ("inner.example", QueryType::Txt, txt("v=spf1 -all")),
        ]));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            let out = check_host_with(
                &zone,
                Request::mail_from(ip, "a@outer.example", "h"),
                Options::default(),
            );
            assert_eq!((out.result, out.queries), (SpfResult::Pass, 2));
            assert_eq!(out.mechanism.as_deref(), Some("a"));
        }
        // The same thread, another zone: nothing of the last run is reused.
        let other = Zone(vec![("outer.example", QueryType::Txt, txt("v=spf1 ?all"))]);
        let out = check_host_with(
            &other,
            Request::mail_from(ip, "a@outer.example", "h"),
            Options::default(),
        );
        assert_eq!((out.result, out.queries), (SpfResult::Neutral, 1));
    }

    #[test]
    fn state_machine_asks_then_finishes() {
        let request =
            Request::mail_from("192.0.2.1".parse().unwrap(), "a@example.com", "h.example");
        let mut eval = Evaluator::new(request, Options::default());
        let Step::Query(q) = eval.step() else {
            panic!("expected a query")
        };
        assert_eq!(q.to_string(), "example.com TXT");
        eval.answer(q, txt("v=spf1 a -all exp=why.example.com"));
        let Step::Query(q) = eval.step() else {
            panic!("expected a query")
        };
        assert_eq!(q.to_string(), "example.com A");
        eval.answer(q, DnsAnswer::NoData);
        let Step::Query(q) = eval.step() else {
            panic!("expected a query")
        };
        assert_eq!(q.to_string(), "why.example.com TXT");
        eval.answer(q, txt("%{i} is not one of %{d}'s hosts"));
        let Step::Done(out) = eval.step() else {
            panic!("expected the end")
        };
        assert_eq!(out.result, SpfResult::Fail);
        assert_eq!(out.mechanism.as_deref(), Some("-all"));
        assert_eq!(
            out.explanation.as_deref(),
            Some("192.0.2.1 is not one of example.com's hosts")
        );
        assert_eq!((out.dns_terms, out.void_lookups, out.queries), (1, 1, 3));
        assert_eq!(eval.step(), Step::Done(out));
    }

    #[test]
    fn helo_identity_and_limits() {
        let zone = Zone(vec![
            (
                "mx.example.org",
                QueryType::Txt,
                txt("v=spf1 a:a.example.org a:b.example.org a:c.example.org +all"),
            ),
            (
                "example.net",
                QueryType::Txt,
                txt("v=spf1 include:example.org ptr -all"),
            ),
            ("example.org", QueryType::Txt, DnsAnswer::NoData),
            (
                "1.2.0.192.in-addr.arpa",
                QueryType::Ptr,
                DnsAnswer::Records(vec![RData::Ptr("mx.example.net".into())]),
            ),
            (
                "mx.example.net",
                QueryType::A,
                DnsAnswer::Records(vec![RData::A(Ipv4Addr::new(192, 0, 2, 1))]),
            ),
        ]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // Three void `a` lookups: the third is one too many.
        let out = check_host_with(
            &zone,
            Request::helo(ip, "mx.example.org"),
            Options::default(),
        );
        assert_eq!(out.result, SpfResult::PermError);
        assert_eq!(out.problem, Some(Error::TooManyVoidLookups));
        assert_eq!(out.void_lookups, 3);
        let relaxed = Options {
            max_void_lookups: 3,
            ..Options::default()
        };
        let out = check_host_with(&zone, Request::helo(ip, "mx.example.org"), relaxed);
        assert_eq!(out.result, SpfResult::Pass);
        assert_eq!(out.mechanism.as_deref(), Some("all"));
        // An include without a record is a permerror (section 5.2).
        let out = check_host_with(
            &zone,
            Request::mail_from(ip, "x@example.net", "h"),
            Options::default(),
        );
        assert_eq!(
            out.problem,
            Some(Error::IncludeWithoutRecord {
                domain: "example.org".into()
            })
        );
        // Unqualified HELO: none without a lookup.
        let out = check_host_with(&zone, Request::helo(ip, "localhost"), Options::default());
        assert_eq!((out.result, out.queries), (SpfResult::None, 0));
    }

    #[test]
    fn ptr_and_p_macro() {
        let zone = Zone(vec![
            (
                "example.net",
                QueryType::Txt,
                txt("v=spf1 ptr -all exp=why.example.net"),
            ),
            (
                "example.com",
                QueryType::Txt,
                txt("v=spf1 -ptr ?all exp=why.example.net"),
            ),
            ("why.example.net", QueryType::Txt, txt("%{p} says no")),
            (
                "1.2.0.192.in-addr.arpa",
                QueryType::Ptr,
                DnsAnswer::Records(vec![
                    RData::Ptr("fake.example.net".into()),
                    RData::Ptr("MX.Example.NET.".into()),
                ]),
            ),
            (
                "mx.example.net",
                QueryType::A,
                DnsAnswer::Records(vec![RData::A(Ipv4Addr::new(192, 0, 2, 1))]),
            ),
            ("fake.example.net", QueryType::A, DnsAnswer::TempFail),
        ]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let out = check_host_with(
            &zone,
            Request::mail_from(ip, "a@example.net", "h"),
            Options::default(),
        );
        assert_eq!(out.result, SpfResult::Pass);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let out = check_host_with(
            &zone,
            Request::mail_from(other, "a@example.com", "h"),
            Options::default(),
        );
        assert_eq!(out.result, SpfResult::Neutral);
        let zone2 = Zone(vec![
            (
                "example.com",
                QueryType::Txt,
                txt("v=spf1 -all exp=why.example.net"),
            ),
            ("why.example.net", QueryType::Txt, txt("%{p} says no")),
            (
                "1.2.0.192.in-addr.arpa",
                QueryType::Ptr,
                DnsAnswer::Records(vec![RData::Ptr("mx.example.net".into())]),
            ),
            (
                "mx.example.net",
                QueryType::A,
                DnsAnswer::Records(vec![RData::A(Ipv4Addr::new(192, 0, 2, 1))]),
            ),
        ]);
        let out = check_host_with(
            &zone2,
            Request::mail_from(ip, "a@example.com", "h"),
            Options::default(),
        );
        assert_eq!(out.explanation.as_deref(), Some("mx.example.net says no"));
    }

    #[test]
    fn temperror_and_default_explanation() {
        let zone = Zone(vec![
            ("example.com", QueryType::Txt, txt("v=spf1 mx ~all")),
            ("example.com", QueryType::Mx, DnsAnswer::TempFail),
            ("example.org", QueryType::Txt, txt("v=spf1 -all")),
        ]);
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let out = check_host_with(
            &zone,
            Request::mail_from(ip, "a@example.com", "h"),
            Options::default(),
        );
        assert_eq!(out.result, SpfResult::TempError);
        assert!(out.problem.as_ref().is_some_and(Error::is_temporary));
        let options = Options {
            default_explanation: Some("%{c} is not allowed by %{o}".into()),
            ..Options::default()
        };
        let out = check_host_with(&zone, Request::mail_from(ip, "a@example.org", "h"), options);
        assert_eq!(
            out.explanation.as_deref(),
            Some("192.0.2.1 is not allowed by example.org")
        );
    }
}
