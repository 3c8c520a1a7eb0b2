//! The validating resolver used by the mail compartments (relay MX
//! lookups, SPF, DKIM, DMARC): hickory-resolver with DNSSEC validation
//! and a cache, in front of configurable upstreams.
//!
//! ```text
//!  query(name, type) ──► longest stub zone that contains name?
//!                          ├─ yes: that zone's servers (authoritative, no recursion),
//!                          │       validated with the zone's trust anchor if one is
//!                          │       configured, else answered as insecure
//!                          └─ no:  the forwarders (recursive), validated from the
//!                                  root anchors (IANA's, or the configured ones)
//! ```
//!
//! Bogus answers (a signature that does not verify, a missing proof, an
//! NSEC3 chain over [`NSEC3_ITERATIONS_BOGUS`] iterations) come back as
//! [`Answer::Bogus`], never as data: a caller treats them like a
//! temporary failure. KeyTrap-style work is bounded by hickory's
//! validator (at most two DNSKEYs tried per key tag, nine RRSIGs tried per
//! RRset) and by [`NSEC3_ITERATIONS_INSECURE`].
//!
//! Trust anchors are DNSKEY records in master-file syntax, one per line
//! (`alice.test. 3600 IN DNSKEY 257 3 13 <base64>`), as `scop dns keygen`
//! writes them in its `.key` files; `;` starts a comment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::dnssec::{Algorithm, Proof, PublicKeyBuf, TrustAnchors};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};

use crate::Error;

/// NSEC3 chains with more iterations than this are treated as insecure
/// (RFC 9276 3.2 lets a validator do so).
pub const NSEC3_ITERATIONS_INSECURE: u16 = 100;
/// NSEC3 chains with more iterations than this are bogus.
pub const NSEC3_ITERATIONS_BOGUS: u16 = 150;
/// Responses kept in the cache.
pub const CACHE_RESPONSES: u64 = 4_096;
/// Stub zones configured at most.
pub const MAX_STUBS: usize = 64;
/// Trust anchor file size read at most.
pub const MAX_ANCHOR_BYTES: usize = 1 << 20;

/// Servers that answer for one zone directly (like Unbound's stub-zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    /// The zone.
    pub zone: Name,
    /// Its authoritative servers.
    pub servers: Vec<SocketAddr>,
}

impl std::str::FromStr for Stub {
    type Err = Error;

    /// `ZONE=ADDR:PORT[,ADDR:PORT...]`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (zone, servers) = s
            .split_once('=')
            .ok_or_else(|| Error::ApiMisuse(format!("stub {s:?}: expected ZONE=ADDR:PORT")))?;
        let zone = Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
            .map_err(|e| Error::ApiMisuse(format!("stub zone {zone:?}: {e}")))?;
        let servers = servers
            .split(',')
            .map(|a| {
                a.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| Error::ApiMisuse(format!("stub server {a:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stub { zone, servers })
    }
}

/// Where and how to resolve.
#[derive(Debug, Clone)]
pub struct Config {
    /// Recursive resolvers for everything outside the stub zones.
    pub forwarders: Vec<SocketAddr>,
    /// Zones answered by their own servers.
    pub stubs: Vec<Stub>,
    /// Trust anchors: DNSKEY records (see the module documentation).
    /// Root keys replace IANA's; other names anchor their zone.
    pub anchors: Vec<Anchor>,
    /// Validate DNSSEC (on by default). When off, every answer is
    /// insecure.
    pub validate: bool,
    /// Wait per query and server.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forwarders: Vec::new(),
            stubs: Vec::new(),
            anchors: Vec::new(),
            validate: true,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Forwarders from `/etc/resolv.conf` text (`nameserver` lines).
    pub fn forwarders_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }
}

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The zone the key belongs to (the root for a root key).
    pub zone: Name,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// The public key as in DNSKEY RDATA.
    pub public_key: Vec<u8>,
}

/// Reads trust anchors: DNSKEY lines, comments after `;`.
pub fn parse_anchors(text: &str) -> Result<Vec<Anchor>, Error> {
    if text.len() > MAX_ANCHOR_BYTES {
        return Err(Error::BadZoneData("trust anchor file too large".into()));
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::BadZoneData(format!("trust anchor line {}: {why}", n + 1));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields
            .iter()
            .position(|f| f.eq_ignore_ascii_case("DNSKEY"))
            .ok_or_else(|| bad("not a DNSKEY record"))?;
        if at == 0 || fields.len() < at + 5 {
            return Err(bad("expected NAME [TTL] [IN] DNSKEY FLAGS 3 ALG KEY"));
        }
        let zone = Name::from_ascii(fields[0]).map_err(|e| bad(&e.to_string()))?;
        if !zone.is_fqdn() {
            return Err(bad("the owner name must end with a dot"));
        }
        let flags: u16 = fields[at + 1].parse().map_err(|_| bad("bad flags"))?;
        if flags & 0x0100 == 0 {
            return Err(bad("not a zone key (flags lack bit 7)"));
        }
        if fields[at + 2] != "3" {
            return Err(bad("protocol must be 3"));
        }
        let algorithm: u8 = fields[at + 3].parse().map_err(|_| bad("bad algorithm"))?;
        let b64: String = fields[at + 4..].concat();
        let public_key = data_encoding::BASE64
            .decode(b64.as_bytes())
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        if public_key.is_empty() {
            return Err(bad("empty key"));
        }
        out.push(Anchor {
            zone,
            algorithm,
            public_key,
        });
    }
    Ok(out)
}

/// What the DNS said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records of the asked type; `secure` when DNSSEC proved them.
    Records {
        /// The records' data.
        data: Vec<RData>,
        /// Validated (the AD bit of a validating resolver).
        secure: bool,
    },
    /// The name exists without records of the type.
    NoData {
        /// The denial was validated.
        secure: bool,
    },
    /// The name does not exist.
    NxDomain {
        /// The denial was validated.
        secure: bool,
    },
    /// DNSSEC validation failed: the answer must not be used.
    Bogus(String),
    /// No usable answer now (timeout, SERVFAIL, REFUSED...).
    Temp(String),
}

struct Upstream {
    resolver: hickory_resolver::Resolver<TokioRuntimeProvider>,
    validating: bool,
}

/// The validating resolver; cheap to clone (shared caches).
#[derive(Clone)]
pub struct Resolver {
    forward: Option<Arc<Upstream>>,
    stubs: Arc<Vec<(Name, Upstream)>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("forward", &self.forward.is_some())
            .field(
                "stubs",
                &self.stubs.iter().map(|(z, _)| z).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn public_key(a: &Anchor) -> PublicKeyBuf {
    PublicKeyBuf::new(a.public_key.clone(), Algorithm::from_u8(a.algorithm))
}

fn upstream(
    servers: &[SocketAddr],
    recursive: bool,
    anchors: Option<TrustAnchors>,
    timeout: Duration,
) -> Result<Upstream, Error> {
    let name_servers = servers
        .iter()
        .map(|s| {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            NameServerConfig::new(s.ip(), true, vec![udp, tcp])
        })
        .collect();
    let config = ResolverConfig::from_parts(None, vec![], name_servers);
    let mut builder =
        hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = CACHE_RESPONSES;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.recursion_desired = recursive;
    opts.edns0 = true;
    opts.ndots = 0;
    opts.preserve_intermediates = false;
    let validating = anchors.is_some();
    if let Some(anchors) = anchors {
        opts.validate = true;
        builder = builder
            .with_trust_anchor(Arc::new(anchors))
            .nsec3_iteration_limits(
                Some(NSEC3_ITERATIONS_INSECURE),
                Some(NSEC3_ITERATIONS_BOGUS),
            );
    }
    let resolver = builder
        .build()
        .map_err(|e| Error::ApiMisuse(format!("resolver: {e}")))?;
    Ok(Upstream {
        resolver,
        validating,
    })
}

impl Resolver {
    /// A resolver for `config`. Must be called inside a tokio runtime
    /// only when queried; building it does no I/O.
    pub fn new(config: &Config) -> Result<Self, Error> {
        if config.stubs.len() > MAX_STUBS {
            return Err(Error::ApiMisuse(format!("at most {MAX_STUBS} stub zones")));
        }
        let roots: Vec<&Anchor> = config.anchors.iter().filter(|a| a.zone.is_root()).collect();
        let forward = if config.forwarders.is_empty() {
            None
        } else {
            let anchors = config.validate.then(|| {
                if roots.is_empty() {
                    TrustAnchors::default()
                } else {
                    let mut t = TrustAnchors::empty();
                    for a in &roots {
                        t.insert(&public_key(a));
                    }
                    t
                }
            });
            Some(Arc::new(upstream(
                &config.forwarders,
                true,
                anchors,
                config.timeout,
            )?))
        };
        let mut stubs = Vec::new();
        for stub in &config.stubs {
            if stub.servers.is_empty() {
                return Err(Error::ApiMisuse(format!(
                    "stub zone {} has no server",
                    stub.zone
                )));
            }
            // Anchors at or above the stub's apex (but below the root)
            // make it a secure island; without one it is answered as
            // insecure, because its servers cannot prove the chain from
            // the root.
            let mut t = TrustAnchors::empty();
            let mut any = false;
            for a in &config.anchors {
                if !a.zone.is_root() && a.zone.zone_of(&stub.zone) {
                    t.insert_with_name(&public_key(a), LowerName::from(&a.zone));
                    any = true;
                }
            }
            let anchors = (config.validate && any).then_some(t);
            stubs.push((
                stub.zone.clone(),
                upstream(&stub.servers, false, anchors, config.timeout)?,
            ));
        }
        // Longest zone first, so the most specific stub wins.
        stubs.sort_by_key(|(z, _)| std::cmp::Reverse(z.num_labels()));
        Ok(Resolver {
            forward,
            stubs: Arc::new(stubs),
        })
    }

    fn route(&self, name: &Name) -> Option<&Upstream> {
        self.stubs
            .iter()
            .find(|(zone, _)| zone.zone_of(name))
            .map(|(_, u)| u)
            .or(self.forward.as_deref())
    }

    /// Asks for `name` (absolute or not: a final dot is implied) and type.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Answer {
        let Ok(qname) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
            return Answer::NxDomain { secure: false };
        };
        self.query_name(&qname, rtype).await
    }

    /// [`Resolver::query`] for a parsed name.
    pub async fn query_name(&self, name: &Name, rtype: RecordType) -> Answer {
        let Some(up) = self.route(name) else {
            return Answer::Temp("no resolver configured for this name".into());
        };
        match up.resolver.lookup(name.clone(), rtype).await {
            Ok(lookup) => {
                let mut secure = up.validating;
                let mut data = Vec::new();
                for r in lookup.answers() {
                    if r.record_type() == rtype {
                        secure &= r.proof == Proof::Secure;
                        data.push(r.data.clone());
                    } else if r.record_type() == RecordType::CNAME {
                        secure &= r.proof == Proof::Secure;
                    }
                    if r.proof == Proof::Bogus {
                        return Answer::Bogus(format!("{name} {rtype}: bogus signature"));
                    }
                }
                if data.is_empty() {
                    Answer::NoData { secure }
                } else {
                    Answer::Records { data, secure }
                }
            }
            Err(e) => classify(name, rtype, &e, up.validating),
        }
    }
}

fn classify(name: &Name, rtype: RecordType, e: &NetError, validating: bool) -> Answer {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => {
            // A validated denial reaches us as an ordinary negative
            // response whose proof records carry the validator's verdict.
            let proofs: Vec<_> = no
                .authorities
                .iter()
                .flat_map(|a| a.iter())
                .filter(|r| {
                    matches!(
                        r.record_type(),
                        RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA
                    )
                })
                .collect();
            if proofs.iter().any(|r| r.proof == Proof::Bogus) {
                return Answer::Bogus(format!("{name} {rtype}: bogus denial"));
            }
            let secure = validating
                && proofs
                    .iter()
                    .any(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3))
                && proofs.iter().all(|r| r.proof == Proof::Secure);
            match no.response_code {
                ResponseCode::NXDomain => Answer::NxDomain { secure },
                ResponseCode::NoError => Answer::NoData { secure },
                other => Answer::Temp(format!("{name} {rtype}: {other}")),
            }
        }
        NetError::Dns(DnsError::Nsec {
            response, proof, ..
        }) => {
            let secure = validating && *proof == Proof::Secure;
            match *proof {
                Proof::Bogus => Answer::Bogus(format!("{name} {rtype}: bogus denial")),
                _ => match response.response_code {
                    ResponseCode::NXDomain => Answer::NxDomain { secure },
                    ResponseCode::NoError => Answer::NoData { secure },
                    other => Answer::Temp(format!("{name} {rtype}: {other}")),
                },
            }
        }
        NetError::Dns(DnsError::DnssecBogus) => {
            Answer::Bogus(format!("{name} {rtype}: DNSSEC validation failed"))
        }
        other => {
            let text = other.to_string();
            if validating && (text.contains("DNSSEC") || text.contains("rrsig")) {
                Answer::Bogus(format!("{name} {rtype}: {text}"))
            } else {
                Answer::Temp(format!("{name} {rtype}: {text}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse_key_files() {
        let text = "; This is a key-signing key, keyid 1, for alice.test.\n\
                    alice.test. 3600 IN DNSKEY 257 3 13 AQID BAUG ; split\n\
                    . DNSKEY 257 3 8 AwEAAQ==\n";
        let a = parse_anchors(text).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].zone, Name::from_ascii("alice.test.").unwrap());
        assert_eq!(a[0].algorithm, 13);
        assert_eq!(a[0].public_key, vec![1, 2, 3, 4, 5, 6]);
        assert!(a[1].zone.is_root());
    }

    #[test]
    fn anchors_reject_garbage() {
        for bad in [
            "alice.test. IN A 192.0.2.1",
            "alice.test IN DNSKEY 257 3 13 AQID",
            "alice.test. IN DNSKEY 0 3 13 AQID",
            "alice.test. IN DNSKEY 257 2 13 AQID",
            "alice.test. IN DNSKEY 257 3 13 !!!",
            "DNSKEY 257 3 13 AQID",
            "alice.test. IN DNSKEY 257 3",
        ] {
            assert!(parse_anchors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stubs_parse() {
        let s: Stub = "alice.test=127.0.0.2:53,[::1]:5353".parse().unwrap();
        assert_eq!(s.zone, Name::from_ascii("alice.test.").unwrap());
        assert_eq!(s.servers.len(), 2);
        assert!("alice.test".parse::<Stub>().is_err());
        assert!("alice.test=nope".parse::<Stub>().is_err());
    }

    #[test]
    fn most_specific_stub_wins() {
        let config = Config {
            stubs: vec![
                "test=127.0.0.1:1".parse().unwrap(),
                "alice.test=127.0.0.2:2".parse().unwrap(),
            ],
            ..Config::default()
        };
        let r = Resolver::new(&config).unwrap();
        let name = Name::from_ascii("mx.alice.test.").unwrap();
        let up = r.route(&name).unwrap();
        assert!(std::ptr::eq(up, &r.stubs[0].1));
        assert_eq!(r.stubs[0].0, Name::from_ascii("alice.test.").unwrap());
        assert!(
            r.route(&Name::from_ascii("example.org.").unwrap())
                .is_none()
        );
    }

    #[test]
    fn resolv_conf() {
        let s = Config::forwarders_from_resolv_conf(
            "# c\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\n",
        );
        assert_eq!(
            s,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
