//! Data-driven golden tests: every `tests/golden/<area>/<name>.eml` is parsed
//! as written (LF) and converted to CRLF; both must give the dump in
//! `<name>.expected` (files whose name contains `binary` hold binary bodies,
//! whose bytes differ after conversion, and are checked as written only).
//! Every case must also satisfy the round-trip contract.
//!
//! `UPDATE_EXPECT=1 cargo test -p scop-mime --test golden` regenerates.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use scop_mime::{Address, Body, Message, fuzz, parse};

const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-to",
];
const DATE_FIELDS: &[&str] = &["date", "resent-date", "x-date-obs"];
const ID_FIELDS: &[&str] = &["message-id", "in-reply-to", "references", "content-id"];

fn esc(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

fn dump_lines(out: &mut String, indent: &str, label: &str, data: &[u8]) {
    if data.is_empty() {
        let _ = writeln!(out, "{indent}{label}: (empty)");
        return;
    }
    let _ = writeln!(out, "{indent}{label}: ({} bytes)", data.len());
    for chunk in data.split_inclusive(|&b| b == b'\n') {
        let _ = writeln!(out, "{indent}  | {}", esc(chunk));
    }
}

fn dump_message(out: &mut String, m: &Message<'_>, indent: &str) {
    for h in m.headers() {
        let _ = writeln!(out, "{indent}header {:?}: {}", h.name(), esc(&h.unfolded()));
        let _ = writeln!(out, "{indent}  text: {:?}", h.text());
        let lname = h.name().to_ascii_lowercase();
        if ADDRESS_FIELDS.contains(&lname.as_str()) {
            for a in h.addresses() {
                match a {
                    Address::Mailbox(mb) => {
                        let _ =
                            writeln!(out, "{indent}  mailbox: {:?} <{}>", mb.name, mb.address());
                    }
                    Address::Group { name, members } => {
                        let _ = writeln!(out, "{indent}  group {name:?}:");
                        for mb in members {
                            let _ = writeln!(
                                out,
                                "{indent}    mailbox: {:?} <{}>",
                                mb.name,
                                mb.address()
                            );
                        }
                    }
                }
            }
        }
        if DATE_FIELDS.contains(&lname.as_str()) {
            let _ = writeln!(
                out,
                "{indent}  date: {:?}",
                h.date().map(|d| d.to_rfc5322())
            );
        }
        if ID_FIELDS.contains(&lname.as_str()) {
            let _ = writeln!(out, "{indent}  ids: {:?}", h.message_ids());
        }
    }
    let ct = m.content_type();
    let _ = writeln!(
        out,
        "{indent}content-type: {} {:?}",
        ct.mime_type, ct.params
    );
    match m.body() {
        Body::Leaf(l) => {
            let _ = writeln!(out, "{indent}leaf {}", l.transfer_encoding().as_str());
            dump_lines(out, &format!("{indent}  "), "decoded", l.decoded());
            if let Some(t) = l.text() {
                let _ = writeln!(out, "{indent}  text:");
                for line in t.split_inclusive('\n') {
                    let _ = writeln!(out, "{indent}  | {line:?}");
                }
            }
        }
        Body::Multipart(mp) => {
            let _ = writeln!(
                out,
                "{indent}multipart boundary={:?} parts={} closed={}",
                mp.boundary(),
                mp.parts().len(),
                mp.is_closed()
            );
            dump_lines(out, &format!("{indent}  "), "preamble", mp.preamble());
            for (i, p) in mp.parts().iter().enumerate() {
                let _ = writeln!(out, "{indent}  part {}:", i + 1);
                dump_message(out, p, &format!("{indent}    "));
            }
            dump_lines(out, &format!("{indent}  "), "epilogue", mp.epilogue());
        }
        Body::Message(inner) => {
            let _ = writeln!(out, "{indent}message/rfc822:");
            dump_message(out, inner, &format!("{indent}  "));
        }
    }
}

fn dump(input: &[u8]) -> String {
    let mut out = String::new();
    match parse(input) {
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
        }
        Ok(p) => {
            dump_message(&mut out, &p.message, "");
            let _ = writeln!(out, "diagnostics:");
            for d in &p.diagnostics {
                // Offsets differ between LF and CRLF inputs: kinds only.
                let _ = writeln!(out, "  {:?}", d.kind);
            }
        }
    }
    out
}

fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 20);
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' && (i == 0 || input[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("golden dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "eml") {
            out.push(p);
        }
    }
}

#[test]
fn check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files = Vec::new();
    collect(&root, &mut files);
    assert!(
        files.len() >= 40,
        "golden suite is (nearly) empty: {} cases",
        files.len()
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for path in &files {
        let input = std::fs::read(path).expect("read case");
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        let lf = dump(&input);
        fuzz::round_trip(&input);
        if !name.contains("binary") {
            let crlf_input = to_crlf(&input);
            fuzz::round_trip(&crlf_input);
            let crlf = dump(&crlf_input);
            if crlf != lf {
                failures.push(format!(
                    "{name}: CRLF variant differs\n--- LF\n{lf}\n--- CRLF\n{crlf}"
                ));
            }
        }
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &lf).expect("write expected");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == lf => {}
            Ok(expected) => failures.push(format!(
                "{name}: dump differs\n--- expected\n{expected}\n--- actual\n{lf}"
            )),
            Err(_) => failures.push(format!("{name}: missing {}", expected_path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
