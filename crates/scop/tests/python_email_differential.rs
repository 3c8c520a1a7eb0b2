//! Differential test against Python's `email` package (compat32 policy):
//! on Hamlet messages and the SpamAssassin corpus, both parsers must see the
//! same content-type tree and the same transfer-decoded leaf bodies (line
//! endings compared as LF). Every disagreement must be explained by
//! [`explain`], which names a documented difference in behaviour; anything
//! else fails the test.

use scop_mime::{Body, Message};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One node of a MIME tree: depth, content type, kind, and for leaves the
/// decoded length and CRC-32.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    depth: u64,
    content_type: String,
    kind: String,
    body: Option<(u64, u32)>,
    /// Python only: the leaf decoded with named corrections applied to what
    /// Python does (see `python_email_tree.py`); a name joins several with
    /// `+`.
    alt: Vec<(String, (u64, u32))>,
}

impl Node {
    fn same_shape(&self, other: &Node) -> bool {
        self.depth == other.depth
            && self.content_type == other.content_type
            && self.kind == other.kind
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// CRLF to LF; with `universal`, a lone CR becomes LF too (what Python's
/// BytesParser does to its whole input before parsing).
fn lf(data: &[u8], universal: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        if data[i] == b'\r' && universal {
            out.push(b'\n');
        } else {
            out.push(data[i]);
        }
        i += 1;
    }
    out
}

fn ours(m: &Message<'_>, depth: u64, out: &mut Vec<Node>) {
    let content_type = m.content_type().mime_type;
    match m.body() {
        Body::Multipart(mp) => {
            out.push(Node {
                depth,
                content_type,
                kind: "multipart".into(),
                body: None,
                alt: Vec::new(),
            });
            for p in mp.parts() {
                ours(p, depth + 1, out);
            }
        }
        Body::Message(inner) => {
            out.push(Node {
                depth,
                content_type,
                kind: "message".into(),
                body: None,
                alt: Vec::new(),
            });
            ours(inner, depth + 1, out);
        }
        Body::Leaf(leaf) => {
            // Python translates the line breaks of its input before it
            // decodes: a bare CR in the decoded body of an identity encoding
            // was a line break for it, while a bare CR decoded from base64
            // or from a quoted-printable `=0D` stays. (A bare CR in
            // quoted-printable text is data for us and a line break for
            // Python: the `qp_lone_cr` correction.)
            let universal = !matches!(
                leaf.transfer_encoding(),
                scop_mime::TransferEncoding::Base64 | scop_mime::TransferEncoding::QuotedPrintable
            );
            let data = lf(leaf.decoded(), universal);
            let body = if content_type == "message/delivery-status" {
                None
            } else {
                Some((data.len() as u64, crc32(&data)))
            };
            out.push(Node {
                depth,
                content_type,
                kind: "leaf".into(),
                body,
                alt: Vec::new(),
            });
        }
    }
}

fn theirs(value: &Value) -> Vec<Node> {
    value["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| Node {
            depth: n[0].as_u64().unwrap(),
            content_type: n[1].as_str().unwrap().to_string(),
            kind: n[2].as_str().unwrap().to_string(),
            body: n[3]
                .as_u64()
                .map(|len| (len, n[4].as_u64().unwrap() as u32)),
            alt: n[5]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, a)| {
                            (
                                k.clone(),
                                (a[0].as_u64().unwrap(), a[1].as_u64().unwrap() as u32),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The corrections `python_email_tree.py` offers for a leaf, each undoing one
/// examined behaviour of Python's `email` package (compat32), and the reason
/// an explanation names when the correction turns Python's body into ours.
const CORRECTIONS: &[(&str, &str)] = &[
    // RFC 2045 section 6.7 rule (3): trailing whitespace on a
    // quoted-printable line was added in transport and "MUST be deleted"
    // when decoding. binascii.a2b_qp keeps it.
    (
        "qp_whitespace",
        "quoted-printable: Python keeps trailing whitespace RFC 2045 6.7 (3) deletes",
    ),
    // RFC 2045 section 6.7: an "=" followed by neither two hex digits nor a
    // line break is illegal, and a robust decoder keeps it as data (scop-mime
    // then reads what follows as usual: "==3D" is "==", a line ending in
    // "==" is "=" and a soft line break). binascii.a2b_qp instead turns "=="
    // into one "=" and skips both ("broken case from broken python qp" in
    // CPython's binascii.c), so "==3D" becomes "=3D" and the soft break is
    // lost.
    (
        "qp_equals",
        "quoted-printable: Python's a2b_qp reads \"==\" as \"=\", RFC 2045 6.7 keeps an \"=\" that starts no escape",
    ),
    // RFC 5322 section 2.3 and RFC 2045 section 6.7 (4): CR belongs to CRLF;
    // a bare CR is no line break (quoted-printable must encode it as =0D).
    // scop-mime keeps a bare CR in encoded text as data; Python's
    // universal newlines make it a line break before decoding, so rule (3)
    // deletion and soft line breaks apply around it.
    (
        "qp_lone_cr",
        "quoted-printable: Python reads a bare CR as a line break, RFC 5322 2.3 only CRLF",
    ),
    // RFC 2045 section 6.8: characters outside the alphabet are ignored;
    // a single character left over makes no octet (scop-mime drops it).
    // email._encoded_words.decode_b gives up instead (bpo-27397,
    // InvalidBase64LengthDefect) and get_payload(decode=True) returns the
    // still-encoded text.
    (
        "base64_undecodable",
        "base64: Python returns the encoded text when one character is left over (RFC 2045 6.8 decodes)",
    ),
    // RFC 2045 section 6.8: "=" padding "may be taken as evidence that the
    // end of the data has been reached": binascii stops there, scop-mime
    // ends the quantum and decodes what follows (concatenated encodings;
    // here mailing-list footers appended to a base64 body). Both are
    // allowed.
    (
        "base64_after_padding",
        "base64: Python stops at the first padding, scop-mime decodes on (RFC 2045 6.8 allows both)",
    ),
    // RFC 2046 section 5.1.1: the line break before a delimiter line belongs
    // to the delimiter. With no close delimiter, the last part runs to the
    // end of the input and keeps its final line break in scop-mime; Python's
    // feedparser removes it as if a delimiter followed.
    (
        "eof_line_break",
        "multipart without close delimiter: Python drops the input's last line break (RFC 2046 5.1.1: no delimiter to own it)",
    ),
];

/// RFC 2045 section 5.1: type and subtype are tokens, and parameters follow
/// a ";". Python's get_content_type() lowercases everything before the first
/// ";", so "TEXT/PLAIN charset=US-ASCII" has the type "text/plain
/// charset=us-ascii"; scop-mime reads the tokens "text/plain" and skips to the
/// next ";".
const CONTENT_TYPE_NOT_TOKEN: &str =
    "Content-Type with a parameter but no \";\": Python's type is not a token (RFC 2045 5.1)";

/// Known, examined differences between Python's `email` (compat32) and
/// scop-mime. Returns the explanations when the disagreement on this message
/// is made of them only (every differing node must be explained).
fn explain(ours: &[Node], theirs: &[Node]) -> Option<BTreeSet<&'static str>> {
    if ours.len() != theirs.len() {
        return None;
    }
    let mut reasons = BTreeSet::new();
    for (a, b) in ours.iter().zip(theirs) {
        if a.depth != b.depth || a.kind != b.kind {
            return None;
        }
        if a.content_type != b.content_type {
            let mut words = b.content_type.split_whitespace();
            if words.next() != Some(a.content_type.as_str()) || words.next().is_none() {
                return None;
            }
            reasons.insert(CONTENT_TYPE_NOT_TOKEN);
        }
        if a.body == b.body {
            continue;
        }
        // The fewest corrections that turn Python's body into ours.
        let (fix, _) = b
            .alt
            .iter()
            .filter(|(_, body)| Some(*body) == a.body)
            .min_by_key(|(name, _)| name.split('+').count())?;
        for name in fix.split('+') {
            let (_, reason) = CORRECTIONS.iter().find(|(n, _)| *n == name)?;
            reasons.insert(*reason);
        }
    }
    (!reasons.is_empty()).then_some(reasons)
}

fn python_trees(paths: &[PathBuf]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_email_tree.py");
    let mut child = Command::new(scop_testkit::python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdin = child.stdin.take().unwrap();
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    let writer = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn compare(name: &str, paths: &[PathBuf]) {
    let trees = python_trees(paths);
    assert_eq!(
        trees.len(),
        paths.len(),
        "{name}: python answered for every file"
    );
    let (mut same, mut explained, mut python_errors) = (0, 0, 0);
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (path, tree) in paths.iter().zip(&trees) {
        let input = std::fs::read(path).unwrap();
        if tree.get("error").is_some() {
            python_errors += 1;
            continue;
        }
        let Ok(parsed) = scop_mime::parse(&input) else {
            unexplained.push(format!(
                "{}: scop-mime refused a message Python parsed",
                path.display()
            ));
            continue;
        };
        let mut mine = Vec::new();
        ours(&parsed.message, 0, &mut mine);
        let python = theirs(tree);
        let agree = mine.len() == python.len()
            && mine
                .iter()
                .zip(&python)
                .all(|(a, b)| a.same_shape(b) && a.body == b.body);
        if agree {
            same += 1;
        } else if let Some(why) = explain(&mine, &python) {
            explained += 1;
            for reason in why {
                *reasons.entry(reason).or_default() += 1;
            }
        } else {
            let first = mine
                .iter()
                .zip(&python)
                .position(|(a, b)| !a.same_shape(b) || a.body != b.body)
                .unwrap_or(mine.len().min(python.len()));
            unexplained.push(format!(
                "{}: node {first}: ours {:?} python {:?} (ours {} nodes, python {})",
                path.display(),
                mine.get(first),
                python.get(first),
                mine.len(),
                python.len()
            ));
        }
    }
    println!(
        "{name}: {} messages, {same} identical trees and bodies, {explained} explained differences, {} unexplained, {python_errors} Python errors",
        paths.len(),
        unexplained.len()
    );
    for (reason, n) in &reasons {
        println!("  {n:>5}  {reason}");
    }
    assert!(
        unexplained.is_empty(),
        "{name}: {} unexplained differences:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(same > 0);
}

#[test]
fn hamlet_agrees_with_python_email() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hamlet-python-diff");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let generator = scop_hamlet::Hamlet::new(99, scop_hamlet::Config::default());
    let paths: Vec<PathBuf> = (0..3000)
        .map(|i| {
            let p = dir.join(format!("{i}.eml"));
            std::fs::write(&p, generator.message(i)).unwrap();
            p
        })
        .collect();
    compare("hamlet", &paths);
}

#[test]
fn spamassassin_agrees_with_python_email() {
    let paths: Vec<PathBuf> = scop_testkit::files_under(&scop_testkit::spamassassin_corpus())
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(paths.len() >= 6046);
    compare("spamassassin", &paths);
}
