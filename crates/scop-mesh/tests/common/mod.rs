//! Shared fixtures for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use scop_mesh::{Ca, ExtraNames, Identity, Role, Validity};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// Valid from an hour ago for a day.
pub fn current() -> Validity {
    Validity::starting(SystemTime::now() - HOUR, DAY).expect("validity")
}

/// Ended yesterday.
pub fn expired() -> Validity {
    let now = SystemTime::now();
    Validity::new(now - 2 * DAY, now - DAY).expect("validity")
}

pub fn new_ca() -> Ca {
    Ca::create(Validity::starting(SystemTime::now() - HOUR, 30 * DAY).expect("validity"))
        .expect("CA")
}

pub fn issue(ca: &Ca, role: Role) -> Identity {
    ca.issue(role, current(), &ExtraNames::none())
        .expect("issue")
}

/// A fresh, empty directory under the test target directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "scop-mesh-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
