//! Tag=value lists (RFC 6376 section 3.2), shared by the `DKIM-Signature`
//! header field and the key record.

/// Most tags in one list.
pub const MAX_TAGS: usize = 64;

/// Why a tag list is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// A tag-spec without `=`, or an invalid tag name.
    #[error("malformed tag-spec")]
    Malformed,
    /// The same tag twice (section 3.2: "Tags with duplicate names MUST NOT
    /// occur").
    #[error("duplicate tag {0:?}")]
    Duplicate(String),
    /// More than [`MAX_TAGS`] tags.
    #[error("too many tags")]
    TooMany,
}

/// One `name=value` pair; the value has its surrounding whitespace removed
/// (inner folding whitespace is kept: each tag decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The tag name (case-sensitive, section 3.2).
    pub name: &'a str,
    /// The raw value.
    pub value: &'a [u8],
}

fn is_fws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_fws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_fws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_fws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Parses a tag list. A trailing `;` is allowed; an empty list is allowed.
pub fn parse_tags(list: &[u8]) -> Result<Vec<Tag<'_>>, TagError> {
    let mut tags: Vec<Tag<'_>> = Vec::new();
    let mut specs: Vec<&[u8]> = list.split(|&c| c == b';').collect();
    if specs.last().is_some_and(|s| trim_fws(s).is_empty()) {
        specs.pop();
    }
    for spec in specs {
        if tags.len() >= MAX_TAGS {
            return Err(TagError::TooMany);
        }
        let eq = memchr::memchr(b'=', spec).ok_or(TagError::Malformed)?;
        let name = trim_fws(&spec[..eq]);
        let valid = matches!(name.first(), Some(c) if c.is_ascii_alphabetic())
            && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if !valid {
            return Err(TagError::Malformed);
        }
        // Checked ASCII above.
        let name = std::str::from_utf8(name).map_err(|_| TagError::Malformed)?;
        if tags.iter().any(|t| t.name == name) {
            return Err(TagError::Duplicate(name.to_owned()));
        }
        tags.push(Tag {
            name,
            value: trim_fws(&spec[eq + 1..]),
        });
    }
    Ok(tags)
}

/// Removes all folding whitespace from a value.
pub(crate) fn strip_fws(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|c| !is_fws(*c)).collect()
}

/// Splits a colon-separated list (`h=`, key `h=`/`s=`, `q=`), trimming
/// whitespace around each item.
pub(crate) fn split_list(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    s.split(move |&c| c == sep).map(trim_fws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let t = parse_tags(b" v=1; a = rsa-sha256 ;\r\n\tb=ab\r\n cd;").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].name, "a");
        assert_eq!(t[1].value, b"rsa-sha256");
        assert_eq!(t[2].value, b"ab\r\n cd");
        assert_eq!(parse_tags(b"").unwrap(), vec![]);
        assert_eq!(parse_tags(b"a=1;a=2"), Err(TagError::Duplicate("a".into())));
        assert_eq!(parse_tags(b"a=1;;b=2"), Err(TagError::Malformed));
        assert_eq!(parse_tags(b"1a=1"), Err(TagError::Malformed));
        assert_eq!(parse_tags(b"x"), Err(TagError::Malformed));
    }
}
