//! `scop mime check` and `scop mime parse`.

use crate::progress;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use scop::check::{self, Outcome, Tally};
use scop::mbox::split_mbox;
use scop_mime::{Body, Message};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many failing messages `mime check` describes in detail.
const DETAILED_FAILURES: usize = 10;

/// Bytes of a decoded body shown by `mime parse` before it is cut.
const PREVIEW_BYTES: usize = 400;

#[derive(Debug, Subcommand)]
pub enum MimeCommand {
    /// Parse each message, re-encode it and compare: lossless re-emit,
    /// equivalence of parse(encode(m)) with m, and the encoder's fixed point.
    ///
    /// PATHs are message files, directories (searched recursively; dot files
    /// are skipped) or mbox files. The last line is
    /// `checked N messages: E equivalent, D different, U unparsable`; the exit
    /// status is 0 only when D and U are 0.
    ///
    /// Example: scop mime check corpus/ mail.mbox
    Check(CheckArgs),
    /// Show the tree of one message: headers, content types and decoded parts.
    ///
    /// Example: scop mime parse message.eml --json
    Parse(ParseArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Message files, directories or mbox files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The message file (`-` reads standard input).
    file: PathBuf,
    /// Print JSON instead of a tree.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: MimeCommand) -> Result<ExitCode> {
    match cmd {
        MimeCommand::Check(args) => check_paths(args),
        MimeCommand::Parse(args) => parse(args),
    }
}

fn check_paths(args: CheckArgs) -> Result<ExitCode> {
    let files = scop::files::message_files(&args.paths)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let bar = progress::bar(files.len() as u64, "files");
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let read_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let record = |label: String, outcome: Outcome| {
        tally.lock().expect("lock").add(&outcome);
        if let Outcome::Different(why) | Outcome::Unparsable(why) = outcome {
            let mut f = failures.lock().expect("lock");
            f.push((label, why));
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    match std::fs::read(path) {
                        Err(e) => read_errors
                            .lock()
                            .expect("lock")
                            .push(format!("{}: {e}", path.display())),
                        Ok(data) => match split_mbox(&data) {
                            Some(messages) => {
                                for (n, m) in messages.iter().enumerate() {
                                    record(
                                        format!("{} (mbox message {})", path.display(), n + 1),
                                        check::check(m),
                                    );
                                }
                            }
                            None => record(path.display().to_string(), check::check(&data)),
                        },
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failures = failures.into_inner().expect("lock");
    failures.sort();
    for (label, why) in failures.iter().take(DETAILED_FAILURES) {
        println!("{label}: {why}");
    }
    if failures.len() > DETAILED_FAILURES {
        println!(
            "... and {} more messages that fail",
            failures.len() - DETAILED_FAILURES
        );
    }
    let read_errors = read_errors.into_inner().expect("lock");
    for e in &read_errors {
        eprintln!("scop: cannot read {e}");
    }
    let tally = tally.into_inner().expect("lock");
    println!("{}", tally.summary());
    Ok(if tally.ok() && read_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse(args: ParseArgs) -> Result<ExitCode> {
    let data = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let parsed = scop_mime::parse(&data).map_err(|e| anyhow::anyhow!("not a message: {e}"))?;
    if args.json {
        let value = json!({
            "message": message_json(&parsed.message),
            "diagnostics": parsed.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let mut out = String::new();
        message_tree(&parsed.message, "", &mut out);
        for d in &parsed.diagnostics {
            let _ = writeln!(out, "diagnostic: {d}");
        }
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn content_type_line(m: &Message<'_>) -> String {
    let ct = m.content_type();
    let mut s = ct.mime_type.clone();
    for (k, v) in &ct.params {
        let _ = write!(s, "; {k}={v:?}");
    }
    s
}

fn message_json(m: &Message<'_>) -> Value {
    let headers: Vec<Value> = m
        .headers()
        .iter()
        .map(|h| {
            json!({
                "name": h.name(),
                "raw": String::from_utf8_lossy(h.raw_value()),
                "text": h.text(),
            })
        })
        .collect();
    let ct = m.content_type();
    let body = match m.body() {
        Body::Leaf(leaf) => {
            let decoded = leaf.decoded();
            let mut v = json!({
                "kind": "leaf",
                "transfer_encoding": format!("{:?}", leaf.transfer_encoding()),
                "size": decoded.len(),
            });
            if let Some(text) = leaf.text() {
                v["text"] = Value::String(text.into_owned());
            } else {
                v["hex_prefix"] = Value::String(
                    decoded
                        .iter()
                        .take(64)
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                );
            }
            v
        }
        Body::Multipart(mp) => json!({
            "kind": "multipart",
            "boundary": mp.boundary(),
            "preamble": String::from_utf8_lossy(mp.preamble()),
            "parts": mp.parts().iter().map(message_json).collect::<Vec<_>>(),
            "epilogue": String::from_utf8_lossy(mp.epilogue()),
        }),
        Body::Message(inner) => json!({
            "kind": "message",
            "message": message_json(inner),
        }),
    };
    json!({
        "content_type": ct.mime_type,
        "params": ct.params.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "headers": headers,
        "body": body,
    })
}

fn message_tree(m: &Message<'_>, indent: &str, out: &mut String) {
    let _ = writeln!(out, "{indent}{}", content_type_line(m));
    for h in m.headers() {
        let _ = writeln!(out, "{indent}  {}: {}", h.name(), h.text());
    }
    match m.body() {
        Body::Leaf(leaf) => {
            let decoded = leaf.decoded();
            let _ = writeln!(
                out,
                "{indent}  [{:?}, {} bytes decoded]",
                leaf.transfer_encoding(),
                decoded.len()
            );
            let preview = match leaf.text() {
                Some(text) => text.chars().take(PREVIEW_BYTES).collect::<String>(),
                None => check::escape(&decoded[..decoded.len().min(PREVIEW_BYTES / 4)]),
            };
            for line in preview.lines() {
                let _ = writeln!(out, "{indent}  | {line}");
            }
        }
        Body::Multipart(mp) => {
            let child = format!("{indent}    ");
            for (i, part) in mp.parts().iter().enumerate() {
                let _ = writeln!(out, "{indent}  part {}:", i + 1);
                message_tree(part, &child, out);
            }
        }
        Body::Message(inner) => {
            let _ = writeln!(out, "{indent}  enclosed message:");
            message_tree(inner, &format!("{indent}    "), out);
        }
    }
}
