//! Property tests: the parsers never panic, records generated from the RFC
//! 7208 grammar parse and print back to the same text, and evaluation over
//! arbitrary DNS data terminates within its bounds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use scop_spf::{
    DnsAnswer, MAX_QUERIES, Options, Query, QueryType, RData, Record, Request, Resolver,
    check_host_with, fuzz,
};

fn literal() -> impl Strategy<Value = String> {
    // macro-literal: visible ASCII except '%'.
    "[!-$&-~]{1,6}"
}

fn macro_expand() -> impl Strategy<Value = String> {
    let letter = prop::sample::select(vec![
        's', 'l', 'o', 'd', 'i', 'p', 'v', 'h', 'S', 'L', 'O', 'D', 'I', 'P', 'V', 'H',
    ]);
    let keep = prop::option::of(1u8..=255);
    let delims = "[-.+,/_=]{0,3}";
    prop_oneof![
        4 => (letter, keep, any::<bool>(), delims).prop_map(|(l, k, r, d)| {
            format!(
                "%{{{l}{}{}{d}}}",
                k.map(|k| k.to_string()).unwrap_or_default(),
                if r { "r" } else { "" }
            )
        }),
        1 => Just("%%".to_string()),
        1 => Just("%_".to_string()),
        1 => Just("%-".to_string()),
    ]
}

fn macro_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![literal(), macro_expand()], 0..4).prop_map(|parts| {
        // Two adjacent literals are one literal; that is fine for text.
        parts.concat()
    })
}

fn toplabel() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{0,3}[a-z][a-z0-9]{0,3}",
        "[a-z0-9]{1,3}-[a-z0-9-]{0,3}[a-z0-9]"
    ]
}

fn domain_spec() -> impl Strategy<Value = String> {
    (
        macro_string(),
        prop_oneof![
            (toplabel(), any::<bool>())
                .prop_map(|(t, dot)| format!(".{t}{}", if dot { "." } else { "" })),
            macro_expand(),
        ],
    )
        .prop_map(|(body, end)| format!("{body}{end}"))
        // A literal body ending in '%' cannot happen (no '%' literal), but
        // a body ending in "/digits" followed by a macro end is fine.
        .prop_filter("no cidr-looking tail", |s| {
            !s.rsplit('/')
                .next()
                .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn dual_cidr() -> impl Strategy<Value = String> {
    (prop::option::of(0u8..=32), prop::option::of(0u8..=128)).prop_map(|(v4, v6)| {
        let mut s = String::new();
        if let Some(v4) = v4 {
            s.push_str(&format!("/{v4}"));
        }
        if let Some(v6) = v6 {
            s.push_str(&format!("//{v6}"));
        }
        s
    })
}

fn mechanism() -> impl Strategy<Value = String> {
    let target = || {
        prop::option::of(domain_spec()).prop_map(|d| d.map(|d| format!(":{d}")).unwrap_or_default())
    };
    prop_oneof![
        Just("all".to_string()),
        domain_spec().prop_map(|d| format!("include:{d}")),
        (target(), dual_cidr()).prop_map(|(t, c)| format!("a{t}{c}")),
        (target(), dual_cidr()).prop_map(|(t, c)| format!("mx{t}{c}")),
        target().prop_map(|t| format!("ptr{t}")),
        (any::<u32>(), prop::option::of(0u8..=32)).prop_map(|(a, p)| format!(
            "ip4:{}{}",
            Ipv4Addr::from(a),
            p.map(|p| format!("/{p}")).unwrap_or_default()
        )),
        (any::<u128>(), prop::option::of(0u8..=128)).prop_map(|(a, p)| format!(
            "ip6:{}{}",
            Ipv6Addr::from(a),
            p.map(|p| format!("/{p}")).unwrap_or_default()
        )),
        domain_spec().prop_map(|d| format!("exists:{d}")),
    ]
}

fn directive() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!["", "-", "~", "?"]), mechanism())
        .prop_map(|(q, m)| format!("{q}{m}"))
}

fn unknown_modifier() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9._-]{0,6}", macro_string())
        .prop_filter("known names", |(n, _)| n != "redirect" && n != "exp")
        .prop_map(|(n, v)| format!("{n}={v}"))
}

/// A canonical record: what `Display` prints for its own parse.
fn record() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => directive(), 1 => unknown_modifier()], 0..8),
        prop::option::of(domain_spec()),
        prop::option::of(domain_spec()),
    )
        .prop_map(|(mut terms, redirect, exp)| {
            if let Some(r) = redirect {
                terms.push(format!("redirect={r}"));
            }
            if let Some(e) = exp {
                terms.insert(0, format!("exp={e}"));
            }
            let mut text = "v=spf1".to_string();
            for t in terms {
                text.push(' ');
                text.push_str(&t);
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn grammar_records_round_trip(text in record()) {
        let parsed = Record::parse(&text);
        prop_assert!(parsed.is_ok(), "{text:?}: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.to_string(), text.clone());
        fuzz::parse_record(text.as_bytes());
    }

    #[test]
    fn arbitrary_text_never_panics(tail in ".{0,80}", prefix in prop::sample::select(vec!["", "v=spf1 ", "V=SPF1 a:", "v=spf1 exists:%{"])) {
        let text = format!("{prefix}{tail}");
        fuzz::parse_record(text.as_bytes());
        fuzz::expand_macro(text.as_bytes());
        fuzz::expand_macro(tail.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let mut with_version = b"v=spf1 ".to_vec();
        with_version.extend_from_slice(&bytes);
        fuzz::parse_record(&bytes);
        fuzz::parse_record(&with_version);
        fuzz::expand_macro(&bytes);
    }

    #[test]
    fn evaluation_terminates_on_arbitrary_dns(
        policies in prop::collection::vec(record(), 1..4),
        v6 in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let ip: IpAddr = if v6 { "2001:db8::1".parse().unwrap() } else { "192.0.2.1".parse().unwrap() };
        let resolver = Chaos { policies, seed };
        let out = check_host_with(&resolver, Request::mail_from(ip, "a@example.com", "h.example.com"), Options::default());
        prop_assert!(out.queries as usize <= MAX_QUERIES);
        prop_assert!(out.dns_terms <= scop_spf::MAX_DNS_TERMS + 1);
    }
}

/// Answers every TXT query with one of the policies and everything else
/// with pseudo-random data derived from the question.
struct Chaos {
    policies: Vec<String>,
    seed: u64,
}

impl Resolver for Chaos {
    fn lookup(&self, q: &Query) -> DnsAnswer {
        let mut h = self.seed;
        for b in q.name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let pick = usize::try_from(h % 7).unwrap_or(0);
        match (q.qtype, pick) {
            (_, 0) => DnsAnswer::NxDomain,
            (_, 1) => DnsAnswer::TempFail,
            (QueryType::Txt, _) => DnsAnswer::Records(vec![RData::Txt(vec![
                self.policies[pick % self.policies.len()]
                    .as_bytes()
                    .to_vec(),
            ])]),
            (QueryType::A, _) => {
                DnsAnswer::Records(vec![RData::A(Ipv4Addr::new(192, 0, 2, (h >> 8) as u8 % 4))])
            }
            (QueryType::Aaaa, _) => DnsAnswer::Records(vec![RData::Aaaa(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                (h >> 8) as u16 % 4,
            ))]),
            (QueryType::Mx, _) => DnsAnswer::Records(
                (0..pick * 2)
                    .map(|k| RData::Mx {
                        preference: k as u16,
                        exchange: format!("mx{k}.example.com"),
                    })
                    .collect(),
            ),
            (QueryType::Ptr, _) => DnsAnswer::Records(
                (0..pick * 3)
                    .map(|k| RData::Ptr(format!("h{k}.example.com")))
                    .collect(),
            ),
        }
    }
}
