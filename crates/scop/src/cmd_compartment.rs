//! `scop mail serve --compartment ROLE`: one compartment of the bottle in
//! its own process. The inbound chain is mx -> spamfilter -> verifier ->
//! delivery, the outbound one submission -> signer -> relay; each hop is
//! SMTP over mesh mTLS, and each process loads only what its role needs:
//!
//! | role       | reads                                         |
//! |------------|-----------------------------------------------|
//! | mx         | store (recipients), SRS key, public TLS key   |
//! | spamfilter | spam model                                    |
//! | verifier   | resolver settings                             |
//! | delivery   | store, mailboxes, SRS key                     |
//! | submission | store (accounts), public TLS key              |
//! | signer     | DKIM keys, TSIG key                           |
//! | relay      | store (queue), mailboxes, SRS key             |
//! | resolver   | resolver settings and trust anchors           |
//!
//! Every process also reads its own mesh certificate and key. The relay
//! and the verifier ask the resolver compartment for DNS answers over the
//! mesh (`scop_mail::dns_hop`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use scop_mail::delivery::Delivery;
use scop_mail::hop::{self, NextHop};
use scop_mail::session::SessionConfig;
use scop_mesh::{MeshDir, MeshListener, Role};
use tokio::sync::{Notify, watch};

use crate::cmd_mail::{self as mail, ServeArgs};

/// How often the relay compartment looks at the queue for messages that
/// other processes put there (forwards, DSNs); the signer's hand-overs
/// wake it at once.
const RELAY_POLL: Duration = Duration::from_secs(1);

/// The mesh listener address of `role`: the base port plus its place.
pub(crate) fn mesh_addr(base: SocketAddr, role: Role) -> Option<SocketAddr> {
    let offset = match role {
        Role::Signer => 0,
        Role::Relay => 1,
        Role::Spamfilter => 2,
        Role::Verifier => 3,
        Role::Delivery => 4,
        Role::Resolver => 5,
        _ => return None,
    };
    let port = base.port().checked_add(offset)?;
    Some(SocketAddr::new(base.ip(), port))
}

/// The mail compartments, in the order `scop up` starts them (each after
/// the hop it sends to).
pub(crate) const MAIL_ROLES: [Role; 8] = [
    Role::Resolver,
    Role::Relay,
    Role::Signer,
    Role::Submission,
    Role::Delivery,
    Role::Verifier,
    Role::Spamfilter,
    Role::Mx,
];

struct Mesh {
    dir: MeshDir,
    base: SocketAddr,
}

impl Mesh {
    fn next(&self, me: Role, to: Role) -> Result<NextHop> {
        let addr = mesh_addr(self.base, to).context("mesh port out of range")?;
        NextHop::new(&self.dir, me, to, addr)
            .with_context(|| format!("mesh hop {me} -> {to} ({})", self.dir.root().display()))
    }

    /// DNS answers for compartment `me`, from the resolver compartment.
    fn dns(&self, me: Role) -> Result<scop_mail::mxlookup::Dns> {
        let addr = mesh_addr(self.base, Role::Resolver).context("mesh port out of range")?;
        scop_mail::mxlookup::Dns::over_mesh(&self.dir, me, addr)
            .map_err(|e| anyhow::anyhow!("mesh hop {me} -> resolver: {e}"))
    }

    /// Serves compartment `me`'s mesh listener with `handler`.
    async fn serve<H: scop_mail::session::Handler>(
        &self,
        me: Role,
        cfg: Arc<SessionConfig>,
        handler: H,
        stop: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let l = self.listen(me).await?;
        Ok(tokio::spawn(hop::serve(
            me,
            l,
            cfg,
            Arc::new(handler),
            stop,
        )))
    }

    async fn listen(&self, me: Role) -> Result<MeshListener> {
        let addr = mesh_addr(self.base, me).context("mesh port out of range")?;
        let identity = self
            .dir
            .load_identity(me)
            .with_context(|| format!("load the {me} certificate"))?;
        let trust = self.dir.load_trust().context("load the mesh CA")?;
        let l = MeshListener::bind_policy(addr, &identity, &trust)
            .await
            .with_context(|| format!("bind the {me} mesh listener on {addr}"))?;
        tracing::info!(%addr, accepts = ?me.accepted_clients(), "mesh listener");
        Ok(l)
    }
}

/// The delivery agent of a compartment; `journal` names its delivery
/// journal (for the compartments that write mailboxes).
async fn delivery(
    a: &ServeArgs,
    store: scop_store::Store,
    hostname: &str,
    journal: Option<&str>,
) -> Result<Delivery> {
    let journal = match journal.and_then(|name| mail::journal_dir(a, name)) {
        None => None,
        Some(dir) => Some(
            scop_mail::service::open_journal(dir.clone(), a.journal_segment_size)
                .await
                .with_context(|| format!("open the delivery journal {}", dir.display()))?,
        ),
    };
    Ok(Delivery {
        store,
        mail_root: mail::mail_root(a),
        hostname: hostname.to_string(),
        srs: Arc::new(scop_mail::srs::Srs::new(&mail::srs_key(&a.data)?)),
        lifetime_secs: a.queue_lifetime,
        queued: Arc::new(Notify::new()),
        journal,
    })
}

/// Runs compartment `role` until SIGINT or SIGTERM.
pub(crate) fn run(a: &ServeArgs, role: Role) -> Result<ExitCode> {
    if !MAIL_ROLES.contains(&role) {
        bail!(
            "--compartment {role}: not a mail compartment (one of mx, spamfilter, verifier, delivery, submission, signer, relay, resolver)"
        );
    }
    let Some(mesh_dir) = &a.mesh else {
        bail!("--compartment needs --mesh DIR");
    };
    let mesh = Mesh {
        dir: MeshDir::new(mesh_dir),
        base: a.mesh_base,
    };
    let hostname = a.hostname.clone().unwrap_or_else(mail::system_hostname);
    // What the confinement rules must find in place: the SRS key, the
    // mailboxes' root, the directory of a self-signed certificate.
    if matches!(role, Role::Mx | Role::Delivery | Role::Relay) {
        mail::srs_key(&a.data)?;
    }
    let mut dirs = Vec::new();
    if matches!(role, Role::Delivery | Role::Relay) {
        dirs.push(mail::mail_root(a));
    }
    if role == Role::Relay && !a.no_mta_sts {
        dirs.push(mail::mta_sts_dir(a));
    }
    if matches!(role, Role::Mx | Role::Submission) && (a.tls_cert.is_none() || a.tls_key.is_none())
    {
        dirs.push(a.data.join("tls"));
    }
    for d in dirs {
        std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    }
    // Confined before any thread starts: every later thread inherits it.
    if a.no_landlock {
        tracing::warn!(compartment = %role, "Landlock confinement off (--no-landlock)");
    } else {
        let plan = crate::confine::plan(a, role, &mesh.dir);
        let status = crate::confine::apply(&plan)?;
        tracing::info!(compartment = %role, landlock = crate::confine::describe(&status), "file access confined");
    }
    if let Some(path) = &a.confine_probe {
        if let Some(addr) = path.to_str().and_then(|p| p.strip_prefix("tcp:")) {
            let addr: SocketAddr = addr.parse().context("--confine-probe tcp:ADDR:PORT")?;
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(_) => println!("connectable {addr}"),
                Err(e) => println!("denied {addr}: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        crate::confine::probe_read(path);
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Runtime::new().context("start the async runtime")?;
    rt.block_on(async {
        let (stop, stop_rx) = watch::channel(false);
        let tasks = start(a, role, &mesh, &hostname, stop_rx).await?;
        tracing::info!(compartment = %role, %hostname, "running; SIGINT or SIGTERM stops it");
        mail::until_stopped().await?;
        stop.send(true).ok();
        for t in tasks {
            t.await.ok();
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn start(
    a: &ServeArgs,
    role: Role,
    mesh: &Mesh,
    hostname: &str,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let hop_cfg = hop::session_config(hostname, a.message_size);
    match role {
        Role::Mx => {
            let Some(addr) = mail::listen("mx", &a.mx)? else {
                bail!("the mx compartment needs --mx ADDR");
            };
            let tls = mail::public_tls(a, hostname)?;
            let store = mail::open_store(&mail::store_url(a)).await?;
            let mx = scop_mail::mx::Mx {
                delivery: delivery(a, store, hostname, None).await?,
                hostname: hostname.to_string(),
                spam: None,
                verifier: None,
                next: Some(mesh.next(role, Role::Spamfilter)?),
            };
            let mut s = SessionConfig::new(
                scop_mail::service::smtp_config(hostname, false, a.message_size),
                Some(tokio_rustls::TlsAcceptor::from(tls)),
            );
            s.greeting_delay = Duration::from_millis(a.greeting_delay);
            let l = bind(addr, "mx").await?;
            tasks.push(tokio::spawn(scop_mail::listener::run(
                "mx",
                l,
                Arc::new(s),
                Arc::new(mx),
                mail::conn_limits(a),
                stop,
            )));
        }
        Role::Submission => {
            let tls = tokio_rustls::TlsAcceptor::from(mail::public_tls(a, hostname)?);
            // The only compartment that opens the credentials file.
            let store = mail::open_store_with_passwords(a).await?;
            let mut submission = scop_mail::submission::Submission::new(
                store,
                hostname,
                a.queue_lifetime,
                Arc::new(Notify::new()),
            );
            submission.next = Some(mesh.next(role, Role::Signer)?);
            submission.limits = mail::user_limits(a);
            let submission = Arc::new(submission);
            let mut any = false;
            for (what, spec, implicit) in [
                ("submission", &a.submission, false),
                ("submissions", &a.submissions, true),
            ] {
                let Some(addr) = mail::listen(what, spec)? else {
                    continue;
                };
                any = true;
                let mut s = SessionConfig::new(
                    scop_mail::service::smtp_config(hostname, true, a.message_size),
                    Some(tls.clone()),
                );
                s.implicit_tls = implicit;
                let l = bind(addr, what).await?;
                tasks.push(tokio::spawn(scop_mail::listener::run(
                    what,
                    l,
                    Arc::new(s),
                    submission.clone(),
                    mail::conn_limits(a),
                    stop.clone(),
                )));
            }
            if !any {
                bail!("the submission compartment needs --submission or --submissions");
            }
        }
        Role::Signer => {
            let dkim = Arc::new(mail::dkim_signers(&a.dkim)?);
            if dkim.is_empty() {
                tracing::warn!("no --dkim key: mail passes unsigned");
            }
            if let (Some(server), Some(key_file)) = (a.dkim_publish, &a.dkim_tsig_key) {
                mail::publish_dkim(server, key_file, &dkim)?;
            }
            let handler = hop::SignerHop {
                dkim,
                next: mesh.next(role, Role::Relay)?,
            };
            tasks.push(mesh.serve(role, hop_cfg, handler, stop).await?);
        }
        Role::Relay => {
            let routes = mail::routes(a, Some(mesh.dns(role)?))?;
            let store = mail::open_store(&mail::store_url(a)).await?;
            let delivery = delivery(a, store.clone(), hostname, Some("relay")).await?;
            let queued = delivery.queued.clone();
            let mut relay = scop_mail::relay::Relay::new(delivery, routes);
            relay.retry = mail::retry(a);
            relay.log_retention = mail::delivery_log_retention(a);
            if let Some(id) = &a.relay_id {
                relay.owner = id.clone();
            }
            relay.poll = RELAY_POLL;
            let relay = Arc::new(relay);
            // Before the hop hands over its first message.
            relay.release_stale_leases().await;
            tasks.push(tokio::spawn(relay.clone().run(stop.clone())));
            let handler = hop::RelayHop {
                store,
                lifetime_secs: a.queue_lifetime,
                queued,
                relay: Some(relay),
            };
            tasks.push(mesh.serve(role, hop_cfg, handler, stop).await?);
        }
        Role::Spamfilter => {
            let stage = mail::spam_config(a)?
                .map(|s| scop_mail::mx::SpamStage::new(s.model, s.policy, s.block_after));
            if stage.is_none() {
                tracing::warn!("no --spam-model: messages pass unlabelled");
            }
            let handler = hop::SpamHop {
                stage,
                next: mesh.next(role, Role::Verifier)?,
            };
            tasks.push(mesh.serve(role, hop_cfg, handler, stop).await?);
        }
        Role::Verifier => {
            let dns = Some(mesh.dns(role)?);
            // No keys here: the signer signs the reports.
            let verifier = mail::verifier(a, dns, &Arc::default(), &mail::dkim_domains(&a.dkim))?;
            if let Some(v) = &verifier
                && let Some(reporter) = &v.reports
            {
                tasks.push(tokio::spawn(scop_mail::dmarc_reports::send_loop(
                    reporter.clone(),
                    v.dns.clone(),
                    scop_mail::dmarc_reports::Outbox::Hop(mesh.next(role, Role::Signer)?),
                    Duration::from_secs(a.dmarc_reports.max(1) as u64),
                    stop.clone(),
                )));
            }
            let handler = hop::VerifyHop {
                verifier,
                next: mesh.next(role, Role::Delivery)?,
            };
            tasks.push(mesh.serve(role, hop_cfg, handler, stop).await?);
        }
        Role::Delivery => {
            let store = mail::open_store(&mail::store_url(a)).await?;
            let handler = hop::DeliveryHop {
                delivery: delivery(a, store, hostname, Some("delivery")).await?,
                hostname: hostname.to_string(),
            };
            tasks.push(mesh.serve(role, hop_cfg, handler, stop).await?);
        }
        Role::Resolver => {
            let Some(dns) = mail::resolver(&a.dns)? else {
                bail!(
                    "the resolver compartment needs DNS servers: give --resolver ADDR:PORT or --stub-zone (none in /etc/resolv.conf)"
                );
            };
            let l = mesh.listen(role).await?;
            tasks.push(tokio::spawn(scop_mail::dns_hop::serve(l, dns, stop)));
        }
        Role::Dns => unreachable!("checked against MAIL_ROLES"),
    }
    Ok(tasks)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {what} on {addr} (ports below 1024 need privileges)"))?;
    tracing::info!(%addr, "{what} listening");
    Ok(l)
}
