//! Recipient resolution over a directory map (sans-IO).
//!
//! The store loads the directory entries a resolution needs into a
//! [`Directory`] and calls [`expand`]; when the expansion meets a domain or an
//! address it has no entry for, it answers [`Expansion::Need`] with the keys
//! to load, and the store calls it again. Each call starts from scratch, so a
//! resolution takes at most [`MAX_ALIAS_DEPTH`] + 2 rounds.
//!
//! Rules:
//! - a recipient whose domain is not local is [`Resolution::NotLocal`];
//! - an address owned by an account delivers to that account's mailbox and
//!   to its forwarding targets (the mailbox keeps a copy);
//! - aliases whose source is the exact address add their targets;
//! - a catch-all (`@domain`) is used only when the address has neither an
//!   owner nor an exact alias;
//! - targets are expanded recursively up to [`MAX_ALIAS_DEPTH`] levels, an
//!   address already visited is skipped (loops end there), and at most
//!   [`MAX_ALIAS_EXPANSION`] addresses are visited;
//! - a target in a non-local domain is forwarded to as is;
//! - when nothing is delivered anywhere the answer is [`Resolution::Unknown`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::address::{Address, Domain};

/// Deepest alias chain followed (the recipient itself is depth 0).
pub const MAX_ALIAS_DEPTH: usize = 8;
/// Most addresses visited while expanding one recipient.
pub const MAX_ALIAS_EXPANSION: usize = 256;

/// What a recipient address resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not one of ours: relay (if allowed) or refuse.
    NotLocal,
    /// The domain is ours but nobody receives mail at this address.
    Unknown,
    /// Deliver to these local mailboxes and forward to these external addresses.
    Deliver {
        /// Account logins whose mailboxes get a copy, in discovery order, no duplicates.
        mailboxes: Vec<String>,
        /// External addresses to forward to, in discovery order, no duplicates.
        forward: Vec<String>,
    },
}

/// The account owning an address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// The account login (an address).
    pub login: String,
    /// The account's forwarding targets.
    pub forward: Vec<String>,
}

/// What the directory knows about one address key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressEntry {
    /// The account owning the address, if any.
    pub owner: Option<Owner>,
    /// Targets of aliases whose source is exactly this address.
    pub aliases: Vec<String>,
}

/// What the directory knows about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEntry {
    /// Not a local domain.
    Foreign,
    /// A local domain and the targets of its catch-all aliases (maybe none).
    Local {
        /// Targets of `@domain` aliases.
        catch_all: Vec<String>,
    },
}

/// The loaded part of the directory, keyed by normalised domain and address key.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Domain entries by normalised domain.
    pub domains: HashMap<String, DomainEntry>,
    /// Address entries by address key ([`Address::key`]).
    pub addresses: HashMap<String, AddressEntry>,
}

/// An entry the expansion needs and the directory lacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Need {
    /// A domain entry (normalised domain).
    Domain(String),
    /// An address entry (address key).
    Address(String),
}

/// The outcome of one expansion round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// The answer.
    Done(Resolution),
    /// Load these entries and call [`expand`] again.
    Need(Vec<Need>),
}

fn push_unique(list: &mut Vec<String>, seen: &mut HashSet<String>, key: String, value: &str) {
    if seen.insert(key) {
        list.push(value.to_owned());
    }
}

/// Expands `recipient` over `dir` (see the module documentation for the rules).
pub fn expand(dir: &Directory, recipient: &Address) -> Expansion {
    let domain = recipient.domain().as_str();
    match dir.domains.get(domain) {
        None => return Expansion::Need(vec![Need::Domain(domain.to_owned())]),
        Some(DomainEntry::Foreign) => return Expansion::Done(Resolution::NotLocal),
        Some(DomainEntry::Local { .. }) => {}
    }
    let mut needs: Vec<Need> = Vec::new();
    let mut visited: HashSet<String> = HashSet::new();
    let mut mailboxes = Vec::new();
    let mut mailbox_keys = HashSet::new();
    let mut forward = Vec::new();
    let mut forward_keys = HashSet::new();
    // Depth-first, in the order targets were given.
    let mut stack: Vec<(String, usize)> = vec![(recipient.to_string(), 0)];
    while let Some((target, depth)) = stack.pop() {
        let Ok(addr) = Address::parse(&target) else {
            continue; // the store validates targets on the way in; skip a bad one
        };
        let key = addr.key();
        if visited.contains(&key) {
            continue;
        }
        if visited.len() >= MAX_ALIAS_EXPANSION {
            break;
        }
        let entry_domain = match dir.domains.get(addr.domain().as_str()) {
            Some(e) => e,
            None => {
                needs.push(Need::Domain(addr.domain().as_str().to_owned()));
                continue;
            }
        };
        let catch_all = match entry_domain {
            DomainEntry::Foreign => {
                visited.insert(key.clone());
                push_unique(&mut forward, &mut forward_keys, key, &addr.to_string());
                continue;
            }
            DomainEntry::Local { catch_all } => catch_all,
        };
        let Some(entry) = dir.addresses.get(&key) else {
            needs.push(Need::Address(key));
            continue;
        };
        visited.insert(key);
        let mut targets: Vec<&String> = Vec::new();
        if let Some(owner) = &entry.owner {
            let login_key = Address::parse(&owner.login)
                .map(|a| a.key())
                .unwrap_or_else(|_| owner.login.to_lowercase());
            push_unique(&mut mailboxes, &mut mailbox_keys, login_key, &owner.login);
            targets.extend(owner.forward.iter());
        }
        targets.extend(entry.aliases.iter());
        if entry.owner.is_none() && entry.aliases.is_empty() {
            targets.extend(catch_all.iter());
        }
        if depth >= MAX_ALIAS_DEPTH {
            continue;
        }
        for t in targets.into_iter().rev() {
            stack.push((t.clone(), depth + 1));
        }
    }
    if !needs.is_empty() {
        let mut seen = HashSet::new();
        needs.retain(|n| seen.insert(n.clone()));
        return Expansion::Need(needs);
    }
    if mailboxes.is_empty() && forward.is_empty() {
        Expansion::Done(Resolution::Unknown)
    } else {
        Expansion::Done(Resolution::Deliver { mailboxes, forward })
    }
}

/// Most entries a [`DirectoryCache`] keeps before it starts over (a
/// client naming many unknown addresses cannot grow it without bound).
pub const MAX_CACHED_ENTRIES: usize = 4096;

/// Entries loaded by earlier resolutions, valid while the store's
/// directory version (a counter that every change to domains, accounts,
/// addresses, forwarding targets or aliases increments) is the one they
/// were loaded under.
///
/// An entry is loaded after its version was read, so it is at least as
/// new as that version; entries are kept only under the newest version
/// seen, and a newer version empties the cache.
///
/// It also keeps when the version was last read, so that resolutions in
/// quick succession (one per recipient of every message) can skip
/// reading it again ([`DirectoryCache::recent_version`]).
#[derive(Debug, Default)]
pub struct DirectoryCache {
    version: Option<i64>,
    dir: Directory,
    /// The version last read, and when its read started.
    read: Option<(i64, Instant)>,
    /// When the directory was last changed through this handle.
    changed: Option<Instant>,
}

impl DirectoryCache {
    /// The version read less than `within` before `now`, if any.
    pub fn recent_version(&self, now: Instant, within: Duration) -> Option<i64> {
        self.read
            .filter(|(_, at)| now.saturating_duration_since(*at) < within)
            .map(|(v, _)| v)
    }

    /// Notes that `version` was read by a query started at `at` (never
    /// moving the note back to an older read, nor keeping a read that
    /// started before the last change through this handle).
    pub fn read_version(&mut self, version: i64, at: Instant) {
        let newer = self.read.is_none_or(|(_, last)| last <= at);
        if newer && self.changed.is_none_or(|c| c <= at) {
            self.read = Some((version, at));
        }
    }

    /// The directory was changed through this handle at `at` (when the
    /// change ended): the next resolution reads the version again.
    pub fn changed(&mut self, at: Instant) {
        self.read = None;
        self.changed = Some(at);
    }

    /// Copies into `dir` the entries of `needs` cached under `version`,
    /// and returns the ones still to load.
    pub fn fill(&mut self, version: i64, dir: &mut Directory, needs: Vec<Need>) -> Vec<Need> {
        self.advance(version);
        if self.version != Some(version) {
            return needs;
        }
        needs
            .into_iter()
            .filter(|need| match need {
                Need::Domain(d) => match self.dir.domains.get(d) {
                    Some(e) => {
                        dir.domains.insert(d.clone(), e.clone());
                        false
                    }
                    None => true,
                },
                Need::Address(k) => match self.dir.addresses.get(k) {
                    Some(e) => {
                        dir.addresses.insert(k.clone(), e.clone());
                        false
                    }
                    None => true,
                },
            })
            .collect()
    }

    /// Keeps an entry loaded after `version` was read.
    pub fn remember_domain(&mut self, version: i64, domain: &str, entry: &DomainEntry) {
        if self.admit(version) {
            self.dir.domains.insert(domain.to_owned(), entry.clone());
        }
    }

    /// Keeps an entry loaded after `version` was read.
    pub fn remember_address(&mut self, version: i64, key: &str, entry: &AddressEntry) {
        if self.admit(version) {
            self.dir.addresses.insert(key.to_owned(), entry.clone());
        }
    }

    /// Forgets everything when `version` is newer than the cache's.
    fn advance(&mut self, version: i64) {
        if self.version.is_none_or(|v| v < version) {
            self.version = Some(version);
            self.dir = Directory::default();
        }
    }

    /// Whether an entry loaded under `version` may be kept.
    fn admit(&mut self, version: i64) -> bool {
        self.advance(version);
        if self.version != Some(version) {
            return false;
        }
        if self.dir.domains.len() + self.dir.addresses.len() >= MAX_CACHED_ENTRIES {
            self.dir = Directory::default();
        }
        true
    }
}

/// Normalises a domain for [`Directory::domains`]; `None` when invalid.
pub fn domain_key(domain: &str) -> Option<String> {
    Domain::parse(domain).ok().map(|d| d.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_version_read_lately_is_reused_until_a_change() {
        let t0 = Instant::now();
        let within = Duration::from_secs(1);
        let mut cache = DirectoryCache::default();
        assert_eq!(cache.recent_version(t0, within), None);
        cache.read_version(7, t0);
        assert_eq!(cache.recent_version(t0, within), Some(7));
        assert_eq!(cache.recent_version(t0 + within / 2, within), Some(7));
        assert_eq!(cache.recent_version(t0 + within, within), None);
        // An older read finishing late does not replace a newer one.
        cache.read_version(8, t0 + within);
        cache.read_version(7, t0);
        assert_eq!(cache.recent_version(t0 + within, within), Some(8));
        cache.changed(t0 + within);
        assert_eq!(cache.recent_version(t0 + within, within), None);
        // A read that started before the change ended does not count.
        cache.read_version(8, t0 + within / 2);
        assert_eq!(cache.recent_version(t0 + within, within), None);
        cache.read_version(9, t0 + within);
        assert_eq!(cache.recent_version(t0 + within, within), Some(9));
    }

    #[test]
    fn the_cache_serves_entries_of_its_version_only() {
        let local = DomainEntry::Local { catch_all: vec![] };
        let entry = AddressEntry {
            owner: Some(Owner {
                login: "a@a.test".into(),
                forward: vec![],
            }),
            aliases: vec![],
        };
        let needs = || {
            vec![
                Need::Domain("a.test".into()),
                Need::Address("a@a.test".into()),
            ]
        };
        let mut cache = DirectoryCache::default();
        let mut dir = Directory::default();
        assert_eq!(cache.fill(3, &mut dir, needs()), needs());
        cache.remember_domain(3, "a.test", &local);
        cache.remember_address(3, "a@a.test", &entry);
        assert!(cache.fill(3, &mut dir, needs()).is_empty());
        assert_eq!(dir.domains.get("a.test"), Some(&local));
        assert_eq!(dir.addresses.get("a@a.test"), Some(&entry));
        // A resolution that read an older version neither uses nor adds
        // entries; a newer version empties the cache.
        assert_eq!(cache.fill(2, &mut Directory::default(), needs()), needs());
        cache.remember_domain(2, "b.test", &DomainEntry::Foreign);
        assert_eq!(
            cache.fill(
                3,
                &mut Directory::default(),
                vec![Need::Domain("b.test".into())]
            ),
            vec![Need::Domain("b.test".into())]
        );
        assert_eq!(cache.fill(4, &mut Directory::default(), needs()), needs());
        cache.remember_domain(3, "a.test", &local);
        assert_eq!(cache.fill(4, &mut Directory::default(), needs()), needs());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = DirectoryCache::default();
        for i in 0..(MAX_CACHED_ENTRIES * 3) {
            cache.remember_address(1, &format!("u{i}@a.test"), &AddressEntry::default());
            assert!(cache.dir.addresses.len() <= MAX_CACHED_ENTRIES);
        }
    }

    fn dir() -> Directory {
        let mut d = Directory::default();
        d.domains
            .insert("a.test".into(), DomainEntry::Local { catch_all: vec![] });
        d.domains.insert(
            "c.test".into(),
            DomainEntry::Local {
                catch_all: vec!["bob@a.test".into()],
            },
        );
        d.domains.insert("ext.test".into(), DomainEntry::Foreign);
        let owner = |login: &str, fwd: &[&str]| AddressEntry {
            owner: Some(Owner {
                login: login.into(),
                forward: fwd.iter().map(|s| s.to_string()).collect(),
            }),
            aliases: vec![],
        };
        d.addresses
            .insert("alice@a.test".into(), owner("Alice@a.test", &[]));
        d.addresses
            .insert("bob@a.test".into(), owner("bob@a.test", &["Bob@Ext.test"]));
        d.addresses.insert(
            "team@a.test".into(),
            AddressEntry {
                owner: None,
                aliases: vec![
                    "alice@a.test".into(),
                    "BOB@a.test".into(),
                    "carol@ext.test".into(),
                ],
            },
        );
        d.addresses.insert(
            "loop1@a.test".into(),
            AddressEntry {
                owner: None,
                aliases: vec!["loop2@a.test".into()],
            },
        );
        d.addresses.insert(
            "loop2@a.test".into(),
            AddressEntry {
                owner: None,
                aliases: vec!["loop1@a.test".into(), "alice@a.test".into()],
            },
        );
        d.addresses
            .insert("ghost@a.test".into(), AddressEntry::default());
        d.addresses.insert(
            "info@c.test".into(),
            AddressEntry {
                owner: None,
                aliases: vec!["alice@a.test".into()],
            },
        );
        d
    }

    fn run(d: &Directory, a: &str) -> Expansion {
        expand(d, &Address::parse(a).unwrap())
    }

    fn deliver(m: &[&str], f: &[&str]) -> Expansion {
        Expansion::Done(Resolution::Deliver {
            mailboxes: m.iter().map(|s| s.to_string()).collect(),
            forward: f.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn resolution_rules() {
        let d = dir();
        assert_eq!(run(&d, "x@ext.test"), Expansion::Done(Resolution::NotLocal));
        assert_eq!(
            run(&d, "ghost@a.test"),
            Expansion::Done(Resolution::Unknown)
        );
        assert_eq!(run(&d, "ALICE@A.test"), deliver(&["Alice@a.test"], &[]));
        assert_eq!(
            run(&d, "bob@a.test"),
            deliver(&["bob@a.test"], &["Bob@ext.test"])
        );
        assert_eq!(
            run(&d, "team@a.test"),
            deliver(
                &["Alice@a.test", "bob@a.test"],
                &["Bob@ext.test", "carol@ext.test"]
            )
        );
        assert_eq!(run(&d, "loop1@a.test"), deliver(&["Alice@a.test"], &[]));
        // exact match wins over catch-all; catch-all otherwise
        assert_eq!(run(&d, "info@c.test"), deliver(&["Alice@a.test"], &[]));
        assert_eq!(
            run(&d, "anything@c.test"),
            Expansion::Need(vec![Need::Address("anything@c.test".into())])
        );
        let mut d2 = d.clone();
        d2.addresses
            .insert("anything@c.test".into(), AddressEntry::default());
        assert_eq!(
            run(&d2, "anything@c.test"),
            deliver(&["bob@a.test"], &["Bob@ext.test"])
        );
        // unknown domain asks
        assert_eq!(
            run(&d, "x@new.test"),
            Expansion::Need(vec![Need::Domain("new.test".into())])
        );
    }

    #[test]
    fn depth_limit_stops_long_chains() {
        let mut d = Directory::default();
        d.domains
            .insert("a.test".into(), DomainEntry::Local { catch_all: vec![] });
        let n = MAX_ALIAS_DEPTH + 3;
        for i in 0..n {
            d.addresses.insert(
                format!("l{i}@a.test"),
                AddressEntry {
                    owner: None,
                    aliases: vec![format!("l{}@a.test", i + 1)],
                },
            );
        }
        d.addresses.insert(
            format!("l{n}@a.test"),
            AddressEntry {
                owner: Some(Owner {
                    login: "end@a.test".into(),
                    forward: vec![],
                }),
                aliases: vec![],
            },
        );
        assert_eq!(
            run(&d, &format!("l{}@a.test", n - MAX_ALIAS_DEPTH)),
            deliver(&["end@a.test"], &[])
        );
        assert_eq!(
            run(&d, &format!("l{}@a.test", n - MAX_ALIAS_DEPTH - 1)),
            Expansion::Done(Resolution::Unknown)
        );
    }

    #[test]
    fn catch_all_loop_ends() {
        let mut d = Directory::default();
        d.domains.insert(
            "a.test".into(),
            DomainEntry::Local {
                catch_all: vec!["nobody@a.test".into()],
            },
        );
        d.addresses
            .insert("x@a.test".into(), AddressEntry::default());
        d.addresses
            .insert("nobody@a.test".into(), AddressEntry::default());
        assert_eq!(run(&d, "x@a.test"), Expansion::Done(Resolution::Unknown));
    }

    proptest! {
        // Random alias graphs: expansion terminates, never names a mailbox twice,
        // and every mailbox is the login of some owner entry.
        #[test]
        fn random_graphs_terminate(edges in proptest::collection::vec((0usize..12, 0usize..14), 0..40), owners in proptest::collection::vec(0usize..12, 0..6)) {
            let mut d = Directory::default();
            d.domains.insert("a.test".into(), DomainEntry::Local { catch_all: vec!["n0@a.test".into()] });
            d.domains.insert("x.test".into(), DomainEntry::Foreign);
            let name = |i: usize| if i < 12 { format!("n{i}@a.test") } else { format!("f{i}@x.test") };
            for i in 0..12 {
                d.addresses.insert(name(i), AddressEntry::default());
            }
            for (from, to) in &edges {
                d.addresses.get_mut(&name(*from)).unwrap().aliases.push(name(*to));
            }
            for o in &owners {
                d.addresses.get_mut(&name(*o)).unwrap().owner = Some(Owner { login: name(*o), forward: vec![] });
            }
            for start in 0..12 {
                match run(&d, &name(start)) {
                    Expansion::Done(Resolution::Deliver { mailboxes, forward }) => {
                        let set: HashSet<_> = mailboxes.iter().collect();
                        prop_assert_eq!(set.len(), mailboxes.len());
                        for m in &mailboxes {
                            prop_assert!(owners.iter().any(|o| &name(*o) == m));
                        }
                        for f in &forward {
                            prop_assert!(f.ends_with("@x.test"));
                        }
                    }
                    Expansion::Done(Resolution::Unknown) => {}
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
