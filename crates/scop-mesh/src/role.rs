//! Compartment roles and the hop policy: which role may open a mesh
//! connection to which, and which hops may carry envelope facts (XSCOP).

use std::fmt;
use std::str::FromStr;

use crate::MeshError;

/// A compartment of the bottle. The name is stable: it appears in
/// certificates (`scop:role:<name>`), file names and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Authenticated submission (465/587) from users' mail clients.
    Submission,
    /// The DKIM signer, sole holder of the DKIM private keys.
    Signer,
    /// The outbound relay and its queue.
    Relay,
    /// The public MX (port 25).
    Mx,
    /// The Bayesian spam filter.
    Spamfilter,
    /// SPF, DKIM and DMARC verification; adds Authentication-Results.
    Verifier,
    /// Local delivery to mailboxes.
    Delivery,
    /// The authoritative DNS primary.
    Dns,
    /// The DNSSEC-validating resolver.
    Resolver,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 9] = [
        Role::Submission,
        Role::Signer,
        Role::Relay,
        Role::Mx,
        Role::Spamfilter,
        Role::Verifier,
        Role::Delivery,
        Role::Dns,
        Role::Resolver,
    ];

    /// The stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Submission => "submission",
            Role::Signer => "signer",
            Role::Relay => "relay",
            Role::Mx => "mx",
            Role::Spamfilter => "spamfilter",
            Role::Verifier => "verifier",
            Role::Delivery => "delivery",
            Role::Dns => "dns",
            Role::Resolver => "resolver",
        }
    }

    /// The role for an exact stable name (lower case, no surrounding space).
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The DNS name under the reserved `.invalid` TLD that the role's
    /// certificate carries; mesh clients use it as the TLS server name, so
    /// it can never collide with a real host name.
    pub fn mesh_dns_name(self) -> String {
        format!("{}.{MESH_DNS_SUFFIX}", self.name())
    }

    /// The URI subject alternative name that states the role.
    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.name())
    }

    /// Client roles this server role accepts, in table order.
    pub fn accepted_clients(self) -> Vec<Role> {
        HOPS.iter()
            .filter(|h| h.server == self)
            .map(|h| h.client)
            .collect()
    }

    /// Server roles this role connects to as a client, in table order.
    pub fn upstreams(self) -> Vec<Role> {
        HOPS.iter()
            .filter(|h| h.client == self)
            .map(|h| h.server)
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = MeshError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::from_name(s).ok_or_else(|| MeshError::UnknownRole {
            name: s.chars().take(MAX_ROLE_NAME_ECHO).collect(),
        })
    }
}

/// At most this many characters of an unknown role name are echoed in an
/// error, so a hostile certificate cannot flood logs.
pub(crate) const MAX_ROLE_NAME_ECHO: usize = 64;

/// Prefix of the URI SAN naming a role: `scop:role:<name>`.
pub const ROLE_URI_PREFIX: &str = "scop:role:";

/// Suffix of the DNS SAN naming a role: `<name>.mesh.scop.invalid`.
pub const MESH_DNS_SUFFIX: &str = "mesh.scop.invalid";

/// One permitted mesh connection: `client` may connect to `server`;
/// `envelope_facts` says whether the client may send XSCOP envelope facts
/// on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The connecting role.
    pub client: Role,
    /// The listening role.
    pub server: Role,
    /// Whether the server honours XSCOP envelope facts from this client.
    pub envelope_facts: bool,
}

/// The hop policy. Any pair absent from this table is refused.
///
/// Outbound: submission -> signer -> relay. Inbound: mx -> spamfilter ->
/// verifier -> delivery. Each of those SMTP hops carries envelope facts
/// (client IP, HELO, authenticated user, spam verdict). The verifier
/// hands its DMARC aggregate reports to the signer (no facts: they are
/// our own mail). The relay and the
/// verifier query the resolver; the signer publishes its DKIM key to the
/// DNS primary. The DNS hops speak DNS, not SMTP, so they carry no
/// envelope facts.
pub const HOPS: &[Hop] = &[
    Hop {
        client: Role::Submission,
        server: Role::Signer,
        envelope_facts: true,
    },
    Hop {
        client: Role::Signer,
        server: Role::Relay,
        envelope_facts: true,
    },
    Hop {
        client: Role::Mx,
        server: Role::Spamfilter,
        envelope_facts: true,
    },
    Hop {
        client: Role::Spamfilter,
        server: Role::Verifier,
        envelope_facts: true,
    },
    Hop {
        client: Role::Verifier,
        server: Role::Delivery,
        envelope_facts: true,
    },
    Hop {
        client: Role::Verifier,
        server: Role::Signer,
        envelope_facts: false,
    },
    Hop {
        client: Role::Relay,
        server: Role::Resolver,
        envelope_facts: false,
    },
    Hop {
        client: Role::Verifier,
        server: Role::Resolver,
        envelope_facts: false,
    },
    Hop {
        client: Role::Signer,
        server: Role::Dns,
        envelope_facts: false,
    },
];

/// Whether `client` may open a mesh connection to `server`.
pub fn may_connect(client: Role, server: Role) -> bool {
    HOPS.iter()
        .any(|h| h.client == client && h.server == server)
}

/// Whether `server` honours envelope facts sent by `client`.
pub fn may_send_envelope_facts(client: Role, server: Role) -> bool {
    HOPS.iter()
        .any(|h| h.client == client && h.server == server && h.envelope_facts)
}
