//! Property tests: the record and `Authentication-Results` parsers never
//! panic, and what they accept round-trips (the fuzz entry points'
//! contract, run here on every `cargo test`).

use proptest::prelude::*;
use scop_dmarc::{AuthenticationResults, MethodResult, fuzz};

fn record_like() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        Just("p".to_string()),
        Just("sp".to_string()),
        Just("np".to_string()),
        Just("pct".to_string()),
        Just("adkim".to_string()),
        Just("aspf".to_string()),
        Just("rua".to_string()),
        Just("ruf".to_string()),
        Just("fo".to_string()),
        Just("rf".to_string()),
        Just("ri".to_string()),
        Just("psd".to_string()),
        "[a-z]{1,4}",
    ];
    let value = prop_oneof![
        Just("none".to_string()),
        Just("reject".to_string()),
        Just("quarantine".to_string()),
        Just("s".to_string()),
        Just("r".to_string()),
        "[0-9]{1,4}",
        "mailto:[a-z]{1,5}@example\\.com(![0-9]{1,3}[kmgt]?)?(,mailto:x@y\\.z)?",
        "[0-9ds:]{1,6}",
        "[ -~]{0,12}",
    ];
    proptest::collection::vec((tag, value), 0..8).prop_map(|tags| {
        let mut s = "v=DMARC1".to_string();
        for (t, v) in tags {
            s.push_str(&format!("; {t}={v}"));
        }
        s
    })
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9.-]{1,12}",
        "[a-z]{1,6}@[a-z]{1,6}\\.example",
        "[ -~]{0,16}",
        "[a-zA-Z0-9+/=]{8,16}",
    ]
}

fn authres() -> impl Strategy<Value = AuthenticationResults> {
    let result = (
        "[a-z]{1,6}",
        "[a-z]{1,9}",
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of("[ -~]{0,20}"),
        proptest::collection::vec(("[a-z]{1,6}", "[a-z]{1,6}", value()), 0..5),
    )
        .prop_map(|(method, result, comment, reason, props)| {
            let mut r = MethodResult::new(&method, &result);
            r.comment = comment;
            r.reason = reason;
            for (t, p, v) in props {
                r = r.with(&t, &p, &v);
            }
            r
        });
    ("[a-z0-9.-]{1,20}", proptest::collection::vec(result, 0..5)).prop_map(|(id, results)| {
        let mut ar = AuthenticationResults::new(&id);
        ar.results = results;
        ar
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn record_parser_total_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::parse_record(&data);
    }

    #[test]
    fn record_parser_total_on_record_like_text(text in record_like()) {
        fuzz::parse_record(text.as_bytes());
    }

    #[test]
    fn authres_parser_total_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::parse_authentication_results(&data);
    }

    #[test]
    fn authres_parser_total_on_field_like_text(
        text in "[a-z.]{0,10}(;[ \t\r\n]*[a-z]{1,5}=[a-z]{1,6}( \\([ -~]{0,8}\\))?( [a-z]{1,5}\\.[a-z]{1,5}=(\"[ -~]{0,8}\"|[a-z@.]{1,8}))*)*"
    ) {
        fuzz::parse_authentication_results(text.as_bytes());
    }

    #[test]
    fn generated_authres_round_trips(ar in authres()) {
        let text = ar.to_string();
        // Comments and reasons with CR/LF are flattened to spaces on output.
        let mut expected = ar.clone();
        for r in &mut expected.results {
            let flat = |s: &mut String| *s = s.replace(['\r', '\n'], " ");
            r.comment.as_mut().map(flat);
            r.reason.as_mut().map(flat);
            for p in &mut r.properties {
                flat(&mut p.value);
            }
        }
        prop_assert_eq!(AuthenticationResults::parse(&text), Ok(expected));
    }
}
