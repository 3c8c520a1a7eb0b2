//! The model file: round trip, canonical form, rejection of corrupt files.

use scop_spam::{Class, FORMAT_VERSION, MAGIC, Model, ModelError, Params};

fn sample_model() -> Model {
    let mut m = Model::new();
    m.train(
        b"Subject: lunch plans\r\n\r\nShall we meet at noon? \xe4\xbb\x8a\xe6\x97\xa5\r\n",
        Class::Ham,
    );
    m.train(
        b"Subject: project status\r\n\r\nThe build is green again.\r\n",
        Class::Ham,
    );
    m.train(
        b"Subject: WIN money\r\n\r\nClaim your prize at http://win.example/now\r\n",
        Class::Spam,
    );
    m
}

#[test]
fn round_trip_is_exact_and_canonical() {
    let m = sample_model();
    let bytes = m.to_bytes();
    assert_eq!(&bytes[..8], MAGIC);
    let back = Model::from_bytes(&bytes).expect("load");
    assert_eq!(back.messages(), m.messages());
    assert_eq!(back.token_count(), m.token_count());
    assert_eq!(back.params(), m.params());
    for t in ["lunch", "subject:win", "url:win.example"] {
        assert_eq!(back.token(t), m.token(t), "{t}");
    }
    assert_eq!(back.to_bytes(), bytes);
    let msg = b"Subject: win\r\n\r\nclaim the prize\r\n";
    assert_eq!(back.classify(msg), m.classify(msg));
}

#[test]
fn params_are_stored() {
    let params = Params {
        s: 0.3,
        x: 0.55,
        min_dev: 0.1,
        ham_cutoff: 0.2,
        spam_cutoff: 0.95,
        dependence: 2.5,
        max_clues: 42,
    };
    let mut m = Model::with_params(params).expect("valid");
    m.train(b"Subject: a\r\n\r\nhello\r\n", Class::Ham);
    assert_eq!(
        *Model::from_bytes(&m.to_bytes()).expect("load").params(),
        params
    );
    assert!(Model::with_params(Params { x: 1.5, ..params }).is_none());
    assert!(!m.set_params(Params {
        ham_cutoff: 0.99,
        spam_cutoff: 0.5,
        ..params
    }));
}

#[test]
fn empty_model_round_trips() {
    let m = Model::new();
    let back = Model::from_bytes(&m.to_bytes()).expect("load");
    assert_eq!(back.token_count(), 0);
    assert_eq!(back.classify(b"Subject: x\r\n\r\ny\r\n").score, 0.5);
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = sample_model().to_bytes();
    for len in 0..bytes.len() {
        assert!(
            Model::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len} bytes accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Model::from_bytes(&longer).is_err());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let bytes = sample_model().to_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                Model::from_bytes(&b).is_err(),
                "flip of bit {bit} of byte {i} accepted"
            );
        }
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let bytes = sample_model().to_bytes();
    assert_eq!(
        Model::from_bytes(b"not a model at all").unwrap_err(),
        ModelError::BadMagic
    );
    let mut v = bytes.clone();
    v[8] = 9;
    assert_eq!(
        Model::from_bytes(&v).unwrap_err(),
        ModelError::UnsupportedVersion {
            found: 9,
            supported: FORMAT_VERSION
        }
    );
    let mut v = bytes.clone();
    let mid = v.len() / 2;
    v[mid] ^= 0x55;
    assert_eq!(Model::from_bytes(&v).unwrap_err(), ModelError::BadChecksum);
    assert!(matches!(
        Model::from_bytes(&bytes[..20]).unwrap_err(),
        ModelError::Truncated { .. }
    ));
}

/// A file with a valid checksum but inconsistent content is still rejected.
#[test]
fn valid_checksum_bad_content_is_rejected() {
    let mut bytes = sample_model().to_bytes();
    // Announce more tokens than there are.
    let n = u32::from_le_bytes(bytes[72..76].try_into().expect("4 bytes"));
    bytes[72..76].copy_from_slice(&(n + 1).to_le_bytes());
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    assert!(Model::from_bytes(&bytes).is_err());
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Recomputes the trailing checksum after an edit.
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

/// Format version 2 stores keys and shortest-form counts: a file from
/// version 1, a count in a longer LEB128 form, or repeated keys are
/// rejected even under a valid checksum.
#[test]
fn version_2_records_are_checked() {
    let bytes = sample_model().to_bytes();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION);
    let mut v1 = bytes.clone();
    v1[8..10].copy_from_slice(&1u16.to_le_bytes());
    reseal(&mut v1);
    assert_eq!(
        Model::from_bytes(&v1).unwrap_err(),
        ModelError::UnsupportedVersion {
            found: 1,
            supported: FORMAT_VERSION
        }
    );
    // Records start at byte 76; the sample's counts are all below 128, so
    // each record is a key and two one-byte counts.
    assert!(bytes[84] < 0x80 && bytes[85] < 0x80);
    let mut long_count = bytes.clone();
    long_count[84] |= 0x80;
    long_count.insert(85, 0);
    reseal(&mut long_count);
    assert!(matches!(
        Model::from_bytes(&long_count).unwrap_err(),
        ModelError::Invalid { .. }
    ));
    let mut repeated = bytes.clone();
    let first_key: Vec<u8> = repeated[76..84].to_vec();
    repeated[86..94].copy_from_slice(&first_key);
    reseal(&mut repeated);
    assert!(matches!(
        Model::from_bytes(&repeated).unwrap_err(),
        ModelError::Invalid { .. }
    ));
}
