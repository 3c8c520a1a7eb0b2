//! From message bytes to the set of tokens the classifier weighs.

use crate::hash::token_key;
use crate::html;
use crate::limits::{
    MAX_ATTACHMENTS, MAX_HEADER_FIELDS, MAX_TEXT_BYTES, MAX_TOKEN_LEN, MAX_TOKENS_PER_MESSAGE,
};
use crate::text::{Piece, segment};
use scop_mime::{Address, Body, Header, Message};
use std::cell::RefCell;

/// Most URLs read from one message.
const MAX_URLS: usize = 1_000;

/// Longest header field name read (longer ones give no token).
const MAX_FIELD_NAME: usize = 40;

/// Most characters of a header value read for words.
const MAX_HEADER_VALUE_CHARS: usize = 2_000;

/// The features of one message: its distinct tokens and its attachments.
///
/// Each token is kept as its 64-bit key (what the model counts, see
/// [`token_key`](crate::token_key)) and as text (what explanations show);
/// all texts share one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Keys of the distinct tokens, in the order they were first met.
    keys: Vec<u64>,
    /// The token texts, one after the other.
    text: String,
    /// End of each token's text in `text`.
    ends: Vec<u32>,
    /// Attachments (at most [`MAX_ATTACHMENTS`](crate::limits::MAX_ATTACHMENTS)).
    pub attachments: Vec<Attachment>,
    /// Whether the bytes were read as a MIME message (`false`: lossy raw text).
    pub parsed: bool,
}

impl Features {
    /// The attachments that carry at least one [`Danger`].
    pub fn dangerous(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.iter().filter(|a| !a.dangers.is_empty())
    }

    /// How many distinct tokens (at most
    /// [`MAX_TOKENS_PER_MESSAGE`](crate::limits::MAX_TOKENS_PER_MESSAGE)).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of the distinct tokens, in the order they were first met.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The text of token `i` (in [`Features::keys`] order); empty when out
    /// of range.
    pub fn token(&self, i: usize) -> &str {
        let end = self.ends.get(i).map_or(0, |&e| e as usize);
        let start = match i.checked_sub(1) {
            Some(j) => self.ends.get(j).map_or(end, |&e| e as usize),
            None => 0,
        };
        self.text.get(start..end).unwrap_or("")
    }

    /// The texts of the distinct tokens, in [`Features::keys`] order.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.keys.len()).map(|i| self.token(i))
    }
}

/// A body part that is not text to read: its name, type and what is risky
/// about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name (`Content-Disposition` `filename` or `Content-Type`
    /// `name`), if any.
    pub filename: Option<String>,
    /// The lowercase media type.
    pub mime_type: String,
    /// Why this attachment is dangerous (empty when it is not).
    pub dangers: Vec<Danger>,
}

/// Why an attachment is dangerous. Reported whatever the spam score.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Danger {
    /// The file name ends with an executable or script extension (`.exe`,
    /// `.scr`, `.js`, `.vbs`, ...).
    ExecutableExtension(String),
    /// A document-looking name hiding an executable extension
    /// (`invoice.pdf.exe`).
    DoubleExtension(String),
    /// A macro-enabled Office document (`.docm`, `.xlsm`, ...).
    MacroDocument(String),
    /// The declared media type is an executable or script.
    ExecutableType(String),
    /// The content starts like a Windows or ELF executable, whatever its name.
    ExecutableContent,
}

impl std::fmt::Display for Danger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Danger::ExecutableExtension(e) => write!(f, "executable extension .{e}"),
            Danger::DoubleExtension(e) => write!(f, "double extension .{e}"),
            Danger::MacroDocument(e) => write!(f, "macro-enabled document .{e}"),
            Danger::ExecutableType(t) => write!(f, "executable media type {t}"),
            Danger::ExecutableContent => f.write_str("executable content"),
        }
    }
}

const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "cpl", "msi", "msp", "jar", "lnk", "reg", "ps1", "dll", "sys", "app", "gadget", "msc", "inf",
    "scf", "url", "vb", "sct", "chm", "iso", "img", "appx", "elf", "run", "sh", "apk",
];

const MACRO_EXTENSIONS: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "ppsm", "sldm",
];

const EXECUTABLE_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-ms-installer",
    "application/x-msi",
    "application/x-ms-shortcut",
    "application/hta",
    "application/x-sh",
    "application/x-bat",
    "application/java-archive",
    "application/x-java-archive",
    "application/vnd.microsoft.portable-executable",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "application/x-vbscript",
    "text/vbscript",
];

/// Fields whose words are read, tagged with the field name.
const WORD_FIELDS: &[&str] = &[
    "x-mailer",
    "user-agent",
    "x-mimeole",
    "x-msmail-priority",
    "x-priority",
    "organization",
    "importance",
    "precedence",
    "content-transfer-encoding",
    "mime-version",
    "thread-index",
    "x-originating-ip",
    "list-id",
    "sender",
    "errors-to",
    "return-path",
];

/// A set of token keys, open addressing with linear probing, reused from
/// message to message. Keys are hashes already; the slot is taken from the
/// key times a per-process random odd number, so that keys chosen to
/// crowd the same slots (the key function is public) cannot make one
/// message quadratic.
struct KeySet {
    /// 0 marks an empty slot; the key 0 itself is tracked by `zero`.
    slots: Vec<u64>,
    shift: u32,
    len: usize,
    zero: bool,
    seed: u64,
}

/// Slots of a fresh [`KeySet`] (a power of two).
const KEY_SET_SLOTS: usize = 2048;

impl KeySet {
    fn new() -> KeySet {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            use std::hash::BuildHasher as _;
            foldhash::fast::RandomState::default().hash_one(0x5eed_u64) | 1
        });
        KeySet {
            slots: vec![0; KEY_SET_SLOTS],
            shift: 64 - KEY_SET_SLOTS.trailing_zeros(),
            len: 0,
            zero: false,
            seed,
        }
    }

    /// Empties the set; a set grown by a large message shrinks back.
    fn clear(&mut self) {
        if self.slots.len() > 4 * KEY_SET_SLOTS {
            self.slots = vec![0; KEY_SET_SLOTS];
            self.shift = 64 - KEY_SET_SLOTS.trailing_zeros();
        } else if self.len > 0 {
            self.slots.fill(0);
        }
        self.len = 0;
        self.zero = false;
    }

    /// Adds `key`; whether it was new.
    #[inline]
    fn insert(&mut self, key: u64) -> bool {
        if key == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = (key.wrapping_mul(self.seed) >> self.shift) as usize;
        loop {
            let slot = &mut self.slots[i & mask];
            if *slot == key {
                return false;
            }
            if *slot == 0 {
                *slot = key;
                self.len += 1;
                return true;
            }
            i = (i & mask) + 1;
        }
    }

    fn grow(&mut self) {
        let bigger = vec![0; 2 * self.slots.len()];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        self.len = 0;
        for k in old {
            if k != 0 {
                self.insert(k);
            }
        }
    }
}

/// The token accumulator: a bounded set of distinct tokens, deduplicated by
/// key, with reusable buffers (see [`with_features`]).
struct Sink {
    seen: KeySet,
    /// The tokens so far (`parsed` is set at the end).
    out: Features,
    /// Whether token texts are kept (training needs only the keys).
    texts: bool,
    text_budget: usize,
    headers_left: usize,
    urls_left: usize,
    buf: String,
    prev: String,
    scratch: String,
    domain_buf: String,
    piece_buf: String,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            seen: KeySet::new(),
            out: Features {
                keys: Vec::with_capacity(1024),
                text: String::with_capacity(16 * 1024),
                ends: Vec::with_capacity(1024),
                attachments: Vec::new(),
                parsed: false,
            },
            texts: true,
            text_budget: MAX_TEXT_BYTES,
            headers_left: MAX_HEADER_FIELDS,
            urls_left: MAX_URLS,
            buf: String::with_capacity(MAX_TOKEN_LEN),
            prev: String::with_capacity(MAX_TOKEN_LEN),
            scratch: String::with_capacity(MAX_TOKEN_LEN),
            domain_buf: String::with_capacity(MAX_TOKEN_LEN),
            piece_buf: String::with_capacity(MAX_TOKEN_LEN),
        }
    }

    /// Ready for the next message.
    fn reset(&mut self, texts: bool) {
        self.seen.clear();
        self.out.keys.clear();
        self.out.text.clear();
        self.out.ends.clear();
        self.out.attachments.clear();
        self.out.parsed = false;
        self.texts = texts;
        self.text_budget = MAX_TEXT_BYTES;
        self.headers_left = MAX_HEADER_FIELDS;
        self.urls_left = MAX_URLS;
    }

    fn full(&self) -> bool {
        self.out.keys.len() >= MAX_TOKENS_PER_MESSAGE
    }

    /// Records the token in `buf` unless it was seen already.
    #[inline]
    fn commit(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.commit_str(&buf);
        self.buf = buf;
    }

    /// Records `token` unless it was seen already.
    #[inline]
    fn commit_str(&mut self, token: &str) {
        let key = token_key(token.as_bytes());
        if self.seen.insert(key) {
            self.out.keys.push(key);
            if self.texts {
                self.out.text.push_str(token);
                self.out.ends.push(self.out.text.len() as u32);
            }
        }
    }

    /// Adds `tag` + `word` (bounded; too long tokens are dropped).
    #[inline]
    fn add(&mut self, tag: &str, word: &str) {
        if tag.len() + word.len() > MAX_TOKEN_LEN || self.full() {
            return;
        }
        if tag.is_empty() {
            // Untagged (body words): hashed in place, no copy.
            self.commit_str(word);
            return;
        }
        self.buf.clear();
        self.buf.push_str(tag);
        self.buf.push_str(word);
        self.commit();
    }

    /// Words of `text` tagged with `tag`; with `pairs`, adjacent word pairs too.
    fn words(&mut self, tag: &str, text: &str, pairs: bool) {
        // The previous word (for pairs) and the segmenter's scratch space:
        // their buffers are reused across calls.
        let mut prev = std::mem::take(&mut self.prev);
        let mut scratch = std::mem::take(&mut self.scratch);
        prev.clear();
        segment(text, &mut scratch, |piece| {
            match piece {
                Piece::Word(w, caps) => {
                    self.add(tag, w);
                    if caps {
                        self.add("caps:", w);
                    }
                    if pairs {
                        // `prev` holds the pair's start: tag, word, space.
                        if !prev.is_empty() {
                            let start = prev.len();
                            if start + w.len() <= MAX_TOKEN_LEN && !self.full() {
                                prev.push_str(w);
                                self.commit_str(&prev);
                            }
                        }
                        prev.clear();
                        prev.push_str(tag);
                        prev.push_str(w);
                        prev.push(' ');
                    }
                }
                Piece::Cjk(b) => {
                    self.add(tag, b);
                    prev.clear();
                }
            }
            !self.full()
        });
        self.prev = prev;
        self.scratch = scratch;
    }

    /// Body text: words, pairs and URLs; bounded by the text budget.
    fn body_text(&mut self, text: &str) {
        if self.text_budget == 0 {
            return;
        }
        let text = clip(text, self.text_budget);
        self.text_budget -= text.len();
        self.urls_in_text(text);
        self.words("", text, true);
    }

    fn urls_in_text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while self.urls_left > 0 {
            let Some(start) = next_url_start(bytes, i) else {
                break;
            };
            let end = text[start..]
                .find(|c: char| {
                    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']')
                })
                .map_or(text.len(), |e| start + e);
            self.url(&text[start..end]);
            i = end.max(start + 1);
            while !text.is_char_boundary(i) {
                i += 1;
            }
        }
    }

    /// Tokens of one URL: its host, the host's parent domains, the scheme.
    fn url(&mut self, url: &str) {
        if self.urls_left == 0 {
            return;
        }
        self.urls_left -= 1;
        let lower = url.trim().to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some((s, r)) => (s, r),
            None if lower.starts_with("www.") => ("none", lower.as_str()),
            None if lower.starts_with("mailto:") => {
                let addr = &lower["mailto:".len()..];
                if let Some((_, d)) = addr.split_once('@') {
                    let d = d.split(['?', '>', '&']).next().unwrap_or("");
                    self.domain("mailto:", d);
                }
                return;
            }
            None => return,
        };
        if scheme.len() <= 8 {
            self.add("url:scheme:", scheme);
        }
        let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
        let path = &rest[authority.len()..];
        let host_port = authority.rsplit('@').next().unwrap_or("");
        if authority.contains('@') {
            self.add("url:", "userinfo");
        }
        let host = host_port
            .split(':')
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        if host.is_empty() {
            return;
        }
        if host.contains('%') {
            self.add("url:", "encoded-host");
        }
        if host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok()) {
            self.add("url:", "ip-host");
            return;
        }
        self.domain("url:", host);
        // A few path words: spam URLs have telling paths (`/remove`, `/cgi-bin`).
        let mut n = 0;
        for w in path.split(|c: char| !c.is_alphanumeric()) {
            if w.len() >= 3 && w.len() <= 20 && n < 8 {
                self.add("url:path:", w);
                n += 1;
            }
        }
    }

    /// A domain and its parent domains (down to two labels).
    fn domain(&mut self, tag: &str, domain: &str) {
        let mut d = std::mem::take(&mut self.domain_buf);
        d.clear();
        d.push_str(domain.trim().trim_matches(['.', '>', '<', '[', ']']));
        d.make_ascii_lowercase();
        if d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            if !d.is_empty() {
                self.add(tag, "odd-domain");
            }
        } else {
            let mut rest = d.as_str();
            let mut n = 0;
            loop {
                self.add(tag, rest);
                n += 1;
                match rest.split_once('.') {
                    Some((_, parent)) if parent.contains('.') && n < 6 => rest = parent,
                    _ => break,
                }
            }
        }
        self.domain_buf = d;
    }

    fn mailbox(&mut self, field: &str, name: Option<&str>, local: &str, domain: &str) {
        match name {
            Some(n) if !n.trim().is_empty() => {
                let tag = format!("{field}:name:");
                self.words(&tag, n, false);
            }
            _ => self.add(field, ":noname"),
        }
        self.domain(&format!("{field}:domain:"), domain);
        if !local.is_empty() && local.len() <= 30 {
            self.add(&format!("{field}:local:"), &local.to_lowercase());
        }
    }

    fn header(&mut self, h: &Header<'_>) {
        if self.headers_left == 0 {
            return;
        }
        self.headers_left -= 1;
        // No field read below has a longer name.
        let raw_name = h.name().as_bytes();
        if raw_name.len() > MAX_FIELD_NAME {
            return;
        }
        let mut lower = [0u8; MAX_FIELD_NAME];
        let lower = &mut lower[..raw_name.len()];
        lower.copy_from_slice(raw_name);
        lower.make_ascii_lowercase();
        let Ok(name) = std::str::from_utf8(lower) else {
            return;
        };
        let name: &str = name;
        self.add("header:", name);
        let read = matches!(
            name,
            "subject"
                | "from"
                | "reply-to"
                | "to"
                | "cc"
                | "sender"
                | "received"
                | "message-id"
                | "date"
        ) || WORD_FIELDS.contains(&name);
        if !read {
            return;
        }
        // Decoded only for the fields that are read.
        let full = h.text();
        let text: &str = match full.char_indices().nth(MAX_HEADER_VALUE_CHARS) {
            Some((i, _)) => &full[..i],
            None => &full,
        };
        match name {
            "subject" => {
                self.words("subject:", text, true);
                let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
                if letters.len() >= 6 && letters.iter().all(|c| !c.is_lowercase()) {
                    self.add("subject:", "ALLCAPS");
                }
                if text.trim().is_empty() {
                    self.add("subject:", "EMPTY");
                }
            }
            "from" | "reply-to" | "to" | "cc" | "sender" => {
                let list = h.addresses();
                let mut count = 0usize;
                for a in &list {
                    match a {
                        Address::Mailbox(m) => {
                            count += 1;
                            if count <= 10 {
                                self.mailbox(name, m.name.as_deref(), &m.local, &m.domain);
                            }
                        }
                        Address::Group { name: g, members } => {
                            count += members.len();
                            if members.is_empty() {
                                self.add(name, ":empty-group");
                            }
                            self.words(&format!("{name}:group:"), g, false);
                        }
                    }
                }
                if list.is_empty() {
                    self.words(&format!("{name}:"), text, false);
                }
                if name == "to" || name == "cc" {
                    let bucket = match count {
                        0 => "0",
                        1 => "1",
                        2 => "2",
                        3..=5 => "3-5",
                        6..=10 => "6-10",
                        _ => "many",
                    };
                    self.add(&format!("{name}:count:"), bucket);
                }
            }
            "received" => self.received(text),
            "message-id" => {
                let id = text.trim().trim_matches(['<', '>']);
                if let Some((local, domain)) = id.rsplit_once('@') {
                    self.domain("message-id:domain:", domain);
                    self.add("message-id:shape:", &shape(local));
                } else {
                    self.add("message-id:", "no-at");
                }
            }
            "date" => {
                if let Some(tz) = text.split_whitespace().last()
                    && tz.len() <= 6
                {
                    self.add("date:zone:", tz);
                }
            }
            "content-type" | "content-disposition" => {
                // Read through the parsed form per entity (`entity`).
            }
            _ if WORD_FIELDS.contains(&name) => {
                let tag = format!("{name}:");
                self.words(&tag, text, false);
            }
            _ => {}
        }
    }

    /// `Received:` hosts, IP prefixes and words.
    fn received(&mut self, text: &str) {
        let mut p = std::mem::take(&mut self.piece_buf);
        for piece in received_pieces(text) {
            let piece = piece.trim_matches(['.', ',']);
            if piece.is_empty() || piece.len() > 60 {
                continue;
            }
            p.clear();
            p.push_str(piece);
            p.make_ascii_lowercase();
            let dots = p.split('.').count();
            if dots == 4 && p.split('.').all(|o| o.parse::<u8>().is_ok()) {
                // The first three octets.
                let prefix = p.rsplit_once('.').map_or(p.as_str(), |(a, _)| a);
                self.add("received:ip:", prefix);
                continue;
            }
            if dots >= 2
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                self.domain("received:", &p);
            } else if p.len() >= 3
                && p.len() <= 20
                && p.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
            {
                self.add("received:", &p);
            }
        }
        self.piece_buf = p;
    }
}

/// `text.split(|c: char| c.is_whitespace() || "()[];<>".contains(c))`,
/// deciding ASCII bytes by table instead of decoding every character.
fn received_pieces(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let b = bytes[i];
            let (sep, len) = if b < 0x80 {
                let sep = matches!(
                    b,
                    b'\t'
                        | b'\n'
                        | 0x0b
                        | 0x0c
                        | b'\r'
                        | b' '
                        | b'('
                        | b')'
                        | b'['
                        | b']'
                        | b';'
                        | b'<'
                        | b'>'
                );
                (sep, 1)
            } else {
                match text.get(i..).and_then(|t| t.chars().next()) {
                    Some(c) => (c.is_whitespace(), c.len_utf8()),
                    None => (false, 1),
                }
            };
            i += len;
            if sep {
                let piece = text.get(start..i - len).unwrap_or("");
                start = i;
                return Some(piece);
            }
        }
        if done {
            return None;
        }
        done = true;
        Some(text.get(start..).unwrap_or(""))
    })
}

/// A coarse shape of an identifier: runs of digits become `9`, of letters
/// `a` (`A` for upper case), other characters are kept; at most 20 long.
fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut last = '\0';
    for c in s.chars() {
        let k = if c.is_ascii_digit() {
            '9'
        } else if c.is_lowercase() {
            'a'
        } else if c.is_uppercase() {
            'A'
        } else if c.is_alphanumeric() {
            'x'
        } else {
            c
        };
        if k != last {
            out.push(k);
            last = k;
        }
        if out.len() >= 20 {
            break;
        }
    }
    out
}

/// Where the next URL starts at or after `from`: the first position where
/// `http://`, `https://`, `www.` or `ftp://` begins (ASCII case-insensitive).
///
/// Only a `:` (of `://`) or a `w` can reveal one, so the scan jumps from one
/// of those to the next. The schemes hold no `w`, so no `www.` can begin
/// between a scheme's start and its `:`: the first hit found is the first
/// URL.
fn next_url_start(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = text
        .get(i..)
        .and_then(|t| memchr::memchr3(b':', b'w', b'W', t))
    {
        let p = i + at;
        if text[p] == b':' {
            if text.get(p..p + 3) == Some(b"://") {
                for (len, scheme) in [(5, &b"https"[..]), (4, b"http"), (3, b"ftp")] {
                    if let Some(s) = p.checked_sub(len)
                        && s >= from
                        && text[s..p].eq_ignore_ascii_case(scheme)
                    {
                        return Some(s);
                    }
                }
            }
        } else if text
            .get(p..p + 4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"www."))
        {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

/// The longest prefix of `s` of at most `n` bytes that ends on a character
/// boundary.
fn clip(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    let (&first, _) = n.split_first()?;
    let last_start = h.len().checked_sub(n.len())?;
    let mut from = 0;
    // Candidates start with the needle's first byte, in either case.
    while from <= last_start {
        let at = from
            + memchr::memchr2(
                first.to_ascii_lowercase(),
                first.to_ascii_uppercase(),
                &h[from..=last_start],
            )?;
        if h[at..at + n.len()].eq_ignore_ascii_case(n) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The `filename` parameter of a Content-Disposition value (plain, quoted or
/// the first RFC 2231 section, undecoded).
fn disposition_filename(value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("filename")?;
    let rest = &value[at + "filename".len()..];
    let rest = rest.trim_start_matches(['*', '0']).trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let v = if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().unwrap_or("")
    } else {
        rest.split(';').next().unwrap_or("").trim()
    };
    let v = match v.split_once("''") {
        Some((_, name)) => name,
        None => v,
    };
    (!v.is_empty()).then(|| v.to_string())
}

/// Extensions of a (lowercased) file name, last first; at most 3.
fn extensions(name: &str) -> Vec<&str> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut parts: Vec<&str> = base.split('.').skip(1).collect();
    parts.reverse();
    parts
        .into_iter()
        .map(str::trim)
        .take_while(|e| {
            !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .take(3)
        .collect()
}

fn attachment(sink: &mut Sink, filename: Option<String>, mime_type: &str, content: &[u8]) {
    let mut dangers = Vec::new();
    sink.add("attach:type:", mime_type);
    if let Some(name) = &filename {
        let lower = name.to_lowercase();
        let exts = extensions(&lower);
        if let Some(last) = exts.first() {
            sink.add("attach:ext:", last);
            if EXECUTABLE_EXTENSIONS.contains(last) {
                dangers.push(Danger::ExecutableExtension((*last).to_string()));
                sink.add("attach:", "executable");
            }
            if MACRO_EXTENSIONS.contains(last) {
                dangers.push(Danger::MacroDocument((*last).to_string()));
                sink.add("attach:", "macro");
            }
            if let Some(prev) = exts.get(1) {
                let double = format!("{prev}.{last}");
                sink.add("attach:double:", &double);
                if EXECUTABLE_EXTENSIONS.contains(last) && !EXECUTABLE_EXTENSIONS.contains(prev) {
                    dangers.push(Danger::DoubleExtension(double));
                    sink.add("attach:", "double-executable");
                }
            }
        } else {
            sink.add("attach:ext:", "none");
        }
        // Padding before the real extension hides it in narrow columns.
        if lower.contains("    ") {
            sink.add("attach:", "padded-name");
        }
    }
    if EXECUTABLE_TYPES.contains(&mime_type) {
        dangers.push(Danger::ExecutableType(mime_type.to_string()));
    }
    if mime_type.contains("macroenabled") {
        dangers.push(Danger::MacroDocument(mime_type.to_string()));
    }
    if content.starts_with(b"MZ") || content.starts_with(b"\x7fELF") {
        dangers.push(Danger::ExecutableContent);
        sink.add("attach:", "executable-content");
    }
    if sink.out.attachments.len() < MAX_ATTACHMENTS {
        sink.out.attachments.push(Attachment {
            filename,
            mime_type: mime_type.to_string(),
            dangers,
        });
    }
}

/// Per-message structure facts gathered while walking.
#[derive(Default)]
struct Shape {
    parts: usize,
    text_plain: bool,
    text_html: bool,
}

fn entity(sink: &mut Sink, msg: &Message<'_>, depth: usize, top: bool, shape: &mut Shape) {
    if top {
        for h in msg.headers() {
            sink.header(h);
        }
    } else {
        for h in msg.headers() {
            if sink.headers_left == 0 {
                break;
            }
            sink.headers_left -= 1;
            let name = h.name().to_ascii_lowercase();
            if name.len() <= 40 {
                sink.add("part-header:", &name);
            }
            if name == "content-transfer-encoding" {
                sink.words("part-cte:", &h.text(), false);
            }
        }
    }
    let ct = msg.content_type();
    let mime_type = ct.mime_type.as_str();
    if mime_type.len() <= 60 {
        sink.add("content-type:", mime_type);
    }
    if let Some(cs) = ct.param("charset")
        && cs.len() <= 30
    {
        sink.add("charset:", &cs.to_ascii_lowercase());
    }
    shape.parts += 1;
    match msg.body() {
        Body::Leaf(leaf) => {
            let disposition = msg.header("content-disposition").map(|h| h.text());
            let filename = disposition
                .as_deref()
                .and_then(disposition_filename)
                .or_else(|| ct.param("name").map(str::to_string));
            let attached = disposition.as_deref().is_some_and(|d| {
                d.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("attachment")
            });
            let is_text = matches!(
                mime_type,
                "text/plain" | "text/html" | "text/enriched" | "text/rtf" | "text/richtext"
            ) || (ct.main_type() == "text" && filename.is_none());
            if is_text && !(attached && filename.is_some()) {
                let text = match leaf.text() {
                    Some(t) => t,
                    None => String::from_utf8_lossy(leaf.decoded()),
                };
                if mime_type == "text/html" {
                    shape.text_html = true;
                    html_text(sink, &text);
                } else {
                    shape.text_plain = true;
                    // Plain text that is really HTML is read as HTML too.
                    if find_ascii_ci(clip(&text, 2048), "<html").is_some() {
                        sink.add("meta:", "html-in-plain");
                        html_text(sink, &text);
                    } else {
                        sink.body_text(&text);
                    }
                }
            } else {
                attachment(sink, filename, mime_type, leaf.decoded());
            }
        }
        Body::Multipart(mp) => {
            if depth >= scop_mime::limits::MAX_DEPTH {
                return;
            }
            for part in mp.parts() {
                if sink.full() {
                    break;
                }
                entity(sink, part, depth + 1, false, shape);
            }
        }
        Body::Message(inner) => {
            if depth < scop_mime::limits::MAX_DEPTH {
                entity(sink, inner, depth + 1, false, shape);
            }
        }
    }
}

fn html_text(sink: &mut Sink, html: &str) {
    let reduced = html::reduce(clip(html, sink.text_budget.max(1) * 4));
    for tag in &reduced.tags {
        sink.add("html:", tag.as_str());
    }
    for link in &reduced.links {
        sink.url(link);
    }
    sink.body_text(&reduced.text);
}

/// Tokenizes one message (RFC 5322 bytes, LF or CRLF). Input that is not a
/// message is read as lossy UTF-8 text. Never panics; bounded by
/// [`limits`](crate::limits).
pub fn tokenize(input: &[u8]) -> Features {
    with_features(input, true, Features::clone)
}

thread_local! {
    /// Each thread's token accumulator, reused from message to message so
    /// that tokenizing allocates nothing once its buffers have grown.
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Tokenizes `input` into a reused buffer and calls `f` on the features;
/// without `texts`, the features hold keys only (token texts are empty).
pub(crate) fn with_features<R>(input: &[u8], texts: bool, f: impl FnOnce(&Features) -> R) -> R {
    SINK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let sink = slot.get_or_insert_with(Sink::new);
            sink.reset(texts);
            fill(sink, input);
            f(&sink.out)
        }
        // Called from inside `f` itself: a fresh accumulator.
        Err(_) => {
            let mut sink = Sink::new();
            sink.reset(texts);
            fill(&mut sink, input);
            f(&sink.out)
        }
    })
}

fn fill(sink: &mut Sink, input: &[u8]) {
    let parsed = match scop_mime::parse(input) {
        Ok(parsed) => {
            let mut shape = Shape::default();
            entity(sink, &parsed.message, 0, true, &mut shape);
            let parts = match shape.parts {
                0..=1 => "1",
                2 => "2",
                3..=4 => "3-4",
                _ => "many",
            };
            sink.add("meta:parts:", parts);
            if shape.text_html && !shape.text_plain {
                sink.add("meta:", "html-only");
            }
            if !shape.text_html && !shape.text_plain {
                sink.add("meta:", "no-text");
            }
            if !parsed.diagnostics.is_empty() {
                sink.add("meta:", "mime-diagnostics");
            }
            true
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&input[..input.len().min(MAX_TEXT_BYTES)]);
            sink.add("meta:", "not-a-message");
            sink.body_text(&text);
            false
        }
    };
    let size_class = (usize::BITS - input.len().leading_zeros()).to_string();
    sink.add("meta:size:", &size_class);
    sink.out.parsed = parsed;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of [`next_url_start`], one position at a time.
    fn next_url_start_reference(text: &[u8], from: usize) -> Option<usize> {
        const STARTS: [&[u8]; 4] = [b"http://", b"https://", b"www.", b"ftp://"];
        (from..text.len()).find(|&i| {
            STARTS
                .iter()
                .any(|p| text[i..].len() >= p.len() && text[i..][..p.len()].eq_ignore_ascii_case(p))
        })
    }

    #[test]
    fn url_starts_match_the_definition() {
        let mut texts: Vec<Vec<u8>> = [
            "see http://a.example and HTTPS://b.example, ftp://c or Www.d.example",
            "https://x.example/www.y",
            "www.www.wwW.",
            "://x http:/ https:// ftp:/ :// w ww www",
            "xhttp://a  hTTp://b ftpp://c fftp://d",
            "",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
        // Every short string over an alphabet that makes near misses.
        let alphabet = b"htpsfw:/.W";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            texts.push(
                (0..len)
                    .map(|i| alphabet[((seed >> (i % 16 * 4)) as usize + i) % alphabet.len()])
                    .collect(),
            );
        }
        for t in &texts {
            for from in 0..=t.len() {
                assert_eq!(
                    next_url_start(t, from),
                    next_url_start_reference(t, from),
                    "{:?} from {from}",
                    String::from_utf8_lossy(t)
                );
            }
        }
    }

    #[test]
    fn received_pieces_split_like_str_split() {
        for t in [
            "",
            "from mx.example (mx.example [192.0.2.1]) by a.example; Mon, 1 Jan",
            "a\u{a0}b\u{2003}c\u{b}d\u{c}e\u{85}f()[];<>g  ",
            ";;x\ty\r\nz é ü\u{3000}末",
        ] {
            let expected: Vec<&str> = t
                .split(|c: char| c.is_whitespace() || "()[];<>".contains(c))
                .collect();
            assert_eq!(received_pieces(t).collect::<Vec<_>>(), expected, "{t:?}");
        }
    }

    #[test]
    fn key_set_keeps_distinct_keys() {
        let mut set = KeySet::new();
        for round in 0..3u64 {
            set.clear();
            let n = 1000 + 20_000 * (round % 2);
            for i in 1..n {
                let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) << (round * 8);
                assert!(set.insert(k), "{i}");
            }
            assert!(set.insert(0));
            assert!(!set.insert(0));
            for i in 1..n {
                let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) << (round * 8);
                assert!(!set.insert(k), "{i}");
            }
        }
        set.clear();
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(set.insert(1));
    }

    #[test]
    fn shapes_and_extensions() {
        assert_eq!(shape("20020822.ABC123@x"), "9.A9@a");
        assert_eq!(extensions("invoice.pdf.exe"), ["exe", "pdf"]);
        assert_eq!(extensions("a.tar.gz"), ["gz", "tar"]);
        assert_eq!(extensions("noext"), Vec::<&str>::new());
        assert_eq!(
            disposition_filename("attachment; filename=\"a b.doc\""),
            Some("a b.doc".into())
        );
        assert_eq!(
            disposition_filename("attachment; filename*=utf-8''x.exe"),
            Some("x.exe".into())
        );
    }
}
