//! Domain names: normalization, the organizational domain (RFC 7489
//! section 3.2) and identifier alignment (section 3.1).

use crate::record::Alignment;

/// Longest domain name (RFC 1035 section 2.3.4).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Lower-cases `name` and strips one trailing dot; `None` when the result
/// is not a plausible host name (empty label, over-long, an address
/// literal, or characters outside letters, digits, `-`, `_` and non-ASCII
/// U-labels).
pub fn normalize(name: &str) -> Option<String> {
    let name = name.trim();
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
        return None;
    }
    let lower = name.to_lowercase();
    let ok = lower.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    });
    ok.then_some(lower)
}

/// The organizational domain of `domain` (RFC 7489 section 3.2): the
/// public suffix plus one label, from the public suffix list compiled into
/// the `psl` crate. A name that is itself a public suffix (or has no known
/// suffix) is its own organizational domain.
///
/// ```
/// assert_eq!(scop_dmarc::organizational_domain("mail.example.co.uk"), "example.co.uk");
/// assert_eq!(scop_dmarc::organizational_domain("a.b.example.com"), "example.com");
/// assert_eq!(scop_dmarc::organizational_domain("com"), "com");
/// ```
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    match psl::domain_str(&domain) {
        Some(org) => org.to_string(),
        None => domain,
    }
}

/// Whether `identifier` is aligned with the author domain `from` in `mode`
/// (RFC 7489 section 3.1): the same name (strict), or the same
/// organizational domain (relaxed). Both must already be normalized.
pub fn aligned(from: &str, identifier: &str, mode: Alignment) -> bool {
    match mode {
        Alignment::Strict => from == identifier,
        Alignment::Relaxed => {
            from == identifier || organizational_domain(from) == organizational_domain(identifier)
        }
    }
}

/// The names whose `_dmarc` TXT records are queried, in order.
///
/// RFC 7489 section 6.6.3: the author domain, then its organizational
/// domain. DMARCbis section 4.10 (`tree_walk`): the author domain, then,
/// if it has more than eight labels, its last seven, then one label less
/// each time down to one label.
pub fn discovery_names(from: &str, tree_walk: bool) -> Vec<String> {
    let mut names = vec![from.to_string()];
    if !tree_walk {
        let org = organizational_domain(from);
        if org != from {
            names.push(org);
        }
        return names;
    }
    let labels: Vec<&str> = from.split('.').collect();
    let mut count = labels.len();
    if count > 8 {
        count = 8;
    }
    while count > 1 {
        count -= 1;
        names.push(labels[labels.len() - count..].join("."));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize("Example.COM."), Some("example.com".into()));
        assert_eq!(normalize("a..b"), None);
        assert_eq!(normalize("[192.0.2.1]"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize(&"a".repeat(64)), None);
    }

    #[test]
    fn org_domains() {
        assert_eq!(organizational_domain("example.com"), "example.com");
        assert_eq!(organizational_domain("x.y.example.org"), "example.org");
        assert_eq!(organizational_domain("example.co.uk"), "example.co.uk");
        assert_eq!(organizational_domain("co.uk"), "co.uk");
    }

    #[test]
    fn alignment_modes() {
        assert!(aligned(
            "example.com",
            "mail.example.com",
            Alignment::Relaxed
        ));
        assert!(!aligned(
            "example.com",
            "mail.example.com",
            Alignment::Strict
        ));
        assert!(aligned("example.com", "example.com", Alignment::Strict));
        assert!(!aligned("a.co.uk", "b.co.uk", Alignment::Relaxed));
        assert!(!aligned("example.com", "example.net", Alignment::Relaxed));
    }

    #[test]
    fn discovery_orders() {
        assert_eq!(
            discovery_names("a.b.example.com", false),
            ["a.b.example.com", "example.com"]
        );
        assert_eq!(discovery_names("example.com", false), ["example.com"]);
        assert_eq!(
            discovery_names("a.b.example.com", true),
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        let deep = "1.2.3.4.5.6.7.8.9.example.com";
        let names = discovery_names(deep, true);
        assert_eq!(names[1], "5.6.7.8.9.example.com");
        assert_eq!(names.len(), 8);
    }
}
