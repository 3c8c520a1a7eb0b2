#![forbid(unsafe_code)]
//! The sans-IO pieces of SCoP's mail compartments: bytes and values in,
//! bytes and decisions out, no sockets, files or clocks (the time is an
//! argument).
//!
//! - [`headers`]: the Received trace field, Message-ID and Date for
//!   messages that lack them, and edits of the raw header block (find its
//!   end, test for a field, remove fields) that keep every other byte.
//! - [`srs`]: the Sender Rewriting Scheme for forwarded mail, HMAC-checked
//!   and dated.
//! - [`journal`]: records of the delivery journal (mailbox copies framed
//!   with a length and a CRC-32, so a write cut short by a crash is seen).
//! - [`dane`]: DANE for SMTP (RFC 7672): what the relay does with a host
//!   given its DNSSEC-validated TLSA records, and certificate matching.
//! - [`mta_sts`]: SMTP MTA Strict Transport Security (RFC 8461): the TXT
//!   record, the policy, its HTTP fetch and cache, and MX host matching.
//! - [`fuzz`]: entry points of the fuzz targets.

pub mod dane;
pub mod headers;
pub mod journal;
pub mod mta_sts;
pub mod srs;

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/mta_*.rs`); each
/// checks the properties that must hold on any input and panics when one
/// does not.
pub mod fuzz {
    use crate::headers::{
        copy_key, field_value, has_field, header_end, remove_fields, same_content, with_trace,
    };
    use crate::srs::Srs;

    /// Header edits on arbitrary bytes: the end of the header block is in
    /// bounds, removing fields keeps the body and never grows the message,
    /// adding trace fields keeps every original byte after the header, and
    /// a prepended `Return-Path` leaves the content and the copy key as
    /// they were.
    pub fn header_edits(data: &[u8]) {
        let end = header_end(data);
        assert!(end <= data.len());
        let _ = has_field(data, "Received");
        let _ = copy_key(data, ["a@b.test"]);
        assert!(same_content(data, data));
        let stripped = remove_fields(data, |line| {
            field_value(line, "X-Spam-Verdict").is_some()
                || field_value(line, "Authentication-Results").is_some()
        });
        assert!(stripped.len() <= data.len());
        assert!(stripped.ends_with(&data[end..]));
        let traced = with_trace(data, "Received: from x\r\n", Some(("<id@host>", 0)));
        assert!(traced.ends_with(&data[end..]));
        assert!(traced.len() >= data.len() + "Received: from x\r\n".len());
        // (A first line starting with white space would continue the
        // prepended field.)
        if !matches!(data.first(), Some(b' ' | b'\t')) {
            let prefixed = [&b"Return-Path: <a@b.test>\r\n"[..], data].concat();
            assert!(same_content(&prefixed, data));
            assert_eq!(
                copy_key(&prefixed, ["a@b.test"]),
                copy_key(data, ["a@b.test"])
            );
        }
    }

    /// SRS on arbitrary text: reversing never panics, and what we forward
    /// reverses to the original sender.
    pub fn srs(data: &[u8]) {
        let srs = Srs::new(b"fuzz key for SRS");
        let text = String::from_utf8_lossy(data);
        let now = 1_800_000_000;
        let _ = Srs::is_srs(&text);
        let _ = srs.reverse(&text, now);
        if let Some(local) = text.split('@').next()
            && let Some(fwd) = srs.forward(&format!("{local}@origin.example"), "fwd.example", now)
            && let Some((l, _)) = fwd.rsplit_once('@')
        {
            assert_eq!(
                srs.reverse(l, now).ok().as_deref(),
                Some(format!("{local}@origin.example").as_str()),
                "{fwd}"
            );
        }
    }

    /// Journal records from arbitrary bytes: decoding never panics and
    /// stays in bounds, and what decodes encodes to the same bytes.
    pub fn journal(data: &[u8]) {
        let (records, used) = crate::journal::decode_all(data);
        assert!(used <= data.len());
        let mut again = Vec::new();
        for r in &records {
            crate::journal::encode_into(&mut again, r.dir, r.name, r.body);
        }
        assert_eq!(again, &data[..used]);
    }

    /// DANE on arbitrary bytes taken as a certificate: finding the public
    /// key never panics and yields a DER SEQUENCE inside the input; the
    /// `3 1 1` record made from a certificate matches it, and a chain of
    /// that certificate alone matches as the end entity.
    pub fn dane(data: &[u8]) {
        use crate::dane::{ChainMatch, Tlsa, match_chain, spki};
        if let Some(key) = spki(data) {
            assert_eq!(key.first(), Some(&0x30));
            let start = key.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + key.len() <= data.len());
            let rec = Tlsa::ee_spki_sha256(data).expect("a key was found");
            assert!(rec.usable() && rec.matches(data));
            assert_eq!(match_chain(&[rec], &[data]), ChainMatch::EndEntity);
        } else {
            assert!(Tlsa::ee_spki_sha256(data).is_none());
        }
    }

    /// MTA-STS on arbitrary bytes: parsing a policy, a TXT record, a
    /// cache entry or an HTTP response never panics; a parsed policy and
    /// a parsed cache entry come back the same from their text, and match
    /// their own MX names; a response never yields a body over
    /// `MAX_BODY`, and is never incomplete once the connection is closed
    /// or `MAX_RESPONSE` bytes were read.
    pub fn mta_sts(data: &[u8]) {
        use crate::mta_sts::{
            Cached, MAX_BODY, MAX_RESPONSE, Policy, Response, TxtRecord, response, txt_record,
        };
        if let Ok(p) = Policy::parse(data) {
            assert_eq!(Policy::parse(p.to_text().as_bytes()), Ok(p.clone()));
            assert!(!p.mx.is_empty() || p.mode == crate::mta_sts::Mode::None);
            for m in &p.mx {
                let host = m
                    .strip_prefix("*.")
                    .map_or(m.clone(), |rest| format!("a.{rest}"));
                assert!(
                    p.mx_matches(&format!("{}.", host.to_ascii_uppercase())),
                    "{m}"
                );
            }
        }
        for closed in [false, true] {
            match response(data, closed) {
                Response::Body(body) => assert!(body.len() <= MAX_BODY),
                Response::Incomplete => assert!(!closed && data.len() < MAX_RESPONSE),
                Response::Failed(_) => {}
            }
        }
        let strings: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        for record in [txt_record(&[data]), txt_record(&strings)]
            .into_iter()
            .flatten()
        {
            let again = format!("v=STSv1; id={}", record.id);
            assert_eq!(
                txt_record(&[again.as_bytes()]),
                Some(TxtRecord { id: record.id })
            );
        }
        if let Ok(text) = std::str::from_utf8(data)
            && let Some(c) = Cached::parse(text)
        {
            assert_eq!(Cached::parse(&c.to_text()), Some(c));
        }
    }
}
