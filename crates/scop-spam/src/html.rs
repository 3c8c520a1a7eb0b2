//! HTML reduced to text, tag names and link targets, bounded and lenient.
//!
//! Comments disappear without a trace (spammers split words with them:
//! `vi<!-- x -->agra`), inline tags join their neighbours, block tags become
//! a space, `<script>` and `<style>` contents are dropped, and the common
//! character references are decoded.

/// Most tag names and link targets kept from one HTML part.
pub(crate) const MAX_HTML_ITEMS: usize = 2_000;

/// Longest tag name kept (longer names are counted, not kept: no block
/// element and no tag token has a longer name).
pub(crate) const MAX_TAG_NAME: usize = 12;

/// A lowercased tag name of at most [`MAX_TAG_NAME`] ASCII letters and
/// digits, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TagName {
    len: u8,
    bytes: [u8; MAX_TAG_NAME],
}

impl TagName {
    /// `name` lowercased, or `None` when it is longer than [`MAX_TAG_NAME`].
    fn new(name: &str) -> Option<TagName> {
        let src = name.as_bytes();
        if src.len() > MAX_TAG_NAME {
            return None;
        }
        let mut bytes = [0u8; MAX_TAG_NAME];
        bytes[..src.len()].copy_from_slice(src);
        bytes.make_ascii_lowercase();
        Some(TagName {
            len: src.len() as u8,
            bytes,
        })
    }

    /// The name (ASCII letters and digits: always valid UTF-8).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// What an HTML part reduces to.
#[derive(Debug, Default)]
pub(crate) struct Reduced {
    /// The visible text.
    pub text: String,
    /// Lowercased tag names of at most [`MAX_TAG_NAME`] bytes, in order;
    /// among the first [`MAX_HTML_ITEMS`] tags.
    pub tags: Vec<TagName>,
    /// `href`, `src` and `action` attribute values.
    pub links: Vec<String>,
}

fn is_block(tag: &str) -> bool {
    matches!(
        tag,
        "p" | "br"
            | "div"
            | "tr"
            | "td"
            | "th"
            | "li"
            | "ul"
            | "ol"
            | "table"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "title"
            | "hr"
            | "blockquote"
            | "pre"
            | "body"
            | "head"
            | "html"
            | "center"
            | "form"
            | "option"
            | "dd"
            | "dt"
            | "dl"
            | "a"
            | "img"
            | "script"
            | "style"
            | "input"
            | "iframe"
            | "textarea"
            | "select"
            | "button"
            | "area"
    )
}

/// Decodes the character reference starting at `s` (just after `&`);
/// returns the character and how many bytes it used (including the `;`).
fn entity(s: &str) -> Option<(char, usize)> {
    let end = s.bytes().take(12).position(|b| b == b';')?;
    let name = &s[..end];
    let c = if let Some(num) = name.strip_prefix('#') {
        let v = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        char::from_u32(v)?
    } else {
        match name {
            "nbsp" => ' ',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "copy" => '©',
            "reg" => '®',
            "euro" => '€',
            "pound" => '£',
            "eacute" => 'é',
            "egrave" => 'è',
            "agrave" => 'à',
            _ => return None,
        }
    };
    Some((c, end + 1))
}

/// Appends `s` to `out` decoding character references.
fn push_decoded(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match entity(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
}

/// The first position at or after `from` where `key` (lowercase ASCII)
/// occurs in `hay`, ignoring ASCII case.
fn find_ci(hay: &[u8], from: usize, key: &[u8]) -> Option<usize> {
    let first = *key.first()?;
    let last_start = hay.len().checked_sub(key.len())?;
    let mut i = from;
    // Candidates start with the key's first letter, in either case.
    while i <= last_start {
        let at = i + memchr::memchr2(first, first.to_ascii_uppercase(), &hay[i..=last_start])?;
        if hay[at..at + key.len()].eq_ignore_ascii_case(key) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Pulls `href`/`src`/`action` values out of a tag's attribute text.
fn attributes(attrs: &str, links: &mut Vec<String>) {
    // Every value follows an `=`.
    if !attrs.contains('=') {
        return;
    }
    let bytes = attrs.as_bytes();
    for key in ["href", "src", "action"] {
        let mut from = 0;
        while let Some(at) = find_ci(bytes, from, key.as_bytes()) {
            from = at + key.len();
            let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            let rest = attrs[from..].trim_start();
            if !before_ok || !rest.starts_with('=') {
                continue;
            }
            let value_start = attrs.len() - rest.len() + 1;
            let v = attrs[value_start..].trim_start();
            let value = if let Some(q) = v.strip_prefix(['"', '\'']) {
                let quote = v.as_bytes()[0] as char;
                q.split(quote).next().unwrap_or("")
            } else {
                v.split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or("")
            };
            if links.len() < MAX_HTML_ITEMS && !value.is_empty() {
                let mut decoded = String::new();
                push_decoded(&mut decoded, value);
                links.push(decoded);
            }
        }
    }
}

/// Reduces an HTML document to its text, tags and links.
pub(crate) fn reduce(html: &str) -> Reduced {
    let mut r = Reduced {
        text: String::with_capacity(html.len() / 2),
        ..Reduced::default()
    };
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    let mut tags_seen = 0usize;
    while !rest.is_empty() {
        let Some(lt) = memchr::memchr(b'<', rest.as_bytes()) else {
            if skip_until.is_none() {
                push_decoded(&mut r.text, rest);
            }
            break;
        };
        if skip_until.is_none() {
            push_decoded(&mut r.text, &rest[..lt]);
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = match after.find("-->") {
                Some(end) => &after[end + 3..],
                None => "",
            };
            continue;
        }
        // A tag starts with a letter (after `/`, `!` or `?`); anything else
        // is a literal `<`. Checked before looking for `>`, so that text
        // full of `<` stays linear.
        let opens_tag = rest[1..]
            .trim_start_matches(['/', '!', '?'])
            .starts_with(|c: char| c.is_ascii_alphabetic());
        if !opens_tag {
            if skip_until.is_none() {
                r.text.push('<');
            }
            rest = &rest[1..];
            continue;
        }
        let end = memchr::memchr(b'>', rest.as_bytes()).unwrap_or(rest.len());
        let inner = &rest[1..end];
        rest = if end < rest.len() {
            &rest[end + 1..]
        } else {
            ""
        };
        let closing = inner.starts_with('/');
        let inner = inner.trim_start_matches(['/', '!', '?']);
        let name_end = inner
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(inner.len());
        let tag = TagName::new(&inner[..name_end]);
        let name = tag.as_ref().map_or("", TagName::as_str);
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        if !closing {
            if tags_seen < MAX_HTML_ITEMS {
                tags_seen += 1;
                if let Some(t) = tag {
                    r.tags.push(t);
                }
            }
            attributes(&inner[name_end..], &mut r.links);
            if name == "script" || name == "style" {
                skip_until = Some(if name == "script" { "script" } else { "style" });
            }
        }
        if is_block(name) {
            r.text.push(' ');
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::reduce;

    #[test]
    fn text_tags_links() {
        let r = reduce(
            "<html><body><p>Cheap <b>vi<!-- x -->agra</b>&nbsp;now&amp;here</p>\
             <a href=\"http://Evil.example/buy\">click</a><img src=x.gif>\
             <script>var a = 'hidden';</script><style>p {}</style>end &#1040;</body></html>",
        );
        assert_eq!(
            r.text.split_whitespace().collect::<Vec<_>>(),
            ["Cheap", "viagra", "now&here", "click", "end", "А"]
        );
        let tags: Vec<&str> = r.tags.iter().map(|t| t.as_str()).collect();
        assert!(tags.contains(&"a") && tags.contains(&"img"), "{tags:?}");
        assert_eq!(r.links, ["http://Evil.example/buy", "x.gif"]);
    }

    #[test]
    fn linear_on_many_angle_brackets() {
        let text = "< ".repeat(200_000) + &"<!".repeat(100_000) + &"</".repeat(100_000);
        let start = std::time::Instant::now();
        let r = reduce(&text);
        assert!(r.text.len() >= 200_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn unterminated() {
        let r = reduce("a < b <!-- never closed");
        assert_eq!(r.text.trim(), "a < b");
        let r = reduce("<a href='x");
        assert_eq!(r.links, ["x"]);
    }
}
