//! Installs the real peers tests and benchmarks talk to, under `target/peers/`
//! (or `$SCOP_PEERS_DIR`), without root where possible:
//!
//! * `venv/`: a Python virtualenv with the pinned [`PYTHON_PACKAGES`];
//! * `cpython-test-email/`: CPython's `test_email` sample messages, from the
//!   local Python or else Debian's `libpython3.X-testsuite` (`dpkg -x`);
//! * `spamassassin/`: the SpamAssassin public corpus (6046 messages), fetched
//!   by `shared/scripts/fetch-spamassassin-corpus`;
//! * `debian/`: Debian packages unpacked with `apt-get download` + `dpkg -x`;
//! * `dkimpy-src/`: dkimpy's source distribution (RFC 8463 test vectors);
//! * `npm/`: npm packages ([`NPM_PACKAGES`], e.g. the `mailauth` CLI).
//!
//! Every step is idempotent: a marker file records what was installed.

use crate::util::{output, peers_dir, run, shared_dir};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Python packages of the venv, pinned.
pub const PYTHON_PACKAGES: &[&str] = &[
    "pyspf==2.0.14",
    "dnspython==2.9.2",
    // scop-dkim's interop peer; pynacl gives it Ed25519 (RFC 8463)
    "dkimpy==1.1.8",
    "pynacl==1.6.2",
    // scop-dmarc's oracle: DMARC (and SPF/DKIM) results as an
    // Authentication-Results header, offline with a DNS callback
    "authheaders==0.16.3",
    "authres==1.2.0",
    "publicsuffix2==2.20191221",
];

/// dkimpy's source distribution, unpacked under `dkimpy-src/` for the RFC 8463
/// Appendix A vectors in `dkim/tests/data/` (the wheel does not ship them).
pub const DKIMPY_SDIST: &str = "dkimpy==1.1.8";

/// npm packages installed under `npm/` (`npm install --prefix`), pinned.
/// mailauth 4.13.3 is the last release whose `engines` accepts Node 20 (5.x
/// and later need Node >= 22.19).
pub const NPM_PACKAGES: &[&str] = &["mailauth@4.13.3"];

/// Debian packages unpacked under `debian/` (binaries run with
/// `LD_LIBRARY_PATH=debian/usr/lib/x86_64-linux-gnu`). Dependencies are not
/// resolved by `dpkg -x`: the libraries are named too.
pub const DEBIAN_PACKAGES: &[&str] = &[
    // bogofilter, the spam filter scop-spam is measured against
    "bogofilter-bdb",
    "bogofilter-common",
    "libgsl27",
    "libgslcblas0",
    "libdb5.3",
    // OpenDKIM (`opendkim -t`, `opendkim-testmsg`), scop-dkim's interop peer,
    // and the libraries its binaries link that a base system lacks
    "opendkim",
    "opendkim-tools",
    "libopendkim11",
    "librbl1",
    "libvbr2",
    "libmilter1.0.1",
    "liblua5.3-0",
    "libmemcached11",
    "libhashkit2",
    "libopendbx1",
    "libunbound8",
    "libldap-2.5-0",
    // DNS peers: dig, nsupdate, delv (BIND's utilities), kdig and knsupdate
    // (Knot's), BIND's named as a secondary, Unbound as a validating
    // resolver, ldns-verify-zone; and the libraries they link
    "bind9-dnsutils",
    "bind9-host",
    "bind9-libs",
    "bind9",
    "bind9-utils",
    "libuv1",
    "libfstrm0",
    "libjemalloc2",
    "liblmdb0",
    "libmaxminddb0",
    "libprotobuf-c1",
    "knot-dnsutils",
    "libknot13",
    "libdnssec9",
    "libzscanner4",
    "liburcu8",
    "libxdp1",
    "libbpf1",
    // The DNS load generator and the authoritative servers `bench dns`
    // measures ours against: dnsperf, Knot (knotd, knotc) and NSD
    "dnsperf",
    "libnghttp2-14",
    "knot",
    "libcap-ng0",
    "libedit2",
    "nsd",
    "libevent-2.1-7",
    "unbound",
    "ldnsutils",
    "libldns3",
    "libpcap0.8",
    // SMTP peers: swaks (with the Perl TLS modules for --tls and
    // --tls-on-connect) and Postfix (smtp-source, smtp-sink, the MTA)
    "swaks",
    "libnet-ssleay-perl",
    "libio-socket-ssl-perl",
    "postfix",
    // PostgreSQL, the scale-out store backend (run as an unprivileged user)
    "postgresql-15",
    "postgresql-client-15",
    "libpq5",
    "libllvm14",
    "libxslt1.1",
    // OpenSSL's command line: an independent X.509 and TLS 1.3 peer for
    // the mesh certificates and handshakes
    "openssl",
    "libssl3",
    // Let's Encrypt's ACME test server, the CA `scop tls acme` is tested
    // against (DNS-01 through our primary); a static Go binary
    "pebble",
];

/// Installs everything.
pub fn install() -> Result<()> {
    let dir = peers_dir();
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    venv(&dir)?;
    cpython_email(&dir)?;
    spamassassin(&dir)?;
    debian(DEBIAN_PACKAGES)?;
    dkimpy_src(&dir)?;
    npm(&dir)?;
    eprintln!("==> peers ready in {}", dir.display());
    Ok(())
}

fn venv(dir: &Path) -> Result<()> {
    let venv = dir.join("venv");
    let marker = venv.join(".scop-packages");
    let wanted = PYTHON_PACKAGES.join("\n");
    if fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        run(
            "python venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    run(
        "python packages",
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PYTHON_PACKAGES),
    )?;
    fs::write(&marker, wanted)?;
    Ok(())
}

/// Unpacks dkimpy's sdist into `dkimpy-src/` (the `dkim/` package with its
/// `tests/data/`), with the venv's pip.
fn dkimpy_src(dir: &Path) -> Result<()> {
    let dest = dir.join("dkimpy-src");
    let marker = dest.join(".scop-sdist");
    if fs::read_to_string(&marker).ok().as_deref() == Some(DKIMPY_SDIST) {
        return Ok(());
    }
    let _ = fs::remove_dir_all(&dest);
    let download = dir.join("sdist-download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    run(
        "dkimpy sdist",
        Command::new(dir.join("venv/bin/pip"))
            .args([
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
            ])
            .arg(&download)
            .arg(DKIMPY_SDIST),
    )?;
    let tarball = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context("pip download left no dkimpy .tar.gz")?;
    fs::create_dir_all(&dest)?;
    run(
        "unpack dkimpy sdist",
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&dest),
    )?;
    if !dest.join("dkim/tests/data").is_dir() {
        bail!("dkimpy sdist has no dkim/tests/data");
    }
    let _ = fs::remove_dir_all(&download);
    fs::write(&marker, DKIMPY_SDIST)?;
    Ok(())
}

/// Installs [`NPM_PACKAGES`] under `npm/` (binaries in
/// `npm/node_modules/.bin/`).
fn npm(dir: &Path) -> Result<()> {
    let prefix = dir.join("npm");
    let marker = prefix.join(".scop-packages");
    let wanted = NPM_PACKAGES.join("\n");
    if fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    fs::create_dir_all(&prefix)?;
    run(
        "npm packages",
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .args(NPM_PACKAGES),
    )?;
    fs::write(&marker, wanted)?;
    Ok(())
}

fn cpython_email(dir: &Path) -> Result<()> {
    let dest = dir.join("cpython-test-email");
    if dest.join(".complete").exists() {
        return Ok(());
    }
    let local = output(Command::new("python3").args([
        "-c",
        "import os, test; print(os.path.join(os.path.dirname(test.__file__), 'test_email', 'data'))",
    ]))
    .ok()
    .map(|s| PathBuf::from(s.trim()))
    .filter(|p| p.join("msg_01.txt").exists());
    let source = match local {
        Some(path) => path,
        None => {
            let version = output(Command::new("python3").args([
                "-c",
                "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
            ]))?;
            let pkg = format!("libpython{}-testsuite", version.trim());
            let root = debian(&[pkg.as_str()])?;
            find_dir(&root, "test_email")
                .map(|p| p.join("data"))
                .with_context(|| format!("{pkg} has no test_email directory"))?
        }
    };
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest)?;
    let mut n = 0;
    for entry in fs::read_dir(&source)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("msg_") && name.ends_with(".txt") {
            fs::copy(&path, dest.join(&*name))?;
            n += 1;
        }
    }
    if n < 40 {
        bail!("only {n} test_email messages in {}", source.display());
    }
    fs::write(dest.join(".complete"), format!("{n}\n"))?;
    eprintln!(
        "==> cpython test_email: {n} messages from {}",
        source.display()
    );
    Ok(())
}

fn spamassassin(dir: &Path) -> Result<()> {
    let dest = dir.join("spamassassin");
    let script = shared_dir().join("scripts/fetch-spamassassin-corpus");
    run(
        "spamassassin corpus",
        Command::new("bash").arg(&script).arg(&dest),
    )
}

/// Downloads Debian packages and unpacks them (no root, no maintainer
/// scripts) into `target/peers/debian`; returns that root.
pub fn debian(packages: &[&str]) -> Result<PathBuf> {
    let root = peers_dir().join("debian");
    let debs = peers_dir().join("debs");
    fs::create_dir_all(&debs)?;
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !root.join(format!(".installed-{p}")).exists())
        .collect();
    if missing.is_empty() {
        return Ok(root);
    }
    let download = |debs: &Path| {
        Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(debs)
            .status()
    };
    if !download(&debs).map(|s| s.success()).unwrap_or(false) {
        // A fresh machine may have no package lists yet.
        run(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        run(
            "apt-get download",
            Command::new("apt-get")
                .arg("download")
                .args(&missing)
                .current_dir(&debs),
        )?;
    }
    for pkg in &missing {
        let deb = fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download left no .deb for {pkg}"))?;
        run(
            "dpkg -x",
            Command::new("dpkg").arg("-x").arg(&deb).arg(&root),
        )?;
        fs::write(root.join(format!(".installed-{pkg}")), "")?;
    }
    Ok(root)
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == name) {
                    return Some(p);
                }
                stack.push(p);
            }
        }
    }
    None
}
