//! The delivery journal: a mailbox copy counts as stored (and the 250
//! may go out) once its record ([`scop_mta::journal`]) is in an
//! append-only log and fdatasync'd, together with the copies of every
//! session that arrived meanwhile (group commit). Background threads
//! then write the copies into their Maildirs ([`maildir::deliver_seen`]:
//! each file fsync'd before it is linked into `new/`), a batch at a time
//! in the order of the log, [`APPLY_THREADS`] files at once; each
//! mailbox's `new/` is fsync'd once per batch, before the batch counts as
//! applied (until then the log holds its copies).
//!
//! Making a new file in a Maildir is the slow part of a delivery (on
//! ext4 an inode allocation, which may scan many recently freed inodes,
//! and two fsyncs): the log takes it off the path of the reply.
//!
//! The log is a directory of segments (`<seq>.log`). Once every copy in
//! a segment is in its mailbox, its file is kept as a spare
//! (`<seq>.spare`, [`MAX_SPARES`] at most) or deleted; the writer
//! starts a new segment past [`SEGMENT_BYTES`], in a spare when there
//! is one. Records carry their segment's number, so the old records
//! past the new ones in a reused file are not read as the new
//! segment's ([`scop_mta::journal`]). At open, every segment left by a
//! crash is read and its copies are written again, except those already
//! in `new/` or `cur/` under their name (content names make a second
//! copy of a message the same file, see [`maildir`]), so a copy is
//! stored once. A record cut short by a crash was never acknowledged and
//! is dropped; after a failed write (nothing of that batch was
//! acknowledged) the writer goes on in a new segment, or refuses copies
//! while it cannot make one. A lock file keeps a second process out of
//! the directory.
//!
//! At most [`MAX_UNAPPLIED`] copies, and [`MAX_UNAPPLIED_BYTES`], wait
//! for their mailbox; beyond that the acknowledgements wait too. The
//! mailbox writers run [`APPLY_NICENESS`] steps below the sessions in
//! CPU priority: under load the processor answers clients first, and
//! the writers catch up when it is free, or when that bound makes the
//! sessions wait. They also wait for the sessions to pause
//! ([`APPLY_QUIET`]) before they make files, for [`APPLY_HOLD`] at
//! most: a burst of messages is acknowledged first and written into
//! the mailboxes after it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use scop_mta::journal::{decode_segment, encode_head};
use tokio::sync::oneshot;

use crate::maildir::{self, Naming};

/// A segment grows to about this size before the writer starts another
/// (the default of [`Journal::open_sized`]).
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Files of segments whose copies are all in their mailboxes kept for
/// later segments, at most: syncing records written over a file's
/// written blocks writes no inode, and reusing one spares the zeros a
/// new segment is filled with ahead of its records (about 9 ms per 4 MB
/// here, in the middle of a batch).
pub const MAX_SPARES: usize = 8;
/// Copies logged but not yet in their mailbox, at most.
pub const MAX_UNAPPLIED: usize = 4096;
/// Bytes of copies logged but not yet in their mailbox (held in memory),
/// at most (a larger copy waits until none is).
pub const MAX_UNAPPLIED_BYTES: usize = 256 << 20;
/// Bytes written and synced at once, at most (more wait for the next
/// batch).
const BATCH_BYTES: usize = 16 << 20;
/// Copies written into mailboxes at once, at most.
const APPLY_BATCH: usize = 64;
/// The mailbox writers start once no copy has been logged for this long
/// (the sessions paused), ...
pub const APPLY_QUIET: Duration = Duration::from_millis(5);
/// ... or once a copy has waited this long, ...
pub const APPLY_HOLD: Duration = Duration::from_secs(1);
/// ... or once this many copies, or [`APPLY_BACKLOG_BYTES`], wait.
const APPLY_BACKLOG: usize = 1024;
/// See [`APPLY_BACKLOG`] (well within [`MAX_UNAPPLIED_BYTES`], so that
/// waiting writers never make the sessions wait).
const APPLY_BACKLOG_BYTES: usize = MAX_UNAPPLIED_BYTES / 4;
/// Threads writing one batch into mailboxes.
pub const APPLY_THREADS: usize = 2;
/// How far the mailbox writers' nice value is above the process's (19
/// at most): they yield the processor to the sessions.
pub const APPLY_NICENESS: i32 = 10;

/// One copy for one mailbox directory.
struct Copy {
    dir: PathBuf,
    naming: Naming,
    /// Stored before the body (a `Return-Path` line); not named.
    prefix: Vec<u8>,
    body: Arc<Vec<u8>>,
}

impl Copy {
    /// The bytes stored.
    fn size(&self) -> usize {
        self.prefix.len() + self.body.len()
    }
}

/// A [`Naming`] as the name field of a record: `=NAME` for a fixed
/// name, `#HOST` then one line per recipient for a content name.
fn encode_naming(naming: &Naming) -> String {
    match naming {
        Naming::Fixed(name) => format!("={name}"),
        Naming::Content { recipients, host } => {
            let mut s = format!("#{host}");
            for r in recipients {
                s.push('\n');
                s.push_str(r);
            }
            s
        }
    }
}

fn decode_naming(field: &str) -> Option<Naming> {
    if let Some(name) = field.strip_prefix('=') {
        return (!name.is_empty() && !name.contains(['/', '\n']))
            .then(|| Naming::Fixed(name.into()));
    }
    let mut lines = field.strip_prefix('#')?.split('\n');
    let host = lines.next()?.to_string();
    Some(Naming::Content {
        recipients: lines.map(str::to_string).collect(),
        host,
    })
}

struct Pending {
    copy: Copy,
    done: oneshot::Sender<io::Result<()>>,
}

struct Apply {
    segment: u64,
    copy: Copy,
}

/// Copies taken, and copies settled (in their mailbox, or refused
/// before they were acknowledged), for [`Journal::drain`].
#[derive(Default)]
struct Progress {
    counts: Mutex<(u64, u64)>,
    changed: Condvar,
}

/// Bytes held for the mailbox writers ([`MAX_UNAPPLIED_BYTES`]).
#[derive(Default)]
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    /// Waits until `n` more bytes fit (or nothing is held), and holds them.
    fn take(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + n > MAX_UNAPPLIED_BYTES {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
    }

    fn give(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, n: usize) {
        self.lock().1 += n as u64;
        self.changed.notify_all();
    }
}

/// The journal of one process (see the module documentation).
pub struct Journal {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Pending>>>,
    progress: Arc<Progress>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// What [`Journal::open`] found left by an earlier run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Copies written into their mailbox.
    pub written: usize,
    /// Copies that were there already.
    pub present: usize,
    /// Bytes of a record cut short at the end of a segment (never
    /// acknowledged).
    pub torn_bytes: u64,
    /// Copies whose record's name field this version does not read:
    /// written under a new unique name (counted in `written` too).
    pub renamed: usize,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing, mode 0700),
    /// writes the copies an earlier run left in it into their
    /// mailboxes, and starts the writer and the mailbox thread.
    pub fn open(dir: &Path) -> io::Result<(Journal, Recovered)> {
        Journal::open_sized(dir, SEGMENT_BYTES)
    }

    /// [`Journal::open`] with segments of about `segment_bytes` (at
    /// least one record each).
    pub fn open_sized(dir: &Path, segment_bytes: u64) -> io::Result<(Journal, Recovered)> {
        fs::create_dir_all(dir)?;
        set_private(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the delivery journal {} is used by another process",
                    dir.display()
                ),
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        let (recovered, next, spares) = recover(dir)?;
        let spares = Arc::new(Spares {
            dir: dir.to_path_buf(),
            seqs: Mutex::new(spares),
        });
        let (tx, rx) = mpsc::channel::<Pending>();
        let (apply_tx, apply_rx) = mpsc::sync_channel::<Apply>(MAX_UNAPPLIED);
        let progress = Arc::new(Progress::default());
        let segment = Segment::create(dir, next, &spares)?;
        let budget = Arc::new(Budget::default());
        let writer = {
            let dir = dir.to_path_buf();
            let (progress, budget, spares) = (progress.clone(), budget.clone(), spares.clone());
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || {
                    let log = Log {
                        dir: &dir,
                        segment_bytes,
                        spares: &spares,
                    };
                    write_loop(&log, segment, rx, apply_tx, &progress, &budget)
                })?
        };
        let applier = {
            let dir = dir.to_path_buf();
            let progress = progress.clone();
            std::thread::Builder::new()
                .name("journal-apply".into())
                .spawn(move || apply_loop(&dir, next, apply_rx, &progress, &budget, &spares))?
        };
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                tx: Mutex::new(Some(tx)),
                progress,
                threads: Mutex::new(vec![writer, applier]),
                _lock: lock,
            },
            recovered,
        ))
    }

    /// Logs the copy of `body` for the Maildir at `dir`, named in
    /// `new/` as `naming` says; the receiver answers once the copy is
    /// durable in the log.
    pub fn submit(
        &self,
        dir: PathBuf,
        naming: Naming,
        prefix: Vec<u8>,
        body: Arc<Vec<u8>>,
    ) -> oneshot::Receiver<io::Result<()>> {
        let (done, wait) = oneshot::channel();
        let pending = Pending {
            copy: Copy {
                dir,
                naming,
                prefix,
                body,
            },
            done,
        };
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let refused = match tx.as_ref() {
            Some(tx) => {
                self.progress.lock().0 += 1;
                tx.send(pending).err().map(|mpsc::SendError(p)| {
                    self.progress.settle(1);
                    p
                })
            }
            None => Some(pending),
        };
        if let Some(p) = refused {
            let _ = p.done.send(Err(closed()));
        }
        wait
    }

    /// Waits until every copy logged so far is in its mailbox (at most
    /// `limit`); whether it is.
    pub fn drain(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut counts = self.progress.lock();
        loop {
            if counts.1 >= counts.0 {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            counts = self
                .progress
                .changed
                .wait_timeout(counts, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops taking copies, writes every logged one into its mailbox and
    /// empties the log.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> io::Error {
    io::Error::other("the delivery journal is closed")
}

fn set_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

fn spare_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.spare"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    numbered(dir, ".log")
}

/// The numbers of the files `<number><suffix>` in `dir`, in order.
fn numbered(dir: &Path, suffix: &str) -> io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(suffix)?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Files of segments kept for later ones ([`MAX_SPARES`]), by the
/// number of the segment each held last: every record in such a file
/// is of that segment or an older one, so a new segment takes a number
/// above them all.
struct Spares {
    dir: PathBuf,
    seqs: Mutex<Vec<u64>>,
}

impl Spares {
    /// Keeps the file of segment `seq`, whose copies are all in their
    /// mailboxes, as a spare, or deletes it.
    fn retire(&self, seq: u64) {
        let mut seqs = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
        if seqs.len() < MAX_SPARES {
            match fs::rename(segment_path(&self.dir, seq), spare_path(&self.dir, seq)) {
                Ok(()) => return seqs.push(seq),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    tracing::error!(error = %e, seq, "delivery journal: keep a spare segment")
                }
            }
        }
        drop(seqs);
        remove_segment(&self.dir, seq);
    }

    fn take(&self) -> Option<u64> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }
}

/// Writes the copies of the segments left in `dir` into their
/// mailboxes and deletes the segments; the next segment number, and the
/// spare files kept.
fn recover(dir: &Path) -> io::Result<(Recovered, u64, Vec<u64>)> {
    let seqs = segments(dir)?;
    let mut spares = numbered(dir, ".spare")?;
    let next = seqs.iter().chain(&spares).max().map_or(0, |s| s + 1);
    while spares.len() > MAX_SPARES {
        fs::remove_file(spare_path(dir, spares.remove(0)))?;
    }
    let mut found = Recovered::default();
    // Files in each mailbox's cur/ (a reader may have moved a copy there).
    let mut seen: HashMap<PathBuf, HashMap<String, PathBuf>> = HashMap::new();
    for &seq in &seqs {
        let path = segment_path(dir, seq);
        let bytes = fs::read(&path)?;
        let segment = decode_segment(&bytes, seq);
        found.torn_bytes += segment.cut_short as u64;
        for r in segment.records {
            let name = match decode_naming(r.name) {
                Some(naming) => naming.name(r.body),
                None => {
                    tracing::error!(segment = %path.display(), "delivery journal: a record's name field is not one this version writes; the copy gets a new name");
                    found.renamed += 1;
                    maildir::unique_name(0, "journal")
                }
            };
            let mailbox = PathBuf::from(std::ffi::OsStr::from_bytes(r.dir));
            let cur = seen
                .entry(mailbox.clone())
                .or_insert_with(|| maildir::files_in_cur(&mailbox));
            let in_cur = |n: &str| cur.get(n).cloned();
            let tmp = mailbox.join("tmp");
            let synced = maildir::Entry::Synced;
            match maildir::deliver_seen(&tmp, &mailbox, &name, &[r.body], &in_cur, synced)? {
                maildir::Delivered::Written(_) => found.written += 1,
                maildir::Delivered::AlreadyThere(_) => found.present += 1,
            }
        }
    }
    for &seq in &seqs {
        fs::remove_file(segment_path(dir, seq))?;
    }
    // Files a crash left half written in the writers' temporary
    // directories: their copies were just written again.
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with("tmp")) && entry.path().is_dir() {
            for f in fs::read_dir(entry.path())?.flatten() {
                fs::remove_file(f.path()).ok();
            }
        }
    }
    if !seqs.is_empty() {
        maildir::sync_dir(dir)?;
    }
    Ok((found, next, spares))
}

/// The segment being appended to. Its file is a spare one's, or is
/// zero-filled ahead of the records ([`PREFILL_BYTES`] at a time), so
/// that the fdatasync of a batch writes data only: an append that grows
/// the file also writes its inode (on ext4 with a journal, commits the
/// journal, which waits for the mailbox writers' new files). Measured
/// here (ext4 without a journal), per write and fdatasync of a 2 KB
/// record while another process makes and fsyncs files: 402 and 567 µs
/// appended, 233 and 369 µs into zeros; of a 100 KB record alone
/// (medians of 200, three sets), 0.57-0.69 ms appended, 0.31-0.41 ms
/// into zeros, 0.35-0.43 ms over an older segment's records.
struct Segment {
    seq: u64,
    file: File,
    /// Bytes of records.
    len: u64,
    /// Bytes of the file (records, then zeros).
    filled: u64,
}

/// Zeros written at once ahead of the records.
const PREFILL_BYTES: u64 = 4 << 20;

impl Segment {
    /// A new, empty segment whose name is durable, in a spare file when
    /// there is one.
    fn create(dir: &Path, seq: u64, spares: &Spares) -> io::Result<Segment> {
        if let Some(old) = spares.take() {
            match Segment::reuse(dir, old, seq) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::warn!(error = %e, "delivery journal: reuse a spare segment");
                    fs::remove_file(spare_path(dir, old)).ok();
                    fs::remove_file(segment_path(dir, seq)).ok();
                }
            }
        }
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(segment_path(dir, seq))?;
        maildir::sync_dir(dir)?;
        Ok(Segment {
            seq,
            file,
            len: 0,
            filled: 0,
        })
    }

    /// Segment `seq` in the spare file of segment `old`: its records
    /// are written over `old`'s.
    fn reuse(dir: &Path, old: u64, seq: u64) -> io::Result<Segment> {
        let path = segment_path(dir, seq);
        fs::rename(spare_path(dir, old), &path)?;
        let file = OpenOptions::new().write(true).open(&path)?;
        let filled = file.metadata()?.len();
        maildir::sync_dir(dir)?;
        Ok(Segment {
            seq,
            file,
            len: 0,
            filled,
        })
    }

    /// Zero-fills the file so that `n` more bytes of records fit, and
    /// makes its new length durable. Only a matter of speed: where the
    /// zeros cannot be written (a full disk, a file size limit) the
    /// records' own write and sync grow the file, or fail.
    fn prefill(&mut self, n: u64) {
        use std::os::unix::fs::FileExt;
        if self.len + n <= self.filled {
            return;
        }
        let end = (self.len + n).max(self.filled + PREFILL_BYTES);
        let zeros = vec![0; 1 << 20];
        let start = self.filled;
        while self.filled < end {
            let chunk = (end - self.filled).min(zeros.len() as u64) as usize;
            match self.file.write_at(&zeros[..chunk], self.filled) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.filled += k as u64,
            }
        }
        if self.filled > start && self.file.sync_data().is_err() {
            // Whatever the zeros' state, the records' sync will tell.
            self.filled = start;
        }
    }
}

/// The log the writer appends to: its directory, the size past which
/// it starts a new segment, and the files it may start one in.
struct Log<'a> {
    dir: &'a Path,
    segment_bytes: u64,
    spares: &'a Spares,
}

fn write_loop(
    log: &Log<'_>,
    mut segment: Segment,
    rx: mpsc::Receiver<Pending>,
    apply: mpsc::SyncSender<Apply>,
    progress: &Progress,
    budget: &Budget,
) {
    let mut heads = Vec::new();
    // After a failed write the segment may end in a partial record: no
    // record goes after it.
    let mut spoiled = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            let Ok(p) = rx.try_recv() else { break };
            bytes += p.copy.size();
            batch.push(p);
        }
        if spoiled || segment.len >= log.segment_bytes {
            match Segment::create(log.dir, segment.seq + 1, log.spares) {
                Ok(s) => {
                    segment = s;
                    spoiled = false;
                }
                Err(e) => tracing::error!(error = %e, "delivery journal: new segment"),
            }
        }
        let written = if spoiled {
            Err(io::Error::other(
                "the delivery journal cannot start a new segment",
            ))
        } else {
            append(&mut segment, &mut heads, &batch)
        };
        match written {
            Ok(()) => {
                for p in batch {
                    budget.take(p.copy.size());
                    let applied = apply.send(Apply {
                        segment: segment.seq,
                        copy: p.copy,
                    });
                    let _ = p.done.send(applied.map_err(|_| closed()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery journal: write");
                spoiled = true;
                progress.settle(batch.len());
                for p in batch {
                    let _ = p.done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}

/// Appends the records of `batch` to `segment` and makes them durable.
fn append(segment: &mut Segment, heads: &mut Vec<u8>, batch: &[Pending]) -> io::Result<()> {
    // The records' heads in one buffer, each followed by its copy's
    // bytes where they are (one vectored write, no copy).
    heads.clear();
    let mut ends = Vec::with_capacity(batch.len());
    for p in batch {
        let c = &p.copy;
        encode_head(
            heads,
            segment.seq,
            c.dir.as_os_str().as_bytes(),
            &encode_naming(&c.naming),
            &[&c.prefix, &c.body],
        );
        ends.push(heads.len());
    }
    let mut slices = Vec::with_capacity(batch.len() * 3);
    let mut start = 0;
    for (p, &end) in batch.iter().zip(&ends) {
        slices.push(IoSlice::new(&heads[start..end]));
        slices.push(IoSlice::new(&p.copy.prefix));
        slices.push(IoSlice::new(&p.copy.body));
        start = end;
    }
    let len = slices.iter().map(|s| s.len() as u64).sum();
    segment.prefill(len);
    segment.file.seek(io::SeekFrom::Start(segment.len))?;
    write_all_vectored(&mut segment.file, &mut slices)?;
    segment.file.sync_data()?;
    segment.len += len;
    Ok(())
}

fn apply_loop(
    dir: &Path,
    first: u64,
    rx: mpsc::Receiver<Apply>,
    progress: &Progress,
    budget: &Budget,
    spares: &Spares,
) {
    yield_to_sessions();
    let mut oldest = first;
    // Each writer's own temporary directory (see maildir::deliver_seen).
    let tmps: Vec<PathBuf> = (0..APPLY_THREADS)
        .map(|i| dir.join(format!("tmp{i}")))
        .collect();
    for t in &tmps {
        if let Err(e) = fs::create_dir_all(t) {
            tracing::error!(dir = %t.display(), error = %e, "delivery journal: temporary directory");
        }
    }
    while let Ok(first) = rx.recv() {
        let backlog = gather(first, &rx);
        for batch in backlog.chunks(APPLY_BATCH) {
            // Every copy of the older segments is in its mailbox.
            let retiring = oldest < batch[0].segment;
            while oldest < batch[0].segment {
                spares.retire(oldest);
                oldest += 1;
            }
            // Durably out of the log: after a power loss, a segment back
            // under its name would bring back copies their reader may
            // have deleted since.
            if retiring && let Err(e) = maildir::sync_dir(dir) {
                tracing::warn!(error = %e, "delivery journal: sync the log's directory");
            }
            // Writers in parallel: their fsyncs overlap, and each makes
            // the names it linked durable with one fsync of each new/ it
            // wrote to (shared with a concurrent one, see maildir).
            let per_thread = batch.len().div_ceil(APPLY_THREADS);
            std::thread::scope(|scope| {
                let mut chunks = batch.chunks(per_thread).zip(&tmps);
                let mine = chunks.next();
                for (chunk, tmp) in chunks {
                    scope.spawn(move || apply_all(tmp, chunk));
                }
                if let Some((chunk, tmp)) = mine {
                    apply_all(tmp, chunk);
                }
            });
            budget.give(batch.iter().map(|a| a.copy.size()).sum());
            progress.settle(batch.len());
        }
    }
    // The writer is gone and every copy is in its mailbox.
    for seq in segments(dir).unwrap_or_default() {
        spares.retire(seq);
    }
    maildir::sync_dir(dir).ok();
}

/// The copies to write next, from `first` on: while the sessions keep
/// logging copies, making files in mailboxes would slow their replies
/// (it competes for the disk and the processor), so the writers wait for
/// a pause of [`APPLY_QUIET`], within the bounds of [`APPLY_HOLD`] and
/// [`APPLY_BACKLOG`].
fn gather(first: Apply, rx: &mpsc::Receiver<Apply>) -> Vec<Apply> {
    let since = Instant::now();
    let mut bytes = first.copy.size();
    let mut backlog = vec![first];
    while backlog.len() < APPLY_BACKLOG && bytes < APPLY_BACKLOG_BYTES {
        let left = APPLY_HOLD.saturating_sub(since.elapsed());
        match rx.recv_timeout(APPLY_QUIET.min(left)) {
            Ok(a) => {
                bytes += a.copy.size();
                backlog.push(a);
            }
            Err(_) => break,
        }
    }
    backlog
}

/// Lowers the calling thread's CPU priority by [`APPLY_NICENESS`]; the
/// threads it starts inherit it.
fn yield_to_sessions() {
    use rustix::process::{getpriority_process, setpriority_process};
    let me = Some(rustix::thread::gettid());
    let nice = getpriority_process(me).unwrap_or(0);
    if let Err(e) = setpriority_process(me, (nice + APPLY_NICENESS).min(19)) {
        tracing::warn!(error = %e, "delivery journal: cannot lower the mailbox writers' priority");
    }
}

/// Writes `copies` into their mailboxes (their files made in `tmp`),
/// then makes their names durable, one directory fsync per mailbox:
/// until the batch is settled the log still holds them.
fn apply_all(tmp: &Path, copies: &[Apply]) {
    let own_tmp = tmp.is_dir();
    let mut dirs: Vec<&Path> = Vec::new();
    for a in copies {
        let c = &a.copy;
        let name = c.naming.name(&c.body);
        let parts: &[&[u8]] = &[&c.prefix, &c.body];
        let tmp = match own_tmp {
            true => tmp.to_path_buf(),
            false => c.dir.join("tmp"),
        };
        let seen = |n: &str| maildir::in_cur(&c.dir, n);
        retry(&c.dir, || {
            maildir::deliver_seen(&tmp, &c.dir, &name, parts, &seen, maildir::Entry::Deferred)
        });
        if !dirs.contains(&c.dir.as_path()) {
            dirs.push(&c.dir);
        }
    }
    for dir in dirs {
        retry(dir, || maildir::sync_new(dir));
    }
}

/// Runs `write` until it works: the copy is safe in the log meanwhile
/// (a full disk, say, is waited out).
fn retry<T>(dir: &Path, mut write: impl FnMut() -> io::Result<T>) {
    let mut wait = Duration::from_millis(100);
    while let Err(e) = write() {
        tracing::error!(dir = %dir.display(), error = %e, "delivery journal: mailbox write failed, retrying");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Writes every byte of `slices` (the standard library's
/// `write_all_vectored` is not stable yet).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn remove_segment(dir: &Path, seq: u64) {
    match fs::remove_file(segment_path(dir, seq)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(error = %e, seq, "delivery journal: remove segment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scop_mta::journal::{encode_into, encode_v1_into};

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "scop-journal-{tag}-{}-{}",
            std::process::id(),
            crate::queue_id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn new_files(mailbox: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(mailbox.join("new"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_reach_their_mailboxes_and_the_log_empties() {
        let root = temp("apply");
        let (j, found) = Journal::open(&root.join("journal")).unwrap();
        assert_eq!(found, Recovered::default());
        let a = root.join("a@t.test").join("Maildir");
        let b = root.join("b@t.test").join("Maildir");
        let mut waits = Vec::new();
        for i in 0..200 {
            let dir = if i % 2 == 0 { &a } else { &b };
            let body = Arc::new(format!("Subject: {i}\r\n\r\nbody\r\n").into_bytes());
            waits.push(j.submit(
                dir.clone(),
                Naming::Fixed(format!("{i:04}.name.host")),
                b"Return-Path: <>\r\n".to_vec(),
                body,
            ));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert!(j.drain(Duration::from_secs(20)));
        assert_eq!(new_files(&a).len(), 100);
        assert_eq!(new_files(&b).len(), 100);
        assert_eq!(
            fs::read(a.join("new").join("0004.name.host")).unwrap(),
            b"Return-Path: <>\r\nSubject: 4\r\n\r\nbody\r\n"
        );
        // A copy a reader moved to cur/ is seen by a live delivery of the
        // same message.
        let seen = a.join("cur").join("0004.name.host:2,S");
        fs::rename(a.join("new").join("0004.name.host"), &seen).unwrap();
        j.submit(
            a.clone(),
            Naming::Fixed("0004.name.host".into()),
            b"Return-Path: <>\r\n".to_vec(),
            Arc::new(b"Subject: 4\r\n\r\nbody\r\n".to_vec()),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(j.drain(Duration::from_secs(20)));
        assert_eq!(new_files(&a).len(), 99);
        assert!(seen.exists());
        j.close();
        assert!(segments(&root.join("journal")).unwrap().is_empty());
        fs::remove_dir_all(root).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_reach_their_mailboxes_while_sessions_go_on() {
        let root = temp("hold");
        let (j, _) = Journal::open(&root.join("journal")).unwrap();
        let a = root.join("a@t.test").join("Maildir");
        // A copy logged every millisecond (on a fast disk) never leaves
        // the writers a pause of APPLY_QUIET: they start anyway after
        // APPLY_HOLD.
        let start = std::time::Instant::now();
        let mut i = 0;
        while new_files(&a).is_empty() {
            assert!(
                start.elapsed() < APPLY_HOLD * 10,
                "no copy in its mailbox after {:?} of sessions",
                start.elapsed()
            );
            let body = Arc::new(format!("Subject: {i}\r\n\r\nbody\r\n").into_bytes());
            let done = j.submit(
                a.clone(),
                Naming::Fixed(format!("{i:06}.name.host")),
                Vec::new(),
                body,
            );
            done.await.unwrap().unwrap();
            i += 1;
            tokio::time::sleep(APPLY_QUIET / 5).await;
        }
        assert!(j.drain(Duration::from_secs(20)));
        assert_eq!(new_files(&a).len(), i);
        j.close();
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn the_writers_wait_for_a_pause_within_bounds() {
        let copy = |i: usize| Apply {
            segment: 1,
            copy: Copy {
                dir: PathBuf::from("/nonexistent"),
                naming: Naming::Fixed(format!("{i}.name.host")),
                prefix: Vec::new(),
                body: Arc::new(vec![b'x'; 100]),
            },
        };
        // Copies keep coming, each before APPLY_QUIET is up: the batch
        // ends at APPLY_HOLD.
        let (tx, rx) = mpsc::channel();
        let feeder = std::thread::spawn(move || {
            for i in 0.. {
                if tx.send(copy(i)).is_err() {
                    break;
                }
                std::thread::sleep(APPLY_QUIET / 2);
            }
        });
        let start = Instant::now();
        let batch = gather(rx.recv().unwrap(), &rx);
        // (Sooner if the feeder is held up for APPLY_QUIET.)
        let took = start.elapsed();
        assert!(took < APPLY_HOLD * 3 / 2, "{took:?}");
        assert!(batch.len() < APPLY_BACKLOG, "{}", batch.len());
        drop(rx);
        feeder.join().unwrap();

        // A pause ends it at once.
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            tx.send(copy(i)).unwrap();
        }
        let start = Instant::now();
        let batch = gather(rx.recv().unwrap(), &rx);
        assert_eq!(batch.len(), 3);
        assert!(start.elapsed() < APPLY_HOLD / 2, "{:?}", start.elapsed());

        // So does a full backlog.
        let (tx, rx) = mpsc::channel();
        for i in 0..APPLY_BACKLOG + 5 {
            tx.send(copy(i)).unwrap();
        }
        assert_eq!(gather(rx.recv().unwrap(), &rx).len(), APPLY_BACKLOG);
        assert_eq!(rx.try_iter().count(), 5);
        drop(tx);
    }

    #[test]
    fn namings_survive_the_log() {
        for n in [
            Naming::Fixed("1.P2Q3.host".into()),
            Naming::Content {
                recipients: vec!["a@t.test".into(), "B@t.test".into()],
                host: "mail.t.test".into(),
            },
            Naming::Content {
                recipients: vec![],
                host: "h".into(),
            },
        ] {
            assert_eq!(decode_naming(&encode_naming(&n)), Some(n));
        }
        for bad in ["", "=", "=a/b", "x", "=a\nb"] {
            assert_eq!(decode_naming(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn copies_held_in_memory_are_bounded() {
        let budget = Arc::new(Budget::default());
        budget.take(MAX_UNAPPLIED_BYTES - 10);
        let waiting = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(100))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiting.is_finished(), "100 more bytes do not fit");
        budget.give(MAX_UNAPPLIED_BYTES - 10);
        waiting.join().unwrap();
        // Nothing held: a copy larger than the bound still goes.
        budget.give(100);
        budget.take(MAX_UNAPPLIED_BYTES * 2);
    }

    /// Set in the child process of
    /// `a_refused_write_loses_nothing_and_the_log_goes_on`: the directory
    /// it works in.
    const REFUSED_WRITE_CHILD: &str = "SCOP_JOURNAL_REFUSED_WRITE_CHILD";

    /// A write the file system refuses: the child process runs under a
    /// file size limit (`ulimit -f`, SIGXFSZ ignored), so the segment
    /// stops growing with a record cut short. The copies of that batch are
    /// refused (none acknowledged), the writer goes on in a new segment,
    /// and after the child dies without closing its journal, recovery
    /// puts every acknowledged copy in the mailbox once and no refused
    /// one.
    #[test]
    fn a_refused_write_loses_nothing_and_the_log_goes_on() {
        if let Some(root) = std::env::var_os(REFUSED_WRITE_CHILD) {
            return refused_write_child(Path::new(&root));
        }
        let root = temp("refused");
        let name = "journal::tests::a_refused_write_loses_nothing_and_the_log_goes_on";
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" --exact \"$1\" --nocapture")
            .arg(std::env::current_exe().unwrap())
            .arg(name)
            .env(REFUSED_WRITE_CHILD, &root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = fs::read_to_string(root.join("report")).unwrap();
        let (acked, refused) = report.split_once('\n').unwrap();
        let acked: Vec<String> = acked.split_whitespace().map(String::from).collect();
        let refused: Vec<&str> = refused.split_whitespace().collect();
        assert!(!refused.is_empty(), "no write was refused");
        let first_refused: usize = refused[0].split('.').next().unwrap().parse().unwrap();
        assert!(
            acked
                .iter()
                .any(|n| n.split('.').next().unwrap().parse::<usize>().unwrap() > first_refused),
            "nothing acknowledged after the refused write"
        );
        // (The segment with the cut record may be gone already: its
        // whole records were applied before the child's exit.)
        let (j, _) = Journal::open(&root.join("journal")).unwrap();
        drop(j);
        let mut want = acked.clone();
        want.sort();
        assert_eq!(new_files(&root.join("m@t.test").join("Maildir")), want);
        fs::remove_dir_all(root).ok();
    }

    /// The child's side: copies one at a time until past a refused
    /// write, a report of what was acknowledged, then an exit that
    /// leaves the journal as a crash would.
    fn refused_write_child(root: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (j, _) = Journal::open(&root.join("journal")).unwrap();
        let mailbox = root.join("m@t.test").join("Maildir");
        let (mut acked, mut refused) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let name = format!("{i:04}.P1Q1.host");
            let body =
                Arc::new(format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(1000)).into_bytes());
            let wait = j.submit(
                mailbox.clone(),
                Naming::Fixed(name.clone()),
                Vec::new(),
                body,
            );
            match rt.block_on(wait).unwrap() {
                Ok(()) => acked.push(name),
                Err(_) => refused.push(name),
            }
            if !refused.is_empty() && acked.len() > refused.len() + 80 {
                break;
            }
        }
        let report = format!("{}\n{}\n", acked.join(" "), refused.join(" "));
        fs::write(root.join("report"), report).unwrap();
        std::process::exit(0);
    }

    /// The nice values of this process's threads called `name`.
    fn nice_of_threads(name: &str) -> Vec<i32> {
        fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
            .filter_map(|t| {
                let stat = fs::read_to_string(t.path().join("stat")).ok()?;
                // Fields after the command's closing parenthesis start
                // at the third; the nice value is the nineteenth.
                let after = &stat[stat.rfind(')')? + 2..];
                after.split(' ').nth(16)?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn the_mailbox_writers_yield_to_the_sessions() {
        let root = temp("nice");
        let (j, _) = Journal::open(&root).unwrap();
        let mine = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let want = (mine + APPLY_NICENESS).min(19);
        // The log's writer, which the replies wait for, keeps its place.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(nice_of_threads("journal-apply").contains(&want)
            && nice_of_threads("journal-writer").contains(&mine))
        {
            // (A thread takes its name once it runs.)
            assert!(
                std::time::Instant::now() < deadline,
                "writers {:?}, log {:?}: want {want} and {mine}",
                nice_of_threads("journal-apply"),
                nice_of_threads("journal-writer")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        j.close();
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_second_process_is_kept_out() {
        let root = temp("lock");
        let (_j, _) = Journal::open(&root).unwrap();
        let err = Journal::open(&root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        fs::remove_dir_all(root).ok();
    }

    /// What a crash leaves: copies in the log, some already in their
    /// mailbox (one moved to cur/ by a reader), one whose name another
    /// message holds, one named by its content, a record whose name field
    /// is unknown, and a record cut short (then the zeros ahead of records).
    #[test]
    fn recovery_writes_each_logged_copy_once() {
        let root = temp("recover");
        let jdir = root.join("journal");
        fs::create_dir_all(&jdir).unwrap();
        let mailbox = root.join("c@t.test").join("Maildir");
        let dir = mailbox.as_os_str().as_bytes();
        let mut log = Vec::new();
        for i in 0..5 {
            let body = format!("message {i}\r\n");
            encode_into(
                &mut log,
                7,
                dir,
                &format!("={i}.M{i}.host"),
                body.as_bytes(),
            );
        }
        let content = Naming::Content {
            recipients: vec!["c@t.test".into()],
            host: "host".into(),
        };
        let message = b"Message-ID: <x@t.test>\r\nSubject: s\r\n\r\nbody\r\n";
        let content_name = content.name(message);
        encode_into(&mut log, 7, dir, &encode_naming(&content), message);
        encode_into(&mut log, 7, dir, "?", b"x");
        let whole = log.len();
        encode_into(&mut log, 7, dir, "=9.M9.host", b"cut");
        log.truncate(whole + 10);
        // Zeros the writer put ahead of its records are not counted.
        log.resize(log.len() + 4096, 0);
        fs::write(segment_path(&jdir, 7), &log).unwrap();
        // A segment of a version before segment numbers.
        let mut old = Vec::new();
        encode_v1_into(&mut old, dir, "=5.M5.host", b"message 5\r\n");
        fs::write(segment_path(&jdir, 6), &old).unwrap();
        // A writer's file the crash left half written.
        fs::create_dir_all(jdir.join("tmp1")).unwrap();
        fs::write(jdir.join("tmp1").join("2.M2.host.P1Q1"), b"mess").unwrap();
        // 0 is already in new/, 1 was read and moved to cur/.
        maildir::deliver(&mailbox, "0.M0.host", b"message 0\r\n").unwrap();
        fs::write(mailbox.join("cur").join("1.M1.host:2,S"), b"message 1\r\n").unwrap();
        // Another message a reader moved to cur/ holds 3's name.
        fs::write(mailbox.join("cur").join("3.M3.host:2,S"), b"another\r\n").unwrap();

        let (j, found) = Journal::open(&jdir).unwrap();
        assert_eq!(
            found,
            Recovered {
                written: 6,
                present: 2,
                torn_bytes: 10,
                renamed: 1,
            }
        );
        let mut want = vec![
            "0.M0.host".to_string(),
            "2.M2.host".into(),
            "3.M3_1.host".into(),
            "4.M4.host".into(),
            "5.M5.host".into(),
            content_name.clone(),
        ];
        want.sort();
        // The record whose name field is unknown is there under a new name.
        let mut have = new_files(&mailbox);
        let renamed = have.iter().position(|n| n.ends_with(".journal")).unwrap();
        let renamed = have.remove(renamed);
        assert_eq!(fs::read(mailbox.join("new").join(renamed)).unwrap(), b"x");
        assert_eq!(have, want);
        assert_eq!(
            fs::read(mailbox.join("new").join(&content_name)).unwrap(),
            message
        );
        // The old segment is gone; numbering goes on after it.
        assert_eq!(segments(&jdir).unwrap(), vec![8]);
        assert_eq!(fs::read_dir(jdir.join("tmp1")).unwrap().count(), 0);
        drop(j);
        assert!(segments(&jdir).unwrap().is_empty());
        fs::remove_dir_all(root).ok();
    }

    /// A segment's file is kept and taken by a later segment; what a
    /// crash leaves in it then is that segment's copies alone, not the
    /// older ones it was written over (a reader deleted those).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reused_segment_file_replays_only_its_new_copies() {
        let root = temp("reuse");
        let jdir = root.join("journal");
        let mailbox = root.join("d@t.test").join("Maildir");
        let copy = |j: &Journal, name: &str| {
            j.submit(
                mailbox.clone(),
                Naming::Fixed(name.into()),
                b"Return-Path: <>\r\n".to_vec(),
                Arc::new(format!("Subject: {name}\r\n\r\nbody\r\n").into_bytes()),
            )
        };
        let (j, _) = Journal::open(&jdir).unwrap();
        for i in 0..3 {
            copy(&j, &format!("{i}.old.host")).await.unwrap().unwrap();
        }
        drop(j);
        assert!(segments(&jdir).unwrap().is_empty());
        assert_eq!(numbered(&jdir, ".spare").unwrap(), vec![0]);
        for name in new_files(&mailbox) {
            fs::remove_file(mailbox.join("new").join(name)).unwrap();
        }

        let (j, found) = Journal::open(&jdir).unwrap();
        assert_eq!(found, Recovered::default());
        assert_eq!(segments(&jdir).unwrap(), vec![1]);
        assert!(numbered(&jdir, ".spare").unwrap().is_empty());
        // The file is the spare's: zero-filled by segment 0, then its
        // records at the start.
        let reused = segment_path(&jdir, 1);
        assert!(fs::metadata(&reused).unwrap().len() >= PREFILL_BYTES);
        copy(&j, "n.new.host").await.unwrap().unwrap();
        // What a crash now leaves: this file as it is.
        let left = root.join("left");
        fs::create_dir_all(&left).unwrap();
        fs::copy(&reused, segment_path(&left, 1)).unwrap();
        let old = fs::read(&reused).unwrap();
        assert!(old.windows(12).any(|w| w == b"2.old.host\r\n"));
        assert!(j.drain(Duration::from_secs(20)));
        drop(j);
        fs::remove_file(mailbox.join("new").join("n.new.host")).unwrap();

        let (j, found) = Journal::open(&left).unwrap();
        assert_eq!(
            found,
            Recovered {
                written: 1,
                ..Recovered::default()
            }
        );
        assert_eq!(new_files(&mailbox), vec!["n.new.host".to_string()]);
        // Numbering goes on above every file's.
        assert_eq!(segments(&left).unwrap(), vec![2]);
        drop(j);
        fs::remove_dir_all(root).ok();
    }
}
