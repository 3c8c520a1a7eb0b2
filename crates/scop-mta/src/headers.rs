//! Trace and origination fields the compartments add (sans-IO): the
//! `Received` field (RFC 5321 4.4, with the RFC 3848 protocol keywords),
//! and the `Message-ID` and `Date` a submission server adds when the client
//! left them out (RFC 6409 8.2, 8.3).

use std::net::IpAddr;

use scop_mime::DateTime;

/// The `with` keyword of a Received field (RFC 3848).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HELO.
    Smtp,
    /// EHLO, no TLS, no AUTH.
    Esmtp,
    /// EHLO with AUTH.
    Esmtpa,
    /// EHLO under TLS.
    Esmtps,
    /// EHLO under TLS with AUTH.
    Esmtpsa,
}

impl Protocol {
    /// The keyword for a session.
    pub fn for_session(extended: bool, tls: bool, authenticated: bool) -> Self {
        match (extended, tls, authenticated) {
            (false, _, _) => Protocol::Smtp,
            (true, false, false) => Protocol::Esmtp,
            (true, false, true) => Protocol::Esmtpa,
            (true, true, false) => Protocol::Esmtps,
            (true, true, true) => Protocol::Esmtpsa,
        }
    }

    /// The keyword as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Esmtp => "ESMTP",
            Protocol::Esmtpa => "ESMTPA",
            Protocol::Esmtps => "ESMTPS",
            Protocol::Esmtpsa => "ESMTPSA",
        }
    }
}

/// What a Received field records.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    /// The client's HELO/EHLO argument, if it sent one.
    pub helo: Option<&'a str>,
    /// The client's address.
    pub addr: IpAddr,
    /// Our host name.
    pub by: &'a str,
    /// The protocol keyword.
    pub protocol: Protocol,
    /// TLS version and cipher, when under TLS.
    pub tls: Option<&'a str>,
    /// Our queue identifier.
    pub id: &'a str,
    /// The single recipient, when there is exactly one (never several: that
    /// would disclose Bcc recipients).
    pub for_rcpt: Option<&'a str>,
    /// Unix time of receipt.
    pub now: i64,
}

impl Received<'_> {
    /// The whole field, folded, ending in CRLF.
    pub fn to_field(&self) -> String {
        let helo = self.helo.map(clean).unwrap_or_else(|| "unknown".into());
        let mut s = format!(
            "Received: from {helo} ([{}])\r\n\tby {} with {}",
            self.addr,
            clean(self.by),
            self.protocol.as_str()
        );
        if let Some(t) = self.tls {
            s.push_str(&format!(" ({})", clean(t)));
        }
        s.push_str(&format!("\r\n\tid {}", clean(self.id)));
        if let Some(r) = self.for_rcpt {
            s.push_str(&format!("\r\n\tfor <{}>", clean(r)));
        }
        s.push_str(&format!(
            ";\r\n\t{}\r\n",
            DateTime::from_unix_timestamp(self.now).to_rfc5322()
        ));
        s
    }
}

/// Keeps printable ASCII and UTF-8 letters; drops controls, parentheses
/// and angle brackets so that a client-chosen string cannot break the
/// field's syntax or fold it.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '<' | '>' | ';' | '\\'))
        .take(255)
        .collect()
}

/// The offset just past the blank line ending the header block (the body
/// start), or the message length when there is no body.
pub fn header_end(msg: &[u8]) -> usize {
    let mut i = 0;
    while i < msg.len() {
        let line_end = match memchr(b'\n', &msg[i..]) {
            Some(p) => i + p + 1,
            None => return msg.len(),
        };
        let line = &msg[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        i = line_end;
    }
    msg.len()
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Whether the header block has a field named `name` (case-insensitive).
pub fn has_field(msg: &[u8], name: &str) -> bool {
    msg[..header_end(msg)]
        .split(|&b| b == b'\n')
        .any(|line| field_value(line, name).is_some())
}

/// Calls `keep` with each line of the header block (continuation lines
/// included) that belongs to a field for which `drop` (given the field's
/// first line, name included) says false; returns the body's offset.
fn walk_kept_lines(msg: &[u8], drop: impl Fn(&[u8]) -> bool, mut keep: impl FnMut(&[u8])) -> usize {
    let end = header_end(msg);
    let mut dropping = false;
    let mut i = 0;
    while i < end {
        let line_end = msg[i..end]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(end);
        let line = &msg[i..line_end];
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            dropping = drop(line);
        }
        if !dropping {
            keep(line);
        }
        i = line_end;
    }
    end
}

/// `msg` without the header fields for which `drop` (given the field's
/// first line, name included) says true, continuation lines included; the
/// body is untouched.
pub fn remove_fields(msg: &[u8], drop: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let end = walk_kept_lines(msg, drop, |line| out.extend_from_slice(line));
    out.extend_from_slice(&msg[end..]);
    out
}

/// Header fields that mail systems add on the way (trace, authentication
/// results, the final delivery's envelope facts; with [`SPAM_LABELS`]),
/// which
/// differ between two copies of one message that took different paths or
/// the same path twice.
pub const TRANSIT_FIELDS: &[&str] = &[
    "Received",
    "Return-Path",
    "Delivered-To",
    "X-Original-To",
    "Received-SPF",
    "Authentication-Results",
    "ARC-Seal",
    "ARC-Message-Signature",
    "ARC-Authentication-Results",
];

/// The spam filter's labels (it removes them from incoming messages and
/// adds its own): transit fields too.
pub const SPAM_LABELS: &[&str] = &[
    "X-Spam-Score",
    "X-Spam-Verdict",
    "X-Spam-Clues",
    "X-Spam-Danger",
];

/// SHA-512/256 naming the copies of one message to some envelope
/// recipients: over the message's header fields but the transit ones
/// ([`is_transit_field`]), byte for byte, its body's length, and the
/// recipients (as given, case-folded, sorted, without duplicates) that
/// led to one mailbox. The same message sent again to the same
/// recipients (a retry after a crash, whatever trace the hops added) gets
/// the same key; the same bytes sent to another address of that mailbox
/// do not.
///
/// Only the header block is hashed, so the key costs the same for any
/// body size: equal keys do not prove equal messages, [`same_content`]
/// does, and whoever dedupes by key compares before dropping a copy.
pub fn copy_key<'a>(msg: &[u8], recipients: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    key(msg, recipients, false)
}

/// As [`copy_key`], over the whole body instead of its length: equal
/// keys stand for equal content (but the transit fields), for whoever
/// cannot compare the copies, e.g. the queue, where the first copy may
/// already be gone.
pub fn content_key<'a>(msg: &[u8], recipients: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    key(msg, recipients, true)
}

fn key<'a>(msg: &[u8], recipients: impl IntoIterator<Item = &'a str>, body: bool) -> [u8; 32] {
    let mut rcpts: Vec<String> = recipients
        .into_iter()
        .map(|r| r.to_ascii_lowercase())
        .collect();
    rcpts.sort();
    rcpts.dedup();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA512_256);
    let mut header_len = 0u64;
    let end = walk_kept_lines(msg, is_transit_field, |line| {
        header_len += line.len() as u64;
        ctx.update(line);
    });
    // Lengths first, so no header, body or recipient list can pass for
    // another split of the same bytes.
    ctx.update(&header_len.to_be_bytes());
    ctx.update(&((msg.len() - end) as u64).to_be_bytes());
    for r in &rcpts {
        ctx.update(&(r.len() as u64).to_be_bytes());
        ctx.update(r.as_bytes());
    }
    if body {
        ctx.update(&msg[end..]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Whether `a` and `b` are one message as its sending side wrote it: the
/// same header fields but the transit ones ([`is_transit_field`]), byte
/// for byte and in the same order, and the same body.
pub fn same_content(a: &[u8], b: &[u8]) -> bool {
    let kept = |msg: &[u8]| {
        let mut lines = Vec::new();
        let end = walk_kept_lines(msg, is_transit_field, |line| lines.push(line.to_vec()));
        (lines.concat(), end)
    };
    let (head_a, end_a) = kept(a);
    let (head_b, end_b) = kept(b);
    head_a == head_b && a[end_a..] == b[end_b..]
}

/// The first `Date` field's time (Unix seconds), if it parses; folded
/// values are read up to their first line.
pub fn date_of(msg: &[u8]) -> Option<i64> {
    msg[..header_end(msg)]
        .split(|&b| b == b'\n')
        .find_map(|line| field_value(line, "Date"))
        .and_then(DateTime::parse)
        .map(|d| d.unix_timestamp())
}

/// Whether a field's first line names one of [`TRANSIT_FIELDS`] or
/// [`SPAM_LABELS`].
pub fn is_transit_field(line: &[u8]) -> bool {
    TRANSIT_FIELDS
        .iter()
        .chain(SPAM_LABELS)
        .any(|name| field_value(line, name).is_some())
}

/// The value of a field line named `name` (case-insensitive), if `line`
/// is one.
pub fn field_value<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if line.len() <= name.len() || !line[..name.len()].eq_ignore_ascii_case(name.as_bytes()) {
        return None;
    }
    let rest = &line[name.len()..];
    let colon = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
    (rest[colon] == b':').then(|| &rest[colon + 1..])
}

/// A Message-ID value (with angle brackets) from a unique token and our
/// host name.
pub fn message_id(unique: &str, host: &str) -> String {
    format!("<{}@{}>", clean(unique), clean(host))
}

/// `trace` (already ending in CRLF) prepended to `msg`, plus `Message-ID`
/// and `Date` appended to the header block when `ids` is given and the
/// message lacks them: `ids` is the Message-ID to use and the time.
pub fn with_trace(msg: &[u8], trace: &str, ids: Option<(&str, i64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + trace.len() + 128);
    out.extend_from_slice(trace.as_bytes());
    let Some((id, now)) = ids else {
        out.extend_from_slice(msg);
        return out;
    };
    let mut extra = String::new();
    if !has_field(msg, "Message-ID") {
        extra.push_str(&format!("Message-ID: {id}\r\n"));
    }
    if !has_field(msg, "Date") {
        extra.push_str(&format!(
            "Date: {}\r\n",
            DateTime::from_unix_timestamp(now).to_rfc5322()
        ));
    }
    let end = header_end(msg);
    // Insert before the blank line (or at the end of a header-only message).
    let blank = if msg[..end].ends_with(b"\r\n\r\n") {
        end - 2
    } else if msg[..end].ends_with(b"\n\n") {
        end - 1
    } else {
        end
    };
    out.extend_from_slice(&msg[..blank]);
    if blank == msg.len() && !msg.is_empty() && !msg.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(&msg[blank..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received() -> Received<'static> {
        Received {
            helo: Some("client.example"),
            addr: "192.0.2.7".parse().unwrap(),
            by: "mx.example.org",
            protocol: Protocol::Esmtps,
            tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384"),
            id: "Q123",
            for_rcpt: Some("bob@example.org"),
            now: 1_700_000_000,
        }
    }

    #[test]
    fn received_field_is_folded_and_parses() {
        let f = received().to_field();
        assert!(f.starts_with(
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org with ESMTPS"
        ));
        assert!(f.ends_with("\r\n"));
        let msg = format!("{f}Subject: x\r\n\r\nbody\r\n");
        let parsed = scop_mime::parse(msg.as_bytes()).unwrap();
        let r = parsed.message.header("Received").unwrap().text();
        assert!(r.contains("for <bob@example.org>;"), "{r}");
    }

    #[test]
    fn client_strings_cannot_break_the_field() {
        let mut r = received();
        r.helo = Some("evil)\r\nX-Injected: yes (");
        let f = r.to_field();
        assert!(!f.contains("X-Injected: yes\r\n"));
        assert_eq!(f.matches("\r\n").count(), f.matches("\r\n\t").count() + 1);
    }

    #[test]
    fn protocol_keywords() {
        assert_eq!(Protocol::for_session(false, true, true), Protocol::Smtp);
        assert_eq!(Protocol::for_session(true, true, true).as_str(), "ESMTPSA");
        assert_eq!(Protocol::for_session(true, false, true).as_str(), "ESMTPA");
    }

    #[test]
    fn missing_ids_are_added_in_the_header_block() {
        let msg = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = with_trace(msg, "Received: x\r\n", Some(("<id@h>", 0)));
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "Received: x\r\nFrom: a@example.org\r\nSubject: hi\r\nMessage-ID: <id@h>\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn present_ids_are_kept() {
        let msg = b"message-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n";
        let out = with_trace(msg, "", Some(("<id@h>", 0)));
        assert_eq!(out, msg);
    }

    #[test]
    fn header_only_message_gets_fields() {
        let out = with_trace(b"Subject: x", "", Some(("<i@h>", 0)));
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("Subject: x\r\nMessage-ID: <i@h>\r\nDate: "),
            "{s}"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_keep_the_message(msg in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let end = header_end(&msg);
            proptest::prop_assert!(end <= msg.len());
            let _ = has_field(&msg, "Date");
            let out = with_trace(&msg, "Received: x\r\n", Some(("<i@h>", 0)));
            // The original bytes survive in order, with at most the two
            // fields inserted at the end of the header block.
            proptest::prop_assert!(out.len() >= msg.len() + 13);
            proptest::prop_assert!(out.ends_with(&msg[end.min(msg.len())..]));
        }
    }

    #[test]
    fn copy_keys_and_content_ignore_transit_fields_only() {
        let original = b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n\r\nbody\r\n";
        let travelled = b"Return-Path: <a@a.test>\r\nAuthentication-Results: mx.b.test; spf=pass\r\nX-Spam-Verdict: ham\r\nReceived: from x\r\n\tby mx.b.test; Fri, 27 Nov 2026 06:00:00 +0000\r\nFrom: a@a.test\r\nReceived: from y by z\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n\r\nbody\r\n";
        let key = |m: &[u8]| copy_key(m, ["a@b.test"]);
        let k = key(original);
        assert_eq!(key(travelled), k);
        assert!(same_content(original, travelled));
        // Any other field, a folded continuation or the body's length
        // changes the key; every change shows in the content.
        for changed in [
            &b"From: a@a.test\r\nMessage-ID: <2@a.test>\r\nSubject: hi\r\n\r\nbody\r\n"[..],
            b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n there\r\n\r\nbody\r\n",
            b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n\r\nbody.\r\n",
            b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\nX-Spam: 1\r\n\r\nbody\r\n",
            b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n\r\n",
        ] {
            let shown = String::from_utf8_lossy(changed);
            assert_ne!(key(changed), k, "{shown}");
            assert!(!same_content(changed, original), "{shown}");
        }
        // A body of the same length keeps the key: only the content
        // tells the two apart.
        let same_length =
            b"From: a@a.test\r\nMessage-ID: <1@a.test>\r\nSubject: hi\r\n\r\nBODY\r\n";
        assert_eq!(key(same_length), k);
        assert!(!same_content(same_length, travelled));
        // The content key tells them apart, and still not the trace.
        let content = |m: &[u8]| content_key(m, ["a@b.test"]);
        assert_ne!(content(same_length), content(original));
        assert_eq!(content(travelled), content(original));
        assert_ne!(content(original), k);
        // The header's bytes cannot pass for the body's.
        assert_ne!(
            key(b"Subject: s\r\n\r\nX: y\r\n"),
            key(b"Subject: s\r\nX: y\r\n\r\n")
        );
        // Copies: the recipients count, their order and case do not.
        let one = copy_key(original, ["Dora@d.test", "info@d.test"]);
        assert_eq!(
            one,
            copy_key(original, ["info@d.test", "dora@d.test", "dora@d.test"])
        );
        assert_ne!(one, copy_key(original, ["dora@d.test"]));
        assert_eq!(
            date_of(b"Subject: s\r\nDate: Fri, 27 Nov 2026 06:00:00 +0100\r\n\r\n"),
            Some(1_795_755_600)
        );
        assert_eq!(
            date_of(b"Subject: s\r\n\r\nDate: Fri, 27 Nov 2026 06:00:00 +0000\r\n"),
            None
        );
        assert_eq!(date_of(b"Date: yesterday\r\n\r\n"), None);
        // A body line that looks like a trace field is body.
        assert!(!same_content(
            b"Subject: s\r\n\r\nReceived: x\r\n",
            b"Subject: s\r\n\r\n"
        ));
    }

    #[test]
    fn has_field_ignores_body_and_prefixes() {
        let msg = b"Dated: x\r\nX-Date: y\r\n\r\nDate: z\r\n";
        assert!(!has_field(msg, "Date"));
        assert!(has_field(b"Date : x\r\n\r\n", "Date"));
    }
}
