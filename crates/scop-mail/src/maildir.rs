//! Durable Maildir delivery: write to `tmp/`, fsync the file, rename into
//! `new/`, fsync the directory. Only after that does a delivery count as
//! done (the 250 to the client waits for it).
//!
//! The file name in `new/` of a message with a Message-ID comes from its
//! content ([`content_name`]), so a second copy of one message (handed on
//! again after a crash between the write and the acknowledgement, or
//! reaching the mailbox by two paths) finds the first and is not written
//! twice. A message without one gets a unique name. A copy counts as
//! already there only when the file under its name holds the same
//! content ([`scop_mta::headers::same_content`]); a different message
//! that happens to have that name makes the copy take another one, so
//! no name, however chosen, can make a message disappear.

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
/// unique part a [`scop_mta::headers::copy_key`], so the name is the
/// same for every copy of the message to the same recipients and a copy
/// already in `new/`, or one a reader moved to `cur/`, is seen. Sorting
/// names still sorts by the message's date.
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
                let key =
                    scop_mta::headers::copy_key(stored, recipients.iter().map(String::as_str));
                content_name(scop_mta::headers::date_of(stored), &key, host)
            }
        }
    }
}

fn clean_host(host: &str) -> String {
    host.chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect()
}

/// Makes the entries of `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Mailboxes whose `cur/` listing [`in_cur`] keeps, at most (past that,
/// the listings are dropped and made again as needed).
pub const CUR_LISTINGS_MAX: usize = 4096;
/// A listing of `cur/` taken less than this after the directory last
/// changed is not trusted for later calls: a change made within the
/// file system's timestamp granularity after the listing would leave
/// the modification time as it was.
const CUR_SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// The base names in one mailbox's `cur/` (hashed), as of its
/// modification time.
struct CurListing {
    mtime: std::time::SystemTime,
    trusted: bool,
    names: std::collections::HashSet<u64>,
}

static CUR_LISTINGS: std::sync::LazyLock<Mutex<HashMap<PathBuf, CurListing>>> =
    std::sync::LazyLock::new(Mutex::default);

fn name_hash(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name)
}

fn base_name(file: &str) -> &str {
    file.split(':').next().unwrap_or_default()
}

/// The file in `dir/cur` whose base name is `name` (a copy a reader
/// already saw and moved there, `name:2,FLAGS`), for the duplicate check
/// of live deliveries. The listing of each mailbox's `cur/` is kept and
/// made again only when the directory's modification time moves, so a
/// delivery costs one `stat` of `cur/` while no reader moves messages.
pub fn in_cur(dir: &Path, name: &str) -> Option<PathBuf> {
    let cur = dir.join("cur");
    let mtime = fs::metadata(&cur).and_then(|m| m.modified()).ok()?;
    let hash = name_hash(name);
    let mut listings = CUR_LISTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = listings
        .get(dir)
        .is_some_and(|l| l.trusted && l.mtime == mtime);
    if !fresh {
        let listed_at = std::time::SystemTime::now();
        let names = fs::read_dir(&cur)
            .ok()?
            .flatten()
            .filter_map(|e| Some(name_hash(base_name(e.file_name().to_str()?))))
            .collect();
        let trusted = listed_at
            .duration_since(mtime)
            .is_ok_and(|age| age >= CUR_SETTLED);
        if listings.len() >= CUR_LISTINGS_MAX {
            listings.clear();
        }
        listings.insert(
            dir.to_path_buf(),
            CurListing {
                mtime,
                trusted,
                names,
            },
        );
    }
    if !listings.get(dir)?.names.contains(&hash) {
        return None;
    }
    drop(listings);
    // Seen (or a hash collision): find the file itself.
    files_in_cur(dir).remove(name)
}

/// The files in `dir/cur` by base name (before the `:2,FLAGS` info a
/// reader adds when it moves a message there).
pub fn files_in_cur(dir: &Path) -> HashMap<String, PathBuf> {
    fs::read_dir(dir.join("cur"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    Some((base_name(&n).to_string(), e.path()))
                })
                .collect()
        })
        .unwrap_or_default()
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
    /// The same message was already there, at this path (an earlier copy).
    AlreadyThere(PathBuf),
}

/// How many other names a copy tries when a different message holds its
/// name (`time.unique_N.host`, N from 1), before it takes a unique one:
/// a second copy of any of the first messages to want one name finds
/// its own among them; past that many, a second copy is kept again (a
/// duplicate rather than a loss).
pub const NAME_VARIANTS: u32 = 8;

/// Delivers `msg` into the Maildir at `dir` (created if missing) under
/// `name` in `new/`, unless the same message is already there under that
/// name. The file is written under a unique name in `tmp/` first, so a
/// crash leaves at most a stray temporary file. Blocking: call from a
/// blocking task.
pub fn deliver(dir: &Path, name: &str, msg: &[u8]) -> io::Result<Delivered> {
    deliver_parts(dir, name, &[msg])
}

/// [`deliver`] of the concatenation of `parts` (a `Return-Path` line
/// and the message, say), without joining them first. A copy a reader
/// already moved to `cur/` counts as there ([`in_cur`]).
pub fn deliver_parts(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<Delivered> {
    let seen = |n: &str| in_cur(dir, n);
    deliver_seen(&dir.join("tmp"), dir, name, parts, &seen, Entry::Synced)
}

/// When the directory entry of a delivered copy is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Before the delivery returns (`new/` fsync'd, shared with
    /// concurrent deliveries).
    Synced,
    /// Later, by the caller's [`sync_new`]: for a caller that holds the
    /// copy elsewhere until then (the delivery journal syncs each
    /// mailbox once per batch). The file itself is always fsync'd before
    /// it appears in `new/`, so a reader never sees part of a message.
    Deferred,
}

/// Makes every entry already in `dir/new` durable (see
/// [`Entry::Deferred`]).
pub fn sync_new(dir: &Path) -> io::Result<()> {
    sync_dir_grouped(&dir.join("new"))
}

/// [`deliver_parts`] with the file written in `tmp`, a directory on the
/// same file system (when the link from there is refused as crossing
/// file systems, the copy goes through the Maildir's own `tmp/`:
/// writers that each have their own do not wait for one another's file
/// creations in the mailbox's `tmp/`); `earlier` gives the path of a
/// file that may hold an earlier copy under a name besides `new/NAME` (a
/// replay looks in `cur/`, where readers move what they have seen), and
/// `entry` says when the copy's name in `new/` is made durable.
pub fn deliver_seen(
    tmp: &Path,
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
    earlier: &dyn Fn(&str) -> Option<PathBuf>,
    entry: Entry,
) -> io::Result<Delivered> {
    prepare(dir)?;
    let new = dir.join("new");
    let mut written: Option<PathBuf> = None;
    let outcome = place(tmp, &new, name, parts, earlier, &mut written);
    if let Some(tmp_path) = written {
        fs::remove_file(tmp_path).ok();
    }
    match outcome {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices && tmp != dir.join("tmp") => {
            deliver_seen(&dir.join("tmp"), dir, name, parts, earlier, entry)
        }
        // A copy already there may be a concurrent delivery's, whose
        // fsync of the directory is about to run: the sync waits for it.
        Ok(done) if entry == Entry::Synced => sync_dir_grouped(&new).map(|()| done),
        other => other,
    }
}

/// Links the copy (written to `tmp` once, its path left in `written`)
/// into `new/` under the first of `name`, its variants and then unique
/// names that no other message holds, unless one holds this message.
fn place(
    tmp: &Path,
    new: &Path,
    name: &str,
    parts: &[&[u8]],
    earlier: &dyn Fn(&str) -> Option<PathBuf>,
    written: &mut Option<PathBuf>,
) -> io::Result<Delivered> {
    let host = name[unique_part_end(name)..].trim_start_matches('.');
    let mut candidates = (0..=NAME_VARIANTS)
        .map(|i| variant(name, i))
        .chain(std::iter::repeat_with(|| unique_name(0, host)));
    let mut candidate = candidates.next().unwrap_or_default();
    loop {
        let target = new.join(&candidate);
        let held = match target.exists() {
            true => Some(target.clone()),
            false => earlier(&candidate),
        };
        if let Some(held) = held {
            if holds(&held, parts)? {
                return Ok(Delivered::AlreadyThere(held));
            }
            candidate = candidates.next().unwrap_or_default();
            continue;
        }
        let tmp_path = match written {
            Some(p) => p.clone(),
            None => {
                let p = write_temporary(tmp, name, parts)?;
                *written = Some(p.clone());
                p
            }
        };
        // A link, unlike a rename, never replaces a file another copy
        // linked there meanwhile: that one is looked at again.
        match fs::hard_link(&tmp_path, &target) {
            Ok(()) => return Ok(Delivered::Written(target)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) =>
            {
                // A file system without hard links (Linux's vfat says
                // EPERM): rename, after the check above.
                fs::rename(&tmp_path, &target)?;
                *written = None;
                return Ok(Delivered::Written(target));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `name` for i = 0, else `time.unique_i.host`.
fn variant(name: &str, i: u32) -> String {
    if i == 0 {
        return name.to_string();
    }
    let end = unique_part_end(name);
    format!("{}_{i}{}", &name[..end], &name[end..])
}

/// Where the unique part of `time.unique.host` ends: at the second dot
/// (the host may have dots of its own).
fn unique_part_end(name: &str) -> usize {
    name.match_indices('.')
        .nth(1)
        .map_or(name.len(), |(at, _)| at)
}

/// Writes the copy to a new file in `tmp` and fsyncs it.
fn write_temporary(tmp: &Path, name: &str, parts: &[&[u8]]) -> io::Result<PathBuf> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = tmp.join(format!("{name}.P{}Q{n}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let result = parts
        .iter()
        .try_for_each(|p| f.write_all(p))
        .and_then(|()| f.sync_all());
    drop(f);
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            fs::remove_file(&path).ok();
            Err(e)
        }
    }
}

/// Whether the file at `path` holds the message `parts` make up.
fn holds(path: &Path, parts: &[&[u8]]) -> io::Result<bool> {
    let there = match fs::read(path) {
        Ok(b) => b,
        // Moved to cur/ or deleted by a reader meanwhile: not an
        // obstacle to the name either.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(scop_mta::headers::same_content(&there, &parts.concat()))
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
        let naming = Naming::Content {
            recipients: vec!["dora@d.test".into()],
            host: "h.d.test".into(),
        };
        assert!(matches!(
            deliver(&dir, &naming.name(first), first).unwrap(),
            Delivered::Written(_)
        ));
        // A stray temporary file from a crash is no obstacle.
        fs::write(dir.join("tmp").join(naming.name(other)), b"partial").unwrap();
        let Delivered::AlreadyThere(p) = deliver(&dir, &naming.name(again), again).unwrap() else {
            panic!("written twice")
        };
        assert_eq!(fs::read(p).unwrap(), first, "the first copy is kept");
        assert!(matches!(
            deliver(&dir, &naming.name(other), other).unwrap(),
            Delivered::Written(_)
        ));
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 2);
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 1);
        fs::remove_dir_all(root).ok();
    }

    /// Messages that share a name (the same header and body length, or
    /// a name chosen by whoever wrote the file) are all kept, each once.
    #[test]
    fn a_taken_name_never_hides_another_message() {
        let root = std::env::temp_dir().join(format!("scop-maildir-taken-{}", std::process::id()));
        let dir = mailbox_dir(&root, "erin@e.test").unwrap();
        let naming = Naming::Content {
            recipients: vec!["erin@e.test".into()],
            host: "mx.e.test".into(),
        };
        let msg = |i: usize| format!("Message-ID: <1@e.test>\r\n\r\nbody {i:02}\r\n").into_bytes();
        let name = naming.name(&msg(0));
        assert_eq!(name, naming.name(&msg(1)), "one header, one body length");
        let count = NAME_VARIANTS as usize + 3;
        let mut paths = Vec::new();
        let named = 1 + NAME_VARIANTS as usize;
        for round in 0..2 {
            for i in 0..count {
                match deliver(&dir, &name, &msg(i)).unwrap() {
                    Delivered::Written(p) if round == 0 => paths.push(p),
                    Delivered::AlreadyThere(p) if round == 1 => assert_eq!(p, paths[i]),
                    // Past the variants, unique names: kept twice.
                    Delivered::Written(p) if i >= named => assert_ne!(p, paths[i]),
                    other => panic!("round {round}, message {i}: {other:?}"),
                }
            }
        }
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read(p).unwrap(), msg(i));
        }
        let file = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(file(&paths[0]), name);
        assert_eq!(file(&paths[1]), variant(&name, 1));
        assert!(file(&paths[1]).ends_with(".mx.e.test") && file(&paths[1]).contains("_1."));
        assert!(file(&paths[count - 1]).ends_with(".mx.e.test"));
        let extra = count - named;
        assert_eq!(
            fs::read_dir(dir.join("new")).unwrap().count(),
            count + extra
        );
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

        // A copy a reader moved to cur/ is found there when asked.
        let seen = dir.join("cur").join(format!("{}:2,S", variant(&name, 1)));
        fs::rename(&paths[1], &seen).unwrap();
        let in_cur = |n: &str| (n == variant(&name, 1)).then(|| seen.clone());
        let tmp = dir.join("tmp");
        let again = deliver_seen(&tmp, &dir, &name, &[&msg(1)], &in_cur, Entry::Synced).unwrap();
        assert_eq!(again, Delivered::AlreadyThere(seen.clone()));
        assert_eq!(
            fs::read_dir(dir.join("new")).unwrap().count(),
            count + extra - 1
        );
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_copy_a_reader_moved_to_cur_is_not_delivered_again() {
        let root = std::env::temp_dir().join(format!("scop-maildir-cur-{}", unique_name(0, "t")));
        let dir = root.join("Maildir");
        let msg = b"Message-ID: <1@a.test>\r\n\r\nhello\r\n";
        let name = "1700000000.Mabc.mx.test";
        let first = deliver(&dir, name, msg).unwrap();
        let Delivered::Written(path) = first else {
            panic!("{first:?}")
        };
        // A listing taken long after cur/ last changed is trusted...
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::open(dir.join("cur"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        assert_eq!(in_cur(&dir, name), None);
        // ...until a reader moves the copy there.
        let seen = dir.join("cur").join(format!("{name}:2,S"));
        fs::rename(&path, &seen).unwrap();
        assert_eq!(
            deliver(&dir, name, msg).unwrap(),
            Delivered::AlreadyThere(seen.clone())
        );
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 0);
        // Another message under that name is still delivered.
        let other = b"Message-ID: <2@a.test>\r\n\r\nother\r\n";
        assert!(matches!(
            deliver(&dir, name, other).unwrap(),
            Delivered::Written(_)
        ));
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
