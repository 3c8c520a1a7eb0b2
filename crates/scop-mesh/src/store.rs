//! The mesh directory on disk, and certificate rotation.
//!
//! ```text
//! mesh/                 0700
//!   ca.pem              current CA certificate (public copy)       0644
//!   ca.key              current CA private key (PKCS#8) + cert     0600
//!   ca-previous.pem     the old CA during a CA rotation overlap    0644
//!   trust.pem           CA certificates every compartment trusts   0644
//!   <role>.pem          a compartment's certificate                0644
//!   <role>.key          its private key (PKCS#8)                   0600
//! ```
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync
//! of the directory), keys with mode 0600 from creation. A key file whose
//! mode grants anything to group or others is refused, as is a key that
//! does not match its certificate.
//!
//! CA rotation is three steps, each followed by a restart (or reload) of
//! every compartment:
//! 1. [`MeshDir::begin_ca_rotation`]: a new CA becomes current; the old
//!    certificate moves to `ca-previous.pem`; `trust.pem` holds both.
//!    Compartments keep their old certificates and, once reloaded, accept
//!    peers of either CA.
//! 2. [`MeshDir::reissue_all`]: every compartment gets a certificate from
//!    the new CA. Peers still presenting old certificates keep working,
//!    because every reloaded compartment trusts both CAs.
//! 3. [`MeshDir::finish_ca_rotation`]: `trust.pem` holds the new CA alone
//!    and `ca-previous.pem` is removed; old certificates stop working.
//!
//! The old CA's private key is deleted at step 1: nothing new is ever
//! signed by it. Step 1 commits when `ca.key` is replaced; a crash before
//! that leaves the old CA current with a rotation marked in progress (the
//! bundle also names a new CA whose key was never stored, which signs
//! nothing): finish, then begin again.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::{Ca, ExtraNames, Identity, MeshError, Role, TrustBundle, Validity};

/// Largest PEM file read, in bytes.
pub const MAX_PEM_FILE: u64 = 64 * 1024;
/// Mode of private key files.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
const CERT_MODE: u32 = 0o644;
/// Mode of the mesh directory.
const DIR_MODE: u32 = 0o700;

/// A mesh directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshDir {
    root: PathBuf,
}

impl MeshDir {
    /// A handle on `root`; nothing is read until asked.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MeshDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the current CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// Path of the current CA key.
    pub fn ca_key_path(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// Path of the previous CA certificate (during a CA rotation).
    pub fn previous_ca_path(&self) -> PathBuf {
        self.root.join("ca-previous.pem")
    }

    /// Path of the trust bundle.
    pub fn trust_path(&self) -> PathBuf {
        self.root.join("trust.pem")
    }

    /// Path of `role`'s certificate.
    pub fn cert_path(&self, role: Role) -> PathBuf {
        self.root.join(format!("{}.pem", role.name()))
    }

    /// Path of `role`'s private key.
    pub fn key_path(&self, role: Role) -> PathBuf {
        self.root.join(format!("{}.key", role.name()))
    }

    /// Create the directory (mode 0700), a new CA, the trust bundle and one
    /// certificate for each of `roles` with its extra names. Refused if the
    /// directory already holds a CA key.
    pub fn init(
        root: impl Into<PathBuf>,
        ca_validity: Validity,
        leaf_validity: Validity,
        roles: &[(Role, ExtraNames)],
    ) -> Result<MeshDir, MeshError> {
        let dir = MeshDir::new(root);
        fs::create_dir_all(&dir.root).map_err(|e| io_err(&dir.root, e))?;
        fs::set_permissions(&dir.root, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_err(&dir.root, e))?;
        let ca_key = dir.ca_key_path();
        if ca_key.exists() {
            return Err(MeshError::AlreadyExists { path: ca_key });
        }
        let ca = Ca::create(ca_validity)?;
        for (role, extra) in roles {
            dir.write_identity(&ca.issue(*role, leaf_validity, extra)?)?;
        }
        dir.write_trust(&ca.trust())?;
        dir.write_ca(&ca)?;
        Ok(dir)
    }

    /// Write the CA: `ca.key` (private key and certificate in one file, the
    /// single atomic commit point), then the public copy `ca.pem`. A crash
    /// in between leaves `ca.pem` stale, never a key without its
    /// certificate.
    pub fn write_ca(&self, ca: &Ca) -> Result<(), MeshError> {
        let mut both = ca.key_pem();
        both.push_str(&ca.cert_pem());
        write_atomic(&self.ca_key_path(), both.as_bytes(), KEY_MODE)?;
        write_atomic(&self.ca_cert_path(), ca.cert_pem().as_bytes(), CERT_MODE)
    }

    /// Load the current CA from `ca.key` (key and certificate).
    pub fn load_ca(&self) -> Result<Ca, MeshError> {
        let path = self.ca_key_path();
        let bytes = read_key(&path)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| MeshError::Pem {
            path: path.clone(),
            reason: "not UTF-8",
        })?;
        Ca::from_pem(&bytes, text).map_err(|e| match e {
            MeshError::Pem { reason, .. } => MeshError::Pem { path, reason },
            other => other,
        })
    }

    /// Write the trust bundle.
    pub fn write_trust(&self, trust: &TrustBundle) -> Result<(), MeshError> {
        write_atomic(&self.trust_path(), trust.to_pem().as_bytes(), CERT_MODE)
    }

    /// Load the trust bundle.
    pub fn load_trust(&self) -> Result<TrustBundle, MeshError> {
        let path = self.trust_path();
        let pem = read_bounded(&path)?;
        TrustBundle::from_pem(&pem).map_err(|e| match e {
            MeshError::Pem { reason, .. } => MeshError::Pem { path, reason },
            MeshError::EmptyTrust => MeshError::Pem {
                path,
                reason: "no CERTIFICATE block",
            },
            other => other,
        })
    }

    /// Write `identity`'s key, then its certificate. A crash in between
    /// leaves a new key beside the old certificate, which loading refuses
    /// as a mismatch (fail closed) and re-issuing repairs.
    pub fn write_identity(&self, identity: &Identity) -> Result<(), MeshError> {
        let role = identity.role();
        write_atomic(
            &self.key_path(role),
            identity.key_pem()?.as_bytes(),
            KEY_MODE,
        )?;
        write_atomic(
            &self.cert_path(role),
            identity.cert_pem().as_bytes(),
            CERT_MODE,
        )
    }

    /// Load `role`'s identity: the certificate must name `role` and the key
    /// must be owner-only and match it.
    pub fn load_identity(&self, role: Role) -> Result<Identity, MeshError> {
        let cert_path = self.cert_path(role);
        let key_path = self.key_path(role);
        let cert_pem = read_bounded(&cert_path)?;
        let key_pem = read_key(&key_path)?;
        let cert = CertificateDer::from_pem_slice(&cert_pem).map_err(|_| MeshError::Pem {
            path: cert_path.clone(),
            reason: "no CERTIFICATE block",
        })?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(&key_pem).map_err(|_| MeshError::Pem {
            path: key_path,
            reason: "no PRIVATE KEY (PKCS#8) block",
        })?;
        Identity::new(role, cert, key).map_err(|e| match e {
            MeshError::KeyMismatch { .. } => MeshError::KeyMismatch { path: cert_path },
            other => other,
        })
    }

    /// The roles that have a certificate in this directory.
    pub fn roles(&self) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| self.cert_path(*r).is_file())
            .collect()
    }

    /// Issue a new key and certificate for `role` from the current CA,
    /// keeping the extra names of its current certificate if it has one.
    pub fn reissue(&self, role: Role, validity: Validity) -> Result<Identity, MeshError> {
        let ca = self.load_ca()?;
        self.reissue_with(&ca, role, validity)
    }

    /// [`MeshDir::reissue`] for every role present; returns them.
    pub fn reissue_all(&self, validity: Validity) -> Result<Vec<Role>, MeshError> {
        let ca = self.load_ca()?;
        let roles = self.roles();
        for role in &roles {
            self.reissue_with(&ca, *role, validity)?;
        }
        Ok(roles)
    }

    fn reissue_with(&self, ca: &Ca, role: Role, validity: Validity) -> Result<Identity, MeshError> {
        let path = self.cert_path(role);
        let extra = match read_bounded(&path) {
            Ok(pem) => {
                let cert = CertificateDer::from_pem_slice(&pem).map_err(|_| MeshError::Pem {
                    path: path.clone(),
                    reason: "no CERTIFICATE block",
                })?;
                ExtraNames::from_certificate(&cert)?
            }
            Err(MeshError::Missing { .. }) => ExtraNames::none(),
            Err(e) => return Err(e),
        };
        let identity = ca.issue(role, validity, &extra)?;
        self.write_identity(&identity)?;
        Ok(identity)
    }

    /// Step 1 of a CA rotation: a new CA becomes current, the old one is
    /// kept (certificate only) as `ca-previous.pem`, and the trust bundle
    /// holds both. Refused while a rotation is in progress.
    pub fn begin_ca_rotation(&self, ca_validity: Validity) -> Result<(), MeshError> {
        if self.previous_ca_path().exists() {
            return Err(MeshError::Rotation("already in progress"));
        }
        let old = self.load_ca()?;
        let new = Ca::create(ca_validity)?;
        write_atomic(
            &self.previous_ca_path(),
            old.cert_pem().as_bytes(),
            CERT_MODE,
        )?;
        self.write_trust(&TrustBundle::new(vec![
            new.certificate().clone(),
            old.certificate().clone(),
        ])?)?;
        self.write_ca(&new)
    }

    /// Step 3 of a CA rotation: trust the current CA alone and forget the
    /// previous one.
    pub fn finish_ca_rotation(&self) -> Result<(), MeshError> {
        let previous = self.previous_ca_path();
        if !previous.exists() {
            return Err(MeshError::Rotation("not in progress"));
        }
        let ca = self.load_ca()?;
        self.write_trust(&ca.trust())?;
        fs::remove_file(&previous).map_err(|e| io_err(&previous, e))?;
        sync_dir(&self.root)
    }

    /// The previous CA certificate, if a rotation is in progress.
    pub fn previous_ca(&self) -> Result<Option<CertificateDer<'static>>, MeshError> {
        let path = self.previous_ca_path();
        match read_bounded(&path) {
            Ok(pem) => CertificateDer::from_pem_slice(&pem)
                .map(Some)
                .map_err(|_| MeshError::Pem {
                    path,
                    reason: "no CERTIFICATE block",
                }),
            Err(MeshError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> MeshError {
    if source.kind() == std::io::ErrorKind::NotFound {
        MeshError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        MeshError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, MeshError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    read_file(path, file)
}

fn read_file(path: &Path, file: File) -> Result<Vec<u8>, MeshError> {
    let mut out = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_err(path, e))?;
    if out.len() as u64 > MAX_PEM_FILE {
        return Err(MeshError::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Read a private key file, refusing one that is not a regular file (a
/// symbolic link included) or whose mode grants any access to group or
/// others. The checks are made on the opened file, and its identity is
/// compared with the path's, so a file swapped in between is refused too.
fn read_key(path: &Path) -> Result<Vec<u8>, MeshError> {
    let insecure = |mode: u32| MeshError::InsecurePermissions {
        path: path.to_path_buf(),
        mode: mode & 0o7777,
    };
    let link = fs::symlink_metadata(path).map_err(|e| io_err(path, e))?;
    if !link.file_type().is_file() {
        return Err(insecure(link.permissions().mode()));
    }
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    let mode = meta.permissions().mode();
    if !meta.file_type().is_file()
        || meta.ino() != link.ino()
        || meta.dev() != link.dev()
        || mode & 0o077 != 0
    {
        return Err(insecure(mode));
    }
    read_file(path, file)
}

/// Write `data` to `path` atomically with `mode`: a temporary file in the
/// same directory, created with `mode`, fsync'd, renamed over `path`, then
/// the directory fsync'd.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), MeshError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp, e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    // The umask may have removed bits from a certificate's mode; a key's
    // mode is already owner-only.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(&tmp, e))?;
    file.write_all(data).map_err(|e| io_err(&tmp, e))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), MeshError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}
