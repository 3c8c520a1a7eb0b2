//! The `Received-SPF` header field (RFC 7208 section 9.1).
//!
//! ```text
//! header-field   = "Received-SPF:" [CFWS] result FWS [comment FWS]
//!                  [ key-value-list ] CRLF
//! key-value-pair = key [CFWS] "=" ( dot-atom / quoted-string )
//! ```

use std::fmt;

use crate::{Identity, Output, Request, SpfResult};

/// A `Received-SPF` field built from a request and its output.
///
/// `Display` writes one unfolded line without the trailing CRLF, starting
/// with the field name:
///
/// ```text
/// Received-SPF: pass (mx.example.org: domain of a@example.com designates
///   192.0.2.1 as permitted sender) client-ip=192.0.2.1;
///   envelope-from="a@example.com"; helo=mail.example.com;
///   receiver=mx.example.org; mechanism="ip4:192.0.2.0/24"; identity=mailfrom
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReceivedSpf<'a> {
    request: &'a Request,
    output: &'a Output,
    receiver: &'a str,
}

impl<'a> ReceivedSpf<'a> {
    /// A header for `output`, the evaluation of `request`, written by the
    /// host `receiver`.
    pub fn new(request: &'a Request, output: &'a Output, receiver: &'a str) -> Self {
        Self {
            request,
            output,
            receiver,
        }
    }

    /// The field body (what follows `Received-SPF:`), without the leading
    /// space.
    pub fn value(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_value(&mut out);
        out
    }

    fn write_value(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let out = self.output;
        let req = self.request;
        let ip = unmapped(req.ip);
        let sender = match (req.identity, req.sender.is_empty()) {
            (Identity::MailFrom, false) => req.sender.clone(),
            _ => format!("postmaster@{}", req.helo),
        };
        let domain = &out.domain;
        let comment = match out.result {
            SpfResult::Pass => format!("domain of {sender} designates {ip} as permitted sender"),
            SpfResult::Fail => {
                format!("domain of {sender} does not designate {ip} as permitted sender")
            }
            SpfResult::SoftFail => format!(
                "domain of transitioning {sender} does not designate {ip} as permitted sender"
            ),
            SpfResult::Neutral => {
                format!("{ip} is neither permitted nor denied by domain of {sender}")
            }
            SpfResult::None => format!("{domain} does not designate permitted sender hosts"),
            SpfResult::TempError => format!("error in processing during lookup of {domain}"),
            SpfResult::PermError => format!("permanent error in processing domain of {domain}"),
        };
        write!(f, "{} (", out.result)?;
        write_comment_text(f, &format!("{}: {comment}", self.receiver))?;
        f.write_str(")")?;
        let mut pair = |key: &str, value: &str| -> fmt::Result {
            write!(f, " {key}=")?;
            write_value(f, value)?;
            f.write_str(";")
        };
        pair("client-ip", &ip.to_string())?;
        if req.identity == Identity::MailFrom {
            pair("envelope-from", &req.sender)?;
        }
        pair("helo", &req.helo)?;
        pair("receiver", self.receiver)?;
        if let Some(mechanism) = &out.mechanism {
            pair("mechanism", mechanism)?;
        }
        if let Some(problem) = &out.problem {
            pair("problem", &problem.to_string())?;
        }
        write!(f, " identity={}", req.identity.as_str())
    }
}

impl fmt::Display for ReceivedSpf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Received-SPF: ")?;
        self.write_value(f)
    }
}

fn unmapped(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// `atext` of RFC 5322 section 3.2.3.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// Whether `s` is a `dot-atom-text`.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Longest key-value value written, in characters; longer values (a
/// problem quoting a huge term) are cut and end in `...`, which keeps the
/// field well under the 998-octet line limit of RFC 5322 section 2.1.1.
pub const MAX_VALUE_CHARS: usize = 200;

/// Writes `value` as a dot-atom when it is one, else as a quoted-string.
/// Characters that no quoted-string can carry (controls) become `?`; UTF-8
/// passes through (RFC 6532).
fn write_value(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let cut;
    let value = if value.chars().count() > MAX_VALUE_CHARS {
        cut = format!(
            "{}...",
            value.chars().take(MAX_VALUE_CHARS).collect::<String>()
        );
        cut.as_str()
    } else {
        value
    };
    if is_dot_atom(value) {
        return f.write_str(value);
    }
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            ' ' | '\t' => f.write_char(c)?,
            c if c.is_control() => f.write_char('?')?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Writes comment text, escaping what would end or nest the comment.
fn write_comment_text(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if c.is_control() => f.write_char('?')?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(result: SpfResult, mechanism: Option<&str>) -> Output {
        Output {
            result,
            domain: "example.com".into(),
            explanation: None,
            mechanism: mechanism.map(Into::into),
            problem: None,
            dns_terms: 0,
            void_lookups: 0,
            queries: 1,
        }
    }

    #[test]
    fn pass_header() {
        let req = Request::mail_from(
            "192.0.2.1".parse().unwrap(),
            "a@example.com",
            "mail.example.com",
        );
        let out = output(SpfResult::Pass, Some("ip4:192.0.2.0/24"));
        assert_eq!(
            ReceivedSpf::new(&req, &out, "mx.example.org").to_string(),
            "Received-SPF: pass (mx.example.org: domain of a@example.com designates 192.0.2.1 \
             as permitted sender) client-ip=192.0.2.1; envelope-from=\"a@example.com\"; \
             helo=mail.example.com; receiver=mx.example.org; mechanism=\"ip4:192.0.2.0/24\"; \
             identity=mailfrom"
        );
    }

    #[test]
    fn quoting() {
        let req = Request::helo("2001:db8::1".parse().unwrap(), "we\"ird (helo)\r\n");
        let out = output(SpfResult::None, None);
        let h = ReceivedSpf::new(&req, &out, "mx").value();
        assert_eq!(
            h,
            "none (mx: example.com does not designate permitted sender hosts) \
             client-ip=\"2001:db8::1\"; helo=\"we\\\"ird (helo)??\"; receiver=mx; identity=helo"
        );
        let mut s = String::new();
        write_comment_text(&mut s, "a(b)c\\").unwrap();
        assert_eq!(s, "a\\(b\\)c\\\\");
        let mut s = String::new();
        write_value(&mut s, &"x ".repeat(500)).unwrap();
        assert_eq!(s.chars().count(), MAX_VALUE_CHARS + 5);
        assert!(s.ends_with("...\""));
        assert!(is_dot_atom("mail.example.com"));
        assert!(!is_dot_atom("a..b"));
        assert!(!is_dot_atom(""));
    }
}
