//! What CI runs, and the fuzz runner.

use crate::util::{cargo, root};
use anyhow::{Result, bail};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Fuzz targets in `fuzz/fuzz_targets/`, each with the directories whose
/// files seed its corpus.
pub const FUZZ_TARGETS: &[(&str, &[&str])] = &[
    ("mime_parse", &["crates/scop-mime/tests/golden"]),
    ("mime_round_trip", &["crates/scop-mime/tests/golden"]),
    ("spf_record", &[]),
    ("spf_macro", &[]),
    ("dkim_signature", &[]),
    ("dkim_verify", &["crates/scop-mime/tests/golden"]),
    ("smtp_command", &[]),
    ("smtp_reply", &[]),
    ("smtp_server", &[]),
    ("smtp_client", &[]),
    ("dmarc_record", &[]),
    ("dmarc_authres", &[]),
    ("dns_message", &[]),
    ("mesh_certificate", &["fuzz/seeds/mesh_certificate"]),
    ("mta_headers", &["crates/scop-mime/tests/golden"]),
    ("mta_srs", &[]),
    ("mta_journal", &[]),
    ("mta_dane", &["fuzz/seeds/mesh_certificate"]),
    ("mta_sts", &["fuzz/seeds/mta_sts"]),
    ("tlsrpt", &["fuzz/seeds/tlsrpt"]),
];

/// Seconds each fuzz target runs at most inside `cargo xtask ci`.
const CI_FUZZ_SECONDS: u32 = 15;

/// Inputs each fuzz target runs inside `cargo xtask ci`, from a fixed seed,
/// so that CI is reproducible: a crash it finds is found again on rerun.
const CI_FUZZ_RUNS: u32 = 50_000;

/// fmt, clippy, tests, docs, fuzz targets (built and run briefly).
pub fn run() -> Result<()> {
    run_step("fmt", cargo().args(["fmt", "--all", "--check"]))?;
    run_step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // scop-bench is only a driver for `cargo xtask bench`: clippy checks
    // it, but building it for tests would compile its peers (mail-parser,
    // mail-auth and their resolver) once more for no test of our code.
    run_step(
        "test",
        cargo().args(["test", "--workspace", "--exclude", "scop-bench", "--locked"]),
    )?;
    run_step(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    fuzz_build()?;
    for (target, _) in FUZZ_TARGETS {
        fuzz_run(target, CI_FUZZ_SECONDS, Some(CI_FUZZ_RUNS))?;
    }
    eprintln!("==> ci: all steps passed");
    Ok(())
}

fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    crate::util::run(step, cmd)
}

/// `cargo xtask fuzz <target> [seconds]`.
pub fn fuzz(args: &[String]) -> Result<()> {
    match args {
        [] => bail!("usage: cargo xtask fuzz <target|list> [seconds]"),
        [list] if list == "list" => {
            for (t, _) in FUZZ_TARGETS {
                println!("{t}");
            }
            Ok(())
        }
        [target, rest @ ..] => {
            if !FUZZ_TARGETS.iter().any(|(t, _)| t == target) {
                bail!("unknown fuzz target `{target}` (see `cargo xtask fuzz list`)");
            }
            let seconds = match rest.first() {
                Some(s) => s.parse()?,
                None => 60,
            };
            fuzz_build()?;
            fuzz_run(target, seconds, None)
        }
    }
}

/// Builds the fuzz targets with libFuzzer's coverage instrumentation. The
/// flags are those cargo-fuzz passes, minus the sanitizer (which needs a
/// nightly compiler); the code under test forbids `unsafe`.
fn fuzz_build() -> Result<()> {
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg=fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
    .join("\x1f");
    // With an explicit --target the flags reach only the fuzz binaries,
    // not build scripts (which cannot link the coverage callbacks).
    let triple = host_triple()?;
    run_step(
        "fuzz build",
        cargo()
            .args([
                "build",
                "--release",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--bins",
            ])
            .args(["--target", &triple])
            .env("CARGO_ENCODED_RUSTFLAGS", flags),
    )
}

fn host_triple() -> Result<String> {
    let out = crate::util::output(Command::new("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("rustc -vV printed no host line"))
}

fn fuzz_run(target: &str, seconds: u32, runs: Option<u32>) -> Result<()> {
    let fuzz = root().join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    fs::create_dir_all(&corpus)?;
    let seeds = FUZZ_TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, s)| *s)
        .unwrap_or_default();
    for dir in seeds {
        let dir = root().join(dir);
        if dir.is_dir() {
            seed_from(&dir, &corpus)?;
        }
    }
    let bin = fuzz
        .join("target")
        .join(host_triple()?)
        .join("release")
        .join(target);
    let mut cmd = Command::new(bin);
    cmd.arg(&corpus).args([
        format!("-max_total_time={seconds}"),
        "-max_len=65536".into(),
        "-print_final_stats=1".into(),
    ]);
    if let Some(runs) = runs {
        cmd.args([format!("-runs={runs}"), "-seed=1".into()]);
    }
    // Crash artifacts go beside the corpus, not into the working directory.
    let artifacts = fuzz.join("artifacts").join(target);
    fs::create_dir_all(&artifacts)?;
    cmd.arg(format!("-artifact_prefix={}/", artifacts.display()));
    run_step(&format!("fuzz {target}"), &mut cmd)
}

fn seed_from(dir: &PathBuf, corpus: &PathBuf) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            seed_from(&path, corpus)?;
        } else if path.extension().is_some_and(|e| e == "eml" || e == "der") {
            let name = path
                .strip_prefix(root())
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('/', "_");
            fs::copy(&path, corpus.join(name))?;
        }
    }
    Ok(())
}
