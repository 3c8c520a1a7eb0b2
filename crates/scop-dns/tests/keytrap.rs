//! KeyTrap (CVE-2023-50387) against our validating resolver.
//!
//! A zone whose DNSKEY RRset holds many keys that share one key tag, with
//! many RRSIGs that claim that tag, makes a naive validator try every key
//! against every signature (keys × signatures public-key operations for
//! one RRset). hickory 0.26.3, which our resolver wraps, bounds the work
//! (paths in `~/.cargo/registry/src/*/hickory-net-0.26.3/src/dnssec/`):
//!
//! - `MAX_KEY_TAG_COLLISIONS = 2` (`mod.rs:2050`): `verify_rrsig_with_keys`
//!   (`mod.rs:1204`, the check at `mod.rs:1248`) drops every DNSKEY after
//!   the second with the same tag before any signature check, whatever
//!   the RRSIG; `verify_dnskey` (`mod.rs:1301`, check at `mod.rs:1348`)
//!   compares each DNSKEY with at most two DS records of its tag, so at
//!   most two keys per tag can be proven by a parent.
//! - `MAX_RRSIGS_PER_RRSET = 8` (`mod.rs:2053`): `verify_default_rrset`
//!   skips an RRSIG when `i > 8` (`mod.rs:1055`), so the RRSIGs at
//!   indexes 0 to 8, nine of them, are tried: one more than the name says.
//! - Signer, algorithm and key tag are compared before any cryptography
//!   (`RrsigValidity::check`, `mod.rs:1505`, tag at `mod.rs:1554`), so
//!   keys of other tags cost nothing.
//!
//! So one RRset costs at most 9 × 2 = 18 signature checks, however many
//! keys and signatures the zone serves. The DNSKEY RRset itself
//! (`verify_dnskey_rrset`, `mod.rs:585`) is checked only with keys
//! already proven by a trust anchor or a DS record, at most two per tag
//! by the DS limit above.
//!
//! The zones here are real DNSSEC chains from trust anchors: our signer
//! signs `example.org` with a KSK and seven Ed25519 ZSKs whose key tags
//! collide (with the KSK, the signer's `MAX_KEYS_PER_ZONE` of 8), found
//! by the birthday effect among keys made with [`SigningKey::from_secret`]
//! from deterministic secrets: the same 39 140 keys every run, 0.2 to
//! 0.6 s in a debug build on two cores (a tag first holds 4 keys after
//! 6 488 keys, 8 keys after 49 306). A relay in front of our server, on
//! UDP and TCP, then turns the answers into KeyTrap material, as the
//! attacker who runs the zone would serve them: it corrupts every data
//! RRSIG but those of one chosen key, orders the DNSKEYs, or puts bad
//! RRSIGs before the good one.
//!
//! The tests show the limits engage by what they leave untried: a valid
//! signature by the third key of a tag, or at RRSIG index 9, is ignored
//! (Bogus), while the same signature by the first or second key, or at
//! index 8, validates. With seven keys, a naive validator's 49 checks
//! would take about a millisecond too, so time alone proves nothing here;
//! [`BUDGET`] only bounds each answer (they take 1 to 10 ms, 100 ms for
//! 200 RRSIGs over TCP) so that a hang or a retry storm fails the test.

mod common;

use common::*;
use scop_dns::dnssec::{Algorithm, Settings, SigningKey, verify_rrsig};
use scop_dns::hickory_proto::op::Message;
use scop_dns::hickory_proto::rr::rdata::NULL;
use scop_dns::hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use scop_dns::hickory_proto::serialize::binary::BinEncodable;
use scop_dns::resolver::{Answer, Resolver, parse_anchors};
use scop_dns::server::Config as ServerConfig;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// hickory-net 0.26.3 `MAX_KEY_TAG_COLLISIONS`: DNSKEYs tried per tag.
const KEYS_TRIED_PER_TAG: usize = 2;
/// RRSIGs hickory-net 0.26.3 tries per RRset (`i > MAX_RRSIGS_PER_RRSET`
/// with `MAX_RRSIGS_PER_RRSET = 8` skips from index 9 on).
const RRSIGS_TRIED: usize = 9;
/// Colliding ZSKs served: with the KSK, the signer's limit of
/// `MAX_KEYS_PER_ZONE` (8) keys.
const COLLIDING: usize = 7;
/// Bad RRSIGs in the largest padded RRset (about 107 bytes each).
const MANY_RRSIGS: usize = 200;
/// Names queried one after the other in each case (each a fresh RRset
/// to validate, so the resolver's cache does not answer).
const QUERIES: usize = 4;
/// Longest wait for one answer, debug build included (answers take a few
/// milliseconds; the budget is for slow CI machines).
const BUDGET: Duration = Duration::from_secs(2);

fn names() -> String {
    (0..QUERIES)
        .map(|i| format!("h{i} A 192.0.2.{}\n", 100 + i))
        .collect()
}

/// Keys whose tags collide, and what finding them took.
struct Collision {
    keys: Vec<SigningKey>,
    generated: u64,
    /// (k, keys generated when some tag first had k keys).
    milestones: Vec<(usize, u64)>,
    elapsed: Duration,
}

/// The secret of the `i`th candidate: deterministic, so every run finds
/// the same collision after the same number of keys.
fn secret(i: u64) -> [u8; 32] {
    let mut s = [0x5c; 32];
    s[24..].copy_from_slice(&i.to_be_bytes());
    s
}

fn candidate(i: u64) -> SigningKey {
    SigningKey::from_secret(&origin(), Algorithm::Ed25519, false, &secret(i)).unwrap()
}

/// Generates ZSKs until `want` of them share a key tag (the birthday
/// effect: about 65536 · (want! / 65536)^(1/want) keys), in batches
/// spread over the available cores and merged in order.
fn find_collision(want: usize) -> Collision {
    const BATCH: u64 = 4096;
    let start = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); 1 << 16];
    let mut milestones = Vec::new();
    let mut best = 1;
    let mut base = 0u64;
    loop {
        let tags: Vec<u16> = std::thread::scope(|s| {
            let chunk = BATCH / threads;
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let from = base + t * chunk;
                    let to = if t + 1 == threads {
                        base + BATCH
                    } else {
                        from + chunk
                    };
                    s.spawn(move || (from..to).map(|i| candidate(i).tag()).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        for (i, tag) in (base..).zip(tags) {
            let bucket = &mut buckets[usize::from(tag)];
            bucket.push(i);
            if bucket.len() > best {
                best = bucket.len();
                milestones.push((best, i + 1));
                if best == want {
                    return Collision {
                        keys: bucket.iter().map(|i| candidate(*i)).collect(),
                        generated: i + 1,
                        milestones,
                        elapsed: start.elapsed(),
                    };
                }
            }
        }
        base += BATCH;
    }
}

/// The collision all tests share (found once per test binary).
fn collision() -> &'static Collision {
    static C: OnceLock<Collision> = OnceLock::new();
    C.get_or_init(|| {
        let c = find_collision(COLLIDING);
        eprintln!(
            "{COLLIDING} Ed25519 ZSKs with tag {} after {} keys in {:?}; \
             (k, keys) when a tag first held k keys: {:?}",
            c.keys[0].tag(),
            c.generated,
            c.elapsed,
            c.milestones
        );
        c
    })
}

fn ksk() -> SigningKey {
    SigningKey::from_secret(&origin(), Algorithm::Ed25519, true, &[0x4b; 32]).unwrap()
}

/// How the relay turns our server's answers into attack material.
#[derive(Clone, Default)]
struct Rewrite {
    /// DNSKEY RDATA in the order to serve them (keys not listed follow).
    order: Vec<Vec<u8>>,
    /// The key whose RRSIGs over data stay valid; every other RRSIG in
    /// the answer section, except over the DNSKEY RRset, is corrupted.
    /// `None`: all of them are.
    good: Option<Vec<u8>>,
    /// Corrupted copies of each data RRSIG put before the originals.
    padding: usize,
}

/// A signature that still parses but does not verify.
fn corrupt(rrsig: &Record) -> Record {
    let mut bytes = rrsig.data.to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let mut r = Record::from_rdata(
        rrsig.name.clone(),
        rrsig.ttl,
        RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with(bytes),
        },
    );
    r.dns_class = DNSClass::IN;
    r
}

fn covered(rrsig: &Record) -> Option<RecordType> {
    let bytes = rrsig.data.to_bytes().ok()?;
    Some(RecordType::from(u16::from_be_bytes([
        *bytes.first()?,
        *bytes.get(1)?,
    ])))
}

impl Rewrite {
    fn apply(&self, reply: &[u8]) -> Vec<u8> {
        let Ok(mut msg) = Message::from_vec(reply) else {
            return reply.to_vec();
        };
        let answers = std::mem::take(&mut msg.answers);
        let (sigs, mut data): (Vec<Record>, Vec<Record>) = answers
            .into_iter()
            .partition(|r| r.record_type() == RecordType::RRSIG);
        let rank = |r: &Record| {
            let rdata = r.data.to_bytes().unwrap_or_default();
            self.order
                .iter()
                .position(|o| *o == rdata)
                .unwrap_or(usize::MAX)
        };
        data.sort_by_key(|r| (r.record_type() == RecordType::DNSKEY).then(|| rank(r)));
        let mut out_sigs = Vec::new();
        let mut padding = Vec::new();
        for sig in sigs {
            let Some(t) = covered(&sig) else { continue };
            if t == RecordType::DNSKEY {
                out_sigs.push(sig);
                continue;
            }
            let rrset: Vec<Record> = data
                .iter()
                .filter(|r| r.record_type() == t && r.name == sig.name)
                .cloned()
                .collect();
            for _ in 0..self.padding {
                padding.push(corrupt(&sig));
            }
            let keep = self
                .good
                .as_ref()
                .is_some_and(|k| verify_rrsig(k, &sig, &rrset));
            out_sigs.push(if keep { sig } else { corrupt(&sig) });
        }
        msg.answers = data;
        msg.answers.extend(padding);
        msg.answers.extend(out_sigs);
        msg.to_vec().unwrap_or_else(|_| reply.to_vec())
    }
}

/// Largest UDP reply the relay sends: hickory 0.26.3 advertises an EDNS
/// payload of 1232 bytes. Larger rewritten replies go out truncated (TC),
/// and the resolver asks again over TCP.
const UDP_PAYLOAD: usize = 1232;

/// A relay in front of our server, on UDP and TCP at the same port, that
/// rewrites answers; stopped on drop.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `reply` with no records and the TC bit.
fn truncated(reply: &[u8]) -> Vec<u8> {
    let Ok(mut msg) = Message::from_vec(reply) else {
        return reply.to_vec();
    };
    msg.answers.clear();
    msg.authorities.clear();
    msg.additionals.clear();
    msg.metadata.truncation = true;
    msg.to_vec().unwrap_or_else(|_| reply.to_vec())
}

fn relay_udp(sock: UdpSocket, upstream: SocketAddr, rewrite: Arc<Rewrite>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 65_535];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        up.send_to(&buf[..n], upstream).unwrap();
        let mut reply = [0u8; 65_535];
        let Ok(m) = up.recv(&mut reply) else { continue };
        let mut out = rewrite.apply(&reply[..m]);
        if out.len() > UDP_PAYLOAD {
            out = truncated(&out);
        }
        let _ = sock.send_to(&out, client);
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_frame(s: &mut TcpStream, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    s.write_all(&len.to_be_bytes()).ok()?;
    s.write_all(msg).ok()
}

fn relay_tcp(
    listener: TcpListener,
    upstream: SocketAddr,
    rewrite: Arc<Rewrite>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut client, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let (rewrite, stop) = (rewrite.clone(), stop.clone());
        std::thread::spawn(move || {
            client.set_nonblocking(false).unwrap();
            client
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let Ok(mut up) = TcpStream::connect(upstream) else {
                return;
            };
            up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            while !stop.load(Ordering::SeqCst) {
                let Some(query) = read_frame(&mut client) else {
                    continue;
                };
                let reply = write_frame(&mut up, &query).and_then(|()| read_frame(&mut up));
                let Some(reply) = reply else { return };
                if write_frame(&mut client, &rewrite.apply(&reply)).is_none() {
                    return;
                }
            }
        });
    }
}

fn relay(upstream: SocketAddr, rewrite: Rewrite) -> Relay {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let listener = TcpListener::bind(addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rewrite = Arc::new(rewrite);
    let threads = vec![
        {
            let (rewrite, stop) = (rewrite.clone(), stop.clone());
            std::thread::spawn(move || relay_udp(sock, upstream, rewrite, stop))
        },
        {
            let (rewrite, stop) = (rewrite.clone(), stop.clone());
            std::thread::spawn(move || relay_tcp(listener, upstream, rewrite, stop))
        },
    ];
    Relay {
        addr,
        stop,
        threads,
    }
}

/// A resolver for `example.org` through `server`, with `anchors` as the
/// zone's trust anchors.
///
/// All the keys of the DNSKEY RRset are anchored, not the KSK alone: for
/// a stub zone (an island with no parent to ask) hickory 0.26.3 looks
/// for a DS RRset as soon as one DNSKEY is not an anchor
/// (`verify_dnskey_rrset`, hickory-net `src/dnssec/mod.rs:626`), asks the
/// zone's own server, cannot prove the delegation insecure and calls the
/// RRset bogus (`fetch_ds_records`, `DsRecordShouldExist`, `mod.rs:937`). In a delegated zone
/// the DS RRset proves the KSK and the KSK's RRSIG then makes every key
/// of the RRset secure, which is the state anchoring them all gives here.
fn resolver(server: SocketAddr, anchors: &[SigningKey]) -> Resolver {
    let text: String = anchors
        .iter()
        .map(|k| format!("{}\n", k.dnskey_text()))
        .collect();
    stub_resolver(server, parse_anchors(&text).unwrap())
}

/// Our primary serving `example.org` signed with `keys`.
fn signed_server(keys: Vec<SigningKey>) -> Running {
    let mut eng = engine(&names());
    eng.sign_zone(&origin(), Settings::new(keys), now())
        .unwrap();
    start(eng, ServerConfig::default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Secure,
    Bogus,
}

/// Asks for every `hN` name in turn through `relay`; each answer must
/// come within [`BUDGET`] and be `want`. Returns the slowest answer.
fn ask_all(relay: &Relay, anchors: &[SigningKey], want: Verdict, case: &str) -> Duration {
    let r = resolver(relay.addr, anchors);
    let rt = rt();
    let mut slowest = Duration::ZERO;
    for i in 0..QUERIES {
        let t = Instant::now();
        let a = rt.block_on(r.query(&format!("h{i}.example.org"), RecordType::A));
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert!(took < BUDGET, "{case}: h{i} took {took:?}: {a:?}");
        let got = match &a {
            Answer::Records { secure: true, .. } => Verdict::Secure,
            Answer::Bogus(_) => Verdict::Bogus,
            other => panic!("{case}: h{i}: {other:?}"),
        };
        assert_eq!(got, want, "{case}: h{i}: {a:?}");
    }
    eprintln!("{case}: {want:?} {QUERIES} times, slowest answer {slowest:?}");
    slowest
}

#[test]
fn colliding_key_tags_beyond_hickorys_limit_are_never_tried() {
    let c = collision();
    assert_eq!(c.keys.len(), COLLIDING);
    let tag = c.keys[0].tag();
    assert!(c.keys.iter().all(|k| k.tag() == tag));
    let ksk = ksk();
    assert_ne!(ksk.tag(), tag);

    // Control: two colliding ZSKs, within the limit. With the good key
    // second, both keys are tried for each signature and the answer
    // validates.
    {
        let keys = [vec![ksk.clone()], c.keys[..KEYS_TRIED_PER_TAG].to_vec()].concat();
        let server = signed_server(keys.clone());
        let order: Vec<Vec<u8>> = keys[1..].iter().map(SigningKey::dnskey_rdata).collect();
        let rewrite = Rewrite {
            good: order.last().cloned(),
            order,
            padding: 0,
        };
        let relay = relay(server.addr, rewrite);
        let case = format!("{KEYS_TRIED_PER_TAG} colliding ZSKs, the good one last");
        ask_all(&relay, &keys, Verdict::Secure, &case);
    }

    // All seven, the one good key moved through the positions of its
    // tag in the DNSKEY RRset: the same signature validates while the key
    // is among the first two of the tag, and is ignored from the third
    // on (the limit at work: a naive validator would find it).
    let keys = [vec![ksk.clone()], c.keys.clone()].concat();
    let server = signed_server(keys.clone());
    let good = c.keys[COLLIDING - 1].dnskey_rdata();
    let others: Vec<Vec<u8>> = c.keys[..COLLIDING - 1]
        .iter()
        .map(SigningKey::dnskey_rdata)
        .collect();
    let cases = [
        (Some(0), Verdict::Secure),
        (Some(1), Verdict::Secure),
        (Some(KEYS_TRIED_PER_TAG), Verdict::Bogus),
        (Some(COLLIDING - 1), Verdict::Bogus),
        // Every signature bad: the KeyTrap case proper.
        (None, Verdict::Bogus),
    ];
    for (at, want) in cases {
        let mut order = others.clone();
        order.insert(at.unwrap_or(0), good.clone());
        let rewrite = Rewrite {
            order,
            good: at.map(|_| good.clone()),
            padding: 0,
        };
        let relay = relay(server.addr, rewrite);
        let case = match at {
            Some(p) => format!("{COLLIDING} colliding ZSKs, the good one at {p}"),
            None => format!("{COLLIDING} colliding ZSKs, every signature bad"),
        };
        ask_all(&relay, &keys, want, &case);
    }
}

#[test]
fn rrsigs_beyond_hickorys_limit_are_never_tried() {
    let csk = SigningKey::from_secret(&origin(), Algorithm::Ed25519, true, &[0x42; 32]).unwrap();
    let server = signed_server(vec![csk.clone()]);
    let cases = [
        // The valid signature at index 8, the ninth RRSIG: still tried.
        (RRSIGS_TRIED - 1, Verdict::Secure),
        // At index 9: skipped.
        (RRSIGS_TRIED, Verdict::Bogus),
        // Far beyond (over TCP, the answer is about 20 kB): skipped, and
        // the bad RRSIGs cost no more than nine do.
        (MANY_RRSIGS, Verdict::Bogus),
    ];
    for (padding, want) in cases {
        let rewrite = Rewrite {
            order: Vec::new(),
            good: Some(csk.dnskey_rdata()),
            padding,
        };
        let relay = relay(server.addr, rewrite);
        let case = format!("{padding} bad RRSIGs before the good one");
        ask_all(&relay, std::slice::from_ref(&csk), want, &case);
    }
}
