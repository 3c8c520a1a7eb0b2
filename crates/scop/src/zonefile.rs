//! Offline DNS answers from RFC 1035 master files, for the `--dns-zone`
//! option of `scop spf check`, `scop auth check` and `scop dkim verify`.
//!
//! The files are read by `scop_dns::parse_master` (the same reader as the
//! DNS server's); the types A, AAAA, MX, TXT, PTR, CNAME, NS and SOA are
//! kept, other types are skipped with a warning, `$INCLUDE` is refused.
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

    /// Parses master-file text (`file` names it in messages) with the
    /// workspace's one master-file reader, [`scop_dns::parse_master`];
    /// names without `$ORIGIN` are taken as absolute.
    pub fn parse(&mut self, text: &str, file: &str) -> Result<()> {
        use scop_dns::hickory_proto::rr::{Name, RData};
        // A default TTL: offline answers do not need one, and files
        // written for `--dns-zone` often have none.
        let records = scop_dns::parse_master_with_ttl(text, Some(&Name::root()), Some(3600))
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        for r in records {
            let owner = strip_dot(&r.name.to_ascii());
            let name = |n: &Name| strip_dot(&n.to_ascii());
            let rr = match &r.data {
                RData::A(a) => Rdata::A(a.0),
                RData::AAAA(a) => Rdata::Aaaa(a.0),
                RData::MX(mx) => Rdata::Mx(mx.preference, name(&mx.exchange)),
                RData::TXT(txt) => Rdata::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
                RData::PTR(p) => Rdata::Ptr(name(&p.0)),
                RData::CNAME(c) => Rdata::Cname(name(&c.0)),
                RData::NS(ns) => Rdata::Ns(name(&ns.0)),
                RData::SOA(soa) => Rdata::Soa(name(&soa.mname)),
                other => {
                    self.warnings.push(format!(
                        "{file}: {owner}: record type {} not used, skipped",
                        other.record_type()
                    ));
                    continue;
                }
            };
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
        let e = z
            .parse(
                "a.example. IN A 192.0.2.1\nb.example. IN A 999.1.1.1\n",
                "f",
            )
            .unwrap_err();
        assert!(format!("{e:#}").contains("f: line 2"), "{e:#}");
        assert!(z.parse("x IN A 192.0.2.1\n", "f").is_ok(), "no TTL needed");
        assert!(z.parse("a.example. IN TXT \"open\n", "f").is_err());
        assert!(z.parse("a.example. IN A ( 192.0.2.1\n", "f").is_err());
    }
}
