//! Unicode word segmentation for the tokenizer.
//!
//! A word is a run of letters, digits and a few inner punctuation marks
//! (`' - _ . $ ! € £ %`), trimmed at both ends and lowercased. Scripts
//! written without spaces between words (Han, Hiragana, Katakana, Hangul)
//! are cut into overlapping character bigrams, so that CJK text yields
//! tokens instead of one giant "word" or nothing.

use crate::limits::MAX_WORD_CHARS;
use std::fmt::Write as _;

/// One piece of segmented text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A lowercased word (or a `skip:` token standing for a too-long word),
    /// and whether it was written in capitals.
    Word(&'a str, bool),
    /// A CJK character bigram (or a lone CJK character), a slice of the
    /// text.
    Cjk(&'a str),
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

/// Characters trimmed from the start of a word.
fn trim_start_char(c: char) -> bool {
    matches!(c, '\'' | '-' | '_' | '.' | '!' | '%')
}

/// Characters trimmed from the end of a word (before a final `!` run).
fn trim_end_char(c: char) -> bool {
    matches!(c, '\'' | '-' | '_' | '.' | '$' | '€' | '£')
}

/// Characters trimmed from the end of a word (after a final `!` run).
fn trim_inner_end_char(c: char) -> bool {
    matches!(c, '\'' | '-' | '_' | '.')
}

/// Normalises a raw word run: trims punctuation at the ends, collapses a
/// trailing run of `!`, lowercases; `None` when nothing useful is left. The
/// result borrows `raw` when it is already in normal form, else it is
/// written to `scratch`.
fn normalise<'s>(raw: &'s str, scratch: &'s mut String) -> Option<&'s str> {
    let w = raw.trim_start_matches(trim_start_char);
    let w = w.trim_end_matches(trim_end_char);
    let bang = w.ends_with('!');
    let w = w.trim_end_matches('!');
    let w = w.trim_end_matches(trim_inner_end_char);
    let ascii = w.is_ascii();
    let chars = if ascii { w.len() } else { w.chars().count() };
    if chars < 2 {
        return None;
    }
    let alnum = if ascii {
        w.bytes().any(|b| b.is_ascii_alphanumeric())
    } else {
        w.chars().any(char::is_alphanumeric)
    };
    if !alnum {
        return None;
    }
    scratch.clear();
    if chars > MAX_WORD_CHARS {
        let first = w
            .chars()
            .next()
            .unwrap_or('?')
            .to_lowercase()
            .next()
            .unwrap_or('?');
        let _ = write!(scratch, "skip:{first}:{}", chars / 10 * 10);
        return Some(scratch.as_str());
    }
    if chars > 6 && w.bytes().all(|b| b.is_ascii_digit()) {
        let _ = write!(scratch, "num:{chars}");
        return Some(scratch.as_str());
    }
    let upper = if ascii {
        w.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        w.chars().any(char::is_uppercase)
    };
    if !upper && !bang {
        return Some(w);
    }
    if !upper {
        scratch.push_str(w);
    } else if ascii {
        scratch.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        scratch.push_str(&w.to_lowercase());
    }
    if bang {
        scratch.push('!');
    }
    Some(scratch.as_str())
}

/// What the scan of an ASCII word run learnt about its bytes (see
/// [`CLASS`]).
#[derive(Clone, Copy, Default)]
struct RunStats {
    /// The union of the bytes' classes.
    flags: u8,
    digits: usize,
    letters: usize,
}

/// [`normalise`] and [`shouting`] together for a word run of ASCII bytes,
/// from the statistics its scan gathered: the same results, without
/// another pass over the word. The trimmed characters are neither letters
/// nor digits, so the statistics of the run are those of the trimmed word.
fn normalise_ascii<'s>(
    raw: &'s str,
    stats: RunStats,
    scratch: &'s mut String,
) -> Option<(&'s str, bool)> {
    let b = raw.as_bytes();
    let (mut s, mut e) = (0, b.len());
    while s < e && matches!(b[s], b'\'' | b'-' | b'_' | b'.' | b'!' | b'%') {
        s += 1;
    }
    while e > s && matches!(b[e - 1], b'\'' | b'-' | b'_' | b'.' | b'$') {
        e -= 1;
    }
    let bang = e > s && b[e - 1] == b'!';
    while e > s && b[e - 1] == b'!' {
        e -= 1;
    }
    while e > s && matches!(b[e - 1], b'\'' | b'-' | b'_' | b'.') {
        e -= 1;
    }
    let w = &raw[s..e];
    let chars = w.len();
    if chars < 2 || stats.flags & (DIGIT | UPPER | LOWER) == 0 {
        return None;
    }
    let caps = stats.flags & LOWER == 0 && stats.letters >= 3;
    let upper = stats.flags & UPPER != 0;
    scratch.clear();
    if chars > MAX_WORD_CHARS {
        let first = char::from(w.as_bytes()[0].to_ascii_lowercase());
        let _ = write!(scratch, "skip:{first}:{}", chars / 10 * 10);
        return Some((scratch.as_str(), caps));
    }
    if chars > 6 && stats.digits == chars {
        let _ = write!(scratch, "num:{chars}");
        return Some((scratch.as_str(), caps));
    }
    if !upper && !bang {
        return Some((w, caps));
    }
    if !upper {
        scratch.push_str(w);
    } else {
        scratch.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    }
    if bang {
        scratch.push('!');
    }
    Some((scratch.as_str(), caps))
}

/// Whether a word is written in capitals (at least three letters, none
/// lowercase): `FREE`, `ACT`. The tokenizer adds a `caps:` token for it.
fn shouting(raw: &str) -> bool {
    if raw.is_ascii() {
        let b = raw.as_bytes();
        return !b.iter().any(u8::is_ascii_lowercase)
            && b.iter().filter(|c| c.is_ascii_alphabetic()).count() >= 3;
    }
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

/// [`CLASS`] bit: the ASCII byte continues a word run.
const WORD: u8 = 1;
/// [`CLASS`] bit: an ASCII digit.
const DIGIT: u8 = 2;
/// [`CLASS`] bit: an ASCII capital letter.
const UPPER: u8 = 4;
/// [`CLASS`] bit: an ASCII small letter.
const LOWER: u8 = 8;

/// The class bits of every byte; 0 for bytes above 0x7F.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            WORD | DIGIT
        } else if c.is_ascii_uppercase() {
            WORD | UPPER
        } else if c.is_ascii_lowercase() {
            WORD | LOWER
        } else if matches!(c, b'\'' | b'-' | b'_' | b'.' | b'$' | b'!' | b'%') {
            WORD
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Cuts `text` into pieces, calling `out` for each in order. Stops early when
/// `out` returns `false`. `scratch` holds words that are not slices of the
/// text (lowercased, `skip:`, `num:`); its allocation is reused.
pub(crate) fn segment(text: &str, scratch: &mut String, mut out: impl FnMut(Piece<'_>) -> bool) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    // The previous character when it was CJK: its offset.
    let mut prev_cjk: Option<usize> = None;
    let mut cjk_run = 0usize;
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        // ASCII: no CJK, and the word-character test is a table lookup.
        let (len, cjk, word) = if b < 0x80 {
            (1, false, CLASS[usize::from(b)] & WORD != 0)
        } else {
            let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
                break;
            };
            let cjk = is_cjk(c);
            (c.len_utf8(), cjk, !cjk && is_word_char(c))
        };
        if cjk {
            if let Some(p) = prev_cjk
                && !out(Piece::Cjk(&text[p..i + len]))
            {
                return;
            }
            prev_cjk = Some(i);
            cjk_run += 1;
            i += len;
            continue;
        }
        // A lone CJK character is a token by itself.
        if cjk_run == 1
            && let Some(p) = prev_cjk
            && !out(Piece::Cjk(&text[p..i]))
        {
            return;
        }
        prev_cjk = None;
        cjk_run = 0;
        if !word {
            i += len;
            continue;
        }
        // A word run: up to a CJK character or any non-word character.
        let start = i;
        let mut ascii = true;
        let mut stats = RunStats::default();
        while i < n {
            let b = bytes[i];
            if b < 0x80 {
                let c = CLASS[usize::from(b)];
                if c & WORD == 0 {
                    break;
                }
                stats.flags |= c;
                stats.digits += usize::from(c & DIGIT != 0);
                stats.letters += usize::from(c & (UPPER | LOWER) != 0);
                i += 1;
            } else {
                match text.get(i..).and_then(|t| t.chars().next()) {
                    Some(c) if !is_cjk(c) && is_word_char(c) => {
                        ascii = false;
                        i += c.len_utf8();
                    }
                    _ => break,
                }
            }
        }
        let raw = &text[start..i];
        let piece = if ascii {
            normalise_ascii(raw, stats, scratch)
        } else {
            normalise(raw, scratch).map(|w| (w, shouting(raw)))
        };
        if let Some((w, caps)) = piece
            && !out(Piece::Word(w, caps))
        {
            return;
        }
    }
    if cjk_run == 1
        && let Some(p) = prev_cjk
    {
        out(Piece::Cjk(&text[p..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        segment(text, &mut String::new(), |p| {
            v.push(match p {
                Piece::Word(w, _) | Piece::Cjk(w) => w.to_string(),
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
