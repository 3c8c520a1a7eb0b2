//! Who may change what: a least-privilege policy per TSIG key.
//!
//! A policy file has one rule per line (`#` starts a comment):
//!
//! ```text
//! # update KEY NAME-PATTERN TYPES        TYPES: TXT or TXT,A or *
//! update dkim-signer. *._domainkey.@ TXT
//! update admin.       *                 *
//! update acme.        _acme-challenge.*.@ TXT
//! # transfer KEY                         may AXFR/IXFR every zone
//! transfer secondary.
//! ```
//!
//! Name patterns are relative to each zone (`@` is the apex; a name
//! without a trailing dot gets the zone appended): `*` matches every name
//! of the zone, `*.X` every name strictly below `X`, `L.*.X` every name
//! whose first label is `L` followed by a name strictly below `X` (so
//! `_acme-challenge.*.@` is the ACME DNS-01 name of every host of the zone
//! but the apex), anything else exactly that name. A key with no rule may change nothing and transfer nothing
//! (fail closed). Deleting every RRset of a name (type ANY) needs a rule
//! with `*` types.

use crate::Error;
use hickory_proto::rr::{Name, RecordType};
use std::collections::BTreeSet;
use std::str::FromStr;

/// Largest policy file read.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Most rules in a policy.
pub const MAX_RULES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Every name in the zone.
    Any,
    /// Exactly this name (relative form kept; resolved per zone).
    Exact(String),
    /// Strictly below this name.
    Below(String),
    /// This first label, then a name strictly below this name.
    LabelBelow(String, String),
}

/// One `update` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    key: Name,
    pattern: Pattern,
    /// `None`: every type.
    types: Option<BTreeSet<RecordType>>,
}

/// The update and transfer rights of each key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    transfer: BTreeSet<Name>,
    /// Every key may do everything (no policy file was given).
    open: bool,
}

fn resolve(pattern: &str, origin: &Name) -> Option<Name> {
    let text = if pattern == "@" {
        return Some(origin.clone());
    } else if let Some(rel) = pattern.strip_suffix(".@") {
        format!("{rel}.{}", origin.to_ascii())
    } else if pattern.ends_with('.') {
        pattern.to_string()
    } else {
        format!("{pattern}.{}", origin.to_ascii())
    };
    let text = text.replace("..", ".");
    let mut name = Name::from_ascii(&text).ok()?;
    name.set_fqdn(true);
    Some(name.to_lowercase())
}

impl Policy {
    /// A policy giving every key every right (used when no policy file is
    /// configured; the operator then trusts each key fully).
    pub fn allow_all() -> Self {
        Policy {
            open: true,
            ..Policy::default()
        }
    }

    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(Error::BadPolicy("policy file too large".into()));
        }
        let mut policy = Policy::default();
        for (i, line) in text.lines().enumerate() {
            let at = |m: &str| Error::BadPolicy(format!("line {}: {m}", i + 1));
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["update", key, pattern, types] => {
                    let key = crate::tsig::parse_name(key).map_err(|e| at(&e.to_string()))?;
                    let pattern = if *pattern == "*" {
                        Pattern::Any
                    } else if let Some(rest) = pattern.strip_prefix("*.") {
                        Pattern::Below(rest.to_ascii_lowercase())
                    } else if let Some((label, rest)) =
                        pattern.split_once(".*.").filter(|(l, r)| {
                            !l.contains(['*', '.']) && !l.is_empty() && !r.contains('*')
                        })
                    {
                        Pattern::LabelBelow(label.to_ascii_lowercase(), rest.to_ascii_lowercase())
                    } else if pattern.contains('*') {
                        return Err(at(
                            "`*` is allowed only as the first label, or as the second after a fixed one",
                        ));
                    } else {
                        Pattern::Exact(pattern.to_ascii_lowercase())
                    };
                    let types = if *types == "*" {
                        None
                    } else {
                        let mut set = BTreeSet::new();
                        for t in types.split(',') {
                            let rtype = RecordType::from_str(&t.to_ascii_uppercase())
                                .map_err(|_| at(&format!("unknown record type {t:?}")))?;
                            set.insert(rtype);
                        }
                        Some(set)
                    };
                    policy.rules.push(Rule {
                        key,
                        pattern,
                        types,
                    });
                }
                ["transfer", key] => {
                    let key = crate::tsig::parse_name(key).map_err(|e| at(&e.to_string()))?;
                    policy.transfer.insert(key);
                }
                _ => {
                    return Err(at(
                        "expected `update KEY NAME-PATTERN TYPES` or `transfer KEY`",
                    ));
                }
            }
            if policy.rules.len() > MAX_RULES {
                return Err(at("too many rules"));
            }
        }
        Ok(policy)
    }

    /// Whether `key` may add or delete `rtype` records at `name` in the
    /// zone `origin` (`RecordType::ANY`: every type at once).
    pub fn may_update(&self, key: &Name, origin: &Name, name: &Name, rtype: RecordType) -> bool {
        if self.open {
            return true;
        }
        let key = key.to_lowercase();
        let name = name.to_lowercase();
        self.rules.iter().any(|rule| {
            if rule.key != key {
                return false;
            }
            let types_ok = match &rule.types {
                None => true,
                Some(set) => rtype != RecordType::ANY && set.contains(&rtype),
            };
            if !types_ok {
                return false;
            }
            match &rule.pattern {
                Pattern::Any => origin.zone_of(&name),
                Pattern::Exact(p) => resolve(p, origin).is_some_and(|n| n == name),
                Pattern::Below(p) => resolve(p, origin).is_some_and(|base| {
                    origin.zone_of(&base) && base.zone_of(&name) && base != name
                }),
                Pattern::LabelBelow(label, p) => {
                    let first = name.iter().next();
                    let rest = name.base_name();
                    first.is_some_and(|l| l.eq_ignore_ascii_case(label.as_bytes()))
                        && resolve(p, origin).is_some_and(|base| {
                            origin.zone_of(&base) && base.zone_of(&rest) && base != rest
                        })
                }
            }
        })
    }

    /// Whether `key` may transfer zones (AXFR, IXFR).
    pub fn may_transfer(&self, key: &Name) -> bool {
        self.open || self.transfer.contains(&key.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    const POLICY: &str = "# dkim\nupdate dkim. *._domainkey.@ TXT\nupdate web. www A,AAAA\nupdate admin. * *\ntransfer sec.\n";

    #[test]
    fn dkim_key_is_confined() {
        let p = Policy::parse(POLICY).unwrap();
        let z = n("example.org.");
        let dkim = n("dkim.");
        assert!(p.may_update(&dkim, &z, &n("s1._domainkey.example.org."), RecordType::TXT));
        assert!(p.may_update(
            &dkim,
            &z,
            &n("a.b._domainkey.example.org."),
            RecordType::TXT
        ));
        assert!(!p.may_update(&dkim, &z, &n("_domainkey.example.org."), RecordType::TXT));
        assert!(!p.may_update(&dkim, &z, &n("example.org."), RecordType::MX));
        assert!(!p.may_update(&dkim, &z, &n("s1._domainkey.example.org."), RecordType::A));
        assert!(!p.may_update(&dkim, &z, &n("s1._domainkey.example.org."), RecordType::ANY));
        assert!(!p.may_update(&dkim, &z, &n("s1._domainkey.example.net."), RecordType::TXT));
        assert!(p.may_update(&n("web."), &z, &n("www.example.org."), RecordType::AAAA));
        assert!(!p.may_update(&n("web."), &z, &n("w.www.example.org."), RecordType::A));
        assert!(p.may_update(&n("admin."), &z, &n("example.org."), RecordType::ANY));
        assert!(!p.may_update(&n("stranger."), &z, &n("www.example.org."), RecordType::A));
        assert!(p.may_transfer(&n("SEC.")));
        assert!(!p.may_transfer(&dkim));
    }

    #[test]
    fn acme_key_is_confined_to_challenge_names() {
        let p = Policy::parse(
            "update acme. _acme-challenge.@ TXT\nupdate acme. _acme-challenge.*.@ TXT\n",
        )
        .unwrap();
        let z = n("example.org.");
        let acme = n("acme.");
        for ok in [
            "_acme-challenge.example.org.",
            "_acme-challenge.mail.example.org.",
            "_ACME-Challenge.a.b.example.org.",
        ] {
            assert!(p.may_update(&acme, &z, &n(ok), RecordType::TXT), "{ok}");
        }
        for refused in [
            "example.org.",
            "mail.example.org.",
            "x._acme-challenge.mail.example.org.",
            "_acme-challenge.mail.example.net.",
            "_acme-challenge.org.",
        ] {
            assert!(
                !p.may_update(&acme, &z, &n(refused), RecordType::TXT),
                "{refused}"
            );
        }
        assert!(!p.may_update(
            &acme,
            &z,
            &n("_acme-challenge.mail.example.org."),
            RecordType::A
        ));
        assert!(!p.may_update(
            &acme,
            &z,
            &n("_acme-challenge.mail.example.org."),
            RecordType::ANY
        ));
    }

    #[test]
    fn bad_policies() {
        assert!(Policy::parse("update k. a*b TXT\n").is_err());
        assert!(Policy::parse("update k. a.*.* TXT\n").is_err());
        assert!(Policy::parse("update k. a.b.*.@ TXT\n").is_err());
        assert!(Policy::parse("update k. * NOPE\n").is_err());
        assert!(Policy::parse("allow everything\n").is_err());
    }
}
