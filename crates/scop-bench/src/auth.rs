//! `scop-bench auth`: DKIM sign and verify per second (RSA-2048 and
//! Ed25519), body canonicalization + SHA-256 in MB/s, and SPF evaluations
//! per second over an in-memory zone: scop-dkim / scop-spf against
//! mail-auth 0.13.3 in the same process, on the same messages, rounds
//! interleaved; the crypto ceiling comes from `openssl speed`.
//!
//! mail-auth's verifier and SPF evaluator are `async` and ask a resolver;
//! here every answer is pre-loaded into its caches, so each future
//! completes on its first poll (a [`block_on`] that panics on `Pending`
//! proves no network was touched).

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::hash::Hash;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::crypto::{Ed25519Key, HashContext, HashImpl, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimSigner;
use mail_auth::spf::Spf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MX, MessageAuthenticator, Parameters, RecordSet,
    ResolverCache, SpfResult, Txt,
};

use crate::median;

/// Rounds per measurement; the median is reported.
const ROUNDS: usize = 5;
/// The signing and verification time: the clock (mail-auth's signer reads
/// it for `t=`, so ours must agree).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
/// Headers both signers sign (the same list, so the work is the same).
const SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
];

/// A cache map that mail-auth reads through [`ResolverCache`].
struct Map<K, V>(Mutex<HashMap<K, V>>);

impl<K: Hash + Eq, V: Clone> Map<K, V> {
    fn new() -> Self {
        Map(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Map<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.remove(name)
    }
    fn insert(&self, key: K, value: V, _: Instant) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, value);
        }
    }
}

struct Caches {
    txt: Map<Box<str>, Txt>,
    mx: Map<Box<str>, RecordSet<MX>>,
    ipv4: Map<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: Map<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: Map<IpAddr, RecordSet<Box<str>>>,
}

fn fqdn(name: &str) -> Box<str> {
    format!("{}.", name.to_ascii_lowercase()).into_boxed_str()
}

fn record_set<T>(v: Vec<T>) -> RecordSet<T> {
    RecordSet {
        rrset: Arc::from(v.into_boxed_slice()),
        dnssec_status: Default::default(),
    }
}

impl Caches {
    fn new() -> Caches {
        Caches {
            txt: Map::new(),
            mx: Map::new(),
            ipv4: Map::new(),
            ipv6: Map::new(),
            ptr: Map::new(),
        }
    }

    #[allow(clippy::type_complexity)]
    fn parameters<P>(
        &self,
        p: P,
    ) -> Parameters<
        '_,
        P,
        Map<Box<str>, Txt>,
        Map<Box<str>, RecordSet<MX>>,
        Map<Box<str>, RecordSet<Ipv4Addr>>,
        Map<Box<str>, RecordSet<Ipv6Addr>>,
        Map<IpAddr, RecordSet<Box<str>>>,
    > {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// Polls a future that must be ready at once (every DNS answer cached).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("mail-auth asked the network: an answer is missing"),
    }
}

/// Runs `a` and `b` interleaved for [`ROUNDS`] rounds; median durations.
fn duel(mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        a();
        ta.push(t.elapsed());
        let t = Instant::now();
        b();
        tb.push(t.elapsed());
    }
    (median(ta), median(tb))
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn line(what: &str, unit: &str, ours: f64, peer: f64, ceiling: Option<f64>) {
    let ceiling = ceiling.map_or(String::new(), |c| {
        format!(
            "   openssl {c:>10.0}  (ours at {:.0} % of it)",
            100.0 * ours / c
        )
    });
    println!(
        "{what:<28} ours {ours:>10.1} {unit}   mail-auth {peer:>10.1} {unit}   ratio {:>5.2}{ceiling}",
        ours / peer
    );
}

/// `openssl speed -seconds 3 rsa2048 ed25519`: (rsa sign/s, rsa verify/s,
/// ed25519 sign/s, ed25519 verify/s).
fn openssl_speed() -> Result<(f64, f64, f64, f64)> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048", "ed25519"])
        .output()
        .context("run openssl speed")?;
    if !out.status.success() {
        bail!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
}

/// The last two numbers of the `rsa 2048 bits` and `(Ed25519)` lines.
fn parse_openssl_speed(text: &str) -> Result<(f64, f64, f64, f64)> {
    let last_two = |needle: &str| -> Result<(f64, f64)> {
        let line = text
            .lines()
            .find(|l| l.contains(needle))
            .with_context(|| format!("no `{needle}` line in openssl speed output"))?;
        let nums: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match nums.as_slice() {
            [.., s, v] => Ok((*s, *v)),
            _ => bail!("cannot read `{line}`"),
        }
    };
    let (rs, rv) = last_two("rsa 2048 bits")?;
    let (es, ev) = last_two("(Ed25519)")?;
    Ok((rs, rv, es, ev))
}

struct Keys {
    der: Vec<u8>,
    txt: String,
    selector: &'static str,
}

fn keys(kind: scop_dkim::KeyKind, selector: &'static str) -> Result<Keys> {
    let key = scop_dkim::SigningKey::generate(kind)?;
    let der = key.to_pkcs8_der()?;
    let txt = key.dns_txt()?;
    Ok(Keys { der, txt, selector })
}

/// mail-auth's signer for the same key, domain, selector and headers.
enum TheirSigner {
    Rsa(DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>),
    Ed(DkimSigner<Ed25519Key, mail_auth::dkim::Done>),
}

impl TheirSigner {
    // `from_key_der` would need rustls-pki-types as one more dependency:
    // the deprecated PKCS#8 constructor does the same.
    #[allow(deprecated)]
    fn new(k: &Keys) -> Result<TheirSigner> {
        let err = |e: mail_auth::Error| anyhow::anyhow!("mail-auth key: {e}");
        Ok(if k.selector == "rsa1" {
            let key = RsaKey::<Sha256>::from_pkcs8_der(&k.der).map_err(err)?;
            TheirSigner::Rsa(
                DkimSigner::from_key(key)
                    .domain("example.com")
                    .selector(k.selector)
                    .headers(SIGNED.iter().copied()),
            )
        } else {
            let key = Ed25519Key::from_pkcs8_der(&k.der).map_err(err)?;
            TheirSigner::Ed(
                DkimSigner::from_key(key)
                    .domain("example.com")
                    .selector(k.selector)
                    .headers(SIGNED.iter().copied()),
            )
        })
    }

    fn sign(&self, m: &[u8]) -> Result<String> {
        let sig = match self {
            TheirSigner::Rsa(s) => s.sign(m),
            TheirSigner::Ed(s) => s.sign(m),
        };
        Ok(sig
            .map_err(|e| anyhow::anyhow!("mail-auth sign: {e}"))?
            .to_header())
    }
}

fn our_signer(k: &Keys) -> Result<scop_dkim::Signer> {
    let key = scop_dkim::SigningKey::from_pkcs8_der(&k.der)?;
    Ok(scop_dkim::Signer::new(key, "example.com", k.selector)?
        .with_headers(SIGNED)
        .with_oversigned(&[]))
}

pub fn run(args: &[String]) -> Result<()> {
    let mut count = 300u64;
    let mut python: Option<std::path::PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--messages" => count = it.next().context("--messages N")?.parse()?,
            "--python" => python = Some(it.next().context("--python PATH")?.into()),
            other => bail!(
                "unknown argument {other}; usage: scop-bench auth [--messages N] [--python VENV_PYTHON]"
            ),
        }
    }
    let hamlet = scop_hamlet::Hamlet::new(7, scop_hamlet::Config::default());
    let messages: Vec<Vec<u8>> = (0..count).map(|i| hamlet.message(i)).collect();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "auth bench: {} Hamlet messages ({:.1} MB), {ROUNDS} rounds, medians",
        messages.len(),
        bytes as f64 / 1e6
    );
    println!("openssl speed -seconds 3 rsa2048 ed25519 ...");
    let (rsa_sign_c, rsa_verify_c, ed_sign_c, ed_verify_c) = openssl_speed()?;

    let rsa = keys(scop_dkim::KeyKind::Rsa2048, "rsa1")?;
    let ed = keys(scop_dkim::KeyKind::Ed25519, "ed1")?;
    let caches = Caches::new();
    for k in [&rsa, &ed] {
        caches.txt.insert(
            fqdn(&format!("{}._domainkey.example.com", k.selector)),
            DomainKey::parse(k.txt.as_bytes()).into(),
            Instant::now(),
        );
    }
    let authenticator =
        MessageAuthenticator::new_cloudflare().context("mail-auth authenticator")?;

    let mut our_rates: Vec<(&str, f64, f64)> = Vec::new();
    for (k, name, sign_c, verify_c) in [
        (&rsa, "RSA-2048", rsa_sign_c, rsa_verify_c),
        (&ed, "Ed25519", ed_sign_c, ed_verify_c),
    ] {
        let ours = our_signer(k)?;
        let theirs = TheirSigner::new(k)?;
        // Sanity: both sign, and each verifies the other's signature.
        let m0 = &messages[0];
        let ours_signed = scop_dkim::sign_message(std::slice::from_ref(&ours), m0, now())?;
        let theirs_signed = [theirs.sign(m0)?.as_bytes(), m0.as_slice()].concat();
        for signed in [&ours_signed, &theirs_signed] {
            let v =
                scop_dkim::verify_message(signed, scop_dkim::VerifyOptions::at(now() + 10), |_| {
                    scop_dkim::DnsAnswer::Txt(vec![k.txt.as_bytes().to_vec()])
                });
            if v.first().map(|o| o.result) != Some(scop_dkim::DkimResult::Pass) {
                bail!("{name}: scop-dkim does not verify: {v:?}");
            }
            let am = AuthenticatedMessage::parse(signed).context("mail-auth parse")?;
            let r = block_on(authenticator.verify_dkim(caches.parameters(&am)));
            if r.first().map(|o| o.result()) != Some(&DkimResult::Pass) {
                bail!("{name}: mail-auth does not verify");
            }
        }

        // Signing.
        let (t_ours, t_theirs) = duel(
            || {
                for m in &messages {
                    black_box(ours.sign(m, now()).ok());
                }
            },
            || {
                for m in &messages {
                    black_box(theirs.sign(m).ok());
                }
            },
        );
        line(
            &format!("DKIM sign {name}"),
            "msg/s",
            per_sec(messages.len(), t_ours),
            per_sec(messages.len(), t_theirs),
            Some(sign_c),
        );
        let t_sign_ours = t_ours;

        // Verification of the same signed messages (signed by us).
        let signed: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| scop_dkim::sign_message(std::slice::from_ref(&ours), m, now()))
            .collect::<Result<_, _>>()?;
        let txt = k.txt.as_bytes().to_vec();
        let (t_ours, t_theirs) = duel(
            || {
                for m in &signed {
                    let v = scop_dkim::verify_message(
                        m,
                        scop_dkim::VerifyOptions::at(now() + 10),
                        |_| scop_dkim::DnsAnswer::Txt(vec![txt.clone()]),
                    );
                    black_box(v);
                }
            },
            || {
                for m in &signed {
                    if let Some(am) = AuthenticatedMessage::parse(m) {
                        black_box(block_on(authenticator.verify_dkim(caches.parameters(&am))));
                    }
                }
            },
        );
        line(
            &format!("DKIM verify {name}"),
            "msg/s",
            per_sec(signed.len(), t_ours),
            per_sec(signed.len(), t_theirs),
            Some(verify_c),
        );
        our_rates.push((
            name,
            per_sec(messages.len(), t_sign_ours),
            per_sec(signed.len(), t_ours),
        ));
    }
    if let Some(python) = &python {
        dkimpy(python, &messages, &rsa, &ed, &our_rates)?;
    }

    // Body canonicalization (relaxed) + SHA-256.
    let bodies: Vec<&[u8]> = messages
        .iter()
        .map(|m| &m[scop_dkim::header::split_header(m).body_offset..])
        .collect();
    let body_bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let (t_ours, t_theirs) = duel(
        || {
            for b in &bodies {
                let mut h = scop_dkim::BodyHasher::new(
                    scop_dkim::Canonicalization::Relaxed,
                    scop_dkim::HashAlgorithm::Sha256,
                    None,
                );
                h.update(b);
                black_box(h.finish());
            }
        },
        || {
            for b in &bodies {
                let mut h = mail_auth::dkim::canonicalize::BodyHasher::new(
                    <Sha256 as HashImpl>::hasher(),
                    mail_auth::dkim::Canonicalization::Relaxed,
                    0,
                );
                h.write(b);
                let (ctx, n) = h.finish();
                black_box((ctx.complete(), n));
            }
        },
    );
    let mb = body_bytes as f64 / 1e6;
    line(
        "body relaxed+SHA-256",
        "MB/s ",
        mb / t_ours.as_secs_f64(),
        mb / t_theirs.as_secs_f64(),
        None,
    );

    spf(&authenticator)?;
    Ok(())
}

/// Messages given to dkimpy (pure-Python RSA is slow).
const DKIMPY_MESSAGES: usize = 60;

/// dkimpy through the venv's python: sign and verify the same messages
/// with the same keys; prints its rates beside ours.
fn dkimpy(
    python: &std::path::Path,
    messages: &[Vec<u8>],
    rsa: &Keys,
    ed: &Keys,
    ours: &[(&str, f64, f64)],
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("scop-bench-dkimpy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let n = messages.len().min(DKIMPY_MESSAGES);
    for (i, m) in messages[..n].iter().enumerate() {
        std::fs::write(dir.join(format!("m{i:04}.eml")), m)?;
    }
    let rsa_pem = scop_dkim::SigningKey::from_pkcs8_der(&rsa.der)?.to_pkcs8_pem()?;
    std::fs::write(dir.join("rsa.pem"), rsa_pem)?;
    std::fs::write(dir.join("rsa.txt"), &rsa.txt)?;
    let seed = &ed.der[ed.der.len() - 32..];
    std::fs::write(dir.join("ed.seed"), scop_dkim::base64::encode(seed))?;
    std::fs::write(dir.join("ed.txt"), &ed.txt)?;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(DKIMPY_SCRIPT)
        .arg(&dir)
        .output()
        .context("run dkimpy")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("dkimpy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let [alg, sign, verify] = w.as_slice() else {
            bail!("dkimpy: unexpected line {l}");
        };
        let name = if *alg == "rsa" { "RSA-2048" } else { "Ed25519" };
        let (s, v): (f64, f64) = (sign.parse()?, verify.parse()?);
        if let Some((_, os, ov)) = ours.iter().find(|(n, _, _)| *n == name) {
            println!(
                "dkimpy {name:<21} sign {s:>8.1} msg/s (ours/dkimpy {:>6.1})   verify {v:>8.1} msg/s (ours/dkimpy {:>6.1})",
                os / s,
                ov / v
            );
        }
    }
    Ok(())
}

/// Times dkimpy's sign and verify (median of 3 rounds) for each key; prints
/// `alg sign_per_s verify_per_s`.
const DKIMPY_SCRIPT: &str = r#"
import glob, os, sys, time
import dkim
d = sys.argv[1]
msgs = [open(p, 'rb').read() for p in sorted(glob.glob(os.path.join(d, 'm*.eml')))]
heads = [b'From', b'To', b'Subject', b'Date', b'Message-ID', b'MIME-Version', b'Content-Type']
keys = {
    'rsa': (open(os.path.join(d, 'rsa.pem'), 'rb').read(), b'rsa1', b'rsa-sha256',
            open(os.path.join(d, 'rsa.txt'), 'rb').read()),
    'ed': (open(os.path.join(d, 'ed.seed'), 'rb').read(), b'ed1', b'ed25519-sha256',
           open(os.path.join(d, 'ed.txt'), 'rb').read()),
}
def median(f):
    ts = []
    for _ in range(3):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[1]
for alg, (key, sel, sig_alg, txt) in keys.items():
    def sign_all():
        return [dkim.sign(m, sel, b'example.com', key, include_headers=heads,
                          canonicalize=(b'relaxed', b'relaxed'), signature_algorithm=sig_alg) + m
                for m in msgs]
    signed = sign_all()
    dns = lambda name, timeout=5: txt
    assert all(dkim.verify(s, dnsfunc=dns) for s in signed), alg
    ts = median(sign_all)
    tv = median(lambda: [dkim.verify(s, dnsfunc=dns) for s in signed])
    print(alg, len(msgs) / ts, len(msgs) / tv)
"#;

/// SPF: a zone with an include chain, `a`, `mx` and `ip4`/`ip6` terms;
/// clients spread so that results vary (pass, fail, softfail).
fn spf(authenticator: &MessageAuthenticator) -> Result<()> {
    struct Zone {
        txt: HashMap<String, String>,
        a: HashMap<String, Vec<Ipv4Addr>>,
        mx: HashMap<String, Vec<(u16, String)>>,
    }
    let mut zone = Zone {
        txt: HashMap::new(),
        a: HashMap::new(),
        mx: HashMap::new(),
    };
    let domains = 20;
    for d in 0..domains {
        zone.txt.insert(
            format!("d{d}.example.com"),
            format!("v=spf1 ip4:198.51.{d}.0/24 a mx include:_spf.esp.example.net ~all"),
        );
        zone.a.insert(
            format!("d{d}.example.com"),
            vec![Ipv4Addr::new(192, 0, 2, d)],
        );
        zone.mx.insert(
            format!("d{d}.example.com"),
            vec![(10, format!("mx{d}.example.com"))],
        );
        zone.a.insert(
            format!("mx{d}.example.com"),
            vec![Ipv4Addr::new(192, 0, 2, 100 + d)],
        );
    }
    zone.txt.insert(
        "_spf.esp.example.net".into(),
        "v=spf1 ip4:203.0.113.0/25 ip6:2001:db8::/32 include:_spf2.esp.example.net -all".into(),
    );
    zone.txt.insert(
        "_spf2.esp.example.net".into(),
        "v=spf1 ip4:203.0.113.128/25 -all".into(),
    );
    let caches = Caches::new();
    for (n, t) in &zone.txt {
        caches
            .txt
            .insert(fqdn(n), Spf::parse(t.as_bytes()).into(), Instant::now());
    }
    for (n, ips) in &zone.a {
        caches
            .ipv4
            .insert(fqdn(n), record_set(ips.clone()), Instant::now());
        caches
            .ipv6
            .insert(fqdn(n), record_set(vec![]), Instant::now());
    }
    for (n, mx) in &zone.mx {
        let v = mx
            .iter()
            .map(|(p, e)| MX {
                exchanges: vec![fqdn(e)].into_boxed_slice(),
                preference: *p,
            })
            .collect();
        caches.mx.insert(fqdn(n), record_set(v), Instant::now());
    }
    impl scop_spf::Resolver for Zone {
        fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
            use scop_spf::{DnsAnswer, QueryType, RData};
            let r: Vec<RData> = match q.qtype {
                QueryType::Txt => self
                    .txt
                    .get(&q.name)
                    .map(|t| vec![RData::Txt(vec![t.as_bytes().to_vec()])])
                    .unwrap_or_default(),
                QueryType::A => self
                    .a
                    .get(&q.name)
                    .map(|v| v.iter().map(|ip| RData::A(*ip)).collect())
                    .unwrap_or_default(),
                QueryType::Mx => self
                    .mx
                    .get(&q.name)
                    .map(|v| {
                        v.iter()
                            .map(|(p, e)| RData::Mx {
                                preference: *p,
                                exchange: e.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => vec![],
            };
            if r.is_empty() {
                DnsAnswer::NoData
            } else {
                DnsAnswer::Records(r)
            }
        }
    }
    // Clients: in ip4 (pass at the first term), the A / MX hosts, deep in
    // the include chain, and nowhere (softfail after every term).
    let mut cases: Vec<(IpAddr, String)> = Vec::new();
    for i in 0..400u32 {
        let d = (i % domains as u32) as u8;
        let ip = match i % 4 {
            0 => IpAddr::V4(Ipv4Addr::new(198, 51, d, 7)),
            1 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + d)),
            2 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200)),
            _ => IpAddr::V4(Ipv4Addr::new(100, 64, 0, i as u8)),
        };
        cases.push((ip, format!("d{d}.example.com")));
    }
    // Sanity: same results.
    for (ip, domain) in &cases {
        let sender = format!("user@{domain}");
        let ours = scop_spf::check_host_with(
            &zone,
            scop_spf::Request::mail_from(*ip, sender.clone(), "helo.example.org"),
            scop_spf::Options::default(),
        );
        let theirs = block_on(authenticator.verify_spf(caches.parameters(
            SpfParameters::verify_mail_from(*ip, "helo.example.org", "receiver", &sender),
        )));
        let theirs = match theirs.result() {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
            SpfResult::None => "none",
        };
        if ours.result.as_str() != theirs {
            bail!("SPF {ip} {domain}: ours {} mail-auth {theirs}", ours.result);
        }
    }
    let (t_ours, t_theirs) = duel(
        || {
            for (ip, domain) in &cases {
                black_box(scop_spf::check_host_with(
                    &zone,
                    scop_spf::Request::mail_from(*ip, format!("user@{domain}"), "helo.example.org"),
                    scop_spf::Options::default(),
                ));
            }
        },
        || {
            for (ip, domain) in &cases {
                let sender = format!("user@{domain}");
                black_box(block_on(authenticator.verify_spf(caches.parameters(
                    SpfParameters::verify_mail_from(*ip, "helo.example.org", "receiver", &sender),
                ))));
            }
        },
    );
    line(
        "SPF check_host (in-memory)",
        "eval/s",
        per_sec(cases.len(), t_ours),
        per_sec(cases.len(), t_theirs),
        None,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_openssl_speed() {
        let text = "                  sign    verify    sign/s verify/s\n\
                    rsa 2048 bits 0.001330s 0.000023s    751.8  43386.6\n\
                    \x20                             sign    verify    sign/s verify/s\n\
                    \x20253 bits EdDSA (Ed25519)   0.0001s   0.0001s  19458.9   7055.1\n";
        let (rs, rv, es, ev) = super::parse_openssl_speed(text).unwrap();
        assert_eq!((rs, rv, es, ev), (751.8, 43386.6, 19458.9, 7055.1));
    }
}
