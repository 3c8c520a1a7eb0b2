//! An in-memory DNS zone shared by the integration tests.
//!
//! It follows the conventions of the RFC 7208 test suite's reference driver
//! (pyspf's `testspf.py`), so that the suite's zone data means the same here:
//! - `SPF` (type 99) records are copied to TXT only when the name has no
//!   `TXT` entry at all (`TXT: NONE` marks "no TXT records" and stops the
//!   copy);
//! - `TIMEOUT` makes a query time out unless a record of the asked type
//!   came before it in the list;
//! - a name without data is NXDOMAIN; a CNAME is followed (a loop or a chain
//!   longer than 10 is a server failure).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use scop_spf::{DnsAnswer, Query, QueryType, RData, Resolver};

/// One entry of a name's list.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The `TIMEOUT` marker.
    Timeout,
    /// A TXT record's strings.
    Txt(Vec<Vec<u8>>),
    /// An obsolete SPF-type record (never served: RFC 7208 uses TXT only).
    Spf(Vec<Vec<u8>>),
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// An MX record.
    Mx(u16, String),
    /// A PTR record.
    Ptr(String),
    /// A CNAME record.
    Cname(String),
    /// `TXT: NONE`: no TXT records, and no SPF-to-TXT copy.
    NoTxt,
}

/// A zone: lower-case name to entries, in the suite's order.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    names: HashMap<String, Vec<Entry>>,
}

impl Zone {
    /// Adds a name with its entries, applying the SPF-to-TXT copy rule.
    pub fn insert(&mut self, name: &str, entries: Vec<Entry>) {
        let has_txt = entries
            .iter()
            .any(|e| matches!(e, Entry::Txt(_) | Entry::NoTxt));
        let mut all = entries.clone();
        if !has_txt {
            for e in &entries {
                if let Entry::Spf(strings) = e {
                    all.push(Entry::Txt(strings.clone()));
                }
            }
        }
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.entry(key).or_default().extend(all);
    }

    fn answer(&self, name: &str, qtype: QueryType, depth: usize) -> DnsAnswer {
        let Some(entries) = self.names.get(name) else {
            return DnsAnswer::NxDomain;
        };
        let mut records = Vec::new();
        for entry in entries {
            let rdata = match (entry, qtype) {
                (Entry::Timeout, _) => {
                    if records.is_empty() {
                        return DnsAnswer::TempFail;
                    }
                    break;
                }
                (Entry::Cname(target), _) => {
                    if depth >= 10 {
                        return DnsAnswer::TempFail;
                    }
                    let target = target.trim_end_matches('.').to_ascii_lowercase();
                    return self.answer(&target, qtype, depth + 1);
                }
                (Entry::Txt(s), QueryType::Txt) => RData::Txt(s.clone()),
                (Entry::A(a), QueryType::A) => RData::A(*a),
                (Entry::Aaaa(a), QueryType::Aaaa) => RData::Aaaa(*a),
                (Entry::Mx(p, h), QueryType::Mx) => RData::Mx {
                    preference: *p,
                    exchange: h.clone(),
                },
                (Entry::Ptr(p), QueryType::Ptr) => RData::Ptr(p.clone()),
                _ => continue,
            };
            records.push(rdata);
        }
        if records.is_empty() {
            DnsAnswer::NoData
        } else {
            DnsAnswer::Records(records)
        }
    }
}

impl Resolver for Zone {
    fn lookup(&self, query: &Query) -> DnsAnswer {
        self.answer(&query.name, query.qtype, 0)
    }
}
