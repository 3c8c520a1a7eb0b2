//! SMTP TLS Reporting (RFC 8460), the sending side: the `_smtp._tls`
//! TXT record that says where a domain wants its reports, the counts of
//! TLS sessions kept per policy between reports, the JSON report, its
//! gzip file, and the two ways it travels (a mail message, or an HTTPS
//! POST).
//!
//! ```text
//!  each TLS session of the relay ──► Tally::success / Tally::failure
//!                                     (per policy domain, per Policy)
//!  end of the interval ── Tally::take() ──► one DomainReport per domain
//!   TXT _smtp._tls.<domain> ── record() ──► Record { rua }
//!    ├─ Rua::Mailto ─► message(meta, report_meta, report) ─► DKIM-sign ─► queue
//!    └─ Rua::Https  ─► https_request(url, gzip(to_json(..))) ─► TLS to host:port
//!                        ─► https_accepted(response head): 2xx is delivered
//! ```
//!
//! Nothing here does I/O or reads the clock: times are Unix seconds given
//! by the caller, the DNS answer and the HTTP response are bytes it read.
//! A report sent by mail must be DKIM-signed by the submitter (RFC 8460
//! 5.3); signing, queueing and the TLS connection belong to the caller.
//! Memory is bounded: [`Tally`] keeps at most [`MAX_DOMAINS`] domains,
//! [`MAX_POLICIES_PER_DOMAIN`] policies each and [`MAX_FAILURE_ROWS`]
//! failure rows per policy, with every string cut to a named limit.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use scop_mime::{Builder, DateTime, Mailbox};

use crate::mta_sts::{
    MAX_HEAD, MAX_HEADERS, shown, trim_wsp, valid_field_name, valid_txt_ext_value,
};

/// Most `rua` destinations kept from a record; more are ignored (RFC
/// 8460 3 lets the sender deliver to any of them).
pub const MAX_RUA: usize = 4;

/// Longest `rua` URI used, in bytes; a longer one is ignored.
pub const MAX_URI_LEN: usize = 1024;

/// Most policy domains a [`Tally`] holds; sessions for further domains
/// are not recorded (see [`Tally::dropped`]).
pub const MAX_DOMAINS: usize = 10_000;

/// Most distinct policies a [`Tally`] holds per domain; sessions under a
/// further policy are not recorded.
pub const MAX_POLICIES_PER_DOMAIN: usize = 8;

/// Most distinct failure rows ("failure-details") per policy; a failure
/// that would need another row still counts in
/// `total-failure-session-count`.
pub const MAX_FAILURE_ROWS: usize = 100;

/// Longest `failure-reason-code` kept, in characters.
pub const MAX_DETAIL: usize = 200;

/// Longest `receiving-mx-hostname` kept, in bytes (a DNS name has at most
/// 253).
pub const MAX_HOST: usize = 255;

/// Most `policy-string` and `mx-host` entries kept per policy.
pub const MAX_POLICY_STRINGS: usize = 32;

/// Longest `policy-string` or `mx-host` entry kept, in bytes.
pub const MAX_POLICY_STRING: usize = 4096;

/// The latest time a report can name, 9999-12-31T23:59:59Z; later times
/// are written as this one.
pub const MAX_TIME: u64 = 253_402_300_799;

/// The media type of a gzip'd report (RFC 8460 6.4).
pub const MEDIA_TYPE: &str = "application/tlsrpt+gzip";

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------
// The DNS record (RFC 8460 3)
// ---------------------------------------------------------------------

/// The `_smtp._tls.DOMAIN` TXT record (RFC 8460 3): where the domain
/// wants its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The usable destinations, in the record's order, without
    /// duplicates, at most [`MAX_RUA`]; never empty in a parsed record.
    pub rua: Vec<Rua>,
}

/// One report destination (RFC 8460 3, `rua`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rua {
    /// A `mailto:` URI: the address (`local@domain`), percent-decoded
    /// (RFC 6068 2), without the `?` header fields.
    Mailto(String),
    /// An `https:` URI, as in the record, for [`https_request`].
    Https(String),
}

/// Why the `_smtp._tls` TXT strings give no record (RFC 8460 3). Every
/// case means the domain does not take reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No string starts with `v=TLSRPTv1`.
    #[error("no TLSRPT record: no TXT string starts with v=TLSRPTv1")]
    None,
    /// More than one string starts with `v=TLSRPTv1` (their number).
    #[error("{0} TLSRPT records, where RFC 8460 3 wants exactly one")]
    Several(usize),
    /// The first field is `v=TLSRPTv1` followed by something other than a
    /// `;`.
    #[error("TLSRPT record starts with the field {0:?}, not v=TLSRPTv1")]
    BadVersion(String),
    /// A `v` field after the first field.
    #[error("TLSRPT record has a second `v` field")]
    MisplacedVersion,
    /// Two `;` with only white space between them.
    #[error("TLSRPT record has an empty field (`;;`)")]
    EmptyField,
    /// A field that is not `name=value` with a name of a letter or digit
    /// and up to 31 letters, digits, `_`, `-` or `.`.
    #[error("TLSRPT record field {0:?} is not `name=value` with a valid name")]
    BadField(String),
    /// An extension field whose value is empty or holds other than
    /// visible ASCII except `=` and `;`.
    #[error(
        "TLSRPT record extension field {0:?} has an invalid value (visible ASCII except `=` and `;`)"
    )]
    BadExtension(String),
    /// No `rua` field.
    #[error("TLSRPT record has no `rua` field")]
    NoRua,
    /// A `rua` URI that is malformed.
    #[error("TLSRPT rua URI {uri:?} is malformed: {why}")]
    BadUri {
        /// The URI as found (shortened).
        uri: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The `rua` URIs are all of other schemes than `mailto:` and
    /// `https:`, or longer than [`MAX_URI_LEN`].
    #[error("TLSRPT rua lists no usable mailto: or https: URI")]
    NoUsableRua,
}

/// The record among the TXT strings of `_smtp._tls.DOMAIN` (each string
/// already the concatenation of one record's character-strings; RFC 8460
/// 3).
///
/// Strings that do not start with `v=TLSRPTv1` (then the end, `;` or
/// white space) are ignored; there must be exactly one that does. Its
/// fields are separated by `;` with optional spaces or tabs around, one
/// trailing `;` allowed. `rua=` (the name is case-sensitive, as in the
/// grammar) holds URIs separated by `,` with optional white space; it may
/// appear more than once, and the URIs of every `rua` count. Schemes are
/// case-insensitive; only `mailto:` and `https:` are used, others are
/// ignored, as are URIs over [`MAX_URI_LEN`] bytes, duplicates, and those
/// past the first [`MAX_RUA`]. Other fields are extensions, ignored when
/// well formed. Anything malformed is an error.
pub fn record(txts: &[&str]) -> Result<Record, RecordError> {
    let mut found = txts.iter().filter(|t| is_tlsrpt(t));
    let first = found.next().ok_or(RecordError::None)?;
    match found.count() {
        0 => parse_record(first),
        more => Err(RecordError::Several(more + 1)),
    }
}

/// Whether a TXT string is a TLSRPT record: `v=TLSRPTv1`, then the end,
/// a `;` or white space.
fn is_tlsrpt(s: &str) -> bool {
    s.strip_prefix("v=TLSRPTv1")
        .is_some_and(|rest| matches!(rest.as_bytes().first(), None | Some(b';' | b' ' | b'\t')))
}

fn parse_record(text: &str) -> Result<Record, RecordError> {
    let fields: Vec<&str> = text.split(';').map(trim_wsp).collect();
    let (first, rest) = fields.split_first().ok_or(RecordError::None)?;
    if *first != "v=TLSRPTv1" {
        return Err(RecordError::BadVersion(shown(first)));
    }
    let mut rua = Vec::new();
    let mut seen_rua = false;
    for (i, field) in rest.iter().enumerate() {
        if field.is_empty() {
            // Only after the trailing `;`.
            if i + 1 == rest.len() {
                continue;
            }
            return Err(RecordError::EmptyField);
        }
        let (name, value) = field
            .split_once('=')
            .filter(|(name, _)| valid_field_name(name))
            .ok_or_else(|| RecordError::BadField(shown(field)))?;
        match name {
            "v" => return Err(RecordError::MisplacedVersion),
            "rua" => {
                seen_rua = true;
                for uri in value.split(',').map(trim_wsp) {
                    if let Some(r) = rua_uri(uri)?
                        && rua.len() < MAX_RUA
                        && !rua.contains(&r)
                    {
                        rua.push(r);
                    }
                }
            }
            _ if !valid_txt_ext_value(value) => return Err(RecordError::BadExtension(shown(name))),
            _ => {}
        }
    }
    if !seen_rua {
        return Err(RecordError::NoRua);
    }
    if rua.is_empty() {
        return Err(RecordError::NoUsableRua);
    }
    Ok(Record { rua })
}

fn bad_uri(uri: &str, why: &'static str) -> RecordError {
    RecordError::BadUri {
        uri: shown(uri),
        why,
    }
}

/// One `tlsrpt-uri`: `Ok(None)` for a well-formed URI that is not used
/// (another scheme, or too long).
fn rua_uri(uri: &str) -> Result<Option<Rua>, RecordError> {
    if uri.is_empty() {
        return Err(bad_uri(uri, "empty URI"));
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_uri(uri, "white space, control or non-ASCII character"));
    }
    let scheme = uri
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|s| valid_scheme(s))
        .ok_or_else(|| bad_uri(uri, "no scheme"))?;
    if uri.len() > MAX_URI_LEN {
        return Ok(None);
    }
    let rest = &uri[scheme.len() + 1..];
    if scheme.eq_ignore_ascii_case("mailto") {
        mailto_address(rest)
            .map(|a| Some(Rua::Mailto(a)))
            .map_err(|why| bad_uri(uri, why))
    } else if scheme.eq_ignore_ascii_case("https") {
        match https_url(uri) {
            Ok(_) => Ok(Some(Rua::Https(uri.to_owned()))),
            Err(e) => Err(bad_uri(uri, e.as_str())),
        }
    } else {
        Ok(None)
    }
}

/// `scheme` (RFC 3986 3.1): a letter, then letters, digits, `+`, `-`,
/// `.`.
fn valid_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic())
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// The address of a `mailto:` URI after the scheme (RFC 6068 2): the
/// part before `?`, percent-decoded; UTF-8, no control character, an `@`
/// with something on both sides.
fn mailto_address(rest: &str) -> Result<String, &'static str> {
    let to = rest.split_once('?').map_or(rest, |(to, _)| to);
    let bytes = percent_decode(to).ok_or("a `%` not followed by two hex digits")?;
    let address = String::from_utf8(bytes).map_err(|_| "the address is not UTF-8")?;
    if address.chars().any(char::is_control) {
        return Err("a control character in the address");
    }
    match address.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains(char::is_whitespace) =>
        {
            Ok(address)
        }
        _ => Err("not an address `local@domain`"),
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hi = char::from(hex[0]).to_digit(16)?;
            let lo = char::from(hex[1]).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl Record {
    /// The record as a TXT string: `v=TLSRPTv1; rua=` and the URIs joined
    /// by `,`, each `mailto:` address percent-encoded where it must be
    /// (`,`, `;`, `!`, `%`, `?`, white space, controls, non-ASCII). For a
    /// record [`record`] made, [`record`] gives it back.
    pub fn to_text(&self) -> String {
        let uris: Vec<String> = self
            .rua
            .iter()
            .map(|r| match r {
                Rua::Mailto(address) => format!("mailto:{}", percent_encode(address)),
                Rua::Https(url) => url.clone(),
            })
            .collect();
        format!("v=TLSRPTv1; rua={}", uris.join(","))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@$&'()*+=:/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------
// Result and policy types (RFC 8460 4.3, 4.4)
// ---------------------------------------------------------------------

/// Why a TLS session failed (RFC 8460 4.3, `result-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultType {
    /// The receiving MX does not offer STARTTLS (4.3.1).
    StarttlsNotSupported,
    /// The certificate does not match the host name (4.3.1).
    CertificateHostMismatch,
    /// The certificate has expired (4.3.1).
    CertificateExpired,
    /// The certificate does not chain to a trusted root (4.3.1).
    CertificateNotTrusted,
    /// Any other failure to validate the certificate or negotiate TLS
    /// (4.3.1).
    ValidationFailure,
    /// No valid TLSA record, or none matches the certificate (4.3.2).
    TlsaInvalid,
    /// The TLSA records could not be validated with DNSSEC (4.3.2).
    DnssecInvalid,
    /// DANE was required and the receiver does not support it (4.3.2).
    DaneRequired,
    /// The MTA-STS policy could not be fetched (4.3.3).
    StsPolicyFetchError,
    /// The MTA-STS policy is not valid (4.3.3).
    StsPolicyInvalid,
    /// The policy host's certificate is not valid in the Web PKI (4.3.3).
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type, in the RFC's order.
    pub const ALL: [ResultType; 11] = [
        ResultType::StarttlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The value of `result-type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of policy a session was held to (RFC 8460 4.4,
/// `policy-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyType {
    /// DANE TLSA records.
    Tlsa,
    /// An MTA-STS policy.
    Sts,
    /// Neither.
    NoPolicyFound,
}

impl PolicyType {
    /// The value of `policy-type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyType::Tlsa => "tlsa",
            PolicyType::Sts => "sts",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy a session was held to (RFC 8460 4.4): one report row per
/// distinct policy of a domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Policy {
    /// Its kind.
    pub kind: PolicyType,
    /// The policy domain (the recipient domain), lowercase, without a
    /// trailing dot.
    pub domain: String,
    /// `policy-string`: for `sts` the policy's lines, for `tlsa` the TLSA
    /// records in presentation form (`3 1 1 ab12...`); empty for
    /// `no-policy-found`.
    pub strings: Vec<String>,
    /// `mx-host`: for `sts` the policy's `mx` patterns, for `tlsa` the MX
    /// host name(s); empty for `no-policy-found`.
    pub mx_host: Vec<String>,
}

impl Policy {
    /// An MTA-STS policy of `domain`: its lines and `mx` patterns.
    pub fn sts(domain: &str, policy: &crate::mta_sts::Policy) -> Policy {
        Policy {
            kind: PolicyType::Sts,
            domain: normal_domain(domain),
            strings: policy.to_text().lines().map(str::to_owned).collect(),
            mx_host: policy.mx.clone(),
        }
    }

    /// DANE's TLSA `records` for the MX host `mx` of `domain`.
    pub fn tlsa(domain: &str, mx: &str, records: &[crate::dane::Tlsa]) -> Policy {
        Policy {
            kind: PolicyType::Tlsa,
            domain: normal_domain(domain),
            strings: records.iter().map(crate::dane::Tlsa::to_text).collect(),
            mx_host: vec![normal_domain(mx)],
        }
    }

    /// No policy for `domain`.
    pub fn none(domain: &str) -> Policy {
        Policy {
            kind: PolicyType::NoPolicyFound,
            domain: normal_domain(domain),
            strings: Vec::new(),
            mx_host: Vec::new(),
        }
    }

    /// Whether the policy is as [`Tally`] keeps it.
    fn is_normal(&self) -> bool {
        let list_ok = |l: &[String]| {
            l.len() <= MAX_POLICY_STRINGS && l.iter().all(|s| s.len() <= MAX_POLICY_STRING)
        };
        self.domain == normal_domain(&self.domain)
            && list_ok(&self.strings)
            && list_ok(&self.mx_host)
            && self.mx_host.iter().all(|m| *m == normal_domain(m))
    }

    /// The policy as [`Tally`] keeps it: the domain and MX names
    /// lowercase without a trailing dot, the lists cut to
    /// [`MAX_POLICY_STRINGS`] entries of [`MAX_POLICY_STRING`] bytes.
    fn normalized(&self) -> Policy {
        let list = |l: &[String], f: fn(&str) -> String| {
            l.iter()
                .take(MAX_POLICY_STRINGS)
                .map(|s| f(cut(s, MAX_POLICY_STRING)))
                .collect()
        };
        Policy {
            kind: self.kind,
            domain: normal_domain(&self.domain),
            strings: list(&self.strings, str::to_owned),
            mx_host: list(&self.mx_host, normal_domain),
        }
    }
}

/// A domain name lowercase, without a trailing dot.
fn normal_domain(d: &str) -> String {
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

// ---------------------------------------------------------------------
// Counting sessions
// ---------------------------------------------------------------------

/// One failed session (RFC 8460 4.3, `failure-details`); the sessions
/// with equal fields form one row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Failure {
    /// What failed.
    pub result: ResultType,
    /// `sending-mta-ip`: our address for the session.
    pub sending_ip: Option<IpAddr>,
    /// `receiving-mx-hostname`: the MX host name.
    pub receiving_mx: Option<String>,
    /// `receiving-ip`: the MX host's address.
    pub receiving_ip: Option<IpAddr>,
    /// `failure-reason-code`: free text, such as the TLS library's error
    /// (cut to [`MAX_DETAIL`] characters by [`Tally`]). RFC 8460 4.3's
    /// `additional-information` is a URI, so free text goes here.
    pub detail: Option<String>,
}

impl Failure {
    /// The failure as [`Tally`] keeps it: the MX name lowercase without a
    /// trailing dot and at most [`MAX_HOST`] bytes, the detail at most
    /// [`MAX_DETAIL`] characters, empty strings as absent.
    fn normalized(mut self) -> Failure {
        self.receiving_mx = self
            .receiving_mx
            .map(|m| normal_domain(cut(&m, MAX_HOST)))
            .filter(|m| !m.is_empty());
        self.detail = self
            .detail
            .map(|d| match d.char_indices().nth(MAX_DETAIL) {
                Some((at, _)) => d[..at].to_owned(),
                None => d,
            })
            .filter(|d| !d.is_empty());
        self
    }
}

#[derive(Debug, Clone, Default)]
struct Counts {
    successes: u64,
    failures: u64,
    rows: BTreeMap<Failure, u64>,
}

/// The sessions of one reporting interval, counted per policy domain and
/// per policy (RFC 8460 4). Bounded: see [`MAX_DOMAINS`],
/// [`MAX_POLICIES_PER_DOMAIN`] and [`MAX_FAILURE_ROWS`].
#[derive(Debug, Clone, Default)]
pub struct Tally {
    domains: BTreeMap<String, BTreeMap<Policy, Counts>>,
    dropped: u64,
}

/// The report of one policy domain (RFC 8460 4): what [`to_json`]
/// writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainReport {
    /// The policy domain, lowercase.
    pub domain: String,
    /// One entry per policy the sessions were held to, in [`Policy`]
    /// order.
    pub policies: Vec<PolicyResult>,
}

/// The sessions under one policy (RFC 8460 4.4, 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    /// The policy.
    pub policy: Policy,
    /// `total-successful-session-count`.
    pub successes: u64,
    /// `total-failure-session-count` (every failure, with or without a
    /// row in `details`).
    pub failures: u64,
    /// `failure-details`: each distinct failure and its
    /// `failed-session-count`, in [`Failure`] order, at most
    /// [`MAX_FAILURE_ROWS`].
    pub details: Vec<(Failure, u64)>,
}

impl Tally {
    /// Counts a session that negotiated TLS as `policy` asked.
    pub fn success(&mut self, policy: &Policy) {
        if let Some(c) = self.counts(policy) {
            c.successes = c.successes.saturating_add(1);
        }
    }

    /// Counts a session under `policy` that failed as `f` says.
    pub fn failure(&mut self, policy: &Policy, f: Failure) {
        let Some(c) = self.counts(policy) else {
            return;
        };
        c.failures = c.failures.saturating_add(1);
        let f = f.normalized();
        if let Some(n) = c.rows.get_mut(&f) {
            *n = n.saturating_add(1);
        } else if c.rows.len() < MAX_FAILURE_ROWS {
            c.rows.insert(f, 1);
        }
    }

    /// The counts of `policy`, made when there is room.
    fn counts(&mut self, policy: &Policy) -> Option<&mut Counts> {
        let normalized;
        let policy = if policy.is_normal() {
            policy
        } else {
            normalized = policy.normalized();
            &normalized
        };
        if !self.domains.contains_key(&policy.domain) {
            if self.domains.len() >= MAX_DOMAINS {
                self.dropped = self.dropped.saturating_add(1);
                return None;
            }
            self.domains.insert(policy.domain.clone(), BTreeMap::new());
        }
        let policies = self.domains.get_mut(&policy.domain)?;
        if !policies.contains_key(policy) {
            if policies.len() >= MAX_POLICIES_PER_DOMAIN {
                self.dropped = self.dropped.saturating_add(1);
                return None;
            }
            policies.insert(policy.clone(), Counts::default());
        }
        policies.get_mut(policy)
    }

    /// Whether no session was counted.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The policy domains with counts, in order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// Sessions not counted because a bound was reached (a new domain
    /// past [`MAX_DOMAINS`], a new policy past
    /// [`MAX_POLICIES_PER_DOMAIN`]) since the last [`Tally::take`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The reports, one per domain in domain order, leaving the tally
    /// empty (and [`Tally::dropped`] at 0).
    pub fn take(&mut self) -> Vec<DomainReport> {
        self.dropped = 0;
        std::mem::take(&mut self.domains)
            .into_iter()
            .map(|(domain, policies)| DomainReport {
                domain,
                policies: policies
                    .into_iter()
                    .map(|(policy, c)| PolicyResult {
                        policy,
                        successes: c.successes,
                        failures: c.failures,
                        details: c.rows.into_iter().collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------
// The report (RFC 8460 4)
// ---------------------------------------------------------------------

/// What a report says about itself (RFC 8460 4.1).
#[derive(Debug, Clone, Copy)]
pub struct ReportMeta<'a> {
    /// `organization-name`: who reports.
    pub organization: &'a str,
    /// `contact-info`: an address to write to about the report.
    pub contact: &'a str,
    /// `report-id`: unique per report.
    pub report_id: &'a str,
    /// Start of the interval (`date-range.start-datetime`), Unix seconds.
    pub start: u64,
    /// End of the interval (`date-range.end-datetime`), Unix seconds.
    pub end: u64,
}

/// A UTC date-time in RFC 3339 form (`2016-04-01T00:00:00Z`); times past
/// [`MAX_TIME`] are written as it.
pub fn datetime(unix: u64) -> String {
    // MAX_TIME fits an i64.
    let d = DateTime::from_unix_timestamp(unix.min(MAX_TIME) as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    )
}

/// Writes compact JSON: commas go where a value follows another.
struct Json {
    out: String,
    /// Just after `{`, `[` or a key: the next value needs no comma.
    fresh: bool,
}

impl Json {
    fn sep(&mut self) {
        if !self.fresh {
            self.out.push(',');
        }
        self.fresh = false;
    }

    fn open(&mut self, c: char) {
        self.sep();
        self.out.push(c);
        self.fresh = true;
    }

    fn close(&mut self, c: char) {
        self.out.push(c);
        self.fresh = false;
    }

    fn key(&mut self, k: &str) {
        self.sep();
        json_string(&mut self.out, k);
        self.out.push(':');
        self.fresh = true;
    }

    fn str(&mut self, s: &str) {
        self.sep();
        json_string(&mut self.out, s);
    }

    fn num(&mut self, n: u64) {
        self.sep();
        let _ = write!(self.out, "{n}");
    }

    fn member(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }

    fn strings(&mut self, k: &str, list: &[String]) {
        if list.is_empty() {
            return;
        }
        self.key(k);
        self.open('[');
        for s in list {
            self.str(s);
        }
        self.close(']');
    }
}

/// A JSON string (RFC 8259 7): `"` and `\` escaped, control characters,
/// DEL, U+2028 and U+2029 as `\uXXXX` (the short forms for `\n`, `\r`,
/// `\t`); other characters as UTF-8.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON report on `report` (RFC 8460 4): `organization-name`,
/// `date-range`, `contact-info`, `report-id`, and per policy its
/// `policy` (`policy-type`, `policy-string`, `policy-domain`, `mx-host`),
/// `summary` and `failure-details`. Members without a value (an empty
/// list, an absent address or text) are left out. Compact, UTF-8.
pub fn to_json(meta: &ReportMeta<'_>, report: &DomainReport) -> String {
    let mut j = Json {
        out: String::with_capacity(512),
        fresh: true,
    };
    j.open('{');
    j.member("organization-name", meta.organization);
    j.key("date-range");
    j.open('{');
    j.member("start-datetime", &datetime(meta.start));
    j.member("end-datetime", &datetime(meta.end));
    j.close('}');
    j.member("contact-info", meta.contact);
    j.member("report-id", meta.report_id);
    j.key("policies");
    j.open('[');
    for p in &report.policies {
        j.open('{');
        j.key("policy");
        j.open('{');
        j.member("policy-type", p.policy.kind.as_str());
        j.strings("policy-string", &p.policy.strings);
        j.member("policy-domain", &p.policy.domain);
        j.strings("mx-host", &p.policy.mx_host);
        j.close('}');
        j.key("summary");
        j.open('{');
        j.key("total-successful-session-count");
        j.num(p.successes);
        j.key("total-failure-session-count");
        j.num(p.failures);
        j.close('}');
        if !p.details.is_empty() {
            j.key("failure-details");
            j.open('[');
            for (f, count) in &p.details {
                j.open('{');
                j.member("result-type", f.result.as_str());
                if let Some(ip) = f.sending_ip {
                    j.member("sending-mta-ip", &ip.to_string());
                }
                if let Some(mx) = &f.receiving_mx {
                    j.member("receiving-mx-hostname", mx);
                }
                if let Some(ip) = f.receiving_ip {
                    j.member("receiving-ip", &ip.to_string());
                }
                j.key("failed-session-count");
                j.num(*count);
                if let Some(d) = &f.detail {
                    j.member("failure-reason-code", d);
                }
                j.close('}');
            }
            j.close(']');
        }
        j.close('}');
    }
    j.close(']');
    j.close('}');
    j.out
}

// ---------------------------------------------------------------------
// gzip (RFC 1952) and the file name (RFC 8460 5.1)
// ---------------------------------------------------------------------

/// The gzip header: magic, deflate, no flags, no time, no extra flags,
/// unknown OS (RFC 1952 2.3).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// `data` as a gzip member (RFC 1952): the header, the raw deflate
/// stream (level 6), then the CRC-32 and the length mod 2^32,
/// little-endian. Deterministic: no time or name in the header.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 6);
    let mut out = Vec::with_capacity(deflated.len() + 18);
    out.extend_from_slice(&GZIP_HEADER);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The data of a gzip member as [`gzip`] writes it (no optional header
/// fields), at most `limit` bytes; `None` when it is not one, is
/// larger, or its CRC-32 or length do not match.
pub(crate) fn gunzip(gz: &[u8], limit: usize) -> Option<Vec<u8>> {
    let body = gz.strip_prefix(&GZIP_HEADER[..4])?;
    let (deflated, trailer) = body
        .get(6..)?
        .split_at_checked(body.len().checked_sub(14)?)?;
    let data = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, limit).ok()?;
    let crc = u32::from_le_bytes(trailer[..4].try_into().ok()?);
    let size = u32::from_le_bytes(trailer[4..].try_into().ok()?);
    (crc == crc32fast::hash(&data) && size == data.len() as u32).then_some(data)
}

/// The report's file name (RFC 8460 5.1):
/// `submitter!policy-domain!start!end!unique.json.gz`, the times in Unix
/// seconds. `!`, `/`, `\`, white space and control characters are
/// removed from `submitter` and `policy_domain`; `unique` keeps only
/// ASCII letters and digits (the grammar's `unique-id`) and is left out
/// with its `!` when nothing remains.
pub fn filename(
    submitter: &str,
    policy_domain: &str,
    start: u64,
    end: u64,
    unique: &str,
) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|&c| !matches!(c, '!' | '/' | '\\') && !c.is_control() && !c.is_whitespace())
            .collect()
    };
    let unique: String = unique.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut name = format!(
        "{}!{}!{start}!{end}",
        clean(submitter),
        clean(policy_domain)
    );
    if !unique.is_empty() {
        name.push('!');
        name.push_str(&unique);
    }
    name.push_str(".json.gz");
    name
}

// ---------------------------------------------------------------------
// Delivery by mail (RFC 8460 5.3)
// ---------------------------------------------------------------------

/// The envelope of a report message.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    /// The From address.
    pub from: &'a str,
    /// The To address (a `mailto:` destination).
    pub to: &'a str,
    /// Who submits the report (our host or domain name): the
    /// `TLS-Report-Submitter` and the file name's first part.
    pub submitter: &'a str,
    /// The Date, Unix seconds.
    pub date: u64,
    /// The Message-ID, without `<>`.
    pub message_id: &'a str,
}

/// The report as a message (RFC 8460 5.3): From, To, Date, Message-ID,
/// `Subject: Report Domain: D Submitter: S Report-ID: <ID>`,
/// `TLS-Report-Domain`, `TLS-Report-Submitter`,
/// `Auto-Submitted: auto-generated`, and a `multipart/report;
/// report-type=tlsrpt` body of a text part saying what it is and the
/// gzip'd JSON ([`MEDIA_TYPE`]) named by [`filename`]. Not signed: the
/// caller DKIM-signs it (RFC 8460 5.3 requires it).
pub fn message(
    meta: &MessageMeta<'_>,
    report_meta: &ReportMeta<'_>,
    report: &DomainReport,
) -> Vec<u8> {
    let json = to_json(report_meta, report);
    let name = filename(
        meta.submitter,
        &report.domain,
        report_meta.start,
        report_meta.end,
        report_meta.report_id,
    );
    let date = DateTime::from_unix_timestamp(meta.date.min(MAX_TIME) as i64);
    Builder::new()
        .from(Mailbox::new(None, meta.from))
        .to(Mailbox::new(None, meta.to))
        .date(date)
        .message_id(meta.message_id)
        .subject(format!(
            "Report Domain: {} Submitter: {} Report-ID: <{}>",
            report.domain, meta.submitter, report_meta.report_id
        ))
        .header("TLS-Report-Domain", &report.domain)
        .header("TLS-Report-Submitter", meta.submitter)
        .header("Auto-Submitted", "auto-generated")
        .multipart("report")
        .multipart_param("report-type", "tlsrpt")
        .text(format!(
            "This is an aggregate TLS report (RFC 8460) from {}\r\n\
             on the SMTP TLS sessions to {}\r\n\
             from {} to {}.\r\n\
             The report is the attached file {name}.\r\n",
            meta.submitter,
            report.domain,
            datetime(report_meta.start),
            datetime(report_meta.end),
        ))
        .attachment(name, MEDIA_TYPE, gzip(json.as_bytes()))
        .build()
}

// ---------------------------------------------------------------------
// Delivery over HTTPS (RFC 8460 5.4)
// ---------------------------------------------------------------------

/// Longest `https:` URL accepted, in bytes.
pub const MAX_URL_LEN: usize = MAX_URI_LEN;

/// Why an `https:` destination cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `https`.
    #[error("the URL is not https:")]
    NotHttps,
    /// Longer than [`MAX_URL_LEN`].
    #[error("the URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// White space, a control or a non-ASCII character.
    #[error("the URL holds white space, a control or a non-ASCII character")]
    BadCharacter,
    /// `user@` before the host.
    #[error("the URL has user information before the host")]
    UserInfo,
    /// No `//host` after the scheme.
    #[error("the URL has no host")]
    NoHost,
    /// A host that is neither a name nor an IP literal.
    #[error("the URL's host is not a host name or an IP address")]
    BadHost,
    /// A port that is not 1 to 65535.
    #[error("the URL's port is not a number from 1 to 65535")]
    BadPort,
}

impl UrlError {
    fn as_str(self) -> &'static str {
        match self {
            UrlError::NotHttps => "not https:",
            UrlError::TooLong => "too long",
            UrlError::BadCharacter => "white space, control or non-ASCII character",
            UrlError::UserInfo => "user information before the host",
            UrlError::NoHost => "no host",
            UrlError::BadHost => "not a host name or IP address",
            UrlError::BadPort => "port not from 1 to 65535",
        }
    }
}

/// An `https:` URL taken apart.
struct HttpsUrl<'a> {
    /// Lowercase; an IPv6 address without brackets.
    host: String,
    ipv6: bool,
    port: u16,
    /// Path and query; `/` at least.
    target: &'a str,
}

/// Takes an `https://host[:port][/path][?query][#fragment]` URL apart
/// (RFC 3986 3; the fragment is dropped).
fn https_url(url: &str) -> Result<HttpsUrl<'_>, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlError::BadCharacter);
    }
    let rest = match url.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        _ => return Err(UrlError::NotHttps),
    };
    let rest = rest.strip_prefix("//").ok_or(UrlError::NoHost)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port, ipv6) = if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or(UrlError::BadHost)?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::BadHost);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::BadHost)?),
        };
        (addr, port, true)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p), false),
            None => (authority, None, false),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !ipv6 && !valid_host(host) {
        return Err(UrlError::BadHost);
    }
    let port = match port {
        None | Some("") => 443,
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or(UrlError::BadPort)?,
        Some(_) => return Err(UrlError::BadPort),
    };
    let target = rest.split_once('#').map_or(rest, |(t, _)| t);
    Ok(HttpsUrl {
        host: host.to_ascii_lowercase(),
        ipv6,
        port,
        target,
    })
}

/// A host name or IPv4 address: labels of letters, digits, `-` and `_`,
/// separated by single dots, one trailing dot allowed.
fn valid_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// The HTTP/1.1 request that delivers a report to an `https:`
/// destination (RFC 8460 5.4), and where to send it: the host (lowercase;
/// an IPv6 address without brackets; the TLS certificate must be valid
/// for it) and the port (443 unless the URL says otherwise).
///
/// The request is a `POST` of the URL's path and query with `Host`,
/// `Content-Type: application/tlsrpt+gzip`, `Content-Length`,
/// `User-Agent: scop` and `Connection: close`, then `body` (the
/// [`gzip`]'d report). URLs with user information, white space,
/// controls or non-ASCII characters, or another scheme, are refused.
pub fn https_request(url: &str, body: &[u8]) -> Result<(String, u16, Vec<u8>), UrlError> {
    let u = https_url(url)?;
    let target = if u.target.starts_with('/') {
        u.target.to_owned()
    } else {
        format!("/{}", u.target)
    };
    let mut host_header = if u.ipv6 {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    if u.port != 443 {
        let _ = write!(host_header, ":{}", u.port);
    }
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: {MEDIA_TYPE}\r\n\
         Content-Length: {}\r\nUser-Agent: scop\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    Ok((u.host, u.port, request))
}

/// Whether the server took the report, from the response bytes read so
/// far (RFC 8460 5.4): `Some(true)` for a 2xx status, `Some(false)` for
/// any other final status or a malformed response, `None` while the head
/// is incomplete. Interim 1xx responses are skipped. A head over
/// [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields is `Some(false)`, so the
/// caller never needs to read more than that.
pub fn https_accepted(head: &[u8]) -> Option<bool> {
    let mut at = 0;
    loop {
        let rest = &head[at..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(rest) {
            Ok(httparse::Status::Complete(n)) => {
                let code = response.code.unwrap_or(0);
                if (100..200).contains(&code) && code != 101 {
                    at += n;
                    continue;
                }
                return Some((200..300).contains(&code));
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => return None,
            Ok(httparse::Status::Partial) | Err(_) => return Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn mailto(a: &str) -> Rua {
        Rua::Mailto(a.into())
    }

    fn https(u: &str) -> Rua {
        Rua::Https(u.into())
    }

    fn rua(txt: &str) -> Result<Vec<Rua>, RecordError> {
        record(&[txt]).map(|r| r.rua)
    }

    #[test]
    fn rfc_8460_3_record_examples() {
        assert_eq!(
            rua("v=TLSRPTv1;rua=mailto:reports@example.com"),
            Ok(vec![mailto("reports@example.com")])
        );
        assert_eq!(
            rua("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"),
            Ok(vec![https("https://reporting.example.com/v1/tlsrpt")])
        );
    }

    #[test]
    fn record_selection() {
        let good = "v=TLSRPTv1; rua=mailto:a@b.example";
        // Other strings of the name are ignored.
        for others in [
            &["v=spf1 -all", good][..],
            &[good, "v=TLSRPTv10; rua=mailto:x@y.example"],
            &[" v=TLSRPTv1; rua=mailto:x@y.example", good],
            &["v=tlsrptv1; rua=mailto:x@y.example", good, ""],
        ] {
            assert_eq!(
                record(others).map(|r| r.rua),
                Ok(vec![mailto("a@b.example")]),
                "{others:?}"
            );
        }
        assert_eq!(record(&[]), Err(RecordError::None));
        assert_eq!(record(&["v=spf1 -all", ""]), Err(RecordError::None));
        // Several records, even equal or broken ones: none.
        assert_eq!(record(&[good, good]), Err(RecordError::Several(2)));
        assert_eq!(
            record(&[good, "v=TLSRPTv1;;", "v=TLSRPTv1"]),
            Err(RecordError::Several(3))
        );
    }

    #[test]
    fn record_syntax_accepted() {
        let a = || mailto("a@b.example");
        for (txt, want) in [
            ("v=TLSRPTv1;rua=mailto:a@b.example;", vec![a()]),
            ("v=TLSRPTv1 ;\trua=mailto:a@b.example \t; \t", vec![a()]),
            // Extensions are ignored, before or after.
            (
                "v=TLSRPTv1; ext=1; rua=mailto:a@b.example; x-Y.z_1=!\"#:<>~",
                vec![a()],
            ),
            // Names are case-sensitive: RUA is an extension.
            (
                "v=TLSRPTv1; RUA=mailto:x@y.example; rua=mailto:a@b.example",
                vec![a()],
            ),
            // Schemes are not.
            (
                "v=TLSRPTv1; rua=MAILTO:a@b.example,HTTPS://R.example/x",
                vec![a(), https("HTTPS://R.example/x")],
            ),
            // Lists with white space, other schemes ignored.
            (
                "v=TLSRPTv1; rua=ftp://x.example/ , mailto:a@b.example,\thttps://r.example:8443/p?q=1",
                vec![a(), https("https://r.example:8443/p?q=1")],
            ),
            // Header fields of the mailto URI are dropped; escapes decoded.
            (
                "v=TLSRPTv1; rua=mailto:a@b.example?subject=hi%21",
                vec![a()],
            ),
            (
                "v=TLSRPTv1; rua=mailto:tls%2Crpt%3B%21%20x@b.example",
                vec![mailto("tls,rpt;! x@b.example")],
            ),
            (
                "v=TLSRPTv1; rua=mailto:%C3%A9t%c3%a9@b.example",
                vec![mailto("\u{e9}t\u{e9}@b.example")],
            ),
            // Two rua fields count; duplicates go.
            (
                "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example,mailto:a@b.example",
                vec![a(), mailto("c@d.example")],
            ),
        ] {
            assert_eq!(rua(txt), Ok(want), "{txt:?}");
        }
        // At most MAX_RUA, the first ones.
        let many: Vec<String> = (0..10).map(|i| format!("mailto:r{i}@x.example")).collect();
        let got = rua(&format!("v=TLSRPTv1; rua={}", many.join(","))).unwrap();
        assert_eq!(got.len(), MAX_RUA);
        assert_eq!(got[0], mailto("r0@x.example"));
        assert_eq!(
            got[MAX_RUA - 1],
            mailto(&format!("r{}@x.example", MAX_RUA - 1))
        );
        // A URI over MAX_URI_LEN is skipped.
        let long = format!("mailto:{}@x.example", "a".repeat(MAX_URI_LEN));
        assert_eq!(
            rua(&format!("v=TLSRPTv1; rua={long},mailto:a@b.example")),
            Ok(vec![a()])
        );
        assert_eq!(
            rua(&format!("v=TLSRPTv1; rua={long}")),
            Err(RecordError::NoUsableRua)
        );
    }

    fn is_bad_uri(r: Result<Vec<Rua>, RecordError>, why_part: &str) -> bool {
        matches!(r, Err(RecordError::BadUri { why, .. }) if why.contains(why_part))
    }

    #[test]
    fn record_errors() {
        for (txt, want) in [
            ("v=TLSRPTv1", RecordError::NoRua),
            ("v=TLSRPTv1;", RecordError::NoRua),
            ("v=TLSRPTv1; ext=1", RecordError::NoRua),
            ("v=TLSRPTv1; Rua=mailto:a@b.example", RecordError::NoRua),
            (
                "v=TLSRPTv1;;rua=mailto:a@b.example",
                RecordError::EmptyField,
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@b.example;;",
                RecordError::EmptyField,
            ),
            (
                "v=TLSRPTv1 x; rua=mailto:a@b.example",
                RecordError::BadVersion("v=TLSRPTv1 x".into()),
            ),
            (
                "v=TLSRPTv1; v=TLSRPTv1; rua=mailto:a@b.example",
                RecordError::MisplacedVersion,
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@b.example; junk",
                RecordError::BadField("junk".into()),
            ),
            (
                "v=TLSRPTv1; _x=1; rua=mailto:a@b.example",
                RecordError::BadField("_x=1".into()),
            ),
            (
                "v=TLSRPTv1; rua =mailto:a@b.example",
                RecordError::BadField("rua =mailto:a@b.example".into()),
            ),
            (
                "v=TLSRPTv1; =x; rua=mailto:a@b.example",
                RecordError::BadField("=x".into()),
            ),
            (
                "v=TLSRPTv1; abcdefghijklmnopqrstuvwxyz0123456=1; rua=mailto:a@b.example",
                RecordError::BadField("abcdefghijklmnopqrstuvwxyz0123456=1".into()),
            ),
            (
                "v=TLSRPTv1; x=; rua=mailto:a@b.example",
                RecordError::BadExtension("x".into()),
            ),
            (
                "v=TLSRPTv1; x=a b; rua=mailto:a@b.example",
                RecordError::BadExtension("x".into()),
            ),
            (
                "v=TLSRPTv1; x=a=b; rua=mailto:a@b.example",
                RecordError::BadExtension("x".into()),
            ),
            (
                "v=TLSRPTv1; x=\u{e9}; rua=mailto:a@b.example",
                RecordError::BadExtension("x".into()),
            ),
            ("v=TLSRPTv1; rua=ftp://x.example/", RecordError::NoUsableRua),
            (
                "v=TLSRPTv1; rua=http://x.example/, foo:bar",
                RecordError::NoUsableRua,
            ),
        ] {
            assert_eq!(rua(txt), Err(want), "{txt:?}");
        }
        for (txt, why) in [
            ("v=TLSRPTv1; rua=", "empty"),
            (
                "v=TLSRPTv1; rua=mailto:a@b.example,,mailto:c@d.example",
                "empty",
            ),
            ("v=TLSRPTv1; rua=mailto:a@b.example,", "empty"),
            ("v=TLSRPTv1; rua=reports@example.com", "no scheme"),
            ("v=TLSRPTv1; rua=1x:y", "no scheme"),
            ("v=TLSRPTv1; rua=:x", "no scheme"),
            ("v=TLSRPTv1; rua=mailto:a b@c.example", "white space"),
            ("v=TLSRPTv1; rua=mailto:\u{e9}@c.example", "non-ASCII"),
            ("v=TLSRPTv1; rua=mailto:", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:?to=a@b.example", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:nobody", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:@b.example", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:a@", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:a@b%20c", "local@domain"),
            ("v=TLSRPTv1; rua=mailto:a%2@b.example", "two hex"),
            ("v=TLSRPTv1; rua=mailto:a%zz@b.example", "two hex"),
            ("v=TLSRPTv1; rua=mailto:a%0D%0A@b.example", "control"),
            ("v=TLSRPTv1; rua=mailto:a%00@b.example", "control"),
            ("v=TLSRPTv1; rua=mailto:a%FF@b.example", "UTF-8"),
            ("v=TLSRPTv1; rua=https:r.example/x", "no host"),
            ("v=TLSRPTv1; rua=https:///x", "no host"),
            ("v=TLSRPTv1; rua=https://u:p@r.example/", "user information"),
            ("v=TLSRPTv1; rua=https://r.example:0/", "port"),
            ("v=TLSRPTv1; rua=https://r.example:99999/", "port"),
            ("v=TLSRPTv1; rua=https://r..example/", "host"),
        ] {
            assert!(is_bad_uri(rua(txt), why), "{txt:?}: {:?}", rua(txt));
        }
        // Every message names what is wrong.
        for (e, needle) in [
            (RecordError::None, "no TLSRPT record"),
            (RecordError::Several(2), "2 TLSRPT records"),
            (RecordError::BadVersion("v=TLSRPTv1x".into()), "v=TLSRPTv1x"),
            (RecordError::MisplacedVersion, "`v`"),
            (RecordError::EmptyField, "empty field"),
            (RecordError::BadField("junk".into()), "junk"),
            (RecordError::BadExtension("x".into()), "\"x\""),
            (RecordError::NoRua, "no `rua`"),
            (bad_uri("ftp:", "no host"), "\"ftp:\" is malformed: no host"),
            (RecordError::NoUsableRua, "mailto: or https:"),
        ] {
            assert!(e.to_string().contains(needle), "{e}");
        }
        // Untrusted text is shortened in errors.
        let long = format!("v=TLSRPTv1; {}", "x".repeat(500));
        let Err(RecordError::BadField(field)) = rua(&long) else {
            panic!("a field without `=`");
        };
        assert!(field.len() < 100, "{field}");
    }

    #[test]
    fn record_text_round_trip() {
        let r = Record {
            rua: vec![
                mailto("tls,rpt;! x?%@b.example"),
                https("https://r.example/p?a=1&b=2"),
            ],
        };
        let text = r.to_text();
        assert_eq!(
            text,
            "v=TLSRPTv1; rua=mailto:tls%2Crpt%3B%21%20x%3F%25@b.example,https://r.example/p?a=1&b=2"
        );
        assert_eq!(record(&[&text]), Ok(r));
    }

    #[test]
    fn rfc_8460_4_3_result_types_and_4_4_policy_types() {
        let names: Vec<String> = ResultType::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        for (t, s) in [
            (PolicyType::Tlsa, "tlsa"),
            (PolicyType::Sts, "sts"),
            (PolicyType::NoPolicyFound, "no-policy-found"),
        ] {
            assert_eq!((t.as_str(), t.to_string()), (s, s.to_string()));
        }
    }

    fn sts_policy() -> Policy {
        let p = crate::mta_sts::Policy::parse(
            b"version: STSv1\nmode: testing\nmx: *.mail.company-y.example\nmax_age: 86400\n",
        )
        .unwrap();
        Policy::sts("Company-Y.Example.", &p)
    }

    #[test]
    fn policy_constructors() {
        assert_eq!(
            sts_policy(),
            Policy {
                kind: PolicyType::Sts,
                domain: "company-y.example".into(),
                strings: vec![
                    "version: STSv1".into(),
                    "mode: testing".into(),
                    "mx: *.mail.company-y.example".into(),
                    "max_age: 86400".into(),
                ],
                mx_host: vec!["*.mail.company-y.example".into()],
            }
        );
        let tlsa = crate::dane::Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab, 0xcd],
        };
        assert_eq!(
            Policy::tlsa("B.example", "MX.b.example.", &[tlsa]),
            Policy {
                kind: PolicyType::Tlsa,
                domain: "b.example".into(),
                strings: vec!["3 1 1 abcd".into()],
                mx_host: vec!["mx.b.example".into()],
            }
        );
        let none = Policy::none("C.example");
        assert_eq!(
            (
                none.kind,
                none.domain.as_str(),
                none.strings.len(),
                none.mx_host.len()
            ),
            (PolicyType::NoPolicyFound, "c.example", 0, 0)
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(result: ResultType, mx: &str) -> Failure {
        Failure {
            result,
            sending_ip: Some(ip("192.0.2.1")),
            receiving_mx: Some(mx.into()),
            receiving_ip: Some(ip("2001:db8::25")),
            detail: Some("handshake failure".into()),
        }
    }

    #[test]
    fn tally_counts_per_domain_and_policy() {
        let mut t = Tally::default();
        assert!(t.is_empty());
        assert!(t.take().is_empty());
        let sts = sts_policy();
        let none_b = Policy::none("b.example");
        for _ in 0..3 {
            t.success(&sts);
        }
        t.success(&none_b);
        // Same failure twice (the MX name's case and dot differ): one row.
        t.failure(&sts, fail(ResultType::CertificateExpired, "mx1.example"));
        t.failure(&sts, fail(ResultType::CertificateExpired, "MX1.example."));
        t.failure(&sts, fail(ResultType::StarttlsNotSupported, "mx2.example"));
        // The same policy with the domain in another case counts with it.
        let mut upper = sts.clone();
        upper.domain = "COMPANY-Y.example.".into();
        t.success(&upper);
        // A long detail is cut; an empty one is absent.
        let mut long = fail(ResultType::ValidationFailure, "mx3.example");
        long.detail = Some("\u{e9}".repeat(3 * MAX_DETAIL));
        t.failure(&none_b, long);
        let mut empty = fail(ResultType::ValidationFailure, "");
        empty.detail = Some(String::new());
        t.failure(&none_b, empty);
        assert!(!t.is_empty());
        assert_eq!(
            t.domains().collect::<Vec<_>>(),
            ["b.example", "company-y.example"]
        );
        assert_eq!(t.dropped(), 0);
        let reports = t.take();
        assert!(t.is_empty() && t.domains().next().is_none());
        assert_eq!(reports.len(), 2);
        let b = &reports[0];
        assert_eq!(b.domain, "b.example");
        assert_eq!(b.policies.len(), 1);
        let p = &b.policies[0];
        assert_eq!((p.successes, p.failures, p.details.len()), (1, 2, 2));
        // Rows in Failure order: no MX name first.
        let (empty_row, _) = &p.details[0];
        let (cut_row, n) = &p.details[1];
        assert_eq!(*n, 1);
        assert_eq!(cut_row.detail.as_ref().unwrap().chars().count(), MAX_DETAIL);
        assert_eq!((&empty_row.detail, &empty_row.receiving_mx), (&None, &None));
        let y = &reports[1];
        assert_eq!(y.policies.len(), 1);
        let p = &y.policies[0];
        assert_eq!(p.policy, sts);
        assert_eq!((p.successes, p.failures), (4, 3));
        assert_eq!(
            p.details,
            vec![
                (fail(ResultType::StarttlsNotSupported, "mx2.example"), 1),
                (fail(ResultType::CertificateExpired, "mx1.example"), 2),
            ]
        );
    }

    #[test]
    fn tally_policies_are_normalized() {
        let mut t = Tally::default();
        let p = Policy {
            kind: PolicyType::Tlsa,
            domain: "X.example.".into(),
            strings: vec!["s".repeat(MAX_POLICY_STRING + 10); MAX_POLICY_STRINGS + 5],
            mx_host: vec!["MX.X.example.".into()],
        };
        t.success(&p);
        let r = t.take();
        let kept = &r[0].policies[0].policy;
        assert_eq!(kept.domain, "x.example");
        assert_eq!(kept.mx_host, ["mx.x.example"]);
        assert_eq!(kept.strings.len(), MAX_POLICY_STRINGS);
        assert!(kept.strings.iter().all(|s| s.len() == MAX_POLICY_STRING));
        assert!(kept.is_normal());
        assert!(!p.is_normal());
    }

    #[test]
    fn tally_bounds() {
        let mut t = Tally::default();
        for i in 0..MAX_DOMAINS + 5 {
            t.success(&Policy::none(&format!("d{i}.example")));
        }
        assert_eq!(t.domains().count(), MAX_DOMAINS);
        assert_eq!(t.dropped(), 5);
        // A domain already there still counts.
        t.failure(
            &Policy::none("d0.example"),
            fail(ResultType::DaneRequired, "m"),
        );
        assert_eq!(t.dropped(), 5);
        let reports = t.take();
        assert_eq!(reports.len(), MAX_DOMAINS);
        assert_eq!(t.dropped(), 0);
        let d0 = reports.iter().find(|r| r.domain == "d0.example").unwrap();
        assert_eq!(d0.policies[0].failures, 1);

        // Policies per domain.
        let policy = |i: usize| Policy {
            mx_host: vec![format!("mx{i}.a.example")],
            ..Policy::none("a.example")
        };
        for i in 0..MAX_POLICIES_PER_DOMAIN + 3 {
            t.success(&policy(i));
            t.failure(&policy(i), fail(ResultType::TlsaInvalid, "m"));
        }
        assert_eq!(t.dropped(), 6);
        let r = t.take();
        assert_eq!(r[0].policies.len(), MAX_POLICIES_PER_DOMAIN);
        assert!(
            r[0].policies
                .iter()
                .all(|p| p.successes == 1 && p.failures == 1)
        );

        // Failure rows per policy: the total counts every failure.
        let p = Policy::none("a.example");
        for i in 0..MAX_FAILURE_ROWS + 50 {
            t.failure(&p, fail(ResultType::ValidationFailure, &format!("mx{i}")));
        }
        t.failure(&p, fail(ResultType::ValidationFailure, "mx0"));
        let r = t.take();
        let p = &r[0].policies[0];
        assert_eq!(p.failures, MAX_FAILURE_ROWS as u64 + 51);
        assert_eq!(p.details.len(), MAX_FAILURE_ROWS);
        assert_eq!(
            p.details.iter().map(|(_, n)| n).sum::<u64>(),
            MAX_FAILURE_ROWS as u64 + 1
        );
    }

    fn meta() -> ReportMeta<'static> {
        ReportMeta {
            organization: "Company-X",
            contact: "sts-reporting@company-x.example",
            report_id: "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
            start: 1_459_468_800,
            end: 1_459_555_199,
        }
    }

    fn parse_json(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    /// The example of RFC 8460 appendix B, with `failure-reason-code` (RFC
    /// 8460 4.3) where the example writes `failure-error-code`, and
    /// without its `additional-information` URI.
    #[test]
    fn rfc_8460_appendix_b_report_shape() {
        let mut t = Tally::default();
        let p = sts_policy();
        for _ in 0..5326 {
            t.success(&p);
        }
        let expired = Failure {
            result: ResultType::CertificateExpired,
            sending_ip: Some(ip("2001:db8:abcd:0012::1")),
            receiving_mx: Some("mx1.mail.company-y.example".into()),
            receiving_ip: None,
            detail: None,
        };
        let starttls = Failure {
            result: ResultType::StarttlsNotSupported,
            sending_ip: Some(ip("2001:db8:abcd:0013::1")),
            receiving_mx: Some("mx2.mail.company-y.example".into()),
            receiving_ip: Some(ip("203.0.113.56")),
            detail: None,
        };
        let validation = Failure {
            result: ResultType::ValidationFailure,
            sending_ip: Some(ip("198.51.100.62")),
            receiving_mx: Some("mx-backup.mail.company-y.example".into()),
            receiving_ip: Some(ip("203.0.113.58")),
            detail: Some("X509_V_ERR_PROOF_OF_POLICY".into()),
        };
        for (f, n) in [(expired, 100), (starttls, 200), (validation, 3)] {
            for _ in 0..n {
                t.failure(&p, f.clone());
            }
        }
        let reports = t.take();
        assert_eq!(reports.len(), 1);
        let got = parse_json(&to_json(&meta(), &reports[0]));
        let want = json!({
            "organization-name": "Company-X",
            "date-range": {
                "start-datetime": "2016-04-01T00:00:00Z",
                "end-datetime": "2016-04-01T23:59:59Z"
            },
            "contact-info": "sts-reporting@company-x.example",
            "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
            "policies": [{
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing",
                        "mx: *.mail.company-y.example", "max_age: 86400"],
                    "policy-domain": "company-y.example",
                    "mx-host": ["*.mail.company-y.example"]
                },
                "summary": {
                    "total-successful-session-count": 5326,
                    "total-failure-session-count": 303
                },
                "failure-details": [{
                    "result-type": "starttls-not-supported",
                    "sending-mta-ip": "2001:db8:abcd:13::1",
                    "receiving-mx-hostname": "mx2.mail.company-y.example",
                    "receiving-ip": "203.0.113.56",
                    "failed-session-count": 200
                }, {
                    "result-type": "certificate-expired",
                    "sending-mta-ip": "2001:db8:abcd:12::1",
                    "receiving-mx-hostname": "mx1.mail.company-y.example",
                    "failed-session-count": 100
                }, {
                    "result-type": "validation-failure",
                    "sending-mta-ip": "198.51.100.62",
                    "receiving-mx-hostname": "mx-backup.mail.company-y.example",
                    "receiving-ip": "203.0.113.58",
                    "failed-session-count": 3,
                    "failure-reason-code": "X509_V_ERR_PROOF_OF_POLICY"
                }]
            }]
        });
        assert_eq!(got, want);
    }

    #[test]
    fn json_leaves_absent_members_out() {
        let report = DomainReport {
            domain: "b.example".into(),
            policies: vec![PolicyResult {
                policy: Policy::none("b.example"),
                successes: 1,
                failures: 1,
                details: vec![(
                    Failure {
                        result: ResultType::StarttlsNotSupported,
                        sending_ip: None,
                        receiving_mx: None,
                        receiving_ip: None,
                        detail: None,
                    },
                    1,
                )],
            }],
        };
        let got = parse_json(&to_json(&meta(), &report));
        assert_eq!(
            got["policies"][0],
            json!({
                "policy": {"policy-type": "no-policy-found", "policy-domain": "b.example"},
                "summary": {"total-successful-session-count": 1, "total-failure-session-count": 1},
                "failure-details": [{"result-type": "starttls-not-supported", "failed-session-count": 1}]
            })
        );
        // No failures: no failure-details; no policies: an empty list.
        let mut quiet = report.clone();
        quiet.policies[0].details.clear();
        let got = parse_json(&to_json(&meta(), &quiet));
        assert!(got["policies"][0].get("failure-details").is_none());
        quiet.policies.clear();
        let got = parse_json(&to_json(&meta(), &quiet));
        assert_eq!(got["policies"], json!([]));
    }

    const HOSTILE: &[&str] = &[
        "",
        "\"",
        "\\",
        "\"},\"x\":1,{\"",
        "a\nb\r\nc\t",
        "\0nul\u{1}\u{1f}\u{7f}",
        "line\u{2028}para\u{2029}",
        "\u{e9}\u{1f600}\u{fffd}",
        "</script><!--",
        "\\u0000",
    ];

    #[test]
    fn json_survives_hostile_strings() {
        for s in HOSTILE {
            let mut t = Tally::default();
            let p = Policy {
                kind: PolicyType::Sts,
                domain: s.to_string(),
                strings: vec![s.to_string()],
                mx_host: vec![s.to_string()],
            };
            let f = Failure {
                result: ResultType::ValidationFailure,
                sending_ip: None,
                receiving_mx: Some(format!("mx{s}")),
                receiving_ip: None,
                detail: Some(format!("d{s}")),
            };
            t.failure(&p, f);
            let report = &t.take()[0];
            let m = ReportMeta {
                organization: s,
                contact: s,
                report_id: s,
                start: 0,
                end: u64::MAX,
            };
            let json = to_json(&m, report);
            assert!(
                !json.contains(['\n', '\r', '\0', '\u{2028}', '\u{2029}']),
                "{json}"
            );
            assert!(crate::fuzz::json_valid(&json), "{json}");
            let v = parse_json(&json);
            let lower = s.to_ascii_lowercase();
            assert_eq!(v["organization-name"], *s);
            assert_eq!(v["contact-info"], *s);
            assert_eq!(v["report-id"], *s);
            assert_eq!(v["date-range"]["start-datetime"], "1970-01-01T00:00:00Z");
            assert_eq!(v["date-range"]["end-datetime"], "9999-12-31T23:59:59Z");
            let p = &v["policies"][0];
            assert_eq!(p["policy"]["policy-domain"], lower.as_str());
            assert_eq!(p["policy"]["policy-string"], json!([s]));
            assert_eq!(p["policy"]["mx-host"], json!([lower]));
            let d = &p["failure-details"][0];
            assert_eq!(d["receiving-mx-hostname"], format!("mx{lower}"));
            assert_eq!(d["failure-reason-code"], format!("d{s}"));
        }
    }

    #[test]
    fn rfc_3339_datetimes() {
        for (t, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_459_468_800, "2016-04-01T00:00:00Z"),
            (1_459_555_199, "2016-04-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (MAX_TIME, "9999-12-31T23:59:59Z"),
            (MAX_TIME + 1, "9999-12-31T23:59:59Z"),
            (u64::MAX, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(datetime(t), want, "{t}");
        }
    }

    /// Inflates a gzip member independently of [`gunzip`]: header fields
    /// checked one by one, the trailer compared.
    fn check_gzip(gz: &[u8], data: &[u8]) {
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let n = gz.len();
        let inflated = miniz_oxide::inflate::decompress_to_vec(&gz[10..n - 8]).unwrap();
        assert_eq!(inflated, data);
        assert_eq!(gz[n - 8..n - 4], crc32fast::hash(data).to_le_bytes());
        assert_eq!(gz[n - 4..], (data.len() as u32).to_le_bytes());
        assert_eq!(gunzip(gz, data.len()).as_deref(), Some(data));
    }

    #[test]
    fn gzip_round_trips() {
        // The empty input: a final empty block.
        let empty = gzip(b"");
        assert_eq!(empty[empty.len() - 8..], [0; 8], "{empty:02x?}");
        check_gzip(&empty, b"");
        check_gzip(&gzip(b"{}"), b"{}");
        // 1 MiB: a report-like repeating text, and bytes of a simple
        // generator (incompressible).
        let text: Vec<u8> = b"{\"result-type\":\"certificate-expired\"},"
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        let gz = gzip(&text);
        assert!(gz.len() < text.len() / 20, "{}", gz.len());
        check_gzip(&gz, &text);
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        check_gzip(&gzip(&noise), &noise);
        // gunzip refuses damage and sizes over its limit.
        let mut bad = gzip(b"hello");
        assert_eq!(gunzip(&bad, 5).as_deref(), Some(&b"hello"[..]));
        assert_eq!(gunzip(&bad, 4), None);
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert_eq!(gunzip(&bad, 100), None);
        assert_eq!(gunzip(&bad[..10], 100), None);
        assert_eq!(gunzip(b"", 100), None);
    }

    #[test]
    fn rfc_8460_5_1_filenames() {
        assert_eq!(
            filename(
                "mail.sender.example",
                "example.com",
                1_013_662_812,
                1_013_749_130,
                ""
            ),
            "mail.sender.example!example.com!1013662812!1013749130.json.gz"
        );
        assert_eq!(
            filename("mail.sender.example", "example.com", 1, 2, "a1-b2.c3@x"),
            "mail.sender.example!example.com!1!2!a1b2c3x.json.gz"
        );
        let name = filename("a!b/c\\d e\r\nf\0", "../x!y\u{7f}", 0, 0, "!/\n");
        assert_eq!(name, "abcdef!..xy!0!0.json.gz");
    }

    fn report_for(domain: &str) -> DomainReport {
        let mut t = Tally::default();
        let p = Policy::none(domain);
        t.success(&p);
        t.failure(&p, fail(ResultType::StarttlsNotSupported, "mx.b.example"));
        t.take().remove(0)
    }

    fn parts_of(msg: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
        let parsed = scop_mime::parse(msg).unwrap();
        let mut out = Vec::new();
        parsed.message.walk(&mut |m| {
            if let scop_mime::Body::Leaf(leaf) = m.body() {
                let ct = m.content_type();
                out.push((
                    format!("{}/{}", ct.main_type(), ct.subtype()),
                    m.filename(),
                    leaf.decoded().to_vec(),
                ));
            }
        });
        out
    }

    #[test]
    fn rfc_8460_5_3_report_message() {
        let report = report_for("example.net");
        let rmeta = ReportMeta {
            report_id: "735ff.e317+bf22029@example.net",
            ..meta()
        };
        let mmeta = MessageMeta {
            from: "tlsrpt@mail.sender.example.com",
            to: "mts-sts-tlsrpt@example.net",
            submitter: "mail.sender.example.com",
            date: 1_494_377_670,
            message_id: "tlsrpt.1@mail.sender.example.com",
        };
        let msg = message(&mmeta, &rmeta, &report);
        let parsed = scop_mime::parse(&msg).unwrap();
        let m = &parsed.message;
        let h = |name: &str| m.header(name).map(|h| h.text()).unwrap_or_default();
        assert_eq!(
            h("Subject"),
            "Report Domain: example.net Submitter: mail.sender.example.com Report-ID: <735ff.e317+bf22029@example.net>"
        );
        assert_eq!(h("TLS-Report-Domain"), "example.net");
        assert_eq!(h("TLS-Report-Submitter"), "mail.sender.example.com");
        assert_eq!(h("Auto-Submitted"), "auto-generated");
        assert_eq!(h("From"), "tlsrpt@mail.sender.example.com");
        assert_eq!(h("To"), "mts-sts-tlsrpt@example.net");
        assert_eq!(
            m.header("Message-ID").unwrap().message_ids(),
            ["tlsrpt.1@mail.sender.example.com"]
        );
        assert_eq!(
            m.header("Date").unwrap().date().map(|d| d.unix_timestamp()),
            Some(1_494_377_670)
        );
        let ct = m.content_type();
        assert_eq!((ct.main_type(), ct.subtype()), ("multipart", "report"));
        assert_eq!(ct.param("report-type"), Some("tlsrpt"));
        let parts = parts_of(&msg);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "text/plain");
        let text = String::from_utf8_lossy(&parts[0].2);
        assert!(text.contains("mail.sender.example.com") && text.contains("example.net"));
        let (ct, name, gz) = &parts[1];
        assert_eq!(ct, MEDIA_TYPE);
        assert_eq!(
            name.as_deref(),
            Some(
                "mail.sender.example.com!example.net!1459468800!1459555199!735ffe317bf22029examplenet.json.gz"
            )
        );
        let json = gunzip(gz, 1 << 20).expect("the attachment gunzips");
        assert_eq!(json, to_json(&rmeta, &report).into_bytes());
        assert_eq!(
            parse_json(std::str::from_utf8(&json).unwrap())["report-id"],
            rmeta.report_id
        );
    }

    #[test]
    fn report_message_header_injection() {
        let report = report_for("x.example\r\nBcc: victim@evil.example");
        let mmeta = MessageMeta {
            from: "r@a.example",
            to: "t@x.example",
            submitter: "a.example\r\nX-Evil: 1",
            date: 0,
            message_id: "id@a.example>\r\nX-Evil: 2",
        };
        let msg = message(&mmeta, &meta(), &report);
        let parsed = scop_mime::parse(&msg).unwrap();
        assert!(parsed.message.header("Bcc").is_none());
        assert!(parsed.message.header("X-Evil").is_none());
        let parts = parts_of(&msg);
        let json = gunzip(&parts[1].2, 1 << 20).unwrap();
        let v = parse_json(std::str::from_utf8(&json).unwrap());
        assert_eq!(
            v["policies"][0]["policy"]["policy-domain"],
            "x.example\r\nbcc: victim@evil.example"
        );
    }

    fn parse_request(r: &[u8]) -> (String, String, Vec<(String, String)>, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = req.parse(r).unwrap() else {
            panic!("incomplete request");
        };
        (
            req.method.unwrap().to_owned(),
            req.path.unwrap().to_owned(),
            req.headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect(),
            r[n..].to_vec(),
        )
    }

    #[test]
    fn rfc_8460_5_4_https_requests() {
        let body = gzip(b"{}");
        let (host, port, r) =
            https_request("https://reporting.example.com/v1/tlsrpt", &body).unwrap();
        assert_eq!((host.as_str(), port), ("reporting.example.com", 443));
        let (method, path, headers, got_body) = parse_request(&r);
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/tlsrpt"));
        let len = body.len().to_string();
        assert_eq!(
            headers,
            [
                ("Host".to_owned(), "reporting.example.com".to_owned()),
                ("Content-Type".to_owned(), MEDIA_TYPE.to_owned()),
                ("Content-Length".to_owned(), len),
                ("User-Agent".to_owned(), "scop".to_owned()),
                ("Connection".to_owned(), "close".to_owned()),
            ]
        );
        assert_eq!(got_body, body);
        for (url, want_host, want_port, want_path, want_host_header) in [
            ("HTTPS://R.Example", "r.example", 443, "/", "r.example"),
            (
                "https://r.example:8443?x=1#frag",
                "r.example",
                8443,
                "/?x=1",
                "r.example:8443",
            ),
            (
                "https://r.example:/a/b?c#d",
                "r.example",
                443,
                "/a/b?c",
                "r.example",
            ),
            (
                "https://192.0.2.7:443/x",
                "192.0.2.7",
                443,
                "/x",
                "192.0.2.7",
            ),
            (
                "https://[2001:DB8::1]:444/r",
                "2001:db8::1",
                444,
                "/r",
                "[2001:db8::1]:444",
            ),
            ("https://[::1]/", "::1", 443, "/", "[::1]"),
            (
                "https://r.example./x!y",
                "r.example.",
                443,
                "/x!y",
                "r.example.",
            ),
        ] {
            let (host, port, r) = https_request(url, b"x").unwrap();
            assert_eq!((host.as_str(), port), (want_host, want_port), "{url}");
            let (_, path, headers, body) = parse_request(&r);
            assert_eq!(path, want_path, "{url}");
            assert_eq!(headers[0].1, want_host_header, "{url}");
            assert_eq!(body, b"x");
        }
        for (url, want) in [
            ("http://r.example/", UrlError::NotHttps),
            ("mailto:a@b.example", UrlError::NotHttps),
            ("r.example/x", UrlError::NotHttps),
            ("https:/r.example", UrlError::NoHost),
            ("https://", UrlError::NoHost),
            ("https://:443/", UrlError::NoHost),
            ("https://user@r.example/", UrlError::UserInfo),
            ("https://u:p@r.example/", UrlError::UserInfo),
            ("https://r.example/a b", UrlError::BadCharacter),
            ("https://r.example/\r\nX-Evil: 1", UrlError::BadCharacter),
            ("https://r.example/\u{e9}", UrlError::BadCharacter),
            ("https://r.example/\t", UrlError::BadCharacter),
            ("https://r.example:0/", UrlError::BadPort),
            ("https://r.example:65536/", UrlError::BadPort),
            ("https://r.example:+80/", UrlError::BadPort),
            ("https://r.example:123456/", UrlError::BadPort),
            ("https://r.example:80:80/", UrlError::BadPort),
            ("https://r%2eexample/", UrlError::BadHost),
            ("https://[r.example]/", UrlError::BadHost),
            ("https://[::1]x/", UrlError::BadHost),
            ("https://[::1/", UrlError::BadHost),
            ("https://a..b/", UrlError::BadHost),
        ] {
            assert_eq!(https_request(url, b"").map(|r| r.0), Err(want), "{url}");
        }
        let long = format!("https://r.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(
            https_request(&long, b"").map(|r| r.0),
            Err(UrlError::TooLong)
        );
        // Every message says what is wrong.
        assert!(UrlError::UserInfo.to_string().contains("user"));
        assert!(UrlError::BadPort.to_string().contains("port"));
    }

    #[test]
    fn rfc_8460_5_4_https_responses() {
        for (head, want) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], Some(true)),
            (
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                Some(true),
            ),
            (b"HTTP/1.0 202 Accepted\r\n\r\nbody", Some(true)),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Some(true)),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                Some(true),
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 4", None),
            (b"HTTP/1.1 100 Continue\r\n\r\n", None),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Some(false)),
            (b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n", Some(false)),
            (b"HTTP/1.1 400 Bad Request\r\n\r\n", Some(false)),
            (b"HTTP/1.1 413 Too Large\r\n\r\n", Some(false)),
            (b"HTTP/1.1 500 \r\n\r\n", Some(false)),
            (b"HTTP/1.1 200 OK\r\n", None),
            (b"HTTP/1.1 20", None),
            (b"", None),
            (b"SMTP/1.1 200 OK\r\n\r\n", Some(false)),
            (b"\x00\x01garbage", Some(false)),
        ] {
            assert_eq!(
                https_accepted(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(https_accepted(long.as_bytes()), Some(false));
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(https_accepted(many.as_bytes()), Some(false));
    }

    #[test]
    fn json_checker_agrees_with_serde_json() {
        for doc in [
            "{}",
            "[]",
            " {\"a\" : [1, -2.5e+3, 0, true, false, null, \"\\u00e9\\n\"]} ",
            "\"x\"",
            "0",
            "-0.0E-1",
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "01",
            "1.",
            ".5",
            "+1",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "\"\u{1}\"",
            "[1] [2]",
            "tru",
            "nulll",
            "[\"\u{2028}\"]",
        ] {
            assert_eq!(
                crate::fuzz::json_valid(doc),
                serde_json::from_str::<Value>(doc).is_ok(),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn fuzz_entry_point_on_the_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/tlsrpt");
        let mut seeds = 0;
        let mut records = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8(data.clone()).unwrap();
            records += usize::from(record(&[&text]).is_ok());
            for n in (0..=data.len()).step_by(3) {
                crate::fuzz::tlsrpt(&data[..n]);
            }
            crate::fuzz::tlsrpt(&data);
            seeds += 1;
        }
        assert!(seeds >= 6, "{seeds} seeds");
        assert!(records >= 5, "{records} seeds are valid records");
        let seed = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        assert_eq!(
            rua(&seed("rfc8460_mailto.txt")),
            Ok(vec![mailto("reports@example.com")])
        );
        assert_eq!(
            rua(&seed("rfc8460_https.txt")),
            Ok(vec![https("https://reporting.example.com/v1/tlsrpt")])
        );
        assert_eq!(
            https_accepted(seed("response_202.http").as_bytes()),
            Some(true)
        );
    }

    fn record_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("v=TLSRPTv1".to_owned()),
            Just(";".to_owned()),
            Just(" ".to_owned()),
            Just(",".to_owned()),
            Just("rua=".to_owned()),
            Just("mailto:".to_owned()),
            Just("https://".to_owned()),
            Just("%".to_owned()),
            Just("@".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("?".to_owned()),
            Just("[::1]".to_owned()),
            "[a-zA-Z0-9.=_-]{0,6}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn rua_strategy() -> impl Strategy<Value = Rua> {
        prop_oneof![
            ("\\PC{1,12}", "[a-z0-9.-]{1,12}").prop_map(|(l, d)| Rua::Mailto(format!("{l}@{d}"))),
            (
                "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}",
                "[a-zA-Z0-9/?=&!$._~-]{0,20}"
            )
                .prop_map(|(h, p)| Rua::Https(format!("https://{h}/{p}"))),
        ]
    }

    proptest! {
        #[test]
        fn record_never_panics(a in record_text(), b in "\\PC{0,40}", c in any::<String>()) {
            let _ = record(&[&a]);
            let _ = record(&[&b, &a]);
            let _ = record(&[&c]);
            let full = format!("v=TLSRPTv1; rua={a}");
            if let Ok(r) = record(&[&full]) {
                prop_assert!(!r.rua.is_empty() && r.rua.len() <= MAX_RUA);
                prop_assert_eq!(record(&[&r.to_text()]), Ok(r.clone()));
            }
            crate::fuzz::tlsrpt(a.as_bytes());
        }

        #[test]
        fn records_round_trip_through_text(list in proptest::collection::vec(rua_strategy(), 1..=MAX_RUA)) {
            let mut rua: Vec<Rua> = Vec::new();
            for r in list {
                if !rua.contains(&r) && !matches!(&r, Rua::Mailto(a) if a.contains(char::is_control)) {
                    rua.push(r);
                }
            }
            prop_assume!(!rua.is_empty());
            let r = Record { rua };
            prop_assert_eq!(record(&[&r.to_text()]), Ok(r.clone()));
        }

        #[test]
        fn to_json_is_valid_json(
            strings in proptest::collection::vec(any::<String>(), 7),
            start in any::<u64>(),
            end in any::<u64>(),
            result in 0..ResultType::ALL.len(),
            counts in proptest::collection::vec(0u64..3, 1..6),
        ) {
            let mut t = Tally::default();
            let policy = Policy {
                kind: PolicyType::Tlsa,
                domain: strings[0].clone(),
                strings: vec![strings[1].clone(), strings[2].clone()],
                mx_host: vec![strings[3].clone()],
            };
            for (i, &n) in counts.iter().enumerate() {
                t.success(&policy);
                for _ in 0..n {
                    t.failure(&policy, Failure {
                        result: ResultType::ALL[(result + i) % ResultType::ALL.len()],
                        sending_ip: (i % 2 == 0).then(|| ip("192.0.2.1")),
                        receiving_mx: Some(strings[4].clone()),
                        receiving_ip: (i % 3 == 0).then(|| ip("::1")),
                        detail: Some(strings[5].clone()),
                    });
                }
            }
            let report = t.take().remove(0);
            let m = ReportMeta { organization: &strings[6], contact: &strings[0], report_id: &strings[1], start, end };
            let json = to_json(&m, &report);
            prop_assert!(crate::fuzz::json_valid(&json));
            let v: Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&v["organization-name"], &Value::from(strings[6].as_str()));
            prop_assert_eq!(&v["policies"][0]["policy"]["policy-string"][1], &Value::from(strings[2].as_str()));
            prop_assert_eq!(
                v["policies"][0]["summary"]["total-failure-session-count"].as_u64(),
                Some(counts.iter().sum::<u64>())
            );
            prop_assert_eq!(gunzip(&gzip(json.as_bytes()), json.len()), Some(json.into_bytes()));
        }

        #[test]
        fn fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            crate::fuzz::tlsrpt(&data);
        }
    }
}
