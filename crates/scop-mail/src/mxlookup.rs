//! Finding a domain's mail servers (RFC 5321 5.1): MX records by
//! preference, the implicit MX when there is none, the null MX of RFC 7505,
//! then the A and AAAA addresses of each host (IPv4 and IPv6).
//!
//! [`plan`] is the sans-IO decision; [`Stub`] is a small stub resolver
//! (UDP, TCP on truncation, hickory-proto for the wire format) that asks a
//! configured recursive resolver. DNSSEC validation belongs to the
//! validating resolver of `scop-dns`, which will replace this stub.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

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

/// A stub resolver asking recursive resolvers.
#[derive(Debug, Clone)]
pub struct Stub {
    /// Resolvers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Wait per query and server.
    pub timeout: Duration,
}

impl Stub {
    /// The resolvers of `/etc/resolv.conf` (`nameserver` lines).
    pub fn from_resolv_conf(text: &str) -> Self {
        let servers = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        Stub {
            servers,
            timeout: Duration::from_secs(5),
        }
    }

    async fn exchange(&self, server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        sock.connect(server).await.map_err(|e| e.to_string())?;
        sock.send(query).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let response = loop {
            let n = tokio::time::timeout(self.timeout, sock.recv(&mut buf))
                .await
                .map_err(|_| format!("{server}: timeout"))?
                .map_err(|e| e.to_string())?;
            match Message::from_vec(&buf[..n]) {
                Ok(m)
                    if m.metadata.id == id && m.metadata.message_type == MessageType::Response =>
                {
                    break m;
                }
                _ => continue, // stray or forged datagram: keep waiting
            }
        };
        if !response.metadata.truncation {
            return Ok(response);
        }
        // Truncated: ask again over TCP (RFC 7766).
        let mut tcp = tokio::time::timeout(self.timeout, TcpStream::connect(server))
            .await
            .map_err(|_| format!("{server}: TCP timeout"))?
            .map_err(|e| e.to_string())?;
        let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
        let read = async {
            let mut l = [0u8; 2];
            tcp.read_exact(&mut l).await?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(l))];
            tcp.read_exact(&mut body).await?;
            std::io::Result::Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| format!("{server}: TCP timeout"))?
            .map_err(|e| e.to_string())?;
        Message::from_vec(&body).map_err(|e| e.to_string())
    }

    /// Asks for `name`/`rtype` and returns the records' data.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Answer<RData> {
        let Ok(qname) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
            return Answer::NxDomain;
        };
        let mut id = [0u8; 2];
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            return Answer::Temp("no randomness for the query id".into());
        }
        let id = u16::from_be_bytes(id);
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(qname.clone(), rtype));
        let Ok(bytes) = msg.to_vec() else {
            return Answer::Temp("could not encode the query".into());
        };
        let mut last = String::from("no resolver configured");
        for server in &self.servers {
            match self.exchange(*server, &bytes, id).await {
                Err(e) => last = e,
                Ok(r) => match r.metadata.response_code {
                    ResponseCode::NXDomain => return Answer::NxDomain,
                    ResponseCode::NoError => {
                        let data: Vec<RData> = r
                            .answers
                            .into_iter()
                            .filter(|rec| rec.record_type() == rtype)
                            .map(|rec| rec.data)
                            .collect();
                        return if data.is_empty() {
                            Answer::NoData
                        } else {
                            Answer::Records(data)
                        };
                    }
                    other => last = format!("{server}: {other}"),
                },
            }
        }
        Answer::Temp(last)
    }

    /// MX records of `domain`.
    pub async fn mx(&self, domain: &str) -> Answer<(u16, String)> {
        self.query(domain, RecordType::MX).await.map_records(|v| {
            v.into_iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect()
        })
    }

    /// IPv6 and IPv4 addresses of `host`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let mut out = Vec::new();
        let mut temp = None;
        for t in [RecordType::AAAA, RecordType::A] {
            match self.query(host, t).await {
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
            _ => Ok(out),
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

    #[test]
    fn resolv_conf() {
        let s = Stub::from_resolv_conf("# c\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\n");
        assert_eq!(
            s.servers,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
