//! The DMARC policy record (RFC 7489 section 6.3, grammar in section 6.4;
//! `np` from RFC 9091 section 4.1 and DMARCbis).
//!
//! ```text
//! dmarc-record = dmarc-version dmarc-sep *(dmarc-tag dmarc-sep) [dmarc-sep]
//! dmarc-version = "v" *WSP "=" *WSP %x44 %x4d %x41 %x52 %x43 %x31   ; DMARC1
//! ```
//!
//! Parsing follows section 6.6.3: a record whose first tag is not
//! `v=DMARC1` is not a DMARC record; unknown tags are ignored; a tag whose
//! value is invalid is ignored (its default applies), except `p`: a record
//! without a valid `p` is usable only when it has a valid `rua`, and then
//! reads as `p=none`.

use std::fmt;

use crate::{MAX_RECORD_LEN, MAX_TAGS, MAX_URIS};

/// A requested handling policy (RFC 7489 section 6.3, `p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// No specific action.
    None,
    /// Treat as suspicious (spam folder).
    Quarantine,
    /// Reject during the SMTP transaction.
    Reject,
}

impl Policy {
    /// The record keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier alignment mode (RFC 7489 section 3.1, `adkim`/`aspf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Alignment {
    /// Same organizational domain (the default).
    #[default]
    Relaxed,
    /// Exactly the same domain.
    Strict,
}

impl Alignment {
    /// The record keyword (`r` or `s`).
    pub fn as_str(self) -> &'static str {
        match self {
            Alignment::Relaxed => "r",
            Alignment::Strict => "s",
        }
    }
}

/// Failure reporting options (RFC 7489 section 6.3, `fo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureOptions {
    /// `0`: report when all mechanisms fail to produce an aligned pass.
    pub all_fail: bool,
    /// `1`: report when any mechanism fails to produce an aligned pass.
    pub any_fail: bool,
    /// `d`: report on any DKIM signature that failed.
    pub dkim: bool,
    /// `s`: report on any SPF failure.
    pub spf: bool,
}

impl Default for FailureOptions {
    fn default() -> Self {
        FailureOptions {
            all_fail: true,
            any_fail: false,
            dkim: false,
            spf: false,
        }
    }
}

impl fmt::Display for FailureOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (on, c) in [
            (self.all_fail, "0"),
            (self.any_fail, "1"),
            (self.dkim, "d"),
            (self.spf, "s"),
        ] {
            if on {
                parts.push(c);
            }
        }
        f.write_str(&parts.join(":"))
    }
}

/// A reporting URI with its optional size limit (RFC 7489 section 6.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportUri {
    /// The URI (e.g. `mailto:dmarc@example.com`).
    pub uri: String,
    /// The maximum report size in bytes (`!10m`), when given.
    pub max_size: Option<u64>,
}

/// Something in a record that was ignored or replaced by its default
/// (RFC 7489 section 6.6.3 asks receivers to carry on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordWarning {
    /// A tag value that does not parse; the default applies.
    #[error("invalid value for tag {tag}")]
    InvalidValue {
        /// The tag name.
        tag: String,
    },
    /// A tag that appears twice; the first one counts.
    #[error("duplicate tag {0}")]
    Duplicate(String),
    /// A tag RFC 7489 does not define (ignored).
    #[error("unknown tag {0}")]
    Unknown(String),
    /// `p` is missing or invalid, but `rua` is valid: read as `p=none`.
    #[error("missing or invalid p tag, read as p=none because rua is valid")]
    PolicyDefaulted,
    /// More than [`MAX_URIS`] URIs in `rua` or `ruf`; the rest are dropped.
    #[error("too many report URIs")]
    TooManyUris,
}

/// Why a TXT record is not a usable DMARC record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record does not start with `v=DMARC1` (section 6.6.3 step 3:
    /// such records are discarded).
    #[error("not a DMARC record (v=DMARC1 must come first)")]
    NotDmarc,
    /// `p` is missing or invalid and no valid `rua` saves it (section 6.6.3
    /// step 6: no DMARC processing).
    #[error("missing or invalid p tag")]
    MissingPolicy,
    /// The record is longer than [`MAX_RECORD_LEN`] or has more than
    /// [`MAX_TAGS`] tags.
    #[error("record too large")]
    TooLarge,
    /// The record is not valid UTF-8.
    #[error("record is not text")]
    NotText,
}

/// A parsed DMARC record, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// `p`: the policy for the domain itself.
    pub policy: Policy,
    /// `sp`: the policy for subdomains; `None` means "same as `p`".
    pub subdomain_policy: Option<Policy>,
    /// `np`: the policy for non-existent subdomains (RFC 9091, DMARCbis);
    /// `None` means "same as `sp`".
    pub nonexistent_policy: Option<Policy>,
    /// `pct`: percentage of failing mail the policy applies to (default 100).
    pub pct: u8,
    /// `adkim`.
    pub adkim: Alignment,
    /// `aspf`.
    pub aspf: Alignment,
    /// `rua`: aggregate report URIs.
    pub rua: Vec<ReportUri>,
    /// `ruf`: failure report URIs.
    pub ruf: Vec<ReportUri>,
    /// `fo`.
    pub fo: FailureOptions,
    /// `rf`: failure report formats (default `afrf`).
    pub rf: Vec<String>,
    /// `ri`: aggregate report interval in seconds (default 86400).
    pub ri: u32,
    /// `psd` (DMARCbis): `Some(true)` for `psd=y`, `Some(false)` for `psd=n`.
    pub psd: Option<bool>,
    /// What was ignored or defaulted.
    pub warnings: Vec<RecordWarning>,
}

impl Record {
    /// A record with every default and policy `p`.
    pub fn with_policy(policy: Policy) -> Record {
        Record {
            policy,
            subdomain_policy: None,
            nonexistent_policy: None,
            pct: 100,
            adkim: Alignment::Relaxed,
            aspf: Alignment::Relaxed,
            rua: Vec::new(),
            ruf: Vec::new(),
            fo: FailureOptions::default(),
            rf: vec!["afrf".into()],
            ri: 86400,
            psd: None,
            warnings: Vec::new(),
        }
    }

    /// The effective `sp`.
    pub fn effective_subdomain_policy(&self) -> Policy {
        self.subdomain_policy.unwrap_or(self.policy)
    }

    /// The effective `np`.
    pub fn effective_nonexistent_policy(&self) -> Policy {
        self.nonexistent_policy
            .unwrap_or_else(|| self.effective_subdomain_policy())
    }

    /// Parses TXT bytes (the character-strings already joined).
    pub fn parse_bytes(txt: &[u8]) -> Result<Record, RecordError> {
        if txt.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge);
        }
        let text = std::str::from_utf8(txt).map_err(|_| RecordError::NotText)?;
        Record::parse(text)
    }

    /// Parses a record (RFC 7489 section 6.4).
    pub fn parse(text: &str) -> Result<Record, RecordError> {
        if text.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge);
        }
        if !starts_with_version(text) {
            return Err(RecordError::NotDmarc);
        }
        let mut tags: Vec<(String, &str)> = Vec::new();
        for (i, part) in text.split(';').enumerate() {
            if i >= MAX_TAGS {
                return Err(RecordError::TooLarge);
            }
            let part = part.trim_matches(is_wsp);
            if part.is_empty() {
                continue;
            }
            match part.split_once('=') {
                Some((name, value)) => tags.push((
                    name.trim_matches(is_wsp).to_ascii_lowercase(),
                    value.trim_matches(is_wsp),
                )),
                None => tags.push((part.to_ascii_lowercase(), "\u{0}")),
            }
        }
        let mut rec = Record::with_policy(Policy::None);
        let mut seen: Vec<&str> = Vec::new();
        let mut policy = None;
        for (name, value) in tags.iter().skip(1) {
            if seen.contains(&name.as_str()) {
                rec.warnings.push(RecordWarning::Duplicate(name.clone()));
                continue;
            }
            seen.push(name);
            let invalid = |rec: &mut Record| {
                rec.warnings
                    .push(RecordWarning::InvalidValue { tag: name.clone() })
            };
            match name.as_str() {
                "p" => {
                    policy = Policy::parse(value);
                    if policy.is_none() {
                        invalid(&mut rec);
                    }
                }
                "sp" => match Policy::parse(value) {
                    Some(p) => rec.subdomain_policy = Some(p),
                    None => invalid(&mut rec),
                },
                "np" => match Policy::parse(value) {
                    Some(p) => rec.nonexistent_policy = Some(p),
                    None => invalid(&mut rec),
                },
                "pct" => match value.parse::<u8>() {
                    Ok(n) if n <= 100 && !value.starts_with('+') => rec.pct = n,
                    _ => invalid(&mut rec),
                },
                "adkim" | "aspf" => {
                    let a = match value.to_ascii_lowercase().as_str() {
                        "r" => Some(Alignment::Relaxed),
                        "s" => Some(Alignment::Strict),
                        _ => None,
                    };
                    match (a, name.as_str()) {
                        (Some(a), "adkim") => rec.adkim = a,
                        (Some(a), _) => rec.aspf = a,
                        (None, _) => invalid(&mut rec),
                    }
                }
                "rua" | "ruf" => match parse_uris(value, &mut rec.warnings) {
                    Some(uris) if name == "rua" => rec.rua = uris,
                    Some(uris) => rec.ruf = uris,
                    None => invalid(&mut rec),
                },
                "fo" => match parse_fo(value) {
                    Some(fo) => rec.fo = fo,
                    None => invalid(&mut rec),
                },
                "rf" => {
                    let formats: Vec<String> = value
                        .split(':')
                        .map(|s| s.trim_matches(is_wsp).to_ascii_lowercase())
                        .collect();
                    if formats.iter().all(|f| is_keyword(f)) {
                        rec.rf = formats;
                    } else {
                        invalid(&mut rec);
                    }
                }
                "ri" => match value.parse::<u32>() {
                    Ok(n) if !value.starts_with('+') => rec.ri = n,
                    _ => invalid(&mut rec),
                },
                "psd" => match value.to_ascii_lowercase().as_str() {
                    "y" => rec.psd = Some(true),
                    "n" => rec.psd = Some(false),
                    "u" => rec.psd = None,
                    _ => invalid(&mut rec),
                },
                // DMARCbis `t` (testing) is accepted silently.
                "t" => {}
                _ => rec.warnings.push(RecordWarning::Unknown(name.clone())),
            }
        }
        match policy {
            Some(p) => rec.policy = p,
            None if !rec.rua.is_empty() => {
                rec.policy = Policy::None;
                rec.warnings.push(RecordWarning::PolicyDefaulted);
            }
            // An invalid `sp` does not invalidate the record here: its
            // default (`p`) applies, the safer reading of 6.6.3 step 6.
            None => return Err(RecordError::MissingPolicy),
        }
        Ok(rec)
    }
}

impl fmt::Display for Record {
    /// The record in canonical form (every tag written, defaults included
    /// where they matter), which parses back to the same record without
    /// its warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=DMARC1; p={}", self.policy)?;
        if let Some(sp) = self.subdomain_policy {
            write!(f, "; sp={sp}")?;
        }
        if let Some(np) = self.nonexistent_policy {
            write!(f, "; np={np}")?;
        }
        write!(
            f,
            "; pct={}; adkim={}; aspf={}",
            self.pct,
            self.adkim.as_str(),
            self.aspf.as_str()
        )?;
        for (tag, uris) in [("rua", &self.rua), ("ruf", &self.ruf)] {
            if !uris.is_empty() {
                let list: Vec<String> = uris
                    .iter()
                    .map(|u| match u.max_size {
                        Some(n) => format!("{}!{n}", u.uri),
                        None => u.uri.clone(),
                    })
                    .collect();
                write!(f, "; {tag}={}", list.join(","))?;
            }
        }
        write!(
            f,
            "; fo={}; rf={}; ri={}",
            self.fo,
            self.rf.join(":"),
            self.ri
        )?;
        match self.psd {
            Some(true) => f.write_str("; psd=y"),
            Some(false) => f.write_str("; psd=n"),
            None => Ok(()),
        }
    }
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `text` starts with the `dmarc-version` production (the `v` tag
/// first, value `DMARC1`, case-sensitive as in the ABNF's `%x` literals).
pub(crate) fn starts_with_version(text: &str) -> bool {
    let rest = text.trim_start_matches(is_wsp);
    let Some(rest) = rest.strip_prefix('v') else {
        return false;
    };
    let rest = rest.trim_start_matches(is_wsp);
    let Some(rest) = rest.strip_prefix('=') else {
        return false;
    };
    let rest = rest.trim_start_matches(is_wsp);
    let Some(rest) = rest.strip_prefix("DMARC1") else {
        return false;
    };
    let rest = rest.trim_start_matches(is_wsp);
    rest.is_empty() || rest.starts_with(';')
}

/// `dmarc-uri *(*WSP "," *WSP dmarc-uri)`, each `URI [ "!" 1*DIGIT [ "k" /
/// "m" / "g" / "t" ] ]`. Invalid URIs are dropped; `None` when none is
/// valid.
fn parse_uris(value: &str, warnings: &mut Vec<RecordWarning>) -> Option<Vec<ReportUri>> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim_matches(is_wsp);
        let (uri, size) = match item.rsplit_once('!') {
            Some((uri, size)) => (uri, Some(size)),
            None => (item, None),
        };
        let max_size = match size {
            None => None,
            Some(s) => match parse_size(s) {
                Some(n) => Some(n),
                None => continue,
            },
        };
        if !is_uri(uri) {
            continue;
        }
        if out.len() >= MAX_URIS {
            warnings.push(RecordWarning::TooManyUris);
            break;
        }
        out.push(ReportUri {
            uri: uri.to_string(),
            max_size,
        });
    }
    (!out.is_empty()).then_some(out)
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A URI per RFC 3986: a scheme, `:`, and a non-empty rest without spaces,
/// commas or `!` (RFC 7489 section 6.2 asks for those to be escaped).
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ',' && c != '!' && c != ';')
}

fn parse_fo(value: &str) -> Option<FailureOptions> {
    let mut fo = FailureOptions {
        all_fail: false,
        any_fail: false,
        dkim: false,
        spf: false,
    };
    for opt in value.split(':') {
        match opt.trim_matches(is_wsp).to_ascii_lowercase().as_str() {
            "0" => fo.all_fail = true,
            "1" => fo.any_fail = true,
            "d" => fo.dkim = true,
            "s" => fo.spf = true,
            _ => return None,
        }
    }
    Some(fo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let r = Record::parse("v=DMARC1; p=reject").unwrap();
        assert_eq!(r.policy, Policy::Reject);
        assert_eq!(r.effective_subdomain_policy(), Policy::Reject);
        assert_eq!(r.effective_nonexistent_policy(), Policy::Reject);
        assert_eq!(r.pct, 100);
        assert_eq!(r.adkim, Alignment::Relaxed);
        assert_eq!(r.aspf, Alignment::Relaxed);
        assert_eq!(r.fo, FailureOptions::default());
        assert_eq!(r.rf, vec!["afrf".to_string()]);
        assert_eq!(r.ri, 86400);
        assert!(r.rua.is_empty() && r.ruf.is_empty());
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn every_tag() {
        let r = Record::parse(
            "v=DMARC1;p=quarantine; sp=none ;np=reject; pct=20; adkim=s; aspf=s; \
             rua=mailto:a@example.com!10m, mailto:b@example.net; ruf=mailto:f@example.com; \
             fo=1:d:s; rf=afrf; ri=3600;",
        )
        .unwrap();
        assert_eq!(r.policy, Policy::Quarantine);
        assert_eq!(r.subdomain_policy, Some(Policy::None));
        assert_eq!(r.nonexistent_policy, Some(Policy::Reject));
        assert_eq!(r.pct, 20);
        assert_eq!((r.adkim, r.aspf), (Alignment::Strict, Alignment::Strict));
        assert_eq!(r.rua.len(), 2);
        assert_eq!(r.rua[0].max_size, Some(10 << 20));
        assert_eq!(r.ruf[0].uri, "mailto:f@example.com");
        assert!(r.fo.any_fail && r.fo.dkim && r.fo.spf && !r.fo.all_fail);
        assert_eq!(r.ri, 3600);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn version_must_come_first_and_match() {
        for bad in [
            "p=reject; v=DMARC1",
            "v=DMARC2; p=reject",
            "v=dmarc1; p=reject",
            "v=DMARC1x; p=reject",
            "",
            "spf1",
        ] {
            assert_eq!(Record::parse(bad), Err(RecordError::NotDmarc), "{bad}");
        }
        assert!(Record::parse(" v = DMARC1 ;p=none").is_ok());
    }

    #[test]
    fn invalid_policy_without_rua_is_no_record() {
        assert_eq!(
            Record::parse("v=DMARC1; p=bogus"),
            Err(RecordError::MissingPolicy)
        );
        assert_eq!(Record::parse("v=DMARC1"), Err(RecordError::MissingPolicy));
    }

    #[test]
    fn invalid_policy_with_rua_reads_as_none() {
        let r = Record::parse("v=DMARC1; p=bogus; rua=mailto:r@example.com").unwrap();
        assert_eq!(r.policy, Policy::None);
        assert!(r.warnings.contains(&RecordWarning::PolicyDefaulted));
    }

    #[test]
    fn invalid_values_fall_back_to_defaults() {
        let r =
            Record::parse("v=DMARC1; p=reject; sp=maybe; pct=101; adkim=x; ri=-1; fo=9").unwrap();
        assert_eq!(r.subdomain_policy, None);
        assert_eq!(r.pct, 100);
        assert_eq!(r.adkim, Alignment::Relaxed);
        assert_eq!(r.ri, 86400);
        assert_eq!(r.fo, FailureOptions::default());
        assert_eq!(r.warnings.len(), 5);
    }

    #[test]
    fn duplicate_and_unknown_tags() {
        let r = Record::parse("v=DMARC1; p=none; p=reject; x=1").unwrap();
        assert_eq!(r.policy, Policy::None);
        assert!(r.warnings.contains(&RecordWarning::Duplicate("p".into())));
        assert!(r.warnings.contains(&RecordWarning::Unknown("x".into())));
    }

    #[test]
    fn display_round_trip() {
        let r = Record::parse(
            "v=DMARC1; p=reject; sp=quarantine; pct=5; rua=mailto:x@example.com!1k; fo=d:s",
        )
        .unwrap();
        let again = Record::parse(&r.to_string()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn limits() {
        let long = format!("v=DMARC1; p=none; {}", "x=1;".repeat(MAX_TAGS));
        assert_eq!(Record::parse(&long), Err(RecordError::TooLarge));
        let huge = vec![b'a'; MAX_RECORD_LEN + 1];
        assert_eq!(Record::parse_bytes(&huge), Err(RecordError::TooLarge));
        assert_eq!(
            Record::parse_bytes(b"v=DMARC1; p=\xff"),
            Err(RecordError::NotText)
        );
    }
}
