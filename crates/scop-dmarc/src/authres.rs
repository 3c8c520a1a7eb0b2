//! The `Authentication-Results` header field (RFC 8601): generation and
//! parsing.
//!
//! ```text
//! authres-header = "Authentication-Results:" [CFWS] authserv-id
//!                  [ CFWS authres-version ] ( no-result / 1*resinfo ) [CFWS] CRLF
//! resinfo   = [CFWS] ";" methodspec [ CFWS reasonspec ] [ CFWS 1*propspec ]
//! methodspec = [CFWS] method [CFWS] "=" [CFWS] result
//! propspec  = ptype [CFWS] "." [CFWS] property [CFWS] "=" pvalue
//! pvalue    = [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS]
//! value     = token / quoted-string        ; RFC 2045
//! ```
//!
//! Values are written bare when they are an RFC 2045 `token` or a
//! `[local-part] "@" domain` with dot-atom parts, and as a quoted-string
//! (with `\` before `"` and `\`) otherwise: a DKIM `header.b` holds `/` and
//! `=`, which are `tspecials`, so it is quoted.

use std::fmt;

use crate::eval::{DmarcOutput, SpfScope};
use crate::{MAX_AUTHRES_LEN, MAX_COMMENT_DEPTH, MAX_PROPERTIES, MAX_RESULTS};

/// The field name.
pub const FIELD_NAME: &str = "Authentication-Results";

/// Characters of `header.b` written (RFC 6008 section 4 asks for at least
/// eight to tell signatures apart).
pub const HEADER_B_PREFIX: usize = 12;

/// One property of a result: `ptype.property=value` (RFC 8601 section 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Property {
    /// `smtp`, `header`, `body`, `policy`.
    pub ptype: String,
    /// E.g. `mailfrom`, `d`, `from`.
    pub property: String,
    /// The value, unquoted.
    pub value: String,
}

/// One method's result (`resinfo`, RFC 8601 section 2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodResult {
    /// `spf`, `dkim`, `dmarc`, ...
    pub method: String,
    /// The method version (`dkim/1`), rarely given.
    pub method_version: Option<u32>,
    /// The result keyword.
    pub result: String,
    /// A comment right after the result (`(p=reject dis=none)`).
    pub comment: Option<String>,
    /// `reason=`.
    pub reason: Option<String>,
    /// Properties, in order.
    pub properties: Vec<Property>,
}

impl MethodResult {
    /// A result without comment, reason or properties.
    pub fn new(method: &str, result: &str) -> MethodResult {
        MethodResult {
            method: method.to_ascii_lowercase(),
            method_version: None,
            result: result.to_ascii_lowercase(),
            comment: None,
            reason: None,
            properties: Vec::new(),
        }
    }

    /// Adds a property.
    pub fn with(mut self, ptype: &str, property: &str, value: &str) -> MethodResult {
        self.properties.push(Property {
            ptype: ptype.to_ascii_lowercase(),
            property: property.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }

    /// The value of `ptype.property`, if present.
    pub fn property(&self, ptype: &str, property: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| {
                p.ptype.eq_ignore_ascii_case(ptype) && p.property.eq_ignore_ascii_case(property)
            })
            .map(|p| p.value.as_str())
    }

    /// `spf=<result> smtp.mailfrom=<sender>` (or `smtp.helo=<name>` for a
    /// HELO-scope check), RFC 8601 section 2.7.2.
    pub fn spf(request: &scop_spf::Request, output: &scop_spf::Output) -> MethodResult {
        let auth = crate::SpfAuth::from_spf(request, output);
        let mut r = MethodResult::new("spf", output.result.as_str());
        match auth.scope {
            SpfScope::MailFrom => {
                let sender = request.sender.trim_matches(['<', '>']);
                let value = if sender.contains('@') {
                    sender.to_string()
                } else {
                    format!("postmaster@{sender}")
                };
                r = r.with("smtp", "mailfrom", &value);
            }
            SpfScope::Helo => r = r.with("smtp", "helo", &request.helo),
        }
        if let Some(problem) = &output.problem {
            r.reason = Some(problem.to_string());
        }
        r
    }

    /// `dkim=<result> header.d= header.s= header.a= header.b=` (RFC 8601
    /// section 2.7.1, RFC 6008). `signature_b` is the signature's `b=`
    /// value, when known; its first [`HEADER_B_PREFIX`] characters are
    /// written.
    pub fn dkim(output: &scop_dkim::DkimOutput, signature_b: Option<&str>) -> MethodResult {
        let mut r = MethodResult::new("dkim", output.result.as_str());
        if output.result != scop_dkim::DkimResult::Pass {
            r.reason = Some(output.reason.to_string());
        }
        if let Some(d) = &output.domain {
            r = r.with("header", "d", d);
        }
        if let Some(s) = &output.selector {
            r = r.with("header", "s", s);
        }
        if let Some(a) = output.algorithm {
            r = r.with("header", "a", a.as_str());
        }
        if let Some(b) = signature_b {
            let b: String = b
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .take(HEADER_B_PREFIX)
                .collect();
            if !b.is_empty() {
                r = r.with("header", "b", &b);
            }
        }
        r
    }

    /// `dmarc=<result> (p=.. sp=.. dis=..) header.from=<domain>
    /// policy.dmarc=<policy>` (RFC 7489 section 11.2).
    pub fn dmarc(output: &DmarcOutput) -> MethodResult {
        let mut r = MethodResult::new("dmarc", output.result.as_str());
        let mut comment = Vec::new();
        if let Some(rec) = &output.record {
            comment.push(format!("p={}", rec.policy));
            comment.push(format!("sp={}", rec.effective_subdomain_policy()));
            if let Some(np) = rec.nonexistent_policy {
                comment.push(format!("np={np}"));
            }
            if rec.pct != 100 {
                comment.push(format!("pct={}", rec.pct));
            }
        }
        comment.push(format!("dis={}", output.disposition));
        r.comment = Some(comment.join(" "));
        if let Some(problem) = &output.problem
            && output.result != crate::DmarcResult::Pass
            && output.result != crate::DmarcResult::Fail
        {
            r.reason = Some(problem.to_string());
        }
        if let Some(from) = &output.header_from {
            r = r.with("header", "from", from);
        }
        if let Some(p) = output.policy {
            r = r.with("policy", "dmarc", p.as_str());
        }
        r
    }
}

/// A whole `Authentication-Results` field.
///
/// ```
/// use scop_dmarc::{AuthenticationResults, MethodResult};
/// let ar = AuthenticationResults::new("mx.example.org")
///     .push(MethodResult::new("dkim", "pass").with("header", "d", "example.com")
///         .with("header", "b", "ab/cd+e="));
/// assert_eq!(ar.to_string(),
///     "Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=example.com header.b=\"ab/cd+e=\"");
/// assert_eq!(AuthenticationResults::parse(&ar.to_string()).unwrap(), ar);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthenticationResults {
    /// The authentication service identifier (usually the host name).
    pub authserv_id: String,
    /// `authres-version`, when given (only `1` exists).
    pub version: Option<u32>,
    /// The results; empty means `none`.
    pub results: Vec<MethodResult>,
}

impl AuthenticationResults {
    /// An empty field for `authserv_id`.
    pub fn new(authserv_id: &str) -> AuthenticationResults {
        AuthenticationResults {
            authserv_id: authserv_id.to_string(),
            version: None,
            results: Vec::new(),
        }
    }

    /// Appends a result.
    pub fn push(mut self, result: MethodResult) -> AuthenticationResults {
        self.results.push(result);
        self
    }

    /// The first result of `method`.
    pub fn result(&self, method: &str) -> Option<&MethodResult> {
        self.results
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(method))
    }

    /// The field body (after `Authentication-Results:`), folded with CRLF
    /// and a tab before each result.
    pub fn value(&self) -> String {
        let mut out = String::new();
        write_value(&mut out, &self.authserv_id);
        if let Some(v) = self.version {
            out.push_str(&format!(" {v}"));
        }
        if self.results.is_empty() {
            out.push_str("; none");
            return out;
        }
        for r in &self.results {
            out.push_str(";\r\n\t");
            out.push_str(&r.method);
            if let Some(v) = r.method_version {
                out.push_str(&format!("/{v}"));
            }
            out.push('=');
            out.push_str(&r.result);
            if let Some(c) = &r.comment {
                out.push_str(" (");
                write_comment(&mut out, c);
                out.push(')');
            }
            if let Some(reason) = &r.reason {
                out.push_str(" reason=");
                write_value(&mut out, reason);
            }
            for p in &r.properties {
                out.push(' ');
                out.push_str(&p.ptype);
                out.push('.');
                out.push_str(&p.property);
                out.push('=');
                write_value(&mut out, &p.value);
            }
        }
        out
    }

    /// Parses a field body, or a whole field starting with its name
    /// (RFC 8601 section 2.2). Comments are dropped except the first one
    /// after a result.
    pub fn parse(text: &str) -> Result<AuthenticationResults, AuthResError> {
        if text.len() > MAX_AUTHRES_LEN {
            return Err(AuthResError::TooLong);
        }
        let body = match text.split_once(':') {
            Some((name, rest)) if name.trim().eq_ignore_ascii_case(FIELD_NAME) => rest,
            _ => text,
        };
        Parser::new(body.as_bytes()).field()
    }
}

impl fmt::Display for AuthenticationResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FIELD_NAME}: {}", self.value())
    }
}

/// Why an `Authentication-Results` value does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthResError {
    /// The value is longer than [`MAX_AUTHRES_LEN`].
    #[error("field too long")]
    TooLong,
    /// No authserv-id.
    #[error("missing authserv-id")]
    MissingAuthservId,
    /// A syntax error at this byte offset.
    #[error("syntax error at offset {0}")]
    Syntax(usize),
    /// An unterminated quoted-string or comment.
    #[error("unterminated quoted-string or comment")]
    Unterminated,
    /// More than [`MAX_RESULTS`] results or [`MAX_PROPERTIES`] properties
    /// in one, or comments nested deeper than [`MAX_COMMENT_DEPTH`].
    #[error("too many results, properties or nested comments")]
    TooMany,
}

/// RFC 2045 `tspecials`.
fn is_tspecial(c: char) -> bool {
    "()<>@,;:\\\"/[]?=".contains(c)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && c != ' ' && !is_tspecial(c)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.chars().all(is_atext))
}

/// Whether `value` may be written without quotes.
fn is_bare_value(value: &str) -> bool {
    if !value.is_empty() && value.chars().all(is_token_char) {
        return true;
    }
    match value.rsplit_once('@') {
        Some((local, domain)) => (local.is_empty() || is_dot_atom(local)) && is_dot_atom(domain),
        None => false,
    }
}

fn write_value(out: &mut String, value: &str) {
    if is_bare_value(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // CR and LF cannot appear in a quoted-string (RFC 5322 3.2.4).
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_comment(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    comments: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(s: &'a [u8]) -> Parser<'a> {
        Parser {
            s,
            i: 0,
            comments: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn cfws(&mut self) -> Result<(), AuthResError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.i += 1,
                Some(b'(') => {
                    let c = self.comment()?;
                    self.comments.push(c);
                }
                _ => return Ok(()),
            }
        }
    }

    fn comment(&mut self) -> Result<String, AuthResError> {
        let mut depth = 0usize;
        let mut text = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(AuthResError::Unterminated);
            };
            self.i += 1;
            match b {
                b'(' => {
                    depth += 1;
                    if depth > MAX_COMMENT_DEPTH {
                        return Err(AuthResError::TooMany);
                    }
                    if depth > 1 {
                        text.push(b);
                    }
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(String::from_utf8_lossy(&text).into_owned());
                    }
                    text.push(b);
                }
                b'\\' => {
                    let Some(n) = self.peek() else {
                        return Err(AuthResError::Unterminated);
                    };
                    self.i += 1;
                    if n != b'\r' && n != b'\n' {
                        text.push(n);
                    }
                }
                // Unfolding (RFC 5322 section 2.2.3): line breaks inside a
                // comment are not part of its text.
                b'\r' | b'\n' => {}
                b => text.push(b),
            }
        }
    }

    /// A `token` or a `[local-part] "@" domain` or a quoted-string.
    fn value(&mut self) -> Result<String, AuthResError> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            let mut v = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(AuthResError::Unterminated),
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(String::from_utf8_lossy(&v).into_owned());
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let Some(n) = self.peek() else {
                            return Err(AuthResError::Unterminated);
                        };
                        if n != b'\r' && n != b'\n' {
                            v.push(n);
                        }
                        self.i += 1;
                    }
                    Some(b'\r' | b'\n') => self.i += 1,
                    Some(b) => {
                        v.push(b);
                        self.i += 1;
                    }
                }
            }
        }
        let start = self.i;
        while let Some(b) = self.peek() {
            if b <= b' ' || b == b';' || b == b'(' || b == b'"' || b == 0x7f {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(AuthResError::Syntax(self.i));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A keyword: letters, digits, `-`, `_`.
    fn keyword(&mut self) -> Result<String, AuthResError> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return Err(AuthResError::Syntax(self.i));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase())
    }

    fn expect(&mut self, b: u8) -> Result<(), AuthResError> {
        self.cfws()?;
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(AuthResError::Syntax(self.i))
        }
    }

    fn field(&mut self) -> Result<AuthenticationResults, AuthResError> {
        self.cfws()?;
        if matches!(self.peek(), None | Some(b';')) {
            return Err(AuthResError::MissingAuthservId);
        }
        let authserv_id = self.value()?;
        let mut ar = AuthenticationResults::new(&authserv_id);
        self.cfws()?;
        if let Some(b'0'..=b'9') = self.peek() {
            let v = self.keyword()?;
            ar.version = Some(v.parse().map_err(|_| AuthResError::Syntax(self.i))?);
            self.cfws()?;
        }
        loop {
            self.cfws()?;
            match self.peek() {
                None => break,
                Some(b';') => self.i += 1,
                Some(_) => return Err(AuthResError::Syntax(self.i)),
            }
            self.cfws()?;
            if self.peek().is_none() {
                break;
            }
            let method = self.keyword()?;
            if method == "none" && ar.results.is_empty() {
                self.cfws()?;
                if self.peek().is_none() {
                    break;
                }
            }
            if ar.results.len() >= MAX_RESULTS {
                return Err(AuthResError::TooMany);
            }
            let mut r = MethodResult::new(&method, "");
            self.cfws()?;
            if self.peek() == Some(b'/') {
                self.i += 1;
                self.cfws()?;
                let v = self.keyword()?;
                r.method_version = Some(v.parse().map_err(|_| AuthResError::Syntax(self.i))?);
            }
            self.expect(b'=')?;
            self.cfws()?;
            r.result = self.keyword()?;
            self.comments.clear();
            loop {
                self.cfws()?;
                if r.comment.is_none() && !self.comments.is_empty() {
                    r.comment = Some(self.comments.remove(0));
                }
                match self.peek() {
                    None | Some(b';') => break,
                    _ => {}
                }
                let ptype = self.keyword()?;
                self.cfws()?;
                if ptype == "reason" && self.peek() == Some(b'=') {
                    self.i += 1;
                    self.cfws()?;
                    r.reason = Some(self.value()?);
                    continue;
                }
                self.expect(b'.')?;
                self.cfws()?;
                let property = self.keyword()?;
                self.expect(b'=')?;
                self.cfws()?;
                let value = self.value()?;
                if r.properties.len() >= MAX_PROPERTIES {
                    return Err(AuthResError::TooMany);
                }
                r.properties.push(Property {
                    ptype,
                    property,
                    value,
                });
            }
            ar.results.push(r);
        }
        Ok(ar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8601_appendix_b_examples_parse() {
        // B.2
        let ar = AuthenticationResults::parse("example.org 1; none").unwrap();
        assert_eq!(ar.version, Some(1));
        assert!(ar.results.is_empty());
        // B.4
        let ar =
            AuthenticationResults::parse("example.com;\r\n  spf=pass smtp.mailfrom=example.net")
                .unwrap();
        assert_eq!(
            ar.results[0].property("smtp", "mailfrom"),
            Some("example.net")
        );
        // B.5 (comments, a quoted value, several results)
        let ar = AuthenticationResults::parse(
            "example.com;\r\n auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n \
             spf=pass smtp.mailfrom=example.net",
        )
        .unwrap();
        assert_eq!(ar.results.len(), 2);
        assert_eq!(ar.results[0].comment.as_deref(), Some("cram-md5"));
        assert_eq!(
            ar.results[0].property("smtp", "auth"),
            Some("sender@example.net")
        );
        // B.6
        let ar = AuthenticationResults::parse(
            "Authentication-Results: example.com;\r\n dkim=pass reason=\"good signature\"\r\n \
             header.i=@mail-router.example.net;\r\n dkim=fail reason=\"bad signature\"\r\n \
             header.i=@newyork.example.com",
        )
        .unwrap();
        assert_eq!(ar.results[0].reason.as_deref(), Some("good signature"));
        assert_eq!(
            ar.results[1].property("header", "i"),
            Some("@newyork.example.com")
        );
    }

    #[test]
    fn quoting() {
        let ar = AuthenticationResults::new("mx.example.org").push(
            MethodResult::new("dkim", "fail")
                .with("header", "b", "a/b=")
                .with("header", "i", "\"odd\\local\"@example.com")
                .with("smtp", "mailfrom", "user@example.com"),
        );
        let text = ar.to_string();
        assert!(text.contains("header.b=\"a/b=\""), "{text}");
        assert!(
            text.contains("header.i=\"\\\"odd\\\\local\\\"@example.com\""),
            "{text}"
        );
        assert!(text.contains("smtp.mailfrom=user@example.com"), "{text}");
        assert_eq!(AuthenticationResults::parse(&text).unwrap(), ar);
    }

    #[test]
    fn line_breaks_in_comments_are_unfolded() {
        // Found by the dmarc_authres fuzz target: a bare CR inside a comment
        // was kept by the parser but written as a space.
        let input = "mx.example; spf=pass (a\rb\r\n c\\\rd) smtp.mailfrom=example.org";
        let ar = AuthenticationResults::parse(input).unwrap();
        assert_eq!(ar.results[0].comment.as_deref(), Some("ab cd"));
        let again = AuthenticationResults::parse(&ar.to_string()).unwrap();
        assert_eq!(again, ar);
    }

    #[test]
    fn comment_escapes_round_trip() {
        let mut r = MethodResult::new("dmarc", "fail");
        r.comment = Some("p=reject (x) \\ dis=none".into());
        r.reason = Some("no aligned; identifier".into());
        let ar = AuthenticationResults::new("h").push(r);
        assert_eq!(AuthenticationResults::parse(&ar.to_string()).unwrap(), ar);
    }

    #[test]
    fn errors() {
        assert_eq!(
            AuthenticationResults::parse(""),
            Err(AuthResError::MissingAuthservId)
        );
        assert_eq!(
            AuthenticationResults::parse("h; spf=pass (open"),
            Err(AuthResError::Unterminated)
        );
        assert!(AuthenticationResults::parse("h; spf").is_err());
        assert!(AuthenticationResults::parse("h; spf=pass smtp").is_err());
        let deep = format!("h; spf=pass {}", "(".repeat(100));
        assert!(AuthenticationResults::parse(&deep).is_err());
    }
}
