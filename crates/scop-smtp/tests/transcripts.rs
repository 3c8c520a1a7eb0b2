//! Golden server transcripts: `tests/transcripts/*.txt`.
//!
//! Format, one item per line:
//! - `# ...` comment, kept as is;
//! - `! option [value]` session option (before the first `C`), see
//!   [`configure`];
//! - `C: text` starts a new client segment with `text` CRLF;
//! - `C| text` continues the current segment with `text` CRLF (pipelining);
//! - `C~ text` starts a new segment with raw bytes, escapes
//!   `\r \n \t \0 \\ \xHH`, nothing appended;
//! - `C^ text` continues the current segment with raw bytes;
//! - `S: text` an expected server reply line (CRLF removed).
//!
//! A segment is what the client sends before waiting for replies; it is fed
//! in one `feed` call. The `S` lines after a segment are the server's whole
//! output for it; the `S` lines before the first segment are the greeting. The scripted application is `common::App`; a pending
//! STARTTLS completes after its segment. `UPDATE_EXPECT=1` rewrites the
//! `S` lines from the actual output.

mod common;

use std::path::Path;

use common::{App, converse, server_with};
use scop_smtp::{Mechanism, PeerAuthorised, ServerConfig};

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(h, 16).unwrap());
                    i += 2;
                }
                c => panic!("bad escape \\{}", c as char),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}

/// Session options.
fn configure(c: &mut ServerConfig, opt: &str, authorised: &mut bool, tls: &mut bool) {
    let mut it = opt.split_whitespace();
    let name = it.next().unwrap();
    let val = it.next().map(|v| v.parse::<u64>().unwrap());
    let b = &mut c.registry.builtins;
    match name {
        "tls" => *tls = true,
        "authorised" => *authorised = true,
        "no-pipelining" => b.pipelining = false,
        "no-chunking" => b.chunking = false,
        "no-8bitmime" => b.eightbitmime = false,
        "no-smtputf8" => b.smtputf8 = false,
        "no-enhanced" => b.enhanced_status_codes = false,
        "auth-plaintext" => b.auth_requires_tls = false,
        "scram" => b.auth.push(Mechanism::ScramSha256),
        "require-auth" => c.require_auth = true,
        "max-rcpt" => c.limits.recipients = val.unwrap() as usize,
        "max-errors" => c.limits.errors = val.unwrap() as u32,
        "max-commands" => c.limits.commands = val.unwrap() as u32,
        "size" => c.limits.message_size = val.unwrap(),
        other => panic!("unknown option {other}"),
    }
}

fn check(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut header = Vec::new();
    let mut segments: Vec<(Vec<String>, Vec<u8>)> = Vec::new();
    let mut cur: Option<(Vec<String>, Vec<u8>)> = None;
    let mut options = Vec::new();
    for line in text.lines() {
        let client = match line.get(..3) {
            Some("C: ") => Some((true, false)),
            Some("C| ") => Some((false, false)),
            Some("C~ ") => Some((true, true)),
            Some("C^ ") => Some((false, true)),
            _ => None,
        };
        if let Some((new_segment, raw)) = client {
            let rest = &line[3..];
            // A pending comment-only segment absorbs the next client line.
            if new_segment && let Some(seg) = cur.take() {
                if seg.1.is_empty() {
                    cur = Some(seg);
                } else {
                    segments.push(seg);
                }
            }
            let seg = cur.get_or_insert_with(Default::default);
            seg.0.push(line.to_string());
            if raw {
                seg.1.extend_from_slice(&unescape(rest));
            } else {
                seg.1.extend_from_slice(rest.as_bytes());
                seg.1.extend_from_slice(b"\r\n");
            }
        } else if line.starts_with("S:") {
            if let Some(seg) = cur.take() {
                segments.push(seg);
            }
        } else {
            if let Some(seg) = cur.take() {
                segments.push(seg);
            }
            if let Some(o) = line.strip_prefix("! ") {
                options.push(o.to_string());
            }
            if segments.is_empty() {
                header.push(line.to_string());
            } else {
                // Comments between segments are attached to the next one.
                cur = Some((vec![line.to_string()], Vec::new()));
            }
        }
    }
    if let Some(seg) = cur.take() {
        segments.push(seg);
    }
    let (mut authorised, mut tls) = (false, false);
    let mut s = server_with(|c| {
        for o in &options {
            configure(c, o, &mut authorised, &mut tls);
        }
    });
    if tls {
        // Implicit TLS: rebuild the session with TLS on.
        let mut cfg = ServerConfig::new("mx.example");
        cfg.scram = Some(common::crypto());
        for o in &options {
            configure(&mut cfg, o, &mut authorised, &mut tls);
        }
        s = scop_smtp::Server::new(std::sync::Arc::new(cfg), true);
    }
    if authorised {
        s.authorise_peer(PeerAuthorised::from_verified_certificate("mx"));
    }
    let mut app = App::default();
    let inputs: Vec<&[u8]> = segments.iter().map(|s| &s.1[..]).collect();
    let outs = converse(&mut s, &mut app, &inputs);
    let mut rendered = String::new();
    let push_out = |r: &mut String, out: &str| {
        for l in out.split_terminator("\r\n") {
            r.push_str("S: ");
            r.push_str(l);
            r.push('\n');
        }
    };
    for h in &header {
        rendered.push_str(h);
        rendered.push('\n');
    }
    push_out(&mut rendered, &outs[0]);
    for (seg, out) in segments.iter().zip(&outs[1..]) {
        for l in &seg.0 {
            rendered.push_str(l);
            rendered.push('\n');
        }
        push_out(&mut rendered, out);
    }
    if rendered != text {
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(path, &rendered).unwrap();
        } else {
            panic!(
                "transcript {} differs (UPDATE_EXPECT=1 to regenerate)\n--- expected\n{text}\n--- actual\n{rendered}",
                path.display()
            );
        }
    }
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the transcript suite must not be empty");
    for f in files {
        check(&f);
    }
}
