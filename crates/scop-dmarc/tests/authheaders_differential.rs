//! Differential test against authheaders 0.16.3 (PyPI), with pyspf for SPF
//! and dkimpy for DKIM: the same messages (signed by scop-dkim) and the same
//! in-memory DNS go to both sides, and the `dmarc=`, `spf=` and `dkim=`
//! results are compared. Every difference must be listed in
//! [`EXPLAINED`] with its reason; any other difference fails the test.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use scop_dkim::{KeyKind, Signer, SigningKey, VerifyOptions, sign_message, verify_message};
use scop_dmarc::{
    AuthenticationResults, DmarcOutput, DnsAnswer, Options, Query, QueryType, SpfAuth,
    check_message,
};

const NOW: u64 = 1_750_000_000;

/// Cases where authheaders and scop-dmarc differ on purpose.
const EXPLAINED: &[(&str, &str)] = &[
    (
        "invalid-p-no-rua",
        "RFC 7489 6.6.3 step 6: a record without a valid p (and no valid rua) means no DMARC \
         processing, so ours is `none`; authheaders does not validate p and reports `fail`",
    ),
    (
        "null-mailfrom-helo-aligned",
        "RFC 7489 3.1.2: with a null MAIL FROM the SPF identifier is the HELO name, aligned \
         here, so ours is `pass`; authheaders 0.16.3 raises TypeError in get_domain_part(None) \
         when SPF passes for a null MAIL FROM (it only aligns smtp.mailfrom), so it gives no \
         result at all",
    ),
    (
        "several-from-domains",
        "our documented 6.6.1 choice: several From domains are a `permerror` (reject); \
         authheaders 0.16.3 means to evaluate each domain and keep the strictest failing \
         policy, but raises AttributeError ('NoneType' has no 'quote_if_needed') on the way",
    ),
    (
        "second-signature-aligned",
        "authheaders verifies only the first DKIM-Signature (third-party, passes but not \
         aligned); ours verifies every signature and the second (aligned) one passes",
    ),
    (
        "several-dmarc-records",
        "RFC 7489 6.6.3 step 5: two DMARC records at one name means no DMARC processing \
         (`none`); our in-memory dnsfunc hands authheaders only the first, which it applies",
    ),
];

/// Cases where the applied policy (`policy.dmarc`, compared when both
/// results are `fail`) differs on purpose.
const EXPLAINED_POLICY: &[(&str, &str)] = &[
    (
        "org-domain-uses-p",
        "RFC 7489 6.6.3: the record was found at the author domain itself, so `p` applies \
         (quarantine); authheaders 0.16.3 sets orgdomain = from_domain in that case and then \
         applies `sp` (none) whenever orgdomain is set",
    ),
    (
        "bis-intermediate-record",
        "DMARCbis policy discovery stops at the first record walking up from the author \
         domain (_dmarc.b.example.com, p=quarantine); authheaders' tree walk keeps the record \
         nearest the root (_dmarc.example.com, p=none) as the policy record",
    ),
];

#[derive(Clone, Default)]
struct Zone {
    txt: BTreeMap<String, Vec<Vec<String>>>,
    a: BTreeMap<String, Vec<String>>,
}

impl Zone {
    fn txt(&mut self, name: &str, value: &str) -> &mut Self {
        // Split long values into 255-byte strings like a real zone.
        let chunks = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        self.txt.entry(name.to_string()).or_default().push(chunks);
        self
    }
    fn a(&mut self, name: &str, ip: &str) -> &mut Self {
        self.a.entry(name.to_string()).or_default().push(ip.into());
        self
    }
    fn exists(&self, name: &str) -> bool {
        self.txt.contains_key(name) || self.a.contains_key(name)
    }
    fn json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        let names: std::collections::BTreeSet<&String> =
            self.txt.keys().chain(self.a.keys()).collect();
        for n in names {
            map.insert(
                n.clone(),
                serde_json::json!({
                    "TXT": self.txt.get(n).cloned().unwrap_or_default(),
                    "A": self.a.get(n).cloned().unwrap_or_default(),
                }),
            );
        }
        serde_json::Value::Object(map)
    }
    fn joined_txt(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        self.txt
            .get(name)
            .map(|recs| recs.iter().map(|r| r.concat().into_bytes()).collect())
    }
}

impl scop_spf::Resolver for Zone {
    fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
        use scop_spf::{DnsAnswer as A, QueryType as T, RData};
        if !self.exists(&q.name) {
            return A::NxDomain;
        }
        let records: Vec<RData> = match q.qtype {
            T::Txt => self.txt.get(&q.name).map_or(vec![], |recs| {
                recs.iter()
                    .map(|r| RData::Txt(r.iter().map(|s| s.as_bytes().to_vec()).collect()))
                    .collect()
            }),
            T::A => self.a.get(&q.name).map_or(vec![], |ips| {
                ips.iter().map(|ip| RData::A(ip.parse().unwrap())).collect()
            }),
            _ => vec![],
        };
        if records.is_empty() {
            A::NoData
        } else {
            A::Records(records)
        }
    }
}

impl scop_dmarc::Resolver for Zone {
    fn lookup(&self, q: &Query) -> DnsAnswer {
        if !self.exists(&q.name) {
            return DnsAnswer::NxDomain;
        }
        match q.qtype {
            QueryType::Txt => match self.joined_txt(&q.name) {
                Some(r) => DnsAnswer::Records(r),
                None => DnsAnswer::NoData,
            },
            QueryType::A => match self.a.get(&q.name) {
                Some(ips) => DnsAnswer::Records(ips.iter().map(|_| vec![]).collect()),
                None => DnsAnswer::NoData,
            },
        }
    }
}

struct Case {
    name: &'static str,
    message: Vec<u8>,
    ip: String,
    mail_from: String,
    helo: String,
    zone: Zone,
    /// DMARCbis tree walk (`dmarcbis=True` for authheaders).
    bis: bool,
}

struct Keys {
    rsa: SigningKey,
    ed: SigningKey,
}

fn key_copy(k: &SigningKey) -> SigningKey {
    SigningKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap()
}

fn message(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: Bob <bob@receiver.example.net>\r\nSubject: {subject}\r\n\
         Date: Mon, 16 Jun 2025 10:00:00 +0000\r\nMessage-ID: <{subject}@scop.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         To be, or not to be, that is the question:\r\nWhether 'tis nobler in the mind \
         to suffer\r\nThe slings and arrows of outrageous fortune.\r\n"
    )
    .into_bytes()
}

/// Signs with `key` for `domain`/`selector` and publishes the key.
fn sign(msg: &[u8], key: &SigningKey, domain: &str, selector: &str, zone: &mut Zone) -> Vec<u8> {
    zone.txt(
        &format!("{selector}._domainkey.{domain}"),
        &key.dns_txt().unwrap(),
    );
    let signer = Signer::new(key_copy(key), domain, selector).unwrap();
    sign_message(&[signer], msg, NOW).unwrap()
}

fn case(name: &'static str, message: Vec<u8>, mail_from: &str, helo: &str, zone: Zone) -> Case {
    Case {
        name,
        message,
        ip: "192.0.2.10".into(),
        mail_from: mail_from.into(),
        helo: helo.into(),
        zone,
        bis: false,
    }
}

/// SPF records that authorize (or not) the client 192.0.2.10.
fn spf_zone(z: &mut Zone) {
    z.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("bounce.example.com", "v=spf1 ip4:192.0.2.10 -all")
        .txt("example.org", "v=spf1 -all")
        .txt("esp.example.net", "v=spf1 ip4:192.0.2.10 -all")
        .txt("soft.example.com", "v=spf1 ~all")
        .txt("mx.example.com", "v=spf1 a -all")
        .a("mx.example.com", "192.0.2.10")
        .a("example.com", "192.0.2.1")
        .a("sub.example.com", "192.0.2.1")
        .a("news.example.org", "192.0.2.1")
        .a("a.example.co.uk", "192.0.2.1")
        .txt("example.co.uk", "v=spf1 ip4:192.0.2.10 -all")
        .txt("other.co.uk", "v=spf1 ip4:192.0.2.10 -all");
}

fn cases(keys: &Keys) -> Vec<Case> {
    let mut out = Vec::new();
    let base = || {
        let mut z = Zone::default();
        spf_zone(&mut z);
        z
    };
    let with_dmarc = |domain: &str, record: &str| {
        let mut z = base();
        z.txt(&format!("_dmarc.{domain}"), record);
        z
    };

    // 1. DKIM aligned (strict), SPF aligned: pass.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject; adkim=s; aspf=s");
    let m = sign(
        &message("a@example.com", "c1"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "dkim-strict-aligned",
        m,
        "a@example.com",
        "mx.example.com",
        z,
    ));

    // 2. DKIM d=example.com, From sub.example.com, relaxed: pass.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    let m = sign(
        &message("a@sub.example.com", "c2"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "dkim-relaxed-subdomain",
        m,
        "a@example.org",
        "mx.example.com",
        z,
    ));

    // 3. Same with adkim=s and an SPF fail: fail.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject; adkim=s");
    let m = sign(
        &message("a@sub.example.com", "c3"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "dkim-strict-unaligned",
        m,
        "a@example.org",
        "mx.example.com",
        z,
    ));

    // 4. Unsigned, SPF pass for bounce.example.com, relaxed: pass.
    let z = with_dmarc("example.com", "v=DMARC1; p=quarantine");
    out.push(case(
        "spf-relaxed-aligned",
        message("a@example.com", "c4"),
        "b@bounce.example.com",
        "mx.example.com",
        z,
    ));

    // 5. Same with aspf=s: fail.
    let z = with_dmarc("example.com", "v=DMARC1; p=quarantine; aspf=s");
    out.push(case(
        "spf-strict-unaligned",
        message("a@example.com", "c5"),
        "b@bounce.example.com",
        "mx.example.com",
        z,
    ));

    // 6. SPF pass for an unrelated domain: fail.
    let z = with_dmarc("example.com", "v=DMARC1; p=reject");
    out.push(case(
        "spf-pass-unaligned",
        message("a@example.com", "c6"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 7. No DMARC record: none.
    let mut z = base();
    let m = sign(
        &message("a@example.com", "c7"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case("no-record", m, "a@example.com", "mx.example.com", z));

    // 8. Subdomain policy from the organizational domain.
    let mut z = with_dmarc("example.org", "v=DMARC1; p=none; sp=reject");
    let m = sign(
        &message("n@news.example.org", "c8"),
        &keys.rsa,
        "esp.example.net",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "subdomain-policy-fail",
        m,
        "n@news.example.org",
        "mx.example.com",
        z,
    ));

    // 9. Body modified after signing, SPF fail: fail.
    let mut z = with_dmarc("example.org", "v=DMARC1; p=reject");
    let mut m = sign(
        &message("a@example.org", "c9"),
        &keys.rsa,
        "example.org",
        "rsa1",
        &mut z,
    );
    m.extend_from_slice(b"Appended by a forwarder.\r\n");
    out.push(case(
        "broken-signature",
        m,
        "a@example.org",
        "mx.example.com",
        z,
    ));

    // 10. Third-party DKIM and SPF: fail.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    let m = sign(
        &message("a@example.com", "c10"),
        &keys.rsa,
        "esp.example.net",
        "esp",
        &mut z,
    );
    out.push(case(
        "third-party-only",
        m,
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 11. DKIM key missing, SPF aligned: pass.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    let m = sign(
        &message("a@example.com", "c11"),
        &keys.rsa,
        "example.com",
        "gone",
        &mut z,
    );
    z.txt.remove("gone._domainkey.example.com");
    out.push(case(
        "missing-key-spf-aligned",
        m,
        "b@bounce.example.com",
        "mx.example.com",
        z,
    ));

    // 12. Multi-label public suffix: relaxed alignment within example.co.uk.
    let mut z = with_dmarc("a.example.co.uk", "v=DMARC1; p=reject");
    let m = sign(
        &message("a@a.example.co.uk", "c12"),
        &keys.rsa,
        "example.co.uk",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "psl-co-uk-aligned",
        m,
        "x@other.co.uk",
        "mx.example.com",
        z,
    ));

    // 13. Unaligned across co.uk: other.co.uk is a different organization.
    let z = with_dmarc("example.co.uk", "v=DMARC1; p=reject");
    out.push(case(
        "psl-co-uk-unaligned",
        message("a@example.co.uk", "c13"),
        "x@other.co.uk",
        "mx.example.com",
        z,
    ));

    // 14. A record with an invalid p and no rua.
    let z = with_dmarc("example.com", "v=DMARC1; p=bogus");
    out.push(case(
        "invalid-p-no-rua",
        message("a@example.com", "c14"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 15. A TXT record that is not DMARC (v= not first): none.
    let z = with_dmarc("example.com", "p=reject; v=DMARC1");
    out.push(case(
        "version-not-first",
        message("a@example.com", "c15"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 16. Ed25519-only signature, aligned: pass.
    let mut z = with_dmarc("example.org", "v=DMARC1; p=reject; adkim=s");
    let m = sign(
        &message("a@example.org", "c16"),
        &keys.ed,
        "example.org",
        "ed1",
        &mut z,
    );
    out.push(case(
        "ed25519-aligned",
        m,
        "a@example.org",
        "mx.example.com",
        z,
    ));

    // 17. Null MAIL FROM, HELO passes SPF and is aligned.
    let z = with_dmarc("example.com", "v=DMARC1; p=reject");
    out.push(case(
        "null-mailfrom-helo-aligned",
        message("a@example.com", "c17"),
        "",
        "mx.example.com",
        z,
    ));

    // 18. np for a non-existent subdomain (result fail either way).
    let z = with_dmarc("example.com", "v=DMARC1; p=none; sp=none; np=reject");
    out.push(case(
        "np-nonexistent",
        message("a@ghost.example.com", "c18"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 19. Several From domains.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    z.txt("_dmarc.example.org", "v=DMARC1; p=none");
    let m = sign(
        &message("a@example.com, b@example.org", "c19"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "several-from-domains",
        m,
        "a@example.com",
        "mx.example.com",
        z,
    ));

    // 20. pct=0: still a fail result (only the disposition changes).
    let z = with_dmarc("example.com", "v=DMARC1; p=reject; pct=0");
    out.push(case(
        "pct-zero",
        message("a@example.com", "c20"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 21. Two signatures: third-party first, aligned second.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    let m = sign(
        &message("a@example.com", "c21"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    let m = sign(&m, &keys.ed, "esp.example.net", "ed1", &mut z);
    out.push(case(
        "second-signature-aligned",
        m,
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 22. SPF softfail for an aligned domain: fail.
    let z = with_dmarc("example.com", "v=DMARC1; p=quarantine");
    out.push(case(
        "spf-softfail-aligned",
        message("a@example.com", "c22"),
        "b@soft.example.com",
        "mx.example.com",
        z,
    ));

    // 23. Upper-case From domain, record in two TXT strings: pass.
    let mut z = base();
    z.txt.insert(
        "_dmarc.example.com".into(),
        vec![vec!["v=DMARC1; ".into(), "p=reject".into()]],
    );
    let m = sign(
        &message("A <a@EXAMPLE.COM>", "c23"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    out.push(case(
        "uppercase-from-split-txt",
        m,
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 24. Two DMARC records at one name.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    z.txt("_dmarc.example.com", "v=DMARC1; p=none");
    out.push(case(
        "several-dmarc-records",
        message("a@example.com", "c24"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 25. Org-domain record with sp, From at the org domain itself uses p.
    let mut z = with_dmarc("example.org", "v=DMARC1; p=quarantine; sp=none");
    let m = sign(
        &message("a@example.org", "c25"),
        &keys.ed,
        "esp.example.net",
        "ed1",
        &mut z,
    );
    out.push(case(
        "org-domain-uses-p",
        m,
        "b@esp.example.net",
        "mx.example.com",
        z,
    ));

    // 26. Relaxed SPF via the HELO-independent mailfrom of a deep subdomain.
    let mut z = with_dmarc("example.com", "v=DMARC1; p=reject");
    z.txt("a.b.c.example.com", "v=spf1 ip4:192.0.2.10 -all");
    out.push(case(
        "spf-deep-subdomain-relaxed",
        message("x@sub.example.com", "c26"),
        "b@a.b.c.example.com",
        "mx.example.com",
        z,
    ));

    // DMARCbis tree walk (both sides in their DMARCbis mode).
    let mut z = base();
    z.txt("_dmarc.b.example.com", "v=DMARC1; p=quarantine")
        .txt("_dmarc.example.com", "v=DMARC1; p=none")
        .a("a.b.example.com", "192.0.2.1");
    let mut c = case(
        "bis-intermediate-record",
        message("x@a.b.example.com", "c27"),
        "b@esp.example.net",
        "mx.example.com",
        z,
    );
    c.bis = true;
    out.push(c);
    let mut z = base();
    z.txt("_dmarc.example.com", "v=DMARC1; p=reject");
    let m = sign(
        &message("x@a.b.example.com", "c28"),
        &keys.rsa,
        "example.com",
        "rsa1",
        &mut z,
    );
    let mut c = case(
        "bis-walk-aligned-pass",
        m,
        "b@esp.example.net",
        "mx.example.com",
        z,
    );
    c.bis = true;
    out.push(c);
    let mut c = case(
        "bis-no-record",
        message("x@a.b.c.d.example.org", "c29"),
        "b@esp.example.net",
        "mx.example.com",
        base(),
    );
    c.bis = true;
    out.push(c);

    out
}

/// Our results: (spf, first dkim, dmarc output).
fn ours(c: &Case) -> (String, Option<String>, DmarcOutput) {
    let ip: IpAddr = c.ip.parse().unwrap();
    let request = scop_spf::Request::mail_from(ip, c.mail_from.clone(), c.helo.clone());
    let options = scop_spf::Options {
        receiver_host: "receiver".into(),
        now_unix: NOW,
        ..scop_spf::Options::default()
    };
    let spf = scop_spf::check_host_with(&c.zone, request.clone(), options);
    let dkim = verify_message(&c.message, VerifyOptions::at(NOW + 60), |name| {
        match c.zone.joined_txt(&name.to_ascii_lowercase()) {
            Some(r) => scop_dkim::DnsAnswer::Txt(r),
            None => scop_dkim::DnsAnswer::NxDomain,
        }
    });
    let first_dkim = dkim
        .iter()
        .find(|d| d.domain.is_some())
        .map(|d| d.result.as_str().to_string());
    let (_, out) = check_message(
        &c.zone,
        &c.message,
        Some(SpfAuth::from_spf(&request, &spf)),
        &dkim,
        Options::default().tree_walk(c.bis),
    );
    (spf.result.as_str().to_string(), first_dkim, out)
}

fn authheaders(cases: &[Case]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scop-dmarc-authheaders");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "message": c.message.iter().map(|&b| b as char).collect::<String>(),
                "ip": c.ip,
                "mail_from": c.mail_from,
                "helo": c.helo,
                "zone": c.zone.json(),
                "bis": c.bis,
            })
        })
        .collect();
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::Value::Array(manifest).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authheaders_oracle.py");
    let out = Command::new(scop_testkit::python())
        .arg(script)
        .arg(&path)
        .output()
        .expect("run the authheaders oracle");
    assert!(
        out.status.success(),
        "authheaders oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

#[test]
fn dmarc_results_agree_with_authheaders() {
    let keys = Keys {
        rsa: SigningKey::generate(KeyKind::Rsa2048).unwrap(),
        ed: SigningKey::generate(KeyKind::Ed25519).unwrap(),
    };
    let cases = cases(&keys);
    assert!(cases.len() >= 20, "suite must not shrink");
    let theirs = authheaders(&cases);
    assert_eq!(theirs.len(), cases.len());
    let (mut dmarc_same, mut spf_same, mut dkim_same, mut dkim_compared) = (0, 0, 0, 0);
    let (mut policy_same, mut policy_compared) = (0, 0);
    let mut unexplained = Vec::new();
    let mut explained_seen = Vec::new();
    for (c, header) in cases.iter().zip(&theirs) {
        let (spf, dkim, out) = ours(c);
        // An exception inside authheaders is a (listed) result of its own:
        // nothing to compare for that case but the DMARC line.
        let ar = if header.starts_with("EXCEPTION") {
            AuthenticationResults::new("receiver")
                .push(scop_dmarc::MethodResult::new("dmarc", "exception"))
                .push(scop_dmarc::MethodResult::new("spf", &spf))
        } else {
            AuthenticationResults::parse(header)
                .unwrap_or_else(|e| panic!("{}: cannot parse {header:?}: {e}", c.name))
        };
        let their_dmarc = ar.result("dmarc").map_or("none", |r| r.result.as_str());
        let their_spf = ar.result("spf").map_or("none", |r| r.result.as_str());
        let their_dkim = ar.result("dkim").map(|r| r.result.as_str());
        println!(
            "{:28} ours dmarc={} spf={} dkim={} dis={} | authheaders {}",
            c.name,
            out.result,
            spf,
            dkim.as_deref().unwrap_or("-"),
            out.disposition,
            header.replace("\r\n", " ").replace('\n', " ")
        );
        if spf == their_spf {
            spf_same += 1;
        } else {
            unexplained.push(format!("{}: spf ours={spf} theirs={their_spf}", c.name));
        }
        // authheaders reports dkim=fail for any non-passing first signature
        // (permerror, no key, ...): compare pass / not pass.
        if let (Some(ours_d), Some(theirs_d)) = (&dkim, their_dkim) {
            dkim_compared += 1;
            if (ours_d == "pass") == (theirs_d == "pass") {
                dkim_same += 1;
            } else {
                unexplained.push(format!("{}: dkim ours={ours_d} theirs={theirs_d}", c.name));
            }
        }
        if out.result.as_str() == "fail" && their_dmarc == "fail" {
            policy_compared += 1;
            let ours_p = out.policy.map_or("", |p| p.as_str());
            let theirs_p = ar
                .result("dmarc")
                .and_then(|r| r.property("policy", "dmarc"))
                .unwrap_or("");
            let listed = EXPLAINED_POLICY.iter().any(|(n, _)| *n == c.name);
            if ours_p == theirs_p {
                policy_same += 1;
                assert!(
                    !listed,
                    "{}: policy listed as a difference but agrees",
                    c.name
                );
            } else if !listed {
                unexplained.push(format!(
                    "{}: policy.dmarc ours={ours_p} theirs={theirs_p}",
                    c.name
                ));
            }
        }
        if out.result.as_str() == their_dmarc {
            dmarc_same += 1;
            assert!(
                !EXPLAINED.iter().any(|(n, _)| *n == c.name),
                "{}: listed as a difference but agrees",
                c.name
            );
        } else if EXPLAINED.iter().any(|(n, _)| *n == c.name) {
            explained_seen.push(c.name);
        } else {
            unexplained.push(format!(
                "{}: dmarc ours={} theirs={their_dmarc}",
                c.name, out.result
            ));
        }
    }
    println!(
        "authheaders agreement: dmarc {dmarc_same}/{n}, spf {spf_same}/{n}, dkim (first signature, \
         pass/not pass) {dkim_same}/{dkim_compared}, policy.dmarc when both fail \
         {policy_same}/{policy_compared}; explained dmarc differences: {}",
        explained_seen.len(),
        n = cases.len()
    );
    for (name, why) in EXPLAINED.iter().chain(EXPLAINED_POLICY) {
        println!("  {name}: {why}");
    }
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n")
    );
    assert_eq!(explained_seen.len(), EXPLAINED.len());
    assert_eq!(dmarc_same + explained_seen.len(), cases.len());
}
