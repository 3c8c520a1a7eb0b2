//! Address and login validation and normalisation (sans-IO).
//!
//! An address is `local@domain`. The domain is compared case-insensitively
//! (it is stored lower-cased, without a trailing dot); the local part keeps
//! the case it was given in but is *matched* case-insensitively, so every
//! address has a [`key`](Address::key) used for look-ups and uniqueness.
//!
//! Only the forms a mail administrator types are accepted: dot-atom local
//! parts (RFC 5321 section 4.1.2, plus UTF-8 as RFC 6531 allows) and
//! host-name domains. Quoted local parts and address literals are refused.

use std::fmt;

/// Longest local part in bytes (RFC 5321 section 4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Longest domain in bytes (RFC 5321 section 4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest domain label in bytes (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest address (local part, `@`, domain) in bytes (RFC 5321 section 4.5.3.1.3 path less the brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why an address, a domain or an alias source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Empty input.
    Empty,
    /// No `@` separating the local part from the domain.
    MissingAt,
    /// The local part is empty.
    EmptyLocalPart,
    /// The local part is longer than [`MAX_LOCAL_PART_LEN`].
    LocalPartTooLong,
    /// The local part has a character outside dot-atom text (or a leading,
    /// trailing or doubled dot).
    BadLocalPart,
    /// The domain is empty.
    EmptyDomain,
    /// The domain is longer than [`MAX_DOMAIN_LEN`] or a label longer than
    /// [`MAX_LABEL_LEN`].
    DomainTooLong,
    /// The domain is not a host name (bad character, empty label, hyphen at
    /// a label edge, or an address literal).
    BadDomain,
    /// The whole address is longer than [`MAX_ADDRESS_LEN`].
    AddressTooLong,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::Empty => "empty",
            AddressError::MissingAt => "no '@' between local part and domain",
            AddressError::EmptyLocalPart => "empty local part",
            AddressError::LocalPartTooLong => "local part longer than 64 bytes",
            AddressError::BadLocalPart => {
                "local part must be dot-atom text (letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots)"
            }
            AddressError::EmptyDomain => "empty domain",
            AddressError::DomainTooLong => "domain or label too long",
            AddressError::BadDomain => {
                "domain must be a host name (letters, digits, inner hyphens, dots between labels)"
            }
            AddressError::AddressTooLong => "address longer than 254 bytes",
        })
    }
}

impl std::error::Error for AddressError {}

/// A validated domain: lower-case, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates and normalises a domain name.
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if trimmed.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::DomainTooLong);
        }
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(AddressError::BadDomain);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(AddressError::DomainTooLong);
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(AddressError::BadDomain);
            }
            let ok = label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
            });
            if !ok {
                return Err(AddressError::BadDomain);
            }
        }
        Ok(Domain(trimmed.to_lowercase()))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated address: the local part as given, the domain normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: Domain,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn check_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err(AddressError::LocalPartTooLong);
    }
    for atom in local.split('.') {
        if atom.is_empty() || !atom.chars().all(is_atext) {
            return Err(AddressError::BadLocalPart);
        }
    }
    Ok(())
}

impl Address {
    /// Validates `local@domain`. The last `@` separates the parts (a valid
    /// local part has none, so this only matters for the error).
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(AddressError::MissingAt)?;
        check_local(local)?;
        let domain = Domain::parse(domain)?;
        if local.len() + 1 + domain.as_str().len() > MAX_ADDRESS_LEN {
            return Err(AddressError::AddressTooLong);
        }
        Ok(Address {
            local: local.to_owned(),
            domain,
        })
    }

    /// The local part, in the case it was given.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The normalised domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The look-up key: local part and domain both lower-cased.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for Address {
    /// `local@domain` with the local part as given and the domain normalised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The source of an alias: one address, or every address of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AliasSource {
    /// `local@domain`.
    Address(Address),
    /// `@domain`: a catch-all, used only when no exact address matches.
    CatchAll(Domain),
}

impl AliasSource {
    /// Parses `x@d` or `@d`.
    pub fn parse(input: &str) -> Result<AliasSource, AddressError> {
        let input = input.trim();
        match input.strip_prefix('@') {
            Some(domain) => Ok(AliasSource::CatchAll(Domain::parse(domain)?)),
            None => Ok(AliasSource::Address(Address::parse(input)?)),
        }
    }

    /// The domain the source belongs to.
    pub fn domain(&self) -> &Domain {
        match self {
            AliasSource::Address(a) => a.domain(),
            AliasSource::CatchAll(d) => d,
        }
    }

    /// The look-up key (`x@d` lower-cased, or `@d`).
    pub fn key(&self) -> String {
        match self {
            AliasSource::Address(a) => a.key(),
            AliasSource::CatchAll(d) => format!("@{d}"),
        }
    }
}

impl fmt::Display for AliasSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasSource::Address(a) => a.fmt(f),
            AliasSource::CatchAll(d) => write!(f, "@{d}"),
        }
    }
}

/// The look-up key of an address-like string that may not validate (a
/// recipient from the queue): lower-cased local part and domain, trailing
/// dot of the domain removed.
pub fn loose_key(input: &str) -> String {
    match Address::parse(input) {
        Ok(a) => a.key(),
        Err(_) => input.trim().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_domain_keeps_local_case() {
        let a = Address::parse("Alice.Smith@Alice.TEST.").unwrap();
        assert_eq!(a.to_string(), "Alice.Smith@alice.test");
        assert_eq!(a.key(), "alice.smith@alice.test");
        assert_eq!(a.local(), "Alice.Smith");
        assert_eq!(a.domain().as_str(), "alice.test");
    }

    #[test]
    fn refuses_bad_addresses() {
        let cases = [
            ("", AddressError::Empty),
            ("alice", AddressError::MissingAt),
            ("@alice.test", AddressError::EmptyLocalPart),
            ("alice@", AddressError::EmptyDomain),
            ("al ice@alice.test", AddressError::BadLocalPart),
            (".alice@alice.test", AddressError::BadLocalPart),
            ("al..ice@alice.test", AddressError::BadLocalPart),
            ("alice.@alice.test", AddressError::BadLocalPart),
            ("\"al ice\"@alice.test", AddressError::BadLocalPart),
            ("a@b@alice.test", AddressError::BadLocalPart),
            ("alice@[127.0.0.1]", AddressError::BadDomain),
            ("alice@-x.test", AddressError::BadDomain),
            ("alice@x-.test", AddressError::BadDomain),
            ("alice@x..test", AddressError::BadDomain),
            ("alice@x_y.test", AddressError::BadDomain),
            ("alice@x\0.test", AddressError::BadDomain),
        ];
        for (input, want) in cases {
            assert_eq!(Address::parse(input), Err(want), "{input:?}");
        }
        let long_local = format!("{}@x.test", "a".repeat(65));
        assert_eq!(
            Address::parse(&long_local),
            Err(AddressError::LocalPartTooLong)
        );
        let long_label = format!("a@{}.test", "b".repeat(64));
        assert_eq!(
            Address::parse(&long_label),
            Err(AddressError::DomainTooLong)
        );
        let long_addr = format!(
            "{}@{}.test",
            "a".repeat(64),
            vec!["c".repeat(60); 4].join(".")
        );
        assert_eq!(
            Address::parse(&long_addr),
            Err(AddressError::AddressTooLong)
        );
    }

    #[test]
    fn accepts_utf8_and_specials() {
        assert!(Address::parse("jörg+tag@bücher.test").is_ok());
        assert!(Address::parse("o'neil{x}@x.test").is_ok());
        assert_eq!(Address::parse("ÄB@x.test").unwrap().key(), "äb@x.test");
    }

    #[test]
    fn alias_sources() {
        assert_eq!(AliasSource::parse("@X.Test").unwrap().key(), "@x.test");
        assert_eq!(
            AliasSource::parse("Info@X.Test").unwrap().key(),
            "info@x.test"
        );
        assert_eq!(
            AliasSource::parse("Info@X.Test").unwrap().to_string(),
            "Info@x.test"
        );
        assert!(AliasSource::parse("@").is_err());
        assert!(AliasSource::parse("@@x.test").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_display_reparses(s in "\\PC{0,80}") {
            if let Ok(a) = Address::parse(&s) {
                let again = Address::parse(&a.to_string()).unwrap();
                prop_assert_eq!(again.key(), a.key());
                prop_assert_eq!(again.to_string(), a.to_string());
            }
        }

        #[test]
        fn key_is_case_insensitive(local in "[A-Za-z0-9+_-]{1,20}", domain in "[A-Za-z0-9]{1,10}\\.[A-Za-z]{2,5}") {
            let a = Address::parse(&format!("{local}@{domain}")).unwrap();
            let b = Address::parse(&format!("{}@{}", local.to_uppercase(), domain.to_lowercase())).unwrap();
            prop_assert_eq!(a.key(), b.key());
        }
    }
}
