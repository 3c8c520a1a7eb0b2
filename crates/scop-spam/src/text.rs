//! Unicode word segmentation for the tokenizer.
//!
//! A word is a run of letters, digits and a few inner punctuation marks
//! (`' - _ . $ ! € £ %`), trimmed at both ends and lowercased. Scripts
//! written without spaces between words (Han, Hiragana, Katakana, Hangul)
//! are cut into overlapping character bigrams, so that CJK text yields
//! tokens instead of one giant "word" or nothing.

use crate::limits::MAX_WORD_CHARS;
use std::borrow::Cow;

/// One piece of segmented text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A lowercased word (or a `skip:` token standing for a too-long word),
    /// and whether it was written in capitals.
    Word(Cow<'a, str>, bool),
    /// A CJK character bigram (or a lone CJK character).
    Cjk(String),
}

/// Whether `c` belongs to a script written without spaces between words.
pub(crate) fn is_cjk(c: char) -> bool {
    let c = c as u32;
    c >= 0x1100
        && matches!(c,
            0x3040..=0x30FF      // Hiragana, Katakana
            | 0x31F0..=0x31FF    // Katakana phonetic extensions
            | 0x3400..=0x4DBF    // CJK extension A
            | 0x4E00..=0x9FFF    // CJK unified ideographs
            | 0xF900..=0xFAFF    // CJK compatibility ideographs
            | 0xFF66..=0xFF9F    // half-width Katakana
            | 0x1100..=0x11FF    // Hangul Jamo
            | 0x3130..=0x318F    // Hangul compatibility Jamo
            | 0xAC00..=0xD7AF    // Hangul syllables
            | 0x20000..=0x2FA1F  // CJK extensions B.. and compatibility supplement
        )
}

fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '\'' | '-' | '_' | '.' | '$' | '!' | '%')
    } else {
        c.is_alphanumeric() || matches!(c, '€' | '£')
    }
}

/// Normalises a raw word run: trims punctuation at the ends, collapses a
/// trailing run of `!`, lowercases; `None` when nothing useful is left.
fn normalise(raw: &str) -> Option<Cow<'_, str>> {
    let w = raw.trim_start_matches(['\'', '-', '_', '.', '!', '%']);
    let w = w.trim_end_matches(['\'', '-', '_', '.', '$', '€', '£']);
    let bang = w.ends_with('!');
    let w = w.trim_end_matches('!');
    let w = w.trim_end_matches(['\'', '-', '_', '.']);
    let chars = w.chars().count();
    if chars < 2 || !w.chars().any(char::is_alphanumeric) {
        return None;
    }
    if chars > MAX_WORD_CHARS {
        let first = w
            .chars()
            .next()
            .unwrap_or('?')
            .to_lowercase()
            .next()
            .unwrap_or('?');
        return Some(Cow::Owned(format!("skip:{first}:{}", chars / 10 * 10)));
    }
    let all_digits = w.chars().all(|c| c.is_ascii_digit());
    if all_digits && chars > 6 {
        return Some(Cow::Owned(format!("num:{chars}")));
    }
    let lower = !w.chars().any(char::is_uppercase);
    if lower && !bang {
        return Some(Cow::Borrowed(w));
    }
    if lower {
        // `w!` is a prefix of `raw` only when a single `!` followed.
        let end = raw.len()
            - raw
                .trim_start_matches(['\'', '-', '_', '.', '!', '%'])
                .len()
            + w.len();
        if raw.get(end..end + 1) == Some("!") {
            return Some(Cow::Borrowed(&raw[end - w.len()..end + 1]));
        }
    }
    let mut s = w.to_lowercase();
    if bang {
        s.push('!');
    }
    Some(Cow::Owned(s))
}

/// Whether a word is written in capitals (at least three letters, none
/// lowercase): `FREE`, `ACT`. The tokenizer adds a `caps:` token for it.
fn shouting(raw: &str) -> bool {
    let mut letters = 0;
    for c in raw.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_alphabetic() {
            letters += 1;
        }
    }
    letters >= 3
}

/// Cuts `text` into pieces, calling `out` for each in order. Stops early when
/// `out` returns `false`.
pub(crate) fn segment<'a>(text: &'a str, out: &mut dyn FnMut(Piece<'a>) -> bool) {
    let mut start: Option<usize> = None; // start of a word run
    let mut prev_cjk: Option<char> = None;
    let mut cjk_run = 0usize;
    for (i, c) in text.char_indices() {
        let cjk = is_cjk(c);
        // A word run ends at a CJK character or any non-word character.
        if (cjk || !is_word_char(c))
            && let Some(s) = start.take()
            && let Some(w) = normalise(&text[s..i])
            && !out(Piece::Word(w, shouting(&text[s..i])))
        {
            return;
        }
        if cjk {
            if let Some(p) = prev_cjk {
                let mut b = String::with_capacity(8);
                b.push(p);
                b.push(c);
                if !out(Piece::Cjk(b)) {
                    return;
                }
            }
            prev_cjk = Some(c);
            cjk_run += 1;
            continue;
        }
        // A lone CJK character is a token by itself.
        if cjk_run == 1
            && let Some(p) = prev_cjk
            && !out(Piece::Cjk(p.to_string()))
        {
            return;
        }
        prev_cjk = None;
        cjk_run = 0;
        if is_word_char(c) && start.is_none() {
            start = Some(i);
        }
    }
    if cjk_run == 1
        && let Some(p) = prev_cjk
        && !out(Piece::Cjk(p.to_string()))
    {
        return;
    }
    if let Some(s) = start
        && let Some(w) = normalise(&text[s..])
    {
        out(Piece::Word(w, shouting(&text[s..])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        segment(text, &mut |p| {
            v.push(match p {
                Piece::Word(w, _) => w.into_owned(),
                Piece::Cjk(w) => w,
            });
            true
        });
        v
    }

    #[test]
    fn latin_words() {
        assert_eq!(
            words("Hello, World! It's $100 -- a 'quoted' word."),
            ["hello", "world!", "it's", "$100", "quoted", "word"]
        );
        assert_eq!(words("Größe ÜBER straße"), ["größe", "über", "straße"]);
        assert_eq!(words("FREE!!!"), ["free!"]);
    }

    #[test]
    fn cjk_bigrams() {
        assert_eq!(
            words("無料で今すぐ"),
            ["無料", "料で", "で今", "今す", "すぐ"]
        );
        assert_eq!(
            words("안녕하세요 world"),
            ["안녕", "녕하", "하세", "세요", "world"]
        );
        assert_eq!(words("a 中 b"), ["中"]);
        assert_eq!(words("abc中文def"), ["abc", "中文", "def"]);
    }

    #[test]
    fn long_words_and_numbers() {
        assert_eq!(words(&"x".repeat(100)), ["skip:x:100"]);
        assert_eq!(words("12345678 1234"), ["num:8", "1234"]);
    }
}
