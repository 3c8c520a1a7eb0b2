//! Finding a domain's mail servers (RFC 5321 5.1): MX records by
//! preference, the implicit MX when there is none, the null MX of RFC 7505,
//! then the A and AAAA addresses of each host (IPv4 and IPv6).
//!
//! [`plan`] is the sans-IO decision; [`Dns`] asks the validating resolver
//! of `scop-dns`.

use std::net::IpAddr;

use hickory_proto::rr::{RData, RecordType};
use scop_mta::dane::{Lookup, Tlsa};

/// MX hosts tried at most per domain.
pub const MX_HOSTS_MAX: usize = 10;
/// Addresses tried at most per host.
pub const ADDRESSES_PER_HOST_MAX: usize = 4;

/// What the DNS said about a name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the type.
    Records(Vec<T>),
    /// The name exists without records of the type (NODATA).
    NoData,
    /// The name does not exist.
    NxDomain,
    /// No usable answer now (timeout, SERVFAIL...).
    Temp(String),
}

impl<T> Answer<T> {
    /// The same answer with its records turned into `U`.
    pub fn map_records<U>(self, f: impl FnOnce(Vec<T>) -> Vec<U>) -> Answer<U> {
        match self {
            Answer::Records(v) => Answer::Records(f(v)),
            Answer::NoData => Answer::NoData,
            Answer::NxDomain => Answer::NxDomain,
            Answer::Temp(e) => Answer::Temp(e),
        }
    }
}

/// Where to send mail for a domain, before address lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// These hosts, most preferred first.
    Hosts(Vec<String>),
    /// The domain accepts no mail (RFC 7505).
    NullMx,
    /// The domain does not exist (permanent).
    NoSuchDomain,
    /// Try again later.
    Temp(String),
}

/// Decides from the MX answer for `domain`: sorted by preference (stable
/// for equal preferences), the implicit MX (`domain` itself) when there is
/// no MX record, the null MX when the only record is `0 .`.
pub fn plan(domain: &str, mx: Answer<(u16, String)>) -> Plan {
    match mx {
        Answer::Temp(e) => Plan::Temp(e),
        Answer::NxDomain => Plan::NoSuchDomain,
        Answer::NoData => Plan::Hosts(vec![domain.trim_end_matches('.').to_string()]),
        Answer::Records(mut records) => {
            let is_null = |(_, h): &(u16, String)| h.is_empty() || h == ".";
            if records.len() == 1 && is_null(&records[0]) {
                return Plan::NullMx;
            }
            // A null MX mixed with real ones is ignored (RFC 7505 3).
            records.retain(|r| !is_null(r));
            if records.is_empty() {
                return Plan::NullMx;
            }
            records.sort_by_key(|(p, _)| *p);
            let mut hosts: Vec<String> = Vec::new();
            for (_, h) in records {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            hosts.truncate(MX_HOSTS_MAX);
            Plan::Hosts(hosts)
        }
    }
}

/// DNS for the mail compartments: the validating resolver of `scop-dns`
/// (hickory-resolver with DNSSEC validation and a cache). Answers that
/// fail validation are temporary failures, never data.
///
/// In a split deployment the relay and the verifier hold no resolver of
/// their own: they ask the resolver compartment over the mesh
/// ([`crate::dns_hop`]).
#[derive(Debug, Clone)]
pub struct Dns {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Local(scop_dns::resolver::Resolver),
    Mesh(std::sync::Arc<crate::dns_hop::MeshResolver>),
}

impl Dns {
    /// A resolver for `config` (forwarders, stub zones, trust anchors).
    pub fn new(config: &scop_dns::resolver::Config) -> Result<Self, String> {
        scop_dns::resolver::Resolver::new(config)
            .map(|resolver| Dns {
                inner: Inner::Local(resolver),
            })
            .map_err(|e| e.to_string())
    }

    /// Answers from the resolver compartment at `addr`, asked by
    /// compartment `me` over the mesh of `mesh`.
    pub fn over_mesh(
        mesh: &scop_mesh::MeshDir,
        me: scop_mesh::Role,
        addr: std::net::SocketAddr,
    ) -> Result<Self, String> {
        crate::dns_hop::MeshResolver::new(mesh, me, addr).map(|m| Dns {
            inner: Inner::Mesh(std::sync::Arc::new(m)),
        })
    }

    /// Asks for `name`/`rtype` and returns the records' data.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Answer<RData> {
        self.query_validated(name, rtype).await.0
    }

    /// Asks for `name`/`rtype`: the records' data, and whether DNSSEC
    /// proved the answer (the records, or that there are none).
    pub async fn query_validated(&self, name: &str, rtype: RecordType) -> (Answer<RData>, bool) {
        use scop_dns::resolver::Answer as R;
        let resolver = match &self.inner {
            Inner::Local(r) => r,
            Inner::Mesh(m) => return m.query(name, rtype).await,
        };
        match resolver.query(name, rtype).await {
            R::Records { data, secure } => (Answer::Records(data), secure),
            R::NoData { secure } => (Answer::NoData, secure),
            R::NxDomain { secure } => (Answer::NxDomain, secure),
            R::Bogus(e) => (
                Answer::Temp(format!("DNSSEC validation failed: {e}")),
                false,
            ),
            R::Temp(e) => (Answer::Temp(e), false),
        }
    }

    /// TXT records of `name`, each with its character-strings joined.
    pub async fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        self.query(name, RecordType::TXT).await.map_records(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    RData::TXT(t) => {
                        Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// MX records of `domain`.
    pub async fn mx(&self, domain: &str) -> Answer<(u16, String)> {
        self.mx_validated(domain).await.0
    }

    /// MX records of `domain`, and whether DNSSEC proved them (or that
    /// there are none).
    pub async fn mx_validated(&self, domain: &str) -> (Answer<(u16, String)>, bool) {
        let (answer, secure) = self.query_validated(domain, RecordType::MX).await;
        let mx = answer.map_records(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect()
        });
        (mx, secure)
    }

    /// IPv6 and IPv4 addresses of `host`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.addresses_validated(host).await.map(|(a, _)| a)
    }

    /// IPv6 and IPv4 addresses of `host`, and whether DNSSEC proved both
    /// answers.
    pub async fn addresses_validated(&self, host: &str) -> Result<(Vec<IpAddr>, bool), String> {
        let mut out = Vec::new();
        let mut temp = None;
        let mut secure = true;
        for t in [RecordType::AAAA, RecordType::A] {
            let (answer, proved) = self.query_validated(host, t).await;
            secure &= proved;
            match answer {
                Answer::Records(v) => out.extend(v.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Answer::Temp(e) => temp = Some(e),
                Answer::NoData | Answer::NxDomain => {}
            }
        }
        match (out.is_empty(), temp) {
            (true, Some(e)) => Err(e),
            _ => Ok((out, secure)),
        }
    }

    /// The TLSA records of the SMTP server `host` on `port`
    /// (`_PORT._tcp.HOST`, RFC 7672 2.2.2), for DANE.
    pub async fn tlsa(&self, host: &str, port: u16) -> Lookup<Tlsa> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        match self.query_validated(&name, RecordType::TLSA).await {
            (Answer::Records(v), secure) => Lookup::Records {
                records: v
                    .into_iter()
                    .filter_map(|d| match d {
                        RData::TLSA(t) => Some(Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data,
                        }),
                        _ => None,
                    })
                    .collect(),
                secure,
            },
            (Answer::NoData | Answer::NxDomain, secure) => Lookup::Denied { secure },
            (Answer::Temp(e), _) => Lookup::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(v: &[(u16, &str)]) -> Answer<(u16, String)> {
        Answer::Records(v.iter().map(|(p, h)| (*p, h.to_string())).collect())
    }

    #[test]
    fn preference_order_and_dedup() {
        assert_eq!(
            plan(
                "d.test",
                recs(&[
                    (20, "b.d.test."),
                    (10, "A.d.test."),
                    (20, "c.d.test."),
                    (30, "a.d.test.")
                ])
            ),
            Plan::Hosts(vec![
                "a.d.test".into(),
                "b.d.test".into(),
                "c.d.test".into()
            ])
        );
    }

    #[test]
    fn implicit_null_and_missing() {
        assert_eq!(
            plan("d.test", Answer::NoData),
            Plan::Hosts(vec!["d.test".into()])
        );
        assert_eq!(plan("d.test", recs(&[(0, ".")])), Plan::NullMx);
        assert_eq!(plan("d.test", recs(&[(0, "")])), Plan::NullMx);
        assert_eq!(
            plan("d.test", recs(&[(0, "."), (10, "mx.d.test.")])),
            Plan::Hosts(vec!["mx.d.test".into()])
        );
        assert_eq!(plan("d.test", Answer::NxDomain), Plan::NoSuchDomain);
        assert_eq!(
            plan("d.test", Answer::Temp("x".into())),
            Plan::Temp("x".into())
        );
    }
}
