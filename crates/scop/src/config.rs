//! The deployment's configuration file, `scop.toml`: written by `scop
//! init`, read by `scop up` and `scop status`.
//!
//! Paths in the file are relative to the directory that holds it, so a
//! deployment directory can be moved as a whole.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name inside the deployment directory.
pub const FILE_NAME: &str = "scop.toml";
/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The mail domain.
    pub domain: String,
    /// The host name of the MX and submission service.
    pub hostname: String,
    /// Public addresses of the host (the zone's A/AAAA records).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The mail compartments.
    pub mail: MailSection,
    /// The authoritative DNS primary; absent when another server serves the
    /// zone.
    #[serde(default)]
    pub dns: Option<DnsSection>,
    /// Certificates from an ACME CA for the public listeners, renewed by
    /// `scop up`; absent: the certificate is managed by hand (or by
    /// `scop tls acme` run by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSection>,
}

/// `[acme]`: where `scop up` renews the public certificate (DNS-01
/// through the deployment's own primary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The CA's ACME directory URL.
    pub directory: String,
    /// The account's contact, `mailto:ADDR`.
    #[serde(default)]
    pub contact: Option<String>,
    /// A PEM root that alone is trusted for the CA's HTTPS (a private or
    /// test CA); absent: the system's roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// `[mail]`: the options of `scop mail serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// Data directory: store, mailboxes, queue, SRS key.
    pub data: PathBuf,
    /// Store URL; default `sqlite:DATA/scop.db`.
    #[serde(default)]
    pub store: Option<String>,
    /// The SQLite file holding the password hashes, apart from the store,
    /// so that only submission opens it (outside DATA: the store's other
    /// users may read all of DATA).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// The mailboxes' root; default `DATA/mail`. Outside DATA, mx and
    /// submission (which open the store in DATA) cannot reach them.
    #[serde(default)]
    pub mailboxes: Option<PathBuf>,
    /// MX listener, or "off".
    pub mx: String,
    /// Submission listener (STARTTLS), or "off".
    pub submission: String,
    /// Submission listener (implicit TLS), or "off".
    pub submissions: String,
    /// TLS certificate chain for the public listeners.
    pub tls_cert: PathBuf,
    /// Its private key.
    pub tls_key: PathBuf,
    /// Check SPF, DKIM and DMARC on the MX and enforce DMARC.
    #[serde(default)]
    pub verify: bool,
    /// Recursive resolvers for the relay and the verifier (default: the
    /// system's).
    #[serde(default)]
    pub resolvers: Vec<String>,
    /// Zones asked from their own servers, `ZONE=ADDR:PORT` (the domain's
    /// own zone from its own primary).
    #[serde(default)]
    pub stub_zones: Vec<String>,
    /// Trusted DNSKEY files, or directories of `.key` files.
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    /// Fixed routes, `DOMAIN=HOST:PORT`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// DKIM keys that sign submitted mail.
    #[serde(default)]
    pub dkim: Vec<DkimKey>,
    /// The DNS primary the DKIM keys are published to at start, with a
    /// TSIG-signed UPDATE.
    #[serde(default)]
    pub dkim_publish: Option<String>,
    /// The TSIG key of those updates.
    #[serde(default)]
    pub dkim_tsig_key: Option<PathBuf>,
    /// The mesh directory: when set, `scop up` runs each mail compartment
    /// as its own process; otherwise one `scop mail serve` runs them all.
    #[serde(default)]
    pub mesh: Option<PathBuf>,
    /// First port of the mesh listeners (ADDR:PORT).
    #[serde(default)]
    pub mesh_base: Option<String>,
    /// Further `scop mail serve` options, passed as written (to every
    /// mail compartment).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// One DKIM signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    /// The selector (`s=`).
    pub selector: String,
    /// The PKCS#8 PEM private key.
    pub key: PathBuf,
}

/// `[dns]`: the options of `scop dns serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// The UDP and TCP listener.
    pub listen: String,
    /// Master files of the zones served.
    pub zones: Vec<PathBuf>,
    /// The journal directory.
    pub journal: PathBuf,
    /// TSIG keys allowed to update or transfer, under `policy`.
    #[serde(default)]
    pub tsig_keys: Vec<PathBuf>,
    /// The update/transfer policy file.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Secondaries to NOTIFY.
    #[serde(default)]
    pub notify: Vec<String>,
    /// DNSSEC key directory: zones with keys there are signed online.
    #[serde(default)]
    pub dnssec_keys: Option<PathBuf>,
    /// Further `scop dns serve` options, passed as written.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl Config {
    /// Reads `DIR/scop.toml`.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(FILE_NAME);
        let file = std::fs::File::open(&path).with_context(|| {
            format!(
                "open {} (run `scop init --dir {}` first)",
                path.display(),
                dir.display()
            )
        })?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut text,
        )
        .with_context(|| format!("read {}", path.display()))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            bail!("{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        }
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The file with its header comment, as `scop init` and `scop dkim
    /// rotate` write it.
    pub fn file_text(&self) -> Result<String> {
        Ok(format!(
            "# SCoP deployment for {}, written by `scop init`; read by `scop up`.\n\
             # Paths are relative to this file's directory.\n\n{}",
            self.domain,
            self.to_toml()?
        ))
    }

    /// Where the file of the deployment in `dir` is.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }
}

/// Whether the DNS name `name` is `zone` or below it (both lower case,
/// without the trailing dot).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with('.'))
}

/// The port senders connect to for the MX listener `listen` (the port of
/// an `ADDR:PORT`, else 25), under which its TLSA record is published;
/// `None` when the MX is off.
pub fn mx_port(listen: &str) -> Option<u16> {
    (listen != "off").then(|| {
        listen
            .parse::<std::net::SocketAddr>()
            .map_or(25, |a| a.port())
    })
}

/// `path` resolved against the deployment directory.
pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_keys() {
        let config = Config {
            domain: "example.org".into(),
            hostname: "mail.example.org".into(),
            addresses: vec!["192.0.2.1".into()],
            mail: MailSection {
                data: "data".into(),
                store: None,
                credentials: Some("credentials/passwords.db".into()),
                mailboxes: Some("mail".into()),
                mx: "[::]:25".into(),
                submission: "[::]:587".into(),
                submissions: "[::]:465".into(),
                tls_cert: "tls/cert.pem".into(),
                tls_key: "tls/key.pem".into(),
                verify: true,
                resolvers: vec![],
                stub_zones: vec!["example.org=127.0.0.1:53".into()],
                trust_anchors: vec!["keys/dnssec".into()],
                routes: vec![],
                dkim: vec![DkimKey {
                    selector: "r202611".into(),
                    key: "keys/dkim/r202611.pem".into(),
                }],
                dkim_publish: Some("127.0.0.1:53".into()),
                dkim_tsig_key: Some("keys/tsig/signer.key".into()),
                mesh: Some("mesh".into()),
                mesh_base: Some("127.0.0.1:7401".into()),
                extra_args: vec![],
            },
            dns: None,
            acme: Some(AcmeSection {
                directory: "https://acme-staging-v02.api.letsencrypt.org/directory".into(),
                contact: Some("mailto:postmaster@example.org".into()),
                ca_cert: None,
            }),
        };
        let text = config.to_toml().unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        let bad = format!("{text}\nsurprise = 1\n");
        assert!(toml::from_str::<Config>(&bad).is_err());
    }
}
