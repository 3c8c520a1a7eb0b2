//! A zone in memory: loaded from an RFC 1035 master file, answering
//! queries (RFC 1034 4.3.2, wildcards RFC 4592, RFC 8482 for ANY), and
//! keeping the history of its changes for IXFR (RFC 1995).

use crate::dnssec::{Settings, is_dnssec_type};
use crate::{Error, MAX_CNAME_CHAIN, MAX_HISTORY, MAX_RECORDS_PER_ZONE, MAX_ZONE_FILE_BYTES};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use std::collections::{BTreeMap, VecDeque};

/// The RRsets at one owner name, by type.
pub(crate) type Node = BTreeMap<RecordType, Vec<Record>>;

/// One accepted change of a zone: the SOA before and after, the records
/// removed and the records added (SOA records excluded from both lists).
/// This is what the journal stores and what IXFR sends (RFC 1995 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDiff {
    /// The zone's SOA before the change.
    pub old_soa: Record,
    /// The zone's SOA after the change.
    pub new_soa: Record,
    /// Records removed.
    pub deleted: Vec<Record>,
    /// Records added.
    pub added: Vec<Record>,
}

impl ZoneDiff {
    /// Serial before the change.
    pub fn old_serial(&self) -> u32 {
        soa_serial(&self.old_soa)
    }

    /// Serial after the change.
    pub fn new_serial(&self) -> u32 {
        soa_serial(&self.new_soa)
    }
}

pub(crate) fn soa_serial(record: &Record) -> u32 {
    match &record.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    }
}

/// RFC 1982 serial number comparison: is `a` greater than `b`?
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// An authoritative zone.
#[derive(Debug, Clone)]
pub struct Zone {
    pub(crate) origin: Name,
    pub(crate) nodes: BTreeMap<Name, Node>,
    pub(crate) count: usize,
    pub(crate) history: VecDeque<ZoneDiff>,
    /// Signing keys and settings; `None`: the zone is not signed.
    pub(crate) signer: Option<Settings>,
    /// RRSIG records by owner name (the signer's).
    pub(crate) sigs: BTreeMap<Name, Vec<Record>>,
    /// NSEC3 records by hashed owner name (the signer's).
    pub(crate) nsec3: BTreeMap<Name, Record>,
    /// The NSEC or NSEC3 chain the signer last published, for
    /// incremental upkeep; `None`: unknown, rebuilt at the next re-sign.
    pub(crate) chain: Option<crate::sign::Chain>,
}

/// The answer the zone gives to one question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// NOERROR, NXDOMAIN.
    pub rcode: ResponseCode,
    /// AA bit (false for a referral).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (SOA for negative answers, NS for referrals).
    pub authorities: Vec<Record>,
    /// Additional section (glue, addresses of MX/NS/SRV targets).
    pub additionals: Vec<Record>,
}

/// Reads the records of RFC 1035 master-file text (section 5:
/// `$ORIGIN`, `$TTL`, `@`, blank owners, parentheses, quoted strings,
/// escapes, comments; hickory-proto's parser). `origin` applies until
/// the first `$ORIGIN`. `$INCLUDE` is refused: the core reads no files.
/// The one master-file reader of the workspace (`scop`'s `--dns-zone`
/// uses it too).
pub fn parse_master(text: &str, origin: Option<&Name>) -> Result<Vec<Record>, Error> {
    parse_master_with_ttl(text, origin, None)
}

/// [`parse_master`], with a TTL for records that give none before any
/// `$TTL` (files written only for offline answers often omit TTLs).
pub fn parse_master_with_ttl(
    text: &str,
    origin: Option<&Name>,
    default_ttl: Option<u32>,
) -> Result<Vec<Record>, Error> {
    if text.len() > MAX_ZONE_FILE_BYTES {
        return Err(Error::BadZoneData(format!(
            "master file larger than {MAX_ZONE_FILE_BYTES} bytes"
        )));
    }
    if text
        .lines()
        .any(|l| l.trim_start().to_ascii_uppercase().starts_with("$INCLUDE"))
    {
        return Err(Error::BadZoneData("$INCLUDE is not supported".into()));
    }
    let text = join_parentheses(&decimal_escapes(text)?)?;
    let (text, offset) = match default_ttl {
        Some(ttl) => (format!("$TTL {ttl}\n{text}"), 1),
        None => (text, 0),
    };
    let (_, sets) = Parser::new(text.as_str(), None, origin.cloned())
        .parse()
        .map_err(|e| match error_line(&text, origin) {
            Some(line) => {
                Error::BadZoneData(format!("line {}: {e}", line.saturating_sub(offset).max(1)))
            }
            None => Error::BadZoneData(format!("{e}")),
        })?;
    let mut records = Vec::new();
    for (_, set) in sets {
        records.extend(set.records_without_rrsigs().cloned());
        if records.len() > MAX_RECORDS_PER_ZONE {
            return Err(Error::BadZoneData(format!(
                "more than {MAX_RECORDS_PER_ZONE} records"
            )));
        }
    }
    Ok(records)
}

/// Rewrites RFC 1035 `\DDD` escapes (a decimal byte value) as the `\X`
/// escape of the same character. hickory-proto 0.26's lexer decodes
/// `\DDD` as `(D1 << 16) + (D2 << 8) + D3` (so `\059` is not `;`);
/// `\X` it reads correctly. Bytes that have no printable `\X` form
/// (controls, non-ASCII) are refused rather than silently changed.
fn decimal_escapes(text: &str) -> Result<String, Error> {
    if !text.contains('\\') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while digits.len() < 3 && chars.peek().is_some_and(char::is_ascii_digit) {
            digits.extend(chars.next());
        }
        if digits.is_empty() {
            out.push('\\');
            out.extend(chars.next());
            continue;
        }
        let value: u32 = digits.parse().unwrap_or(u32::MAX);
        match char::from_u32(value) {
            Some(ch) if digits.len() == 3 && (' '..='~').contains(&ch) => {
                out.push('\\');
                out.push(ch);
            }
            _ => {
                return Err(Error::BadZoneData(format!(
                    "line {line}: escape \\{digits} is not a printable ASCII character (not supported)"
                )));
            }
        }
    }
    Ok(out)
}

/// Removes comments and joins parenthesised records onto one line
/// (RFC 1035 5.1), keeping the line count (the joined lines become empty
/// lines after the record). hickory-proto 0.26's lexer mistakes a `;`
/// inside a quoted string inside parentheses for a comment, and that is
/// exactly how DKIM keys are usually written: `TXT ( "v=DKIM1; k=rsa; " "p=..." )`.
fn join_parentheses(text: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut quoted, mut comment) = (0usize, false, false);
    let (mut line, mut pending_newlines) = (1usize, 0usize);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if comment && c != '\n' {
            continue;
        }
        match c {
            '\\' => {
                out.push(c);
                out.extend(chars.next());
            }
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            _ if quoted && c != '\n' => out.push(c),
            ';' => comment = true,
            '(' => {
                depth += 1;
                out.push(' ');
            }
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Error::BadZoneData(format!("line {line}: `)` without `(`")))?;
                out.push(' ');
            }
            '\n' => {
                line += 1;
                comment = false;
                if quoted && depth == 0 {
                    quoted = false; // unterminated: let the parser report it
                }
                if depth > 0 {
                    out.push(' ');
                    pending_newlines += 1;
                } else {
                    out.push('\n');
                    for _ in 0..pending_newlines {
                        out.push('\n');
                    }
                    pending_newlines = 0;
                }
            }
            _ => out.push(c),
        }
    }
    if depth > 0 {
        return Err(Error::BadZoneData(format!("line {line}: `(` without `)`")));
    }
    Ok(out)
}

/// Files up to this many lines get a line number in parse errors.
const MAX_LINES_FOR_ERROR_LINE: usize = 20_000;

/// The first line at which the text stops parsing (the parser reports no
/// position): the shortest failing prefix, skipping prefixes that end
/// inside a parenthesised or quoted continuation.
fn error_line(text: &str, origin: Option<&Name>) -> Option<usize> {
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    if ends.len() > MAX_LINES_FOR_ERROR_LINE {
        return None;
    }
    for (n, end) in ends.iter().chain(std::iter::once(&text.len())).enumerate() {
        match Parser::new(&text[..*end], None, origin.cloned()).parse() {
            Ok(_) => {}
            Err(e) if e.to_string().contains("unclosed") && *end < text.len() => {}
            Err(_) => return Some(n + 1),
        }
    }
    None
}

pub(crate) fn lower(name: &Name) -> Name {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n
}

impl Zone {
    /// Parses master-file text. `origin` is the zone name when the file has
    /// no `$ORIGIN` (it may be `None` when every name is absolute). The zone
    /// must have exactly one SOA, at its apex, and at least one NS there.
    /// `$INCLUDE` is refused: the core reads no files.
    pub fn from_master(text: &str, origin: Option<&Name>) -> Result<Self, Error> {
        let mut soa = None;
        let records = parse_master(text, origin)?;
        for r in &records {
            if r.record_type() == RecordType::SOA {
                if soa.is_some() {
                    return Err(Error::BadZoneData("more than one SOA record".into()));
                }
                soa = Some(r.clone());
            }
        }
        let soa = soa.ok_or_else(|| Error::BadZoneData("no SOA record".into()))?;
        let origin = lower(&soa.name);
        let mut zone = Zone {
            origin: origin.clone(),
            nodes: BTreeMap::new(),
            count: 0,
            history: VecDeque::new(),
            signer: None,
            sigs: BTreeMap::new(),
            nsec3: BTreeMap::new(),
            chain: None,
        };
        for r in records {
            if !origin.zone_of(&r.name) {
                return Err(Error::BadZoneData(format!(
                    "{} is outside the zone {}",
                    r.name, origin
                )));
            }
            if r.dns_class != DNSClass::IN {
                return Err(Error::BadZoneData(format!("{}: class is not IN", r.name)));
            }
            if is_dnssec_type(r.record_type()) {
                return Err(Error::BadZoneData(format!(
                    "{} {}: DNSSEC records are made by the signer, not loaded",
                    r.name,
                    r.record_type()
                )));
            }
            zone.insert(r)?;
        }
        if zone.rrset(&origin, RecordType::NS).is_none() {
            return Err(Error::BadZoneData(format!("no NS record at {origin}")));
        }
        Ok(zone)
    }

    /// The zone's name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record.
    pub fn soa(&self) -> &Record {
        // from_master guarantees it and updates never delete it.
        &self.nodes[&self.origin][&RecordType::SOA][0]
    }

    /// The current serial.
    pub fn serial(&self) -> u32 {
        soa_serial(self.soa())
    }

    /// Number of records (the signer's DNSKEY, NSEC3PARAM, NSEC, NSEC3
    /// and RRSIG records included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the zone has no record (never true for a loaded zone).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The RRset of that name and type.
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&[Record]> {
        self.nodes
            .get(&lower(name))
            .and_then(|n| n.get(&rtype))
            .map(Vec::as_slice)
    }

    /// Every record, SOA first (the body of an AXFR), DNSSEC records
    /// (DNSKEY, NSEC3PARAM, NSEC, NSEC3, RRSIG) included.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        std::iter::once(self.soa())
            .chain(
                self.nodes
                    .values()
                    .flat_map(|n| n.values().flatten())
                    .filter(|r| r.record_type() != RecordType::SOA),
            )
            .chain(self.nsec3.values())
            .chain(self.sigs.values().flatten())
    }

    /// The recorded changes, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &ZoneDiff> {
        self.history.iter()
    }

    /// The changes from `serial` to now, if the history reaches back that
    /// far (RFC 1995 IXFR).
    pub fn diffs_since(&self, serial: u32) -> Option<Vec<&ZoneDiff>> {
        let start = self.history.iter().position(|d| d.old_serial() == serial)?;
        let out: Vec<_> = self.history.iter().skip(start).collect();
        for pair in out.windows(2) {
            if pair[0].new_serial() != pair[1].old_serial() {
                return None;
            }
        }
        Some(out)
    }

    /// Adds a record; duplicates (same name, type, data) are ignored and
    /// the RRset takes the new TTL. Returns whether something was added.
    pub(crate) fn insert(&mut self, mut record: Record) -> Result<bool, Error> {
        record.name = lower(&record.name);
        let rtype = record.record_type();
        let full = self.count >= MAX_RECORDS_PER_ZONE;
        let too_many = || {
            Error::BadZoneData(format!(
                "more than {MAX_RECORDS_PER_ZONE} records in the zone"
            ))
        };
        if rtype == RecordType::RRSIG {
            let set = self.sigs.entry(record.name.clone()).or_default();
            if set.contains(&record) {
                return Ok(false);
            }
            if full {
                return Err(too_many());
            }
            set.push(record);
            self.count += 1;
            return Ok(true);
        }
        if rtype == RecordType::NSEC3 {
            if self.nsec3.get(&record.name) == Some(&record) {
                return Ok(false);
            }
            if full {
                return Err(too_many());
            }
            if self.nsec3.insert(record.name.clone(), record).is_none() {
                self.count += 1;
            }
            return Ok(true);
        }
        let set = self
            .nodes
            .entry(record.name.clone())
            .or_default()
            .entry(rtype)
            .or_default();
        for r in set.iter_mut() {
            r.ttl = record.ttl;
        }
        if set.iter().any(|r| r.data == record.data) {
            return Ok(false);
        }
        if set.len() >= crate::MAX_RECORDS_PER_RRSET {
            return Err(Error::BadZoneData(format!(
                "more than {} records in {} {rtype}",
                crate::MAX_RECORDS_PER_RRSET,
                record.name
            )));
        }
        if self.count >= MAX_RECORDS_PER_ZONE {
            return Err(Error::BadZoneData(format!(
                "more than {MAX_RECORDS_PER_ZONE} records in the zone"
            )));
        }
        set.push(record);
        self.count += 1;
        Ok(true)
    }

    /// Removes one record (matched by name, type and data).
    pub(crate) fn remove(&mut self, record: &Record) -> bool {
        let name = lower(&record.name);
        let rtype = record.record_type();
        if rtype == RecordType::RRSIG {
            let Some(set) = self.sigs.get_mut(&name) else {
                return false;
            };
            let before = set.len();
            set.retain(|r| r.data != record.data);
            let removed = before - set.len();
            if set.is_empty() {
                self.sigs.remove(&name);
            }
            self.count -= removed;
            return removed > 0;
        }
        if rtype == RecordType::NSEC3 {
            if self.nsec3.get(&name).is_some_and(|r| r.data == record.data) {
                self.nsec3.remove(&name);
                self.count -= 1;
                return true;
            }
            return false;
        }
        let Some(node) = self.nodes.get_mut(&name) else {
            return false;
        };
        let Some(set) = node.get_mut(&rtype) else {
            return false;
        };
        let before = set.len();
        set.retain(|r| r.data != record.data);
        let removed = before - set.len();
        if set.is_empty() {
            node.remove(&rtype);
        }
        if node.is_empty() {
            self.nodes.remove(&name);
        }
        self.count -= removed;
        removed > 0
    }

    /// Replaces the SOA record.
    pub(crate) fn set_soa(&mut self, soa: Record) {
        let mut soa = soa;
        soa.name = self.origin.clone();
        if let Some(node) = self.nodes.get_mut(&self.origin) {
            node.insert(RecordType::SOA, vec![soa]);
        }
    }

    /// Applies a change (journal replay); the zone must be at the diff's
    /// old serial. DNSSEC records in the entry are skipped: the signer
    /// makes them afresh when signing is switched on after the replay.
    pub fn apply(&mut self, diff: &ZoneDiff) -> Result<(), Error> {
        // The data changes behind the signer's back.
        self.chain = None;
        if self.serial() != diff.old_serial() {
            return Err(Error::BadZoneData(format!(
                "journal entry from serial {} does not follow serial {}",
                diff.old_serial(),
                self.serial()
            )));
        }
        // The SOA travels in old_soa/new_soa only; a SOA in the lists (a
        // foreign or damaged entry) is ignored so the zone always keeps one.
        let not_soa =
            |r: &&Record| r.record_type() != RecordType::SOA && !is_dnssec_type(r.record_type());
        for r in diff.deleted.iter().filter(not_soa) {
            self.remove(r);
        }
        for r in diff.added.iter().filter(not_soa) {
            if !self.origin.zone_of(&r.name) {
                return Err(Error::BadZoneData(format!(
                    "journal record {} is outside the zone {}",
                    r.name, self.origin
                )));
            }
            self.insert(r.clone())?;
        }
        if diff.new_soa.record_type() != RecordType::SOA {
            return Err(Error::BadZoneData("journal entry without a SOA".into()));
        }
        self.set_soa(diff.new_soa.clone());
        self.push_history(diff.clone());
        Ok(())
    }

    /// Undoes the last change (when the journal could not be written).
    pub fn revert(&mut self, diff: &ZoneDiff) -> Result<(), Error> {
        // The chain records go back too: rebuild the signer's view.
        self.chain = None;
        let not_soa = |r: &&Record| r.record_type() != RecordType::SOA;
        for r in diff.added.iter().filter(not_soa) {
            self.remove(r);
        }
        for r in diff.deleted.iter().filter(not_soa) {
            self.insert(r.clone())?;
        }
        self.set_soa(diff.old_soa.clone());
        if self.history.back() == Some(diff) {
            self.history.pop_back();
        }
        Ok(())
    }

    pub(crate) fn push_history(&mut self, diff: ZoneDiff) {
        if self.history.len() >= MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(diff);
    }

    /// Whether `name` owns records or has names below it.
    pub(crate) fn name_in_use(&self, name: &Name) -> bool {
        let name = lower(name);
        if self.nodes.contains_key(&name) {
            return true;
        }
        self.nodes
            .range(name.clone()..)
            .next()
            .is_some_and(|(n, _)| name.zone_of(n))
    }

    /// The SOA for a negative answer, its TTL capped at the SOA minimum
    /// (RFC 2308 3).
    pub(crate) fn negative_soa(&self) -> Record {
        let mut soa = self.soa().clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// The deepest delegation (a name below the apex owning NS) on the
    /// way from the apex to `qname`, if any. With `ds_at_cut`, a
    /// delegation exactly at `qname` does not count (DS lives in the parent).
    pub(crate) fn delegation(&self, qname: &Name, ds_at_cut: bool) -> Option<&Name> {
        let base = self.origin.num_labels();
        let depth = qname.num_labels();
        for k in (base + 1)..=depth {
            let name = qname.trim_to(k as usize);
            if ds_at_cut && k == depth {
                break;
            }
            if let Some((owner, node)) = self.nodes.get_key_value(&name)
                && node.contains_key(&RecordType::NS)
            {
                return Some(owner);
            }
        }
        None
    }

    fn address_records(&self, target: &Name, out: &mut Vec<Record>) {
        if !self.origin.zone_of(target) {
            return;
        }
        for t in [RecordType::A, RecordType::AAAA] {
            if let Some(set) = self.rrset(target, t) {
                for r in set {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
    }

    fn additional_for(&self, records: &[Record], out: &mut Vec<Record>) {
        for r in records {
            let target = match &r.data {
                RData::MX(mx) => &mx.exchange,
                RData::NS(ns) => &ns.0,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            self.address_records(target, out);
        }
    }

    /// Answers one question from this zone (the caller has checked that
    /// `qname` is at or below the apex).
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let mut out = Lookup {
            authoritative: true,
            ..Lookup::default()
        };
        let mut name = lower(qname);
        for _ in 0..=MAX_CNAME_CHAIN {
            if !self.origin.zone_of(&name) {
                // A CNAME led out of the zone: the resolver continues.
                return out;
            }
            if let Some(cut) = self.delegation(&name, qtype == RecordType::DS) {
                if out.answers.is_empty() {
                    out.authoritative = false;
                }
                let ns = self.nodes[cut][&RecordType::NS].clone();
                self.additional_for(&ns, &mut out.additionals);
                out.authorities = ns;
                return out;
            }
            let (node, synthesized) = match self.nodes.get(&name) {
                Some(node) => (Some(node), false),
                None => match self.wildcard(&name) {
                    Some(node) => (Some(node), true),
                    None => (None, false),
                },
            };
            let Some(node) = node else {
                if !self.name_in_use(&name) && out.answers.is_empty() {
                    out.rcode = ResponseCode::NXDomain;
                } else if !self.name_in_use(&name) {
                    // NXDOMAIN at the end of a CNAME chain (RFC 6604).
                    out.rcode = ResponseCode::NXDomain;
                }
                out.authorities.push(self.negative_soa());
                return out;
            };
            let owned = |set: &[Record]| -> Vec<Record> {
                set.iter()
                    .map(|r| {
                        let mut r = r.clone();
                        if synthesized {
                            r.name = name.clone();
                        }
                        r
                    })
                    .collect()
            };
            if qtype == RecordType::ANY {
                // RFC 8482 4.1: one RRset is enough.
                match node.values().next() {
                    Some(set) => out.answers.extend(owned(set)),
                    None => out.authorities.push(self.negative_soa()),
                }
                return out;
            }
            if let Some(set) = node.get(&qtype) {
                let set = owned(set);
                self.additional_for(&set, &mut out.additionals);
                out.answers.extend(set);
                return out;
            }
            if let Some(cname) = node.get(&RecordType::CNAME) {
                let set = owned(cname);
                let RData::CNAME(target) = &set[0].data else {
                    return out;
                };
                let target = lower(&target.0);
                out.answers.extend(set);
                name = target;
                continue;
            }
            out.authorities.push(self.negative_soa());
            return out;
        }
        out
    }

    /// The wildcard node that covers a name that does not exist
    /// (RFC 4592 3.3.1: `*.<closest encloser>`).
    fn wildcard(&self, name: &Name) -> Option<&Node> {
        self.wildcard_name(name)
            .and_then(|star| self.nodes.get(&star))
    }

    /// The owner of the wildcard that covers a name that does not exist.
    pub(crate) fn wildcard_name(&self, name: &Name) -> Option<Name> {
        if self.name_in_use(name) {
            return None;
        }
        let base = self.origin.num_labels();
        let mut labels = name.num_labels();
        while labels > base {
            labels -= 1;
            let encloser = name.trim_to(labels as usize);
            if self.name_in_use(&encloser) {
                let star = encloser.prepend_label("*").ok()?;
                return self.nodes.contains_key(&star).then_some(star);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
@ NS ns1\n@ MX 10 mail\n@ TXT \"v=spf1 mx -all\"\n\
ns1 A 192.0.2.1\nmail A 192.0.2.2\nmail AAAA 2001:db8::2\n\
www CNAME mail\nloop CNAME loop\next CNAME www.example.net.\n\
s1._domainkey TXT \"v=DKIM1; p=abc\"\n\
sub NS ns.sub\nns.sub A 192.0.2.53\n\
*.wild TXT \"wild\"\na.b.c A 192.0.2.9\n";

    fn zone() -> Zone {
        Zone::from_master(ZONE, None).unwrap()
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn loads_and_answers() {
        let z = zone();
        assert_eq!(z.serial(), 2024010101);
        assert_eq!(z.origin(), &n("example.org."));
        let l = z.lookup(&n("example.org."), RecordType::MX);
        assert!(l.authoritative);
        assert_eq!(l.answers.len(), 1);
        assert_eq!(l.additionals.len(), 2, "A and AAAA of mail");
        // Case-insensitive.
        let l = z.lookup(&n("MAIL.Example.ORG."), RecordType::A);
        assert_eq!(l.answers.len(), 1);
    }

    #[test]
    fn cname_chain_and_loop() {
        let z = zone();
        let l = z.lookup(&n("www.example.org."), RecordType::A);
        assert_eq!(l.answers.len(), 2);
        assert_eq!(l.answers[0].record_type(), RecordType::CNAME);
        let l = z.lookup(&n("loop.example.org."), RecordType::A);
        assert!(l.answers.len() <= MAX_CNAME_CHAIN + 1);
        let l = z.lookup(&n("ext.example.org."), RecordType::A);
        assert_eq!(l.answers.len(), 1);
        assert_eq!(l.rcode, ResponseCode::NoError);
    }

    #[test]
    fn negative_answers() {
        let z = zone();
        let l = z.lookup(&n("nope.example.org."), RecordType::A);
        assert_eq!(l.rcode, ResponseCode::NXDomain);
        assert_eq!(l.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(l.authorities[0].ttl, 300);
        let l = z.lookup(&n("mail.example.org."), RecordType::TXT);
        assert_eq!(l.rcode, ResponseCode::NoError);
        assert!(l.answers.is_empty());
        assert_eq!(l.authorities[0].record_type(), RecordType::SOA);
        // Empty non-terminal: NODATA, not NXDOMAIN.
        let l = z.lookup(&n("b.c.example.org."), RecordType::A);
        assert_eq!(l.rcode, ResponseCode::NoError);
        assert!(l.answers.is_empty());
    }

    #[test]
    fn referral_with_glue() {
        let z = zone();
        let l = z.lookup(&n("host.sub.example.org."), RecordType::A);
        assert!(!l.authoritative);
        assert_eq!(l.authorities[0].record_type(), RecordType::NS);
        assert_eq!(l.additionals.len(), 1);
        let l = z.lookup(&n("sub.example.org."), RecordType::DS);
        assert!(l.authoritative, "DS is answered by the parent");
    }

    #[test]
    fn wildcard_and_any() {
        let z = zone();
        let l = z.lookup(&n("x.wild.example.org."), RecordType::TXT);
        assert_eq!(l.answers.len(), 1);
        assert_eq!(l.answers[0].name, n("x.wild.example.org."));
        let l = z.lookup(&n("example.org."), RecordType::ANY);
        let types: std::collections::BTreeSet<_> =
            l.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types.len(), 1, "RFC 8482: one RRset");
    }

    #[test]
    fn bad_master_files() {
        assert!(Zone::from_master("$INCLUDE /etc/passwd\n", None).is_err());
        assert!(Zone::from_master("$ORIGIN a.\n@ 60 NS ns\n", None).is_err());
        let no_ns = "$ORIGIN a.\n@ 60 SOA ns h 1 2 3 4 5\n";
        assert!(Zone::from_master(no_ns, None).is_err());
        let outside = "$ORIGIN a.\n@ 60 SOA ns h 1 2 3 4 5\n@ NS ns\nx.b. A 1.2.3.4\n";
        assert!(Zone::from_master(outside, None).is_err());
    }

    #[test]
    fn parse_errors_name_the_line() {
        let root = Name::root();
        let e = parse_master("a. 60 A 192.0.2.1\nb. 60 IN A 999.1.1.1\n", Some(&root)).unwrap_err();
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let multi = "a. 60 SOA ns h ( 1\n 2 3\n 4 5 )\nb. 60 MX x\n";
        let e = parse_master(multi, Some(&root)).unwrap_err();
        assert!(e.to_string().starts_with("line 4: "), "{e}");
        let e = parse_master("a. 60 TXT \"open\n", Some(&root)).unwrap_err();
        assert!(e.to_string().contains("unclosed"), "{e}");
    }

    #[test]
    fn dkim_style_txt_in_parentheses() {
        let root = Name::root();
        let text = "a. 60 TXT ( \"v=DKIM1; k=rsa; \" ; comment\n  \"p=abc\" )\nb. 60 TXT \"x\"\nc. 60 A 999.1.1.1\n";
        let e = parse_master(text, Some(&root)).unwrap_err();
        assert!(
            e.to_string().starts_with("line 4: "),
            "line numbers kept: {e}"
        );
        let r = parse_master(&text[..text.find("c.").unwrap()], Some(&root)).unwrap();
        let a = r
            .iter()
            .find(|r| r.name == Name::from_ascii("a.").unwrap())
            .unwrap();
        let RData::TXT(t) = &a.data else { panic!() };
        assert_eq!(t.txt_data.len(), 2);
        assert_eq!(&*t.txt_data[0], b"v=DKIM1; k=rsa; ");
        assert!(parse_master("a. 60 TXT ( \"x\"\n", Some(&root)).is_err());
        assert!(parse_master("a. 60 TXT \"x\" )\n", Some(&root)).is_err());
    }

    #[test]
    fn decimal_escapes_are_bytes() {
        let root = Name::root();
        let r = parse_master("a. 60 TXT \"x\\059y\\\\059\\\"\"\n", Some(&root)).unwrap();
        let RData::TXT(t) = &r[0].data else { panic!() };
        assert_eq!(&*t.txt_data[0], b"x;y\\059\"");
        assert!(parse_master("a. 60 TXT \"\\200\"\n", Some(&root)).is_err());
        assert!(parse_master("a. 60 TXT \"\\07\"\n", Some(&root)).is_err());
    }

    #[test]
    fn a_journal_entry_cannot_remove_the_soa() {
        let mut z = zone();
        let mut new_soa = z.soa().clone();
        if let RData::SOA(s) = &mut new_soa.data {
            s.serial += 1;
        }
        let outside = Record::from_rdata(
            n("x.example.net."),
            60,
            RData::A("192.0.2.1".parse().unwrap()),
        );
        let mut diff = ZoneDiff {
            old_soa: z.soa().clone(),
            new_soa,
            deleted: vec![z.soa().clone()],
            added: vec![],
        };
        z.apply(&diff).unwrap();
        assert_eq!(z.serial(), 2024010102);
        diff.old_soa = z.soa().clone();
        diff.added.push(outside);
        assert!(
            z.apply(&diff).is_err(),
            "records outside the zone are refused"
        );
        let _ = z.lookup(&n("example.org."), RecordType::SOA);
    }

    #[test]
    fn serial_arithmetic() {
        assert!(serial_gt(2, 1));
        assert!(serial_gt(0, u32::MAX));
        assert!(!serial_gt(1, 1));
        assert!(serial_gt(1, (1 << 31) + 2), "wraps around");
        assert!(!serial_gt((1 << 31) + 2, 1));
    }
}
