//! The round-trip contract on large corpora: 20,000 generated Hamlet
//! messages (CRLF and LF), CPython's `test_email` messages and the
//! SpamAssassin public corpus. For each: no panic, and every message the
//! parser accepts re-emits its input losslessly, re-encodes to an equivalent
//! message, and the encoding is a fixed point (see `scop::check`).

use scop::check::{Outcome, Tally, check};
use scop_hamlet::{Config, Hamlet, LineEnding};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Checks `count` inputs produced by `input(i)` on all cores; returns the
/// tally and the first failures.
fn check_all(count: u64, input: impl Fn(u64) -> (String, Vec<u8>) + Sync) -> (Tally, Vec<String>) {
    let next = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let failures = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let (label, bytes) = input(i);
                    let outcome = check(&bytes);
                    tally.lock().unwrap().add(&outcome);
                    if let Outcome::Different(why) = outcome {
                        let mut f = failures.lock().unwrap();
                        if f.len() < 10 {
                            f.push(format!("{label}: {why}"));
                        }
                    }
                }
            });
        }
    });
    (tally.into_inner().unwrap(), failures.into_inner().unwrap())
}

fn hamlet(count: u64, seed: u64, line_ending: LineEnding) {
    let config = Config {
        line_ending,
        ..Config::default()
    };
    let generator = Hamlet::new(seed, config);
    let (tally, failures) = check_all(count, |i| {
        (format!("hamlet seed {seed} #{i}"), generator.message(i))
    });
    println!("hamlet seed {seed} {line_ending:?}: {}", tally.summary());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(tally.equivalent, count, "{}", tally.summary());
}

#[test]
fn hamlet_20000_crlf_round_trip() {
    hamlet(20_000, 2026, LineEnding::Crlf);
}

#[test]
fn hamlet_2000_lf_round_trip() {
    hamlet(2_000, 7, LineEnding::Lf);
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    scop_testkit::files_under(dir)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

/// Real-world corpora: no panic, nothing different. Inputs refused as "not
/// a message" must be exactly the `refused` files (by file name).
fn real_corpus(name: &str, dir: &std::path::Path, at_least: usize, refused: &[&str]) {
    let paths = files(dir);
    assert!(
        paths.len() >= at_least,
        "{name}: only {} files in {}",
        paths.len(),
        dir.display()
    );
    let (tally, failures) = check_all(paths.len() as u64, |i| {
        let p = &paths[i as usize];
        (p.display().to_string(), std::fs::read(p).unwrap())
    });
    println!("{name}: {}", tally.summary());
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n\n"));
    assert_eq!(tally.different, 0);
    let mut unparsable: Vec<String> = paths
        .iter()
        .filter(|p| scop_mime::parse(&std::fs::read(p).unwrap()).is_err())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    unparsable.sort();
    assert_eq!(unparsable, refused, "{name}: refused inputs");
    assert_eq!(tally.unparsable as usize, refused.len());
}

#[test]
fn cpython_test_email_messages_round_trip() {
    // msg_19.txt is a body fragment from a digest test: its first line is
    // prose, neither a header field nor the blank line that ends headers.
    real_corpus(
        "cpython test_email",
        &scop_testkit::cpython_email_data(),
        40,
        &["msg_19.txt"],
    );
}

#[test]
fn spamassassin_corpus_round_trips() {
    real_corpus(
        "spamassassin",
        &scop_testkit::spamassassin_corpus(),
        6046,
        &[],
    );
}
