//! The README's quickstart, run as written: its first command (through the
//! `scop` binary built for the tests, in an empty directory), then the
//! swaks command it prints (swaks from Debian), until the message is in
//! the mailbox it names; its second command is what `.ci/run` runs.

mod deploy;

use deploy::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The commands of the first `sh` block after the Quickstart heading.
fn quickstart_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(scop_testkit::workspace_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Quickstart").expect("a Quickstart section")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let commands = quickstart_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let ci = std::fs::read_to_string(scop_testkit::workspace_root().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("exec {}", commands[1])),
        "{ci}"
    );
    let args: Vec<&str> = commands[0]
        .strip_prefix("cargo run --release -- ")
        .expect("the main job runs the scop binary")
        .split_whitespace()
        .collect();

    let cwd = fresh_root("quickstart");
    let log = std::fs::File::create(cwd.join("stderr.log")).unwrap();
    let mut child = Command::new(SCOP)
        .args(&args)
        .current_dir(&cwd)
        .env_remove("SCOP_DIR")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let supervisor = Supervisor(child);

    let mut swaks_line = None;
    let mut maildir = None;
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        let t = line.trim();
        if t.starts_with("swaks ") {
            swaks_line = Some(t.to_string());
        }
        if let Some(p) = t.strip_prefix("Read it in ") {
            maildir = Some(PathBuf::from(p));
        }
        if t.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    let swaks_line = swaks_line.unwrap_or_else(|| panic!("no swaks command: {banner}"));
    let maildir = maildir.unwrap_or_else(|| panic!("no mailbox: {banner}"));
    assert!(maildir.starts_with(&cwd), "{}", maildir.display());

    let submissions = "127.0.0.1:2465".parse().unwrap();
    wait_for("the submission listener", Duration::from_secs(60), || {
        listening(submissions)
    });
    let swaks_args: Vec<&str> = swaks_line.split_whitespace().skip(1).collect();
    let out = scop_testkit::swaks().args(&swaks_args).output().unwrap();
    assert!(out.status.success(), "swaks: {out:?}");

    wait_for(
        "the message in the mailbox",
        Duration::from_secs(30),
        || std::fs::read_dir(&maildir).is_ok_and(|d| d.count() > 0),
    );
    let file = std::fs::read_dir(&maildir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let message = std::fs::read_to_string(file).unwrap();
    assert!(message.contains("DKIM-Signature:"), "{message}");
    assert!(message.contains("From: you@scop.test"), "{message}");

    drop(supervisor);
    let _ = std::fs::remove_dir_all(&cwd);
}
