//! The sans-IO core, driven in-process by our own client code: RFC 1035
//! answers, EDNS(0) and truncation, RFC 2136 prerequisites, RFC 8945
//! errors, policy, transfers, journal replay, and arbitrary input.

mod common;

use common::*;
use proptest::prelude::*;
use scop_dns::client::{self, Change};
use scop_dns::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use scop_dns::hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use scop_dns::tsig::{Chain, Key, error_code};
use scop_dns::{Engine, Transport};

const NOW: u64 = 1_800_000_000;

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn zone_name() -> Name {
    n("example.org.")
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(n(name), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask(engine: &mut Engine, bytes: &[u8], t: Transport) -> Message {
    let out = engine.handle(bytes, t, NOW);
    assert_eq!(out.replies.len(), 1);
    Message::from_vec(&out.replies[0]).unwrap()
}

fn rec(name: &str, ttl: u32, rtype: &str, data: &str) -> Record {
    client::parse_record(&zone_name(), name, ttl, rtype, data).unwrap()
}

/// Sends a signed update; returns the verdict (checked against our chain).
fn update(engine: &mut Engine, key: &Key, changes: &[Change], now: u64) -> client::Reply {
    let (bytes, mut chain) = client::signed_update(&zone_name(), 7, changes, key, now).unwrap();
    // The server's clock is NOW; `now` is the client's.
    let out = engine.handle(&bytes, Transport::Tcp, NOW);
    if let Some((origin, diff)) = &out.journal {
        assert_eq!(origin, &zone_name());
        assert!(scop_dns::serial_gt(diff.new_serial(), diff.old_serial()));
    }
    client::check_reply(&mut chain, 7, &out.replies[0], NOW).unwrap()
}

fn raw_update(engine: &mut Engine, key: &Key, msg: Message) -> ResponseCode {
    let mut bytes = msg.to_vec().unwrap();
    let mut chain = Chain::new(key.clone());
    chain.sign_request(&mut bytes, NOW);
    let out = engine.handle(&bytes, Transport::Udp, NOW);
    client::check_reply(&mut chain, msg.metadata.id, &out.replies[0], NOW)
        .unwrap()
        .rcode
}

#[test]
fn malformed_input_gets_formerr_or_silence() {
    let mut e = engine("");
    assert!(e.handle(&[1, 2, 3], Transport::Udp, NOW).replies.is_empty());
    // A response is never answered (no reflection loops).
    let mut resp = query("example.org.", RecordType::A, None);
    resp[2] |= 0x80;
    assert!(e.handle(&resp, Transport::Udp, NOW).replies.is_empty());
    // Broken question: FORMERR with our ID.
    let mut bad = query("example.org.", RecordType::A, None);
    bad.truncate(15);
    let out = e.handle(&bad, Transport::Udp, NOW);
    assert_eq!(&out.replies[0][..2], &[0x42, 0x42]);
    assert_eq!(out.replies[0][3] & 0x0F, 1);
    // A compression pointer loop in the question.
    let mut lp = query("example.org.", RecordType::A, None);
    lp.truncate(12);
    lp.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    let out = e.handle(&lp, Transport::Udp, NOW);
    assert_eq!(out.replies[0][3] & 0x0F, 1);
    // Two questions.
    let mut m = Message::new(1, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(n("example.org."), RecordType::A));
    m.add_query(Query::query(n("example.org."), RecordType::MX));
    let r = ask(&mut e, &m.to_vec().unwrap(), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn answers_refusals_and_opcodes() {
    let mut e = engine("");
    let r = ask(
        &mut e,
        &query("www.example.org.", RecordType::A, None),
        Transport::Udp,
    );
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 2, "CNAME then A");
    let r = ask(
        &mut e,
        &query("example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = ask(
        &mut e,
        &query("nope.example.org.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = ask(
        &mut e,
        &query("x.sub.example.org.", RecordType::A, None),
        Transport::Udp,
    );
    assert!(!r.metadata.authoritative, "referral");
    assert_eq!(r.authorities[0].record_type(), RecordType::NS);
    assert_eq!(r.additionals.len(), 1, "glue");
    let mut m = Message::new(9, MessageType::Query, OpCode::Status);
    m.add_query(Query::query(n("example.org."), RecordType::A));
    let r = ask(&mut e, &m.to_vec().unwrap(), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // CHAOS class: not ours.
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    let mut q = Query::query(n("version.bind."), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    let r = ask(&mut e, &m.to_vec().unwrap(), Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // AXFR over UDP is a FORMERR even with a key.
    let mut bytes = query("example.org.", RecordType::AXFR, None);
    Chain::new(xfr_key()).sign_request(&mut bytes, NOW);
    let r = ask(&mut e, &bytes, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn edns_payload_and_truncation() {
    let mut extra = String::new();
    for i in 0..40 {
        extra.push_str(&format!("big TXT \"{i:03} {}\"\n", "x".repeat(60)));
    }
    let mut e = engine(&extra);
    let r = ask(
        &mut e,
        &query("big.example.org.", RecordType::TXT, None),
        Transport::Udp,
    );
    assert!(r.metadata.truncation, "over 512 bytes without EDNS");
    assert!(r.answers.is_empty());
    let r = ask(
        &mut e,
        &query("big.example.org.", RecordType::TXT, Some(4096)),
        Transport::Udp,
    );
    assert!(r.metadata.truncation, "over our 1232-byte payload");
    assert_eq!(r.edns.as_ref().unwrap().max_payload(), 1232);
    let r = ask(
        &mut e,
        &query("big.example.org.", RecordType::TXT, Some(4096)),
        Transport::Tcp,
    );
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 40);
    // Small answers fit; the OPT record comes back.
    let r = ask(
        &mut e,
        &query("example.org.", RecordType::MX, Some(1232)),
        Transport::Udp,
    );
    assert!(!r.metadata.truncation);
    assert!(r.edns.is_some());
    // EDNS version 1: BADVERS.
    let mut m = Message::from_vec(&query("example.org.", RecordType::MX, Some(1232))).unwrap();
    m.edns.as_mut().unwrap().set_version(1);
    let out = e.handle(&m.to_vec().unwrap(), Transport::Udp, NOW);
    let r = Message::from_vec(&out.replies[0]).unwrap();
    // BADVERS and BADSIG share the value 16 (RFC 6891, RFC 8945).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(r.edns.as_ref().unwrap().rcode_high(), 1);
    // ANY: one RRset only (RFC 8482).
    let r = ask(
        &mut e,
        &query("example.org.", RecordType::ANY, Some(1232)),
        Transport::Udp,
    );
    let types: std::collections::BTreeSet<_> = r.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1);
}

#[test]
fn updates_need_a_valid_tsig() {
    let mut e = engine("");
    let add = [Change::Add(rec("s1._domainkey", 300, "TXT", "\"k\""))];
    // Unsigned: REFUSED.
    let bytes = client::update_message(&zone_name(), 1, &add).unwrap();
    let r = ask(&mut e, &bytes, Transport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // Wrong secret: NOTAUTH + BADSIG, unsigned reply.
    let wrong = Key::new(
        "dkim-signer.",
        scop_dns::tsig::Algorithm::HmacSha256,
        vec![1; 32],
    )
    .unwrap();
    let v = update(&mut e, &wrong, &add, NOW);
    assert_eq!(
        (v.rcode, v.tsig_error),
        (ResponseCode::NotAuth, error_code::BADSIG)
    );
    // Unknown key: BADKEY.
    let stranger = Key::new(
        "stranger.",
        scop_dns::tsig::Algorithm::HmacSha256,
        vec![1; 32],
    )
    .unwrap();
    let v = update(&mut e, &stranger, &add, NOW);
    assert_eq!(
        (v.rcode, v.tsig_error),
        (ResponseCode::NotAuth, error_code::BADKEY)
    );
    // Replayed outside the window: BADTIME, and that reply *is* signed
    // (check_reply verified its MAC).
    let v = update(&mut e, &dkim_key(), &add, NOW - 3600);
    assert_eq!(
        (v.rcode, v.tsig_error),
        (ResponseCode::NotAuth, error_code::BADTIME)
    );
    assert_eq!(
        e.zone(&zone_name()).unwrap().serial(),
        2024010101,
        "nothing applied"
    );
    // The good key: applied, serial bumped, signed NOERROR.
    let v = update(&mut e, &dkim_key(), &add, NOW);
    assert_eq!((v.rcode, v.tsig_error), (ResponseCode::NoError, 0));
    assert_eq!(e.zone(&zone_name()).unwrap().serial(), 2024010102);
}

#[test]
fn dkim_key_cannot_touch_apex_mx_and_zone_is_unchanged() {
    let mut e = engine("");
    let before: Vec<Record> = e.zone(&zone_name()).unwrap().records().cloned().collect();
    let evil = [Change::Replace(rec("@", 300, "MX", "10 evil.example.net."))];
    let v = update(&mut e, &dkim_key(), &evil, NOW);
    assert_eq!(v.rcode, ResponseCode::Refused);
    // A mixed update (allowed TXT + forbidden A) is refused as a whole.
    let mixed = [
        Change::Add(rec("s1._domainkey", 300, "TXT", "\"ok\"")),
        Change::Add(rec("s1._domainkey", 300, "A", "192.0.2.1")),
    ];
    assert_eq!(
        update(&mut e, &dkim_key(), &mixed, NOW).rcode,
        ResponseCode::Refused
    );
    let after: Vec<Record> = e.zone(&zone_name()).unwrap().records().cloned().collect();
    assert_eq!(before, after);
    // The admin key may.
    assert_eq!(
        update(&mut e, &admin_key(), &evil, NOW).rcode,
        ResponseCode::NoError
    );
    let mx = e
        .zone(&zone_name())
        .unwrap()
        .rrset(&zone_name(), RecordType::MX)
        .unwrap();
    assert_eq!(mx.len(), 1);
}

fn update_msg(id: u16, prereqs: Vec<Record>, updates: Vec<Record>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(zone_name(), RecordType::SOA));
    for p in prereqs {
        m.add_answer(p);
    }
    for u in updates {
        m.add_authority(u);
    }
    m
}

fn meta(name: &str, class: DNSClass, rtype: RecordType) -> Record {
    let mut r = Record::update0(n(name), 0, rtype);
    r.dns_class = class;
    r
}

#[test]
fn every_prerequisite_kind() {
    let mut e = engine("");
    let add = || vec![rec("p._domainkey", 60, "TXT", "\"p\"")];
    let k = admin_key();
    let cases: Vec<(Record, ResponseCode)> = vec![
        // 2.4.4 name is in use
        (
            meta("mail.example.org.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NoError,
        ),
        (
            meta("nope.example.org.", DNSClass::ANY, RecordType::ANY),
            ResponseCode::NXDomain,
        ),
        // 2.4.1 RRset exists (value independent)
        (
            meta("mail.example.org.", DNSClass::ANY, RecordType::A),
            ResponseCode::NoError,
        ),
        (
            meta("mail.example.org.", DNSClass::ANY, RecordType::TXT),
            ResponseCode::NXRRSet,
        ),
        // 2.4.5 name is not in use
        (
            meta("free.example.org.", DNSClass::NONE, RecordType::ANY),
            ResponseCode::NoError,
        ),
        (
            meta("mail.example.org.", DNSClass::NONE, RecordType::ANY),
            ResponseCode::YXDomain,
        ),
        // 2.4.3 RRset does not exist
        (
            meta("mail.example.org.", DNSClass::NONE, RecordType::TXT),
            ResponseCode::NoError,
        ),
        (
            meta("mail.example.org.", DNSClass::NONE, RecordType::A),
            ResponseCode::YXRRSet,
        ),
        // Outside the zone
        (
            meta("mail.example.net.", DNSClass::ANY, RecordType::A),
            ResponseCode::NotZone,
        ),
    ];
    for (i, (pre, want)) in cases.into_iter().enumerate() {
        let serial = e.zone(&zone_name()).unwrap().serial();
        let got = raw_update(
            &mut e,
            &k,
            update_msg(100 + i as u16, vec![pre.clone()], add()),
        );
        assert_eq!(got, want, "prerequisite {pre:?}");
        let now = e.zone(&zone_name()).unwrap().serial();
        if want != ResponseCode::NoError {
            assert_eq!(serial, now, "failed prerequisite changes nothing");
        }
    }
    // 2.4.2 RRset exists (value dependent): exact match of the whole set.
    let mut a = rec("mail", 0, "A", "192.0.2.2");
    let got = raw_update(&mut e, &k, update_msg(200, vec![a.clone()], add()));
    assert_eq!(got, ResponseCode::NoError);
    a = rec("mail", 0, "A", "192.0.2.3");
    let got = raw_update(&mut e, &k, update_msg(201, vec![a], add()));
    assert_eq!(got, ResponseCode::NXRRSet);
    // A prerequisite with a TTL: FORMERR.
    let mut bad = meta("mail.example.org.", DNSClass::ANY, RecordType::A);
    bad.ttl = 5;
    assert_eq!(
        raw_update(&mut e, &k, update_msg(202, vec![bad], add())),
        ResponseCode::FormErr
    );
    // Update outside the zone: NOTZONE.
    let outside = client::parse_record(&n("example.net."), "x", 60, "A", "192.0.2.1").unwrap();
    assert_eq!(
        raw_update(&mut e, &k, update_msg(203, vec![], vec![outside])),
        ResponseCode::NotZone
    );
    // Zone we do not serve: NOTAUTH.
    let (bytes, mut chain) =
        client::signed_update(&n("example.net."), 5, &[], &admin_key(), NOW).unwrap();
    let out = e.handle(&bytes, Transport::Udp, NOW);
    let v = client::check_reply(&mut chain, 5, &out.replies[0], NOW).unwrap();
    assert_eq!(v.rcode, ResponseCode::NotAuth);
}

#[test]
fn apex_soa_and_ns_survive_deletes_and_cname_conflicts_are_ignored() {
    let mut e = engine("");
    let k = admin_key();
    let v = update(&mut e, &k, &[Change::DeleteName(zone_name())], NOW);
    assert_eq!(v.rcode, ResponseCode::NoError);
    let z = e.zone(&zone_name()).unwrap();
    assert!(z.rrset(&zone_name(), RecordType::SOA).is_some());
    assert!(z.rrset(&zone_name(), RecordType::NS).is_some());
    assert!(z.rrset(&zone_name(), RecordType::MX).is_none());
    // Adding an A where a CNAME lives is ignored (RFC 2136 3.4.2.2).
    update(
        &mut e,
        &k,
        &[Change::Add(rec("www", 60, "A", "192.0.2.7"))],
        NOW,
    );
    assert!(
        e.zone(&zone_name())
            .unwrap()
            .rrset(&n("www.example.org."), RecordType::A)
            .is_none()
    );
    // An update that changes nothing keeps the serial.
    let serial = e.zone(&zone_name()).unwrap().serial();
    update(
        &mut e,
        &k,
        &[Change::DeleteRrset(n("none.example.org."), RecordType::TXT)],
        NOW,
    );
    assert_eq!(e.zone(&zone_name()).unwrap().serial(), serial);
    // An explicit greater SOA serial is taken.
    let soa = rec(
        "@",
        3600,
        "SOA",
        "ns1 hostmaster 2030000000 7200 3600 1209600 300",
    );
    update(&mut e, &k, &[Change::Add(soa)], NOW);
    assert_eq!(e.zone(&zone_name()).unwrap().serial(), 2030000000);
}

#[test]
fn axfr_messages_each_verify_in_the_mac_chain() {
    let mut extra = String::new();
    for i in 0..2000 {
        extra.push_str(&format!("h{i} TXT \"{}\"\n", "y".repeat(50)));
    }
    let mut e = engine(&extra);
    let total = e.zone(&zone_name()).unwrap().len();
    let mut bytes = query("example.org.", RecordType::AXFR, None);
    let mut chain = Chain::new(xfr_key());
    chain.sign_request(&mut bytes, NOW);
    let out = e.handle(&bytes, Transport::Tcp, NOW);
    assert!(out.replies.len() > 4);
    let mut records = 0;
    for (i, reply) in out.replies.iter().enumerate() {
        assert!(reply.len() <= scop_dns::MAX_MESSAGE_BYTES);
        assert_eq!(chain.verify_response(reply, NOW).unwrap(), 0, "message {i}");
        records += Message::from_vec(reply).unwrap().answers.len();
    }
    assert_eq!(records, total + 1);
    // A reordered stream breaks the chain.
    let mut chain = Chain::new(xfr_key());
    let mut bytes = query("example.org.", RecordType::AXFR, None);
    chain.sign_request(&mut bytes, NOW);
    let out = e.handle(&bytes, Transport::Tcp, NOW);
    assert!(chain.verify_response(&out.replies[1], NOW).is_err());
    // The DKIM key may not transfer.
    let mut bytes = query("example.org.", RecordType::AXFR, None);
    Chain::new(dkim_key()).sign_request(&mut bytes, NOW);
    let r = ask(&mut e, &bytes, Transport::Tcp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn ixfr_falls_back_to_full_zone_when_history_is_missing() {
    let mut e = engine("");
    update(
        &mut e,
        &admin_key(),
        &[Change::Add(rec("a", 60, "A", "192.0.2.8"))],
        NOW,
    );
    let mut m = Message::new(3, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(zone_name(), RecordType::IXFR));
    let mut soa = e.zone(&zone_name()).unwrap().soa().clone();
    if let RData::SOA(s) = &mut soa.data {
        s.serial = 1999; // unknown to our history
    }
    m.add_authority(soa);
    let mut bytes = m.to_vec().unwrap();
    let mut chain = Chain::new(xfr_key());
    chain.sign_request(&mut bytes, NOW);
    let out = e.handle(&bytes, Transport::Tcp, NOW);
    let mut n = 0;
    for r in &out.replies {
        chain.verify_response(r, NOW).unwrap();
        n += Message::from_vec(r).unwrap().answers.len();
    }
    assert_eq!(
        n,
        e.zone(&zone_name()).unwrap().len() + 1,
        "AXFR-style answer"
    );
}

#[test]
fn journal_entries_replay_to_the_same_zone() {
    let mut e = engine("");
    let mut entries = Vec::new();
    for (i, c) in [
        Change::Add(rec("s1._domainkey", 300, "TXT", "\"one\"")),
        Change::Replace(rec("s1._domainkey", 600, "TXT", "\"two\"")),
        Change::Add(rec("s2._domainkey", 300, "TXT", "\"three\"")),
        Change::DeleteRecord(rec("s2._domainkey", 0, "TXT", "\"three\"")),
    ]
    .into_iter()
    .enumerate()
    {
        let (bytes, _) =
            client::signed_update(&zone_name(), i as u16, &[c], &dkim_key(), NOW).unwrap();
        let out = e.handle(&bytes, Transport::Tcp, NOW);
        let (_, diff) = out.journal.expect("a change");
        let encoded = scop_dns::journal::encode(&diff).unwrap();
        entries.extend(encoded);
    }
    let decoded = scop_dns::journal::decode(&entries).unwrap();
    let mut fresh = engine("");
    assert_eq!(fresh.replay(&zone_name(), &decoded.entries).unwrap(), 4);
    let a: Vec<Record> = e.zone(&zone_name()).unwrap().records().cloned().collect();
    let b: Vec<Record> = fresh
        .zone(&zone_name())
        .unwrap()
        .records()
        .cloned()
        .collect();
    assert_eq!(a, b);
    // Replaying twice is harmless (entries at or below the serial are skipped).
    assert!(fresh.replay(&zone_name(), &decoded.entries[..1]).is_ok());
}

#[test]
fn notify_message_names_the_zone() {
    let e = engine("");
    let bytes = e.notify_message(&zone_name(), 77).unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert!(m.metadata.authoritative);
    assert_eq!(m.queries[0].query_type, RecordType::SOA);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut e = engine("");
        for t in [Transport::Udp, Transport::Tcp] {
            let out = e.handle(&bytes, t, NOW);
            for r in out.replies {
                prop_assert!(r.len() <= scop_dns::MAX_MESSAGE_BYTES);
            }
        }
    }

    #[test]
    fn mutated_signed_updates_never_apply(pos in 0usize..400, bit in 0u8..8) {
        let mut e = engine("");
        let add = [Change::Add(rec("s1._domainkey", 300, "TXT", "\"k\""))];
        let (mut bytes, _) = client::signed_update(&zone_name(), 1, &add, &dkim_key(), NOW).unwrap();
        let pos = pos % bytes.len();
        // Only the ID may change without invalidating the MAC (TSIG
        // restores the original ID).
        prop_assume!(pos >= 2);
        // Names compare case-insensitively: a case flip of a letter in the
        // key name is the same key (the MAC covers the lower-case form).
        prop_assume!(!(bit == 5 && bytes[pos].is_ascii_alphabetic()));
        bytes[pos] ^= 1 << bit;
        let out = e.handle(&bytes, Transport::Udp, NOW);
        prop_assert!(out.journal.is_none(), "a flipped bit at {} must not be accepted", pos);
        prop_assert_eq!(e.zone(&zone_name()).unwrap().serial(), 2024010101);
    }
}
