//! `scop-bench spam`: scop-spam against bogofilter on the SpamAssassin
//! corpus, same split, same run.
//!
//! Both train on easy-ham-1 + hard-ham-1 (ham) and spam-1 (spam), and are
//! evaluated on the held-out easy-ham-2 (ham) and spam-2 (spam). Both read
//! the message files themselves (from the page cache after the first pass)
//! and run on one core. Reported: FP/FN/unsure counts and rates at each
//! filter's own cutoffs, (1-AUC)%, and throughput in messages/s for training
//! and (median of several rounds) classification, with the ratio
//! ours/bogofilter (higher is better).
//!
//! The accounting is the same on both sides. A bogofilter run starts a
//! process that opens its database and then reads every message; a
//! scop-spam round likewise starts from the model file: it reads and loads
//! the file, then reads and classifies every message. Training includes
//! writing the model file, as bogofilter's includes writing its database.
//! Before the timed rounds each side classifies the whole set once, so that
//! the messages, bogofilter's database and our model file are all in the
//! page cache.

use anyhow::{Context, Result, bail};
use scop_spam::eval::{Evaluation, roc_svg};
use scop_spam::{Class, Model};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Training rounds (each from an empty model / database); the median is reported.
const TRAIN_ROUNDS: usize = 3;
/// Classification rounds; the median is reported.
const CLASSIFY_ROUNDS: usize = 7;
/// bogofilter's default cutoffs (`bogofilter -Q`).
const BOGO_HAM_CUTOFF: f64 = 0.45;
const BOGO_SPAM_CUTOFF: f64 = 0.99;

struct Bogofilter {
    binary: PathBuf,
    libs: PathBuf,
}

impl Bogofilter {
    /// Runs bogofilter with `args`, feeding `paths` on standard input, one
    /// per line (`-b` bulk mode); returns standard output.
    fn run(&self, db: &Path, args: &[&str], paths: &[PathBuf]) -> Result<String> {
        let mut child = Command::new(&self.binary)
            .env("LD_LIBRARY_PATH", &self.libs)
            .arg("-d")
            .arg(db)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let mut list = String::new();
        for p in paths {
            list.push_str(&p.to_string_lossy());
            list.push('\n');
        }
        let mut stdin = child.stdin.take().context("bogofilter stdin")?;
        let writer = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
        let out = child.wait_with_output().context("bogofilter output")?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?
            .context("write to bogofilter")?;
        // Exit status: 0 spam, 1 ham, 2 unsure, 3 error (for bulk runs the
        // last message's); only 3 is a failure.
        if out.status.code() == Some(3) || out.status.code().is_none() {
            bail!(
                "bogofilter {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn train(&self, db: &Path, ham: &[PathBuf], spam: &[PathBuf]) -> Result<Duration> {
        let _ = std::fs::remove_dir_all(db);
        std::fs::create_dir_all(db).with_context(|| format!("create {}", db.display()))?;
        let start = Instant::now();
        self.run(db, &["-n", "-b"], ham)?;
        self.run(db, &["-s", "-b"], spam)?;
        Ok(start.elapsed())
    }

    /// Scores (full precision, `-T -T`) in input order.
    fn scores(&self, db: &Path, paths: &[PathBuf]) -> Result<Vec<f64>> {
        let out = self.run(db, &["-b", "-T", "-T"], paths)?;
        let scores: Vec<f64> = out
            .lines()
            .map(|l| l.rsplit(' ').next().and_then(|s| s.parse().ok()))
            .collect::<Option<_>>()
            .context("unexpected bogofilter -T -T output")?;
        if scores.len() != paths.len() {
            bail!(
                "bogofilter scored {} of {} messages",
                scores.len(),
                paths.len()
            );
        }
        Ok(scores)
    }

    /// Labels (`-T`: `path H|S|U score`) in input order.
    fn labels(&self, db: &Path, paths: &[PathBuf]) -> Result<Vec<char>> {
        let out = self.run(db, &["-b", "-T"], paths)?;
        let labels: Vec<char> = out
            .lines()
            .map(|l| l.rsplit(' ').nth(1).and_then(|s| s.chars().next()))
            .collect::<Option<_>>()
            .context("unexpected bogofilter -T output")?;
        if labels.len() != paths.len() {
            bail!(
                "bogofilter labelled {} of {} messages",
                labels.len(),
                paths.len()
            );
        }
        Ok(labels)
    }
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    crate::files_under(dir, &mut v)?;
    v.sort();
    if v.is_empty() {
        bail!("no messages under {}", dir.display());
    }
    Ok(v)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Reads one file into `buf` (cleared first; its allocation is reused).
fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    use std::io::Read as _;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .with_context(|| format!("read {}", path.display()))?;
    Ok(())
}

/// Trains from an empty model and writes the model file.
fn ours_train(ham: &[PathBuf], spam: &[PathBuf], model_file: &Path) -> Result<Model> {
    let mut model = Model::new();
    let mut buf = Vec::new();
    for (paths, class) in [(ham, Class::Ham), (spam, Class::Spam)] {
        for p in paths {
            read_into(p, &mut buf)?;
            model.train(&buf, class);
        }
    }
    std::fs::write(model_file, model.to_bytes())
        .with_context(|| format!("write {}", model_file.display()))?;
    Ok(model)
}

/// Loads the model file, then classifies every message; returns the
/// scores and the time the load took.
fn ours_scores(model_file: &Path, paths: &[PathBuf]) -> Result<(Vec<f64>, Duration)> {
    let start = Instant::now();
    let bytes =
        std::fs::read(model_file).with_context(|| format!("read {}", model_file.display()))?;
    let model = Model::from_bytes(&bytes).context("load the model file")?;
    drop(bytes);
    let load = start.elapsed();
    let mut buf = Vec::new();
    let mut scores = Vec::with_capacity(paths.len());
    for p in paths {
        read_into(p, &mut buf)?;
        scores.push(model.classify(&buf).score);
    }
    Ok((scores, load))
}

fn line(name: &str, e: &Evaluation) {
    println!(
        "{name:<11} {:>5} {:>7.3}% {:>5} {:>7.3}% {:>6} {:>7.3}% {:>10.4}",
        e.false_positives,
        100.0 * e.false_positive_rate(),
        e.false_negatives,
        100.0 * e.false_negative_rate(),
        e.unsure(),
        100.0 * e.unsure_rate(),
        e.one_minus_auc_percent()
    );
}

pub fn run(args: &[String]) -> Result<()> {
    let mut corpus = None;
    let mut debian = None;
    let mut svg = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--corpus" => corpus = it.next().map(PathBuf::from),
            "--debian" => debian = it.next().map(PathBuf::from),
            "--roc-svg" => svg = it.next().map(PathBuf::from),
            other => bail!("unknown argument {other}"),
        }
    }
    let corpus = corpus.context("--corpus DIR (the SpamAssassin corpus) is required")?;
    let debian = debian.unwrap_or_else(|| corpus.join("..").join("debian"));
    let bogo = Bogofilter {
        binary: debian.join("usr/bin/bogofilter-bdb"),
        libs: debian.join("usr/lib/x86_64-linux-gnu"),
    };
    if !bogo.binary.exists() {
        bail!(
            "bogofilter missing at {}: run `cargo xtask peers`",
            bogo.binary.display()
        );
    }
    let mut train_ham = files(&corpus.join("easy-ham-1"))?;
    train_ham.extend(files(&corpus.join("hard-ham-1"))?);
    let train_spam = files(&corpus.join("spam-1"))?;
    let test_ham = files(&corpus.join("easy-ham-2"))?;
    let test_spam = files(&corpus.join("spam-2"))?;
    let mut test: Vec<PathBuf> = test_ham.clone();
    test.extend(test_spam.iter().cloned());
    let classes: Vec<Class> = (0..test.len())
        .map(|i| {
            if i < test_ham.len() {
                Class::Ham
            } else {
                Class::Spam
            }
        })
        .collect();
    let n_train = train_ham.len() + train_spam.len();
    // Warm the page cache so that neither side pays the first read.
    for p in train_ham.iter().chain(&train_spam).chain(&test) {
        std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
    }
    let db = std::env::temp_dir().join(format!("scop-bench-spam-{}", std::process::id()));

    std::fs::create_dir_all(&db).with_context(|| format!("create {}", db.display()))?;
    let model_file = db.join("scop-spam.model");
    let bogo_db = db.join("bogofilter");

    let (mut ours_t, mut bogo_t) = (Vec::new(), Vec::new());
    let mut model = Model::new();
    for _ in 0..TRAIN_ROUNDS {
        let start = Instant::now();
        model = ours_train(&train_ham, &train_spam, &model_file)?;
        ours_t.push(start.elapsed());
        bogo_t.push(bogo.train(&bogo_db, &train_ham, &train_spam)?);
    }
    // Warm-up: the model file, bogofilter's database and the messages into
    // the page cache; not timed.
    let (mut ours_scores_v, _) = ours_scores(&model_file, &test)?;
    let mut bogo_scores_v = bogo.scores(&bogo_db, &test)?;
    let (mut ours_c, mut bogo_c, mut ours_load) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CLASSIFY_ROUNDS {
        let start = Instant::now();
        let (scores, load) = ours_scores(&model_file, &test)?;
        ours_c.push(start.elapsed());
        ours_load.push(load);
        ours_scores_v = scores;
        let start = Instant::now();
        bogo_scores_v = bogo.scores(&bogo_db, &test)?;
        bogo_c.push(start.elapsed());
    }
    let bogo_labels = bogo.labels(&bogo_db, &test)?;
    let model_size = std::fs::metadata(&model_file)
        .with_context(|| format!("stat {}", model_file.display()))?
        .len();
    let _ = std::fs::remove_dir_all(&db);

    let p = model.params();
    let pair = |scores: &[f64]| -> Vec<(f64, Class)> {
        scores
            .iter()
            .copied()
            .zip(classes.iter().copied())
            .collect()
    };
    let ours_e = Evaluation::new(&pair(&ours_scores_v), p.ham_cutoff, p.spam_cutoff);
    let mut bogo_e = Evaluation::new(&pair(&bogo_scores_v), BOGO_HAM_CUTOFF, BOGO_SPAM_CUTOFF);
    // bogofilter's own labels decide its FP/FN/unsure counts.
    let (mut fp, mut fneg, mut uh, mut us) = (0, 0, 0, 0);
    for (l, c) in bogo_labels.iter().zip(&classes) {
        match (l, c) {
            ('S', Class::Ham) => fp += 1,
            ('H', Class::Spam) => fneg += 1,
            ('U', Class::Ham) => uh += 1,
            ('U', Class::Spam) => us += 1,
            _ => {}
        }
    }
    bogo_e.false_positives = fp;
    bogo_e.false_negatives = fneg;
    bogo_e.unsure_ham = uh;
    bogo_e.unsure_spam = us;

    println!(
        "spam filter: scop-spam vs bogofilter 1.2.5, SpamAssassin corpus\n\
         train: easy-ham-1 + hard-ham-1 ({} ham), spam-1 ({} spam); \
         held-out evaluation: easy-ham-2 ({} ham), spam-2 ({} spam)",
        train_ham.len(),
        train_spam.len(),
        test_ham.len(),
        test_spam.len()
    );
    println!(
        "cutoffs: scop-spam ham <= {} < unsure < {} <= spam; bogofilter ham <= {BOGO_HAM_CUTOFF} < unsure < {BOGO_SPAM_CUTOFF} <= spam",
        p.ham_cutoff, p.spam_cutoff
    );
    println!(
        "{:<11} {:>5} {:>8} {:>5} {:>8} {:>6} {:>8} {:>10}",
        "filter", "FP", "FP%", "FN", "FN%", "unsure", "unsure%", "(1-AUC)%"
    );
    line("scop-spam", &ours_e);
    line("bogofilter", &bogo_e);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let (ot, bt) = (median(ours_t), median(bogo_t));
    let (oc, bc) = (median(ours_c), median(bogo_c));
    println!(
        "{:<11} {:>14} {:>16}",
        "throughput", "train msg/s", "classify msg/s"
    );
    println!(
        "{:<11} {:>14.0} {:>16.0}",
        "scop-spam",
        rate(n_train, ot),
        rate(test.len(), oc)
    );
    println!(
        "{:<11} {:>14.0} {:>16.0}",
        "bogofilter",
        rate(n_train, bt),
        rate(test.len(), bc)
    );
    println!(
        "{:<11} {:>13.2}x {:>15.2}x",
        "ratio",
        bt.as_secs_f64() / ot.as_secs_f64(),
        bc.as_secs_f64() / oc.as_secs_f64()
    );
    println!(
        "(training: median of {TRAIN_ROUNDS} rounds from an empty model/database, \
         {:.3} s for our {n_train} messages, model file written; classification: median of \
         {CLASSIFY_ROUNDS} rounds, each from the model file/database on disk, warm in the \
         page cache; one core each; ratio = scop-spam speed / bogofilter speed)",
        ot.as_secs_f64()
    );
    println!(
        "model: {} tokens, file {} bytes, load {:.1} ms (median, included in classification)",
        model.token_count(),
        model_size,
        median(ours_load).as_secs_f64() * 1e3
    );
    if let Some(svg) = svg {
        std::fs::write(
            &svg,
            roc_svg(&[("scop-spam", &ours_e), ("bogofilter", &bogo_e)]),
        )
        .with_context(|| format!("write {}", svg.display()))?;
        println!("ROC curves written to {}", svg.display());
    }
    Ok(())
}
