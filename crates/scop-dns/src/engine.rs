//! The server core: one request's bytes in, reply messages (and a journal
//! entry, and the zones to NOTIFY) out. No I/O; `now` is passed in.

use crate::TRANSFER_MESSAGE_BYTES;
use crate::policy::Policy;
use crate::tsig::{self, Chain, Checked, Failure, KeyRing};
use crate::update;
use crate::wire;
use crate::zone::{Zone, ZoneDiff, serial_gt, soa_serial};
use crate::{CLASSIC_UDP_PAYLOAD, DEFAULT_EDNS_PAYLOAD, Error, MAX_MESSAGE_BYTES};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use std::collections::BTreeMap;

/// How the request arrived (it decides the size limit of the reply and
/// whether zone transfers are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: replies are truncated to the negotiated payload size.
    Udp,
    /// TCP: replies up to 64 KiB, zone transfers in several messages.
    Tcp,
}

/// What the shell must do after one request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages to send back, in order (several for a zone transfer;
    /// none when the request must be dropped).
    pub replies: Vec<Vec<u8>>,
    /// An accepted change: append it to the zone's journal (and fsync)
    /// **before** sending `replies`; if that fails, call
    /// [`Engine::revert`] and send [`Outcome::failure_reply`] instead.
    pub journal: Option<(Name, ZoneDiff)>,
    /// The reply to send if the journal could not be written (SERVFAIL).
    pub failure_reply: Option<Vec<u8>>,
    /// Zones whose content changed: send NOTIFY to their secondaries.
    pub notify: Vec<Name>,
}

/// An UPDATE that [`Engine::step`] parsed and whose TSIG it checked: it
/// needs `&mut Engine`.
type PendingUpdate = Box<(Message, Option<Chain>)>;

/// The authoritative server core.
#[derive(Debug, Clone)]
pub struct Engine {
    zones: BTreeMap<Name, Zone>,
    keys: KeyRing,
    policy: Policy,
}

fn minimal_error(request: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; wire::HEADER];
    out[0] = request.first().copied().unwrap_or(0);
    out[1] = request.get(1).copied().unwrap_or(0);
    let opcode = request.get(2).map_or(0, |b| b & 0x78);
    out[2] = 0x80 | opcode;
    out[3] = (u16::from(rcode) & 0x0F) as u8;
    out
}

impl Engine {
    /// A server for these zones, keys and policy.
    pub fn new(zones: Vec<Zone>, keys: KeyRing, policy: Policy) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for z in zones {
            let origin = z.origin().clone();
            if map.insert(origin.clone(), z).is_some() {
                return Err(Error::ApiMisuse(format!("zone {origin} given twice")));
            }
        }
        Ok(Engine {
            zones: map,
            keys,
            policy,
        })
    }

    /// The zone of that name.
    pub fn zone(&self, origin: &Name) -> Option<&Zone> {
        self.zones.get(&origin.to_lowercase())
    }

    /// Every zone.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    /// Replays journal entries over a zone (at start-up).
    pub fn replay(&mut self, origin: &Name, diffs: &[ZoneDiff]) -> Result<usize, Error> {
        let zone = self
            .zones
            .get_mut(&origin.to_lowercase())
            .ok_or_else(|| Error::ApiMisuse(format!("no zone {origin}")))?;
        let mut applied = 0;
        for d in diffs {
            // Entries older than the master file's serial are history only.
            if serial_gt(zone.serial(), d.old_serial()) && zone.serial() != d.old_serial() {
                continue;
            }
            zone.apply(d)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Signs a zone online with `settings` at `now` (after any journal
    /// replay): from then on, updates re-sign what they change and
    /// [`Engine::refresh_signatures`] renews signatures before they expire.
    /// The serial moves by one; append the returned entry to the zone's
    /// journal so that it keeps moving forward across restarts.
    pub fn sign_zone(
        &mut self,
        origin: &Name,
        settings: crate::dnssec::Settings,
        now: u64,
    ) -> Result<ZoneDiff, Error> {
        self.zones
            .get_mut(&origin.to_lowercase())
            .ok_or_else(|| Error::ApiMisuse(format!("no zone {origin}")))?
            .sign(settings, now)
    }

    /// Renews, in every signed zone, the signatures that expire within the
    /// refresh window (the shell calls this periodically). Each changed
    /// zone gives a journal entry (append it, then NOTIFY), as an update
    /// does.
    pub fn refresh_signatures(&mut self, now: u64) -> Vec<(Name, Result<ZoneDiff, Error>)> {
        let mut out = Vec::new();
        for (origin, zone) in &mut self.zones {
            match zone.refresh(now) {
                Ok(Some(diff)) => out.push((origin.clone(), Ok(diff))),
                Ok(None) => {}
                Err(e) => out.push((origin.clone(), Err(e))),
            }
        }
        out
    }

    /// Undoes a change whose journal entry could not be written.
    pub fn revert(&mut self, origin: &Name, diff: &ZoneDiff) -> Result<(), Error> {
        match self.zones.get_mut(&origin.to_lowercase()) {
            Some(z) => z.revert(diff),
            None => Err(Error::ApiMisuse(format!("no zone {origin}"))),
        }
    }

    /// The zone that holds `name` (longest match).
    fn find_zone(&self, name: &Name) -> Option<&Zone> {
        let mut n = name.to_lowercase();
        n.set_fqdn(true);
        loop {
            if let Some(z) = self.zones.get(&n) {
                return Some(z);
            }
            if n.is_root() {
                return None;
            }
            n = n.base_name();
        }
    }

    /// A NOTIFY (RFC 1996) for `origin`, with `id`.
    pub fn notify_message(&self, origin: &Name, id: u16) -> Option<Vec<u8>> {
        let zone = self.zone(origin)?;
        let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
        msg.metadata.authoritative = true;
        msg.add_query(Query::query(zone.origin().clone(), RecordType::SOA));
        msg.add_answer(zone.soa().clone());
        msg.to_vec().ok()
    }

    /// Handles one request received at `now` (unix seconds).
    pub fn handle(&mut self, request: &[u8], transport: Transport, now: u64) -> Outcome {
        match self.step(request, transport, now) {
            Ok(out) => out,
            Err(update) => {
                let (msg, chain) = *update;
                self.handle_update(&msg, transport, chain, now)
            }
        }
    }

    /// [`Engine::handle`] for every request that leaves the engine as it
    /// is (all but UPDATE), through a shared reference, so that several
    /// threads can answer queries at once; `None` for an UPDATE: give it
    /// to [`Engine::handle`].
    pub fn handle_read_only(
        &self,
        request: &[u8],
        transport: Transport,
        now: u64,
    ) -> Option<Outcome> {
        self.step(request, transport, now).ok()
    }

    /// Everything up to the point where an UPDATE needs the engine
    /// mutably: the outcome, or the UPDATE to apply.
    fn step(
        &self,
        request: &[u8],
        transport: Transport,
        now: u64,
    ) -> Result<Outcome, PendingUpdate> {
        let mut out = Outcome::default();
        // Too short to answer, or a response (never answer those: loops).
        if request.len() < wire::HEADER || request[2] & 0x80 != 0 {
            return Ok(out);
        }
        let Some(split) = wire::split_tsig(request) else {
            out.replies
                .push(minimal_error(request, ResponseCode::FormErr));
            return Ok(out);
        };
        let Ok(msg) = Message::from_vec(&split.unsigned) else {
            out.replies
                .push(minimal_error(request, ResponseCode::FormErr));
            return Ok(out);
        };
        let checked = tsig::check_request(&self.keys, &split, now);
        let mut chain = match checked {
            Checked::Unsigned => None,
            Checked::Valid(chain) => Some(chain),
            Checked::Invalid {
                failure: Failure::FormErr,
                ..
            } => {
                out.replies
                    .push(minimal_error(request, ResponseCode::FormErr));
                return Ok(out);
            }
            Checked::Invalid {
                failure,
                tsig,
                chain,
            } => {
                let mut resp = response_to(&msg, ResponseCode::NotAuth);
                resp.queries = msg.queries.clone();
                let mut bytes = resp_bytes(&mut resp, request);
                tsig::append_error(&mut bytes, failure, &tsig, chain, now);
                out.replies.push(bytes);
                return Ok(out);
            }
        };
        if let Some(edns) = &msg.edns
            && edns.version() > 0
        {
            let resp = response_to(&msg, ResponseCode::BADVERS);
            out.replies
                .push(self.finish(resp, &msg, transport, chain.as_mut(), now));
            return Ok(out);
        }
        match msg.metadata.op_code {
            OpCode::Query => self.query(&msg, transport, chain, now, &mut out),
            OpCode::Update => return Err(Box::new((msg, chain))),
            _ => {
                let resp = response_to(&msg, ResponseCode::NotImp);
                out.replies
                    .push(self.finish(resp, &msg, transport, chain.as_mut(), now));
            }
        }
        Ok(out)
    }

    fn handle_update(
        &mut self,
        msg: &Message,
        transport: Transport,
        mut chain: Option<Chain>,
        now: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let (resp, journal) = self.update(msg, chain.as_ref(), now);
        let mut failure = response_to(msg, ResponseCode::ServFail);
        failure.queries = msg.queries.clone();
        if let Some((origin, diff)) = journal {
            out.failure_reply =
                Some(self.finish(failure, msg, transport, chain.clone().as_mut(), now));
            out.notify.push(origin.clone());
            out.journal = Some((origin, diff));
        }
        out.replies
            .push(self.finish(resp, msg, transport, chain.as_mut(), now));
        out
    }

    /// Encodes a reply within the transport's size limit and signs it.
    fn finish(
        &self,
        mut resp: Message,
        req: &Message,
        transport: Transport,
        chain: Option<&mut Chain>,
        now: u64,
    ) -> Vec<u8> {
        if let Some(req_edns) = &req.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(DEFAULT_EDNS_PAYLOAD);
            edns.set_version(0);
            // RFC 3225 3: the DO bit is copied into the response.
            edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
            resp.edns = Some(edns);
        }
        let mut limit = match (transport, &req.edns) {
            (Transport::Tcp, _) => MAX_MESSAGE_BYTES,
            (Transport::Udp, None) => usize::from(CLASSIC_UDP_PAYLOAD),
            (Transport::Udp, Some(e)) => usize::from(
                e.max_payload()
                    .clamp(CLASSIC_UDP_PAYLOAD, DEFAULT_EDNS_PAYLOAD),
            ),
        };
        if let Some(chain) = &chain {
            limit = limit.saturating_sub(tsig::signature_len(chain.key()));
        }
        let mut bytes = encode_or_servfail(&resp, req);
        if bytes.len() > limit && !resp.additionals.is_empty() {
            resp.additionals.clear();
            bytes = encode_or_servfail(&resp, req);
        }
        if bytes.len() > limit {
            resp.answers.clear();
            resp.authorities.clear();
            resp.additionals.clear();
            resp.metadata.truncation = true;
            bytes = encode_or_servfail(&resp, req);
        }
        if let Some(chain) = chain {
            chain.sign_response(&mut bytes, now);
        }
        bytes
    }

    fn query(
        &self,
        msg: &Message,
        transport: Transport,
        mut chain: Option<Chain>,
        now: u64,
        out: &mut Outcome,
    ) {
        if msg.queries.len() != 1 {
            let resp = response_to(msg, ResponseCode::FormErr);
            out.replies
                .push(self.finish(resp, msg, transport, chain.as_mut(), now));
            return;
        }
        let q = &msg.queries[0];
        let reply = |rcode| {
            let mut r = response_to(msg, rcode);
            r.queries = msg.queries.clone();
            r
        };
        if !matches!(q.query_class, DNSClass::IN | DNSClass::ANY) {
            out.replies.push(self.finish(
                reply(ResponseCode::Refused),
                msg,
                transport,
                chain.as_mut(),
                now,
            ));
            return;
        }
        let Some(zone) = self.find_zone(&q.name) else {
            out.replies.push(self.finish(
                reply(ResponseCode::Refused),
                msg,
                transport,
                chain.as_mut(),
                now,
            ));
            return;
        };
        match q.query_type {
            RecordType::AXFR | RecordType::IXFR => {
                let allowed = chain
                    .as_ref()
                    .is_some_and(|c| self.policy.may_transfer(c.key().name()));
                let rcode = if !allowed || zone.origin() != &q.name.to_lowercase() {
                    Some(ResponseCode::Refused)
                } else if q.query_type == RecordType::AXFR && transport == Transport::Udp {
                    Some(ResponseCode::FormErr)
                } else {
                    None
                };
                if let Some(rcode) = rcode {
                    out.replies.push(self.finish(
                        reply(rcode),
                        msg,
                        transport,
                        chain.as_mut(),
                        now,
                    ));
                    return;
                }
                let Some(mut chain) = chain else { return };
                self.transfer(zone, msg, transport, &mut chain, now, out);
            }
            qtype if matches!(u16::from(qtype), 253 | 254) => {
                // MAILB, MAILA (obsolete meta types).
                out.replies.push(self.finish(
                    reply(ResponseCode::NotImp),
                    msg,
                    transport,
                    chain.as_mut(),
                    now,
                ));
            }
            qtype => {
                let dnssec_ok = msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
                let lookup = zone.lookup_dnssec(&q.name, qtype, dnssec_ok);
                let mut resp = reply(lookup.rcode);
                resp.metadata.authoritative = lookup.authoritative;
                resp.answers = lookup.answers;
                resp.authorities = lookup.authorities;
                resp.additionals = lookup.additionals;
                out.replies
                    .push(self.finish(resp, msg, transport, chain.as_mut(), now));
            }
        }
    }

    /// AXFR (RFC 5936) or IXFR (RFC 1995), in as many messages as needed,
    /// each signed (RFC 8945 5.3.1).
    fn transfer(
        &self,
        zone: &Zone,
        msg: &Message,
        transport: Transport,
        chain: &mut Chain,
        now: u64,
        out: &mut Outcome,
    ) {
        let soa = zone.soa().clone();
        let mut records: Vec<Record> = Vec::new();
        if msg.queries[0].query_type == RecordType::IXFR {
            let client = msg
                .authorities
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)
                .map(soa_serial);
            let Some(client) = client else {
                let resp = response_to(msg, ResponseCode::FormErr);
                out.replies
                    .push(self.finish(resp, msg, transport, Some(chain), now));
                return;
            };
            if !serial_gt(zone.serial(), client) || transport == Transport::Udp {
                // Up to date, or over UDP: the current SOA only (RFC 1995 2, 4).
                records.push(soa);
            } else if let Some(diffs) = zone.diffs_since(client) {
                records.push(soa.clone());
                for d in diffs {
                    records.push(d.old_soa.clone());
                    records.extend(d.deleted.iter().cloned());
                    records.push(d.new_soa.clone());
                    records.extend(d.added.iter().cloned());
                }
                records.push(soa);
            } else {
                records.extend(zone.records().cloned());
                records.push(soa);
            }
        } else {
            records.extend(zone.records().cloned());
            records.push(soa);
        }
        let budget = TRANSFER_MESSAGE_BYTES;
        let mut batch: Vec<Record> = Vec::new();
        let mut size = 0;
        let mut first = true;
        let mut flush = |batch: &mut Vec<Record>, first: &mut bool, out: &mut Outcome| {
            let mut resp = response_to(msg, ResponseCode::NoError);
            resp.metadata.authoritative = true;
            if *first {
                resp.queries = msg.queries.clone();
            }
            resp.answers = std::mem::take(batch);
            let mut bytes = encode_or_servfail(&resp, msg);
            chain.sign_response(&mut bytes, now);
            out.replies.push(bytes);
            *first = false;
        };
        for r in records {
            let len = r.to_bytes().map(|b| b.len()).unwrap_or(MAX_MESSAGE_BYTES);
            if !batch.is_empty() && size + len > budget {
                flush(&mut batch, &mut first, out);
                size = 0;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            flush(&mut batch, &mut first, out);
        }
    }

    fn update(
        &mut self,
        msg: &Message,
        chain: Option<&Chain>,
        now: u64,
    ) -> (Message, Option<(Name, ZoneDiff)>) {
        let mut resp = response_to(msg, ResponseCode::NoError);
        resp.queries = msg.queries.clone();
        let Some(chain) = chain else {
            // Updates must be TSIG-signed (fail closed).
            resp.metadata.response_code = ResponseCode::Refused;
            return (resp, None);
        };
        if msg.queries.len() != 1 || msg.queries[0].query_type != RecordType::SOA {
            resp.metadata.response_code = ResponseCode::FormErr;
            return (resp, None);
        }
        let origin = msg.queries[0].name.to_lowercase();
        let Some(zone) = self.zones.get_mut(&origin) else {
            resp.metadata.response_code = ResponseCode::NotAuth;
            return (resp, None);
        };
        match update::process(zone, msg, chain.key().name(), &self.policy, now) {
            Ok(Some(diff)) => (resp, Some((origin, diff))),
            Ok(None) => (resp, None),
            Err(rcode) => {
                resp.metadata.response_code = rcode;
                (resp, None)
            }
        }
    }
}

/// A response header for `req` (ID, opcode, RD and CD copied).
fn response_to(req: &Message, rcode: ResponseCode) -> Message {
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    resp.metadata.response_code = rcode;
    resp
}

fn encode_or_servfail(resp: &Message, req: &Message) -> Vec<u8> {
    match resp.to_vec() {
        Ok(bytes) if bytes.len() <= MAX_MESSAGE_BYTES => bytes,
        _ => {
            let fail = response_to(req, ResponseCode::ServFail);
            fail.to_vec()
                .unwrap_or_else(|_| minimal_error(&[0; 12], ResponseCode::ServFail))
        }
    }
}

fn resp_bytes(resp: &mut Message, request: &[u8]) -> Vec<u8> {
    resp.to_vec()
        .unwrap_or_else(|_| minimal_error(request, ResponseCode::ServFail))
}
