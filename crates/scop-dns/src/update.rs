//! RFC 2136 UPDATE processing on a zone: prerequisites (3.2), prescan
//! (3.4.1), policy, application (3.4.2) and the SOA serial bump (3.6,
//! RFC 1982 arithmetic). The result is a [`ZoneDiff`] for the journal.

use crate::MAX_UPDATE_RECORDS;
use crate::dnssec::is_dnssec_type;
use crate::policy::Policy;
use crate::zone::{Zone, ZoneDiff, serial_gt, soa_serial};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::{BTreeMap, BTreeSet};

fn is_meta(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::ANY
            | RecordType::AXFR
            | RecordType::IXFR
            | RecordType::OPT
            | RecordType::TSIG
            | RecordType::SIG
    ) || u16::from(t) >= 128 && u16::from(t) <= 255
}

fn rdata_empty(r: &Record) -> bool {
    matches!(r.data, RData::Update0(_))
}

/// RFC 2136 3.2: prerequisite checks, in order; the first failure wins.
fn check_prerequisites(zone: &Zone, prereqs: &[Record]) -> Result<(), ResponseCode> {
    // Value-dependent "RRset exists" prerequisites, gathered (3.2.3).
    let mut wanted: BTreeMap<(Name, RecordType), Vec<&RData>> = BTreeMap::new();
    for r in prereqs {
        if r.ttl != 0 {
            return Err(ResponseCode::FormErr);
        }
        if !zone.origin().zone_of(&r.name) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = r.record_type();
        match r.dns_class {
            DNSClass::ANY => {
                if !rdata_empty(r) {
                    return Err(ResponseCode::FormErr);
                }
                if rtype == RecordType::ANY {
                    if !zone.name_in_use(&r.name) {
                        return Err(ResponseCode::NXDomain);
                    }
                } else if zone.rrset(&r.name, rtype).is_none() {
                    return Err(ResponseCode::NXRRSet);
                }
            }
            DNSClass::NONE => {
                if !rdata_empty(r) {
                    return Err(ResponseCode::FormErr);
                }
                if rtype == RecordType::ANY {
                    if zone.name_in_use(&r.name) {
                        return Err(ResponseCode::YXDomain);
                    }
                } else if zone.rrset(&r.name, rtype).is_some() {
                    return Err(ResponseCode::YXRRSet);
                }
            }
            DNSClass::IN => {
                if rdata_empty(r) || is_meta(rtype) {
                    return Err(ResponseCode::FormErr);
                }
                wanted
                    .entry((r.name.to_lowercase(), rtype))
                    .or_default()
                    .push(&r.data);
            }
            _ => return Err(ResponseCode::FormErr),
        }
    }
    for ((name, rtype), mut datas) in wanted {
        let Some(set) = zone.rrset(&name, rtype) else {
            return Err(ResponseCode::NXRRSet);
        };
        datas.dedup_by(|a, b| a == b);
        let mut have: Vec<&RData> = set.iter().map(|r| &r.data).collect();
        have.sort_by_key(|d| format!("{d}"));
        datas.sort_by_key(|d| format!("{d}"));
        datas.dedup();
        if have != datas {
            return Err(ResponseCode::NXRRSet);
        }
    }
    Ok(())
}

/// RFC 2136 3.4.1 prescan plus the key's policy.
fn prescan(
    zone: &Zone,
    updates: &[Record],
    key: &Name,
    policy: &Policy,
) -> Result<(), ResponseCode> {
    for r in updates {
        if !zone.origin().zone_of(&r.name) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = r.record_type();
        match r.dns_class {
            DNSClass::IN => {
                if is_meta(rtype) || rdata_empty(r) {
                    return Err(ResponseCode::FormErr);
                }
            }
            DNSClass::ANY => {
                if r.ttl != 0 || !rdata_empty(r) || (is_meta(rtype) && rtype != RecordType::ANY) {
                    return Err(ResponseCode::FormErr);
                }
            }
            DNSClass::NONE => {
                if r.ttl != 0 || is_meta(rtype) || rdata_empty(r) {
                    return Err(ResponseCode::FormErr);
                }
            }
            _ => return Err(ResponseCode::FormErr),
        }
        // The signer owns DNSKEY, RRSIG, NSEC, NSEC3 and NSEC3PARAM.
        if is_dnssec_type(rtype) {
            return Err(ResponseCode::Refused);
        }
        if !policy.may_update(key, zone.origin(), &r.name, rtype) {
            return Err(ResponseCode::Refused);
        }
    }
    Ok(())
}

/// Processes an UPDATE for `zone` signed by `key`, at `now` (the time of
/// new signatures in a signed zone). `Ok(None)`: nothing changed (still
/// NOERROR). On any error the zone is unchanged.
pub(crate) fn process(
    zone: &mut Zone,
    msg: &Message,
    key: &Name,
    policy: &Policy,
    now: u64,
) -> Result<Option<ZoneDiff>, ResponseCode> {
    if msg.answers.len() + msg.authorities.len() > MAX_UPDATE_RECORDS {
        return Err(ResponseCode::FormErr);
    }
    check_prerequisites(zone, &msg.answers)?;
    prescan(zone, &msg.authorities, key, policy)?;

    let origin = zone.origin().clone();
    let old_soa = zone.soa().clone();
    let mut new_soa: Option<Record> = None;
    // The original content of every RRset touched, to compute the diff
    // and to undo on failure.
    let mut saved: BTreeMap<(Name, RecordType), Vec<Record>> = BTreeMap::new();
    let mut save = |zone: &Zone, name: &Name, rtype: RecordType| {
        saved
            .entry((name.to_lowercase(), rtype))
            .or_insert_with(|| {
                zone.rrset(name, rtype)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default()
            });
    };

    let mut failed = false;
    for r in &msg.authorities {
        let name = r.name.to_lowercase();
        let rtype = r.record_type();
        match r.dns_class {
            DNSClass::IN => {
                if rtype == RecordType::SOA {
                    if name == origin && serial_gt(soa_serial(r), zone.serial()) {
                        let mut soa = r.clone();
                        soa.name = origin.clone();
                        new_soa = Some(soa);
                    }
                    continue;
                }
                let has_cname = zone.rrset(&name, RecordType::CNAME).is_some();
                let has_other = zone.nodes.get(&name).is_some_and(|n| {
                    n.keys()
                        .any(|t| *t != RecordType::CNAME && !is_dnssec_type(*t))
                });
                if (rtype == RecordType::CNAME && has_other)
                    || (rtype != RecordType::CNAME && has_cname)
                {
                    continue; // 3.4.2.2: silently ignored
                }
                save(zone, &name, rtype);
                let mut rec = r.clone();
                rec.name = name;
                if zone.insert(rec).is_err() {
                    failed = true;
                    break;
                }
            }
            DNSClass::ANY => {
                let types: Vec<RecordType> = if rtype == RecordType::ANY {
                    zone.nodes
                        .get(&name)
                        .map(|n| n.keys().copied().filter(|t| !is_dnssec_type(*t)).collect())
                        .unwrap_or_default()
                } else {
                    vec![rtype]
                };
                for t in types {
                    if name == origin && matches!(t, RecordType::SOA | RecordType::NS) {
                        continue;
                    }
                    save(zone, &name, t);
                    let set = zone.rrset(&name, t).map(<[_]>::to_vec).unwrap_or_default();
                    for rec in &set {
                        zone.remove(rec);
                    }
                }
            }
            DNSClass::NONE => {
                if rtype == RecordType::SOA {
                    continue;
                }
                if name == origin
                    && rtype == RecordType::NS
                    && zone.rrset(&name, rtype).is_some_and(|s| s.len() <= 1)
                {
                    continue;
                }
                save(zone, &name, rtype);
                let mut rec = r.clone();
                rec.name = name;
                zone.remove(&rec);
            }
            _ => {}
        }
    }

    let restore = |zone: &mut Zone, saved: &BTreeMap<(Name, RecordType), Vec<Record>>| {
        for ((name, rtype), orig) in saved {
            for rec in zone
                .rrset(name, *rtype)
                .map(<[_]>::to_vec)
                .unwrap_or_default()
            {
                zone.remove(&rec);
            }
            for rec in orig {
                // Restoring what was there cannot exceed a limit.
                let _ = zone.insert(rec.clone());
            }
        }
    };
    if failed {
        restore(zone, &saved);
        return Err(ResponseCode::ServFail);
    }

    let mut deleted = Vec::new();
    let mut added = Vec::new();
    let same = |a: &Record, b: &Record| a.data == b.data && a.ttl == b.ttl;
    for ((name, rtype), orig) in &saved {
        let now = zone
            .rrset(name, *rtype)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        deleted.extend(
            orig.iter()
                .filter(|o| !now.iter().any(|n| same(o, n)))
                .cloned(),
        );
        added.extend(
            now.iter()
                .filter(|n| !orig.iter().any(|o| same(o, n)))
                .cloned(),
        );
    }
    // A TTL change removes and re-adds; deleting a record re-inserted with
    // the new TTL must not drop its siblings on replay: replay removes by
    // data then inserts, which gives the same result.
    if deleted.is_empty() && added.is_empty() && new_soa.is_none() {
        return Ok(None);
    }
    let new_soa = new_soa.unwrap_or_else(|| {
        let mut soa = old_soa.clone();
        if let RData::SOA(data) = &mut soa.data {
            data.serial = data.serial.wrapping_add(1);
        }
        soa
    });
    zone.set_soa(new_soa.clone());
    // A signed zone: new signatures for what changed, and the chain.
    let mut changed: BTreeSet<(Name, RecordType)> = deleted
        .iter()
        .chain(&added)
        .map(|r| (r.name.to_lowercase(), r.record_type()))
        .collect();
    changed.insert((origin, RecordType::SOA));
    // A delegation added or removed changes what is authoritative below
    // it: then every signature is checked, else only the changed RRsets.
    let full = changed.iter().any(|(_, t)| *t == RecordType::NS);
    let signed = zone.resign(&changed, full, now, (&mut deleted, &mut added));
    let diff = ZoneDiff {
        old_soa,
        new_soa,
        deleted,
        added,
    };
    if signed.is_err() {
        // Undo the change and the partial re-signing alike.
        let _ = zone.revert(&diff);
        return Err(ResponseCode::ServFail);
    }
    zone.push_history(diff.clone());
    Ok(Some(diff))
}
