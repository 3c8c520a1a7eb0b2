//! Test support shared by the workspace's test suites.
//!
//! Peers (Python packages, Debian tools, npm packages) and fetched corpora are
//! installed by `cargo xtask test` under `target/peers/`. Tests find them here.
//! A test that needs a peer **fails** with a clear message when it is missing;
//! it never skips.
#![forbid(unsafe_code)]

pub mod postfix;
pub mod postgres;

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .expect("crates/scop-testkit lives two levels below the root")
        .to_path_buf()
}

/// Where `cargo xtask peers` installs peers; `SCOP_PEERS_DIR` overrides it.
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("SCOP_PEERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("peers"),
    }
}

/// The `shared/` directory beside the checkout (`SCOP_SHARED_DIR` overrides it).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SCOP_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared"),
    }
}

/// A path inside the peers directory that must exist, or a panic telling how
/// to install it.
pub fn peer_path(relative: &str) -> PathBuf {
    let path = peers_dir().join(relative);
    assert!(
        path.exists(),
        "peer {} is missing at {}: run `cargo xtask peers` (or `cargo xtask test`, which installs every peer)",
        relative,
        path.display()
    );
    path
}

/// The Python interpreter of the peers' virtualenv (dkimpy, pyspf, ...).
pub fn python() -> PathBuf {
    peer_path("venv/bin/python")
}

/// The SpamAssassin public corpus directory (subfolders easy-ham-1, spam-1, ...).
pub fn spamassassin_corpus() -> PathBuf {
    peer_path("spamassassin")
}

/// CPython's `test_email` sample messages.
pub fn cpython_email_data() -> PathBuf {
    peer_path("cpython-test-email")
}

/// A command for a binary unpacked from a Debian package by `cargo xtask
/// peers` (e.g. `usr/bin/bogofilter-bdb`), with its libraries on the path.
pub fn debian_command(relative_binary: &str) -> std::process::Command {
    let root = peer_path("debian");
    let binary = peer_path(&format!("debian/{relative_binary}"));
    let mut cmd = std::process::Command::new(binary);
    let libs = [
        root.join("usr/lib/x86_64-linux-gnu"),
        root.join("usr/lib/x86_64-linux-gnu/bind"),
        root.join("lib/x86_64-linux-gnu"),
        root.join("usr/lib"),
    ];
    let joined = std::env::join_paths(libs.iter()).expect("library path");
    cmd.env("LD_LIBRARY_PATH", joined);
    cmd
}

/// swaks (the Debian package's Perl script) with its Perl modules and
/// libraries on the path, quiet, with a 20 s timeout.
pub fn swaks() -> std::process::Command {
    let root = peer_path("debian");
    let mut cmd = std::process::Command::new("perl");
    cmd.arg(peer_path("debian/usr/bin/swaks"));
    let perl5 = [
        root.join("usr/share/perl5"),
        root.join("usr/lib/x86_64-linux-gnu/perl5/5.36"),
    ];
    cmd.env(
        "PERL5LIB",
        std::env::join_paths(perl5.iter()).expect("path"),
    );
    cmd.env(
        "LD_LIBRARY_PATH",
        std::env::join_paths([root.join("usr/lib/x86_64-linux-gnu")].iter()).expect("path"),
    );
    cmd.args(["--hide-informational", "--timeout", "20"]);
    cmd
}

/// Every regular file under `dir`, sorted, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}
