//! The inbound chain as mesh hops (MX -> spam filter -> verifier ->
//! delivery, each its own SMTP server behind mutual TLS), and the hop
//! rules as an attacker inside the host would test them: a certificate of
//! the wrong role, of another CA, or none; envelope facts from a role that
//! may not send them; a hop without facts; a hop that is down.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::temp_dir;
use scop_mail::delivery::Delivery;
use scop_mail::hop::{self, NextHop};
use scop_mail::mx::{Mx, SpamStage};
use scop_mail::outbound::{self, Attempt, Timeouts};
use scop_mail::session::SessionConfig;
use scop_mesh::{ExtraNames, MeshDir, MeshListener, Role, Validity};
use scop_smtp::{
    ClientConfig, EnvelopeFacts, ForwardPath, Host, MailParams, Mailbox, RcptParams, ReversePath,
};
use scop_spam::{Class, Model};
use scop_store::Store;
use tokio::sync::{Notify, watch};

fn mesh(dir: &std::path::Path) -> MeshDir {
    let v = |days: u64| {
        Validity::starting(
            std::time::SystemTime::now() - Duration::from_secs(60),
            Duration::from_secs(days * 86_400),
        )
        .unwrap()
    };
    let roles: Vec<_> = Role::ALL.iter().map(|r| (*r, ExtraNames::none())).collect();
    MeshDir::init(dir, v(30), v(7), &roles).unwrap()
}

fn model() -> Model {
    let mut m = Model::new();
    for i in 0..40 {
        let ham = format!(
            "From: colleague{i}@work.test\r\nSubject: meeting agenda {i}\r\n\r\nThe quarterly planning meeting moves to room {i}; agenda and minutes attached.\r\n"
        );
        let spam = format!(
            "From: winner{i}@prizes.test\r\nSubject: casino jackpot bonus {i}\r\n\r\nClaim your free casino jackpot bonus now, cheap pills, click to win {i} million!!!\r\n"
        );
        m.train(ham.as_bytes(), Class::Ham);
        m.train(spam.as_bytes(), Class::Spam);
    }
    m
}

struct Chain {
    dir: std::path::PathBuf,
    mesh: MeshDir,
    mx: SocketAddr,
    delivery: SocketAddr,
    verifier: SocketAddr,
    stop: watch::Sender<bool>,
}

async fn listen(mesh: &MeshDir, role: Role) -> MeshListener {
    let identity = mesh.load_identity(role).unwrap();
    let trust = mesh.load_trust().unwrap();
    MeshListener::bind_policy("127.0.0.1:0", &identity, &trust)
        .await
        .unwrap()
}

/// The chain for a.test (user alice) with a spam filter that refuses
/// scores from 0.99 and quarantines spam below that.
async fn chain() -> Chain {
    chain_blocking_after(0).await
}

/// The same, refusing a source after `block_after` spams in an hour.
async fn chain_blocking_after(block_after: u32) -> Chain {
    let dir = temp_dir("hops");
    let mesh = mesh(&dir.join("mesh"));
    let store = Store::open(&format!("sqlite:{}", dir.join("scop.db").display()))
        .await
        .unwrap();
    store.add_domain("a.test").await.unwrap();
    store.add_user("alice@a.test", "pw").await.unwrap();
    let delivery = Delivery {
        store,
        mail_root: dir.join("mail"),
        hostname: "mail.a.test".into(),
        srs: Arc::new(scop_mail::srs::Srs::new(b"test srs key")),
        lifetime_secs: 86_400,
        queued: Arc::new(Notify::new()),
        journal: None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let cfg = hop::session_config("mail.a.test", 10 << 20);

    let l = listen(&mesh, Role::Delivery).await;
    let delivery_addr = l.local_addr().unwrap();
    tokio::spawn(hop::serve(
        Role::Delivery,
        l,
        cfg.clone(),
        Arc::new(hop::DeliveryHop {
            delivery: delivery.clone(),
            hostname: "mail.a.test".into(),
        }),
        stop_rx.clone(),
    ));
    let l = listen(&mesh, Role::Verifier).await;
    let verifier_addr = l.local_addr().unwrap();
    tokio::spawn(hop::serve(
        Role::Verifier,
        l,
        cfg.clone(),
        Arc::new(hop::VerifyHop {
            verifier: None,
            next: NextHop::new(&mesh, Role::Verifier, Role::Delivery, delivery_addr).unwrap(),
        }),
        stop_rx.clone(),
    ));
    let l = listen(&mesh, Role::Spamfilter).await;
    let spam_addr = l.local_addr().unwrap();
    let policy = scop_mail::spamfilter::Policy {
        reject_at: Some(0.99),
        ..Default::default()
    };
    tokio::spawn(hop::serve(
        Role::Spamfilter,
        l,
        cfg.clone(),
        Arc::new(hop::SpamHop {
            stage: Some(SpamStage::new(
                tokio::task::spawn_blocking(model).await.unwrap(),
                policy,
                block_after,
            )),
            next: NextHop::new(&mesh, Role::Spamfilter, Role::Verifier, verifier_addr).unwrap(),
        }),
        stop_rx.clone(),
    ));
    let mx = Mx {
        delivery,
        hostname: "mail.a.test".into(),
        spam: None,
        verifier: None,
        next: Some(NextHop::new(&mesh, Role::Mx, Role::Spamfilter, spam_addr).unwrap()),
    };
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mx_addr = tcp.local_addr().unwrap();
    let s = SessionConfig::new(
        scop_mail::service::smtp_config("mail.a.test", false, 10 << 20),
        None,
    );
    tokio::spawn(scop_mail::listener::run(
        "mx",
        tcp,
        Arc::new(s),
        Arc::new(mx),
        scop_mail::listener::ConnLimits::default(),
        stop_rx,
    ));
    Chain {
        dir,
        mesh,
        mx: mx_addr,
        delivery: delivery_addr,
        verifier: verifier_addr,
        stop,
    }
}

impl Chain {
    fn folder(&self, junk: bool) -> Vec<String> {
        let mut d = self.dir.join("mail/alice@a.test/Maildir");
        if junk {
            d = d.join(".Junk");
        }
        let mut files: Vec<_> = std::fs::read_dir(d.join("new"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }
}

fn rcpt(a: &str) -> Vec<(ForwardPath, RcptParams)> {
    vec![(
        ForwardPath::Mailbox(Mailbox::parse(a, false).unwrap()),
        RcptParams::default(),
    )]
}

fn sender() -> ReversePath {
    ReversePath::Mailbox(Mailbox::parse("someone@elsewhere.test", false).unwrap())
}

/// Sends `msg` to the MX as an Internet client; the end-of-data reply.
async fn to_mx(mx: SocketAddr, msg: &str) -> scop_smtp::Reply {
    let envelope = scop_smtp::Envelope {
        from: sender(),
        params: MailParams::default(),
        rcpts: rcpt("alice@a.test"),
        facts: None,
    };
    let mut config = ClientConfig::new(Host::parse("client.elsewhere.test", false).unwrap());
    config.tls = scop_smtp::TlsPolicy::Disabled;
    let attempt = outbound::send(
        mx,
        "mail.a.test",
        &config,
        &scop_mail::tls::opportunistic_client(),
        &outbound::HostSecurity::Opportunistic,
        &envelope,
        msg.as_bytes(),
        Timeouts::default(),
        &[],
        None,
        &mut Vec::new(),
    )
    .await;
    match attempt {
        Attempt::Done(r, _) => match r.mail {
            Some(m) if !m.is_positive() => m,
            mail => r.data.or(mail).expect("a reply"),
        },
        Attempt::Failed(e) | Attempt::Unsuitable(e) => panic!("MX session failed: {e}"),
    }
}

const HAM: &str = "From: colleague@work.test\r\nTo: alice@a.test\r\nSubject: meeting agenda\r\nX-Spam-Verdict: spam\r\n\r\nThe planning meeting moves to room 4; agenda attached.\r\n";
const SPAM: &str = "From: winner@prizes.test\r\nTo: alice@a.test\r\nSubject: casino jackpot bonus\r\n\r\nClaim your free casino jackpot bonus now, cheap pills, click to win!!!\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbound_chain_delivers_labels_and_refuses_through_the_hops() {
    let c = chain().await;
    // Ham: through all four hops into the inbox, labelled by the spam
    // filter (the client's own label removed), traced by the MX.
    let r = to_mx(c.mx, HAM).await;
    assert_eq!(r.code(), 250, "{r:?}");
    let inbox = c.folder(false);
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let m = &inbox[0];
    assert!(m.contains("X-Spam-Verdict: ham"), "{m}");
    assert!(
        !m.contains("X-Spam-Verdict: spam"),
        "forged label kept: {m}"
    );
    assert!(
        m.contains("Received: from client.elsewhere.test ([127.0.0.1])"),
        "{m}"
    );
    assert!(m.contains("by mail.a.test"), "{m}");
    // Spam over the reject threshold: the spam filter's 550 is the MX's
    // answer, and nothing is delivered.
    let r = to_mx(c.mx, SPAM).await;
    assert_eq!(r.code(), 550, "{r:?}");
    assert_eq!(c.folder(false).len(), 1);
    assert!(c.folder(true).is_empty());
    // Several messages in a row reuse the mesh connections.
    for i in 0..5 {
        let msg = format!("Message-ID: <{i}@work.test>\r\n{HAM}");
        assert_eq!(to_mx(c.mx, &msg).await.code(), 250);
    }
    assert_eq!(c.folder(false).len(), 6);
    // The same bytes again (a client's retry) are acknowledged and not
    // delivered twice; without a Message-ID they count as another message.
    let again = format!("Message-ID: <4@work.test>\r\n{HAM}");
    assert_eq!(to_mx(c.mx, &again).await.code(), 250);
    assert_eq!(c.folder(false).len(), 6);
    assert_eq!(to_mx(c.mx, HAM).await.code(), 250);
    assert_eq!(c.folder(false).len(), 7);
    // A reader moves what it has seen to cur/: the same bytes again are
    // still not delivered twice.
    let maildir = c.dir.join("mail/alice@a.test/Maildir");
    for e in std::fs::read_dir(maildir.join("new")).unwrap().flatten() {
        let seen = format!("{}:2,S", e.file_name().to_str().unwrap());
        std::fs::rename(e.path(), maildir.join("cur").join(seen)).unwrap();
    }
    assert_eq!(to_mx(c.mx, &again).await.code(), 250);
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(maildir.join("cur")).unwrap().count(), 7);
    c.stop.send(true).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_that_is_down_makes_the_mx_answer_451() {
    let c = chain().await;
    // An MX whose spam filter is not there (nothing listens on the port).
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let store = Store::open(&format!("sqlite:{}", c.dir.join("scop.db").display()))
        .await
        .unwrap();
    let mx = Mx {
        delivery: Delivery {
            store,
            mail_root: c.dir.join("mail"),
            hostname: "mail.a.test".into(),
            srs: Arc::new(scop_mail::srs::Srs::new(b"test srs key")),
            lifetime_secs: 86_400,
            queued: Arc::new(Notify::new()),
            journal: None,
        },
        hostname: "mail.a.test".into(),
        spam: None,
        verifier: None,
        next: Some(NextHop::new(&c.mesh, Role::Mx, Role::Spamfilter, gone_addr).unwrap()),
    };
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(scop_mail::listener::run(
        "mx",
        tcp,
        Arc::new(SessionConfig::new(
            scop_mail::service::smtp_config("mail.a.test", false, 1 << 20),
            None,
        )),
        Arc::new(mx),
        scop_mail::listener::ConnLimits::default(),
        stop_rx,
    ));
    // The client keeps the message and retries later: 451, never 250.
    let r = to_mx(addr, HAM).await;
    assert_eq!(r.code(), 451, "{r:?}");
    assert!(c.folder(false).is_empty());
    c.stop.send(true).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hops_refuse_the_wrong_role_another_ca_and_misplaced_facts() {
    let c = chain().await;
    let facts = EnvelopeFacts {
        addr: Some("192.0.2.9".parse().unwrap()),
        helo: Some("forger.test".into()),
        ..Default::default()
    };
    let send = |next: NextHop, facts: Option<EnvelopeFacts>| async move {
        next.send(
            facts,
            &sender(),
            &MailParams::default(),
            rcpt("alice@a.test"),
            HAM.as_bytes(),
        )
        .await
    };
    // The MX may talk to the spam filter only: delivery refuses its
    // certificate, so nothing skips the filter and the checks.
    let skip = NextHop::new(&c.mesh, Role::Mx, Role::Delivery, c.delivery).unwrap();
    let r = send(skip, Some(facts.clone())).await.unwrap_err();
    assert_eq!(r.code(), 451, "{r:?}");
    // The submission compartment (a real certificate of this mesh) may not
    // inject into the inbound chain either.
    let inject = NextHop::new(&c.mesh, Role::Submission, Role::Verifier, c.verifier).unwrap();
    assert_eq!(
        send(inject, Some(facts.clone())).await.unwrap_err().code(),
        451
    );
    // A certificate of another CA with the right role name is refused.
    let other = mesh(&temp_dir("hops-other").join("mesh"));
    let foreign = NextHop::new(&other, Role::Verifier, Role::Delivery, c.delivery).unwrap();
    assert_eq!(
        send(foreign, Some(facts.clone())).await.unwrap_err().code(),
        451
    );
    // No TLS at all: plain SMTP gets no greeting, the connection closes.
    let mut tcp = tokio::net::TcpStream::connect(c.delivery).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"EHLO intruder.test\r\n")
        .await
        .unwrap();
    let mut plain = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    let n = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::io::AsyncBufReadExt::read_line(&mut plain, &mut line),
    )
    .await
    .expect("the hop closes a client without TLS");
    assert!(
        n.map_or(true, |n| n == 0 || !line.starts_with("220")),
        "{line}"
    );
    // The right role without facts: the verifier will not judge the mesh
    // peer as if it were the client.
    let bare = NextHop::new(&c.mesh, Role::Spamfilter, Role::Verifier, c.verifier).unwrap();
    let r = send(bare, None).await.unwrap_err();
    assert_eq!(r.code(), 554, "{r:?}");
    assert!(c.folder(false).is_empty() && c.folder(true).is_empty());
    // And with facts, the same hop delivers.
    let ok = NextHop::new(&c.mesh, Role::Spamfilter, Role::Verifier, c.verifier).unwrap();
    send(ok, Some(facts)).await.expect("delivered");
    assert_eq!(c.folder(false).len(), 1);
    c.stop.send(true).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_from_a_role_that_may_not_send_them_are_refused() {
    // The verifier may connect to the signer (its DMARC reports) but not
    // with envelope facts: the signer does not announce XSCOP to it, so a
    // transaction with facts never starts.
    let dir = temp_dir("hops-facts");
    let mesh = mesh(&dir.join("mesh"));
    let (stop, stop_rx) = watch::channel(false);
    let store = Store::open(&format!("sqlite:{}", dir.join("scop.db").display()))
        .await
        .unwrap();
    let l = listen(&mesh, Role::Relay).await;
    let relay_addr = l.local_addr().unwrap();
    let queued = Arc::new(Notify::new());
    tokio::spawn(hop::serve(
        Role::Relay,
        l,
        hop::session_config("mail.a.test", 1 << 20),
        Arc::new(hop::RelayHop {
            store: store.clone(),
            lifetime_secs: 3600,
            queued,
            relay: None,
        }),
        stop_rx.clone(),
    ));
    let l = listen(&mesh, Role::Signer).await;
    let signer_addr = l.local_addr().unwrap();
    tokio::spawn(hop::serve(
        Role::Signer,
        l,
        hop::session_config("mail.a.test", 1 << 20),
        Arc::new(hop::SignerHop {
            dkim: Arc::default(),
            next: NextHop::new(&mesh, Role::Signer, Role::Relay, relay_addr).unwrap(),
        }),
        stop_rx,
    ));
    let report = |facts| {
        let next = NextHop::new(&mesh, Role::Verifier, Role::Signer, signer_addr).unwrap();
        async move {
            next.send(
                facts,
                &ReversePath::Null,
                &MailParams::default(),
                rcpt("dmarc@b.test"),
                b"From: dmarc-noreply@a.test\r\nSubject: report\r\n\r\nxml\r\n",
            )
            .await
        }
    };
    let facts = EnvelopeFacts {
        login: Some("alice@a.test".into()),
        ..Default::default()
    };
    assert_eq!(report(Some(facts)).await.unwrap_err().code(), 451);
    assert!(store.list_queue().await.unwrap().is_empty());
    // Without facts the report is signed (no key here: unsigned) and
    // queued by the relay.
    report(None).await.expect("queued");
    assert_eq!(store.list_queue().await.unwrap().len(), 1);
    // REQUIRETLS crosses the signer and relay hops into the queue.
    let next = NextHop::new(&mesh, Role::Verifier, Role::Signer, signer_addr).unwrap();
    let params = MailParams {
        requiretls: true,
        ..MailParams::default()
    };
    next.send(
        None,
        &ReversePath::Null,
        &params,
        rcpt("dmarc@b.test"),
        b"From: dmarc-noreply@a.test\r\nSubject: report 2\r\n\r\nxml\r\n",
    )
    .await
    .expect("queued");
    let due = store.due(i64::MAX, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|m| m.requiretls).collect::<Vec<_>>(),
        [false, true]
    );
    stop.send(true).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mx_refuses_at_mail_a_source_the_spam_filter_lists() {
    // The spam filter refuses a source after two spams in an hour; the MX
    // asks it at MAIL, so the third message is refused before its data.
    let c = chain_blocking_after(2).await;
    assert_eq!(to_mx(c.mx, HAM).await.code(), 250);
    for _ in 0..2 {
        assert_eq!(to_mx(c.mx, SPAM).await.code(), 550);
    }
    let r = to_mx(c.mx, HAM).await;
    assert_eq!(r.code(), 554, "{r:?}");
    assert!(r.lines().join(" ").contains("too much spam"), "{r:?}");
    assert_eq!(c.folder(false).len(), 1);
    c.stop.send(true).ok();
}
