//! SPF records (RFC 7208 sections 4.5, 4.6, 5, 6 and 12): selection and
//! parsing into a checked representation.
//!
//! ```text
//! record    = version terms *SP
//! version   = "v=spf1"
//! terms     = *( 1*SP ( directive / modifier ) )
//! directive = [ qualifier ] mechanism
//! modifier  = redirect / explanation / unknown-modifier
//! ```
//!
//! A record is parsed whole before it is evaluated: a syntax error anywhere
//! is a `permerror` even after a matching mechanism (RFC 7208 section 4.6).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::eval::query_name;
use crate::macros::{MacroContext, MacroString};
use crate::{MAX_DOMAIN_LEN, MAX_RECORD_LEN, MAX_TERMS, RecordError, TermProblem};

/// The version tag that opens every SPF record (RFC 7208 section 4.5).
pub const VERSION: &str = "v=spf1";

/// Whether a TXT record's text is an SPF record: it starts with `v=spf1`
/// (any case) followed by a space or the end (RFC 7208 section 4.5).
pub fn is_spf_record(text: &[u8]) -> bool {
    text.len() >= VERSION.len()
        && text[..VERSION.len()].eq_ignore_ascii_case(VERSION.as_bytes())
        && matches!(text.get(VERSION.len()), None | Some(b' '))
}

/// A qualifier (RFC 7208 section 4.6.2): the result a matching directive
/// gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qualifier {
    /// `+` (the default): pass.
    Pass,
    /// `-`: fail.
    Fail,
    /// `~`: softfail.
    SoftFail,
    /// `?`: neutral.
    Neutral,
}

impl Qualifier {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'+' => Self::Pass,
            b'-' => Self::Fail,
            b'~' => Self::SoftFail,
            b'?' => Self::Neutral,
            _ => return None,
        })
    }

    /// The qualifier's character.
    pub fn as_char(self) -> char {
        match self {
            Self::Pass => '+',
            Self::Fail => '-',
            Self::SoftFail => '~',
            Self::Neutral => '?',
        }
    }
}

/// A `domain-spec` (RFC 7208 section 7.1): a macro string that ends in a
/// macro or in `"." toplabel ["."]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec(MacroString, Expansion);

/// What a domain-spec expands to, when that does not depend on the
/// evaluation: worked out once at parse time, as records are parsed once
/// and evaluated many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expansion {
    /// The spec has macros, or is longer than a domain name (section 7.3
    /// then drops labels): expanded at each use.
    Macros,
    /// A spec without macros: its query name (see `eval::query_name`), or
    /// `None` when it is not a valid one.
    Fixed(Option<Box<str>>),
}

impl Expansion {
    fn of(ms: &MacroString) -> Self {
        if let Some(literal) = ms.as_literal() {
            let name = literal.strip_suffix('.').unwrap_or(literal);
            if name.len() <= MAX_DOMAIN_LEN {
                return Self::Fixed(query_name(name).map(Into::into));
            }
        }
        Self::Macros
    }
}

impl DomainSpec {
    /// Parses and checks a domain-spec.
    ///
    /// # Errors
    ///
    /// [`TermProblem::InvalidMacro`] or [`TermProblem::InvalidDomainSpec`].
    pub fn parse(text: &str) -> Result<Self, TermProblem> {
        let ms =
            MacroString::parse(text, MacroContext::Domain).map_err(TermProblem::InvalidMacro)?;
        if ms.is_valid_domain_spec() {
            let expansion = Expansion::of(&ms);
            Ok(Self(ms, expansion))
        } else {
            Err(TermProblem::InvalidDomainSpec)
        }
    }

    /// The underlying macro string.
    pub fn macro_string(&self) -> &MacroString {
        &self.0
    }

    pub(crate) fn expansion(&self) -> &Expansion {
        &self.1
    }
}

/// Optional IPv4 and IPv6 prefix lengths of `a` and `mx` (RFC 7208 section
/// 5.6, `dual-cidr-length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DualCidr {
    /// `/n` with `n` in 0..=32; absent means 32.
    pub v4: Option<u8>,
    /// `//n` with `n` in 0..=128; absent means 128.
    pub v6: Option<u8>,
}

/// A mechanism (RFC 7208 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all` (section 5.1).
    All,
    /// `include:<domain-spec>` (section 5.2).
    Include(DomainSpec),
    /// `a[:<domain-spec>][/n][//m]` (section 5.3).
    A {
        /// Target, the current domain when absent.
        domain: Option<DomainSpec>,
        /// Prefix lengths.
        cidr: DualCidr,
    },
    /// `mx[:<domain-spec>][/n][//m]` (section 5.4).
    Mx {
        /// Target, the current domain when absent.
        domain: Option<DomainSpec>,
        /// Prefix lengths.
        cidr: DualCidr,
    },
    /// `ptr[:<domain-spec>]` (section 5.5, discouraged).
    Ptr(Option<DomainSpec>),
    /// `ip4:<network>[/n]` (section 5.6).
    Ip4 {
        /// Network address.
        addr: Ipv4Addr,
        /// Prefix length; absent means 32.
        prefix: Option<u8>,
    },
    /// `ip6:<network>[/n]` (section 5.6).
    Ip6 {
        /// Network address.
        addr: Ipv6Addr,
        /// Prefix length; absent means 128.
        prefix: Option<u8>,
    },
    /// `exists:<domain-spec>` (section 5.7).
    Exists(DomainSpec),
}

impl Mechanism {
    /// Whether evaluating the mechanism queries DNS and so counts against
    /// the limit of ten (RFC 7208 section 4.6.4).
    pub fn queries_dns(&self) -> bool {
        matches!(
            self,
            Self::Include(_) | Self::A { .. } | Self::Mx { .. } | Self::Ptr(_) | Self::Exists(_)
        )
    }
}

/// A directive: a qualifier and a mechanism (RFC 7208 section 4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The result on a match.
    pub qualifier: Qualifier,
    /// What to match.
    pub mechanism: Mechanism,
}

/// A modifier (RFC 7208 section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    /// `redirect=<domain-spec>` (section 6.1).
    Redirect(DomainSpec),
    /// `exp=<domain-spec>` (section 6.2).
    Explanation(DomainSpec),
    /// Any other `name=value`, checked for macro syntax and otherwise
    /// ignored (section 6, last paragraph).
    Unknown {
        /// The name as written.
        name: String,
        /// The value.
        value: MacroString,
    },
}

/// A term of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A mechanism with its qualifier.
    Directive(Directive),
    /// A modifier.
    Modifier(Modifier),
}

/// A parsed SPF record (RFC 7208 section 4.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    terms: Vec<Term>,
}

impl Record {
    /// Parses a record from the raw bytes of a TXT record (its strings
    /// already concatenated, RFC 7208 section 3.3).
    ///
    /// # Errors
    ///
    /// A [`RecordError`]: not an SPF record, not ASCII, too long, or a
    /// syntax error in a term.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, RecordError> {
        if text.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong);
        }
        if !text.is_ascii() {
            return Err(RecordError::NonAscii);
        }
        // ASCII was just checked, so this cannot fail; map it anyway rather
        // than unwrap.
        let text = std::str::from_utf8(text).map_err(|_| RecordError::NonAscii)?;
        Self::parse(text)
    }

    /// Parses a record from text.
    ///
    /// # Errors
    ///
    /// As [`Record::parse_bytes`].
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        if text.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong);
        }
        if !text.is_ascii() {
            return Err(RecordError::NonAscii);
        }
        if !is_spf_record(text.as_bytes()) {
            return Err(RecordError::NotSpf);
        }
        let mut terms = Vec::new();
        let (mut redirect, mut exp) = (false, false);
        for word in text[VERSION.len()..].split(' ').filter(|w| !w.is_empty()) {
            if terms.len() >= MAX_TERMS {
                return Err(RecordError::TooManyTerms);
            }
            let term = parse_term(word).map_err(|problem| match problem {
                TermProblem::UnknownMechanism => RecordError::UnknownMechanism(word.to_string()),
                problem => RecordError::InvalidTerm {
                    term: word.to_string(),
                    problem,
                },
            })?;
            let seen = match &term {
                Term::Modifier(Modifier::Redirect(_)) => Some(&mut redirect),
                Term::Modifier(Modifier::Explanation(_)) => Some(&mut exp),
                _ => None,
            };
            if let Some(seen) = seen {
                if *seen {
                    return Err(RecordError::DuplicateModifier(word.to_string()));
                }
                *seen = true;
            }
            terms.push(term);
        }
        Ok(Self { terms })
    }

    /// The terms in order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The directives in order.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> {
        self.terms.iter().filter_map(|t| match t {
            Term::Directive(d) => Some(d),
            Term::Modifier(_) => None,
        })
    }

    /// The `redirect=` target, if any.
    pub fn redirect(&self) -> Option<&DomainSpec> {
        self.terms.iter().find_map(|t| match t {
            Term::Modifier(Modifier::Redirect(d)) => Some(d),
            _ => None,
        })
    }

    /// The `exp=` target, if any.
    pub fn explanation(&self) -> Option<&DomainSpec> {
        self.terms.iter().find_map(|t| match t {
            Term::Modifier(Modifier::Explanation(d)) => Some(d),
            _ => None,
        })
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

fn parse_term(word: &str) -> Result<Term, TermProblem> {
    let bytes = word.as_bytes();
    let name_len = bytes.iter().take_while(|c| is_name_byte(**c)).count();
    if name_len > 0 && bytes[0].is_ascii_alphabetic() && bytes.get(name_len) == Some(&b'=') {
        return parse_modifier(&word[..name_len], &word[name_len + 1..]).map(Term::Modifier);
    }
    let (qualifier, rest) = match bytes.first().and_then(|b| Qualifier::from_byte(*b)) {
        Some(q) => (q, &word[1..]),
        None => (Qualifier::Pass, word),
    };
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(end);
    let mechanism = parse_mechanism(name, arg)?;
    Ok(Term::Directive(Directive {
        qualifier,
        mechanism,
    }))
}

fn parse_modifier(name: &str, value: &str) -> Result<Modifier, TermProblem> {
    if name.eq_ignore_ascii_case("redirect") {
        Ok(Modifier::Redirect(DomainSpec::parse(value)?))
    } else if name.eq_ignore_ascii_case("exp") {
        Ok(Modifier::Explanation(DomainSpec::parse(value)?))
    } else {
        let value =
            MacroString::parse(value, MacroContext::Domain).map_err(TermProblem::InvalidMacro)?;
        Ok(Modifier::Unknown {
            name: name.to_string(),
            value,
        })
    }
}

fn parse_mechanism(name: &str, arg: &str) -> Result<Mechanism, TermProblem> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "all" => {
            if arg.is_empty() {
                Ok(Mechanism::All)
            } else {
                Err(TermProblem::UnexpectedArgument)
            }
        }
        "include" => Ok(Mechanism::Include(required_domain(arg)?)),
        "exists" => Ok(Mechanism::Exists(required_domain(arg)?)),
        "ptr" => Ok(Mechanism::Ptr(optional_domain(arg)?)),
        "a" | "mx" => {
            let (arg, cidr) = split_dual_cidr(arg)?;
            let domain = optional_domain(arg)?;
            Ok(if lower == "a" {
                Mechanism::A { domain, cidr }
            } else {
                Mechanism::Mx { domain, cidr }
            })
        }
        "ip4" => {
            let (addr, prefix) = split_network(arg, 32)?;
            let addr = addr.parse().map_err(|_| TermProblem::InvalidIp4)?;
            Ok(Mechanism::Ip4 { addr, prefix })
        }
        "ip6" => {
            let (addr, prefix) = split_network(arg, 128)?;
            let addr = addr.parse().map_err(|_| TermProblem::InvalidIp6)?;
            Ok(Mechanism::Ip6 { addr, prefix })
        }
        _ => Err(TermProblem::UnknownMechanism),
    }
}

fn required_domain(arg: &str) -> Result<DomainSpec, TermProblem> {
    match arg.strip_prefix(':') {
        Some(spec) => DomainSpec::parse(spec),
        None if arg.is_empty() => Err(TermProblem::MissingDomain),
        None => Err(TermProblem::UnexpectedArgument),
    }
}

fn optional_domain(arg: &str) -> Result<Option<DomainSpec>, TermProblem> {
    if arg.is_empty() {
        Ok(None)
    } else {
        required_domain(arg).map(Some)
    }
}

/// Parses a prefix length: `"0"` or digits without a leading zero, at most
/// `max` (RFC 7208 section 5.6: `ip4-cidr-length`, `ip6-cidr-length`).
fn parse_prefix(digits: &str, max: u8) -> Result<u8, TermProblem> {
    let ok = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse::<u8>() {
        Ok(n) if ok && n <= max => Ok(n),
        _ => Err(TermProblem::InvalidCidr),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits a trailing `[/n][//m]` off an `a` or `mx` argument.
fn split_dual_cidr(arg: &str) -> Result<(&str, DualCidr), TermProblem> {
    let mut rest = arg;
    let mut cidr = DualCidr::default();
    if let Some(pos) = rest.rfind("//")
        && all_digits(&rest[pos + 2..])
    {
        cidr.v6 = Some(parse_prefix(&rest[pos + 2..], 128)?);
        rest = &rest[..pos];
    }
    if let Some(pos) = rest.rfind('/')
        && all_digits(&rest[pos + 1..])
    {
        cidr.v4 = Some(parse_prefix(&rest[pos + 1..], 32)?);
        rest = &rest[..pos];
    }
    Ok((rest, cidr))
}

/// Splits `:<addr>[/n]` for `ip4` and `ip6`.
fn split_network(arg: &str, max: u8) -> Result<(&str, Option<u8>), TermProblem> {
    let Some(body) = arg.strip_prefix(':') else {
        return Err(TermProblem::MissingNetwork);
    };
    match body.split_once('/') {
        None => Ok((body, None)),
        Some((addr, digits)) => Ok((addr, Some(parse_prefix(digits, max)?))),
    }
}

impl fmt::Display for DomainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for DualCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v4) = self.v4 {
            write!(f, "/{v4}")?;
        }
        if let Some(v6) = self.v6 {
            write!(f, "//{v6}")?;
        }
        Ok(())
    }
}

fn write_target(f: &mut fmt::Formatter<'_>, domain: Option<&DomainSpec>) -> fmt::Result {
    match domain {
        Some(d) => write!(f, ":{d}"),
        None => Ok(()),
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Include(d) => write!(f, "include:{d}"),
            Self::A { domain, cidr } => {
                f.write_str("a")?;
                write_target(f, domain.as_ref())?;
                write!(f, "{cidr}")
            }
            Self::Mx { domain, cidr } => {
                f.write_str("mx")?;
                write_target(f, domain.as_ref())?;
                write!(f, "{cidr}")
            }
            Self::Ptr(domain) => {
                f.write_str("ptr")?;
                write_target(f, domain.as_ref())
            }
            Self::Ip4 { addr, prefix } => {
                write!(f, "ip4:{addr}")?;
                prefix.map_or(Ok(()), |p| write!(f, "/{p}"))
            }
            Self::Ip6 { addr, prefix } => {
                write!(f, "ip6:{addr}")?;
                prefix.map_or(Ok(()), |p| write!(f, "/{p}"))
            }
            Self::Exists(d) => write!(f, "exists:{d}"),
        }
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.qualifier != Qualifier::Pass {
            write!(f, "{}", self.qualifier.as_char())?;
        }
        write!(f, "{}", self.mechanism)
    }
}

impl fmt::Display for Modifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redirect(d) => write!(f, "redirect={d}"),
            Self::Explanation(d) => write!(f, "exp={d}"),
            Self::Unknown { name, value } => write!(f, "{name}={value}"),
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directive(d) => d.fmt(f),
            Self::Modifier(m) => m.fmt(f),
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(VERSION)?;
        for term in &self.terms {
            write!(f, " {term}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> RecordError {
        Record::parse(text).expect_err(text)
    }

    #[test]
    fn selection() {
        assert!(is_spf_record(b"v=spf1"));
        assert!(is_spf_record(b"V=SpF1 -all"));
        assert!(!is_spf_record(b"v=spf10"));
        assert!(!is_spf_record(b"v=spf1mx"));
        assert!(!is_spf_record(b""));
    }

    #[test]
    fn parses_every_mechanism() {
        let r = Record::parse(
            "v=spf1 +all -include:_spf.example.com ~a ?a:%{d}/24//64 mx//0 ptr ptr:example.org \
             ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{i}.x.example.com redirect=example.net \
             exp=exp.example.net foo=bar",
        )
        .unwrap();
        assert_eq!(r.terms().len(), 13);
        assert_eq!(r.directives().count(), 10);
        assert_eq!(r.redirect().unwrap().to_string(), "example.net");
        assert_eq!(r.explanation().unwrap().to_string(), "exp.example.net");
        assert_eq!(
            r.to_string(),
            "v=spf1 all -include:_spf.example.com ~a ?a:%{d}/24//64 mx//0 ptr ptr:example.org \
             ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{i}.x.example.com redirect=example.net \
             exp=exp.example.net foo=bar"
        );
    }

    #[test]
    fn cidr_rules() {
        let a = |t: &str| match Record::parse(t).unwrap().terms()[0].clone() {
            Term::Directive(Directive {
                mechanism: Mechanism::A { cidr, domain },
                ..
            }) => (domain.map(|d| d.to_string()), cidr),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            a("v=spf1 a:foo.example.com/24"),
            (
                Some("foo.example.com".into()),
                DualCidr {
                    v4: Some(24),
                    v6: None
                }
            )
        );
        assert_eq!(
            a("v=spf1 a//0"),
            (
                None,
                DualCidr {
                    v4: None,
                    v6: Some(0)
                }
            )
        );
        assert!(matches!(
            err("v=spf1 a/33"),
            RecordError::InvalidTerm {
                problem: TermProblem::InvalidCidr,
                ..
            }
        ));
        assert!(matches!(
            err("v=spf1 a//129"),
            RecordError::InvalidTerm { .. }
        ));
        assert!(matches!(
            err("v=spf1 a/24/64"),
            RecordError::InvalidTerm { .. }
        ));
        assert!(matches!(
            err("v=spf1 ip4:1.2.3.4/032"),
            RecordError::InvalidTerm { .. }
        ));
        assert!(matches!(
            err("v=spf1 ip4:1.2.3.4//32"),
            RecordError::InvalidTerm { .. }
        ));
        assert!(matches!(
            err("v=spf1 ip6:::1/129"),
            RecordError::InvalidTerm { .. }
        ));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("v=spf1 -all moo"),
            RecordError::UnknownMechanism("moo".into())
        );
        assert_eq!(
            err("v=spf1 redirect:x.example.com"),
            RecordError::UnknownMechanism("redirect:x.example.com".into())
        );
        assert_eq!(
            err("v=spf1 =all"),
            RecordError::UnknownMechanism("=all".into())
        );
        assert_eq!(
            err("v=spf1 1up=foo"),
            RecordError::UnknownMechanism("1up=foo".into())
        );
        for bad in [
            "v=spf1 -all.",
            "v=spf1 -all:foo",
            "v=spf1 -all/8",
            "v=spf1 ptr/0",
            "v=spf1 include",
            "v=spf1 include:",
            "v=spf1 include:a.example.com/24",
            "v=spf1 exists",
            "v=spf1 a:museum",
            "v=spf1 a:111.222.33.44",
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 exp=",
            "v=spf1 redirect=-all",
            "v=spf1 foo=%abc",
            "v=spf1 a:foo.example.com\0",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            err("v=spf1 exp=a.example.com exp=b.example.com"),
            RecordError::DuplicateModifier(_)
        ));
        assert_eq!(err("v=spf1 a:\u{e9}.example.com"), RecordError::NonAscii);
        assert_eq!(err("v=spf10"), RecordError::NotSpf);
    }

    #[test]
    fn accepts_odd_but_valid_terms() {
        for good in [
            "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
            "v=spf1 a:foo:bar/baz.example.com",
            "v=spf1 a  -all ",
            "v=spf1",
            "V=SPF1 A MX -ALL",
            "v=spf1 default=+",
            "v=spf1 ip6:::FFFF:1.2.3.4",
        ] {
            assert!(Record::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn bounds() {
        let long = format!("v=spf1{}", " a".repeat(MAX_RECORD_LEN));
        assert_eq!(err(&long), RecordError::TooLong);
        let many = format!("v=spf1{}", " a".repeat(MAX_TERMS + 1));
        assert_eq!(err(&many), RecordError::TooManyTerms);
    }
}
