//! Incremental signing against the whole-zone signer: random sequences
//! of RFC 2136 updates (adds and deletes of A, TXT and MX at existing and
//! new names, empty non-terminals appearing and disappearing, the last
//! record of a name deleted, names below a delegation, delegations added
//! and removed, a change reverted as after a failed journal write) leave
//! a signed zone whose NSEC3 or NSEC chain and whose set of RRSIGs (owner
//! and type covered) are exactly what signing the same data afresh gives,
//! and whose every signature verifies.

mod common;

use common::*;
use proptest::prelude::*;
use scop_dns::client::{self, Change};
use scop_dns::dnssec::{Algorithm, Denial, Settings, SigningKey, verify_rrsig};
use scop_dns::hickory_proto::op::{Message, ResponseCode};
use scop_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use scop_dns::{Engine, Transport, Zone};
use std::collections::{BTreeMap, BTreeSet};

const T0: u64 = 1_700_000_000;

/// Existing names, empty non-terminals (`c`, `b.c`, `wild`), new names
/// at several depths, names at and below the cut `sub`.
const NAMES: &[&str] = &[
    "@",
    "mail",
    "ns1",
    "www",
    "a.b.c",
    "b.c",
    "c",
    "d.c",
    "x",
    "y.x",
    "z.y.x",
    "deep.a.b.c",
    "*.wild",
    "q.wild",
    "sub",
    "ns.sub",
    "w.sub",
    "_dmarc",
    "s1._domainkey",
];

const EXTRA: &str = "*.wild TXT \"wild\"\na.b.c A 192.0.2.9\n";

fn key() -> SigningKey {
    SigningKey::from_secret(&origin(), Algorithm::EcdsaP256Sha256, true, &[7; 32]).unwrap()
}

fn settings(denial: Denial) -> Settings {
    let mut s = Settings::new(vec![key()]);
    s.denial = denial;
    s
}

/// One change: (kind, name, type, data) as indices.
type Op = (u8, usize, usize, usize);

fn record(name: &str, t: usize, d: usize) -> Record {
    let (rtype, data) = match t % 3 {
        0 => ("A", ["192.0.2.1", "192.0.2.2", "192.0.2.3"][d % 3]),
        1 => ("TXT", ["\"a\"", "\"b\"", "\"c\""][d % 3]),
        _ => ("MX", ["10 mail", "20 mx2", "30 mail"][d % 3]),
    };
    client::parse_record(&origin(), name, 300, rtype, data).unwrap()
}

fn change((kind, n, t, d): Op) -> Change {
    let name = NAMES[n % NAMES.len()];
    let owner = client::parse_record(&origin(), name, 300, "A", "192.0.2.1")
        .unwrap()
        .name;
    match kind % 10 {
        0..=3 => Change::Add(record(name, t, d)),
        4 => Change::Replace(record(name, t, d)),
        5 | 6 => Change::DeleteRecord(record(name, t, d)),
        7 => Change::DeleteRrset(owner, record(name, t, d).record_type()),
        8 => Change::DeleteName(owner),
        // A delegation appears (or the apex gains a name server).
        _ => Change::Add(
            client::parse_record(&origin(), name, 300, "NS", "ns1.example.org.").unwrap(),
        ),
    }
}

/// RDATA bytes, whether the record is opaque or decoded by hickory-proto.
fn raw(r: &Record) -> Vec<u8> {
    use scop_dns::hickory_proto::serialize::binary::BinEncodable;
    match &r.data {
        RData::Unknown { rdata, .. } => rdata.anything.clone(),
        other => other.to_bytes().unwrap(),
    }
}

fn covered(sig: &Record) -> RecordType {
    let d = raw(sig);
    RecordType::from(u16::from_be_bytes([d[0], d[1]]))
}

fn is_chain(t: RecordType) -> bool {
    matches!(t, RecordType::NSEC | RecordType::NSEC3)
}

/// The zone's records apart from the SOA (its serial differs after a
/// fresh signing) and the RRSIGs: (owner, type, TTL, RDATA).
fn records(zone: &Zone) -> BTreeSet<(Name, RecordType, u32, Vec<u8>)> {
    zone.records()
        .filter(|r| !matches!(r.record_type(), RecordType::SOA | RecordType::RRSIG))
        .map(|r| (r.name.clone(), r.record_type(), r.ttl, raw(r)))
        .collect()
}

/// (owner, type covered) of every RRSIG, with how many there are.
fn signed(zone: &Zone) -> BTreeMap<(Name, RecordType), usize> {
    let mut out = BTreeMap::new();
    for r in zone
        .records()
        .filter(|r| r.record_type() == RecordType::RRSIG)
    {
        *out.entry((r.name.clone(), covered(r))).or_default() += 1;
    }
    out
}

/// Every RRSIG verifies over its RRset with our key.
fn all_verify(zone: &Zone) -> Result<usize, TestCaseError> {
    let mut sets: BTreeMap<(Name, RecordType), Vec<Record>> = BTreeMap::new();
    for r in zone
        .records()
        .filter(|r| r.record_type() != RecordType::RRSIG)
    {
        sets.entry((r.name.clone(), r.record_type()))
            .or_default()
            .push(r.clone());
    }
    let dnskey = key().dnskey_rdata();
    let mut n = 0;
    for sig in zone
        .records()
        .filter(|r| r.record_type() == RecordType::RRSIG)
    {
        let set = sets
            .get(&(sig.name.clone(), covered(sig)))
            .cloned()
            .unwrap_or_default();
        prop_assert!(
            verify_rrsig(&dnskey, sig, &set),
            "RRSIG over {} {} verifies",
            sig.name,
            covered(sig)
        );
        n += 1;
    }
    Ok(n)
}

/// The zone as updates left it equals the same data signed afresh,
/// signatures aside.
fn matches_fresh(zone: &Zone, denial: Denial, step: usize) -> Result<(), TestCaseError> {
    let mut fresh = zone.clone();
    fresh.sign(settings(denial), T0).unwrap();
    let (ours, want) = (records(zone), records(&fresh));
    let chain = |s: &BTreeSet<(Name, RecordType, u32, Vec<u8>)>| -> Vec<_> {
        s.iter().filter(|r| is_chain(r.1)).cloned().collect()
    };
    prop_assert_eq!(
        chain(&ours),
        chain(&want),
        "{:?} chain after step {}",
        denial,
        step
    );
    prop_assert_eq!(ours, want, "{:?} records after step {}", denial, step);
    prop_assert_eq!(
        signed(zone),
        signed(&fresh),
        "{:?} (owner, type covered) of the RRSIGs after step {}",
        denial,
        step
    );
    let n = all_verify(zone)?;
    prop_assert!(n > 10);
    Ok(())
}

fn run(denial: Denial, steps: &[(Vec<Op>, bool)]) -> Result<(), TestCaseError> {
    let mut eng: Engine = engine(EXTRA);
    eng.sign_zone(&origin(), settings(denial), T0).unwrap();
    for (i, (ops, revert)) in steps.iter().enumerate() {
        let changes: Vec<Change> = ops.iter().copied().map(change).collect();
        let at = T0 + 60 * (i as u64 + 1);
        let (bytes, _) =
            client::signed_update(&origin(), i as u16, &changes, &admin_key(), at).unwrap();
        let out = eng.handle(&bytes, Transport::Tcp, at);
        let reply = Message::from_vec(&out.replies[0]).unwrap();
        prop_assert_eq!(reply.response_code, ResponseCode::NoError);
        if *revert && let Some((origin, diff)) = &out.journal {
            // As after a failed journal write.
            eng.revert(origin, diff).unwrap();
        }
        matches_fresh(eng.zone(&origin()).unwrap(), denial, i)?;
    }
    Ok(())
}

fn op() -> impl Strategy<Value = Op> {
    (0u8..10, 0..NAMES.len(), 0usize..3, 0usize..3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn incremental_signing_equals_signing_afresh(
        steps in prop::collection::vec(
            (prop::collection::vec(op(), 1..4), prop::bool::weighted(0.1)),
            1..12,
        ),
    ) {
        run(Denial::Nsec3, &steps)?;
        run(Denial::Nsec, &steps)?;
    }
}

/// The cases the property is about, spelled out: an empty non-terminal
/// appears under a new name and goes with it, the last record of a name
/// is deleted, a name below the cut is added.
#[test]
fn empty_non_terminals_and_last_records() {
    let steps: Vec<(Vec<Op>, bool)> = vec![
        (vec![(0, 10, 0, 0)], false),             // z.y.x A: ENTs y.x and x
        (vec![(0, 11, 1, 0)], false),             // deep.a.b.c TXT
        (vec![(7, 4, 0, 0)], false),              // a.b.c: its last record; an ENT now
        (vec![(8, 10, 0, 0)], false),             // z.y.x gone: y.x and x too
        (vec![(0, 16, 0, 0)], false),             // w.sub: occluded
        (vec![(0, 8, 2, 0), (0, 9, 0, 1)], true), // reverted
        (vec![(9, 8, 0, 0)], false),              // x becomes a cut
        (vec![(8, 11, 0, 0)], false),             // deep.a.b.c gone: a.b.c, b.c, c too
    ];
    for denial in [Denial::Nsec3, Denial::Nsec] {
        run(denial, &steps).unwrap();
    }
}
