//! The author domain: the domain of the RFC5322.From address (RFC 7489
//! sections 3.1 and 6.6.1).

use scop_mime::Address;

use crate::MAX_FROM_ADDRESSES;
use crate::domain::normalize;

/// The author domain of a message, or why there is not exactly one.
///
/// Our reading of RFC 7489 section 6.6.1 (documented choice): several From
/// addresses (in one field or several fields) that share one domain are
/// evaluated as that domain; several distinct domains, no From address, or
/// an address without a usable domain make the DMARC result `permerror`
/// with the disposition `reject` (such a message breaks RFC 5322 section
/// 3.6, and evaluating only one of its domains would let a spoofed second
/// author through).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthorDomain {
    /// Exactly one domain (lower case).
    One(String),
    /// No From field, or no address in it.
    None,
    /// An address whose domain is missing or not a host name.
    Invalid(String),
    /// Several distinct domains (lower case, sorted).
    Several(Vec<String>),
}

impl AuthorDomain {
    /// The domain, when there is exactly one.
    pub fn domain(&self) -> Option<&str> {
        match self {
            AuthorDomain::One(d) => Some(d),
            _ => None,
        }
    }
}

/// Finds the author domain of a raw message (headers are enough).
///
/// ```
/// use scop_dmarc::{AuthorDomain, author_domain};
/// let msg = b"From: Ann <ann@Example.COM>\r\nTo: b@example.net\r\n\r\nhi\r\n";
/// assert_eq!(author_domain(msg), AuthorDomain::One("example.com".into()));
/// ```
pub fn author_domain(message: &[u8]) -> AuthorDomain {
    let header = scop_dkim::header::split_header(message);
    let mut domains: Vec<String> = Vec::new();
    let mut count = 0usize;
    for field in header.fields.iter().filter(|f| f.is("From")) {
        // Parse the one field on its own: scop-mime's address parser.
        let mut one = b"From:".to_vec();
        one.extend_from_slice(field.value());
        one.extend_from_slice(b"\r\n\r\n");
        let Ok(parsed) = scop_mime::parse(&one) else {
            continue;
        };
        for header in parsed.message.headers_named("From") {
            for address in header.addresses() {
                let members = match address {
                    Address::Mailbox(m) => vec![m],
                    Address::Group { members, .. } => members,
                };
                for m in members {
                    count += 1;
                    if count > MAX_FROM_ADDRESSES {
                        break;
                    }
                    match normalize(&m.domain) {
                        Some(d) => {
                            if !domains.contains(&d) {
                                domains.push(d);
                            }
                        }
                        None => return AuthorDomain::Invalid(m.domain),
                    }
                }
            }
        }
    }
    domains.sort();
    match domains.len() {
        0 => AuthorDomain::None,
        1 => AuthorDomain::One(domains.remove(0)),
        _ => AuthorDomain::Several(domains),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_several() {
        let m = b"From: a@x.example.com, b@X.example.com\r\n\r\n";
        assert_eq!(author_domain(m), AuthorDomain::One("x.example.com".into()));
        let m = b"From: a@example.com\r\nFrom: b@example.net\r\n\r\n";
        assert_eq!(
            author_domain(m),
            AuthorDomain::Several(vec!["example.com".into(), "example.net".into()])
        );
        let m = b"From: a@example.com, b@example.org\r\n\r\n";
        assert!(matches!(author_domain(m), AuthorDomain::Several(_)));
    }

    #[test]
    fn none_and_invalid() {
        assert_eq!(
            author_domain(b"To: a@example.com\r\n\r\n"),
            AuthorDomain::None
        );
        assert_eq!(
            author_domain(b"From: undisclosed:;\r\n\r\n"),
            AuthorDomain::None
        );
        assert!(matches!(
            author_domain(b"From: nobody\r\n\r\n"),
            AuthorDomain::Invalid(_) | AuthorDomain::None
        ));
        assert!(matches!(
            author_domain(b"From: a@[192.0.2.1]\r\n\r\n"),
            AuthorDomain::Invalid(_)
        ));
    }

    #[test]
    fn folded_and_display_name() {
        let m = b"From: \"Doe, J\" (c)\r\n <j@mail.example.org>\r\nSubject: x\r\n\r\n";
        assert_eq!(
            author_domain(m),
            AuthorDomain::One("mail.example.org".into())
        );
    }
}
