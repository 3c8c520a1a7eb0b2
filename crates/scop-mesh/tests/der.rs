//! The certificate walk never panics, whatever the bytes.

mod common;

use proptest::prelude::*;
use rustls::pki_types::CertificateDer;
use scop_mesh::{ExtraNames, Role, der, role_of_certificate};

fn sample() -> Vec<u8> {
    let ca = common::new_ca();
    let extra = ExtraNames::new(&["relay.example.org"], &["192.0.2.1".parse().expect("ip")])
        .expect("extra");
    ca.issue(Role::Relay, common::current(), &extra)
        .expect("issue")
        .certificate()
        .to_vec()
}

#[test]
fn a_real_certificate_reads_back() {
    let bytes = sample();
    let view = der::parse(&bytes).expect("parse");
    assert_eq!(view.uris, vec![b"scop:role:relay".as_slice()]);
    assert_eq!(
        view.dns_names,
        vec![
            b"relay.mesh.scop.invalid".as_slice(),
            b"relay.example.org".as_slice()
        ]
    );
    assert_eq!(view.ips, vec![[192u8, 0, 2, 1].as_slice()]);
    assert_eq!(
        role_of_certificate(&CertificateDer::from(bytes)).expect("role"),
        Role::Relay
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_certificates_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample_cached().clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = der::parse(&bytes);
        let _ = role_of_certificate(&CertificateDer::from(bytes));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = der::parse(&bytes);
        let _ = role_of_certificate(&CertificateDer::from(bytes));
    }
}

fn sample_cached() -> &'static Vec<u8> {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(sample)
}
