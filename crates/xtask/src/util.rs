//! Small process helpers.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask is two levels below the root")
        .to_path_buf()
}

/// `target/peers`, or `$SCOP_PEERS_DIR`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("SCOP_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("peers"))
}

/// `../shared`, or `$SCOP_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("SCOP_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared"))
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it and its duration; fails on a non-zero exit.
pub fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {step}: {}", show(cmd));
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    eprintln!("==> {step}: {status} in {:.1?}", start.elapsed());
    if !status.success() {
        bail!("step `{step}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
