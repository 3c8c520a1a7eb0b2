//! The round-trip contract on real-world corpora: CPython's `test_email`
//! messages and the SpamAssassin public corpus (installed by `cargo xtask
//! peers`; a missing corpus fails the test with instructions).

use std::path::Path;

use scop_mime::{fuzz, parse};

fn run_corpus(dir: &Path, min_files: usize) {
    let files = scop_testkit::files_under(dir);
    assert!(
        files.len() >= min_files,
        "only {} files under {}",
        files.len(),
        dir.display()
    );
    let mut parsed = 0usize;
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("read corpus file");
        if parse(&data).is_ok() {
            parsed += 1;
        }
        fuzz::parse(&data);
        if let Err(e) = std::panic::catch_unwind(|| fuzz::round_trip(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!(
                "{}: {}",
                f.display(),
                msg.chars().take(600).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files break the contract:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    // Almost every file of these corpora is a message.
    assert!(
        parsed * 100 >= files.len() * 95,
        "only {parsed} of {} files parsed",
        files.len()
    );
}

#[test]
fn cpython_test_email() {
    run_corpus(&scop_testkit::cpython_email_data(), 40);
}

#[test]
fn spamassassin() {
    run_corpus(&scop_testkit::spamassassin_corpus(), 5000);
}
