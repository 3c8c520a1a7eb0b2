//! The hop policy table and role names.

use proptest::prelude::*;
use scop_mesh::{HOPS, Role, may_connect, may_send_envelope_facts};

#[test]
fn names_round_trip_and_are_stable() {
    let expected = [
        "submission",
        "signer",
        "relay",
        "mx",
        "spamfilter",
        "verifier",
        "delivery",
        "dns",
        "resolver",
    ];
    let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names, expected);
    for role in Role::ALL {
        assert_eq!(role.to_string(), role.name());
        assert_eq!(role.name().parse::<Role>().expect("parse"), role);
        assert_eq!(role.uri(), format!("scop:role:{}", role.name()));
        assert_eq!(
            role.mesh_dns_name(),
            format!("{}.mesh.scop.invalid", role.name())
        );
    }
    for bad in ["", "Relay", " relay", "relay ", "RELAY", "smtp", "relay\0"] {
        assert!(bad.parse::<Role>().is_err(), "{bad:?} parsed");
    }
}

/// The hops the design names, and only those.
#[test]
fn table_is_exactly_the_designed_chains() {
    use Role::*;
    let smtp_chain = [
        (Submission, Signer),
        (Signer, Relay),
        (Mx, Spamfilter),
        (Spamfilter, Verifier),
        (Verifier, Delivery),
    ];
    // The verifier's DMARC reports go out through the signer, without facts.
    let dns_hops = [
        (Relay, Resolver),
        (Verifier, Resolver),
        (Signer, Dns),
        (Verifier, Signer),
    ];
    let mut allowed = 0;
    let mut facts = 0;
    for client in Role::ALL {
        for server in Role::ALL {
            let in_chain = smtp_chain.contains(&(client, server));
            let in_dns = dns_hops.contains(&(client, server));
            assert_eq!(
                may_connect(client, server),
                in_chain || in_dns,
                "{client} -> {server}"
            );
            assert_eq!(
                may_send_envelope_facts(client, server),
                in_chain,
                "facts {client} -> {server}"
            );
            allowed += usize::from(may_connect(client, server));
            facts += usize::from(may_send_envelope_facts(client, server));
        }
    }
    assert_eq!((allowed, facts), (9, 5));
}

#[test]
fn internet_facing_roles_accept_no_mesh_client_and_chains_never_go_back() {
    assert!(Role::Submission.accepted_clients().is_empty());
    assert!(Role::Mx.accepted_clients().is_empty());
    for hop in HOPS {
        assert_ne!(hop.client, hop.server, "{hop:?}");
        assert!(!may_connect(hop.server, hop.client), "reverse of {hop:?}");
    }
    for (i, a) in HOPS.iter().enumerate() {
        for b in &HOPS[i + 1..] {
            assert!(
                (a.client, a.server) != (b.client, b.server),
                "duplicate {a:?}"
            );
        }
    }
    assert_eq!(
        Role::Signer.accepted_clients(),
        vec![Role::Submission, Role::Verifier]
    );
    assert_eq!(Role::Signer.upstreams(), vec![Role::Relay, Role::Dns]);
    assert_eq!(
        Role::Resolver.accepted_clients(),
        vec![Role::Relay, Role::Verifier]
    );
}

proptest! {
    #[test]
    fn parse_never_panics_and_round_trips(s in ".{0,24}") {
        if let Ok(role) = s.parse::<Role>() {
            prop_assert_eq!(role.name(), s.as_str());
        }
    }

    #[test]
    fn facts_imply_connect_and_views_agree(c in 0usize..9, s in 0usize..9) {
        let (client, server) = (Role::ALL[c], Role::ALL[s]);
        if may_send_envelope_facts(client, server) {
            prop_assert!(may_connect(client, server));
        }
        prop_assert_eq!(
            server.accepted_clients().contains(&client),
            may_connect(client, server)
        );
        prop_assert_eq!(
            client.upstreams().contains(&server),
            may_connect(client, server)
        );
    }
}
