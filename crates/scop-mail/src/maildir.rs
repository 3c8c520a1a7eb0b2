//! Durable Maildir delivery: write to `tmp/`, fsync the file, rename into
//! `new/`, fsync the directory. Only after that does a delivery count as
//! done (the 250 to the client waits for it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    let host: String = host
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    format!("{now}.P{}Q{n}.{host}", std::process::id())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Delivers `msg` into the Maildir at `dir` (created if missing) under
/// `name`; returns the final path. Blocking: call from a blocking task.
pub fn deliver(dir: &Path, name: &str, msg: &[u8]) -> io::Result<PathBuf> {
    let tmp = dir.join("tmp");
    let new = dir.join("new");
    for d in [&tmp, &new, &dir.join("cur")] {
        if !d.is_dir() {
            fs::create_dir_all(d)?;
            if let Some(parent) = d.parent() {
                sync_dir(parent)?;
            }
        }
    }
    let tmp_path = tmp.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)?;
    let written = f.write_all(msg).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        fs::remove_file(&tmp_path).ok();
        return Err(e);
    }
    drop(f);
    let final_path = new.join(name);
    fs::rename(&tmp_path, &final_path)?;
    sync_dir(&new)?;
    Ok(final_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new() {
        let root = std::env::temp_dir().join(format!("scop-maildir-{}", std::process::id()));
        let dir = mailbox_dir(&root, "bob@b.test").unwrap();
        let name = unique_name(1, "host");
        let p = deliver(&dir, &name, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        assert!(p.starts_with(dir.join("new")));
        assert_eq!(fs::read(&p).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert!(unique_name(1, "host") != name);
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
