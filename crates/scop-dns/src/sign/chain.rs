//! The denial-of-existence chain (NSEC, RFC 4034 4; NSEC3, RFC 5155
//! 7.1), kept in step with the zone's data one name at a time.
//!
//! The signer remembers the chain it published ([`Chain`]): every name
//! of the chain with its type bit map and, for NSEC3, its hashed owner
//! name (so no name is hashed twice). An update touches a few names;
//! only those, and for NSEC3 their ancestors (which may become or stop
//! being empty non-terminals), are looked at again, and only the chain
//! entries that changed and the predecessors of those added or removed
//! get new records (and, through `forced`, new signatures):
//!
//! ```text
//!   update adds      x.a.example.   (a.example. did not exist)
//!   looked at        x.a.example.  a.example.         (ancestors: ENTs)
//!   entries added    H(x.a)  H(a)       (in hash order, among the rest)
//!   records written  NSEC3 at H(x.a), H(a), and at the entries just
//!                    before each of them (their "next" field changed)
//! ```
//!
//! The whole-zone build ([`Zone::rebuild_chain`]) serves the first
//! signing, delegation changes (they change what is authoritative below
//! the cut), a new SOA minimum or TTL (every entry's TTL), and any time
//! the remembered chain may be out of step with the data: a revert or a
//! journal replay forgets it (`Zone::chain` becomes `None`).
//!
//! **Invariant:** after [`Zone::resign`] returns `Ok`, `Zone::chain` is
//! exactly the chain a whole-zone build of the current data gives, and
//! the zone's NSEC or NSEC3 records are exactly its records.

use super::Auth;
use crate::Error;
use crate::dnssec::{Denial, Settings, nsec_rdata, nsec3_hash, nsec3_label, nsec3_rdata, opaque};
use crate::zone::Zone;
use hickory_proto::rr::{Name, Record, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

/// An NSEC3 hash (SHA-1).
type Hash = [u8; 20];

/// One name of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// NSEC3: the name's hash; NSEC: `None`.
    hash: Option<Hash>,
    /// The type bit map its record carries.
    types: BTreeSet<u16>,
}

/// The chain the signer published, by owner name (and, for NSEC3, by
/// hash: the chain's order).
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    denial: Denial,
    iterations: u16,
    ttl: u32,
    entries: BTreeMap<Name, Entry>,
    by_hash: BTreeMap<Hash, Name>,
}

impl Chain {
    fn new(settings: &Settings, ttl: u32) -> Self {
        Chain {
            denial: settings.denial,
            iterations: settings.nsec3_iterations,
            ttl,
            entries: BTreeMap::new(),
            by_hash: BTreeMap::new(),
        }
    }

    /// Whether the chain was built with these parameters.
    fn fits(&self, settings: &Settings, ttl: u32) -> bool {
        self.denial == settings.denial
            && self.iterations == settings.nsec3_iterations
            && self.ttl == ttl
    }

    /// The cached NSEC3 hash of a chain name.
    pub(crate) fn hash_of(&self, name: &Name) -> Option<Hash> {
        self.entries.get(name).and_then(|e| e.hash)
    }

    fn hash(&self, name: &Name) -> Option<Hash> {
        match self.denial {
            Denial::Nsec3 => Some(
                self.hash_of(name)
                    .unwrap_or_else(|| nsec3_hash(name, &[], self.iterations)),
            ),
            Denial::Nsec => None,
        }
    }

    fn insert(&mut self, name: Name, entry: Entry) {
        if let Some(h) = entry.hash {
            self.by_hash.insert(h, name.clone());
        }
        self.entries.insert(name, entry);
    }

    fn remove(&mut self, name: &Name) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        if let Some(h) = entry.hash {
            self.by_hash.remove(&h);
        }
        Some(entry)
    }

    /// The chain name just before the position of `name` (or of `hash`),
    /// wrapping around; whether or not that name is in the chain.
    fn predecessor(&self, name: &Name, hash: Option<Hash>) -> Option<&Name> {
        match hash {
            Some(h) => self
                .by_hash
                .range(..h)
                .next_back()
                .or_else(|| self.by_hash.iter().next_back())
                .map(|(_, n)| n),
            None => self
                .entries
                .range(..name.clone())
                .next_back()
                .or_else(|| self.entries.iter().next_back())
                .map(|(n, _)| n),
        }
    }

    /// The NSEC3 owner name of a hash.
    fn owner(origin: &Name, hash: &Hash) -> Result<Name, Error> {
        origin
            .prepend_label(nsec3_label(hash).as_str())
            .map_err(|e| Error::Encode(e.to_string()))
    }

    /// The NSEC or NSEC3 record of a chain name, `None` if the name is
    /// not in the chain.
    fn record(&self, origin: &Name, name: &Name) -> Result<Option<Record>, Error> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        let rec = match entry.hash {
            Some(h) => {
                let next = self
                    .by_hash
                    .range((Excluded(h), Unbounded))
                    .next()
                    .or_else(|| self.by_hash.iter().next())
                    .map_or(h, |(n, _)| *n);
                opaque(
                    Self::owner(origin, &h)?,
                    self.ttl,
                    RecordType::NSEC3,
                    nsec3_rdata(&next, &entry.types, self.iterations),
                )
            }
            None => {
                let next = self
                    .entries
                    .range((Excluded(name.clone()), Unbounded))
                    .next()
                    .or_else(|| self.entries.iter().next())
                    .map_or(name, |(n, _)| n);
                opaque(
                    name.clone(),
                    self.ttl,
                    RecordType::NSEC,
                    nsec_rdata(next, &entry.types),
                )
            }
        };
        Ok(Some(rec))
    }
}

impl Zone {
    /// The type bit map `name` wants in the chain, `None` when it has no
    /// entry: occluded names (below a cut) have none; with NSEC, only
    /// names owning data have one; with NSEC3, empty non-terminals too
    /// (RFC 5155 7.1).
    fn chain_types(&self, name: &Name, denial: Denial) -> Option<BTreeSet<u16>> {
        if !self.origin.zone_of(name) {
            return None;
        }
        let auth = self.auth(name);
        if auth == Auth::Occluded {
            return None;
        }
        let rrsig = u16::from(RecordType::RRSIG);
        match denial {
            Denial::Nsec => {
                let mut types = self.types_at(name);
                if types.is_empty() {
                    return None;
                }
                types.insert(rrsig);
                types.insert(u16::from(RecordType::NSEC));
                Some(types)
            }
            Denial::Nsec3 if self.nodes.contains_key(name) => {
                let mut types = self.types_at(name);
                if auth == Auth::Yes || types.contains(&u16::from(RecordType::DS)) {
                    types.insert(rrsig);
                }
                Some(types)
            }
            // Not owning data, not occluded: the first name below it in
            // canonical order has no cut above it, so it is in the chain
            // and this name is an empty non-terminal.
            Denial::Nsec3 => self.name_in_use(name).then(BTreeSet::new),
        }
    }

    /// Brings the chain (`self.chain`) and its records in line with the
    /// data: incrementally from the remembered chain over the names in
    /// `touched` when it can, else by a whole-zone build. On error
    /// `self.chain` is left `None` (the next call rebuilds).
    pub(super) fn sync_chain(
        &mut self,
        settings: &Settings,
        touched: &BTreeSet<Name>,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<(), Error> {
        let ttl = self.negative_ttl();
        // A cut added or removed changes what is authoritative below it.
        let cut_changed = forced
            .iter()
            .any(|(n, t)| *t == RecordType::NS && *n != self.origin);
        let chain = match self.chain.take() {
            Some(mut chain) if chain.fits(settings, ttl) && !cut_changed => {
                self.update_chain(&mut chain, touched, deleted, added, forced)?;
                chain
            }
            old => self.rebuild_chain(settings, old, deleted, added, forced)?,
        };
        self.chain = Some(chain);
        Ok(())
    }

    /// The whole-zone build: every name's entry, every record compared
    /// with the one in place. Hashes of `old` are reused.
    fn rebuild_chain(
        &mut self,
        settings: &Settings,
        old: Option<Chain>,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<Chain, Error> {
        let mut chain = Chain::new(settings, self.negative_ttl());
        let cache = old.filter(|c| c.denial == chain.denial && c.iterations == chain.iterations);
        let mut names: BTreeMap<Name, BTreeSet<u16>> = BTreeMap::new();
        let base = self.origin.num_labels();
        for name in self.nodes.keys() {
            let Some(types) = self.chain_types(name, chain.denial) else {
                continue;
            };
            names.insert(name.clone(), types);
            if chain.denial == Denial::Nsec3 {
                // Empty non-terminals get an NSEC3 too (RFC 5155 7.1).
                let mut parent = name.base_name();
                while parent.num_labels() > base {
                    names.entry(parent.clone()).or_default();
                    parent = parent.base_name();
                }
            }
        }
        for (name, types) in names {
            let hash = match &cache {
                Some(c) if chain.denial == Denial::Nsec3 => {
                    c.hash_of(&name).or_else(|| chain.hash(&name))
                }
                _ => chain.hash(&name),
            };
            chain.insert(name, Entry { hash, types });
        }
        // Records of names that left the chain.
        match chain.denial {
            Denial::Nsec3 => {
                let want: BTreeSet<Name> = chain
                    .by_hash
                    .keys()
                    .map(|h| Chain::owner(&self.origin, h))
                    .collect::<Result<_, _>>()?;
                let stale: Vec<Record> = self
                    .nsec3
                    .iter()
                    .filter(|(n, _)| !want.contains(*n))
                    .map(|(_, r)| r.clone())
                    .collect();
                for r in stale {
                    self.remove(&r);
                    forced.insert((r.name.clone(), RecordType::NSEC3));
                    deleted.push(r);
                }
            }
            Denial::Nsec => {
                let stale: Vec<Name> = self
                    .nodes
                    .iter()
                    .filter(|(n, node)| {
                        node.contains_key(&RecordType::NSEC) && !chain.entries.contains_key(*n)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in stale {
                    self.replace_set(&name, RecordType::NSEC, Vec::new(), deleted, added, forced)?;
                }
            }
        }
        let names: Vec<Name> = chain.entries.keys().cloned().collect();
        for name in names {
            if let Some(rec) = chain.record(&self.origin, &name)? {
                self.put_chain_record(rec, deleted, added, forced)?;
            }
        }
        Ok(chain)
    }

    /// Updates `chain` over the names `touched` (and, for NSEC3, their
    /// ancestors), rewriting only the records that change.
    fn update_chain(
        &mut self,
        chain: &mut Chain,
        touched: &BTreeSet<Name>,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<(), Error> {
        let base = self.origin.num_labels();
        let mut affected: BTreeSet<Name> = BTreeSet::new();
        for name in touched.iter().filter(|n| self.origin.zone_of(n)) {
            let mut name = name.clone();
            if chain.denial == Denial::Nsec3 {
                while name.num_labels() > base && affected.insert(name.clone()) {
                    name = name.base_name();
                }
            }
            affected.insert(name);
        }
        // Entries whose record must be written, and the names added to or
        // removed from the chain (their predecessors' "next" changes).
        let mut rewrite: BTreeSet<Name> = BTreeSet::new();
        let mut moved: Vec<(Name, Option<Hash>)> = Vec::new();
        for name in affected {
            let want = self.chain_types(&name, chain.denial);
            match (chain.entries.get_mut(&name), want) {
                (None, None) => {}
                (Some(entry), Some(types)) => {
                    if entry.types != types {
                        entry.types = types;
                        rewrite.insert(name);
                    }
                }
                (None, Some(types)) => {
                    let hash = chain.hash(&name);
                    chain.insert(name.clone(), Entry { hash, types });
                    moved.push((name.clone(), hash));
                    rewrite.insert(name);
                }
                (Some(_), None) => {
                    if let Some(entry) = chain.remove(&name) {
                        self.remove_chain_record(&name, entry.hash, deleted, added, forced)?;
                        moved.push((name, entry.hash));
                    }
                }
            }
        }
        for (name, hash) in &moved {
            if let Some(p) = chain.predecessor(name, *hash) {
                rewrite.insert(p.clone());
            }
        }
        for name in rewrite {
            if let Some(rec) = chain.record(&self.origin, &name)? {
                self.put_chain_record(rec, deleted, added, forced)?;
            }
        }
        Ok(())
    }

    /// Removes the NSEC or NSEC3 record of a name that left the chain.
    fn remove_chain_record(
        &mut self,
        name: &Name,
        hash: Option<Hash>,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<(), Error> {
        let Some(hash) = hash else {
            return self.replace_set(name, RecordType::NSEC, Vec::new(), deleted, added, forced);
        };
        let owner = Chain::owner(&self.origin, &hash)?;
        if let Some(old) = self.nsec3.get(&owner).cloned() {
            self.remove(&old);
            deleted.push(old);
            forced.insert((owner, RecordType::NSEC3));
        }
        Ok(())
    }

    /// Puts a chain record in place unless the same one is there.
    fn put_chain_record(
        &mut self,
        rec: Record,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<(), Error> {
        if rec.record_type() == RecordType::NSEC {
            let name = rec.name.clone();
            return self.replace_set(&name, RecordType::NSEC, vec![rec], deleted, added, forced);
        }
        match self.nsec3.get(&rec.name) {
            Some(old) if *old == rec => return Ok(()),
            Some(old) => {
                let old = old.clone();
                self.remove(&old);
                deleted.push(old);
            }
            None => {}
        }
        self.insert(rec.clone())?;
        forced.insert((rec.name.clone(), RecordType::NSEC3));
        added.push(rec);
        Ok(())
    }
}
