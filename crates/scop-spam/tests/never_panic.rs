//! The tokenizer and the model loader never panic, whatever the bytes.

use proptest::prelude::*;
use scop_spam::{Class, Model};

fn valid_model_bytes() -> Vec<u8> {
    let mut m = Model::new();
    m.train(b"Subject: hi\r\n\r\nhello world\r\n", Class::Ham);
    m.train(b"Subject: buy\r\n\r\ncheap pills\r\n", Class::Spam);
    m.to_bytes()
}

/// Message-looking inputs: header lines, MIME structure and HTML pieces.
fn messageish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Subject: =?utf-8?b?w6k=?= \xff\r\n".to_vec()),
        Just(b"Content-Type: multipart/mixed; boundary=\"b\"\r\n".to_vec()),
        Just(b"Content-Type: text/html; charset=shift_jis\r\n".to_vec()),
        Just(b"Content-Disposition: attachment; filename*=utf-8''a.pdf.exe\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"<a href='http://x.example/y'>&#x41;&#99999999;<!--".to_vec()),
        Just("中文テキスト한국어 ".as_bytes().to_vec()),
        Just(b"http://a@b:c/ www. mailto:@".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn tokenize_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        scop_spam::fuzz::tokenize(&data);
    }

    #[test]
    fn tokenize_messageish(data in messageish()) {
        scop_spam::fuzz::tokenize(&data);
    }

    #[test]
    fn load_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        scop_spam::fuzz::load_model(&data);
        let mut with_magic = b"SCOPSPAM\x01\x00".to_vec();
        with_magic.extend_from_slice(&data);
        scop_spam::fuzz::load_model(&with_magic);
    }

    #[test]
    fn load_mutated_model(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                          cut in any::<prop::sample::Index>()) {
        let mut bytes = valid_model_bytes();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        scop_spam::fuzz::load_model(&bytes);
        let at = cut.index(bytes.len());
        scop_spam::fuzz::load_model(&bytes[..at]);
    }
}
