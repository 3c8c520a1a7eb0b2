//! `scop up` and `scop status`: the supervisor of a deployment made by
//! `scop init`.
//!
//! Each compartment runs as its own process of this same binary (a `scop
//! ... serve` subcommand built from `scop.toml`), with its output appended
//! to `logs/<name>.log`. A compartment that exits is started again after a
//! delay that doubles from one second up to a minute, and falls back to one
//! second once it has run for a minute. SIGTERM or SIGINT stops the
//! supervisor: it sends SIGTERM to every compartment, waits up to ten
//! seconds, then kills what is left. The supervisor's view is kept in
//! `run/status.json`, which `scop status` reads.
//!
//! When `scop.toml` has an `[acme]` section, a thread of the supervisor
//! keeps the public certificate from the ACME CA: at start and then every
//! twelve hours it renews a certificate that is self-signed, names the
//! wrong host or expires within 30 days (`scop tls acme`'s issuance), and
//! restarts the compartments that serve it. A failed renewal is logged
//! and tried again an hour later; it never stops the supervisor.

use crate::config::{self, Config};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options of `scop up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
    /// Try SCoP on this machine: when DIR holds no deployment, make one
    /// for the test domain scop.test on loopback ports (MX 2525,
    /// submission 2587 and 2465, DNS 2053) with the account you@scop.test;
    /// then print the endpoints and a swaks command that sends a message.
    #[arg(long)]
    local: bool,
}

/// Options of `scop status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
}

/// First restart delay.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A compartment that ran this long restarts after [`BACKOFF_MIN`] again.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long compartments get to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the supervisor looks at its children.
const POLL: Duration = Duration::from_millis(100);
/// How often the certificate of an `[acme]` deployment is looked at.
const ACME_CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// When a renewal failed, the next try.
const ACME_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// One compartment: its name and the arguments of this binary that run it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    name: &'static str,
    args: Vec<OsString>,
}

/// What `run/status.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Status {
    supervisor: u32,
    updated: u64,
    compartments: Vec<CompartmentStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompartmentStatus {
    name: String,
    /// 0 when not running.
    pid: u32,
    state: State,
    restarts: u32,
    /// Unix time of the last start.
    since: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Running,
    Restarting,
    Stopped,
}

/// The compartments of `config`, with every path made absolute.
fn specs(dir: &Path, config: &Config) -> Vec<Spec> {
    let path = |p: &Path| config::resolve(dir, p).into_os_string();
    let s = |t: &str| OsString::from(t);
    let mut out = Vec::new();
    if let Some(dns) = &config.dns {
        let mut args = vec![s("dns"), s("serve"), s("--listen"), s(&dns.listen)];
        for zone in &dns.zones {
            args.extend([s("--zone"), path(zone)]);
        }
        args.extend([s("--journal"), path(&dns.journal)]);
        for key in &dns.tsig_keys {
            args.extend([s("--tsig-key"), path(key)]);
        }
        if let Some(policy) = &dns.policy {
            args.extend([s("--policy"), path(policy)]);
        }
        for n in &dns.notify {
            args.extend([s("--notify"), s(n)]);
        }
        if let Some(keys) = &dns.dnssec_keys {
            args.extend([s("--dnssec-keys"), path(keys)]);
        }
        // Confined once its files are read (the journal stays writable).
        args.push(s("--landlock"));
        args.extend(dns.extra_args.iter().map(OsString::from));
        out.push(Spec { name: "dns", args });
    }
    let m = &config.mail;
    let mut args = vec![
        s("mail"),
        s("serve"),
        s("--data"),
        path(&m.data),
        s("--hostname"),
        s(&config.hostname),
        s("--mx"),
        s(&m.mx),
        s("--submission"),
        s(&m.submission),
        s("--submissions"),
        s(&m.submissions),
        s("--tls-cert"),
        path(&m.tls_cert),
        s("--tls-key"),
        path(&m.tls_key),
    ];
    if let Some(store) = &m.store {
        args.extend([s("--store"), s(store)]);
    }
    if let Some(credentials) = &m.credentials {
        args.extend([s("--credentials"), path(credentials)]);
    }
    if let Some(mailboxes) = &m.mailboxes {
        args.extend([s("--mailboxes"), path(mailboxes)]);
    }
    if m.verify {
        args.push(s("--verify"));
    }
    for r in &m.resolvers {
        args.extend([s("--resolver"), s(r)]);
    }
    for z in &m.stub_zones {
        args.extend([s("--stub-zone"), s(z)]);
    }
    for t in &m.trust_anchors {
        args.extend([s("--trust-anchor"), path(t)]);
    }
    if let (Some(server), Some(key)) = (&m.dkim_publish, &m.dkim_tsig_key) {
        args.extend([s("--dkim-publish"), s(server)]);
        args.extend([s("--dkim-tsig-key"), path(key)]);
    }
    for r in &m.routes {
        args.extend([s("--route"), s(r)]);
    }
    for k in &m.dkim {
        let mut spec = OsString::from(format!("{}:{}:", config.domain, k.selector));
        spec.push(path(&k.key));
        args.extend([s("--dkim"), spec]);
    }
    args.extend(m.extra_args.iter().map(OsString::from));
    match &m.mesh {
        None => out.push(Spec { name: "mail", args }),
        Some(mesh) => {
            // One process per compartment: the same options for each (a
            // compartment reads only what its role needs), its role, and
            // the mesh.
            for role in crate::cmd_compartment::MAIL_ROLES {
                let mut a = args.clone();
                a.extend([s("--compartment"), s(role.name()), s("--mesh"), path(mesh)]);
                if let Some(base) = &m.mesh_base {
                    a.extend([s("--mesh-base"), s(base)]);
                }
                out.push(Spec {
                    name: role.name(),
                    args: a,
                });
            }
        }
    }
    out
}

struct Supervised {
    spec: Spec,
    child: Option<Child>,
    restarts: u32,
    started: Instant,
    since: u64,
    backoff: Duration,
    next_start: Option<Instant>,
}

pub fn up(args: UpArgs) -> Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolve {}", args.dir.display()))?;
    if args.local {
        prepare_local(&dir)?;
    }
    let config = Config::load(&dir)?;
    let exe = std::env::current_exe().context("find this program's path")?;
    for sub in ["logs", "run"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let status_path = dir.join("run/status.json");
    if let Some(pid) = live_supervisor(&status_path) {
        bail!("a supervisor (pid {pid}) already runs this deployment");
    }
    let stop = stop_on_signal()?;

    let mut children: Vec<Supervised> = specs(&dir, &config)
        .into_iter()
        .map(|spec| Supervised {
            spec,
            child: None,
            restarts: 0,
            started: Instant::now(),
            since: 0,
            backoff: BACKOFF_MIN,
            next_start: Some(Instant::now()),
        })
        .collect();
    eprintln!(
        "scop up: {} for {} ({}); logs in {}",
        children
            .iter()
            .map(|c| c.spec.name)
            .collect::<Vec<_>>()
            .join(", "),
        config.domain,
        dir.display(),
        dir.join("logs").display()
    );

    if config.acme.is_some() {
        keep_certificate(dir.clone(), stop.clone());
    }

    let mut changed = true;
    while !stop.load(Ordering::SeqCst) {
        for c in &mut children {
            if let Some(child) = &mut c.child {
                if let Some(exit) = child.try_wait()? {
                    let ran = c.started.elapsed();
                    if ran >= HEALTHY_AFTER {
                        c.backoff = BACKOFF_MIN;
                    }
                    let wait = c.backoff;
                    c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                    eprintln!(
                        "scop up: {} exited ({exit}) after {:.1} s; restarting in {} s",
                        c.spec.name,
                        ran.as_secs_f64(),
                        wait.as_secs()
                    );
                    c.child = None;
                    c.restarts += 1;
                    c.next_start = Some(Instant::now() + wait);
                    changed = true;
                }
            } else if c.next_start.is_some_and(|t| t <= Instant::now()) {
                if c.restarts > 0 {
                    // A restarted compartment runs with the current
                    // scop.toml (e.g. after `scop dkim rotate`).
                    match Config::load(&dir) {
                        Ok(config) => {
                            if let Some(spec) = specs(&dir, &config)
                                .into_iter()
                                .find(|s| s.name == c.spec.name)
                            {
                                c.spec = spec;
                            }
                        }
                        Err(e) => eprintln!(
                            "scop up: {e:#}; restarting {} with the configuration it had",
                            c.spec.name
                        ),
                    }
                }
                match spawn(&exe, &dir, &c.spec) {
                    Ok(child) => {
                        c.child = Some(child);
                        c.started = Instant::now();
                        c.since = crate::cmd_dns::now();
                        c.next_start = None;
                    }
                    Err(e) => {
                        eprintln!("scop up: cannot start {}: {e:#}", c.spec.name);
                        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                        c.next_start = Some(Instant::now() + c.backoff);
                    }
                }
                changed = true;
            }
        }
        if changed {
            write_status(&status_path, &children, std::process::id())?;
            changed = false;
        }
        std::thread::sleep(POLL);
    }

    eprintln!("scop up: stopping");
    for c in &mut children {
        if let Some(child) = &c.child {
            terminate(child.id());
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for c in &mut children {
        if let Some(mut child) = c.child.take() {
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    eprintln!("scop up: {} ignored SIGTERM; killing it", c.spec.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        c.next_start = None;
    }
    write_status(&status_path, &children, 0)?;
    eprintln!("scop up: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the thread that renews the public certificate of an `[acme]`
/// deployment (see the module documentation) until `stop` is set.
fn keep_certificate(dir: PathBuf, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut next = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if Instant::now() >= next {
                next = Instant::now() + renew_once(&dir);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Renews the certificate when it is due; returns when to look again.
fn renew_once(dir: &Path) -> Duration {
    let config = match Config::load(dir) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("scop up: acme: {e:#}; next try in an hour");
            return ACME_RETRY_AFTER;
        }
    };
    let Some(section) = &config.acme else {
        return ACME_CHECK_EVERY;
    };
    let Some(reason) = crate::cmd_tls::deployment_due(dir, &config, crate::cmd_dns::now()) else {
        return ACME_CHECK_EVERY;
    };
    eprintln!(
        "scop up: acme: {reason}; renewing from {}",
        section.directory
    );
    let request = crate::cmd_tls::Request::renewal(dir, section);
    match crate::cmd_tls::obtain(dir, &config, &request, &mut |line| {
        eprintln!("scop up: acme: {line}")
    }) {
        Ok(issued) => {
            let restarted = crate::cmd_tls::restart_public(dir, &config);
            eprintln!(
                "scop up: acme: new certificate for {}; restarting {}",
                issued.names.join(", "),
                if restarted.is_empty() {
                    "nothing (no compartment runs yet)".to_string()
                } else {
                    restarted.join(" and ")
                }
            );
            ACME_CHECK_EVERY
        }
        Err(e) => {
            eprintln!("scop up: acme: renewal failed: {e:#}; next try in an hour");
            ACME_RETRY_AFTER
        }
    }
}

fn spawn(exe: &Path, dir: &Path, spec: &Spec) -> Result<Child> {
    let log_path = dir.join("logs").join(format!("{}.log", spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let err = log.try_clone()?;
    Command::new(exe)
        .args(&spec.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {}", exe.display()))
}

/// A flag set by the first SIGTERM or SIGINT.
fn stop_on_signal() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (mut term, mut int) = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(t), Ok(i)) => (t, i),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
    });
    ready_rx
        .recv()
        .context("the signal thread ended")?
        .context("install the SIGTERM handler")?;
    Ok(stop)
}

fn terminate(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn write_status(path: &Path, children: &[Supervised], supervisor: u32) -> Result<()> {
    let status = Status {
        supervisor,
        updated: crate::cmd_dns::now(),
        compartments: children
            .iter()
            .map(|c| CompartmentStatus {
                name: c.spec.name.to_string(),
                pid: c.child.as_ref().map_or(0, Child::id),
                state: if c.child.is_some() {
                    State::Running
                } else if c.next_start.is_some() {
                    State::Restarting
                } else {
                    State::Stopped
                },
                restarts: c.restarts,
                since: c.since,
            })
            .collect(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&status)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_status(path: &Path) -> Result<Status> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
}

/// The pid of a supervisor recorded in `path` that still runs.
fn live_supervisor(path: &Path) -> Option<u32> {
    let status = read_status(path).ok()?;
    (status.supervisor != 0 && alive(status.supervisor)).then_some(status.supervisor)
}

/// `scop up --local`: makes the local test deployment when `dir` has
/// none, then prints how to use it.
fn prepare_local(dir: &Path) -> Result<()> {
    use crate::cmd_init::local;
    if !Config::path(dir).exists() {
        crate::cmd_init::init_local(dir)?;
        eprintln!(
            "scop up: made a local test deployment for {} in {}",
            local::DOMAIN,
            dir.display()
        );
    }
    let config = Config::load(dir)?;
    if config.domain != local::DOMAIN {
        bail!(
            "{} holds the deployment of {}; --local runs only its own test domain {} (use another --dir)",
            dir.display(),
            config.domain,
            local::DOMAIN
        );
    }
    let password_file = dir.join(local::PASSWORD_FILE);
    let password = std::fs::read_to_string(&password_file)
        .with_context(|| format!("read {}", password_file.display()))?;
    let password = password.trim();
    let login = format!("{}@{}", local::USER, local::DOMAIN);
    let (host, port) = local::SUBMISSIONS
        .rsplit_once(':')
        .context("submissions address")?;
    let root = match &config.mail.mailboxes {
        Some(m) => config::resolve(dir, m),
        None => config::resolve(dir, &config.mail.data).join("mail"),
    };
    let maildir = root.join(format!("{login}/Maildir/new"));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "SCoP runs {} locally (deployment in {}):",
        local::DOMAIN,
        dir.display()
    )?;
    writeln!(
        out,
        "  submission, implicit TLS  {}   login {login}  password {password}",
        local::SUBMISSIONS
    )?;
    writeln!(out, "  submission, STARTTLS      {}", local::SUBMISSION)?;
    writeln!(out, "  MX                        {}", local::MX)?;
    let (dns_host, dns_port) = local::DNS.rsplit_once(':').context("DNS address")?;
    writeln!(
        out,
        "  DNS, signed zone          {}   dig @{dns_host} -p {dns_port} +dnssec {} MX",
        local::DNS,
        local::DOMAIN
    )?;
    writeln!(
        out,
        "Send yourself a message (the TLS certificate is self-signed):"
    )?;
    writeln!(
        out,
        "  swaks --server {host} --port {port} --tls-on-connect --auth PLAIN --auth-user {login} --auth-password {password} --from {login} --to {login}"
    )?;
    writeln!(out, "Read it in {}", maildir.display())?;
    writeln!(
        out,
        "Stop with Ctrl-C; logs are in {}.",
        dir.join("logs").display()
    )?;
    out.flush()?;
    Ok(())
}

/// Stops those of the compartments `names` that run under the running
/// supervisor of `dir`, which starts them again with the current
/// configuration: each named compartment's name, its pid before, and
/// whether it was stopped. None when no supervisor runs.
fn stop_for_restart(dir: &Path, names: &[&str]) -> Option<Vec<(String, u32, bool)>> {
    let status = read_status(&dir.join("run/status.json")).ok()?;
    if status.supervisor == 0 || !alive(status.supervisor) {
        return None;
    }
    let named = status
        .compartments
        .into_iter()
        .filter(|c| names.contains(&c.name.as_str()))
        .map(|c| {
            let running = c.pid != 0 && alive(c.pid);
            if running {
                terminate(c.pid);
            }
            (c.name, c.pid, running)
        })
        .collect();
    Some(named)
}

/// Asks the running supervisor of `dir` to restart compartment `name`
/// (by stopping it; the supervisor starts it again with the current
/// configuration). False when no supervisor or no such running
/// compartment.
pub(crate) fn restart_compartment(dir: &Path, name: &str) -> bool {
    stop_for_restart(dir, &[name]).is_some_and(|s| s.iter().any(|(_, _, stopped)| *stopped))
}

/// Asks the running supervisor of `dir` to restart the compartments
/// `names` (all at once) and waits, up to `limit`, until each runs again
/// under a new pid. False when no supervisor runs.
pub(crate) fn restart_and_wait(dir: &Path, names: &[&str], limit: Duration) -> Result<bool> {
    let Some(old) = stop_for_restart(dir, names) else {
        return Ok(false);
    };
    let path = dir.join("run/status.json");
    let deadline = Instant::now() + limit;
    loop {
        let now = read_status(&path)?;
        let waiting: Vec<&str> = old
            .iter()
            .filter(|(name, pid, _)| {
                !now.compartments.iter().any(|c| {
                    &c.name == name
                        && c.pid != 0
                        && c.pid != *pid
                        && c.state == State::Running
                        && alive(c.pid)
                })
            })
            .map(|(name, _, _)| name.as_str())
            .collect();
        if waiting.is_empty() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not run again within {} s (see {})",
                waiting.join(", "),
                limit.as_secs(),
                dir.join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `scop status`: exit 0 when the supervisor and every compartment run,
/// 1 when something is down, 3 when no supervisor runs.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    Config::load(dir)?;
    let path = dir.join("run/status.json");
    let Ok(status) = read_status(&path) else {
        println!(
            "supervisor  not running (never started: no {})",
            path.display()
        );
        return Ok(ExitCode::from(3));
    };
    let now = crate::cmd_dns::now();
    let supervisor_up = status.supervisor != 0 && alive(status.supervisor);
    if supervisor_up {
        println!("supervisor  pid {:<7} running", status.supervisor);
    } else {
        println!("supervisor  not running");
    }
    let mut all_up = supervisor_up;
    for c in &status.compartments {
        let running = supervisor_up && c.state == State::Running && alive(c.pid);
        all_up &= running;
        let state = match (running, supervisor_up, c.state) {
            (true, _, _) => "running",
            (false, true, State::Restarting) => "restarting",
            _ => "stopped",
        };
        let up_for = if running {
            format!("  up {}", human(now.saturating_sub(c.since)))
        } else {
            String::new()
        };
        println!(
            "{:<11} pid {:<7} {state:<10} restarts {}{up_for}",
            c.name, c.pid, c.restarts
        );
    }
    Ok(if !supervisor_up {
        ExitCode::from(3)
    } else if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DkimKey, DnsSection, MailSection};

    #[test]
    fn specs_follow_the_config() {
        let config = Config {
            domain: "example.org".into(),
            hostname: "mail.example.org".into(),
            addresses: vec![],
            mail: MailSection {
                data: "data".into(),
                store: None,
                credentials: Some("credentials/passwords.db".into()),
                mailboxes: None,
                mx: "127.0.0.1:2525".into(),
                submission: "off".into(),
                submissions: "127.0.0.1:4650".into(),
                tls_cert: "tls/cert.pem".into(),
                tls_key: "/etc/key.pem".into(),
                verify: true,
                resolvers: vec!["127.0.0.1:5353".into()],
                stub_zones: vec!["example.org=127.0.0.1:5353".into()],
                trust_anchors: vec!["keys/dnssec".into()],
                routes: vec![],
                dkim: vec![DkimKey {
                    selector: "e202611".into(),
                    key: "keys/dkim/e202611.pem".into(),
                }],
                dkim_publish: None,
                dkim_tsig_key: None,
                mesh: None,
                mesh_base: None,
                extra_args: vec!["--greeting-delay".into(), "0".into()],
            },
            dns: Some(DnsSection {
                listen: "127.0.0.1:5353".into(),
                zones: vec!["zones/example.org.zone".into()],
                journal: "data/dns".into(),
                tsig_keys: vec![],
                policy: Some("dns.policy".into()),
                notify: vec![],
                dnssec_keys: None,
                extra_args: vec![],
            }),
            acme: None,
        };
        let specs = specs(Path::new("/srv/scop"), &config);
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, ["dns", "mail"]);
        let text = |s: &Spec| {
            s.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(&specs[0]),
            "dns serve --listen 127.0.0.1:5353 --zone /srv/scop/zones/example.org.zone \
             --journal /srv/scop/data/dns --policy /srv/scop/dns.policy --landlock"
        );
        let mail = text(&specs[1]);
        assert!(mail.contains("--tls-cert /srv/scop/tls/cert.pem --tls-key /etc/key.pem"));
        assert!(mail.contains("--credentials /srv/scop/credentials/passwords.db"));
        assert!(mail.contains("--dkim example.org:e202611:/srv/scop/keys/dkim/e202611.pem"));
        assert!(mail.ends_with(
            "--verify --resolver 127.0.0.1:5353 \
             --stub-zone example.org=127.0.0.1:5353 --trust-anchor /srv/scop/keys/dnssec \
             --dkim example.org:e202611:/srv/scop/keys/dkim/e202611.pem --greeting-delay 0"
        ));
    }
}
