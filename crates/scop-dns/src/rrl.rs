//! Response rate limiting (RRL), in the spirit of BIND's: identical
//! responses sent to one client prefix are counted in a token bucket, and
//! over the limit UDP responses are dropped, except every `slip`-th which
//! goes out truncated (TC=1, no records) so that a real client retries
//! over TCP. A spoofed-source flood thus cannot turn the server into an
//! amplifier. TCP responses are never limited (the handshake proves the
//! source address).
//!
//! Pure logic: the caller passes the time in (milliseconds on any
//! monotonic clock) and the client address as data.

use crate::Transport;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Buckets kept at most; the least recently used one is evicted first, so
/// a flood from many prefixes cannot grow memory without bound.
pub const MAX_RRL_ENTRIES: usize = 100_000;
/// Default responses per second to one prefix for one (kind, name).
pub const DEFAULT_RRL_RATE: u32 = 10;
/// Default window: seconds of debt a flood can run up before responses
/// resume.
pub const DEFAULT_RRL_WINDOW_SECS: u32 = 15;
/// Default slip: every second limited response is sent truncated.
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// IPv4 clients are grouped by this prefix length.
pub const IPV4_PREFIX_BITS: u32 = 24;
/// IPv6 clients are grouped by this prefix length.
pub const IPV6_PREFIX_BITS: u32 = 56;

/// Limits of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second per (prefix, kind, name); 0 disables limiting.
    pub responses_per_second: u32,
    /// Seconds of debt a bucket may accumulate (BIND's `window`).
    pub window_secs: u32,
    /// Every `slip`-th limited response is sent truncated; 0 drops all.
    pub slip: u32,
    /// Largest number of buckets kept.
    pub max_entries: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            responses_per_second: DEFAULT_RRL_RATE,
            window_secs: DEFAULT_RRL_WINDOW_SECS,
            slip: DEFAULT_RRL_SLIP,
            max_entries: MAX_RRL_ENTRIES,
        }
    }
}

/// The class of a response, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseKind {
    /// NOERROR with answer records.
    Answer,
    /// Name does not exist (counted per zone, not per name).
    NxDomain,
    /// NOERROR, no answer, no delegation.
    NoData,
    /// Any other response code.
    Error,
    /// A delegation to a child zone.
    Referral,
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as it is.
    Send,
    /// Send it truncated ([`truncated`]).
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    prefix: IpAddr,
    kind: ResponseKind,
    name: Name,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// In thousandths of a response.
    balance: i64,
    last_ms: u64,
    limited: u64,
    seq: u64,
}

/// The per-prefix token buckets.
#[derive(Debug, Clone)]
pub struct ResponseRateLimiter {
    config: RrlConfig,
    exempt: Vec<Prefix>,
    buckets: HashMap<Key, Bucket>,
    by_age: BTreeMap<u64, Key>,
    next_seq: u64,
}

/// Client addresses never limited (BIND's `exempt-clients`), e.g. our own
/// mail compartments asking the primary over loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The network address.
    pub addr: IpAddr,
    /// Its length in bits.
    pub len: u8,
}

impl Prefix {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let len = u32::from(self.len.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let len = u32::from(self.len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = crate::Error;

    /// `ADDR` or `ADDR/LEN`.
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        let bad = || crate::Error::ApiMisuse(format!("{s:?}: expected ADDR or ADDR/LEN"));
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        Ok(Prefix { addr, len })
    }
}

/// The prefix a client is counted under (IPv4 /24, IPv6 /56).
pub fn client_prefix(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(a) => {
            let mask = u32::MAX << (32 - IPV4_PREFIX_BITS);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

impl ResponseRateLimiter {
    /// An empty limiter.
    pub fn new(config: RrlConfig) -> Self {
        ResponseRateLimiter {
            config,
            exempt: Vec::new(),
            buckets: HashMap::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The same limiter, never limiting clients inside `prefixes`.
    pub fn with_exempt(mut self, prefixes: Vec<Prefix>) -> Self {
        self.exempt = prefixes;
        self
    }

    /// Its limits.
    pub fn config(&self) -> &RrlConfig {
        &self.config
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Counts one UDP response of `kind` about `name` to `client` at
    /// `now_ms` and says whether to send it.
    pub fn check(
        &mut self,
        client: IpAddr,
        kind: ResponseKind,
        name: &Name,
        now_ms: u64,
    ) -> Verdict {
        let rate = i64::from(self.config.responses_per_second);
        if rate == 0
            || self.config.max_entries == 0
            || self.exempt.iter().any(|p| p.contains(client))
        {
            return Verdict::Send;
        }
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let key = Key {
            prefix: client_prefix(client),
            kind,
            name,
        };
        let full = rate * 1000;
        let floor = -(full * i64::from(self.config.window_secs.max(1)));
        let seq = self.next_seq;
        self.next_seq += 1;
        let bucket = match self.buckets.get_mut(&key) {
            Some(b) => {
                self.by_age.remove(&b.seq);
                let elapsed = i64::try_from(now_ms.saturating_sub(b.last_ms)).unwrap_or(i64::MAX);
                b.balance = b
                    .balance
                    .saturating_add(elapsed.saturating_mul(rate))
                    .min(full);
                b.last_ms = b.last_ms.max(now_ms);
                b.seq = seq;
                b
            }
            None => {
                while self.buckets.len() >= self.config.max_entries {
                    let Some((_, old)) = self.by_age.pop_first() else {
                        break;
                    };
                    self.buckets.remove(&old);
                }
                self.buckets.entry(key.clone()).or_insert(Bucket {
                    balance: full,
                    last_ms: now_ms,
                    limited: 0,
                    seq,
                })
            }
        };
        self.by_age.insert(seq, key);
        bucket.balance = (bucket.balance - 1000).max(floor);
        if bucket.balance >= 0 {
            bucket.limited = 0;
            return Verdict::Send;
        }
        bucket.limited += 1;
        let slip = u64::from(self.config.slip);
        if slip > 0 && bucket.limited % slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Decides about an encoded reply: TCP, non-query and TSIG-signed
    /// replies are always sent; others are classified and counted.
    pub fn check_reply(
        &mut self,
        client: IpAddr,
        transport: Transport,
        reply: &[u8],
        now_ms: u64,
    ) -> Verdict {
        if transport == Transport::Tcp || self.config.responses_per_second == 0 {
            return Verdict::Send;
        }
        match classify(reply) {
            Some((kind, name)) => self.check(client, kind, &name, now_ms),
            None => Verdict::Send,
        }
    }
}

/// The kind of a query reply and the name it is counted under (the zone,
/// taken from the SOA in the authority section, for NXDOMAIN). `None` for
/// what is not limited: unparsable bytes, other opcodes, signed replies.
pub fn classify(reply: &[u8]) -> Option<(ResponseKind, Name)> {
    let msg = Message::from_vec(reply).ok()?;
    if msg.metadata.message_type != MessageType::Response
        || msg.metadata.op_code != OpCode::Query
        || msg.signature.is_some()
        || msg
            .additionals
            .iter()
            .any(|r| matches!(r.record_type(), RecordType::TSIG | RecordType::SIG))
    {
        return None;
    }
    let qname = msg.queries.first().map(|q| q.name.clone())?;
    let kind = match msg.metadata.response_code {
        ResponseCode::NoError if !msg.answers.is_empty() => ResponseKind::Answer,
        ResponseCode::NoError
            if !msg.metadata.authoritative
                && msg
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::NS) =>
        {
            ResponseKind::Referral
        }
        ResponseCode::NoError => ResponseKind::NoData,
        ResponseCode::NXDomain => ResponseKind::NxDomain,
        _ => ResponseKind::Error,
    };
    let name = match kind {
        ResponseKind::NxDomain => msg
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map_or(qname, |r| r.name.clone()),
        ResponseKind::Referral => msg
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::NS)
            .map_or(qname, |r| r.name.clone()),
        _ => qname,
    };
    Some((kind, name))
}

/// The slipped form of a reply: header and question only, TC=1, so the
/// client retries over TCP. `None` if the reply cannot be parsed.
pub fn truncated(reply: &[u8]) -> Option<Vec<u8>> {
    let mut msg = Message::from_vec(reply).ok()?;
    msg.answers.clear();
    msg.authorities.clear();
    msg.additionals.clear();
    msg.metadata.truncation = true;
    msg.to_vec().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn exempt_clients_are_never_limited() {
        let exempt: Vec<super::Prefix> = ["127.0.0.0/8", "::1", "2001:db8::/32"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let mut rrl = super::ResponseRateLimiter::new(super::RrlConfig {
            responses_per_second: 1,
            slip: 0,
            ..super::RrlConfig::default()
        })
        .with_exempt(exempt);
        let name = hickory_proto::rr::Name::from_ascii("example.org.").unwrap();
        let kind = super::ResponseKind::Answer;
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "2001:db8:1::5"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            for _ in 0..50 {
                assert_eq!(rrl.check(ip, kind, &name, 0), super::Verdict::Send, "{ip}");
            }
        }
        // Others are still limited.
        let other: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let sent = (0..50)
            .filter(|_| rrl.check(other, kind, &name, 0) == super::Verdict::Send)
            .count();
        assert!(sent < 50, "{sent}");
        assert!("10.0.0.0/33".parse::<super::Prefix>().is_err());
        assert!("nope".parse::<super::Prefix>().is_err());
        let p: super::Prefix = "10.1.0.0/16".parse().unwrap();
        assert!(p.contains("10.1.255.1".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let all: super::Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
    }

    use super::*;
    use std::str::FromStr;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn limiter(rate: u32, slip: u32) -> ResponseRateLimiter {
        ResponseRateLimiter::new(RrlConfig {
            responses_per_second: rate,
            slip,
            ..RrlConfig::default()
        })
    }

    #[test]
    fn burst_then_limited_then_refilled() {
        let mut r = limiter(10, 2);
        let c: IpAddr = "192.0.2.7".parse().unwrap();
        let n = name("www.example.org.");
        let verdicts: Vec<Verdict> = (0..20)
            .map(|_| r.check(c, ResponseKind::Answer, &n, 1_000))
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Send));
        for (i, v) in verdicts[10..].iter().enumerate() {
            let want = if i % 2 == 1 {
                Verdict::Slip
            } else {
                Verdict::Drop
            };
            assert_eq!(*v, want, "response {}", i + 10);
        }
        // Debt of 10 responses: a full second repays it, a second more
        // refills 10 responses.
        assert_ne!(r.check(c, ResponseKind::Answer, &n, 2_000), Verdict::Send);
        let later: Vec<Verdict> = (0..11)
            .map(|_| r.check(c, ResponseKind::Answer, &n, 4_200))
            .collect();
        assert_eq!(later.iter().filter(|v| **v == Verdict::Send).count(), 10);
        assert_ne!(later[10], Verdict::Send);
    }

    #[test]
    fn steady_rate_is_never_limited() {
        let mut r = limiter(10, 2);
        let c: IpAddr = "192.0.2.7".parse().unwrap();
        let n = name("a.example.");
        for i in 0..1_000u64 {
            assert_eq!(r.check(c, ResponseKind::Answer, &n, i * 100), Verdict::Send);
        }
    }

    #[test]
    fn debt_is_bounded_by_the_window() {
        let mut r = limiter(10, 0);
        let c: IpAddr = "192.0.2.7".parse().unwrap();
        let n = name("a.example.");
        for _ in 0..100_000 {
            r.check(c, ResponseKind::Answer, &n, 0);
        }
        // The debt stops at 15 s of responses: repaid exactly at 15 s.
        assert_eq!(r.check(c, ResponseKind::Answer, &n, 15_000), Verdict::Drop);
        assert_eq!(r.check(c, ResponseKind::Answer, &n, 17_200), Verdict::Send);
    }

    #[test]
    fn prefixes_group_clients() {
        let mut r = limiter(5, 0);
        let n = name("a.example.");
        for i in 0..5u8 {
            let c = IpAddr::from([198, 51, 100, i]);
            assert_eq!(r.check(c, ResponseKind::Answer, &n, 0), Verdict::Send);
        }
        let same24 = IpAddr::from([198, 51, 100, 200]);
        assert_eq!(r.check(same24, ResponseKind::Answer, &n, 0), Verdict::Drop);
        let other24 = IpAddr::from([198, 51, 101, 1]);
        assert_eq!(r.check(other24, ResponseKind::Answer, &n, 0), Verdict::Send);
        let a: IpAddr = "2001:db8:0:ab01::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:abff::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:ac00::1".parse().unwrap();
        assert_eq!(client_prefix(a), client_prefix(b));
        assert_ne!(client_prefix(a), client_prefix(c));
        for _ in 0..5 {
            assert_eq!(r.check(a, ResponseKind::Answer, &n, 0), Verdict::Send);
        }
        assert_eq!(r.check(b, ResponseKind::Answer, &n, 0), Verdict::Drop);
        assert_eq!(r.check(c, ResponseKind::Answer, &n, 0), Verdict::Send);
    }

    #[test]
    fn kinds_and_names_are_counted_apart() {
        let mut r = limiter(1, 0);
        let c: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            r.check(c, ResponseKind::Answer, &name("a.example."), 0),
            Verdict::Send
        );
        assert_eq!(
            r.check(c, ResponseKind::Answer, &name("A.Example"), 0),
            Verdict::Drop
        );
        assert_eq!(
            r.check(c, ResponseKind::Answer, &name("b.example."), 0),
            Verdict::Send
        );
        assert_eq!(
            r.check(c, ResponseKind::NoData, &name("a.example."), 0),
            Verdict::Send
        );
    }

    #[test]
    fn disabled_sends_everything() {
        let mut r = limiter(0, 2);
        let c: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1_000 {
            assert_eq!(
                r.check(c, ResponseKind::Answer, &name("a."), 0),
                Verdict::Send
            );
        }
        assert!(r.is_empty());
    }

    #[test]
    fn table_is_bounded_and_evicts_the_oldest() {
        let mut r = ResponseRateLimiter::new(RrlConfig {
            responses_per_second: 1,
            slip: 0,
            max_entries: 100,
            ..RrlConfig::default()
        });
        let n = name("a.example.");
        let first = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(r.check(first, ResponseKind::Answer, &n, 0), Verdict::Send);
        assert_eq!(r.check(first, ResponseKind::Answer, &n, 0), Verdict::Drop);
        for i in 0..10_000u32 {
            let c = IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes());
            r.check(c, ResponseKind::Answer, &n, 0);
            assert!(r.len() <= 100);
        }
        assert_eq!(r.len(), 100);
        // Evicted: it starts again with a full bucket.
        assert_eq!(r.check(first, ResponseKind::Answer, &n, 0), Verdict::Send);
    }

    #[test]
    fn tcp_is_never_limited_and_replies_are_classified() {
        use hickory_proto::op::Query;
        use hickory_proto::rr::{RData, Record, rdata::A};
        let mut msg = Message::new(7, MessageType::Response, OpCode::Query);
        msg.add_query(Query::query(name("www.example."), RecordType::A));
        msg.add_answer(Record::from_rdata(
            name("www.example."),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let bytes = msg.to_vec().unwrap();
        assert_eq!(
            classify(&bytes),
            Some((ResponseKind::Answer, name("www.example.")))
        );
        let mut r = limiter(1, 2);
        let c: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(r.check_reply(c, Transport::Tcp, &bytes, 0), Verdict::Send);
        }
        assert_eq!(r.check_reply(c, Transport::Udp, &bytes, 0), Verdict::Send);
        assert_eq!(r.check_reply(c, Transport::Udp, &bytes, 0), Verdict::Drop);
        assert_eq!(r.check_reply(c, Transport::Udp, &bytes, 0), Verdict::Slip);
        let t = Message::from_vec(&truncated(&bytes).unwrap()).unwrap();
        assert!(t.metadata.truncation);
        assert!(t.answers.is_empty());
        assert_eq!(t.queries.len(), 1);
        assert_eq!(t.metadata.id, 7);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Within one instant, exactly `rate` responses go out, and of
            /// the limited ones exactly every `slip`-th is slipped.
            #[test]
            fn exact_counts(rate in 1u32..50, slip in 0u32..5, n in 0usize..300) {
                let mut r = limiter(rate, slip);
                let c: IpAddr = "192.0.2.1".parse().unwrap();
                let nm = name("x.example.");
                let v: Vec<Verdict> = (0..n).map(|_| r.check(c, ResponseKind::Answer, &nm, 5)).collect();
                let sent = v.iter().filter(|x| **x == Verdict::Send).count();
                let slipped = v.iter().filter(|x| **x == Verdict::Slip).count();
                prop_assert_eq!(sent, n.min(rate as usize));
                let limited = n.saturating_sub(rate as usize);
                let want = if slip == 0 { 0 } else { limited / slip as usize };
                prop_assert_eq!(slipped, want);
            }

            /// Over any spacing of requests, no more than the bucket size
            /// plus the refill is ever sent.
            #[test]
            fn never_above_rate(rate in 1u32..30, gaps in proptest::collection::vec(0u64..400, 1..400)) {
                let mut r = limiter(rate, 2);
                let c: IpAddr = "192.0.2.1".parse().unwrap();
                let nm = name("x.example.");
                let mut now = 0u64;
                let mut sent = 0u64;
                for g in &gaps {
                    now += g;
                    if r.check(c, ResponseKind::Answer, &nm, now) == Verdict::Send {
                        sent += 1;
                    }
                }
                let bound = u64::from(rate) + now * u64::from(rate) / 1000;
                prop_assert!(sent <= bound, "sent {} bound {}", sent, bound);
            }
        }
    }
}
