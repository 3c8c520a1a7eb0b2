//! Macro strings (RFC 7208 section 7): parsing and expansion.
//!
//! ```text
//! macro-string = *( macro-expand / macro-literal )
//! macro-expand = ( "%{" macro-letter transformers *delimiter "}" )
//!                / "%%" / "%_" / "%-"
//! transformers = *DIGIT [ "r" ]
//! delimiter    = "." / "-" / "+" / "," / "/" / "_" / "="
//! ```
//!
//! Parsing is separate from expansion: a [`MacroString`] is checked once, when
//! the record is parsed, and expanded later against a [`MacroValues`] source.
//! The letters `c`, `r` and `t` are accepted only in explanation text
//! ([`MacroContext::Explanation`], RFC 7208 section 7.3).

use std::fmt;

use crate::{MAX_EXPANSION_LEN, MacroError};

/// Where a macro string appears, which decides the letters and characters
/// it may use (RFC 7208 sections 6.2 and 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacroContext {
    /// A `domain-spec` or an unknown modifier's value: no spaces, no `c`,
    /// `r` or `t`.
    Domain,
    /// The text of an explanation TXT record (`explanation-string`): spaces
    /// are allowed and so are `c`, `r` and `t`.
    Explanation,
}

/// A macro letter (RFC 7208 section 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacroLetter {
    /// `s`: the `<sender>`.
    Sender,
    /// `l`: the local-part of `<sender>`.
    LocalPart,
    /// `o`: the domain of `<sender>`.
    SenderDomain,
    /// `d`: the current `<domain>`.
    Domain,
    /// `i`: `<ip>` (dotted quad, or dot-separated nibbles for IPv6).
    Ip,
    /// `p`: the validated domain name of `<ip>` (discouraged).
    ValidatedDomain,
    /// `v`: `in-addr` for IPv4, `ip6` for IPv6.
    IpVersion,
    /// `h`: the HELO/EHLO domain.
    Helo,
    /// `c`: the SMTP client IP in its readable form (explanation only).
    ClientIp,
    /// `r`: the domain name of the receiving host (explanation only).
    Receiver,
    /// `t`: the current timestamp (explanation only).
    Timestamp,
}

impl MacroLetter {
    fn from_char(c: u8) -> Option<(Self, bool)> {
        let letter = match c.to_ascii_lowercase() {
            b's' => Self::Sender,
            b'l' => Self::LocalPart,
            b'o' => Self::SenderDomain,
            b'd' => Self::Domain,
            b'i' => Self::Ip,
            b'p' => Self::ValidatedDomain,
            b'v' => Self::IpVersion,
            b'h' => Self::Helo,
            b'c' => Self::ClientIp,
            b'r' => Self::Receiver,
            b't' => Self::Timestamp,
            _ => return None,
        };
        Some((letter, c.is_ascii_uppercase()))
    }

    /// The lower-case letter.
    pub fn as_char(self) -> char {
        match self {
            Self::Sender => 's',
            Self::LocalPart => 'l',
            Self::SenderDomain => 'o',
            Self::Domain => 'd',
            Self::Ip => 'i',
            Self::ValidatedDomain => 'p',
            Self::IpVersion => 'v',
            Self::Helo => 'h',
            Self::ClientIp => 'c',
            Self::Receiver => 'r',
            Self::Timestamp => 't',
        }
    }

    /// Whether the letter is allowed only in explanation text.
    pub fn explanation_only(self) -> bool {
        matches!(self, Self::ClientIp | Self::Receiver | Self::Timestamp)
    }
}

/// One `%{...}` expansion (RFC 7208 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    /// Which value to expand.
    pub letter: MacroLetter,
    /// Upper-case letter: URL-escape the result (RFC 7208 section 7.3).
    pub url_escape: bool,
    /// Keep this many right-hand parts (never zero; values above 255 are
    /// stored as 255, which already keeps every part of any domain name).
    pub keep: Option<u8>,
    /// Reverse the parts before keeping.
    pub reverse: bool,
    /// Delimiters as written; empty means `.`.
    pub delimiters: String,
}

/// A piece of a macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroPart {
    /// Literal text (visible ASCII other than `%`; spaces too in
    /// explanations).
    Literal(String),
    /// A `%{...}` expansion.
    Macro(Macro),
    /// `%%`: a percent sign.
    Percent,
    /// `%_`: a space.
    Space,
    /// `%-`: the URL-encoded space `%20`.
    UrlSpace,
}

/// A parsed macro string (RFC 7208 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MacroString {
    parts: Vec<MacroPart>,
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'.' | b'-' | b'+' | b',' | b'/' | b'_' | b'=')
}

impl MacroString {
    /// Parses `input` as a macro string for `context`.
    ///
    /// # Errors
    ///
    /// A [`MacroError`] naming the first offending construct.
    pub fn parse(input: &str, context: MacroContext) -> Result<Self, MacroError> {
        let bytes = input.as_bytes();
        let mut parts: Vec<MacroPart> = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c != b'%' {
                let ok =
                    matches!(c, 0x21..=0x7e) || (c == b' ' && context == MacroContext::Explanation);
                if !ok {
                    return Err(MacroError::InvalidCharacter(c));
                }
                literal.push(char::from(c));
                i += 1;
                continue;
            }
            let part = match bytes.get(i + 1) {
                Some(b'%') => {
                    i += 2;
                    MacroPart::Percent
                }
                Some(b'_') => {
                    i += 2;
                    MacroPart::Space
                }
                Some(b'-') => {
                    i += 2;
                    MacroPart::UrlSpace
                }
                Some(b'{') => {
                    let (m, used) = parse_expand(&bytes[i + 2..], context)?;
                    i += 2 + used;
                    MacroPart::Macro(m)
                }
                _ => return Err(MacroError::InvalidPercent),
            };
            if !literal.is_empty() {
                parts.push(MacroPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(MacroPart::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The parts in order.
    pub fn parts(&self) -> &[MacroPart] {
        &self.parts
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether any part is a `%{p}` macro (which costs DNS lookups).
    pub fn uses_validated_domain(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, MacroPart::Macro(m) if m.letter == MacroLetter::ValidatedDomain))
    }

    /// Checks the `domain-end` rule of a `domain-spec` (RFC 7208 section
    /// 7.1): the string ends with a macro expansion, or with `"." toplabel
    /// ["."]`.
    pub fn is_valid_domain_spec(&self) -> bool {
        match self.parts.last() {
            None => false,
            Some(MacroPart::Literal(text)) => {
                let text = text.strip_suffix('.').unwrap_or(text);
                match text.rfind('.') {
                    Some(dot) => is_toplabel(&text[dot + 1..]),
                    None => false,
                }
            }
            Some(_) => true,
        }
    }

    /// The text of a macro string that is one literal (no macros).
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [MacroPart::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Expands the string with `values`; the output is bounded by
    /// [`MAX_EXPANSION_LEN`].
    ///
    /// # Errors
    ///
    /// Whatever `values` returns when asked for a letter.
    pub fn expand<V: MacroValues>(&self, values: &mut V) -> Result<String, V::Error> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                MacroPart::Literal(text) => out.push_str(text),
                MacroPart::Percent => out.push('%'),
                MacroPart::Space => out.push(' '),
                MacroPart::UrlSpace => out.push_str("%20"),
                MacroPart::Macro(m) => {
                    let value = values.value(m.letter)?;
                    expand_one(m, &value, &mut out);
                }
            }
            if out.len() > MAX_EXPANSION_LEN {
                let mut cut = MAX_EXPANSION_LEN;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                break;
            }
        }
        Ok(out)
    }
}

/// The source of macro values during expansion.
pub trait MacroValues {
    /// Error returned when a value cannot be produced (for instance, a DNS
    /// answer is still missing for `p`).
    type Error;
    /// The raw (untransformed) value of `letter`.
    ///
    /// # Errors
    ///
    /// When the value cannot be produced now.
    fn value(&mut self, letter: MacroLetter) -> Result<String, Self::Error>;
}

fn parse_expand(bytes: &[u8], context: MacroContext) -> Result<(Macro, usize), MacroError> {
    let Some(&letter) = bytes.first() else {
        return Err(MacroError::Unterminated);
    };
    let Some((letter, url_escape)) = MacroLetter::from_char(letter) else {
        return Err(MacroError::UnknownLetter(letter));
    };
    if letter.explanation_only() && context != MacroContext::Explanation {
        return Err(MacroError::ExplanationOnlyLetter(letter.as_char()));
    }
    let mut i = 1;
    let mut keep: Option<u32> = None;
    while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        let v = keep.unwrap_or(0);
        keep = Some(v.saturating_mul(10).saturating_add(u32::from(d - b'0')));
        i += 1;
    }
    if keep == Some(0) {
        return Err(MacroError::ZeroDigits);
    }
    let mut reverse = false;
    if matches!(bytes.get(i), Some(b'r' | b'R')) {
        reverse = true;
        i += 1;
    }
    let mut delimiters = String::new();
    loop {
        match bytes.get(i) {
            Some(b'}') => break,
            Some(&c) if is_delimiter(c) => {
                delimiters.push(char::from(c));
                i += 1;
            }
            Some(&c) => return Err(MacroError::InvalidCharacter(c)),
            None => return Err(MacroError::Unterminated),
        }
    }
    let keep = keep.map(|k| u8::try_from(k).unwrap_or(u8::MAX));
    Ok((
        Macro {
            letter,
            url_escape,
            keep,
            reverse,
            delimiters,
        },
        i + 1,
    ))
}

/// `toplabel` (RFC 7208 section 7.1): alphanumeric with at least one
/// letter, or alphanumeric with inner hyphens.
pub(crate) fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if b.contains(&b'-') {
        b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()
    } else {
        b.iter().any(u8::is_ascii_alphabetic)
    }
}

fn expand_one(m: &Macro, value: &str, out: &mut String) {
    let plain = m.keep.is_none() && !m.reverse && m.delimiters.is_empty();
    let transformed;
    let text = if plain {
        value
    } else {
        let delims = if m.delimiters.is_empty() {
            "."
        } else {
            m.delimiters.as_str()
        };
        let mut parts: Vec<&str> = value.split(|c| delims.contains(c)).collect();
        if m.reverse {
            parts.reverse();
        }
        if let Some(keep) = m.keep {
            let keep = usize::from(keep);
            if parts.len() > keep {
                parts.drain(..parts.len() - keep);
            }
        }
        transformed = parts.join(".");
        &transformed
    };
    if m.url_escape {
        url_escape(text, out);
    } else {
        out.push_str(text);
    }
}

/// Percent-encodes everything outside the URI `unreserved` set (RFC 3986),
/// as RFC 7208 section 7.3 asks for upper-case macro letters.
fn url_escape(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

impl fmt::Display for Macro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.letter.as_char();
        let c = if self.url_escape {
            c.to_ascii_uppercase()
        } else {
            c
        };
        write!(f, "%{{{c}")?;
        if let Some(keep) = self.keep {
            write!(f, "{keep}")?;
        }
        if self.reverse {
            f.write_str("r")?;
        }
        write!(f, "{}}}", self.delimiters)
    }
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                MacroPart::Literal(text) => f.write_str(text)?,
                MacroPart::Macro(m) => write!(f, "{m}")?,
                MacroPart::Percent => f.write_str("%%")?,
                MacroPart::Space => f.write_str("%_")?,
                MacroPart::UrlSpace => f.write_str("%-")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// The values of RFC 7208 section 7.4's examples.
    struct Rfc;
    impl MacroValues for Rfc {
        type Error = Infallible;
        fn value(&mut self, letter: MacroLetter) -> Result<String, Infallible> {
            Ok(match letter {
                MacroLetter::Sender => "strong-bad@email.example.com",
                MacroLetter::LocalPart => "strong-bad",
                MacroLetter::SenderDomain | MacroLetter::Domain => "email.example.com",
                MacroLetter::Ip | MacroLetter::ClientIp => "192.0.2.3",
                MacroLetter::ValidatedDomain => "mx.example.org",
                MacroLetter::IpVersion => "in-addr",
                MacroLetter::Helo => "mx.example.org",
                MacroLetter::Receiver => "mx.example.net",
                MacroLetter::Timestamp => "1234567890",
            }
            .to_string())
        }
    }

    fn x(s: &str) -> String {
        let ms = MacroString::parse(s, MacroContext::Domain).expect(s);
        let Ok(out) = ms.expand(&mut Rfc);
        out
    }

    #[test]
    fn rfc7208_section_7_4_examples() {
        assert_eq!(x("%{s}"), "strong-bad@email.example.com");
        assert_eq!(x("%{o}"), "email.example.com");
        assert_eq!(x("%{d}"), "email.example.com");
        assert_eq!(x("%{d4}"), "email.example.com");
        assert_eq!(x("%{d3}"), "email.example.com");
        assert_eq!(x("%{d2}"), "example.com");
        assert_eq!(x("%{d1}"), "com");
        assert_eq!(x("%{dr}"), "com.example.email");
        assert_eq!(x("%{d2r}"), "example.email");
        assert_eq!(x("%{l}"), "strong-bad");
        assert_eq!(x("%{l-}"), "strong.bad");
        assert_eq!(x("%{lr}"), "strong-bad");
        assert_eq!(x("%{lr-}"), "bad.strong");
        assert_eq!(x("%{l1r-}"), "strong");
        assert_eq!(
            x("%{ir}.%{v}._spf.%{d2}"),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(x("%{lr-}.lp._spf.%{d2}"), "bad.strong.lp._spf.example.com");
        assert_eq!(
            x("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}"),
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            x("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}"),
            "3.2.0.192.in-addr.strong.lp._spf.example.com"
        );
        assert_eq!(
            x("%{d2}.trusted-domains.example.net"),
            "example.com.trusted-domains.example.net"
        );
    }

    #[test]
    fn escapes_and_url_encoding() {
        assert_eq!(x("%%%_%-"), "% %20");
        assert_eq!(x("%{S}"), "strong-bad%40email.example.com");
        let ms = MacroString::parse("%{c} %{r} %{t}", MacroContext::Explanation).unwrap();
        let Ok(out) = ms.expand(&mut Rfc);
        assert_eq!(out, "192.0.2.3 mx.example.net 1234567890");
    }

    #[test]
    fn syntax_errors() {
        use MacroContext::Domain;
        assert_eq!(
            MacroString::parse("%(ir)", Domain),
            Err(MacroError::InvalidPercent)
        );
        assert_eq!(
            MacroString::parse("foo%", Domain),
            Err(MacroError::InvalidPercent)
        );
        assert_eq!(
            MacroString::parse("%{a}", Domain),
            Err(MacroError::UnknownLetter(b'a'))
        );
        assert_eq!(
            MacroString::parse("%{c}", Domain),
            Err(MacroError::ExplanationOnlyLetter('c'))
        );
        assert_eq!(
            MacroString::parse("%{d0}", Domain),
            Err(MacroError::ZeroDigits)
        );
        assert_eq!(
            MacroString::parse("%{d", Domain),
            Err(MacroError::Unterminated)
        );
        assert_eq!(
            MacroString::parse("%{d2x}", Domain),
            Err(MacroError::InvalidCharacter(b'x'))
        );
        assert_eq!(
            MacroString::parse("a b", Domain),
            Err(MacroError::InvalidCharacter(b' '))
        );
        assert!(MacroString::parse("a b", MacroContext::Explanation).is_ok());
    }

    #[test]
    fn huge_digit_transformer_keeps_everything() {
        assert_eq!(x("%{d99999999999999999999}"), "email.example.com");
    }

    #[test]
    fn domain_end() {
        let ok = |s: &str| {
            MacroString::parse(s, MacroContext::Domain)
                .unwrap()
                .is_valid_domain_spec()
        };
        assert!(ok("example.com"));
        assert!(ok("example.com."));
        assert!(ok("foo.example.xn--zckzah"));
        assert!(ok("%{d}"));
        assert!(ok("foo.%{d}"));
        assert!(ok("foo%%"));
        assert!(ok("foo:bar/baz.example.com"));
        assert!(!ok("museum"));
        assert!(!ok("museum."));
        assert!(!ok("abc.123"));
        assert!(!ok("example.-com"));
        assert!(!ok("example.com:8080"));
        assert!(!ok("%{d}com"));
        assert!(!ok("a.com/24"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["%{d2r-.}x.%{L}.%%%_%-", "plain.example.com", "%{i}"] {
            let ms = MacroString::parse(s, MacroContext::Domain).unwrap();
            assert_eq!(ms.to_string(), s);
        }
    }
}
