//! Durable Maildir delivery: write to `tmp/`, fsync the file, rename into
//! `new/`, fsync the directory. Only after that does a delivery count as
//! done (the 250 to the client waits for it).
//!
//! The file name in `new/` of a message with a Message-ID comes from its
//! content ([`content_name`]), so a second copy of one message (handed on
//! again after a crash between the write and the acknowledgement, or
//! reaching the mailbox by two paths) finds the first and is not written
//! twice. A message without one gets a unique name.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The mailbox directory of `login` under `root` (`root/<login>/Maildir`).
/// Logins are validated by the store; this refuses anything that could
/// leave `root` anyway.
pub fn mailbox_dir(root: &Path, login: &str) -> io::Result<PathBuf> {
    let ok = !login.is_empty()
        && login.len() <= 255
        && !login.starts_with('.')
        && login
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+'));
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsafe mailbox name {login:?}"),
        ));
    }
    Ok(root.join(login).join("Maildir"))
}

/// A unique file name (Maildir convention: time, unique part, host).
pub fn unique_name(now: i64, host: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{now}.P{}Q{n}.{}", std::process::id(), clean_host(host))
}

/// The Maildir file name of one copy of a message: `time.unique.host`,
/// where the time is the message's `Date` (0 without one) and the
/// unique part a [`scop_mta::headers::copy_digest`], so the name is the
/// same for every copy of the message to the same recipients and a copy
/// already in `new/` is seen (one that a reader already moved to `cur/`
/// is not). Sorting names still sorts by the message's date.
pub fn content_name(date: Option<i64>, digest: &[u8; 32], host: &str) -> String {
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.M{hex}.{}", date.unwrap_or(0).max(0), clean_host(host))
}

/// How a copy's file in `new/` is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// This name (a [`unique_name`]).
    Fixed(String),
    /// The [`content_name`] of the copy for these envelope recipients
    /// (the bytes stored are hashed when the name is needed).
    Content {
        /// The envelope recipients that led to the mailbox.
        recipients: Vec<String>,
        /// Our host name.
        host: String,
    },
}

impl Naming {
    /// The name of the copy `stored` (the message as written to the
    /// mailbox: its `Return-Path` is a transit field and does not count).
    pub fn name(&self, stored: &[u8]) -> String {
        match self {
            Naming::Fixed(name) => name.clone(),
            Naming::Content { recipients, host } => {
                let content = scop_mta::headers::content_digest(stored);
                let copy =
                    scop_mta::headers::copy_digest(&content, recipients.iter().map(String::as_str));
                content_name(scop_mta::headers::date_of(stored), &copy, host)
            }
        }
    }
}

fn clean_host(host: &str) -> String {
    host.chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directory fsyncs shared between concurrent deliveries (group commit):
/// a delivery that renamed its file into `new/` waits for one fsync of
/// the directory that started after its rename; deliveries that arrive
/// while an fsync runs are covered together by the next one.
#[derive(Default)]
struct DirSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out (one per rename, taken after it).
    next: u64,
    /// Every ticket below this is durable.
    covered: u64,
    /// An fsync is running.
    running: bool,
}

/// Directories with deliveries in flight (entries are dropped when idle).
static DIRS: Mutex<Option<HashMap<PathBuf, Arc<DirSync>>>> = Mutex::new(None);

fn dir_sync(dir: &Path) -> Arc<DirSync> {
    let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    let map = dirs.get_or_insert_with(HashMap::new);
    // Forget directories nobody waits on, so the map stays small.
    if map.len() > 1024 {
        map.retain(|_, s| Arc::strong_count(s) > 1);
    }
    map.entry(dir.to_path_buf()).or_default().clone()
}

/// Makes every rename already done in `dir` durable, sharing the fsync
/// with concurrent callers.
fn sync_dir_grouped(dir: &Path) -> io::Result<()> {
    let sync = dir_sync(dir);
    let mut st = sync.state.lock().unwrap_or_else(|p| p.into_inner());
    let ticket = st.next;
    st.next += 1;
    loop {
        if st.covered > ticket {
            return Ok(());
        }
        if !st.running {
            st.running = true;
            let covers = st.next;
            drop(st);
            let result = sync_dir(dir);
            st = sync.state.lock().unwrap_or_else(|p| p.into_inner());
            st.running = false;
            if result.is_ok() {
                st.covered = st.covered.max(covers);
            }
            sync.done.notify_all();
            // On failure the waiters try an fsync of their own.
            return result;
        }
        st = sync.done.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}

/// Makes the Maildir at `dir` (`tmp/`, `new/`, `cur/`) if it is
/// missing, durably.
pub fn prepare(dir: &Path) -> io::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            fs::create_dir_all(&d)?;
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

/// What [`deliver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The message is now in `new/` at this path.
    Written(PathBuf),
    /// A file of that name was already in `new/` (an earlier copy).
    AlreadyThere(PathBuf),
}

/// Delivers `msg` into the Maildir at `dir` (created if missing) under
/// `name` in `new/`, unless a file of that name is already there. The
/// file is written under a unique name in `tmp/` first, so a crash
/// leaves at most a stray temporary file. Blocking: call from a blocking
/// task.
pub fn deliver(dir: &Path, name: &str, msg: &[u8]) -> io::Result<Delivered> {
    deliver_parts(dir, name, &[msg])
}

/// [`deliver`] of the concatenation of `parts` (a `Return-Path` line
/// and the message, say), without joining them first.
pub fn deliver_parts(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
    deliver_via(&dir.join("tmp"), dir, name, parts)
}

/// [`deliver_parts`] with the file written in `tmp`, a directory on the
/// same file system (when the rename from there is refused as crossing
/// file systems, the copy goes through the Maildir's own `tmp/`):
/// writers that each have their own do not wait for one another's file
/// creations in the mailbox's `tmp/`.
pub fn deliver_via(tmp: &Path, dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
    prepare(dir)?;
    let new = dir.join("new");
    let final_path = new.join(name);
    if final_path.exists() {
        // Durable already: its delivery fsync'd the directory before
        // acknowledging, or a concurrent one is about to; wait for that.
        sync_dir_grouped(&new)?;
        return Ok(Delivered::AlreadyThere(final_path));
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_path = tmp.join(format!("{name}.P{}Q{n}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)?;
    let written = parts
        .iter()
        .try_for_each(|p| f.write_all(p))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        fs::remove_file(&tmp_path).ok();
        return Err(e);
    }
    drop(f);
    // Two copies racing rename the same content onto one name: one file.
    match fs::rename(&tmp_path, &final_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices && tmp != dir.join("tmp") => {
            fs::remove_file(&tmp_path).ok();
            return deliver_parts(dir, name, parts);
        }
        Err(e) => {
            fs::remove_file(&tmp_path).ok();
            return Err(e);
        }
    }
    sync_dir_grouped(&new)?;
    Ok(Delivered::Written(final_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new() {
        let root = std::env::temp_dir().join(format!("scop-maildir-{}", std::process::id()));
        let dir = mailbox_dir(&root, "bob@b.test").unwrap();
        let name = unique_name(1, "host");
        let Delivered::Written(p) = deliver(&dir, &name, b"Subject: x\r\n\r\nhi\r\n").unwrap()
        else {
            panic!("not written")
        };
        assert!(p.starts_with(dir.join("new")));
        assert_eq!(fs::read(&p).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert!(unique_name(1, "host") != name);
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn concurrent_deliveries_share_directory_syncs() {
        let root = std::env::temp_dir().join(format!("scop-maildir-group-{}", std::process::id()));
        let dir = mailbox_dir(&root, "carol@c.test").unwrap();
        deliver(&dir, &unique_name(1, "h"), b"first\r\n").unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    for j in 0..20 {
                        let body = format!("m{i}-{j}\r\n");
                        let Delivered::Written(p) =
                            deliver(&dir, &unique_name(2, "h"), body.as_bytes()).unwrap()
                        else {
                            panic!("not written")
                        };
                        assert_eq!(fs::read(&p).unwrap(), body.as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 1 + 16 * 20);
        let sync = dir_sync(&dir.join("new"));
        let st = sync.state.lock().unwrap();
        assert!(!st.running);
        assert_eq!(st.covered, st.next, "every ticket covered by an fsync");
        drop(st);
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_second_copy_of_a_message_is_not_written_again() {
        let root = std::env::temp_dir().join(format!("scop-maildir-once-{}", std::process::id()));
        let dir = mailbox_dir(&root, "dora@d.test").unwrap();
        let first = b"Received: from a by b; 1\r\nMessage-ID: <1@d.test>\r\n\r\nhi\r\n";
        let again = b"Received: from a by b; 2\r\nMessage-ID: <1@d.test>\r\n\r\nhi\r\n";
        let other = b"Received: from a by b; 2\r\nMessage-ID: <2@d.test>\r\n\r\nhi\r\n";
        let name = |m: &[u8]| content_name(None, &scop_mta::headers::content_digest(m), "h");
        assert!(matches!(
            deliver(&dir, &name(first), first).unwrap(),
            Delivered::Written(_)
        ));
        // A stray temporary file from a crash is no obstacle.
        fs::write(dir.join("tmp").join(name(other)), b"partial").unwrap();
        let Delivered::AlreadyThere(p) = deliver(&dir, &name(again), again).unwrap() else {
            panic!("written twice")
        };
        assert_eq!(fs::read(p).unwrap(), first, "the first copy is kept");
        assert!(matches!(
            deliver(&dir, &name(other), other).unwrap(),
            Delivered::Written(_)
        ));
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 2);
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn refuses_escaping_names() {
        let root = Path::new("/nonexistent");
        for bad in ["", "../x", ".hidden", "a/b", "a\0b", "x y"] {
            assert!(mailbox_dir(root, bad).is_err(), "{bad:?}");
        }
        assert!(mailbox_dir(root, "alice@a.test").is_ok());
    }
}
