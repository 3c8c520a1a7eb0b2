//! The DNS server core fed arbitrary bytes: as a plain request over UDP
//! and TCP, and (first byte odd) as a request TSIG-signed with a key the
//! server knows, so that the fuzzer reaches UPDATE processing and zone
//! transfers; (second bit of the mode byte) against the same zone signed
//! online with DNSSEC (NSEC3), so that DO answers, denial proofs and
//! re-signing on update are reached too. Every reply must be a well-formed
//! message within 64 KiB.
#![no_main]

use scop_dns::hickory_proto::op::Message;
use scop_dns::policy::Policy;
use scop_dns::tsig::{Algorithm, Chain, Key, KeyRing};
use scop_dns::{Engine, Transport, Zone};
use std::sync::OnceLock;

const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n\
@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\n@ MX 10 mail\n\
ns1 A 192.0.2.1\nmail A 192.0.2.2\nwww CNAME mail\nsub NS ns.sub\nns.sub A 192.0.2.3\n\
*.wild TXT \"w\"\n";

fn key() -> Key {
    Key::new("fuzz.", Algorithm::HmacSha256, vec![9; 32]).expect("key")
}

fn template() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let zone = Zone::from_master(ZONE, None).expect("zone");
        let mut keys = KeyRing::default();
        keys.insert(key());
        Engine::new(vec![zone], keys, Policy::allow_all()).expect("engine")
    })
}

fn signed_template() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = template().clone();
        let origin = scop_dns::tsig::parse_name("example.org").expect("name");
        let key = scop_dns::dnssec::SigningKey::from_secret(
            &origin,
            scop_dns::dnssec::Algorithm::EcdsaP256Sha256,
            true,
            &[7; 32],
        )
        .expect("key");
        engine
            .sign_zone(&origin, scop_dns::dnssec::Settings::new(vec![key]), 1_000_000)
            .expect("sign");
        engine
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut request = rest.to_vec();
    if mode & 1 == 1 {
        Chain::new(key()).sign_request(&mut request, 1_000_000);
    }
    let transport = if mode & 2 == 2 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let mut engine = if mode & 4 == 4 {
        signed_template().clone()
    } else {
        template().clone()
    };
    let out = engine.handle(&request, transport, 1_000_000);
    for reply in &out.replies {
        assert!(reply.len() <= scop_dns::MAX_MESSAGE_BYTES);
        if transport == Transport::Udp {
            assert!(reply.len() <= usize::from(scop_dns::DEFAULT_EDNS_PAYLOAD));
        }
        assert!(
            Message::from_vec(reply).is_ok(),
            "we sent an unparsable reply"
        );
    }
});
