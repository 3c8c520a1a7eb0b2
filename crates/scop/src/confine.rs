//! Landlock confinement of a mail compartment: before it starts its
//! threads, the process keeps access only to the files its role needs,
//! so that a compromised spam filter, say, cannot read the DKIM keys, the
//! mesh CA key or another compartment's mesh key. Best effort: on a kernel
//! without Landlock the compartment runs unconfined and says so.
//!
//! | role       | may read                              | may write          |
//! |------------|---------------------------------------|--------------------|
//! | every role | its mesh certificate and key, the CA  |                    |
//! | mx         | public TLS files, the SRS key         | the store's dir    |
//! | submission | public TLS files                      | the store's dir, the credentials file's dir |
//! | delivery   | the SRS key                           | the store's dir, the mailboxes |
//! | relay      | the SRS key                           | the store's dir, the mailboxes |
//! | resolver   | trust anchors, resolv.conf, hosts     |                    |
//! | spamfilter | the spam model                        |                    |
//! | verifier   |                                       |                    |
//! | signer     | DKIM keys, the TSIG key               |                    |
//! | dns        | (zones and keys read before confining) | its journal dir   |
//!
//! Landlock rules hold for a directory and everything under it: with the
//! default SQLite store (DATA/scop.db) the store's roles reach all of
//! DATA, so a deployment keeps the mailboxes (`--mailboxes`), the keys,
//! the mesh, the zone and the credentials file (password hashes,
//! `--credentials`) outside it. (Without `--tls-cert`, mx and submission
//! may write DATA/tls, where their self-signed pair is made.)
//!
//! TCP is confined too (Landlock ABI 4): each role may listen only on its
//! own ports and connect only to the ports of its next hops (the spam
//! filter to the verifier's, the relay and the verifier to the
//! resolver's, and so on), of DNS servers for the resolver alone, of the
//! store's server, and, for the relay alone, of remote MTAs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use scop_mesh::{MeshDir, Role};

use crate::cmd_mail::ServeArgs;

/// The Landlock ABI whose file-system rights we ask for (best effort on
/// older kernels): up to truncation and device ioctls.
const ABI_FS: ABI = ABI::V5;
/// The Landlock ABI whose network rights we ask for: TCP bind and connect.
const ABI_NET: ABI = ABI::V4;

/// What a compartment keeps.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Files and directories it may read.
    pub(crate) read: Vec<PathBuf>,
    /// Directories where it may read, write, create and remove files.
    pub(crate) write: Vec<PathBuf>,
    /// Whether it also makes directories and moves files between them
    /// (Maildir delivery).
    pub(crate) mailboxes: bool,
    /// TCP ports it may listen on (0: an ephemeral port, for a chosen
    /// source address).
    pub(crate) bind: Vec<u16>,
    /// TCP ports it may connect to.
    pub(crate) connect: Vec<u16>,
}

/// The directory of an SQLite store URL, if it is one.
fn sqlite_dir(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    if rest == ":memory:" {
        return None;
    }
    let path = Path::new(rest.strip_prefix("//").unwrap_or(rest));
    Some(match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

fn resolver_files(a: &ServeArgs, plan: &mut Plan) {
    plan.read.extend(a.dns.trust_anchor.iter().cloned());
    plan.read
        .extend(["/etc/resolv.conf", "/etc/hosts"].map(PathBuf::from));
    // The system's public CA certificates: hickory's resolver, when built
    // with its TLS features (as a workspace build that includes a crate
    // asking for them makes it), loads them at construction even for
    // plain DNS, and fails without them. Public data.
    system_cas(plan);
    // DNS over TCP (truncated answers): the configured servers, or the
    // system's on port 53.
    plan.connect.push(53);
    plan.connect.extend(a.dns.resolver.iter().map(|s| s.port()));
    for stub in &a.dns.stub_zone {
        plan.connect.extend(stub.servers.iter().map(|s| s.port()));
    }
}

/// The port of a `postgres://` store URL (5432 when not given).
fn postgres_port(url: &str) -> Option<u16> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let port = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host.starts_with('[') => p.parse().ok(),
        _ => None,
    };
    Some(port.unwrap_or(5432))
}

fn listen_port(spec: &str) -> Option<u16> {
    spec.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

fn mesh_port(a: &ServeArgs, role: Role) -> Option<u16> {
    crate::cmd_compartment::mesh_addr(a.mesh_base, role).map(|s| s.port())
}

fn store_dirs(a: &ServeArgs, plan: &mut Plan) {
    // The store keeps its temporary tables in memory (no file in /tmp).
    plan.connect
        .extend(postgres_port(&crate::cmd_mail::store_url(a)));
    if let Some(dir) = sqlite_dir(&crate::cmd_mail::store_url(a)) {
        plan.write.push(dir);
    }
}

/// The SRS key (made before confinement), for the roles that resolve
/// recipients. (With the default SQLite store in DATA, the store's rule
/// covers it too.)
fn srs_key(a: &ServeArgs, plan: &mut Plan) {
    plan.read.push(crate::cmd_mail::srs_key_path(&a.data));
}

/// The mailboxes, for the roles that deliver.
fn mailboxes(a: &ServeArgs, plan: &mut Plan) {
    plan.write.push(crate::cmd_mail::mail_root(a));
    plan.mailboxes = true;
}

fn public_tls(a: &ServeArgs, plan: &mut Plan) {
    plan.read.extend(a.tls_cert.iter().cloned());
    plan.read.extend(a.tls_key.iter().cloned());
    if a.tls_cert.is_none() || a.tls_key.is_none() {
        // The self-signed pair made in DATA/tls on first start.
        plan.write.push(a.data.join("tls"));
    }
}

/// The system's public CA certificates (and where their links point),
/// never the rest of /etc/ssl (its private/ holds keys); with the files
/// and directories SSL_CERT_FILE and SSL_CERT_DIR name.
fn system_cas(plan: &mut Plan) {
    plan.read.extend(
        [
            "/etc/ssl/certs",
            "/etc/ssl/cert.pem",
            "/usr/share/ca-certificates",
            "/etc/pki/tls/certs",
        ]
        .map(PathBuf::from),
    );
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            plan.read.extend(std::env::split_paths(&v));
        }
    }
}

/// The files `role` needs, from its command line.
pub(crate) fn plan(a: &ServeArgs, role: Role, mesh: &MeshDir) -> Plan {
    let mut plan = Plan {
        read: vec![mesh.cert_path(role), mesh.key_path(role), mesh.trust_path()],
        ..Plan::default()
    };
    plan.bind.extend(mesh_port(a, role));
    let next = |to: Role| mesh_port(a, to);
    match role {
        Role::Mx => {
            public_tls(a, &mut plan);
            store_dirs(a, &mut plan);
            srs_key(a, &mut plan);
            plan.bind.extend(listen_port(&a.mx));
            plan.connect.extend(next(Role::Spamfilter));
        }
        Role::Submission => {
            public_tls(a, &mut plan);
            store_dirs(a, &mut plan);
            // The password hashes (the file's directory: SQLite makes its
            // -wal and -shm files beside it).
            plan.write.extend(
                a.credentials
                    .as_ref()
                    .and_then(|f| f.parent())
                    .map(Path::to_path_buf),
            );
            plan.bind.extend(listen_port(&a.submission));
            plan.bind.extend(listen_port(&a.submissions));
            plan.connect.extend(next(Role::Signer));
        }
        Role::Delivery => {
            store_dirs(a, &mut plan);
            srs_key(a, &mut plan);
            mailboxes(a, &mut plan);
        }
        Role::Relay => {
            store_dirs(a, &mut plan);
            srs_key(a, &mut plan);
            mailboxes(a, &mut plan);
            plan.connect.extend(next(Role::Resolver));
            // Remote MTAs: MX hosts, fixed routes, the smarthost; port 0
            // for a chosen source address (--source-ip).
            plan.bind.push(0);
            plan.connect.push(a.remote_port);
            if !a.no_mta_sts {
                // Policy servers, the trust store, the kept policies.
                plan.connect.push(a.mta_sts_port);
                system_cas(&mut plan);
                plan.read.extend(a.tls_roots.iter().cloned());
                plan.write.push(crate::cmd_mail::mta_sts_dir(a));
            }
            plan.connect.extend(a.smarthost.map(|s| s.port()));
            for r in &a.route {
                if let Some((_, addr)) = r.split_once('=') {
                    plan.connect.extend(listen_port(addr));
                }
            }
        }
        Role::Spamfilter => {
            plan.read.extend(a.spam_model.iter().cloned());
            plan.connect.extend(next(Role::Verifier));
        }
        Role::Verifier => {
            plan.connect.extend(next(Role::Resolver));
            plan.connect.extend(next(Role::Delivery));
            // DMARC reports go out through the signer.
            plan.connect.extend(next(Role::Signer));
        }
        Role::Signer => {
            plan.connect.extend(next(Role::Relay));
            // The DKIM records' UPDATE (TCP when the answer is long).
            plan.connect.extend(a.dkim_publish.map(|s| s.port()));
            for spec in &a.dkim {
                if let Some(file) = spec.splitn(3, ':').nth(2) {
                    plan.read.push(PathBuf::from(file));
                }
            }
            plan.read.extend(a.dkim_tsig_key.iter().cloned());
        }
        Role::Resolver => resolver_files(a, &mut plan),
        Role::Dns => {}
    }
    plan
}

/// For tests of the confinement: tries to read `path` (a file, or a
/// directory's listing) and prints `readable PATH` or `denied PATH: ERR`.
pub(crate) fn probe_read(path: &Path) {
    let outcome = if path.is_dir() {
        std::fs::read_dir(path).map(|_| ())
    } else {
        std::fs::read(path).map(|_| ())
    };
    match outcome {
        Ok(()) => println!("readable {}", path.display()),
        Err(e) => println!("denied {}: {e}", path.display()),
    }
}

/// Restricts this thread (and every thread it starts later) to `plan`.
/// Paths that do not exist are skipped (nothing to reach there).
pub(crate) fn apply(plan: &Plan) -> Result<RulesetStatus> {
    let all = AccessFs::from_all(ABI_FS);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let mut write = read
        | AccessFs::WriteFile
        | AccessFs::MakeReg
        | AccessFs::RemoveFile
        | AccessFs::Truncate
        | AccessFs::MakeDir;
    if plan.mailboxes {
        write |= AccessFs::RemoveDir | AccessFs::Refer;
    }
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .context("Landlock: file-system rights")?
        .handle_access(AccessNet::from_all(ABI_NET))
        .context("Landlock: network rights")?
        .create()
        .context("Landlock: create the ruleset")?;
    let mut ports: Vec<(u16, AccessNet)> = Vec::new();
    ports.extend(plan.bind.iter().map(|p| (*p, AccessNet::BindTcp)));
    ports.extend(plan.connect.iter().map(|p| (*p, AccessNet::ConnectTcp)));
    ports.sort_by_key(|(p, a)| (*p, *a as u64));
    ports.dedup();
    for (port, access) in ports {
        ruleset = ruleset
            .add_rule(NetPort::new(port, access))
            .with_context(|| format!("Landlock: rule for TCP port {port}"))?;
    }
    for (paths, access) in [(&plan.read, read), (&plan.write, write)] {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else {
                continue;
            };
            // A file takes only the rights that apply to files.
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(ABI_FS)
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .with_context(|| format!("Landlock: rule for {}", path.display()))?;
        }
    }
    let status = ruleset
        .restrict_self()
        .context("Landlock: restrict the process")?;
    Ok(status.ruleset)
}

/// A word for logs.
pub(crate) fn describe(status: &RulesetStatus) -> &'static str {
    match status {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced (older kernel)",
        RulesetStatus::NotEnforced => "not enforced (no Landlock in this kernel)",
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_dir;
    use std::path::PathBuf;

    #[test]
    fn postgres_ports() {
        use super::postgres_port;
        assert_eq!(
            postgres_port("postgres://u:p@db.example:6000/scop"),
            Some(6000)
        );
        assert_eq!(postgres_port("postgresql://db.example/scop"), Some(5432));
        assert_eq!(postgres_port("postgres://u@[::1]:5433/x"), Some(5433));
        assert_eq!(postgres_port("postgres://u@[::1]/x"), Some(5432));
        assert_eq!(postgres_port("sqlite:x.db"), None);
    }

    #[test]
    fn store_directories() {
        assert_eq!(
            sqlite_dir("sqlite:/srv/scop/data/scop.db"),
            Some(PathBuf::from("/srv/scop/data"))
        );
        assert_eq!(
            sqlite_dir("sqlite:///srv/x.db"),
            Some(PathBuf::from("/srv"))
        );
        assert_eq!(sqlite_dir("sqlite:x.db"), Some(PathBuf::from(".")));
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("postgres://u@h/db"), None);
    }
}
