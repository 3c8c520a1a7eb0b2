//! Entry points for the cargo-fuzz targets (wired by the workspace's `fuzz/`
//! crate). Each must never panic on any input.

use crate::Model;
use crate::limits::{MAX_TOKEN_LEN, MAX_TOKENS_PER_MESSAGE};

/// Tokenizes arbitrary bytes and checks the token bounds.
pub fn tokenize(data: &[u8]) {
    let features = crate::tokenize(data);
    assert!(features.len() <= MAX_TOKENS_PER_MESSAGE);
    assert_eq!(features.tokens().len(), features.keys().len());
    for (t, &k) in features.tokens().zip(features.keys()) {
        assert!(!t.is_empty() && t.len() <= MAX_TOKEN_LEN, "token {t:?}");
        assert_eq!(crate::token_key(t.as_bytes()), k, "key of {t:?}");
    }
    let distinct: std::collections::HashSet<&str> = features.tokens().collect();
    assert_eq!(distinct.len(), features.len(), "repeated token");
}

/// Loads arbitrary bytes as a model file; an accepted file must re-encode to
/// the same bytes (the format is canonical) and classify without panicking.
pub fn load_model(data: &[u8]) {
    if let Ok(model) = Model::from_bytes(data) {
        assert_eq!(
            model.to_bytes(),
            data,
            "model file encoding is not canonical"
        );
        let verdict = model.classify(b"Subject: x\r\n\r\nhello\r\n");
        assert!((0.0..=1.0).contains(&verdict.score));
    }
}
