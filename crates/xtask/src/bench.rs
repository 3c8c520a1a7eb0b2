//! `cargo xtask bench <name>`: side-by-side benchmarks. Each runs our code and
//! the named peer in the same process run, on the same input, and prints both
//! figures and their ratio. The machine is a noisy 2-core VM: the drivers
//! report medians over several rounds.

use crate::util::{cargo, peers_dir};
use anyhow::{Result, bail};

/// Benchmarks and what they compare.
pub const BENCHES: &[(&str, &str)] = &[
    (
        "mime",
        "scop-mime parse/encode vs mail-parser 0.11.9 (10,000 Hamlet + SpamAssassin corpus)",
    ),
    (
        "spam",
        "scop-spam vs bogofilter: accuracy on held-out SpamAssassin groups, train/classify msg/s",
    ),
    (
        "hamlet",
        "1,000,000 Hamlet messages generated and round-trip-checked (target: < 5 min, < 200 MB)",
    ),
    (
        "auth",
        "DKIM sign/verify RSA-2048 + Ed25519, body hash MB/s, SPF eval/s: scop vs mail-auth 0.13.3 and dkimpy; openssl speed ceiling",
    ),
    (
        "smtp",
        "smtp-source msg/s (1/20 sessions, 2/100 KB) into our MX (SQLite, fsync) vs Postfix smtpd + queue; MX RSS per idle connection and at 1,000 sessions",
    ),
    (
        "bottle",
        "the split deployment (`scop up`, mTLS hops) vs Postfix + OpenDKIM milter: msg/s, p50/p99 latency outbound (submission->signer->relay->sink) and inbound (mx->spamfilter->verifier->delivery); RSS per compartment",
    ),
    (
        "dns",
        "dnsperf UDP/TCP qps against scop dns serve vs Knot and NSD; DNSSEC-signed TSIG updates/s vs Knot",
    ),
];

/// `cargo run --release -p scop-bench -- <name>`, to which the caller
/// adds the benchmark's arguments.
fn scop_bench(name: &str) -> std::process::Command {
    let mut c = cargo();
    c.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "scop-bench",
        "--",
        name,
    ]);
    c
}

pub fn run(args: &[String]) -> Result<()> {
    if args.is_empty() {
        eprintln!("usage: cargo xtask bench <name>... | all\n\nbenchmarks:");
        for (name, what) in BENCHES {
            eprintln!("  {name:<8} {what}");
        }
        bail!("no benchmark named");
    }
    let names: Vec<&str> = if args.iter().any(|a| a == "all") {
        BENCHES.iter().map(|(n, _)| *n).collect()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in &names {
        if !BENCHES.iter().any(|(n, _)| n == name) {
            bail!("unknown benchmark `{name}`");
        }
    }
    crate::peers::install()?;
    for name in names {
        match name {
            "mime" => crate::util::run(
                "bench mime",
                scop_bench("mime")
                    .arg("--spamassassin")
                    .arg(peers_dir().join("spamassassin"))
                    .args(["--hamlet", "10000"]),
            )?,
            "spam" => crate::util::run(
                "bench spam",
                scop_bench("spam")
                    .arg("--corpus")
                    .arg(peers_dir().join("spamassassin"))
                    .arg("--debian")
                    .arg(peers_dir().join("debian")),
            )?,
            "hamlet" => crate::util::run(
                "bench hamlet",
                cargo().args([
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "scop",
                    "--",
                    "selfcheck",
                    "--count",
                    "1000000",
                    "--seed",
                    "1",
                ]),
            )?,
            "auth" => crate::util::run(
                "bench auth",
                scop_bench("auth")
                    .arg("--python")
                    .arg(peers_dir().join("venv/bin/python")),
            )?,
            "smtp" => crate::util::run(
                "bench smtp",
                scop_bench("smtp")
                    .arg("--debian")
                    .arg(peers_dir().join("debian")),
            )?,
            "dns" => {
                // scop-bench finds the `scop` binary next to itself.
                crate::util::run(
                    "build scop",
                    cargo().args(["build", "--release", "--quiet", "-p", "scop"]),
                )?;
                crate::util::run(
                    "bench dns",
                    scop_bench("dns")
                        .arg("--debian")
                        .arg(peers_dir().join("debian")),
                )?
            }
            "bottle" => {
                // scop-bench runs the `scop` binary built next to itself.
                crate::util::run(
                    "build scop",
                    cargo().args(["build", "--release", "--quiet", "-p", "scop"]),
                )?;
                crate::util::run("bench bottle", &mut scop_bench("bottle"))?
            }
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}
