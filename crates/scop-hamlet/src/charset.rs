//! The charsets used in headers (RFC 2047) and bodies, and the pre-encoded
//! text tables built once per process.

use std::sync::OnceLock;

use encoding_rs::Encoding;

use crate::features::Feature;
use crate::text::{LATIN1, NAMES, SNIPPETS};

/// A MIME charset the generator writes.
#[derive(Debug)]
pub(crate) struct Charset {
    /// Spellings of the charset name (MIME names are case-insensitive).
    pub(crate) names: &'static [&'static str],
    /// The encoder; `None` for ISO-8859-1, encoded by hand (encoding_rs maps
    /// the label to windows-1252).
    pub(crate) encoding: Option<&'static Encoding>,
    /// Whether encoded text is 7-bit (ISO-2022-JP).
    pub(crate) seven_bit: bool,
    pub(crate) header_feature: Feature,
    pub(crate) body_feature: Feature,
}

pub(crate) const CHARSETS: &[Charset] = &[
    cs(
        &["utf-8", "UTF-8", "Utf-8"],
        Some(encoding_rs::UTF_8),
        Feature::HeaderUtf8,
        Feature::BodyUtf8,
    ),
    cs(
        &["iso-8859-1", "ISO-8859-1"],
        None,
        Feature::HeaderLatin1,
        Feature::BodyLatin1,
    ),
    cs(
        &["iso-8859-2", "ISO-8859-2"],
        Some(encoding_rs::ISO_8859_2),
        Feature::HeaderLatin2,
        Feature::BodyLatin2,
    ),
    cs(
        &["iso-8859-5", "ISO-8859-5"],
        Some(encoding_rs::ISO_8859_5),
        Feature::HeaderCyrillic,
        Feature::BodyCyrillic,
    ),
    cs(
        &["iso-8859-7", "ISO-8859-7"],
        Some(encoding_rs::ISO_8859_7),
        Feature::HeaderGreek,
        Feature::BodyGreek,
    ),
    cs(
        &["iso-8859-15", "ISO-8859-15"],
        Some(encoding_rs::ISO_8859_15),
        Feature::HeaderLatin9,
        Feature::BodyLatin9,
    ),
    cs(
        &["windows-1251", "Windows-1251"],
        Some(encoding_rs::WINDOWS_1251),
        Feature::HeaderCp1251,
        Feature::BodyCp1251,
    ),
    cs(
        &["windows-1252", "Windows-1252"],
        Some(encoding_rs::WINDOWS_1252),
        Feature::HeaderCp1252,
        Feature::BodyCp1252,
    ),
    cs(
        &["koi8-r", "KOI8-R"],
        Some(encoding_rs::KOI8_R),
        Feature::HeaderKoi8r,
        Feature::BodyKoi8r,
    ),
    Charset {
        names: &["iso-2022-jp", "ISO-2022-JP"],
        encoding: Some(encoding_rs::ISO_2022_JP),
        seven_bit: true,
        header_feature: Feature::HeaderIso2022jp,
        body_feature: Feature::BodyIso2022jp,
    },
    cs(
        &["shift_jis", "Shift_JIS"],
        Some(encoding_rs::SHIFT_JIS),
        Feature::HeaderSjis,
        Feature::BodySjis,
    ),
    cs(
        &["euc-kr", "EUC-KR"],
        Some(encoding_rs::EUC_KR),
        Feature::HeaderEuckr,
        Feature::BodyEuckr,
    ),
    cs(
        &["gb2312", "GB2312"],
        Some(encoding_rs::GBK),
        Feature::HeaderGb2312,
        Feature::BodyGb2312,
    ),
    cs(
        &["gbk", "GBK"],
        Some(encoding_rs::GBK),
        Feature::HeaderGbk,
        Feature::BodyGbk,
    ),
    cs(
        &["big5", "Big5"],
        Some(encoding_rs::BIG5),
        Feature::HeaderBig5,
        Feature::BodyBig5,
    ),
];

const fn cs(
    names: &'static [&'static str],
    encoding: Option<&'static Encoding>,
    header_feature: Feature,
    body_feature: Feature,
) -> Charset {
    Charset {
        names,
        encoding,
        seven_bit: false,
        header_feature,
        body_feature,
    }
}

/// Encodes `text` into charset number `charset`, appending to `out`.
///
/// # Panics
/// If the text is not representable: the tables only pair texts with
/// charsets that represent them, and a unit test checks every pair.
pub(crate) fn encode_into(charset: usize, text: &str, out: &mut Vec<u8>) {
    match CHARSETS[charset].encoding {
        None => {
            debug_assert_eq!(charset, LATIN1);
            for c in text.chars() {
                let b = u8::try_from(u32::from(c)).expect("text not representable in ISO-8859-1");
                out.push(b);
            }
        }
        Some(enc) if enc == encoding_rs::UTF_8 => out.extend_from_slice(text.as_bytes()),
        Some(enc) => {
            let (bytes, _, unmappable) = enc.encode(text);
            assert!(!unmappable, "text not representable in {}", enc.name());
            out.extend_from_slice(&bytes);
        }
    }
}

/// Pre-encoded snippets, built once.
#[derive(Debug)]
pub(crate) struct Tables {
    /// For each charset: `(snippet index, encoded bytes)` of every snippet it
    /// represents.
    pub(crate) snippets: Vec<Vec<(usize, Vec<u8>)>>,
    /// For each charset: indexes into `NAMES` it represents.
    pub(crate) names: Vec<Vec<usize>>,
}

pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let snippets = (0..CHARSETS.len())
            .map(|c| {
                SNIPPETS
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.charsets.contains(&c))
                    .map(|(i, s)| {
                        let mut v = Vec::new();
                        encode_into(c, s.text, &mut v);
                        (i, v)
                    })
                    .collect()
            })
            .collect();
        let names = (0..CHARSETS.len())
            .map(|c| {
                (0..NAMES.len())
                    .filter(|&i| NAMES[i].1.contains(&c))
                    .collect()
            })
            .collect();
        Tables { snippets, names }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_representable_in_its_charsets() {
        let t = tables();
        for (c, list) in t.snippets.iter().enumerate() {
            assert!(!list.is_empty(), "no snippet for {}", CHARSETS[c].names[0]);
        }
        for (c, list) in t.names.iter().enumerate() {
            assert!(!list.is_empty(), "no name for {}", CHARSETS[c].names[0]);
            for &i in list {
                let mut v = Vec::new();
                encode_into(c, NAMES[i].0, &mut v);
            }
        }
        // Round trip through the decoder, which catches lossy encodings.
        for (c, list) in t.snippets.iter().enumerate() {
            for (i, bytes) in list {
                let dec = match CHARSETS[c].encoding {
                    None => bytes.iter().map(|&b| char::from(b)).collect::<String>(),
                    Some(e) => e.decode_without_bom_handling(bytes).0.into_owned(),
                };
                assert_eq!(dec, SNIPPETS[*i].text, "{}", CHARSETS[c].names[0]);
            }
        }
    }
}
