//! Project automation, run as `cargo xtask <command>`.
//!
//! * `cargo xtask test`  — install every peer, then run everything CI runs.
//!   This is the project's one test command (`.ci/run` calls it).
//! * `cargo xtask ci`    — fmt check, clippy `-D warnings`, tests, docs with
//!   `-D warnings`, fuzz targets build (assumes peers are installed).
//! * `cargo xtask peers` — install the peers tests use under `target/peers/`.
//! * `cargo xtask bench <name>` — side-by-side benchmarks against named peers.
//! * `cargo xtask fuzz <target> [seconds]` — run one fuzz target (libFuzzer,
//!   coverage instrumentation on the stable compiler).
#![forbid(unsafe_code)]

mod bench;
mod ci;
mod peers;
mod util;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test               install peers, then run the full CI suite (the README's test command)
  ci                 fmt --check, clippy -D warnings, tests, docs -D warnings, fuzz build
  peers              install test peers (Python venv, Debian tools, corpora) under target/peers
  bench <name>...    side-by-side benchmarks (`cargo xtask bench` lists them), or `all`
  fuzz <target> [s]  run a fuzz target for s seconds (default 60); `fuzz list` lists targets
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    let rest = &args[1..];
    match command.as_str() {
        "test" => {
            peers::install()?;
            ci::run()
        }
        "ci" => ci::run(),
        "peers" => peers::install(),
        "bench" => bench::run(rest),
        "fuzz" => ci::fuzz(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}
