//! Addresses (RFC 5322 §3.4, obsolete forms §4.4, RFC 6532 UTF-8).

use std::borrow::Cow;

use crate::rfc2047;

/// A mailbox (RFC 5322 §3.4 `mailbox`): optional display name and addr-spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Mailbox {
    /// Display name (RFC 2047-decoded), or the comment of `addr (Name)`.
    pub name: Option<String>,
    /// Local part, unquoted.
    pub local: String,
    /// Domain (empty when the address had no `@`).
    pub domain: String,
}

/// An address (RFC 5322 §3.4 `address`): a mailbox or a named group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Address {
    /// A single mailbox.
    Mailbox(Mailbox),
    /// A group (`name: members;`), possibly empty.
    Group {
        /// Display name of the group.
        name: String,
        /// Members.
        members: Vec<Mailbox>,
    },
}

impl From<Mailbox> for Address {
    fn from(m: Mailbox) -> Self {
        Address::Mailbox(m)
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(is_atext))
}

impl Mailbox {
    /// A mailbox from an optional display name and `local@domain`.
    pub fn new(name: Option<&str>, addr: &str) -> Mailbox {
        let (local, domain) = match addr.rsplit_once('@') {
            Some((l, d)) => (l, d),
            None => (addr, ""),
        };
        Mailbox {
            name: name.map(str::to_string),
            local: local.to_string(),
            domain: domain.to_string(),
        }
    }

    /// Parses the first mailbox of an address list (`"Name" <a@b>`, `a@b`).
    pub fn parse(s: &str) -> Option<Mailbox> {
        parse_address_list(s.as_bytes())
            .into_iter()
            .find_map(|a| match a {
                Address::Mailbox(m) => Some(m),
                Address::Group { mut members, .. } if !members.is_empty() => {
                    Some(members.remove(0))
                }
                Address::Group { .. } => None,
            })
    }

    /// `local@domain`, the local part quoted when it is not a dot-atom.
    pub fn address(&self) -> String {
        let local = if is_dot_atom(&self.local) {
            self.local.clone()
        } else {
            quote(&self.local)
        };
        if self.domain.is_empty() {
            local
        } else {
            format!("{local}@{}", self.domain)
        }
    }

    /// The mailbox as it is written in a header: `Name <addr>` with the name
    /// as atoms, a quoted string, or RFC 2047 encoded words (raw UTF-8 when
    /// `utf8`, RFC 6532).
    pub fn to_header_string(&self, utf8: bool) -> String {
        match &self.name {
            Some(n) if !n.trim().is_empty() => {
                format!("{} <{}>", format_phrase(n, utf8), self.address())
            }
            _ => self.address(),
        }
    }
}

impl Address {
    /// The address as written in a header (see [`Mailbox::to_header_string`]).
    pub fn to_header_string(&self, utf8: bool) -> String {
        match self {
            Address::Mailbox(m) => m.to_header_string(utf8),
            Address::Group { name, members } => {
                let list: Vec<String> = members.iter().map(|m| m.to_header_string(utf8)).collect();
                format!("{}: {};", format_phrase(name, utf8), list.join(", "))
            }
        }
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A display name (RFC 5322 §3.2.5 phrase) in its plainest safe form.
pub(crate) fn format_phrase(n: &str, utf8: bool) -> String {
    let n: String = n
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let n = n.trim();
    if n.contains("=?") {
        return rfc2047::encode_words(n);
    }
    let atoms = !n.is_empty()
        && n.split(' ')
            .all(|w| !w.is_empty() && w.bytes().all(|b| is_atext(b) && b < 0x80));
    if atoms {
        n.to_string()
    } else if n.is_ascii() || utf8 {
        quote(n)
    } else {
        rfc2047::encode_words(n)
    }
}

#[derive(Debug, Clone)]
enum Tok<'b> {
    Atom(&'b [u8]),
    Quoted(Cow<'b, [u8]>),
    Comment(Cow<'b, [u8]>),
    DomainLiteral(&'b [u8]),
    Special(u8),
}

/// Reads a quoted string or comment body starting after its opening
/// delimiter; returns the unescaped content and the index after the close.
fn delimited(v: &[u8], mut i: usize, open: u8, close: u8) -> (Cow<'_, [u8]>, usize) {
    let start = i;
    let mut depth = 1usize;
    let mut owned: Option<Vec<u8>> = None;
    while i < v.len() {
        let c = v[i];
        if c == b'\\' && i + 1 < v.len() {
            let o = owned.get_or_insert_with(|| v[start..i].to_vec());
            o.push(v[i + 1]);
            i += 2;
            continue;
        }
        if c == close {
            depth -= 1;
            if depth == 0 {
                let text = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&v[start..i]),
                };
                return (text, i + 1);
            }
        } else if c == open && open != close {
            depth += 1;
        }
        if let Some(o) = &mut owned {
            o.push(c);
        }
        i += 1;
    }
    let text = match owned {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(&v[start..]),
    };
    (text, v.len())
}

fn lex(v: &[u8]) -> Vec<(Tok<'_>, bool)> {
    let mut out = Vec::with_capacity(8);
    let mut i = 0;
    let mut ws = false;
    while i < v.len() {
        let b = v[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                ws = true;
                i += 1;
                continue;
            }
            b'(' => {
                let (text, next) = delimited(v, i + 1, b'(', b')');
                out.push((Tok::Comment(text), ws));
                i = next;
            }
            b'"' => {
                let (text, next) = delimited(v, i + 1, b'"', b'"');
                out.push((Tok::Quoted(text), ws));
                i = next;
            }
            b'[' => {
                let s = i;
                while i < v.len() && v[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(v.len());
                out.push((Tok::DomainLiteral(&v[s..i]), ws));
            }
            b')' | b'<' | b'>' | b']' | b':' | b';' | b'@' | b',' | b'\\' => {
                out.push((Tok::Special(b), ws));
                i += 1;
            }
            _ => {
                let s = i;
                while i < v.len() && !b" \t\r\n()<>[]:;@,\\\"".contains(&v[i]) {
                    i += 1;
                }
                out.push((Tok::Atom(&v[s..i]), ws));
            }
        }
        ws = false;
    }
    out
}

fn phrase(toks: &[(Tok<'_>, bool)]) -> Option<String> {
    let mut bytes = Vec::new();
    for (t, ws) in toks {
        let piece: &[u8] = match t {
            Tok::Atom(a) => a,
            Tok::Quoted(q) => q,
            Tok::DomainLiteral(d) => d,
            Tok::Special(s) => std::slice::from_ref(s),
            Tok::Comment(_) => continue,
        };
        if *ws && !bytes.is_empty() {
            bytes.push(b' ');
        }
        bytes.extend_from_slice(piece);
    }
    let s = rfc2047::decode_text(&bytes);
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

fn comment_name(toks: &[(Tok<'_>, bool)]) -> Option<String> {
    toks.iter().rev().find_map(|(t, _)| match t {
        Tok::Comment(c) => {
            let s = rfc2047::decode_text(c);
            let t = s.trim();
            if t.is_empty() {
                None
            } else {
                Some(t.to_string())
            }
        }
        _ => None,
    })
}

/// An addr-spec from tokens (no angle brackets). `None` when there is no
/// address text at all.
fn addr_spec(toks: &[(Tok<'_>, bool)]) -> Option<(String, String)> {
    let at = toks
        .iter()
        .rposition(|(t, _)| matches!(t, Tok::Special(b'@')));
    let join = |ts: &[(Tok<'_>, bool)]| {
        let mut b = Vec::new();
        for (t, ws) in ts {
            let piece: &[u8] = match t {
                Tok::Atom(a) => a,
                Tok::Quoted(q) => q,
                Tok::DomainLiteral(d) => d,
                Tok::Special(b'@') => b"@",
                Tok::Special(_) | Tok::Comment(_) => continue,
            };
            if *ws && !b.is_empty() && at.is_none() {
                b.push(b' ');
            }
            b.extend_from_slice(piece);
        }
        String::from_utf8_lossy(&b).into_owned()
    };
    let (local, domain) = match at {
        Some(at) => (join(&toks[..at]), join(&toks[at + 1..])),
        None => (join(toks), String::new()),
    };
    if local.is_empty() && domain.is_empty() && at.is_none() {
        return None;
    }
    Some((local, domain))
}

/// Parses an address list leniently (RFC 5322 §3.4, §4.4): groups, display
/// names, comments, routes, missing domains.
pub(crate) fn parse_address_list(v: &[u8]) -> Vec<Address> {
    let toks = lex(v);
    let mut out = Vec::new();
    let mut group: Option<(String, Vec<Mailbox>)> = None;
    let mut cur: Vec<(Tok<'_>, bool)> = Vec::new();
    let mut done_angle = false;
    let push = |m: Mailbox, group: &mut Option<(String, Vec<Mailbox>)>, out: &mut Vec<Address>| {
        match group {
            Some((_, members)) => members.push(m),
            None => out.push(Address::Mailbox(m)),
        }
    };
    let flush = |cur: &mut Vec<(Tok<'_>, bool)>,
                 done_angle: &mut bool,
                 group: &mut Option<(String, Vec<Mailbox>)>,
                 out: &mut Vec<Address>| {
        if !*done_angle && let Some((local, domain)) = addr_spec(cur) {
            let m = Mailbox {
                name: comment_name(cur),
                local,
                domain,
            };
            push(m, group, out);
        }
        cur.clear();
        *done_angle = false;
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Special(b'<') if !done_angle => {
                let name = phrase(&cur);
                cur.clear();
                let mut inner = Vec::new();
                i += 1;
                while i < toks.len() && !matches!(toks[i].0, Tok::Special(b'>')) {
                    inner.push(toks[i].clone());
                    i += 1;
                }
                // Obsolete route (`@a,@b:`): keep what follows the last ':'.
                if let Some(c) = inner
                    .iter()
                    .rposition(|(t, _)| matches!(t, Tok::Special(b':')))
                {
                    inner.drain(..=c);
                }
                let (local, domain) = addr_spec(&inner).unwrap_or_default();
                let name = name.or_else(|| comment_name(&inner));
                push(
                    Mailbox {
                        name,
                        local,
                        domain,
                    },
                    &mut group,
                    &mut out,
                );
                done_angle = true;
            }
            Tok::Special(b':') if group.is_none() && !done_angle => {
                let name = phrase(&cur).unwrap_or_default();
                cur.clear();
                group = Some((name, Vec::new()));
            }
            Tok::Special(b';') => {
                flush(&mut cur, &mut done_angle, &mut group, &mut out);
                if let Some((name, members)) = group.take() {
                    out.push(Address::Group { name, members });
                }
            }
            Tok::Special(b',') => flush(&mut cur, &mut done_angle, &mut group, &mut out),
            _ => {
                if !done_angle {
                    cur.push(toks[i].clone());
                }
            }
        }
        i += 1;
    }
    flush(&mut cur, &mut done_angle, &mut group, &mut out);
    if let Some((name, members)) = group.take() {
        out.push(Address::Group { name, members });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, addr: &str) -> Address {
        Address::Mailbox(Mailbox::new(name, addr))
    }

    #[test]
    fn simple_and_named() {
        let a =
            parse_address_list(b" \"Doe, John\" <john@example.com>, jane@example.org (Jane Roe)");
        assert_eq!(
            a,
            vec![
                mb(Some("Doe, John"), "john@example.com"),
                mb(Some("Jane Roe"), "jane@example.org")
            ]
        );
        let a = parse_address_list(b" =?utf-8?q?J=C3=B6rg?= <j@x.de>");
        assert_eq!(a, vec![mb(Some("Jörg"), "j@x.de")]);
        let a = parse_address_list(b" John Q. Public <@route,@r2:jqp@example.com>");
        assert_eq!(a, vec![mb(Some("John Q. Public"), "jqp@example.com")]);
    }

    #[test]
    fn groups() {
        let a = parse_address_list(b" Team: a@x, B <b@y>;, c@z, undisclosed-recipients:;");
        assert_eq!(
            a,
            vec![
                Address::Group {
                    name: "Team".into(),
                    members: vec![Mailbox::new(None, "a@x"), Mailbox::new(Some("B"), "b@y")]
                },
                mb(None, "c@z"),
                Address::Group {
                    name: "undisclosed-recipients".into(),
                    members: vec![]
                },
            ]
        );
    }

    #[test]
    fn formatting_round_trips() {
        for (name, addr) in [
            (Some("Plain Name"), "a@b.c"),
            (Some("Doe, John"), "j@d"),
            (Some("Jörg Über"), "j@x.de"),
            (None, "x.y@z"),
            (Some("Quote \" and \\"), "q@q"),
            (None, "with space@x"),
        ] {
            let m = Mailbox::new(name, addr);
            for utf8 in [false, true] {
                let s = m.to_header_string(utf8);
                assert_eq!(
                    parse_address_list(format!(" {s}").as_bytes()),
                    vec![Address::Mailbox(m.clone())],
                    "{s}"
                );
            }
        }
    }
}
