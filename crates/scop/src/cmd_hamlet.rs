//! `scop hamlet` and `scop selfcheck`.

use crate::progress;
use anyhow::{Context, Result, bail};
use clap::Args;
use scop::check::{self, Outcome, Tally};
use scop_hamlet::{Config, Hamlet, LineEnding};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How many failing messages `selfcheck` describes in detail.
const DETAILED_FAILURES: usize = 5;

/// Indices handed to a worker at a time.
const CHUNK: u64 = 64;

#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Seed: the same seed always gives the same messages, byte for byte.
    #[arg(long, short = 's', default_value_t = 1)]
    seed: u64,
    /// Smallest message size aimed at, in bytes.
    #[arg(long, default_value_t = Config::default().min_size)]
    min_size: usize,
    /// Largest message size aimed at, in bytes.
    #[arg(long, default_value_t = Config::default().max_size)]
    max_size: usize,
    /// Write LF line endings instead of CRLF.
    #[arg(long)]
    lf: bool,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

impl CorpusArgs {
    fn hamlet(&self) -> Result<Hamlet> {
        if self.min_size > self.max_size {
            bail!(
                "--min-size ({}) is larger than --max-size ({})",
                self.min_size,
                self.max_size
            );
        }
        let config = Config {
            min_size: self.min_size,
            max_size: self.max_size,
            line_ending: if self.lf {
                LineEnding::Lf
            } else {
                LineEnding::Crlf
            },
        };
        Ok(Hamlet::new(self.seed, config))
    }

    fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

#[derive(Debug, Args)]
pub struct HamletArgs {
    /// Number of messages.
    #[arg(long, short = 'n', default_value_t = 1000)]
    count: u64,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Directory to write `<number>.eml` files into (created if missing).
    #[arg(long, short = 'o')]
    out: PathBuf,
}

/// Runs `body(index)` for every index below `count` on `jobs` threads, with a
/// progress bar; stops early when `body` fails.
fn for_each_index(
    count: u64,
    jobs: usize,
    unit: &str,
    body: impl Fn(u64) -> Result<()> + Sync,
) -> Result<()> {
    let bar = progress::bar(count, unit);
    let next = AtomicU64::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if start >= count {
                        break;
                    }
                    let end = (start + CHUNK).min(count);
                    for i in start..end {
                        if let Err(e) = body(i) {
                            failure.lock().expect("lock").get_or_insert(e);
                            next.store(count, Ordering::Relaxed);
                            return;
                        }
                    }
                    bar.inc(end - start);
                }
            });
        }
    });
    bar.finish_and_clear();
    match failure.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn hamlet(args: HamletArgs) -> Result<ExitCode> {
    let hamlet = args.corpus.hamlet()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let count = args.count;
    let width = count.saturating_sub(1).to_string().len();
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    for_each_index(count, args.corpus.jobs(), "messages", |i| {
        let message = hamlet.message(i);
        bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        let path = args.out.join(format!("{i:0width$}.eml"));
        std::fs::write(&path, &message).with_context(|| format!("cannot write {}", path.display()))
    })?;
    let elapsed = start.elapsed();
    println!(
        "wrote {count} messages ({:.1} MB) to {} in {:.1?} (seed {})",
        bytes.load(Ordering::Relaxed) as f64 / 1e6,
        args.out.display(),
        elapsed,
        args.corpus.seed
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SelfcheckArgs {
    /// Number of messages.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    count: u64,
    #[command(flatten)]
    corpus: CorpusArgs,
}

pub fn selfcheck(args: SelfcheckArgs) -> Result<ExitCode> {
    let hamlet = args.corpus.hamlet()?;
    let count = args.count;
    let tally = Mutex::new(Tally::default());
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    eprintln!(
        "generating {count} Hamlet messages (seed {}) and checking that each round-trips",
        args.corpus.seed
    );
    for_each_index(count, args.corpus.jobs(), "messages", |i| {
        let message = hamlet.message(i);
        bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        let outcome = check::check(&message);
        tally.lock().expect("lock").add(&outcome);
        if let Outcome::Different(why) | Outcome::Unparsable(why) = outcome {
            let mut f = failures.lock().expect("lock");
            if f.len() < DETAILED_FAILURES {
                f.push((i, why));
            }
        }
        Ok(())
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let tally = tally.into_inner().expect("lock");
    let mut failures = failures.into_inner().expect("lock");
    failures.sort_by_key(|(i, _)| *i);
    for (i, why) in &failures {
        println!(
            "message {i} (regenerate with: scop hamlet --seed {} ...): {why}",
            args.corpus.seed
        );
    }
    let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    println!(
        "{:.1} s, {:.0} messages/s, {:.1} MB/s, {mb:.1} MB generated, peak memory {}",
        elapsed,
        tally.checked() as f64 / elapsed,
        mb / elapsed,
        progress::peak_rss().map_or("unknown".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
    );
    println!("{}", tally.summary());
    Ok(if tally.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
