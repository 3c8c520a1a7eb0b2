//! The round-trip contract on the Hamlet generated corpus.

use scop_hamlet::{Config, Hamlet};
use scop_mime::{fuzz, parse};

#[test]
fn hamlet_corpus_round_trips() {
    let count: u64 = std::env::var("SCOP_HAMLET_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let hamlet = Hamlet::new(42, Config::default());
    for i in 0..count {
        let msg = hamlet.message(i);
        let p = parse(&msg).unwrap_or_else(|e| panic!("hamlet message {i} does not parse: {e}"));
        assert!(
            p.diagnostics.is_empty(),
            "hamlet message {i} (valid by construction) gave diagnostics {:?}",
            p.diagnostics
        );
        fuzz::parse(&msg);
        if let Err(e) = std::panic::catch_unwind(|| fuzz::round_trip(&msg)) {
            let msg_s = e.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!(
                "hamlet message {i}: {}",
                msg_s.chars().take(2000).collect::<String>()
            );
        }
    }
}
