//! Property tests: parsers never panic; split input gives the same result
//! as whole input; client and server agree on any message.

mod common;

use common::{App, Pair, server_with};
use proptest::prelude::*;
use scop_smtp::data::{DataDecoder, normalize_crlf};
use scop_smtp::{
    Client, ClientConfig, Domain, Envelope, Event, ForwardPath, Host, MailParams, Mailbox,
    RcptParams, Reply, ReplyParser, ReversePath, Server, TlsInfo, fuzz,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_command_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz::parse_command(&data);
    }

    #[test]
    fn parse_command_never_panics_on_commandish(s in "(MAIL FROM:|RCPT TO:|EHLO |AUTH |BDAT )[ -~]{0,80}") {
        fuzz::parse_command(s.as_bytes());
    }

    #[test]
    fn parse_reply_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz::parse_reply(&data);
    }

    #[test]
    fn server_session_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzz::server_session(&data);
    }

    #[test]
    fn client_session_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzz::client_session(&data);
    }

    #[test]
    fn reply_round_trip(c in 2u16..6, x in 0u16..6, y in 0u16..10, lines in proptest::collection::vec("[ -~]{0,40}", 1..5)) {
        let r = Reply::new(c * 100 + x * 10 + y, None, &lines.join("\n")).unwrap();
        let mut p = ReplyParser::new();
        p.push(&r.to_bytes(false));
        let back = p.next_reply().unwrap().unwrap();
        prop_assert_eq!(back.code(), r.code());
        prop_assert_eq!(back.lines().len(), r.lines().len());
    }

    #[test]
    fn data_decoder_split_invariant(
        data in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), Just(0xe9u8), any::<u8>()], 0..300),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = {
            let mut d = DataDecoder::new(200, false);
            let mut out = Vec::new();
            let (n, st) = d.decode(&data, &mut out);
            (out, n, st, d.error().cloned())
        };
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut d = DataDecoder::new(200, false);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut status = scop_smtp::data::DataStatus::NeedMore;
        let mut prev = 0;
        for p in points.into_iter().chain([data.len()]) {
            if status == scop_smtp::data::DataStatus::Done {
                break;
            }
            let (n, st) = d.decode(&data[prev..p], &mut out);
            consumed += n;
            status = st;
            prev = p;
        }
        prop_assert_eq!(whole, (out, consumed, status, d.error().cloned()));
    }

    /// Only well-behaved scripts (a client that waits where RFC 2920
    /// says it must) are timing-independent: improper pipelining is
    /// detected by what is already buffered, which depends on arrival.
    #[test]
    fn server_split_invariant(
        script in proptest::collection::vec(segment(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let mut script = script;
        script.insert(0, b"EHLO client.example\r\n".to_vec());
        let whole = run_segments(&script, &[]);
        let split = run_segments(&script, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn client_server_agree_on_any_message(
        body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..3000),
        chunking in any::<bool>(),
        pipelining in any::<bool>(),
        mtu in prop_oneof![Just(0usize), 1usize..64],
    ) {
        let body: Vec<u8> = body.into_iter().filter(|&b| b != 0).collect();
        let mut cfg = ClientConfig::new(Host::Domain(Domain::parse("c.example", false).unwrap()));
        cfg.chunking = chunking;
        let mut p = Pair::new(server_with(|c| c.registry.builtins.pipelining = pipelining), Client::new(cfg));
        p.mtu = mtu;
        let env = Envelope {
facts: None,
            from: ReversePath::Null,
            params: MailParams::default(),
            rcpts: vec![(ForwardPath::Mailbox(Mailbox::parse("b@example.net", false).unwrap()), RcptParams::default())],
        };
        p.client.send_message(env, &body).unwrap();
        p.client.quit();
        p.drive();
        let t = p.transactions();
        prop_assert_eq!(t.len(), 1);
        prop_assert!(t[0].delivered(), "{:?}", t[0]);
        prop_assert_eq!(&p.app.messages[0], &normalize_crlf(&body));
    }
}

/// Segments a well-behaved client sends before waiting for replies.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"EHLO client.example\r\n".to_vec()),
        Just(b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<reject@example.net>\r\nDATA\r\n".to_vec()),
        Just(b"MAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nab\r\n\r\n".to_vec()),
        Just(b"MAIL FROM:<a@example.org>\r\n".to_vec()),
        Just(b"RCPT TO:<c@example.net>\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"NOOP\r\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(b"AUTH PLAIN AHVzZXIAcGVuY2ls\r\n".to_vec()),
        Just(b"XYZZY\r\n".to_vec()),
        Just(b"NOOP\n".to_vec()),
        // A message body without dots, then the real end.
        proptest::collection::vec(any::<u8>().prop_filter("no dot", |b| *b != b'.'), 0..200)
            .prop_map(|mut v| {
                v.extend_from_slice(b"\r\n.\r\n");
                v
            }),
    ]
}

/// Normalised outcome: events with adjacent data chunks merged, and the
/// whole output.
fn run_segments(script: &[Vec<u8>], cuts: &[prop::sample::Index]) -> (Vec<Event>, Vec<u8>) {
    let mut s: Server = server_with(|c| c.limits.errors = 1000);
    let mut app = App::default();
    let mut out = Vec::new();
    app.drive(&mut s);
    out.extend(s.take_output());
    for (i, seg) in script.iter().enumerate() {
        let mut points: Vec<usize> = cuts
            .iter()
            .skip(i)
            .step_by(script.len().max(1))
            .map(|c| c.index(seg.len() + 1))
            .collect();
        points.sort_unstable();
        let mut prev = 0;
        for p in points.into_iter().chain([seg.len()]) {
            let mut part = &seg[prev..p];
            while !part.is_empty() {
                let n = s.feed(part);
                part = &part[n..];
                app.drive(&mut s);
            }
            prev = p;
        }
        out.extend(s.take_output());
        if s.tls_pending() {
            s.tls_established(TlsInfo::default()).unwrap();
            // A well-behaved client greets again before anything else.
            s.feed(b"EHLO client.example\r\n");
            app.drive(&mut s);
            out.extend(s.take_output());
        }
    }
    let mut events: Vec<Event> = Vec::new();
    for e in app.events {
        match (events.last_mut(), e) {
            (Some(Event::DataChunk(prev)), Event::DataChunk(c)) => prev.extend_from_slice(&c),
            (_, e) => events.push(e),
        }
    }
    (events, out)
}
