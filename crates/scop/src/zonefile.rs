//! A small reader of RFC 1035 master files (section 5), enough to feed the
//! offline `--dns-zone` of `scop spf check` and `scop auth check`.
//!
//! Supported: `$ORIGIN`, `$TTL`, relative and absolute owner names, `@`,
//! a blank owner (the previous one), TTL and class in either order,
//! parentheses spanning lines, quoted strings with `\X` and `\DDD`
//! escapes, `;` comments, and the types A, AAAA, MX, TXT, PTR, CNAME, NS
//! and SOA. Other types and `$INCLUDE` are skipped with a warning.
//!
//! [`Zone`] answers the questions of `scop-spf`, `scop-dkim` and
//! `scop-dmarc` (CNAME chains followed, NXDOMAIN for names that own
//! nothing and have nothing below them).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Largest master file read.
pub const MAX_ZONE_FILE_BYTES: u64 = 16 << 20;
/// Longest CNAME chain followed.
pub const MAX_CNAME_CHAIN: usize = 8;

/// One resource record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Txt(Vec<Vec<u8>>),
    Ptr(String),
    Cname(String),
    Ns(String),
    Soa(String),
}

/// Records by owner name (lower case, no trailing dot).
#[derive(Debug, Default, Clone)]
pub struct Zone {
    records: BTreeMap<String, Vec<Rdata>>,
    /// What was skipped, with file and line.
    pub warnings: Vec<String>,
}

fn strip_dot(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Zone {
    /// Reads a master file and adds its records.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .with_context(|| format!("open zone file {}", path.display()))?
            .take(MAX_ZONE_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("read zone file {}", path.display()))?;
        if text.len() as u64 > MAX_ZONE_FILE_BYTES {
            bail!(
                "zone file {} is larger than {MAX_ZONE_FILE_BYTES} bytes",
                path.display()
            );
        }
        self.parse(&text, &path.display().to_string())
    }

    /// Parses master-file text (`file` names it in messages).
    pub fn parse(&mut self, text: &str, file: &str) -> Result<()> {
        let mut origin = String::new();
        let mut last_owner: Option<String> = None;
        for entry in entries(text, file)? {
            let Entry {
                line,
                blank_owner,
                mut words,
            } = entry;
            let at = |msg: &str| format!("{file}:{line}: {msg}");
            if words.is_empty() {
                continue;
            }
            if let Word::Plain(first) = &words[0] {
                let first = first.to_ascii_uppercase();
                if first == "$ORIGIN" {
                    let Some(name) = words.get(1).map(Word::text) else {
                        bail!(at("$ORIGIN needs a name"));
                    };
                    origin = absolute(&name, &origin)
                        .ok_or_else(|| anyhow::anyhow!(at("bad $ORIGIN")))?;
                    continue;
                }
                if first == "$TTL" {
                    continue;
                }
                if first.starts_with('$') {
                    self.warnings
                        .push(at(&format!("directive {first} ignored")));
                    continue;
                }
            }
            let owner = if blank_owner {
                match &last_owner {
                    Some(o) => o.clone(),
                    None => bail!(at("record without an owner name")),
                }
            } else {
                let w = words.remove(0).text();
                absolute(&w, &origin)
                    .ok_or_else(|| anyhow::anyhow!(at(&format!("bad owner name {w:?}"))))?
            };
            last_owner = Some(owner.clone());
            // [TTL] [class] or [class] [TTL], then the type.
            let mut i = 0;
            while i < words.len() && i < 2 {
                let w = words[i].text();
                let is_ttl = !w.is_empty()
                    && w.chars().all(|c| c.is_ascii_alphanumeric())
                    && w.chars().next().is_some_and(|c| c.is_ascii_digit());
                let is_class = matches!(w.to_ascii_uppercase().as_str(), "IN" | "CH" | "HS" | "CS");
                if is_ttl || is_class {
                    i += 1;
                } else {
                    break;
                }
            }
            let Some(rtype) = words.get(i).map(|w| w.text().to_ascii_uppercase()) else {
                bail!(at("missing record type"));
            };
            let rdata = &words[i + 1..];
            let name = |k: usize| -> Result<String> {
                let w = rdata
                    .get(k)
                    .ok_or_else(|| anyhow::anyhow!(at(&format!("{rtype} needs more data"))))?
                    .text();
                absolute(&w, &origin).ok_or_else(|| anyhow::anyhow!(at(&format!("bad name {w:?}"))))
            };
            let first = || -> Result<String> {
                rdata
                    .first()
                    .map(Word::text)
                    .ok_or_else(|| anyhow::anyhow!(at(&format!("{rtype} needs data"))))
            };
            let rr = match rtype.as_str() {
                "A" => Rdata::A(first()?.parse().with_context(|| at("bad IPv4 address"))?),
                "AAAA" => Rdata::Aaaa(first()?.parse().with_context(|| at("bad IPv6 address"))?),
                "MX" => Rdata::Mx(
                    first()?.parse().with_context(|| at("bad MX preference"))?,
                    name(1)?,
                ),
                "TXT" | "SPF" => {
                    if rdata.is_empty() {
                        bail!(at("TXT needs at least one string"));
                    }
                    Rdata::Txt(rdata.iter().map(Word::bytes).collect())
                }
                "PTR" => Rdata::Ptr(name(0)?),
                "CNAME" => Rdata::Cname(name(0)?),
                "NS" => Rdata::Ns(name(0)?),
                "SOA" => Rdata::Soa(name(0)?),
                other => {
                    self.warnings
                        .push(at(&format!("record type {other} not supported, skipped")));
                    continue;
                }
            };
            if rtype == "SPF" {
                self.warnings.push(at("type SPF read as TXT"));
            }
            self.records.entry(owner).or_default().push(rr);
        }
        Ok(())
    }

    fn owns_or_has_below(&self, name: &str) -> bool {
        if self.records.contains_key(name) {
            return true;
        }
        let suffix = format!(".{name}");
        self.records.keys().any(|k| k.ends_with(&suffix))
    }

    /// The records of `name` for which `pick` returns a value, following
    /// CNAMEs; `Err(true)` for NXDOMAIN, `Err(false)` for NODATA.
    fn find<T>(&self, name: &str, pick: impl Fn(&Rdata) -> Option<T>) -> Result<Vec<T>, bool> {
        let mut name = strip_dot(name);
        for _ in 0..=MAX_CNAME_CHAIN {
            let Some(rrs) = self.records.get(&name) else {
                return Err(!self.owns_or_has_below(&name));
            };
            let found: Vec<T> = rrs.iter().filter_map(&pick).collect();
            if !found.is_empty() {
                return Ok(found);
            }
            match rrs.iter().find_map(|r| match r {
                Rdata::Cname(t) => Some(t.clone()),
                _ => None,
            }) {
                Some(target) => name = target,
                None => return Err(false),
            }
        }
        Err(false)
    }

    /// TXT records of `name`, strings joined.
    pub fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, bool> {
        self.find(name, |r| match r {
            Rdata::Txt(s) => Some(s.concat()),
            _ => None,
        })
    }
}

impl scop_spf::Resolver for Zone {
    fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
        use scop_spf::{DnsAnswer, QueryType, RData};
        let found = match q.qtype {
            QueryType::Txt => self.find(&q.name, |r| match r {
                Rdata::Txt(s) => Some(RData::Txt(s.clone())),
                _ => None,
            }),
            QueryType::A => self.find(&q.name, |r| match r {
                Rdata::A(a) => Some(RData::A(*a)),
                _ => None,
            }),
            QueryType::Aaaa => self.find(&q.name, |r| match r {
                Rdata::Aaaa(a) => Some(RData::Aaaa(*a)),
                _ => None,
            }),
            QueryType::Mx => self.find(&q.name, |r| match r {
                Rdata::Mx(p, e) => Some(RData::Mx {
                    preference: *p,
                    exchange: e.clone(),
                }),
                _ => None,
            }),
            QueryType::Ptr => self.find(&q.name, |r| match r {
                Rdata::Ptr(p) => Some(RData::Ptr(p.clone())),
                _ => None,
            }),
        };
        match found {
            Ok(r) => DnsAnswer::Records(r),
            Err(true) => DnsAnswer::NxDomain,
            Err(false) => DnsAnswer::NoData,
        }
    }
}

impl scop_dmarc::Resolver for Zone {
    fn lookup(&self, q: &scop_dmarc::Query) -> scop_dmarc::DnsAnswer {
        use scop_dmarc::{DnsAnswer, QueryType};
        let found = match q.qtype {
            QueryType::Txt => self.txt(&q.name),
            QueryType::A => self.find(&q.name, |r| match r {
                Rdata::A(a) => Some(a.octets().to_vec()),
                _ => None,
            }),
        };
        match found {
            Ok(r) => DnsAnswer::Records(r),
            Err(true) => DnsAnswer::NxDomain,
            Err(false) => DnsAnswer::NoData,
        }
    }
}

impl Zone {
    /// The answer to a DKIM key query.
    pub fn dkim(&self, name: &str) -> scop_dkim::DnsAnswer {
        match self.txt(name) {
            Ok(r) => scop_dkim::DnsAnswer::Txt(r),
            Err(true) => scop_dkim::DnsAnswer::NxDomain,
            Err(false) => scop_dkim::DnsAnswer::Txt(Vec::new()),
        }
    }
}

/// `name` made absolute against `origin` (lower case, no trailing dot).
fn absolute(name: &str, origin: &str) -> Option<String> {
    if name == "@" {
        return Some(origin.to_string());
    }
    if name.is_empty() || name.contains("..") {
        return None;
    }
    let name = if let Some(abs) = name.strip_suffix('.') {
        abs.to_ascii_lowercase()
    } else if origin.is_empty() {
        name.to_ascii_lowercase()
    } else {
        format!("{}.{origin}", name.to_ascii_lowercase())
    };
    (name.len() <= 253).then_some(name)
}

#[derive(Debug, Clone)]
enum Word {
    Plain(String),
    Quoted(Vec<u8>),
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Plain(s) => s.clone(),
            Word::Quoted(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Word::Plain(s) => unescape(s.as_bytes()),
            Word::Quoted(b) => b.clone(),
        }
    }
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let d = &s[i + 1..];
            if d.len() >= 3 && d[..3].iter().all(u8::is_ascii_digit) {
                let v =
                    (d[0] - b'0') as u32 * 100 + (d[1] - b'0') as u32 * 10 + (d[2] - b'0') as u32;
                out.push(v.min(255) as u8);
                i += 4;
            } else {
                out.push(d[0]);
                i += 2;
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

struct Entry {
    line: usize,
    blank_owner: bool,
    words: Vec<Word>,
}

/// Splits the text into entries: logical lines (parentheses joined),
/// comments removed, quoted strings unescaped.
fn entries(text: &str, file: &str) -> Result<Vec<Entry>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut depth = 0u32;
    let mut cur: Option<Entry> = None;
    let mut at_line_start = true;
    while i < b.len() {
        let c = b[i];
        if at_line_start && depth == 0 {
            if let Some(e) = cur.take()
                && !e.words.is_empty()
            {
                out.push(e);
            }
            cur = Some(Entry {
                line,
                blank_owner: c == b' ' || c == b'\t',
                words: Vec::new(),
            });
        }
        at_line_start = false;
        let entry = cur.get_or_insert_with(|| Entry {
            line,
            blank_owner: false,
            words: Vec::new(),
        });
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    bail!("{file}:{line}: unbalanced ')'");
                }
                depth -= 1;
                i += 1;
            }
            b'"' => {
                i += 1;
                let mut v = Vec::new();
                loop {
                    let Some(&q) = b.get(i) else {
                        bail!("{file}:{line}: unterminated quoted string");
                    };
                    match q {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < b.len() => {
                            let start = i;
                            i += 2;
                            if b[start + 1].is_ascii_digit() {
                                i = (start + 4).min(b.len());
                            }
                            v.extend(unescape(&b[start..i]));
                        }
                        b'\n' => {
                            line += 1;
                            v.push(q);
                            i += 1;
                        }
                        _ => {
                            v.push(q);
                            i += 1;
                        }
                    }
                }
                entry.words.push(Word::Quoted(v));
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \t\r\n;()\"".contains(&b[i]) {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let i_end = i.min(b.len());
                entry.words.push(Word::Plain(
                    String::from_utf8_lossy(&b[start..i_end]).into_owned(),
                ));
                i = i_end;
            }
        }
    }
    if depth != 0 {
        bail!("{file}: unbalanced '(' at end of file");
    }
    if let Some(e) = cur
        && !e.words.is_empty()
    {
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scop_spf::Resolver as _;

    const ZONE: &str = r#"
$ORIGIN example.com.
$TTL 3600
@   IN SOA ns1 hostmaster ( 2024010101 ; serial
        7200 3600 1209600 300 )
    IN NS  ns1
    IN MX  10 mx1
    IN TXT "v=spf1 ip4:192.0.2.0/24 " "-all"
mx1 IN A   192.0.2.25
    3600 IN AAAA 2001:db8::25
_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:d@example.com"
quoted TXT "a \"b\" \059 c\\d"
alias CNAME mx1
www.example.org. 60 IN A 198.51.100.1
x IN HINFO "cpu" "os"
"#;

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.parse(ZONE, "test.zone").unwrap();
        z
    }

    #[test]
    fn reads_records() {
        let z = zone();
        assert_eq!(
            z.txt("example.com").unwrap(),
            vec![b"v=spf1 ip4:192.0.2.0/24 -all".to_vec()]
        );
        assert_eq!(
            z.txt("_dmarc.example.com").unwrap()[0],
            b"v=DMARC1; p=reject; rua=mailto:d@example.com".to_vec()
        );
        assert_eq!(
            z.txt("quoted.example.com").unwrap()[0],
            b"a \"b\" ; c\\d".to_vec()
        );
        assert_eq!(z.warnings.len(), 1, "{:?}", z.warnings);
    }

    #[test]
    fn answers_spf_questions() {
        let z = zone();
        let q = |name: &str, qtype| scop_spf::Query {
            name: name.into(),
            qtype,
        };
        use scop_spf::{DnsAnswer, QueryType, RData};
        assert_eq!(
            z.lookup(&q("alias.example.com", QueryType::A)),
            DnsAnswer::Records(vec![RData::A("192.0.2.25".parse().unwrap())])
        );
        assert!(matches!(
            z.lookup(&q("mx1.example.com", QueryType::Aaaa)),
            DnsAnswer::Records(_)
        ));
        assert_eq!(
            z.lookup(&q("nope.example.com", QueryType::A)),
            DnsAnswer::NxDomain
        );
        assert_eq!(
            z.lookup(&q("mx1.example.com", QueryType::Mx)),
            DnsAnswer::NoData
        );
        assert_eq!(
            z.lookup(&q("www.example.org", QueryType::A)),
            DnsAnswer::Records(vec![RData::A("198.51.100.1".parse().unwrap())])
        );
    }

    #[test]
    fn errors_have_line_numbers() {
        let mut z = Zone::default();
        let e = z.parse("a.example. IN A 999.1.1.1\n", "f").unwrap_err();
        assert!(format!("{e:#}").contains("f:1"), "{e:#}");
        assert!(z.parse("a.example. IN TXT \"open\n", "f").is_err());
        assert!(z.parse("a.example. IN A ( 192.0.2.1\n", "f").is_err());
    }
}
