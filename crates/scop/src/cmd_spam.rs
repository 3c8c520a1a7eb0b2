//! `scop spam train`, `scop spam classify` and `scop spam eval`: the file
//! and terminal side of the sans-IO `scop-spam` classifier.

use crate::progress;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use scop_spam::eval::{Evaluation, roc_svg};
use scop_spam::{Class, Features, Model, tokenize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Clues shown per message by `classify` unless `--clues` says otherwise.
const DEFAULT_CLUES: usize = 8;

#[derive(Debug, Subcommand)]
pub enum SpamCommand {
    /// Train a model from directories of known ham and spam.
    ///
    /// Each DIR is searched recursively (dot files are skipped); plain files
    /// are accepted too. Each file is one RFC 5322 message. The model file is
    /// written atomically (a temporary file renamed into place).
    ///
    /// Examples:
    ///   scop spam train --ham mail/ham --spam mail/spam --model spam.model
    ///   scop spam train --update --on-error --spam new-spam/ --model spam.model
    #[command(verbatim_doc_comment)]
    Train(TrainArgs),
    /// Classify messages with a trained model.
    ///
    /// Prints one line per message: the path, the score (0 = ham, 1 = spam),
    /// the label (ham, unsure or spam), dangerous attachments if any, then the
    /// strongest clues as "token"=probability. The score and label come from
    /// Robinson-Fisher combining; the cutoffs are stored in the model.
    ///
    /// Example:
    ///   scop spam classify --model spam.model inbox/cur/ message.eml
    #[command(verbatim_doc_comment)]
    Classify(ClassifyArgs),
    /// Measure a model on labelled messages it was not trained on.
    ///
    /// Prints false positives (ham called spam), false negatives (spam called
    /// ham) and unsure counts and rates at the model's cutoffs, and (1-AUC)%,
    /// the percentage of (ham, spam) pairs the score ranks the wrong way.
    ///
    /// Example:
    ///   scop spam eval --model spam.model --ham held-out/ham --spam held-out/spam \
    ///       --roc-csv roc.csv --roc-svg roc.svg
    #[command(verbatim_doc_comment)]
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Directories (or files) of ham: wanted mail.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    ham: Vec<PathBuf>,
    /// Directories (or files) of spam.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    spam: Vec<PathBuf>,
    /// The model file to write.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Start from the existing model file instead of an empty model.
    #[arg(long)]
    update: bool,
    /// Train-on-error: train a message only when the model gets it wrong or
    /// is unsure (messages are taken ham and spam interleaved).
    #[arg(long)]
    on_error: bool,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Clues printed per message.
    #[arg(long, default_value_t = DEFAULT_CLUES)]
    clues: usize,
    /// Message files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Directories (or files) of ham.
    #[arg(long, num_args = 1.., value_name = "DIR", required = true)]
    ham: Vec<PathBuf>,
    /// Directories (or files) of spam.
    #[arg(long, num_args = 1.., value_name = "DIR", required = true)]
    spam: Vec<PathBuf>,
    /// Write the ROC curve as CSV (threshold, false-positive rate, true-positive rate).
    #[arg(long, value_name = "FILE")]
    roc_csv: Option<PathBuf>,
    /// Write the ROC curve as an SVG plot.
    #[arg(long, value_name = "FILE")]
    roc_svg: Option<PathBuf>,
}

pub fn run(cmd: SpamCommand) -> Result<ExitCode> {
    match cmd {
        SpamCommand::Train(args) => train(args),
        SpamCommand::Classify(args) => classify(args),
        SpamCommand::Eval(args) => eval(args),
    }
}

/// Reads and tokenizes `files` on every core, in order, advancing `bar`.
fn tokenize_files(files: &[PathBuf], bar: &indicatif::ProgressBar) -> Result<Vec<Features>> {
    let jobs = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = files.len().div_ceil(jobs).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<Vec<Features>> {
                    part.iter()
                        .map(|path| {
                            let data = std::fs::read(path)
                                .with_context(|| format!("cannot read {}", path.display()))?;
                            bar.inc(1);
                            Ok(tokenize(&data))
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(files.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("tokenizer thread panicked"))??,
            );
        }
        Ok(all)
    })
}

fn load_model(path: &Path) -> Result<Model> {
    let data =
        std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    Model::from_bytes(&data).with_context(|| format!("cannot load model {}", path.display()))
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    if args.ham.is_empty() && args.spam.is_empty() {
        bail!("nothing to train: give --ham DIR... and/or --spam DIR...");
    }
    let mut model = if args.update {
        load_model(&args.model)?
    } else {
        Model::new()
    };
    let ham = scop::files::message_files(&args.ham)?;
    let spam = scop::files::message_files(&args.spam)?;
    let mut files: Vec<(PathBuf, Class)> = Vec::with_capacity(ham.len() + spam.len());
    if args.on_error {
        // Interleave so that neither class is learnt entirely before the other.
        let (mut h, mut s) = (ham.into_iter(), spam.into_iter());
        loop {
            match (h.next(), s.next()) {
                (None, None) => break,
                (a, b) => {
                    files.extend(a.map(|p| (p, Class::Ham)));
                    files.extend(b.map(|p| (p, Class::Spam)));
                }
            }
        }
    } else {
        files.extend(ham.into_iter().map(|p| (p, Class::Ham)));
        files.extend(spam.into_iter().map(|p| (p, Class::Spam)));
    }
    let start = std::time::Instant::now();
    let bar = progress::bar(files.len() as u64, "messages");
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let features = tokenize_files(&paths, &bar)?;
    bar.finish_and_clear();
    let mut trained = 0usize;
    for (f, (_, class)) in features.iter().zip(&files) {
        if args.on_error {
            let v = model.classify_features(f);
            let right = matches!(
                (v.label, class),
                (scop_spam::Label::Ham, Class::Ham) | (scop_spam::Label::Spam, Class::Spam)
            );
            if right {
                continue;
            }
        }
        model.train_features(f, *class);
        trained += 1;
    }
    let bytes = model.to_bytes();
    write_atomically(&args.model, &bytes)?;
    let m = model.messages();
    println!(
        "trained {trained} of {} messages in {:.1?}; model {}: {} ham, {} spam, {} tokens, {} bytes",
        files.len(),
        start.elapsed(),
        args.model.display(),
        m.ham,
        m.spam,
        model.token_count(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn classify(args: ClassifyArgs) -> Result<ExitCode> {
    let model = load_model(&args.model)?;
    let files = scop::files::message_files(&args.paths)?;
    for path in files {
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let v = model.classify(&data);
        let mut line = format!("{}\t{:.6}\t{}", path.display(), v.score, v.label);
        for a in &v.dangerous {
            let reasons: Vec<String> = a.dangers.iter().map(ToString::to_string).collect();
            line.push_str(&format!(
                "\tDANGEROUS {:?} ({})",
                a.filename.as_deref().unwrap_or(&a.mime_type),
                reasons.join(", ")
            ));
        }
        line.push('\t');
        let clues: Vec<String> = v
            .clues
            .iter()
            .take(args.clues)
            .map(|c| format!("{:?}={:.3}", c.token, c.probability))
            .collect();
        line.push_str(&clues.join(" "));
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let model = load_model(&args.model)?;
    let ham = scop::files::message_files(&args.ham)?;
    let spam = scop::files::message_files(&args.spam)?;
    let mut files: Vec<PathBuf> = ham.clone();
    files.extend(spam.iter().cloned());
    let bar = progress::bar(files.len() as u64, "messages");
    let features = tokenize_files(&files, &bar)?;
    bar.finish_and_clear();
    let scores: Vec<(f64, Class)> = features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let class = if i < ham.len() {
                Class::Ham
            } else {
                Class::Spam
            };
            (model.classify_features(f).score, class)
        })
        .collect();
    let p = model.params();
    let e = Evaluation::new(&scores, p.ham_cutoff, p.spam_cutoff);
    println!("{}", e.summary());
    if let Some(path) = &args.roc_csv {
        std::fs::write(path, e.roc_csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.roc_svg {
        std::fs::write(path, roc_svg(&[("scop-spam", &e)]))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
