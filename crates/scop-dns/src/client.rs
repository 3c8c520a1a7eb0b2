//! Building RFC 2136 UPDATE messages and checking the replies: the
//! client half, used by `scop dns update` and by the DKIM signer to
//! publish its key. Sans-IO: the caller sends the bytes (over TCP or
//! UDP) and passes the reply and the time in.

use crate::Error;
use crate::tsig::{Chain, Key};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// One change of an UPDATE (RFC 2136 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add a record to its RRset (2.5.1).
    Add(Record),
    /// Delete the whole RRset of this name and type, then add the record
    /// (2.5.2 then 2.5.1): the RRset becomes exactly this record.
    Replace(Record),
    /// Delete one record, matched by name, type and data (2.5.4).
    DeleteRecord(Record),
    /// Delete the RRset of this name and type (2.5.2).
    DeleteRrset(Name, RecordType),
    /// Delete every RRset of this name (2.5.3).
    DeleteName(Name),
}

/// Parses one record in master-file syntax: `NAME TTL TYPE DATA`, with
/// `NAME` relative to `zone` unless it ends with a dot (`@` is the apex).
pub fn parse_record(
    zone: &Name,
    name: &str,
    ttl: u32,
    rtype: &str,
    data: &str,
) -> Result<Record, Error> {
    if [name, rtype, data]
        .iter()
        .any(|s| s.contains(['\n', '\r', '$']))
    {
        return Err(Error::ApiMisuse(
            "record text must be one line without `$`".into(),
        ));
    }
    let text = format!("{name} {ttl} IN {rtype} {data}\n");
    let (_, sets) = Parser::new(text, None, Some(zone.clone()))
        .parse()
        .map_err(|e| Error::ApiMisuse(format!("cannot parse record: {e}")))?;
    let record = sets
        .into_values()
        .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .ok_or_else(|| Error::ApiMisuse("no record parsed".into()))?;
    Ok(record)
}

/// Builds an unsigned UPDATE for `zone`.
pub fn update_message(zone: &Name, id: u16, changes: &[Change]) -> Result<Vec<u8>, Error> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Update);
    let mut zq = Query::query(zone.clone(), RecordType::SOA);
    zq.set_query_class(DNSClass::IN);
    msg.add_query(zq);
    let meta = |name: &Name, class: DNSClass, rtype: RecordType| {
        let mut r = Record::update0(name.clone(), 0, rtype);
        r.dns_class = class;
        r
    };
    for c in changes {
        match c {
            Change::Add(r) => {
                msg.add_authority(r.clone());
            }
            Change::Replace(r) => {
                msg.add_authority(meta(&r.name, DNSClass::ANY, r.record_type()));
                msg.add_authority(r.clone());
            }
            Change::DeleteRecord(r) => {
                let mut r = r.clone();
                r.dns_class = DNSClass::NONE;
                r.ttl = 0;
                msg.add_authority(r);
            }
            Change::DeleteRrset(name, rtype) => {
                msg.add_authority(meta(name, DNSClass::ANY, *rtype));
            }
            Change::DeleteName(name) => {
                msg.add_authority(meta(name, DNSClass::ANY, RecordType::ANY));
            }
        }
    }
    msg.to_vec().map_err(|e| Error::Encode(e.to_string()))
}

/// Builds an UPDATE signed with `key` at `now`; keep the chain to check
/// the reply with [`check_reply`].
pub fn signed_update(
    zone: &Name,
    id: u16,
    changes: &[Change],
    key: &Key,
    now: u64,
) -> Result<(Vec<u8>, Chain), Error> {
    let mut bytes = update_message(zone, id, changes)?;
    let mut chain = Chain::new(key.clone());
    chain.sign_request(&mut bytes, now);
    Ok((bytes, chain))
}

/// The server's verdict on an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The RCODE (NOERROR when applied).
    pub rcode: ResponseCode,
    /// The TSIG error (0, or BADSIG 16, BADKEY 17, BADTIME 18).
    pub tsig_error: u16,
}

/// Checks the reply to a signed request: same ID, a response, and a
/// valid TSIG MAC chained to the request's (an unsigned BADKEY/BADSIG
/// error is reported as such, RFC 8945 5.3.2).
pub fn check_reply(chain: &mut Chain, id: u16, reply: &[u8], now: u64) -> Result<Reply, Error> {
    if reply.len() < 12 || u16::from_be_bytes([reply[0], reply[1]]) != id || reply[2] & 0x80 == 0 {
        return Err(Error::BadReply("not a reply to our request".into()));
    }
    let tsig_error = chain.verify_response(reply, now)?;
    let rcode = ResponseCode::from(0, reply[3] & 0x0F);
    Ok(Reply { rcode, tsig_error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_relative_and_absolute() {
        let z = Name::from_ascii("example.org.").unwrap();
        let r = parse_record(&z, "s1._domainkey", 300, "TXT", "\"v=DKIM1; p=abc\"").unwrap();
        assert_eq!(
            r.name,
            Name::from_ascii("s1._domainkey.example.org.").unwrap()
        );
        assert_eq!(r.ttl, 300);
        let r = parse_record(&z, "@", 60, "MX", "10 mail").unwrap();
        assert_eq!(r.record_type(), RecordType::MX);
        assert!(parse_record(&z, "x", 60, "A", "not-an-ip").is_err());
        assert!(parse_record(&z, "x\n$INCLUDE /etc/passwd", 60, "A", "1.2.3.4").is_err());
    }
}
