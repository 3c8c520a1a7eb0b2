//! Benchmark driver run by `cargo xtask bench`. Each benchmark runs our code
//! and the named peer in the same process, on the same in-memory input,
//! interleaving rounds so that machine noise hits both alike, and prints
//! medians and the ratio ours/peer (higher is better for throughput).
#![forbid(unsafe_code)]

mod auth;
mod bottle;
mod dns;
mod smtp;
mod spam;

use anyhow::{Context, Result, bail};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rounds per measurement; the median is reported.
const ROUNDS: usize = 7;

const USAGE: &str = "usage: scop-bench mime --spamassassin DIR --hamlet N
       scop-bench spam --corpus DIR [--debian DIR] [--roc-svg FILE]
       scop-bench auth [--messages N] [--python VENV_PYTHON]
       scop-bench smtp --debian DIR [--rounds N] [--scale F] [--idle N] [--peak-sessions N] [--settle SECONDS]
       scop-bench dns --debian DIR [--scop BIN] [--rounds N] [--seconds S] [--names N] [--update-names N] [--clients N] [--outstanding N] [--skip-queries] [--skip-updates]
       scop-bench bottle [--scop BIN] [--messages N] [--sessions N] [--per-connection N] [--rounds N]
`cargo xtask bench NAME` installs the peers and runs these with their defaults.";

/// Errors are printed as one chain of causes (no backtrace: they name
/// what went wrong and where).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if let Err(e) = run(&args) {
        eprintln!("scop-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("mime") => mime(&args[1..]),
        Some("spam") => spam::run(&args[1..]),
        Some("auth") => auth::run(&args[1..]),
        Some("smtp") => smtp::run(&args[1..]),
        Some("dns") => dns::run(&args[1..]),
        Some("bottle") => bottle::run(&args[1..]),
        // The MX child process of `smtp` (not for direct use).
        Some("smtp-mx") => smtp::mx_child(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

struct Corpus {
    name: &'static str,
    messages: Vec<Vec<u8>>,
}

impl Corpus {
    fn bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Our full-decode pass: the MIME tree with transfer decoding, then every
/// header decoded to text (addresses and dates parsed) and every text part
/// converted to UTF-8: the work mail-parser does eagerly in `parse`.
fn ours_full(input: &[u8]) -> usize {
    let Ok(parsed) = scop_mime::parse(input) else {
        return 0;
    };
    let mut n = 0;
    walk(&parsed.message, &mut n);
    n
}

fn walk(m: &scop_mime::Message<'_>, n: &mut usize) {
    for h in m.headers() {
        let name = h.name();
        if name.eq_ignore_ascii_case("from")
            || name.eq_ignore_ascii_case("to")
            || name.eq_ignore_ascii_case("cc")
            || name.eq_ignore_ascii_case("reply-to")
            || name.eq_ignore_ascii_case("sender")
        {
            *n += h.addresses().len();
        } else if name.eq_ignore_ascii_case("date") {
            *n += usize::from(h.date().is_some());
        } else if name.eq_ignore_ascii_case("message-id")
            || name.eq_ignore_ascii_case("references")
            || name.eq_ignore_ascii_case("in-reply-to")
        {
            *n += h.message_ids().len();
        } else {
            *n += h.text().len();
        }
    }
    match m.body() {
        scop_mime::Body::Leaf(leaf) => match leaf.text() {
            Some(text) => *n += text.len(),
            None => *n += leaf.decoded().len(),
        },
        scop_mime::Body::Multipart(mp) => {
            for p in mp.parts() {
                walk(p, n);
            }
        }
        scop_mime::Body::Message(inner) => walk(inner, n),
    }
}

fn ours_structure(input: &[u8]) -> usize {
    scop_mime::parse(input).map_or(0, |p| p.message.headers().len())
}

fn peer(parser: &mail_parser::MessageParser, input: &[u8]) -> usize {
    parser.parse(input).map_or(0, |m| m.parts.len())
}

fn time_pass(messages: &[Vec<u8>], f: &dyn Fn(&[u8]) -> usize) -> Duration {
    let start = Instant::now();
    let mut sink = 0usize;
    for m in messages {
        sink = sink.wrapping_add(f(black_box(m)));
    }
    black_box(sink);
    start.elapsed()
}

fn mime(args: &[String]) -> Result<()> {
    let mut sa_dir = None;
    let mut hamlet_count = 10_000u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--spamassassin" => sa_dir = it.next().map(PathBuf::from),
            "--hamlet" => hamlet_count = it.next().context("--hamlet N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let sa_dir = sa_dir.context("--spamassassin DIR is required")?;
    let hamlet = scop_hamlet::Hamlet::new(1, scop_hamlet::Config::default());
    let mut sa_files = Vec::new();
    files_under(&sa_dir, &mut sa_files)?;
    sa_files.sort();
    let corpora = [
        Corpus {
            name: "hamlet",
            messages: (0..hamlet_count).map(|i| hamlet.message(i)).collect(),
        },
        Corpus {
            name: "spamassassin",
            messages: sa_files
                .iter()
                .map(std::fs::read)
                .collect::<std::io::Result<_>>()?,
        },
    ];
    let parser = mail_parser::MessageParser::default();
    println!("mime parse: scop-mime vs mail-parser 0.11.9, median of {ROUNDS} interleaved rounds");
    println!(
        "{:<13} {:>8} {:>8} | {:>12} {:>12} {:>12} | {:>7} {:>7} | {:>12}",
        "corpus",
        "msgs",
        "MB",
        "scop struct",
        "scop full",
        "mail-parser",
        "ratio",
        "ratio",
        "scop encode"
    );
    println!(
        "{:<13} {:>8} {:>8} | {:>12} {:>12} {:>12} | {:>7} {:>7} | {:>12}",
        "", "", "", "MB/s", "MB/s", "MB/s", "struct", "full", "MB/s"
    );
    for corpus in &corpora {
        let mb = corpus.bytes() as f64 / 1e6;
        let (mut s, mut f, mut p, mut e) = (vec![], vec![], vec![], vec![]);
        let parsed: Vec<_> = corpus
            .messages
            .iter()
            .filter_map(|m| scop_mime::parse(m).ok())
            .collect();
        for _ in 0..ROUNDS {
            s.push(time_pass(&corpus.messages, &ours_structure));
            f.push(time_pass(&corpus.messages, &ours_full));
            p.push(time_pass(&corpus.messages, &|m| peer(&parser, m)));
            let start = Instant::now();
            let mut n = 0usize;
            for m in &parsed {
                n += scop_mime::encode(black_box(&m.message)).len();
            }
            black_box(n);
            e.push(start.elapsed());
        }
        let rate = |d: Duration| mb / d.as_secs_f64();
        let (s, f, p, e) = (median(s), median(f), median(p), median(e));
        println!(
            "{:<13} {:>8} {:>8.1} | {:>12.1} {:>12.1} {:>12.1} | {:>6.2}x {:>6.2}x | {:>12.1}",
            corpus.name,
            corpus.messages.len(),
            mb,
            rate(s),
            rate(f),
            rate(p),
            p.as_secs_f64() / s.as_secs_f64(),
            p.as_secs_f64() / f.as_secs_f64(),
            rate(e),
        );
    }
    println!(
        "struct = scop_mime::parse (tree, transfer decoding, raw offsets kept); \
         full = parse + every header decoded (addresses, dates, ids, RFC 2047) + every text part to UTF-8, \
         the work mail-parser's parse does eagerly; ratio = scop speed / mail-parser speed"
    );
    Ok(())
}
