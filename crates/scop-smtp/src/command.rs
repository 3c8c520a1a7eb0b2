//! Commands (RFC 5321 4.1) and their arguments: domains, address literals,
//! mailboxes, paths (4.1.2, with RFC 6531 SMTPUTF8 forms) and ESMTP
//! parameters.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, InvalidInput, PeerMisbehaved};
use crate::limits::{DOMAIN_MAX, LOCAL_PART_MAX, PARAMETERS_MAX, PATH_MAX};

/// A domain name, validated per RFC 5321 4.1.2 `Domain` (ASCII LDH labels)
/// or, when SMTPUTF8 is allowed, with U-labels (RFC 6531 3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    /// Validate `s` as a domain; `utf8` allows U-labels.
    pub fn parse(s: &str, utf8: bool) -> Result<Self, Error> {
        if s.is_empty() || s.len() > DOMAIN_MAX {
            return Err(if s.is_empty() {
                InvalidInput::Domain
            } else {
                InvalidInput::AddressTooLong
            }
            .into());
        }
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii()));
            if !ok {
                return Err(InvalidInput::Domain.into());
            }
        }
        Ok(Domain(s.to_string()))
    }

    /// The domain as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The right-hand side of a mailbox or the EHLO argument: a domain or an
/// address literal (RFC 5321 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name.
    Domain(Domain),
    /// `[1.2.3.4]`.
    Ipv4(Ipv4Addr),
    /// `[IPv6:...]`.
    Ipv6(Ipv6Addr),
    /// `[tag:value]` General-address-literal.
    General {
        /// Standardized-tag.
        tag: String,
        /// dcontent.
        value: String,
    },
}

impl Host {
    /// Parse a domain or an address literal.
    pub fn parse(s: &str, utf8: bool) -> Result<Self, Error> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(InvalidInput::Domain)?;
            if let Some(v6) = strip_prefix_ci(inner, "IPv6:") {
                return v6
                    .parse::<Ipv6Addr>()
                    .map(Host::Ipv6)
                    .map_err(|_| InvalidInput::Domain.into());
            }
            if let Ok(v4) = inner.parse::<Ipv4Addr>() {
                return Ok(Host::Ipv4(v4));
            }
            let (tag, value) = inner.split_once(':').ok_or(InvalidInput::Domain)?;
            let tag_ok = !tag.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !tag.ends_with('-');
            let val_ok = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
            if tag_ok && val_ok {
                Ok(Host::General {
                    tag: tag.to_string(),
                    value: value.to_string(),
                })
            } else {
                Err(InvalidInput::Domain.into())
            }
        } else {
            Domain::parse(s, utf8).map(Host::Domain)
        }
    }

    /// Whether every character is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            Host::Domain(d) => d.0.is_ascii(),
            _ => true,
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(&d.0),
            Host::Ipv4(a) => write!(f, "[{a}]"),
            Host::Ipv6(a) => write!(f, "[IPv6:{a}]"),
            Host::General { tag, value } => write!(f, "[{tag}:{value}]"),
        }
    }
}

/// A mailbox `Local-part "@" ( Domain / address-literal )`
/// (RFC 5321 4.1.2), local part kept in its wire form (quoted or not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local_part: String,
    host: Host,
}

impl Mailbox {
    /// Parse `local@host`; `utf8` allows RFC 6531 forms.
    pub fn parse(s: &str, utf8: bool) -> Result<Self, Error> {
        let mut c = Cursor::new(s);
        let m = c.mailbox(utf8, InvalidInput::ForwardPath)?;
        if !c.at_end() {
            return Err(InvalidInput::ForwardPath.into());
        }
        Ok(m)
    }

    /// The local part as sent (quotes and escapes kept).
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The local part with quoting removed.
    pub fn local_part_unquoted(&self) -> String {
        match self
            .local_part
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
        {
            None => self.local_part.clone(),
            Some(inner) => {
                let mut out = String::new();
                let mut esc = false;
                for ch in inner.chars() {
                    if esc || ch != '\\' {
                        out.push(ch);
                        esc = false;
                    } else {
                        esc = true;
                    }
                }
                out
            }
        }
    }

    /// The domain or address literal.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Whether the whole address is ASCII (else it needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local_part.is_ascii() && self.host.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.host)
    }
}

/// `Reverse-path = Path / "<>"` (RFC 5321 4.1.2); source routes are parsed
/// and dropped (RFC 5321 4.1.2 and appendix C).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// The null reverse-path `<>` (bounces, RFC 5321 4.5.5).
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// Whether the address is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Mailbox(m) => m.is_ascii(),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// `"<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path`
/// (RFC 5321 4.1.1.3); the domain form parses as a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without domain (RFC 5321 4.5.1).
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// Whether the address is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ForwardPath::Postmaster => true,
            ForwardPath::Mailbox(m) => m.is_ascii(),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// One `esmtp-param = esmtp-keyword ["=" esmtp-value]` (RFC 5321 4.1.2);
/// the keyword is upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parameter {
    /// Upper-cased keyword.
    pub keyword: String,
    /// Raw value (not xtext-decoded).
    pub value: Option<String>,
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            None => f.write_str(&self.keyword),
            Some(v) => write!(f, "{}={v}", self.keyword),
        }
    }
}

/// An SMTP command (RFC 5321 4.1.1, plus RFC 3030 BDAT, RFC 3207
/// STARTTLS, RFC 4954 AUTH, and extension verbs).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO` (RFC 5321 4.1.1.1).
    Ehlo(Host),
    /// `HELO` (RFC 5321 4.1.1.1).
    Helo(Host),
    /// `MAIL FROM:` (RFC 5321 4.1.1.2).
    Mail {
        /// Reverse-path.
        from: ReversePath,
        /// Mail-parameters.
        params: Vec<Parameter>,
    },
    /// `RCPT TO:` (RFC 5321 4.1.1.3).
    Rcpt {
        /// Forward-path.
        to: ForwardPath,
        /// Rcpt-parameters.
        params: Vec<Parameter>,
    },
    /// `DATA` (RFC 5321 4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 2).
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET` (RFC 5321 4.1.1.5).
    Rset,
    /// `VRFY` (RFC 5321 4.1.1.6).
    Vrfy(String),
    /// `EXPN` (RFC 5321 4.1.1.7).
    Expn(String),
    /// `HELP` (RFC 5321 4.1.1.8).
    Help(Option<String>),
    /// `NOOP` (RFC 5321 4.1.1.9).
    Noop,
    /// `QUIT` (RFC 5321 4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207 4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 4).
    Auth {
        /// Upper-cased SASL mechanism name.
        mechanism: String,
        /// The initial response as sent (base64 or `=`).
        initial: Option<String>,
    },
    /// Any other verb (extension verbs, RFC 5321 4.1.5).
    Other {
        /// Upper-cased verb.
        verb: String,
        /// Everything after the first space.
        args: String,
    },
}

impl Command {
    /// Append the wire form, CRLF included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let s = match self {
            Command::Ehlo(h) => format!("EHLO {h}"),
            Command::Helo(h) => format!("HELO {h}"),
            Command::Mail { from, params } => format!("MAIL FROM:{from}{}", join_params(params)),
            Command::Rcpt { to, params } => format!("RCPT TO:{to}{}", join_params(params)),
            Command::Data => "DATA".into(),
            Command::Bdat { size, last } => {
                format!("BDAT {size}{}", if *last { " LAST" } else { "" })
            }
            Command::Rset => "RSET".into(),
            Command::Vrfy(s) => format!("VRFY {s}"),
            Command::Expn(s) => format!("EXPN {s}"),
            Command::Help(None) => "HELP".into(),
            Command::Help(Some(s)) => format!("HELP {s}"),
            Command::Noop => "NOOP".into(),
            Command::Quit => "QUIT".into(),
            Command::StartTls => "STARTTLS".into(),
            Command::Auth {
                mechanism,
                initial: None,
            } => format!("AUTH {mechanism}"),
            Command::Auth {
                mechanism,
                initial: Some(i),
            } => format!("AUTH {mechanism} {i}"),
            Command::Other { verb, args } if args.is_empty() => verb.clone(),
            Command::Other { verb, args } => format!("{verb} {args}"),
        };
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The upper-cased verb.
    pub fn verb(&self) -> &str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::Other { verb, .. } => verb,
        }
    }
}

fn join_params(params: &[Parameter]) -> String {
    params.iter().map(|p| format!(" {p}")).collect()
}

/// Parse one command line (CRLF already removed). `utf8` enables the
/// RFC 6531 address and parameter forms; without it, non-ASCII input in
/// MAIL/RCPT is [`PeerMisbehaved::Utf8Address`] and elsewhere
/// [`InvalidInput::Encoding`].
pub fn parse_command(line: &[u8], utf8: bool) -> Result<Command, Error> {
    let text = std::str::from_utf8(line).map_err(|_| InvalidInput::Encoding)?;
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(InvalidInput::Encoding.into());
    }
    let (verb, args) = match text.split_once(' ') {
        Some((v, a)) => (v, Some(a)),
        None => (text, None),
    };
    if verb.is_empty() || verb.len() > 32 || !verb.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InvalidInput::UnknownCommand.into());
    }
    let verb = verb.to_ascii_uppercase();
    if !utf8 && !text.is_ascii() {
        return Err(if verb == "MAIL" || verb == "RCPT" {
            PeerMisbehaved::Utf8Address.into()
        } else {
            InvalidInput::Encoding.into()
        });
    }
    let no_args = |c: Command| match args {
        None => Ok(c),
        Some(_) => Err(Error::from(InvalidInput::Arguments)),
    };
    let need = || {
        args.filter(|a| !a.is_empty())
            .ok_or(InvalidInput::Arguments)
    };
    match verb.as_str() {
        "EHLO" => Ok(Command::Ehlo(host_arg(need()?, utf8)?)),
        "HELO" => Ok(Command::Helo(host_arg(need()?, utf8)?)),
        "MAIL" => {
            let rest = strip_prefix_ci(need()?, "FROM:").ok_or(InvalidInput::Arguments)?;
            let mut c = Cursor::new(rest.trim_start_matches(' '));
            let from = c.reverse_path(utf8)?;
            let params = c.parameters(utf8)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let rest = strip_prefix_ci(need()?, "TO:").ok_or(InvalidInput::Arguments)?;
            let mut c = Cursor::new(rest.trim_start_matches(' '));
            let to = c.forward_path(utf8)?;
            let params = c.parameters(utf8)?;
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(Command::Data),
        "BDAT" => {
            let a = need()?;
            let (n, last) = match a.split_once(' ') {
                None => (a, false),
                Some((n, l)) if l.eq_ignore_ascii_case("LAST") => (n, true),
                Some(_) => return Err(InvalidInput::Arguments.into()),
            };
            if n.is_empty() || n.len() > 19 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidInput::Arguments.into());
            }
            let size = n.parse().map_err(|_| InvalidInput::Arguments)?;
            Ok(Command::Bdat { size, last })
        }
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "VRFY" => Ok(Command::Vrfy(need()?.to_string())),
        "EXPN" => Ok(Command::Expn(need()?.to_string())),
        "HELP" => Ok(Command::Help(args.map(str::to_string))),
        "AUTH" => {
            let a = need()?;
            let (mech, initial) = match a.split_once(' ') {
                None => (a, None),
                Some((m, i)) => (m, Some(i)),
            };
            let mech_ok = !mech.is_empty()
                && mech.len() <= 20
                && mech
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let init_ok = initial.is_none_or(|i| {
                i == "="
                    || (!i.is_empty()
                        && i.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
            });
            if !mech_ok || !init_ok {
                return Err(InvalidInput::Arguments.into());
            }
            Ok(Command::Auth {
                mechanism: mech.to_ascii_uppercase(),
                initial: initial.map(str::to_string),
            })
        }
        _ => Ok(Command::Other {
            verb,
            args: args.unwrap_or("").to_string(),
        }),
    }
}

fn host_arg(a: &str, utf8: bool) -> Result<Host, Error> {
    Host::parse(a.trim_end_matches(' '), utf8)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii())
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn reverse_path(&mut self, utf8: bool) -> Result<ReversePath, Error> {
        let start = self.pos;
        if self.s[self.pos..].starts_with("<>") {
            self.pos += 2;
            return Ok(ReversePath::Null);
        }
        let m = self.path(utf8, InvalidInput::ReversePath)?;
        if self.pos - start > PATH_MAX {
            return Err(InvalidInput::AddressTooLong.into());
        }
        Ok(ReversePath::Mailbox(m))
    }

    fn forward_path(&mut self, utf8: bool) -> Result<ForwardPath, Error> {
        let rest = &self.s[self.pos..];
        if rest.len() >= 12
            && rest.is_char_boundary(12)
            && rest[..12].eq_ignore_ascii_case("<postmaster>")
        {
            self.pos += 12;
            return Ok(ForwardPath::Postmaster);
        }
        let start = self.pos;
        let m = self.path(utf8, InvalidInput::ForwardPath)?;
        if self.pos - start > PATH_MAX {
            return Err(InvalidInput::AddressTooLong.into());
        }
        Ok(ForwardPath::Mailbox(m))
    }

    /// `Path = "<" [ A-d-l ":" ] Mailbox ">"`.
    fn path(&mut self, utf8: bool, err: InvalidInput) -> Result<Mailbox, Error> {
        if !self.eat('<') {
            return Err(err.into());
        }
        if self.peek() == Some('@') {
            // A-d-l = At-domain *( "," At-domain ): accepted and ignored.
            loop {
                if !self.eat('@') {
                    return Err(err.into());
                }
                let d = self.take_while(|c| c.is_alphanumeric() || c == '-' || c == '.');
                Domain::parse(d, utf8).map_err(|_| err)?;
                if !self.eat(',') {
                    break;
                }
            }
            if !self.eat(':') {
                return Err(err.into());
            }
        }
        let m = self.mailbox(utf8, err)?;
        if !self.eat('>') {
            return Err(err.into());
        }
        Ok(m)
    }

    fn mailbox(&mut self, utf8: bool, err: InvalidInput) -> Result<Mailbox, Error> {
        let start = self.pos;
        if self.eat('"') {
            // Quoted-string: qtextSMTP / quoted-pairSMTP.
            loop {
                match self.bump() {
                    None => return Err(err.into()),
                    Some('"') => break,
                    Some('\\') => match self.bump() {
                        Some(c) if (' '..='~').contains(&c) => {}
                        _ => return Err(err.into()),
                    },
                    Some(c)
                        if (c as u32 >= 32 && c as u32 <= 126 && c != '"')
                            || (utf8 && !c.is_ascii()) => {}
                    Some(_) => return Err(err.into()),
                }
            }
        } else {
            // Dot-string = Atom *("." Atom).
            loop {
                if self.take_while(|c| is_atext(c, utf8)).is_empty() {
                    return Err(err.into());
                }
                if !self.eat('.') {
                    break;
                }
            }
        }
        let local = &self.s[start..self.pos];
        if local.len() > LOCAL_PART_MAX {
            return Err(InvalidInput::AddressTooLong.into());
        }
        if !self.eat('@') {
            return Err(err.into());
        }
        let hstart = self.pos;
        if self.peek() == Some('[') {
            self.take_while(|c| c != ']');
            if !self.eat(']') {
                return Err(err.into());
            }
        } else {
            self.take_while(|c| {
                c.is_alphanumeric() || c == '-' || c == '.' || (utf8 && !c.is_ascii())
            });
        }
        let host = Host::parse(&self.s[hstart..self.pos], utf8).map_err(|e| match e {
            Error::InvalidInput(InvalidInput::AddressTooLong) => e,
            _ => err.into(),
        })?;
        Ok(Mailbox {
            local_part: local.to_string(),
            host,
        })
    }

    fn parameters(&mut self, utf8: bool) -> Result<Vec<Parameter>, Error> {
        let mut params: Vec<Parameter> = Vec::new();
        if self.at_end() {
            return Ok(params);
        }
        if !self.eat(' ') {
            return Err(InvalidInput::Arguments.into());
        }
        loop {
            self.take_while(|c| c == ' ');
            if self.at_end() {
                break;
            }
            let kw = self.take_while(|c| c.is_ascii_alphanumeric() || c == '-');
            if kw.is_empty() || kw.starts_with('-') {
                return Err(InvalidInput::Parameter.into());
            }
            let value = if self.eat('=') {
                let v = self.take_while(|c| {
                    (c.is_ascii() && (33..=126).contains(&(c as u32)) && c != '=')
                        || (utf8 && !c.is_ascii())
                });
                if v.is_empty() {
                    return Err(InvalidInput::Parameter.into());
                }
                Some(v.to_string())
            } else {
                None
            };
            match self.peek() {
                None | Some(' ') => {}
                Some(_) => return Err(InvalidInput::Parameter.into()),
            }
            let keyword = kw.to_ascii_uppercase();
            if params.iter().any(|p| p.keyword == keyword) {
                return Err(PeerMisbehaved::DuplicateParameter.into());
            }
            if params.len() >= PARAMETERS_MAX {
                return Err(InvalidInput::Parameter.into());
            }
            params.push(Parameter { keyword, value });
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, Error> {
        parse_command(s.as_bytes(), false)
    }

    #[test]
    fn basic_commands() {
        assert_eq!(p("noop").unwrap(), Command::Noop);
        assert_eq!(p("QUIT").unwrap(), Command::Quit);
        assert!(p("QUIT now").is_err());
        assert_eq!(
            p("EHLO [IPv6:::1]").unwrap(),
            Command::Ehlo(Host::Ipv6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            p("HELO [192.0.2.1]").unwrap(),
            Command::Helo(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(
            p("BDAT 100 last").unwrap(),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert!(p("BDAT x").is_err());
        assert!(p("BDAT 99999999999999999999").is_err());
        assert_eq!(
            p("AUTH plain AGZvbwBiYXI=").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGZvbwBiYXI=".into())
            }
        );
        assert!(matches!(p("XFOO bar").unwrap(), Command::Other { .. }));
        assert!(p("").is_err());
        assert!(p("EHLO -bad-").is_err());
    }

    #[test]
    fn paths() {
        let Command::Mail { from, params } = p("MAIL FROM:<> SIZE=10 BODY=8BITMIME").unwrap()
        else {
            panic!("not MAIL")
        };
        assert_eq!(from, ReversePath::Null);
        assert_eq!(params.len(), 2);
        let Command::Mail { from, .. } =
            p("MAIL FROM:<@a.example,@b.example:u@c.example>").unwrap()
        else {
            panic!("not MAIL")
        };
        assert_eq!(from.to_string(), "<u@c.example>");
        let Command::Rcpt { to, .. } = p("RCPT TO:<\"a b\\\"c\"@[192.0.2.1]>").unwrap() else {
            panic!("not RCPT")
        };
        let ForwardPath::Mailbox(m) = to else {
            panic!("postmaster")
        };
        assert_eq!(m.local_part_unquoted(), "a b\"c");
        assert_eq!(
            p("RCPT TO:<postmaster>").unwrap(),
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: vec![]
            }
        );
        assert!(p("MAIL FROM:a@b").is_err());
        assert!(p("MAIL FROM:<a@b").is_err());
        assert!(p("MAIL FROM:<a..b@c>").is_err());
        assert!(p("MAIL FROM:<a@b> SIZE=1 SIZE=2").is_err());
        assert!(p("MAIL FROM:<a@b>SIZE=1").is_err());
        let long = format!("MAIL FROM:<{}@b.example>", "a".repeat(65));
        assert_eq!(p(&long), Err(InvalidInput::AddressTooLong.into()));
        let long = format!("RCPT TO:<a@{}.example>", "b".repeat(64));
        assert!(p(&long).is_err());
    }

    #[test]
    fn utf8_addresses() {
        let line = "MAIL FROM:<jöran@bücher.example> SMTPUTF8";
        assert_eq!(p(line), Err(PeerMisbehaved::Utf8Address.into()));
        let Command::Mail { from, .. } = parse_command(line.as_bytes(), true).unwrap() else {
            panic!("not MAIL")
        };
        assert!(!from.is_ascii());
    }
}
