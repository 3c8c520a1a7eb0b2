//! Landlock confinement of a mail compartment: before it starts its
//! threads, the process keeps access only to the files its role needs,
//! so that a compromised spam filter, say, cannot read the DKIM keys, the
//! mesh CA key or another compartment's mesh key. Best effort: on a kernel
//! without Landlock the compartment runs unconfined and says so.
//!
//! | role       | may read                              | may write          |
//! |------------|---------------------------------------|--------------------|
//! | every role | its mesh certificate and key, the CA  |                    |
//! | mx         | public TLS files                      | data dir (store)   |
//! | submission | public TLS files                      | data dir (store)   |
//! | delivery   |                                       | data dir (store, mailboxes) |
//! | relay      | trust anchors, resolv.conf, hosts     | data dir (store, mailboxes) |
//! | spamfilter | the spam model                        |                    |
//! | verifier   | trust anchors, resolv.conf, hosts     |                    |
//! | signer     | DKIM keys, the TSIG key               |                    |
//!
//! Landlock rules hold for a directory and everything under it, so the
//! store's roles reach the whole data directory (mailboxes included); the
//! keys, the mesh and the zone live outside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use scop_mesh::{MeshDir, Role};

use crate::cmd_mail::ServeArgs;

/// The Landlock ABI whose file-system rights we ask for (best effort on
/// older kernels): up to truncation and device ioctls.
const ABI_FS: ABI = ABI::V5;

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
}

fn store_dirs(a: &ServeArgs, plan: &mut Plan) {
    // The store keeps its temporary tables in memory (no file in /tmp).
    plan.write.push(a.data.clone());
    if let Some(dir) = sqlite_dir(&crate::cmd_mail::store_url(a)) {
        plan.write.push(dir);
    }
}

fn public_tls(a: &ServeArgs, plan: &mut Plan) {
    plan.read.extend(a.tls_cert.iter().cloned());
    plan.read.extend(a.tls_key.iter().cloned());
}

/// The files `role` needs, from its command line.
pub(crate) fn plan(a: &ServeArgs, role: Role, mesh: &MeshDir) -> Plan {
    let mut plan = Plan {
        read: vec![mesh.cert_path(role), mesh.key_path(role), mesh.trust_path()],
        ..Plan::default()
    };
    match role {
        Role::Mx | Role::Submission => {
            public_tls(a, &mut plan);
            store_dirs(a, &mut plan);
        }
        Role::Delivery => {
            store_dirs(a, &mut plan);
            plan.mailboxes = true;
        }
        Role::Relay => {
            store_dirs(a, &mut plan);
            plan.mailboxes = true;
            resolver_files(a, &mut plan);
        }
        Role::Spamfilter => plan.read.extend(a.spam_model.iter().cloned()),
        Role::Verifier => resolver_files(a, &mut plan),
        Role::Signer => {
            for spec in &a.dkim {
                if let Some(file) = spec.splitn(3, ':').nth(2) {
                    plan.read.push(PathBuf::from(file));
                }
            }
            plan.read.extend(a.dkim_tsig_key.iter().cloned());
        }
        Role::Dns | Role::Resolver => {}
    }
    plan
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
        .create()
        .context("Landlock: create the ruleset")?;
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
