//! Online DNSSEC against real validators: BIND's `delv` with our key as
//! its trust anchor (positive answers, NXDOMAIN, NODATA, wildcards; NSEC3
//! and NSEC; ECDSA P-256 and Ed25519), re-signing after an nsupdate,
//! `ldns-verify-zone` over the zone as `dig AXFR` transfers it, BIND
//! `named` as a secondary of a signed zone over 64 KiB, and Unbound as a
//! validating resolver in front of us. Plus the sans-IO engine checks:
//! every signature verifies, updates and refreshes re-sign only what they
//! must. A missing peer fails the test.

mod common;

use common::*;
use scop_dns::dnssec::{Algorithm, Denial, Settings, SigningKey, verify_rrsig};
use scop_dns::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use scop_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use scop_dns::server::Config;
use scop_dns::{Engine, Transport};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Names for the negative and wildcard cases.
const EXTRA: &str = "*.wild TXT \"wild\"\na.b.c A 192.0.2.9\n";

fn key(alg: Algorithm, seed: u8) -> SigningKey {
    SigningKey::from_secret(&origin(), alg, true, &[seed; 32]).unwrap()
}

fn signed_engine(extra: &str, alg: Algorithm, denial: Denial, at: u64) -> (Engine, SigningKey) {
    let mut eng = engine(extra);
    let k = key(alg, 0x42);
    let mut settings = Settings::new(vec![k.clone()]);
    settings.denial = denial;
    eng.sign_zone(&origin(), settings, at).unwrap();
    (eng, k)
}

fn anchor_file(dir: &std::path::Path, key: &SigningKey) -> std::path::PathBuf {
    let dnskey = key.dnskey_text();
    let fields: Vec<&str> = dnskey.split_whitespace().collect();
    let text = format!(
        "trust-anchors {{\n  example.org. static-key {} {} {} \"{}\";\n}};\n",
        fields[3], fields[4], fields[5], fields[6]
    );
    let path = dir.join("anchor.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn delv(port: u16, anchor: &std::path::Path, name: &str, rtype: &str) -> Output {
    let mut cmd = peer("usr/bin/delv");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "-a"])
        .arg(anchor)
        .args(["+root=example.org", "+tcp", name, rtype]);
    run(cmd, "")
}

fn assert_validated(out: &Output, what: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("fully validated"), "{what}: {all}");
    assert!(!all.contains("unsigned answer"), "{what}: {all}");
}

/// The delv cases of one algorithm and denial mode.
fn delv_cases(alg: Algorithm, denial: Denial) {
    let (eng, k) = signed_engine(EXTRA, alg, denial, now());
    let server = start(eng, Config::default());
    let dir = scratch("delv");
    let anchor = anchor_file(&dir, &k);
    let p = server.port();
    let label = format!("{alg:?}/{denial:?}");

    let out = delv(p, &anchor, "mail.example.org", "A");
    assert_validated(&out, &format!("{label} positive"));
    assert!(out.stdout.contains("192.0.2.2"), "{}", out.stdout);
    let out = delv(p, &anchor, "example.org", "MX");
    assert_validated(&out, &format!("{label} apex MX"));
    let out = delv(p, &anchor, "www.example.org", "A");
    assert_validated(&out, &format!("{label} CNAME"));

    let out = delv(p, &anchor, "nope.example.org", "A");
    assert_validated(&out, &format!("{label} NXDOMAIN"));
    assert!(
        out.stdout.contains("NXDOMAIN")
            || out.stderr.contains("NXDOMAIN")
            || out.stdout.contains("nxdomain"),
        "{label}: {}{}",
        out.stdout,
        out.stderr
    );
    let out = delv(p, &anchor, "mail.example.org", "TXT");
    assert_validated(&out, &format!("{label} NODATA"));
    let out = delv(p, &anchor, "b.c.example.org", "A");
    assert_validated(&out, &format!("{label} NODATA at an empty non-terminal"));
    let out = delv(p, &anchor, "x.wild.example.org", "TXT");
    assert_validated(&out, &format!("{label} wildcard"));
    assert!(out.stdout.contains("\"wild\""), "{}", out.stdout);
    let out = delv(p, &anchor, "x.wild.example.org", "A");
    assert_validated(&out, &format!("{label} wildcard NODATA"));
    let out = delv(p, &anchor, "sub.example.org", "DS");
    assert_validated(&out, &format!("{label} no DS at a delegation"));
}

#[test]
fn delv_validates_ecdsa_nsec3() {
    delv_cases(Algorithm::EcdsaP256Sha256, Denial::Nsec3);
}

#[test]
fn delv_validates_ecdsa_nsec() {
    delv_cases(Algorithm::EcdsaP256Sha256, Denial::Nsec);
}

#[test]
fn delv_validates_ed25519_nsec3() {
    delv_cases(Algorithm::Ed25519, Denial::Nsec3);
}

#[test]
fn delv_validates_ed25519_nsec() {
    delv_cases(Algorithm::Ed25519, Denial::Nsec);
}

fn nsupdate(port: u16, key: &str, body: &str) -> Output {
    let mut cmd = peer("usr/bin/nsupdate");
    cmd.args(["-y", key, "-t", "5"]);
    let script = format!("server 127.0.0.1 {port}\nzone example.org.\n{body}send\n");
    run(cmd, &script)
}

#[test]
fn nsupdate_domainkey_is_signed_and_the_chain_follows() {
    for denial in [Denial::Nsec3, Denial::Nsec] {
        let (eng, k) = signed_engine(EXTRA, Algorithm::EcdsaP256Sha256, denial, now());
        let server = start(eng, Config::default());
        let dir = scratch("update");
        let anchor = anchor_file(&dir, &k);
        let p = server.port();
        let name = "s1._domainkey.example.org";
        let out = nsupdate(
            p,
            &dkim_key().to_spec(),
            &format!("update add {name}. 300 TXT \"v=DKIM1; k=ed25519; p=abc\"\n"),
        );
        assert!(out.ok, "{}{}", out.stdout, out.stderr);
        let out = delv(p, &anchor, name, "TXT");
        assert_validated(&out, &format!("{denial:?}: the new record"));
        assert!(out.stdout.contains("p=abc"), "{}", out.stdout);
        // Neighbours of the new name, the new empty non-terminal, the apex.
        for (qname, qtype) in [
            ("s0._domainkey.example.org", "TXT"),
            ("s2._domainkey.example.org", "TXT"),
            ("_domainkey.example.org", "TXT"),
            ("example.org", "SOA"),
            (name, "A"),
        ] {
            let out = delv(p, &anchor, qname, qtype);
            assert_validated(
                &out,
                &format!("{denial:?}: {qname} {qtype} after the update"),
            );
        }
        // And removed again: NXDOMAIN, proven.
        let out = nsupdate(
            p,
            &dkim_key().to_spec(),
            &format!("update delete {name}. TXT\n"),
        );
        assert!(out.ok, "{}{}", out.stdout, out.stderr);
        let out = delv(p, &anchor, name, "TXT");
        assert_validated(&out, &format!("{denial:?}: deleted record"));
    }
}

/// `dig AXFR` output, written to a file, read by `ldns-verify-zone`.
fn verify_with_ldns(port: u16, dir: &std::path::Path) -> Output {
    let out = dig(port, &["-y", &xfr_key().to_spec(), "AXFR", "example.org."]);
    assert!(out.ok, "{}", out.stderr);
    let zone: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.contains("\tTSIG\t"))
        .map(|l| format!("{l}\n"))
        .collect();
    // dig ends the transfer with the SOA again: drop the repeated one.
    let mut lines: Vec<&str> = zone.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.pop();
    let path = dir.join("axfr.zone");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let mut cmd = peer("usr/bin/ldns-verify-zone");
    cmd.arg(&path);
    run(cmd, "")
}

#[test]
fn ldns_verify_zone_accepts_the_transferred_zone() {
    for (alg, denial) in [
        (Algorithm::EcdsaP256Sha256, Denial::Nsec3),
        (Algorithm::Ed25519, Denial::Nsec),
    ] {
        let (eng, _) = signed_engine(EXTRA, alg, denial, now());
        let server = start(eng, Config::default());
        let dir = scratch("ldns");
        let out = verify_with_ldns(server.port(), &dir);
        assert!(
            out.ok && out.stdout.contains("Zone is verified and complete"),
            "{alg:?}/{denial:?}: {}{}",
            out.stdout,
            out.stderr
        );
        // After an update too.
        let out = nsupdate(
            server.port(),
            &dkim_key().to_spec(),
            "update add s1._domainkey.example.org. 300 TXT \"v=DKIM1; p=x\"\n",
        );
        assert!(out.ok, "{}", out.stderr);
        let out = verify_with_ldns(server.port(), &dir);
        assert!(
            out.ok && out.stdout.contains("Zone is verified and complete"),
            "{alg:?}/{denial:?} after update: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

// ---- sans-IO engine checks ----

/// RDATA bytes, whether the record is opaque or hickory-proto decoded it
/// with its own DNSSEC types (its DNSSEC feature is on when the resolver
/// is built).
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

fn expiration(sig: &Record) -> u32 {
    let d = raw(sig);
    u32::from_be_bytes([d[8], d[9], d[10], d[11]])
}

/// Every RRSIG of the zone verifies over its RRset, and every RRset that
/// must be signed is. Returns the number of signatures checked.
fn check_all_signatures(eng: &Engine, key: &SigningKey) -> usize {
    let zone = eng.zone(&origin()).unwrap();
    let mut sets: BTreeMap<(Name, RecordType), Vec<Record>> = BTreeMap::new();
    let mut sigs: BTreeMap<(Name, RecordType), Vec<Record>> = BTreeMap::new();
    for r in zone.records() {
        if r.record_type() == RecordType::RRSIG {
            sigs.entry((r.name.clone(), covered(r)))
                .or_default()
                .push(r.clone());
        } else {
            let set = sets.entry((r.name.clone(), r.record_type())).or_default();
            if !set.contains(r) {
                set.push(r.clone());
            }
        }
    }
    let mut checked = 0;
    for ((name, rtype), list) in &sigs {
        let set = &sets[&(name.clone(), *rtype)];
        for sig in list {
            assert!(
                verify_rrsig(&key.dnskey_rdata(), sig, set),
                "RRSIG over {name} {rtype} verifies"
            );
            checked += 1;
        }
    }
    let glue = Name::from_ascii("ns.sub.example.org.").unwrap();
    let cut = Name::from_ascii("sub.example.org.").unwrap();
    for (name, rtype) in sets.keys() {
        let unsigned = *name == glue || (*name == cut && *rtype == RecordType::NS);
        assert_eq!(
            sigs.contains_key(&(name.clone(), *rtype)),
            !unsigned,
            "{name} {rtype}: signed exactly when authoritative"
        );
    }
    checked
}

#[test]
fn every_signature_verifies_for_both_algorithms_and_denials() {
    for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
        for denial in [Denial::Nsec3, Denial::Nsec] {
            let (eng, k) = signed_engine(EXTRA, alg, denial, 1_700_000_000);
            let n = check_all_signatures(&eng, &k);
            assert!(n > 15, "{alg:?}/{denial:?}: {n} signatures");
            let zone = eng.zone(&origin()).unwrap();
            let chain = zone
                .records()
                .filter(|r| {
                    r.record_type()
                        == match denial {
                            Denial::Nsec3 => RecordType::NSEC3,
                            Denial::Nsec => RecordType::NSEC,
                        }
                })
                .count();
            // NSEC: the apex, ns1, mail, www, the cut sub, *.wild, a.b.c
            // (not the glue ns.sub); NSEC3: those plus the empty
            // non-terminals wild, c and b.c.
            let expected = match denial {
                Denial::Nsec3 => 10,
                Denial::Nsec => 7,
            };
            assert_eq!(chain, expected, "{alg:?}/{denial:?}");
        }
    }
}

fn query(eng: &mut Engine, name: &str, rtype: RecordType, dnssec_ok: bool) -> Message {
    let mut msg = Message::new(7, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec_ok);
    msg.edns = Some(edns);
    let out = eng.handle(&msg.to_vec().unwrap(), Transport::Tcp, 1_700_000_100);
    Message::from_vec(&out.replies[0]).unwrap()
}

fn count(records: &[Record], rtype: RecordType) -> usize {
    records.iter().filter(|r| r.record_type() == rtype).count()
}

#[test]
fn dnssec_records_only_with_the_do_bit() {
    let (mut eng, _) = signed_engine(
        EXTRA,
        Algorithm::EcdsaP256Sha256,
        Denial::Nsec3,
        1_700_000_000,
    );
    let plain = query(&mut eng, "mail.example.org.", RecordType::A, false);
    assert_eq!(count(&plain.answers, RecordType::RRSIG), 0);
    assert!(!plain.edns.as_ref().unwrap().flags().dnssec_ok);
    let signed = query(&mut eng, "mail.example.org.", RecordType::A, true);
    assert_eq!(count(&signed.answers, RecordType::RRSIG), 1);
    assert!(signed.edns.as_ref().unwrap().flags().dnssec_ok, "DO copied");

    let plain = query(&mut eng, "nope.example.org.", RecordType::A, false);
    assert_eq!(plain.authorities.len(), 1, "SOA only");
    let signed = query(&mut eng, "nope.example.org.", RecordType::A, true);
    // SOA + RRSIG, and up to three NSEC3 (closest encloser, next closer,
    // wildcard), each with its RRSIG.
    assert_eq!(count(&signed.authorities, RecordType::SOA), 1);
    let nsec3 = count(&signed.authorities, RecordType::NSEC3);
    assert!((2..=3).contains(&nsec3), "{nsec3}");
    assert_eq!(
        count(&signed.authorities, RecordType::RRSIG),
        nsec3 + 1,
        "every RRset signed"
    );
    // A referral: the NS RRset unsigned, the NSEC3 proving there is no
    // DS, signed (RFC 4035 3.1.4).
    let referral = query(&mut eng, "host.sub.example.org.", RecordType::A, true);
    assert!(!referral.metadata.authoritative);
    assert_eq!(count(&referral.authorities, RecordType::NS), 1);
    assert_eq!(count(&referral.authorities, RecordType::NSEC3), 1);
    assert_eq!(count(&referral.authorities, RecordType::RRSIG), 1);
    assert!(
        referral
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::RRSIG)
            .all(|r| covered(r) == RecordType::NSEC3)
    );
    // DNSKEY is an ordinary RRset: answered without DO too.
    let keys = query(&mut eng, "example.org.", RecordType::DNSKEY, false);
    assert_eq!(count(&keys.answers, RecordType::DNSKEY), 1);
    assert_eq!(count(&keys.answers, RecordType::RRSIG), 0);
}

fn update_msg(add: &str, at: u64) -> Vec<u8> {
    use scop_dns::client::{Change, parse_record, signed_update};
    let zone = origin();
    let rec = parse_record(&zone, add, 300, "TXT", "\"v=DKIM1; p=x\"").unwrap();
    let (bytes, _) = signed_update(&zone, 9, &[Change::Add(rec)], &dkim_key(), at).unwrap();
    bytes
}

#[test]
fn signing_moves_the_serial_and_survives_a_journal_replay() {
    let mut eng = engine(EXTRA);
    let before = eng.zone(&origin()).unwrap().serial();
    let settings = Settings::new(vec![key(Algorithm::EcdsaP256Sha256, 1)]);
    let diff = eng
        .sign_zone(&origin(), settings.clone(), 1_700_000_000)
        .unwrap();
    assert_eq!(diff.old_serial(), before);
    assert_eq!(diff.new_serial(), before + 1);
    assert!(diff.added.is_empty() && diff.deleted.is_empty());
    // The next start: the master file, the journal (the signing bump and
    // an update whose DNSSEC records are skipped), then signing again.
    let out = eng.handle(
        &update_msg("s1._domainkey", 1_700_000_000),
        Transport::Tcp,
        1_700_000_000,
    );
    let (_, update) = out.journal.unwrap();
    assert!(
        update
            .added
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG)
    );
    let mut next = engine(EXTRA);
    assert_eq!(next.replay(&origin(), &[diff, update]).unwrap(), 2);
    assert!(
        next.zone(&origin())
            .unwrap()
            .records()
            .all(|r| r.record_type() != RecordType::RRSIG),
        "replay skips signatures"
    );
    let again = next.sign_zone(&origin(), settings, 1_700_000_100).unwrap();
    assert_eq!(again.new_serial(), before + 3, "the serial never goes back");
    check_all_signatures(&next, &key(Algorithm::EcdsaP256Sha256, 1));
}

#[test]
fn an_update_resigns_only_what_changed() {
    let t0 = 1_700_000_000;
    let (mut eng, k) = signed_engine(EXTRA, Algorithm::EcdsaP256Sha256, Denial::Nsec3, t0);
    let before = eng
        .zone(&origin())
        .unwrap()
        .records()
        .filter(|r| r.record_type() == RecordType::RRSIG)
        .count();
    let t1 = t0 + 86_400 * 3;
    let out = eng.handle(&update_msg("s1._domainkey", t1), Transport::Tcp, t1);
    let (_, diff) = out.journal.expect("a change");
    let sigs: Vec<&Record> = diff
        .added
        .iter()
        .filter(|r| r.record_type() == RecordType::RRSIG)
        .collect();
    let types: Vec<RecordType> = sigs.iter().map(|r| covered(r)).collect();
    // The TXT, the SOA, and NSEC3 records: the new name's, the new empty
    // non-terminal `_domainkey`'s and their predecessors in hash order.
    assert!(
        types.contains(&RecordType::TXT) && types.contains(&RecordType::SOA),
        "{types:?}"
    );
    assert!(sigs.len() <= 6, "only the changes are signed: {types:?}");
    assert!(sigs.len() * 3 < before, "{} of {before}", sigs.len());
    let deleted: Vec<RecordType> = diff
        .deleted
        .iter()
        .filter(|r| r.record_type() == RecordType::RRSIG)
        .map(covered)
        .collect();
    assert!(
        deleted
            .iter()
            .all(|t| matches!(t, RecordType::SOA | RecordType::NSEC3)),
        "{deleted:?}"
    );
    check_all_signatures(&eng, &k);
    // Reverting (a failed journal write) restores the old signatures.
    eng.revert(&origin(), &diff).unwrap();
    check_all_signatures(&eng, &k);
}

#[test]
fn refresh_renews_only_signatures_near_expiry() {
    let t0 = 1_700_000_000u64;
    let (mut eng, k) = signed_engine(EXTRA, Algorithm::Ed25519, Denial::Nsec3, t0);
    assert!(eng.refresh_signatures(t0 + 60).is_empty(), "nothing due");
    // An update three days later: its signatures expire three days later.
    let t1 = t0 + 86_400 * 3;
    let out = eng.handle(&update_msg("s1._domainkey", t1), Transport::Tcp, t1);
    assert!(out.journal.is_some());
    let serial = eng.zone(&origin()).unwrap().serial();
    // Ten days in, the signatures made at t0 are within the 5-day window
    // of their 14-day life; the ones made at t1 are not.
    let t2 = t0 + 86_400 * 10;
    let changes = eng.refresh_signatures(t2);
    assert_eq!(changes.len(), 1);
    let diff = changes[0].1.as_ref().unwrap();
    assert_eq!(diff.new_serial(), serial.wrapping_add(1), "serial bumped");
    let old_exp = (t0 as u32).wrapping_add(14 * 86_400);
    let new_exp = (t2 as u32).wrapping_add(14 * 86_400);
    for r in &diff.deleted {
        assert_eq!(r.record_type(), RecordType::RRSIG, "only signatures change");
        if covered(r) != RecordType::SOA {
            assert_eq!(
                expiration(r),
                old_exp,
                "{} {} was not due",
                r.name,
                covered(r)
            );
        }
    }
    assert!(diff.added.iter().all(|r| expiration(r) == new_exp));
    let txt = Name::from_ascii("s1._domainkey.example.org.").unwrap();
    assert!(
        !diff.deleted.iter().any(|r| r.name == txt),
        "the fresh TXT signature is kept"
    );
    let zone = eng.zone(&origin()).unwrap();
    let total = zone
        .records()
        .filter(|r| r.record_type() == RecordType::RRSIG)
        .count();
    assert!(diff.added.len() < total, "{} of {total}", diff.added.len());
    check_all_signatures(&eng, &k);
    assert!(
        eng.refresh_signatures(t2 + 60).is_empty(),
        "nothing due after"
    );
}

// ---- BIND named as secondary, Unbound as validating resolver ----

use common::KillOnDrop as Child;

/// A zone well over 64 KiB once signed.
fn big_zone() -> String {
    let mut extra = String::from(EXTRA);
    for i in 0..1500 {
        extra.push_str(&format!(
            "host{i:05} TXT \"filler record number {i} to make the zone larger\"\n"
        ));
    }
    extra
}

#[test]
fn bind_named_secondary_of_a_signed_zone_over_64k() {
    let dir = scratch("named-signed");
    let named_port = free_port();
    let (eng, k) = signed_engine(
        &big_zone(),
        Algorithm::EcdsaP256Sha256,
        Denial::Nsec3,
        now(),
    );
    let total = eng.zone(&origin()).unwrap().len();
    let bytes: usize = eng
        .zone(&origin())
        .unwrap()
        .records()
        .map(|r| {
            use scop_dns::hickory_proto::serialize::binary::BinEncodable;
            r.to_bytes().unwrap().len()
        })
        .sum();
    assert!(bytes > 64 * 1024, "{bytes} bytes");
    let server = start(
        eng,
        Config {
            journal_dir: None,
            notify: vec![format!("127.0.0.1:{named_port}").parse().unwrap()],
        },
    );
    let conf = format!(
        "options {{\n directory \"{dir}\";\n listen-on port {named_port} {{ 127.0.0.1; }};\n listen-on-v6 {{ none; }};\n pid-file none;\n recursion no;\n dnssec-validation no;\n notify no;\n}};\n\
controls {{ }};\n{key_block}\
zone \"example.org\" {{ type secondary; primaries {{ 127.0.0.1 port {port} key \"xfr.\"; }}; file \"example.org.db\"; }};\n",
        dir = dir.display(),
        key_block = xfr_key().to_bind(),
        port = server.port()
    );
    std::fs::write(dir.join("named.conf"), conf).unwrap();
    let log = dir.join("named.log");
    let mut cmd = peer("usr/sbin/named");
    cmd.args(["-g", "-n", "1", "-c"])
        .arg(dir.join("named.conf"));
    cmd.stdout(std::fs::File::create(&log).unwrap());
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let _named = Child(cmd.spawn().expect("named starts"));

    let text = wait_for(&log, "Transfer status: success", 1, Duration::from_secs(60));
    assert!(
        text.contains(&format!("{} records", total + 1)),
        "every record arrived ({total} + closing SOA): {text}"
    );
    // named serves our signatures: delv validates through it.
    let anchor = anchor_file(&dir, &k);
    let out = delv(named_port, &anchor, "host01499.example.org", "TXT");
    assert_validated(&out, "through named");
    let out = delv(named_port, &anchor, "nope.example.org", "A");
    assert_validated(&out, "NXDOMAIN through named");

    // An update: NOTIFY, IXFR with the new signatures and chain entries.
    let out = nsupdate(
        server.port(),
        &dkim_key().to_spec(),
        "update add s1._domainkey.example.org. 300 TXT \"after notify\"\n",
    );
    assert!(out.ok, "{}", out.stderr);
    let text = wait_for(&log, "Transfer status: success", 2, Duration::from_secs(60));
    assert!(text.contains("notify from 127.0.0.1"), "{text}");
    let ixfr = text
        .lines()
        .filter(|l| l.contains("Transfer completed"))
        .nth(1)
        .unwrap_or("");
    assert!(ixfr.contains("1 messages"), "an IXFR: {ixfr}");
    let out = delv(named_port, &anchor, "s1._domainkey.example.org", "TXT");
    assert_validated(&out, "updated record through named");
    assert!(out.stdout.contains("after notify"), "{}", out.stdout);
}

#[test]
fn unbound_validates_our_answers() {
    let dir = scratch("unbound");
    let (eng, k) = signed_engine(EXTRA, Algorithm::EcdsaP256Sha256, Denial::Nsec3, now());
    let server = start(eng, Config::default());
    let port = free_port();
    let conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  do-not-query-localhost: no\n  do-ip6: no\n  module-config: \"validator iterator\"\n  trust-anchor: \"{ta}\"\n  val-log-level: 2\n  verbosity: 1\n\nstub-zone:\n  name: \"example.org\"\n  stub-addr: 127.0.0.1@{ours}\n",
        dir = dir.display(),
        ta = k.dnskey_text().replace(" IN ", " "),
        ours = server.port()
    );
    std::fs::write(dir.join("unbound.conf"), conf).unwrap();
    let log = dir.join("unbound.log");
    let mut cmd = peer("usr/sbin/unbound");
    cmd.args(["-d", "-c"]).arg(dir.join("unbound.conf"));
    cmd.stdout(std::fs::File::create(&log).unwrap());
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let _unbound = Child(cmd.spawn().expect("unbound starts"));
    let start = Instant::now();
    let ask = |name: &str, rtype: &str| dig(port, &["+dnssec", name, rtype]);
    while !ask("example.org.", "SOA").ok {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "unbound did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, rtype, status) in [
        ("mail.example.org.", "A", "NOERROR"),
        ("nope.example.org.", "A", "NXDOMAIN"),
        ("mail.example.org.", "TXT", "NOERROR"),
        ("x.wild.example.org.", "TXT", "NOERROR"),
    ] {
        let out = ask(name, rtype);
        let flags = out
            .stdout
            .lines()
            .find(|l| l.contains(";; flags:"))
            .unwrap_or("");
        assert!(
            out.stdout.contains(&format!("status: {status}")) && flags.contains(" ad"),
            "{name} {rtype}: {}\n{}",
            out.stdout,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

#[test]
fn keys_made_by_bind_dnssec_keygen_are_read_and_sign() {
    let dir = scratch("bind-keygen");
    for (alg, name) in [
        (Algorithm::EcdsaP256Sha256, "ECDSAP256SHA256"),
        (Algorithm::Ed25519, "ED25519"),
    ] {
        let mut cmd = peer("usr/bin/dnssec-keygen");
        cmd.args(["-q", "-a", name, "-f", "KSK", "-K"])
            .arg(&dir)
            .arg("example.org");
        let out = run(cmd, "");
        assert!(out.ok, "{}", out.stderr);
        let stem = out.stdout.trim().to_string();
        let public = std::fs::read_to_string(dir.join(format!("{stem}.key"))).unwrap();
        let private = std::fs::read_to_string(dir.join(format!("{stem}.private"))).unwrap();
        let k = SigningKey::from_bind(&public, &private).unwrap();
        assert_eq!(k.algorithm(), alg);
        assert_eq!(k.file_stem(), stem, "same key tag as BIND");
        assert!(k.is_sep());
        let mut eng = engine(EXTRA);
        eng.sign_zone(&origin(), Settings::new(vec![k.clone()]), now())
            .unwrap();
        check_all_signatures(&eng, &k);
    }
}
