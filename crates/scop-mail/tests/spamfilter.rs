//! The MX with its spam-filter stage, trained on the SpamAssassin training
//! groups (easy-ham-1, spam-1), receiving held-out messages (easy-ham-2,
//! spam-2) over SMTP: spam is labelled and quarantined in the Junk folder,
//! ham reaches the inbox, forged labels are removed, and a source that
//! keeps sending spam is refused at MAIL.

mod common;

use std::time::Duration;

use common::{Setup, domain};
use scop_mail::outbound::{self, Attempt, Timeouts};
use scop_mail::service::SpamConfig;
use scop_mail::spamfilter::Policy;
use scop_smtp::{ClientConfig, Envelope, ForwardPath, Host, MailParams, Mailbox, ReversePath};
use scop_spam::{Class, Model};

fn files(group: &str, n: usize) -> Vec<Vec<u8>> {
    let dir = scop_testkit::spamassassin_corpus().join(group);
    scop_testkit::files_under(&dir)
        .into_iter()
        .take(n)
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn trained() -> Model {
    let mut m = Model::new();
    for msg in files("easy-ham-1", usize::MAX) {
        m.train(&msg, Class::Ham);
    }
    for msg in files("spam-1", usize::MAX) {
        m.train(&msg, Class::Spam);
    }
    m
}

async fn send(mx: std::net::SocketAddr, msg: &[u8]) -> Attempt {
    let envelope = Envelope {
        facts: None,
        from: ReversePath::Mailbox(Mailbox::parse("sender@elsewhere.test", false).unwrap()),
        params: MailParams::default(),
        rcpts: vec![(
            ForwardPath::Mailbox(Mailbox::parse("alice@a.test", false).unwrap()),
            Default::default(),
        )],
    };
    let mut config = ClientConfig::new(Host::parse("client.test", false).unwrap());
    config.tls = scop_smtp::TlsPolicy::Disabled;
    outbound::send(
        mx,
        "mail.a.test",
        &config,
        &scop_mail::tls::opportunistic_client(),
        &outbound::HostSecurity::Opportunistic,
        &envelope,
        msg,
        Timeouts::default(),
        &[],
        None,
        &mut Vec::new(),
    )
    .await
}

fn delivered(a: &Attempt) -> bool {
    matches!(a, Attempt::Done(r, _) if r.delivered())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_out_corpus_messages_are_labelled_over_smtp() {
    let model = tokio::task::spawn_blocking(trained).await.unwrap();
    let a = domain(
        "a.test",
        &[("alice@a.test", "pw")],
        Setup {
            spam: Some(SpamConfig {
                model,
                policy: Policy::default(),
                block_after: 0,
            }),
            ..Setup::default()
        },
    )
    .await;
    let hams = files("easy-ham-2", 20);
    let spams = files("spam-2", 20);
    let (mut ham_ok, mut spam_ok) = (0, 0);
    for m in &hams {
        ham_ok += usize::from(delivered(&send(a.mx(), m).await));
    }
    for m in &spams {
        spam_ok += usize::from(delivered(&send(a.mx(), m).await));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inbox = a.messages("alice@a.test");
    let junk = a.junk("alice@a.test");
    let verdict = |m: &Vec<u8>, v: &str| {
        String::from_utf8_lossy(m).contains(&format!("\r\nX-Spam-Verdict: {v}\r\n"))
    };
    let inbox_spam = inbox.iter().filter(|m| verdict(m, "spam")).count();
    let junk_spam = junk.iter().filter(|m| verdict(m, "spam")).count();
    eprintln!(
        "accepted {ham_ok}/20 ham and {spam_ok}/20 spam; inbox {} ({} labelled spam), junk {} ({} labelled spam)",
        inbox.len(),
        inbox_spam,
        junk.len(),
        junk_spam
    );
    assert_eq!(inbox.len() + junk.len(), ham_ok + spam_ok);
    assert!(ham_ok >= 18 && spam_ok >= 18, "most messages are accepted");
    // Every message is labelled; nothing labelled spam is in the inbox.
    for m in inbox.iter().chain(&junk) {
        assert!(String::from_utf8_lossy(m).contains("\r\nX-Spam-Score: "));
    }
    assert_eq!(inbox_spam, 0);
    // No ham is quarantined: the Junk folder holds at most the spam sent.
    assert!(junk.len() <= spam_ok, "ham in Junk");
    assert!(junk_spam >= 10, "only {junk_spam} of 20 spam quarantined");
}

fn small_model() -> Model {
    let mut m = Model::new();
    for i in 0..20 {
        m.train(
            format!("Subject: meeting {i}\r\n\r\nSee you at the standup about the roadmap.\r\n")
                .as_bytes(),
            Class::Ham,
        );
        m.train(
            format!("Subject: CHEAP pills {i}\r\n\r\nBuy cheap pills now, best price viagra!\r\n")
                .as_bytes(),
            Class::Spam,
        );
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_labels_are_replaced_and_spam_sources_are_refused() {
    let a = domain(
        "a.test",
        &[("alice@a.test", "pw")],
        Setup {
            spam: Some(SpamConfig {
                model: small_model(),
                policy: Policy::default(),
                block_after: 3,
            }),
            ..Setup::default()
        },
    )
    .await;
    // Three different messages (the same bytes again would be one copy).
    let spam = |i: usize| {
        format!(
            "X-Spam-Verdict: ham\r\nX-Spam-Score: 0.0\r\nMessage-ID: <{i}@pills.test>\r\nSubject: cheap pills\r\n\r\nbuy cheap pills now viagra\r\n"
        )
    };
    for i in 0..3 {
        assert!(delivered(&send(a.mx(), spam(i).as_bytes()).await));
    }
    let junk = a.junk("alice@a.test");
    assert_eq!(junk.len(), 3);
    let text = String::from_utf8_lossy(&junk[0]).to_string();
    assert!(text.contains("\r\nX-Spam-Verdict: spam\r\n"), "{text}");
    assert!(!text.contains("X-Spam-Verdict: ham"), "{text}");
    assert!(!text.contains("X-Spam-Score: 0.0\r\n"), "{text}");
    // The fourth attempt from the same address is refused at MAIL.
    match send(a.mx(), spam(3).as_bytes()).await {
        Attempt::Done(r, _) => {
            let mail = r.mail.expect("MAIL answered");
            assert_eq!(mail.code(), 554, "{mail:?}");
        }
        Attempt::Failed(e) | Attempt::Unsuitable(e) => panic!("{e}"),
    }
    assert!(a.messages("alice@a.test").is_empty());
}
