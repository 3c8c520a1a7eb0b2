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
//! - [`tlsrpt`]: SMTP TLS Reporting (RFC 8460), sending side: the TXT
//!   record, session counts per policy, the JSON report, gzip, the report
//!   message and the HTTPS upload.
//! - [`fuzz`]: entry points of the fuzz targets.

pub mod dane;
pub mod headers;
pub mod journal;
pub mod mta_sts;
pub mod srs;
pub mod tlsrpt;

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/mta_*.rs`,
/// `fuzz/fuzz_targets/tlsrpt.rs`); each
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
        use crate::journal::{decode_segment, encode_into, encode_v1_into};
        let segment = data.get(16..24).map_or(0, |b| {
            u64::from_le_bytes(b.try_into().expect("eight bytes"))
        });
        let seg = decode_segment(data, segment);
        assert!(seg.used + seg.cut_short <= data.len());
        let mut again = Vec::new();
        for r in &seg.records {
            match r.segment {
                Some(s) => {
                    assert_eq!(s, segment);
                    encode_into(&mut again, s, r.dir, r.name, r.body);
                }
                None => encode_v1_into(&mut again, r.dir, r.name, r.body),
            }
        }
        assert_eq!(again, &data[..seg.used]);
        // One version per file.
        let numbered = |r: &crate::journal::Record<'_>| r.segment.is_some();
        assert!(seg.records.iter().all(numbered) || !seg.records.iter().any(numbered));
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

    /// TLS reporting on arbitrary bytes: a TXT record (the whole input,
    /// and its lines as several strings) parses without panicking into at
    /// most `MAX_RUA` usable destinations and comes back the same from
    /// its text; the input as an `https:` URL gives a well-formed request
    /// or an error, and as a response head a verdict only when it is one;
    /// sessions counted under policies and failures made of pieces of the
    /// input stay within the bounds and add up, and each report is valid
    /// JSON that survives gzip and the report message.
    pub fn tlsrpt(data: &[u8]) {
        use crate::tlsrpt::{
            Failure, MAX_FAILURE_ROWS, MAX_POLICIES_PER_DOMAIN, MAX_RUA, MessageMeta, Policy,
            PolicyType, ReportMeta, ResultType, Rua, Tally, filename, gunzip, gzip, https_accepted,
            https_request, message, record, to_json,
        };
        let text = String::from_utf8_lossy(data);
        let lines: Vec<&str> = text.split('\n').collect();
        for r in [record(&[&text]), record(&lines)].into_iter().flatten() {
            assert!(!r.rua.is_empty() && r.rua.len() <= MAX_RUA, "{r:?}");
            for rua in &r.rua {
                match rua {
                    Rua::Mailto(a) => assert!(a.contains('@') && !a.contains(char::is_control)),
                    Rua::Https(u) => assert!(https_request(u, b"").is_ok(), "{u}"),
                }
            }
            assert_eq!(record(&[&r.to_text()]), Ok(r.clone()));
        }

        if let Ok((host, port, request)) = https_request(&text, data) {
            assert!(!host.is_empty() && port != 0);
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut parsed = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(n)) = parsed.parse(&request) else {
                panic!("unreadable request for {text:?}");
            };
            assert_eq!(parsed.method, Some("POST"));
            assert_eq!(parsed.headers.len(), 5);
            assert_eq!(&request[n..], data);
        }
        if https_accepted(data) == Some(true) {
            assert!(data.starts_with(b"HTTP/"));
        }

        let pieces: Vec<&str> = text.split('|').collect();
        let piece = |i: usize| pieces[i % pieces.len()];
        let mut tally = Tally::default();
        let mut sessions = 0;
        for (i, &b) in data.iter().take(24).enumerate() {
            let kinds = [PolicyType::Tlsa, PolicyType::Sts, PolicyType::NoPolicyFound];
            let policy = Policy {
                kind: kinds[usize::from(b % 3)],
                domain: piece(usize::from(b >> 6)).to_owned(),
                strings: vec![piece(i).to_owned()],
                mx_host: vec![piece(i + 1).to_owned()],
            };
            if b & 8 == 0 {
                tally.success(&policy);
            } else {
                let failure = Failure {
                    result: ResultType::ALL[usize::from(b) % ResultType::ALL.len()],
                    sending_ip: (b & 16 != 0).then(|| std::net::IpAddr::from([192, 0, 2, b])),
                    receiving_mx: Some(piece(i + 2).to_owned()),
                    receiving_ip: (b & 32 != 0)
                        .then(|| std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
                    detail: Some(piece(i + 3).to_owned()),
                };
                tally.failure(&policy, failure);
            }
            sessions += 1;
        }
        let dropped = tally.dropped();
        let domains = tally.domains().count();
        let reports = tally.take();
        assert!(tally.is_empty() && tally.dropped() == 0);
        assert_eq!(reports.len(), domains);
        let mut counted = 0;
        for report in &reports {
            assert!(report.policies.len() <= MAX_POLICIES_PER_DOMAIN);
            for p in &report.policies {
                assert_eq!(p.policy.domain, report.domain);
                assert!(p.details.len() <= MAX_FAILURE_ROWS);
                assert!(p.details.iter().map(|(_, n)| n).sum::<u64>() <= p.failures);
                counted += p.successes + p.failures;
            }
        }
        assert_eq!(counted + dropped, sessions);

        for (n, report) in reports.iter().take(2).enumerate() {
            let meta = ReportMeta {
                organization: piece(0),
                contact: piece(1),
                report_id: piece(2),
                start: data.len() as u64,
                end: u64::MAX,
            };
            let json = to_json(&meta, report);
            assert!(json_valid(&json), "{json}");
            if n > 0 {
                // The message (below) is the costly part: once is enough.
                let gz = gzip(json.as_bytes());
                assert_eq!(gunzip(&gz, json.len()).as_deref(), Some(json.as_bytes()));
                continue;
            }
            let name = filename(piece(3), &report.domain, 0, 1, piece(2));
            assert!(name.ends_with(".json.gz"), "{name}");
            assert!(!name.contains(['/', '\\']) && !name.contains(char::is_control));
            assert!((4..=5).contains(&name.split('!').count()), "{name}");
            let envelope = MessageMeta {
                from: "tlsrpt@a.example",
                to: "reports@b.example",
                submitter: piece(3),
                date: 0,
                message_id: piece(4),
            };
            let msg = message(&envelope, &meta, report);
            let parsed = scop_mime::parse(&msg).expect("a report message parses");
            let mut attached = None;
            parsed.message.walk(&mut |m| {
                if let scop_mime::Body::Leaf(leaf) = m.body()
                    && m.content_type().subtype() == "tlsrpt+gzip"
                {
                    attached = gunzip(leaf.decoded(), json.len());
                }
            });
            assert_eq!(attached.as_deref(), Some(json.as_bytes()));
        }
    }

    /// Whether `s` is one JSON value (RFC 8259 2), white space around it
    /// allowed: the check the fuzz targets make of the JSON we write
    /// (the unit tests hold it to `serde_json`).
    pub(crate) fn json_valid(s: &str) -> bool {
        let b = s.as_bytes();
        let mut at = 0;
        json_value(b, &mut at, 0) && {
            json_ws(b, &mut at);
            at == b.len()
        }
    }

    fn json_ws(b: &[u8], at: &mut usize) {
        while matches!(b.get(*at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *at += 1;
        }
    }

    fn json_eat(b: &[u8], at: &mut usize, c: u8) -> bool {
        json_ws(b, at);
        let hit = b.get(*at) == Some(&c);
        *at += usize::from(hit);
        hit
    }

    fn json_value(b: &[u8], at: &mut usize, depth: usize) -> bool {
        json_ws(b, at);
        if depth > 64 {
            return false;
        }
        match b.get(*at) {
            Some(&open @ (b'{' | b'[')) => {
                *at += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if json_eat(b, at, close) {
                    return true;
                }
                loop {
                    if open == b'{' {
                        json_ws(b, at);
                        if !json_string(b, at) || !json_eat(b, at, b':') {
                            return false;
                        }
                    }
                    if !json_value(b, at, depth + 1) {
                        return false;
                    }
                    if json_eat(b, at, close) {
                        return true;
                    }
                    if !json_eat(b, at, b',') {
                        return false;
                    }
                }
            }
            Some(b'"') => json_string(b, at),
            Some(b'-' | b'0'..=b'9') => json_number(b, at),
            _ => ["true", "false", "null"].iter().any(|lit| {
                let hit = b[*at..].starts_with(lit.as_bytes());
                *at += if hit { lit.len() } else { 0 };
                hit
            }),
        }
    }

    fn json_string(b: &[u8], at: &mut usize) -> bool {
        if b.get(*at) != Some(&b'"') {
            return false;
        }
        *at += 1;
        loop {
            match b.get(*at) {
                None => return false,
                Some(b'"') => {
                    *at += 1;
                    return true;
                }
                Some(b'\\') => match b.get(*at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *at += 2,
                    Some(b'u')
                        if b.get(*at + 2..*at + 6)
                            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        *at += 6
                    }
                    _ => return false,
                },
                Some(&c) if c < 0x20 => return false,
                Some(_) => *at += 1,
            }
        }
    }

    fn json_number(b: &[u8], at: &mut usize) -> bool {
        let digits = |at: &mut usize| {
            let start = *at;
            while b.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > start
        };
        if b.get(*at) == Some(&b'-') {
            *at += 1;
        }
        if b.get(*at) == Some(&b'0') {
            *at += 1;
        } else if !digits(at) {
            return false;
        }
        if b.get(*at) == Some(&b'.') {
            *at += 1;
            if !digits(at) {
                return false;
            }
        }
        if matches!(b.get(*at), Some(b'e' | b'E')) {
            *at += 1;
            if matches!(b.get(*at), Some(b'+' | b'-')) {
                *at += 1;
            }
            if !digits(at) {
                return false;
            }
        }
        true
    }
}
