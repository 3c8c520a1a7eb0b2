//! The online signer of a [`Zone`]: the DNSKEY and NSEC3PARAM RRsets,
//! the NSEC or NSEC3 chain, the RRSIGs (RFC 4035 2), kept in step with
//! every change; and the DNSSEC part of answers when the query has the DO
//! bit (RFC 4035 3.1, RFC 5155 7.2).
//!
//! One routine, [`Zone::resign`], serves loading, updates and the
//! periodic refresh. It brings the chain in line with the data
//! ([`chain`]: incrementally, over the names an update touched and their
//! neighbours in the chain, or by a whole-zone build when signing
//! starts or a delegation changes), then signs only the RRsets that
//! changed, lack a signature by an active key, or hold one that expires
//! within the refresh window. An update's cost grows with what it
//! changes, not with the zone. Every record it removes or adds is
//! reported, so updates and refreshes reach the journal and IXFR.

use crate::Error;
use crate::dnssec::{
    Denial, INCEPTION_SKEW_SECS, MAX_KEYS_PER_ZONE, Settings, SigningKey, nsec3_hash, nsec3_label,
    nsec3param_rdata, opaque, sig_info, sign_rrset,
};
use crate::zone::{Lookup, Zone, ZoneDiff, lower};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeSet;

mod chain;
pub(crate) use chain::Chain;

/// Whether a name carries authoritative data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The apex or an ordinary name: every RRset is signed.
    Yes,
    /// A delegation point: only DS (and NSEC) are signed.
    Cut,
    /// Below a delegation (glue): nothing is signed, no chain entry.
    Occluded,
}

type Changes<'a> = (&'a mut Vec<Record>, &'a mut Vec<Record>);

impl Zone {
    /// Whether the zone is signed.
    pub fn is_signed(&self) -> bool {
        self.signer.is_some()
    }

    fn auth(&self, name: &Name) -> Auth {
        if name == &self.origin {
            return Auth::Yes;
        }
        if self.delegation(name, true).is_some() {
            return Auth::Occluded;
        }
        if self
            .nodes
            .get(name)
            .is_some_and(|n| n.contains_key(&RecordType::NS))
        {
            return Auth::Cut;
        }
        Auth::Yes
    }

    /// Types at a name, without the signer's NSEC.
    fn types_at(&self, name: &Name) -> BTreeSet<u16> {
        self.nodes
            .get(name)
            .map(|n| {
                n.keys()
                    .filter(|t| **t != RecordType::NSEC)
                    .map(|t| u16::from(*t))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn negative_ttl(&self) -> u32 {
        self.negative_soa().ttl
    }

    fn nsec3_owner(&self, name: &Name) -> Option<Name> {
        let iterations = self.signer.as_ref().map_or(0, |s| s.nsec3_iterations);
        let hash = self
            .chain
            .as_ref()
            .and_then(|c| c.hash_of(name))
            .unwrap_or_else(|| nsec3_hash(name, &[], iterations));
        let label = nsec3_label(&hash);
        self.origin.prepend_label(label.as_str()).ok()
    }

    /// Signs the zone with these keys (replacing any signing state) at
    /// `now`, and bumps the serial so that secondaries fetch the new
    /// signatures. Returns that serial change for the journal (its lists
    /// are empty: replaying it only moves the serial, and the signer makes
    /// the DNSSEC records afresh at every start). The history is cleared:
    /// differences recorded before carry other signatures, so IXFR from
    /// them falls back to a full transfer.
    pub fn sign(&mut self, settings: Settings, now: u64) -> Result<ZoneDiff, Error> {
        if settings.keys.is_empty() || settings.keys.len() > MAX_KEYS_PER_ZONE {
            return Err(Error::ApiMisuse(format!(
                "a signed zone needs 1 to {MAX_KEYS_PER_ZONE} keys"
            )));
        }
        if let Some(k) = settings.keys.iter().find(|k| k.zone() != &self.origin) {
            return Err(Error::ApiMisuse(format!(
                "key {} is for {}, not {}",
                k.tag(),
                k.zone(),
                self.origin
            )));
        }
        if settings.refresh >= settings.validity {
            return Err(Error::ApiMisuse(
                "the refresh window must be shorter than the signature validity".into(),
            ));
        }
        // Forget any previous signing state.
        let managed: Vec<Record> = self
            .records()
            .filter(|r| crate::dnssec::is_dnssec_type(r.record_type()))
            .cloned()
            .collect();
        for r in &managed {
            self.remove(r);
        }
        let old_soa = self.soa().clone();
        let mut new_soa = old_soa.clone();
        if let RData::SOA(data) = &mut new_soa.data {
            data.serial = data.serial.wrapping_add(1);
        }
        self.set_soa(new_soa.clone());
        self.signer = Some(settings);
        self.chain = None;
        self.history.clear();
        let (mut d, mut a) = (Vec::new(), Vec::new());
        self.resign(&BTreeSet::new(), true, now, (&mut d, &mut a))?;
        Ok(ZoneDiff {
            old_soa,
            new_soa,
            deleted: Vec::new(),
            added: Vec::new(),
        })
    }

    /// Brings the DNSSEC records in line with the data: `changed` are the
    /// RRsets whose content changed (their signatures are renewed). With
    /// `full`, every signature is checked (missing, by a retired key, or
    /// due for renewal); otherwise only those of the changed RRsets and
    /// chain entries. Every record removed or added is pushed to
    /// `changes`, also on error, so the caller can revert.
    pub(crate) fn resign(
        &mut self,
        changed: &BTreeSet<(Name, RecordType)>,
        full: bool,
        now: u64,
        changes: Changes<'_>,
    ) -> Result<(), Error> {
        let Some(settings) = self.signer.clone() else {
            return Ok(());
        };
        let (deleted, added) = changes;
        let mut forced = changed.clone();
        let origin = self.origin.clone();
        let soa_ttl = self.soa().ttl;
        let keys: Vec<Record> = settings
            .keys
            .iter()
            .map(|k| k.dnskey_record(soa_ttl))
            .collect();
        self.replace_set(
            &origin,
            RecordType::DNSKEY,
            keys,
            deleted,
            added,
            &mut forced,
        )?;
        let param = match settings.denial {
            Denial::Nsec3 => vec![opaque(
                origin.clone(),
                0,
                RecordType::NSEC3PARAM,
                nsec3param_rdata(settings.nsec3_iterations),
            )],
            Denial::Nsec => Vec::new(),
        };
        self.replace_set(
            &origin,
            RecordType::NSEC3PARAM,
            param,
            deleted,
            added,
            &mut forced,
        )?;
        // The names whose chain entry may change: those of the changed
        // RRsets (NSEC3 owners are the chain's own, not data).
        let touched: BTreeSet<Name> = forced
            .iter()
            .filter(|(_, t)| *t != RecordType::NSEC3)
            .map(|(n, _)| n.clone())
            .collect();
        self.sync_chain(&settings, &touched, deleted, added, &mut forced)?;
        self.sync_sigs(&settings, &forced, full, now, deleted, added)
    }

    /// Makes the RRset exactly `want` (data and TTL).
    fn replace_set(
        &mut self,
        name: &Name,
        rtype: RecordType,
        want: Vec<Record>,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
        forced: &mut BTreeSet<(Name, RecordType)>,
    ) -> Result<(), Error> {
        let have = self
            .rrset(name, rtype)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let same = have.len() == want.len()
            && have
                .iter()
                .all(|h| want.iter().any(|w| w.data == h.data && w.ttl == h.ttl));
        if same {
            return Ok(());
        }
        for r in have {
            self.remove(&r);
            deleted.push(r);
        }
        for r in want {
            self.insert(r.clone())?;
            added.push(r);
        }
        forced.insert((name.clone(), rtype));
        Ok(())
    }

    /// The RRsets that must carry signatures.
    fn signed_rrsets(&self) -> BTreeSet<(Name, RecordType)> {
        let mut out = BTreeSet::new();
        for (name, node) in &self.nodes {
            match self.auth(name) {
                Auth::Occluded => {}
                Auth::Cut => {
                    for t in [RecordType::DS, RecordType::NSEC] {
                        if node.contains_key(&t) {
                            out.insert((name.clone(), t));
                        }
                    }
                }
                Auth::Yes => {
                    for t in node.keys() {
                        out.insert((name.clone(), *t));
                    }
                }
            }
        }
        for owner in self.nsec3.keys() {
            out.insert((owner.clone(), RecordType::NSEC3));
        }
        out
    }

    fn rrset_for_signing(&self, name: &Name, rtype: RecordType) -> Vec<Record> {
        if rtype == RecordType::NSEC3 {
            return self.nsec3.get(name).cloned().into_iter().collect();
        }
        self.rrset(name, rtype)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Whether the RRset exists and must carry signatures.
    fn must_sign(&self, name: &Name, rtype: RecordType) -> bool {
        if rtype == RecordType::NSEC3 {
            return self.nsec3.contains_key(name);
        }
        if self.rrset(name, rtype).is_none() {
            return false;
        }
        match self.auth(name) {
            Auth::Yes => true,
            Auth::Cut => matches!(rtype, RecordType::DS | RecordType::NSEC),
            Auth::Occluded => false,
        }
    }

    /// `full`: check every RRset (signing, refresh, a delegation changed);
    /// otherwise only the `forced` ones.
    fn sync_sigs(
        &mut self,
        settings: &Settings,
        forced: &BTreeSet<(Name, RecordType)>,
        full: bool,
        now: u64,
        deleted: &mut Vec<Record>,
        added: &mut Vec<Record>,
    ) -> Result<(), Error> {
        let want: BTreeSet<(Name, RecordType)> = if full {
            self.signed_rrsets()
        } else {
            forced
                .iter()
                .filter(|(n, t)| self.must_sign(n, *t))
                .cloned()
                .collect()
        };
        // Signatures over RRsets that are gone or no longer signed (all of
        // them, or only among the changed RRsets).
        let stale: Vec<Record> = if full {
            self.sigs
                .iter()
                .flat_map(|(name, list)| list.iter().map(move |r| (name, r)))
                .filter(|(name, r)| {
                    sig_info(r).is_none_or(|i| {
                        !want.contains(&((*name).clone(), RecordType::from(i.covered)))
                    })
                })
                .map(|(_, r)| r.clone())
                .collect()
        } else {
            // Only the changed RRsets are looked at: no scan of the zone.
            forced
                .iter()
                .filter(|key| !want.contains(key))
                .flat_map(|(name, rtype)| self.sigs_for(name, *rtype).cloned())
                .collect()
        };
        for r in stale {
            self.remove(&r);
            deleted.push(r);
        }
        let has_sep = settings.keys.iter().any(SigningKey::is_sep);
        let has_zsk = settings.keys.iter().any(|k| !k.is_sep());
        let now32 = now as u32;
        let inception = now32.wrapping_sub(INCEPTION_SKEW_SECS);
        let expiration = now32.wrapping_add(settings.validity);
        for (name, rtype) in want {
            let signers: Vec<&SigningKey> = settings
                .keys
                .iter()
                .filter(|k| {
                    if rtype == RecordType::DNSKEY {
                        k.is_sep() || !has_sep
                    } else {
                        !k.is_sep() || !has_zsk
                    }
                })
                .collect();
            let existing: Vec<Record> = self
                .sigs
                .get(&name)
                .map(|l| {
                    l.iter()
                        .filter(|r| sig_info(r).is_some_and(|i| i.covered == u16::from(rtype)))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let by = |k: &SigningKey, r: &Record| {
                sig_info(r)
                    .is_some_and(|i| i.key_tag == k.tag() && i.algorithm == k.algorithm().number())
            };
            for old in existing
                .iter()
                .filter(|r| !signers.iter().any(|k| by(k, r)))
            {
                self.remove(old);
                deleted.push(old.clone());
            }
            let is_forced = forced.contains(&(name.clone(), rtype));
            let mut rrset: Option<Vec<Record>> = None;
            for key in signers {
                let old = existing.iter().find(|r| by(key, r));
                let fresh = old.is_some_and(|r| {
                    sig_info(r).is_some_and(|i| {
                        (i.expiration.wrapping_sub(now32) as i32) > settings.refresh as i32
                    })
                });
                if fresh && !is_forced {
                    continue;
                }
                if let Some(old) = old {
                    self.remove(old);
                    deleted.push(old.clone());
                }
                let set = rrset.get_or_insert_with(|| self.rrset_for_signing(&name, rtype));
                if set.is_empty() {
                    break;
                }
                let sig = sign_rrset(key, set, inception, expiration)?;
                self.insert(sig.clone())?;
                added.push(sig);
            }
        }
        Ok(())
    }

    /// Whether some signature expires within the refresh window.
    pub(crate) fn needs_refresh(&self, now: u64) -> bool {
        let Some(s) = &self.signer else { return false };
        let now32 = now as u32;
        self.sigs.values().flatten().any(|r| {
            sig_info(r)
                .is_none_or(|i| (i.expiration.wrapping_sub(now32) as i32) <= s.refresh as i32)
        })
    }

    /// Renews the signatures that expire within the refresh window (and
    /// only those), bumping the serial; `None` when nothing was due.
    pub fn refresh(&mut self, now: u64) -> Result<Option<ZoneDiff>, Error> {
        if !self.needs_refresh(now) {
            return Ok(None);
        }
        let old_soa = self.soa().clone();
        let mut new_soa = old_soa.clone();
        if let RData::SOA(data) = &mut new_soa.data {
            data.serial = data.serial.wrapping_add(1);
        }
        self.set_soa(new_soa.clone());
        let mut forced = BTreeSet::new();
        forced.insert((self.origin.clone(), RecordType::SOA));
        let (mut deleted, mut added) = (Vec::new(), Vec::new());
        let result = self.resign(&forced, true, now, (&mut deleted, &mut added));
        let diff = ZoneDiff {
            old_soa,
            new_soa,
            deleted,
            added,
        };
        if let Err(e) = result {
            self.revert(&diff)?;
            return Err(e);
        }
        self.push_history(diff.clone());
        Ok(Some(diff))
    }

    /// The signatures at `owner` over its `rtype` RRset.
    fn sigs_for(&self, owner: &Name, rtype: RecordType) -> impl Iterator<Item = &Record> {
        self.sigs
            .get(owner)
            .into_iter()
            .flatten()
            .filter(move |r| sig_info(r).is_some_and(|i| i.covered == u16::from(rtype)))
    }

    /// `records` with the RRSIGs of each RRset after it; synthesized
    /// wildcard records take their signatures from the wildcard owner.
    fn with_sigs(&self, records: Vec<Record>) -> Vec<Record> {
        let mut out = Vec::with_capacity(records.len() * 2);
        let mut done: BTreeSet<(Name, RecordType)> = BTreeSet::new();
        let keys: Vec<(Name, RecordType)> = records
            .iter()
            .map(|r| (r.name.clone(), r.record_type()))
            .collect();
        out.extend(records);
        for (name, rtype) in keys {
            if rtype == RecordType::RRSIG || !done.insert((name.clone(), rtype)) {
                continue;
            }
            let lname = lower(&name);
            if rtype == RecordType::NSEC3 || self.nodes.contains_key(&lname) {
                out.extend(self.sigs_for(&lname, rtype).cloned());
            } else if let Some(star) = self.wildcard_name(&lname) {
                out.extend(self.sigs_for(&star, rtype).map(|r| {
                    let mut r = r.clone();
                    r.name = name.clone();
                    r
                }));
            }
        }
        out
    }

    /// The closest encloser of a name that does not exist, and the next
    /// closer name (RFC 5155 7.2.1).
    fn closest_encloser(&self, name: &Name) -> (Name, Name) {
        let mut next = name.clone();
        let mut ce = name.base_name();
        while ce.num_labels() > self.origin.num_labels() && !self.name_in_use(&ce) {
            next = ce.clone();
            ce = ce.base_name();
        }
        (ce, next)
    }

    fn nsec3_matching(&self, name: &Name) -> Option<Record> {
        self.nsec3.get(&self.nsec3_owner(name)?).cloned()
    }

    fn nsec3_covering(&self, name: &Name) -> Option<Record> {
        let owner = self.nsec3_owner(name)?;
        self.nsec3
            .range(..owner)
            .next_back()
            .or_else(|| self.nsec3.iter().next_back())
            .map(|(_, r)| r.clone())
    }

    fn nsec_at(&self, name: &Name) -> Option<Record> {
        self.rrset(name, RecordType::NSEC)
            .and_then(|s| s.first())
            .cloned()
    }

    fn nsec_covering(&self, name: &Name) -> Option<Record> {
        let has = |(_, n): &(&Name, &crate::zone::Node)| n.contains_key(&RecordType::NSEC);
        self.nodes
            .range(..name.clone())
            .rev()
            .find(has)
            .or_else(|| self.nodes.iter().rev().find(has))
            .and_then(|(_, n)| n.get(&RecordType::NSEC))
            .and_then(|s| s.first())
            .cloned()
    }

    fn denial(&self) -> Denial {
        self.signer.as_ref().map(|s| s.denial).unwrap_or_default()
    }

    /// Proof that `name` does not exist (RFC 5155 7.2.2, RFC 4035 3.1.3.2).
    fn nxdomain_proof(&self, name: &Name) -> Vec<Option<Record>> {
        let (ce, next) = self.closest_encloser(name);
        let star = ce.prepend_label("*").ok();
        match self.denial() {
            Denial::Nsec3 => vec![
                self.nsec3_matching(&ce),
                self.nsec3_covering(&next),
                star.and_then(|s| self.nsec3_covering(&s)),
            ],
            Denial::Nsec => vec![
                self.nsec_covering(name),
                star.and_then(|s| self.nsec_covering(&s)),
            ],
        }
    }

    /// Proof that `name` has no RRset of the asked type (RFC 5155 7.2.3
    /// to 7.2.5, RFC 4035 3.1.3.1 and 3.1.3.4).
    fn nodata_proof(&self, name: &Name) -> Vec<Option<Record>> {
        let exists = self.nodes.contains_key(name);
        let ent = !exists && self.name_in_use(name);
        match (self.denial(), exists || ent) {
            (Denial::Nsec3, true) => vec![self.nsec3_matching(name)],
            (Denial::Nsec, true) if exists => vec![self.nsec_at(name)],
            (Denial::Nsec, true) => vec![self.nsec_covering(name)],
            (Denial::Nsec3, false) => {
                // Wildcard NODATA.
                let (ce, next) = self.closest_encloser(name);
                let star = ce.prepend_label("*").ok();
                vec![
                    self.nsec3_matching(&ce),
                    self.nsec3_covering(&next),
                    star.and_then(|s| self.nsec3_matching(&s)),
                ]
            }
            (Denial::Nsec, false) => {
                let (ce, _) = self.closest_encloser(name);
                let star = ce.prepend_label("*").ok();
                vec![
                    self.nsec_covering(name),
                    star.and_then(|s| self.nsec_at(&s)),
                ]
            }
        }
    }

    /// Proof that no closer match than the wildcard exists (RFC 5155
    /// 7.2.6, RFC 4035 3.1.3.3).
    fn wildcard_answer_proof(&self, name: &Name) -> Vec<Option<Record>> {
        match self.denial() {
            Denial::Nsec3 => {
                let (_, next) = self.closest_encloser(name);
                vec![self.nsec3_covering(&next)]
            }
            Denial::Nsec => vec![self.nsec_covering(name)],
        }
    }

    /// [`Zone::lookup`], plus, for a signed zone and a query with the DO
    /// bit, the RRSIGs of every RRset and the NSEC/NSEC3 proofs of
    /// negative, wildcard and referral answers (RFC 4035 3.1).
    pub fn lookup_dnssec(&self, qname: &Name, qtype: RecordType, dnssec_ok: bool) -> Lookup {
        let mut out = self.lookup(qname, qtype);
        if !dnssec_ok || self.signer.is_none() {
            return out;
        }
        let qname = lower(qname);
        let mut last = qname.clone();
        for r in &out.answers {
            if let RData::CNAME(target) = &r.data
                && lower(&r.name) == last
            {
                last = lower(&target.0);
            }
        }
        let synthesized: Vec<Name> = out
            .answers
            .iter()
            .map(|r| lower(&r.name))
            .filter(|n| self.origin.zone_of(n) && !self.nodes.contains_key(n))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        out.answers = self.with_sigs(std::mem::take(&mut out.answers));
        let mut proof: Vec<Option<Record>> = Vec::new();
        for name in &synthesized {
            proof.extend(self.wildcard_answer_proof(name));
        }
        let referral = out
            .authorities
            .first()
            .filter(|r| r.record_type() == RecordType::NS)
            .map(|r| lower(&r.name));
        let negative = out
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
        let mut authorities = std::mem::take(&mut out.authorities);
        if let Some(cut) = referral {
            match self.rrset(&cut, RecordType::DS) {
                Some(ds) => authorities.extend(ds.iter().cloned()),
                None => proof.push(match self.denial() {
                    Denial::Nsec3 => self.nsec3_matching(&cut),
                    Denial::Nsec => self.nsec_at(&cut),
                }),
            }
            // The NS RRset at a cut is not signed: keep it apart.
            let (ns, rest): (Vec<Record>, Vec<Record>) = authorities
                .into_iter()
                .partition(|r| r.record_type() == RecordType::NS);
            authorities = ns;
            authorities.extend(self.with_sigs(rest));
        } else {
            if negative && self.origin.zone_of(&last) {
                if out.rcode == ResponseCode::NXDomain {
                    proof.extend(self.nxdomain_proof(&last));
                } else {
                    proof.extend(self.nodata_proof(&last));
                }
            }
            authorities = self.with_sigs(authorities);
        }
        let mut seen: BTreeSet<Name> = BTreeSet::new();
        let proof: Vec<Record> = proof
            .into_iter()
            .flatten()
            .filter(|r| seen.insert(r.name.clone()))
            .collect();
        authorities.extend(self.with_sigs(proof));
        out.authorities = authorities;
        out
    }
}
