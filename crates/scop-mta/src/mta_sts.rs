//! SMTP MTA Strict Transport Security (RFC 8461): the `_mta-sts` TXT
//! record, the policy a domain publishes over HTTPS, the HTTP/1.1
//! exchange that fetches it, and the cache that decides when to fetch.
//!
//! ```text
//!  TXT _mta-sts.<domain> ── txt_record() ──► next(txt, cache, failed, now)
//!   ├─ UseCached ───────────────────────────► the cached policy
//!   ├─ NoPolicy ────────────────────────────► no MTA-STS for the domain
//!   ├─ FetchFailedLately ───────────────────► as after a failed fetch,
//!   │                                         without fetching again
//!   └─ Fetch: HTTPS to policy_host(domain), port 443, PKIX-validated
//!        request(domain) ─► server ─► response(received, closed)
//!          ├─ Body ─► Policy::parse ─┬─ Ok: store Cached { id, fetched: now, policy }
//!          │                         └─ Err: as a failed fetch
//!          └─ Failed ─► after_failed_fetch(cache, now): the cached
//!                       policy while still valid, else none
//! ```
//!
//! The TXT record only says that a policy exists and names its version
//! (`id`); the policy itself comes from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 3.3),
//! with a certificate valid for that host, no redirects and no HTTP
//! caching. The TLS session and the sockets belong to the I/O shell,
//! which feeds the decrypted bytes to [`response`]. A policy is cached
//! for its `max_age` from the fetch; a TXT record that disappears or a
//! fetch that fails leaves the cached policy in force until it expires
//! (RFC 8461 5.1).
//!
//! The relay then applies the policy to each MX host (RFC 8461 4, 5): in
//! `enforce` mode it delivers only to hosts that [`Policy::mx_matches`],
//! over TLS with a certificate that is PKIX-valid for the host name, and
//! otherwise does not deliver; in `testing` mode such failures are
//! reported but delivery goes on; `none` is the same as no policy. A host
//! with usable DANE TLSA records is handled by [`crate::dane`] instead
//! (RFC 8461 2: DANE takes precedence).

use std::fmt;

/// The path of the policy on its host (RFC 8461 3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// Largest policy body accepted (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Largest HTTP response head (status line and header fields) accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header fields in an HTTP response head.
pub const MAX_HEADERS: usize = 64;

/// Longest chunk-size line (with its chunk extensions) and longest
/// trailer section of a chunked body.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Bytes of response the fetch reads at most: [`response`] never says
/// [`Response::Incomplete`] once this much was received, so the I/O
/// shell's buffer stays bounded. Room for the head, interim responses
/// and a [`MAX_BODY`] body in small chunks.
pub const MAX_RESPONSE: usize = 8 * MAX_BODY;

/// Largest `max_age` (RFC 8461 3.2: 31557600 seconds, about a year);
/// larger values are cut to it.
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// Longest policy `id` in the TXT record (RFC 8461 3.1).
pub const MAX_ID: usize = 32;

/// The `_mta-sts.DOMAIN` TXT record (RFC 8461 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The policy instance: 1 to 32 ASCII letters and digits, changed by
    /// the domain whenever its policy changes.
    pub id: String,
}

/// The one STS record among the TXT strings of the `_mta-sts` name (each
/// string already the concatenation of its character-strings), or `None`
/// when the domain has none usable (RFC 8461 3.1).
///
/// Strings whose first field is not `v=STSv1` are discarded; `None` when
/// no string or more than one string remains, or when the one that
/// remains is malformed: its fields are `key=value`, separated by `;`
/// with optional spaces or tabs around, `v=STSv1` first, exactly one
/// `id` of 1 to 32 ASCII letters and digits, other fields ignored when
/// well formed, one trailing `;` allowed.
pub fn txt_record(strings: &[&[u8]]) -> Option<TxtRecord> {
    let mut found = None;
    for s in strings {
        if is_sts_record(s) {
            if found.is_some() {
                return None;
            }
            found = Some(*s);
        }
    }
    parse_txt(found?)
}

/// Whether the first field of a TXT string is `v=STSv1` (the string
/// starts with it, then ends or goes on with a delimiter).
fn is_sts_record(s: &[u8]) -> bool {
    s.strip_prefix(b"v=STSv1")
        .is_some_and(|rest| matches!(rest.first(), None | Some(b';' | b' ' | b'\t')))
}

fn parse_txt(record: &[u8]) -> Option<TxtRecord> {
    let record = std::str::from_utf8(record).ok()?;
    let fields: Vec<&str> = record.split(';').map(trim_wsp).collect();
    let (first, rest) = fields.split_first()?;
    if *first != "v=STSv1" {
        return None;
    }
    let mut id = None;
    for (i, field) in rest.iter().enumerate() {
        if field.is_empty() {
            // Only after the trailing `;`.
            if i + 1 == rest.len() {
                continue;
            }
            return None;
        }
        let (key, value) = field.split_once('=')?;
        if key == "id" {
            if id.is_some() || !valid_id(value) {
                return None;
            }
            id = Some(value.to_owned());
        } else if !valid_field_name(key) || !valid_txt_ext_value(value) {
            return None;
        }
    }
    Some(TxtRecord { id: id? })
}

/// `sts-id` value (RFC 8461 3.1): 1 to 32 ASCII letters and digits.
fn valid_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `sts-ext-name` and `sts-policy-ext-name` (RFC 8461 3.1, 3.2), and
/// TLSRPT's `tlsrpt-ext-name` (RFC 8460 3), the same: a letter or digit,
/// then up to 31 letters, digits, `_`, `-` or `.`.
pub(crate) fn valid_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphanumeric())
        && b.len() <= 32
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// `sts-ext-value` (RFC 8461 3.1) and `tlsrpt-ext-value` (RFC 8460 3):
/// visible ASCII except `=` and `;`.
pub(crate) fn valid_txt_ext_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_graphic() && c != b'=' && c != b';')
}

pub(crate) fn trim_wsp(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// What a domain asks of senders (RFC 8461 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over PKIX-validated TLS.
    Enforce,
    /// Report failures (RFC 8460) but deliver as without a policy.
    Testing,
    /// As if the domain had no policy.
    None,
}

impl Mode {
    /// The value of the `mode` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain's MTA-STS policy (RFC 8461 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What senders must do.
    pub mode: Mode,
    /// The MX host patterns, in the policy's order: names, or `*.` and a
    /// name; lowercase, without a trailing dot.
    pub mx: Vec<String>,
    /// How long the policy may be cached, in seconds (at most
    /// [`MAX_MAX_AGE`]).
    pub max_age: u64,
}

/// Why a policy body was refused (RFC 8461 3.2). The sender treats it as
/// a failed fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The body is not UTF-8.
    NotUtf8,
    /// A line that is neither blank nor `key: value`.
    NoColon {
        /// Its number, from 1.
        line: usize,
    },
    /// A field name outside the grammar (a letter or digit, then up to 31
    /// letters, digits, `_`, `-` or `.`; no space before the colon).
    BadFieldName {
        /// Its number, from 1.
        line: usize,
        /// The name as found (shortened).
        name: String,
    },
    /// `version`, `mode` or `max_age` appears more than once.
    Duplicate(&'static str),
    /// `version`, `mode` or `max_age` is missing.
    Missing(&'static str),
    /// No `mx` field, with a mode other than `none`.
    NoMx(Mode),
    /// `version` is not `STSv1`.
    BadVersion(String),
    /// `mode` is not `enforce`, `testing` or `none`.
    BadMode(String),
    /// `max_age` is not 1 to 10 decimal digits.
    BadMaxAge(String),
    /// An `mx` value is not a host name or `*.` and a host name.
    BadMx(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NotUtf8 => write!(f, "MTA-STS policy is not UTF-8"),
            PolicyError::NoColon { line } => {
                write!(f, "MTA-STS policy line {line} is not `key: value`")
            }
            PolicyError::BadFieldName { line, name } => {
                write!(f, "MTA-STS policy line {line}: invalid field name {name:?}")
            }
            PolicyError::Duplicate(field) => {
                write!(f, "MTA-STS policy has more than one `{field}` field")
            }
            PolicyError::Missing(field) => {
                write!(f, "MTA-STS policy lacks the required `{field}` field")
            }
            PolicyError::NoMx(mode) => write!(
                f,
                "MTA-STS policy in mode `{mode}` has no `mx` field (required unless the mode is `none`)"
            ),
            PolicyError::BadVersion(v) => {
                write!(f, "MTA-STS policy `version` is {v:?}, not \"STSv1\"")
            }
            PolicyError::BadMode(v) => write!(
                f,
                "MTA-STS policy `mode` is {v:?}, not \"enforce\", \"testing\" or \"none\""
            ),
            PolicyError::BadMaxAge(v) => write!(
                f,
                "MTA-STS policy `max_age` is {v:?}, not a decimal number of at most 10 digits"
            ),
            PolicyError::BadMx(v) => write!(
                f,
                "MTA-STS policy `mx` is {v:?}, not a host name or `*.` and a host name"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// At most this many characters of untrusted text go into a message.
const SHOWN_MAX: usize = 64;

pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_MAX) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

impl Policy {
    /// Parses a policy body (RFC 8461 3.2): `key: value` lines separated
    /// by LF or CRLF, values trimmed of white space, blank lines skipped.
    /// `version: STSv1`, `mode` (`enforce`, `testing` or `none`) and
    /// `max_age` (1 to 10 digits, cut to [`MAX_MAX_AGE`]) are required
    /// once each; `mx` may repeat and is required unless the mode is
    /// `none`; other fields are ignored. Names and the values `STSv1`,
    /// `enforce`, `testing` and `none` are case-sensitive, as in the
    /// grammar; `mx` values are lowercased and lose a trailing dot.
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotUtf8)?;
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim_ascii().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(PolicyError::NoColon { line: n + 1 });
            };
            if !valid_field_name(key) {
                return Err(PolicyError::BadFieldName {
                    line: n + 1,
                    name: shown(key),
                });
            }
            let value = value.trim_ascii();
            match key {
                "version" => once(&mut version, value, "version")?,
                "mode" => {
                    let m = match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        _ => return Err(PolicyError::BadMode(shown(value))),
                    };
                    once(&mut mode, m, "mode")?;
                }
                "max_age" => {
                    let age =
                        parse_max_age(value).ok_or_else(|| PolicyError::BadMaxAge(shown(value)))?;
                    once(&mut max_age, age, "max_age")?;
                }
                "mx" => mx.push(mx_pattern(value).ok_or_else(|| PolicyError::BadMx(shown(value)))?),
                _ => {}
            }
        }
        match version {
            None => return Err(PolicyError::Missing("version")),
            Some("STSv1") => {}
            Some(v) => return Err(PolicyError::BadVersion(shown(v))),
        }
        let mode = mode.ok_or(PolicyError::Missing("mode"))?;
        let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx(mode));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether the MX host name `host` (any case, a trailing dot allowed)
    /// matches one of the patterns (RFC 8461 4.1): the same name, or for
    /// `*.rest` exactly one label and `.rest` (`*.example.net` matches
    /// `a.example.net`, neither `example.net` nor `a.b.example.net`).
    pub fn mx_matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(rest) => host
                    .split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
                None => *pattern == host,
            })
    }

    /// The policy as a body again, CRLF line ends: `version`, `mode`, the
    /// `mx` lines in order, `max_age`. `Policy::parse` gives the policy
    /// back for any policy it made.
    pub fn to_text(&self) -> String {
        let mut s = format!("version: STSv1\r\nmode: {}\r\n", self.mode);
        for m in &self.mx {
            s.push_str("mx: ");
            s.push_str(m);
            s.push_str("\r\n");
        }
        s.push_str(&format!("max_age: {}\r\n", self.max_age));
        s
    }
}

/// Sets a field that may appear only once.
fn once<T>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), PolicyError> {
    match slot.replace(value) {
        Some(_) => Err(PolicyError::Duplicate(field)),
        None => Ok(()),
    }
}

/// `sts-policy-max-age-value` (RFC 8461 3.2): 1 to 10 digits, cut to
/// [`MAX_MAX_AGE`].
fn parse_max_age(value: &str) -> Option<u64> {
    if !(1..=10).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().ok()?.min(MAX_MAX_AGE))
}

/// An `mx` value as a pattern (RFC 8461 3.2): a host name of ASCII
/// labels (letters, digits, `-`, `_`; 1 to 63 each, 253 in all),
/// optionally after `*.`; lowercased, one trailing dot removed.
fn mx_pattern(value: &str) -> Option<String> {
    let value = value
        .strip_suffix('.')
        .unwrap_or(value)
        .to_ascii_lowercase();
    let name = value.strip_prefix("*.").unwrap_or(&value);
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    });
    (labels_ok && name.len() <= 253).then_some(value)
}

/// The host that serves the policy of `domain` (RFC 8461 3.3):
/// `mta-sts.DOMAIN`, lowercased, without a trailing dot. `domain` is a
/// domain name in A-labels; the TLS certificate must be valid for the
/// returned name.
pub fn policy_host(domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    format!("mta-sts.{}", domain.to_ascii_lowercase())
}

/// The HTTP/1.1 request for the policy of `domain` (RFC 8461 3.3): a GET
/// of [`POLICY_PATH`] with `Host`, `User-Agent: scop` and
/// `Connection: close`. A byte of `domain` that cannot be in a host name
/// header (white space, control, non-ASCII) is sent as `_`, so that it
/// cannot add header lines; such a name fails the TLS name check anyway.
pub fn request(domain: &str) -> Vec<u8> {
    let host: String = policy_host(domain)
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!(
        "GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: scop\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// What the bytes received so far say about the policy fetch.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// More bytes are needed (the connection is still open).
    Incomplete,
    /// The policy body (status 200, `Content-Type: text/plain`).
    Body(Vec<u8>),
    /// The fetch failed: why, for the log.
    Failed(String),
}

/// Reads the HTTP/1.x response to [`request`] from everything received
/// so far; `closed` says the server closed the connection.
///
/// Only status 200 with `Content-Type: text/plain` (any case, any
/// parameters; RFC 8461 3.3) gives a body; redirects are not followed
/// (RFC 8461 3.3) and, like every other status, are a failure that names
/// the status. Interim 1xx responses are skipped. The body is framed by
/// `Transfer-Encoding: chunked` (chunk extensions and trailers ignored),
/// else by `Content-Length`, else by the end of the connection. A head
/// over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields, a body over
/// [`MAX_BODY`] bytes, a response cut short by the close, and more than
/// [`MAX_RESPONSE`] bytes without a complete response are failures.
/// When `closed`, the answer is never [`Response::Incomplete`].
pub fn response(received: &[u8], closed: bool) -> Response {
    match read_response(received, closed) {
        Response::Incomplete if closed => Response::Failed(
            "the server closed the connection before the end of the response".into(),
        ),
        Response::Incomplete if received.len() >= MAX_RESPONSE => {
            Response::Failed(format!("no complete response in {MAX_RESPONSE} bytes"))
        }
        r => r,
    }
}

fn failed(why: impl Into<String>) -> Response {
    Response::Failed(why.into())
}

fn read_response(received: &[u8], closed: bool) -> Response {
    let mut at = 0;
    loop {
        let rest = &received[at..];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => {
                return failed(format!("HTTP response head larger than {MAX_HEAD} bytes"));
            }
            Ok(httparse::Status::Partial) => return Response::Incomplete,
            Err(httparse::Error::TooManyHeaders) => {
                return failed(format!(
                    "HTTP response with more than {MAX_HEADERS} header fields"
                ));
            }
            Err(e) => return failed(format!("malformed HTTP response: {e}")),
        };
        if head_len > MAX_HEAD {
            return failed(format!("HTTP response head larger than {MAX_HEAD} bytes"));
        }
        let code = head.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            at += head_len;
            continue;
        }
        if code != 200 {
            let reason = shown(head.reason.unwrap_or(""));
            return if (300..400).contains(&code) {
                failed(format!(
                    "HTTP status {code} {reason:?}: redirects are not followed (RFC 8461 3.3)"
                ))
            } else {
                failed(format!("HTTP status {code} {reason:?}"))
            };
        }
        let framing = match framing(head.headers) {
            Ok(f) => f,
            Err(why) => return Response::Failed(why),
        };
        let body = &rest[head_len..];
        return match framing {
            Framing::Chunked => dechunk(body),
            Framing::Length(n) if n > MAX_BODY as u64 => failed(format!(
                "policy body of {n} bytes (Content-Length) is larger than {MAX_BODY}"
            )),
            Framing::Length(n) => match body.get(..n as usize) {
                Some(b) => Response::Body(b.to_vec()),
                None => Response::Incomplete,
            },
            Framing::Close if body.len() > MAX_BODY => {
                failed(format!("policy body larger than {MAX_BODY} bytes"))
            }
            Framing::Close if closed => Response::Body(body.to_vec()),
            Framing::Close => Response::Incomplete,
        };
    }
}

/// How the body of a response ends (RFC 9112 6.3).
enum Framing {
    Chunked,
    Length(u64),
    Close,
}

/// The body's framing from the header fields of a 200 response, after
/// checking its media type.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
    let mut content_type = None;
    let mut length = None;
    let mut codings = Vec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-type") {
            if content_type.replace(h.value).is_some() {
                return Err("HTTP response with more than one Content-Type".into());
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "malformed Content-Length {:?}",
                        shown(&String::from_utf8_lossy(v))
                    )
                })?;
            if length.replace(n).is_some_and(|old| old != n) {
                return Err("HTTP response with conflicting Content-Length fields".into());
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(
                h.value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|c| !c.is_empty()),
            );
        }
    }
    let media_type = content_type
        .ok_or("HTTP response without Content-Type (RFC 8461 3.3 wants text/plain)")?
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if !media_type.eq_ignore_ascii_case(b"text/plain") {
        return Err(format!(
            "policy of media type {:?}, not text/plain (RFC 8461 3.3)",
            shown(&String::from_utf8_lossy(media_type))
        ));
    }
    match codings.as_slice() {
        [] => Ok(length.map_or(Framing::Close, Framing::Length)),
        [c] if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        _ => Err(format!(
            "unsupported Transfer-Encoding {:?}",
            shown(&String::from_utf8_lossy(&codings.join(&b", "[..])))
        )),
    }
}

/// The line of `data` that starts at `from`, without its LF or CRLF, and
/// where the next one starts; `Ok(None)` when it has not ended yet, an
/// error when it is longer than `max`.
fn line_at(data: &[u8], from: usize, max: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &data[from..];
    match rest.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(end) => {
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                return Err(format!("chunked body with a line over {max} bytes"));
            }
            Ok(Some((line, from + end + 1)))
        }
        None if rest.len() > max + 1 => Err(format!("chunked body with a line over {max} bytes")),
        None => Ok(None),
    }
}

/// Decodes a chunked body (RFC 9112 7.1): chunk extensions and trailer
/// fields are ignored.
fn dechunk(data: &[u8]) -> Response {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (line, next) = match line_at(data, pos, MAX_CHUNK_LINE) {
            Ok(Some(l)) => l,
            Ok(None) => return Response::Incomplete,
            Err(why) => return Response::Failed(why),
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let after = trim_start_wsp(&line[digits..]);
        if digits == 0 || !(after.is_empty() || after[0] == b';') {
            return failed(format!(
                "malformed chunk size line {:?}",
                shown(&String::from_utf8_lossy(line))
            ));
        }
        // Leading zeros aside, more than 8 hex digits is over any limit.
        let significant = &line[..digits];
        let significant = &significant[significant
            .iter()
            .position(|&b| b != b'0')
            .unwrap_or(digits)..];
        let size = if significant.len() > 8 {
            usize::MAX
        } else {
            significant
                .iter()
                .fold(0usize, |n, &b| n * 16 + hex_value(b))
        };
        if size > MAX_BODY - body.len() {
            return failed(format!("chunked policy body larger than {MAX_BODY} bytes"));
        }
        pos = next;
        if size == 0 {
            return trailers(data, pos, body);
        }
        let Some(chunk) = data.get(pos..pos + size) else {
            return Response::Incomplete;
        };
        body.extend_from_slice(chunk);
        pos += size;
        match &data[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            [] | [b'\r'] => return Response::Incomplete,
            _ => return failed("chunk data not followed by CRLF"),
        }
    }
}

/// Skips the trailer section after the last chunk, up to its blank line.
fn trailers(data: &[u8], mut pos: usize, body: Vec<u8>) -> Response {
    let start = pos;
    loop {
        match line_at(data, pos, MAX_CHUNK_LINE) {
            Ok(Some((line, next))) => {
                if line.is_empty() {
                    return Response::Body(body);
                }
                if next - start > MAX_CHUNK_LINE {
                    return failed(format!(
                        "chunked body with trailers over {MAX_CHUNK_LINE} bytes"
                    ));
                }
                pos = next;
            }
            Ok(None) => return Response::Incomplete,
            Err(why) => return Response::Failed(why),
        }
    }
}

fn trim_start_wsp(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    &b[n..]
}

fn hex_value(b: u8) -> usize {
    usize::from(match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    })
}

/// A policy held by the cache (RFC 8461 5.1): when it was fetched (unix
/// seconds) and the TXT `id` it was fetched under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The TXT record's `id` at the fetch.
    pub id: String,
    /// When the policy was fetched (unix seconds).
    pub fetched: i64,
    /// The policy.
    pub policy: Policy,
}

impl Cached {
    /// Whether the policy is still valid at `now`: `fetched + max_age >
    /// now`.
    pub fn valid(&self, now: i64) -> bool {
        i128::from(self.fetched) + i128::from(self.policy.max_age) > i128::from(now)
    }

    /// Whether it is old enough at `now` to be fetched again
    /// ([`REFRESH_SECS`]).
    pub fn due(&self, now: i64) -> bool {
        let after = i128::from(REFRESH_SECS).min(i128::from(self.policy.max_age / 2));
        i128::from(self.fetched) + after <= i128::from(now)
    }

    /// The text of a cache file: the line `id fetched`, then the policy's
    /// [`Policy::to_text`]; CRLF line ends.
    pub fn to_text(&self) -> String {
        format!("{} {}\r\n{}", self.id, self.fetched, self.policy.to_text())
    }

    /// Reads what [`Cached::to_text`] wrote (LF or CRLF line ends);
    /// `None` on anything malformed.
    pub fn parse(text: &str) -> Option<Cached> {
        let (first, rest) = text.split_once('\n')?;
        let first = first.strip_suffix('\r').unwrap_or(first);
        let (id, fetched) = first.split_once(' ')?;
        if !valid_id(id) {
            return None;
        }
        let digits = fetched.strip_prefix('-').unwrap_or(fetched);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cached {
            id: id.to_owned(),
            fetched: fetched.parse().ok()?,
            policy: Policy::parse(rest.as_bytes()).ok()?,
        })
    }
}

/// What to do for a domain (RFC 8461 5.1).
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Use the cached policy as it is.
    UseCached,
    /// Use the cached policy, and fetch it again meanwhile: it is
    /// [`Cached::due`] and the TXT record still names it (no fetch for
    /// that id failed lately).
    UseCachedAndRefresh,
    /// Fetch the policy over HTTPS (the TXT id is new, or nothing valid
    /// is cached).
    Fetch,
    /// The domain has no policy (and nothing valid is cached).
    NoPolicy,
    /// A fetch would be due, but one for the same TXT id failed less than
    /// [`FETCH_RETRY_SECS`] ago: do as after that failure
    /// ([`after_failed_fetch`]) without trying again.
    FetchFailedLately,
}

/// A cached policy is fetched again, while messages go on using it, once
/// it is this old (seconds), or half its `max_age` when that is shorter:
/// as long as mail flows to the domain, its policy does not run out
/// (RFC 8461 leaves when to the sender), and a change its owner made
/// without a new TXT id is seen within a day.
pub const REFRESH_SECS: i64 = 86_400;

/// After a failed fetch, how long (seconds) the next fetch for the same
/// TXT `id` waits. RFC 8461 leaves the pace to the sender; without a
/// pause every message to the domain would wait for a fetch that times
/// out. A new `id` is fetched at once.
pub const FETCH_RETRY_SECS: i64 = 300;

/// A policy fetch that failed: for which TXT `id`, and when (unix
/// seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFetch {
    /// The TXT record's `id` the fetch was for.
    pub id: String,
    /// When it failed.
    pub at: i64,
}

impl FailedFetch {
    /// Whether a fetch for `record` at `now` should wait: same `id`, and
    /// less than [`FETCH_RETRY_SECS`] since the failure (a clock that
    /// went back does not hold the fetch off).
    pub fn holds(&self, record: &TxtRecord, now: i64) -> bool {
        self.id == record.id && self.pausing(now)
    }

    /// Whether `now` falls in the pause after the failure.
    pub fn pausing(&self, now: i64) -> bool {
        (self.at..self.at.saturating_add(FETCH_RETRY_SECS)).contains(&now)
    }
}

/// What to do for a domain given the outcome of its TXT lookup and its
/// cached policy, at `now` (RFC 8461 5.1). `txt` is `Ok(Some(record))`,
/// `Ok(None)` when the name has no usable STS record (no such name, no
/// TXT, none or several `v=STSv1` strings, malformed), `Err(())` when the
/// lookup failed for now.
///
/// | TXT lookup             | valid cache, same id | valid cache, other id | no valid cache |
/// |------------------------|----------------------|-----------------------|----------------|
/// | a record               | UseCached            | Fetch                 | Fetch          |
/// | no record              | UseCached            | UseCached             | NoPolicy       |
/// | failed                 | UseCached            | UseCached             | NoPolicy       |
///
/// A cached policy is kept until it expires: a TXT record that goes away
/// does not remove it (RFC 8461 5.1). A `Fetch` that `failed` lately for
/// the same id is [`Next::FetchFailedLately`] instead. A `UseCached` of
/// the id the record names is [`Next::UseCachedAndRefresh`] once the
/// policy is [`Cached::due`], unless a fetch for that id failed lately.
pub fn next(
    txt: Result<Option<&TxtRecord>, ()>,
    cached: Option<&Cached>,
    failed: Option<&FailedFetch>,
    now: i64,
) -> Next {
    let valid = cached.filter(|c| c.valid(now));
    match (txt, valid) {
        (Ok(Some(record)), Some(c)) if c.id == record.id => {
            if c.due(now) && !failed.is_some_and(|f| f.holds(record, now)) {
                Next::UseCachedAndRefresh
            } else {
                Next::UseCached
            }
        }
        (Ok(Some(record)), _) if failed.is_some_and(|f| f.holds(record, now)) => {
            Next::FetchFailedLately
        }
        (Ok(Some(_)), _) => Next::Fetch,
        (Ok(None) | Err(()), Some(_)) => Next::UseCached,
        (Ok(None) | Err(()), None) => Next::NoPolicy,
    }
}

/// The policy to use after a fetch failed (RFC 8461 5.1, "use the cached
/// policy"): the cached one while it is valid at `now`, else none.
pub fn after_failed_fetch(cached: Option<&Cached>, now: i64) -> Option<&Cached> {
    cached.filter(|c| c.valid(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The policy of RFC 8461 3.2.
    const RFC_POLICY: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    fn rfc_policy() -> Policy {
        Policy {
            mode: Mode::Enforce,
            mx: vec![
                "mail.example.com".into(),
                "*.example.net".into(),
                "backupmx.example.com".into(),
            ],
            max_age: 604_800,
        }
    }

    fn txt(strings: &[&str]) -> Option<TxtRecord> {
        let bytes: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).collect();
        txt_record(&bytes)
    }

    fn id(s: &str) -> Option<TxtRecord> {
        Some(TxtRecord { id: s.into() })
    }

    #[test]
    fn rfc_8461_3_1_txt_record_example() {
        assert_eq!(
            txt(&["v=STSv1; id=20160831085700Z;"]),
            id("20160831085700Z")
        );
    }

    #[test]
    fn txt_record_selection() {
        // Other TXT strings of the name are discarded.
        assert_eq!(
            txt(&["hello", "v=spf1 -all", "v=STSv1; id=abc", "v=STSv10; id=x"]),
            id("abc")
        );
        assert_eq!(txt(&[]), None);
        assert_eq!(txt(&["v=spf1 -all"]), None);
        // Two STS records: none (even when both are the same).
        assert_eq!(txt(&["v=STSv1; id=a", "v=STSv1; id=b"]), None);
        assert_eq!(txt(&["v=STSv1; id=a", "v=STSv1; id=a"]), None);
        // One malformed and one good: still two.
        assert_eq!(txt(&["v=STSv1; id=a-b", "v=STSv1; id=b"]), None);
    }

    #[test]
    fn txt_record_syntax() {
        for (record, want) in [
            ("v=STSv1;id=a", id("a")),
            ("v=STSv1 ;\tid=a ; ", id("a")),
            ("v=STSv1; id=a;", id("a")),
            ("v=STSv1; id=a; ext=val_ue.1", id("a")),
            ("v=STSv1; ext-1.x=1; id=a", id("a")),
            (
                "v=STSv1; id=12345678901234567890123456789012",
                id("12345678901234567890123456789012"),
            ),
            // id of 33 characters, empty, with `-`, with a space inside.
            ("v=STSv1; id=123456789012345678901234567890123", None),
            ("v=STSv1; id=", None),
            ("v=STSv1; id=a-b", None),
            ("v=STSv1; id=a b", None),
            // v not first, or missing, or another version.
            ("id=a; v=STSv1", None),
            (" v=STSv1; id=a", None),
            ("v=STSv2; id=a", None),
            ("v=stsv1; id=a", None),
            // No id, two ids, names are case-sensitive.
            ("v=STSv1", None),
            ("v=STSv1;", None),
            ("v=STSv1; id=a; id=b", None),
            ("v=STSv1; ID=a", None),
            // Empty fields, a field without `=`, bad extensions.
            ("v=STSv1;; id=a", None),
            ("v=STSv1; id=a;;", None),
            ("v=STSv1; id=a; junk", None),
            ("v=STSv1; id=a; _x=1", None),
            ("v=STSv1; id=a; x=", None),
            ("v=STSv1; id=a; x=a=b", None),
            ("v=STSv1; id=a; x=\u{e9}", None),
            ("v=STSv1; id=a; x=1 2", None),
            ("v=STSv1; id=a; abcdefghijklmnopqrstuvwxyz0123456=1", None),
        ] {
            assert_eq!(txt(&[record]), want, "{record:?}");
        }
        assert_eq!(txt_record(&[b"v=STSv1; id=a; x=\xff"]), None);
    }

    #[test]
    fn rfc_8461_3_2_policy_example() {
        assert_eq!(Policy::parse(RFC_POLICY), Ok(rfc_policy()));
        // The same with LF line ends, no final line end, odd spacing,
        // blank lines, unknown fields, upper-case names in mx.
        let loose = b"version:STSv1\nmode:   enforce\t\n\nmx: MAIL.example.com.\r\nfoo: bar baz\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800";
        assert_eq!(Policy::parse(loose), Ok(rfc_policy()));
        assert_eq!(
            Policy::parse(rfc_policy().to_text().as_bytes()),
            Ok(rfc_policy())
        );
        assert_eq!(rfc_policy().to_text().as_bytes(), RFC_POLICY);
    }

    #[test]
    fn policy_modes_and_max_age() {
        let p = |s: &str| Policy::parse(s.as_bytes());
        let none = p("version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(
            (none.mode, none.mx.len(), none.max_age),
            (Mode::None, 0, 86400)
        );
        let testing = p("version: STSv1\nmode: testing\nmx: mx.b.test\nmax_age: 0\n").unwrap();
        assert_eq!((testing.mode, testing.max_age), (Mode::Testing, 0));
        for (age, want) in [
            ("0000000001", 1),
            ("31557600", 31_557_600),
            ("31557601", MAX_MAX_AGE),
            ("9999999999", MAX_MAX_AGE),
        ] {
            let got = p(&format!("version: STSv1\nmode: none\nmax_age: {age}\n"));
            assert_eq!(got.map(|p| p.max_age), Ok(want), "{age}");
        }
    }

    #[test]
    fn policy_errors() {
        let p = |s: &str| Policy::parse(s.as_bytes());
        let with = |extra: &str| {
            p(&format!(
                "version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 86400\n{extra}"
            ))
        };
        assert_eq!(
            Policy::parse(b"version: STSv1\nmx: \xff\n"),
            Err(PolicyError::NotUtf8)
        );
        assert_eq!(with("oops"), Err(PolicyError::NoColon { line: 5 }));
        assert_eq!(
            with("version : STSv1"),
            Err(PolicyError::BadFieldName {
                line: 5,
                name: "version ".into()
            })
        );
        assert_eq!(
            with(" mode: none"),
            Err(PolicyError::BadFieldName {
                line: 5,
                name: " mode".into()
            })
        );
        assert_eq!(
            with("version: STSv1"),
            Err(PolicyError::Duplicate("version"))
        );
        assert_eq!(with("mode: enforce"), Err(PolicyError::Duplicate("mode")));
        assert_eq!(with("max_age: 1"), Err(PolicyError::Duplicate("max_age")));
        assert_eq!(
            p("mode: enforce\nmx: a.test\nmax_age: 1"),
            Err(PolicyError::Missing("version"))
        );
        assert_eq!(
            p("version: STSv1\nmx: a.test\nmax_age: 1"),
            Err(PolicyError::Missing("mode"))
        );
        assert_eq!(
            p("version: STSv1\nmode: enforce\nmx: a.test"),
            Err(PolicyError::Missing("max_age"))
        );
        assert_eq!(
            p("version: STSv1\nmode: enforce\nmax_age: 1"),
            Err(PolicyError::NoMx(Mode::Enforce))
        );
        assert_eq!(
            p("version: STSv1\nmode: testing\nmax_age: 1"),
            Err(PolicyError::NoMx(Mode::Testing))
        );
        assert_eq!(p(""), Err(PolicyError::Missing("version")));
        assert_eq!(
            p("version: STSv2\nmode: none\nmax_age: 1"),
            Err(PolicyError::BadVersion("STSv2".into()))
        );
        assert_eq!(
            p("version: stsv1\nmode: none\nmax_age: 1"),
            Err(PolicyError::BadVersion("stsv1".into()))
        );
        for mode in ["Enforce", "", "report", "enforce testing"] {
            assert_eq!(
                p(&format!("version: STSv1\nmode: {mode}\nmax_age: 1")),
                Err(PolicyError::BadMode(mode.into()))
            );
        }
        for age in [
            "",
            "-1",
            "+1",
            "1.5",
            "12345678901",
            "1e3",
            "0x10",
            "\u{661}",
        ] {
            assert_eq!(
                p(&format!("version: STSv1\nmode: none\nmax_age: {age}")),
                Err(PolicyError::BadMaxAge(age.into())),
                "{age}"
            );
        }
        for mx in [
            "",
            ".",
            "*",
            "*.",
            "a..b",
            ".a.b",
            "a.*.b",
            "**.b",
            "*a.b",
            "a b.c",
            "m\u{e4}il.test",
            "a/b",
            "a:25",
        ] {
            assert_eq!(
                with(&format!("mx: {mx}")),
                Err(PolicyError::BadMx(mx.into())),
                "{mx:?}"
            );
        }
        let long_label = "a".repeat(64);
        assert!(matches!(
            with(&format!("mx: {long_label}.test")),
            Err(PolicyError::BadMx(_))
        ));
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(matches!(
            with(&format!("mx: {long_name}")),
            Err(PolicyError::BadMx(_))
        ));
        // A long value is shortened in the error.
        let long_mode = "x".repeat(1000);
        let Err(PolicyError::BadMode(shown)) = with(&format!("mode: {long_mode}")) else {
            panic!("a second mode is refused first as a bad mode");
        };
        assert!(shown.len() < 100);
        // Every message names the field.
        for (e, field) in [
            (PolicyError::Missing("mode"), "mode"),
            (PolicyError::Duplicate("max_age"), "max_age"),
            (PolicyError::NoMx(Mode::Testing), "mx"),
            (PolicyError::BadMx("a b".into()), "mx"),
            (PolicyError::BadMaxAge("x".into()), "max_age"),
            (PolicyError::BadVersion("x".into()), "version"),
            (PolicyError::BadMode("x".into()), "mode"),
            (PolicyError::NoColon { line: 3 }, "line 3"),
        ] {
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn rfc_8461_4_1_mx_matching() {
        let policy = rfc_policy();
        for (host, want) in [
            ("mail.example.com", true),
            ("MAIL.Example.COM", true),
            ("mail.example.com.", true),
            ("backupmx.example.com", true),
            ("a.example.net", true),
            ("A.EXAMPLE.NET.", true),
            ("_x-1.example.net", true),
            ("example.net", false),
            ("a.b.example.net", false),
            (".example.net", false),
            ("xexample.net", false),
            ("example.com", false),
            ("mail.example.com.evil", false),
            ("evilmail.example.com", false),
            ("", false),
            (".", false),
        ] {
            assert_eq!(policy.mx_matches(host), want, "{host:?}");
        }
        let none = Policy {
            mode: Mode::None,
            mx: vec![],
            max_age: 1,
        };
        assert!(!none.mx_matches("mail.example.com"));
    }

    #[test]
    fn rfc_8461_3_3_policy_url_and_request() {
        assert_eq!(policy_host("Example.COM."), "mta-sts.example.com");
        assert_eq!(POLICY_PATH, "/.well-known/mta-sts.txt");
        assert_eq!(
            request("example.com"),
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nUser-Agent: scop\r\nConnection: close\r\n\r\n"
        );
        // No header can be slipped in through the name.
        let r = request("a.test\r\nX-Evil: 1");
        assert_eq!(r.iter().filter(|&&b| b == b'\n').count(), 5);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(&r).unwrap().is_complete());
        assert_eq!(req.headers.len(), 3);
    }

    fn ok_head(extra: &str) -> String {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}\r\n")
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        let mut r = ok_head(&format!("Content-Length: {}\r\n", body.len())).into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut r = ok_head("Transfer-Encoding: chunked\r\n").into_bytes();
        for (i, c) in body.chunks(chunk).enumerate() {
            if i % 2 == 0 {
                r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            } else {
                r.extend_from_slice(format!("{:X} ;name=\"v;x\";flag\r\n", c.len()).as_bytes());
            }
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0;last\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n");
        r
    }

    fn to_close(body: &[u8]) -> Vec<u8> {
        let mut r = ok_head("").into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn is_failed(r: &Response, needle: &str) -> bool {
        matches!(r, Response::Failed(why) if why.contains(needle))
    }

    #[test]
    fn http_content_length() {
        let r = with_length(RFC_POLICY);
        assert_eq!(response(&r, false), Response::Body(RFC_POLICY.to_vec()));
        assert_eq!(response(&r, true), Response::Body(RFC_POLICY.to_vec()));
        // Bytes after the body are not part of it.
        let mut more = r.clone();
        more.extend_from_slice(b"garbage");
        assert_eq!(response(&more, false), Response::Body(RFC_POLICY.to_vec()));
        // Empty body, HTTP/1.0, upper-case media type, a repeated
        // equal length.
        assert_eq!(response(&with_length(b""), false), Response::Body(vec![]));
        let r10 = b"HTTP/1.0 200 OK\r\nCONTENT-TYPE: TEXT/PLAIN\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(response(r10, false), Response::Body(b"ab".to_vec()));
        let conflicting = ok_head("Content-Length: 2\r\nContent-Length: 3\r\n") + "abc";
        assert!(is_failed(
            &response(conflicting.as_bytes(), true),
            "conflicting"
        ));
        for bad in ["-1", "1 2", "0x2", "", "+2", "99999999999999999999"] {
            let r = ok_head(&format!("Content-Length: {bad}\r\n")) + "ab";
            assert!(
                is_failed(&response(r.as_bytes(), true), "Content-Length"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn http_chunked_with_extensions_and_trailers() {
        for size in [1, 7, 100, 4096] {
            let r = chunked(RFC_POLICY, size);
            assert_eq!(
                response(&r, false),
                Response::Body(RFC_POLICY.to_vec()),
                "{size}"
            );
        }
        // LF alone as line end, leading zeros, no trailers.
        let r = ok_head("Transfer-Encoding: Chunked\r\n") + "0003\nabc\n0\n\n";
        assert_eq!(
            response(r.as_bytes(), false),
            Response::Body(b"abc".to_vec())
        );
        // Transfer-Encoding wins over Content-Length.
        let r = ok_head("Content-Length: 100\r\nTransfer-Encoding: chunked\r\n")
            + "1\r\na\r\n0\r\n\r\n";
        assert_eq!(response(r.as_bytes(), false), Response::Body(b"a".to_vec()));
        for bad in [
            "x\r\n",
            "\r\n",
            "1x\r\na\r\n0\r\n\r\n",
            "1\r\nab\r\n0\r\n\r\n",
            "-1\r\n",
        ] {
            let r = ok_head("Transfer-Encoding: chunked\r\n") + bad;
            assert!(
                matches!(response(r.as_bytes(), true), Response::Failed(_)),
                "{bad:?}"
            );
            assert!(
                matches!(response(r.as_bytes(), false), Response::Failed(_)),
                "{bad:?}"
            );
        }
        for te in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
            let r = ok_head(&format!("Transfer-Encoding: {te}\r\n")) + "0\r\n\r\n";
            assert!(
                is_failed(&response(r.as_bytes(), true), "Transfer-Encoding"),
                "{te}"
            );
        }
        // Endless chunk extensions or trailers are refused.
        let r = ok_head("Transfer-Encoding: chunked\r\n") + "1;" + &"x".repeat(MAX_CHUNK_LINE);
        assert!(is_failed(&response(r.as_bytes(), false), "line over"));
        let r = ok_head("Transfer-Encoding: chunked\r\n") + "0\r\n" + &"X-A: 1\r\n".repeat(1000);
        assert!(is_failed(&response(r.as_bytes(), false), "trailers"));
    }

    #[test]
    fn http_read_to_close() {
        let r = to_close(RFC_POLICY);
        assert_eq!(response(&r, false), Response::Incomplete);
        assert_eq!(response(&r, true), Response::Body(RFC_POLICY.to_vec()));
        assert_eq!(response(&to_close(b""), true), Response::Body(vec![]));
    }

    #[test]
    fn http_statuses_and_media_types_refused() {
        let moved = b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.test/\r\nContent-Length: 0\r\n\r\n";
        let r = response(moved, false);
        assert!(is_failed(&r, "301") && is_failed(&r, "redirect"), "{r:?}");
        let r = response(b"HTTP/1.1 302 Found\r\n\r\n", false);
        assert!(is_failed(&r, "302"), "{r:?}");
        let r = response(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n",
            false,
        );
        assert!(is_failed(&r, "404") && is_failed(&r, "Not Found"), "{r:?}");
        let r = response(b"HTTP/1.1 500 \r\n\r\n", true);
        assert!(is_failed(&r, "500"), "{r:?}");
        let r = response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", true);
        assert!(is_failed(&r, "101"), "{r:?}");
        for ct in [
            "text/html",
            "text/plain-x",
            "application/octet-stream",
            "text",
            "",
        ] {
            let r = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 0\r\n\r\n");
            assert!(
                is_failed(&response(r.as_bytes(), true), "not text/plain"),
                "{ct}"
            );
        }
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true);
        assert!(is_failed(&r, "without Content-Type"), "{r:?}");
        let two = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n";
        assert!(is_failed(&response(two.as_bytes(), true), "more than one"));
        for ct in [
            " Text/Plain ",
            "text/plain;charset=us-ascii",
            "TEXT/PLAIN ; format=flowed",
        ] {
            let r = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 1\r\n\r\nx");
            assert_eq!(
                response(r.as_bytes(), true),
                Response::Body(b"x".to_vec()),
                "{ct}"
            );
        }
        let r = response(b"SMTP/1.1 200 OK\r\n\r\n", true);
        assert!(is_failed(&r, "malformed"), "{r:?}");
    }

    #[test]
    fn http_interim_responses_are_skipped() {
        let mut r =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec();
        r.extend_from_slice(&with_length(b"ab"));
        assert_eq!(response(&r, false), Response::Body(b"ab".to_vec()));
    }

    #[test]
    fn http_bodies_over_64_kib_refused() {
        let big = vec![b'a'; MAX_BODY + 1];
        let just = &big[..MAX_BODY];
        assert_eq!(
            response(&with_length(just), false),
            Response::Body(just.to_vec())
        );
        assert_eq!(
            response(&chunked(just, 1000), false),
            Response::Body(just.to_vec())
        );
        assert_eq!(
            response(&to_close(just), true),
            Response::Body(just.to_vec())
        );
        // Refused as soon as the length is known.
        let head = ok_head(&format!("Content-Length: {}\r\n", MAX_BODY + 1));
        assert!(is_failed(&response(head.as_bytes(), false), "larger"));
        assert!(is_failed(&response(&chunked(&big, 1000), false), "larger"));
        let announced = ok_head("Transfer-Encoding: chunked\r\n") + "10001\r\n";
        assert!(is_failed(&response(announced.as_bytes(), false), "larger"));
        let huge = ok_head("Transfer-Encoding: chunked\r\n") + "00000000ffffffffffffffffffff\r\n";
        assert!(is_failed(&response(huge.as_bytes(), false), "larger"));
        assert!(is_failed(&response(&to_close(&big), false), "larger"));
        assert!(is_failed(&response(&to_close(&big), true), "larger"));
    }

    #[test]
    fn http_heads_too_large_refused() {
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert!(is_failed(&response(many.as_bytes(), true), "header fields"));
        let long = format!("HTTP/1.1 200 OK\r\nX-Long: {}", "a".repeat(MAX_HEAD));
        assert!(is_failed(&response(long.as_bytes(), false), "head larger"));
        let long = format!("{}\r\n\r\n", long);
        assert!(is_failed(&response(long.as_bytes(), false), "head larger"));
    }

    #[test]
    fn http_every_split_is_incomplete_until_complete() {
        for (name, r) in [
            ("length", with_length(RFC_POLICY)),
            ("chunked", chunked(RFC_POLICY, 9)),
        ] {
            for n in 0..r.len() {
                assert_eq!(
                    response(&r[..n], false),
                    Response::Incomplete,
                    "{name} at {n}"
                );
                assert!(
                    matches!(response(&r[..n], true), Response::Failed(_)),
                    "{name} closed at {n}"
                );
            }
            assert_eq!(
                response(&r, false),
                Response::Body(RFC_POLICY.to_vec()),
                "{name}"
            );
        }
        let r = to_close(RFC_POLICY);
        let head = ok_head("").len();
        for n in 0..=r.len() {
            assert_eq!(
                response(&r[..n], false),
                Response::Incomplete,
                "close at {n}"
            );
            let want = if n < head {
                matches!(response(&r[..n], true), Response::Failed(_))
            } else {
                response(&r[..n], true) == Response::Body(r[head..n].to_vec())
            };
            assert!(want, "close, closed at {n}");
        }
    }

    #[test]
    fn http_never_incomplete_past_the_response_limit() {
        let mut r = ok_head("Transfer-Encoding: chunked\r\n").into_bytes();
        while r.len() < MAX_RESPONSE {
            r.extend_from_slice(b"0000001;ext=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n");
        }
        assert!(is_failed(&response(&r, false), "no complete response"));
    }

    fn cached(id: &str, fetched: i64, max_age: u64) -> Cached {
        Cached {
            id: id.into(),
            fetched,
            policy: Policy {
                max_age,
                ..rfc_policy()
            },
        }
    }

    #[test]
    fn rfc_8461_5_1_next_table() {
        let now = 1_000_000;
        let rec = TxtRecord { id: "a".into() };
        let same = cached("a", now - 10, 100);
        let other = cached("b", now - 10, 100);
        let expired_same = cached("a", now - 100, 100);
        let expired_other = cached("b", now - 200, 100);
        for (txt, cache, want) in [
            (Ok(Some(&rec)), Some(&same), Next::UseCached),
            (Ok(Some(&rec)), Some(&other), Next::Fetch),
            (Ok(Some(&rec)), Some(&expired_same), Next::Fetch),
            (Ok(Some(&rec)), Some(&expired_other), Next::Fetch),
            (Ok(Some(&rec)), None, Next::Fetch),
            (Ok(None), Some(&same), Next::UseCached),
            (Ok(None), Some(&other), Next::UseCached),
            (Ok(None), Some(&expired_same), Next::NoPolicy),
            (Ok(None), None, Next::NoPolicy),
            (Err(()), Some(&same), Next::UseCached),
            (Err(()), Some(&other), Next::UseCached),
            (Err(()), Some(&expired_same), Next::NoPolicy),
            (Err(()), None, Next::NoPolicy),
        ] {
            assert_eq!(next(txt, cache, None, now), want, "{txt:?} {cache:?}");
        }
    }

    #[test]
    fn a_failed_fetch_holds_the_next_for_the_same_id() {
        let now = 1_000_000;
        let rec = TxtRecord { id: "a".into() };
        let failed = |id: &str, at: i64| FailedFetch { id: id.into(), at };
        let other = cached("b", now - 10, 100);
        let same = cached("a", now - 10, 100);
        for (fail, cache, want) in [
            (failed("a", now), None, Next::FetchFailedLately),
            (
                failed("a", now - FETCH_RETRY_SECS + 1),
                None,
                Next::FetchFailedLately,
            ),
            (failed("a", now - 1), Some(&other), Next::FetchFailedLately),
            // The pause is over.
            (failed("a", now - FETCH_RETRY_SECS), None, Next::Fetch),
            // The domain published a new id.
            (failed("b", now), None, Next::Fetch),
            // A failure "in the future": the clock went back.
            (failed("a", now + 1), None, Next::Fetch),
            // Nothing to fetch anyway.
            (failed("a", now), Some(&same), Next::UseCached),
        ] {
            assert_eq!(
                next(Ok(Some(&rec)), cache, Some(&fail), now),
                want,
                "{fail:?} {cache:?}"
            );
        }
        for txt in [Ok(None), Err(())] {
            assert_eq!(
                next(txt, None, Some(&failed("a", now)), now),
                Next::NoPolicy
            );
        }
    }

    #[test]
    fn a_cached_policy_is_fetched_again_before_it_runs_out() {
        let now = 1_000_000;
        let rec = TxtRecord { id: "a".into() };
        let day = REFRESH_SECS;
        // Half a max_age of 100 s; a day of a week's.
        for (fetched, max_age, want) in [
            (now - 49, 100, Next::UseCached),
            (now - 50, 100, Next::UseCachedAndRefresh),
            (now - day + 1, 7 * day as u64, Next::UseCached),
            (now - day, 7 * day as u64, Next::UseCachedAndRefresh),
            // Expired: a fetch, as before.
            (now - 100, 100, Next::Fetch),
        ] {
            let c = cached("a", fetched, max_age);
            assert_eq!(next(Ok(Some(&rec)), Some(&c), None, now), want, "{c:?}");
        }
        let old = cached("a", now - 60, 100);
        // A refresh that failed pauses the next one; the policy is used.
        let failed = FailedFetch {
            id: "a".into(),
            at: now - 5,
        };
        assert_eq!(
            next(Ok(Some(&rec)), Some(&old), Some(&failed), now),
            Next::UseCached
        );
        // Without the record (or its lookup), the policy is used as it is.
        for txt in [Ok(None), Err(())] {
            assert_eq!(next(txt, Some(&old), None, now), Next::UseCached);
        }
        // A far future or a huge max_age do not overflow.
        assert!(!cached("a", i64::MAX, u64::MAX).due(now));
        assert!(cached("a", i64::MIN, u64::MAX).due(now));
    }

    #[test]
    fn after_a_failed_fetch_the_valid_cache_is_used() {
        let c = cached("a", 1000, 100);
        assert_eq!(after_failed_fetch(Some(&c), 1099), Some(&c));
        assert_eq!(after_failed_fetch(Some(&c), 1100), None);
        assert_eq!(after_failed_fetch(None, 0), None);
    }

    #[test]
    fn cached_validity_and_round_trip() {
        let c = cached("20160831085700Z", 1_700_000_000, 604_800);
        assert!(c.valid(1_700_000_000 + 604_799));
        assert!(!c.valid(1_700_000_000 + 604_800));
        assert!(cached("a", i64::MAX, MAX_MAX_AGE).valid(i64::MAX));
        assert!(!cached("a", i64::MIN, 0).valid(i64::MIN));
        let text = c.to_text();
        assert!(text.starts_with("20160831085700Z 1700000000\r\nversion: STSv1\r\n"));
        assert_eq!(Cached::parse(&text), Some(c.clone()));
        assert_eq!(Cached::parse(&text.replace("\r\n", "\n")), Some(c));
        let none = Cached {
            id: "x".into(),
            fetched: -5,
            policy: Policy {
                mode: Mode::None,
                mx: vec![],
                max_age: 0,
            },
        };
        assert_eq!(Cached::parse(&none.to_text()), Some(none));
        for bad in [
            "",
            "a 1",
            "a 1\r\n",
            "a 1\r\nversion: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n",
            "a-b 1\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
            "a  1\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
            "a +1\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
            "a -\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
            "a 99999999999999999999\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
            " 1\r\nversion: STSv1\r\nmode: none\r\nmax_age: 1\r\n",
        ] {
            assert_eq!(Cached::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fuzz_entry_point_on_the_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/mta_sts");
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            for n in 0..=data.len() {
                crate::fuzz::mta_sts(&data[..n]);
            }
            seeds += 1;
        }
        assert!(seeds >= 5, "{seeds} seeds");
        let seed = |name: &str| std::fs::read(format!("{dir}/{name}")).unwrap();
        for name in ["response_length.http", "response_chunked.http"] {
            let Response::Body(body) = response(&seed(name), false) else {
                panic!("{name} gives no body");
            };
            assert!(Policy::parse(&body).is_ok(), "{name}");
        }
        assert!(is_failed(
            &response(&seed("response_redirect.http"), true),
            "301"
        ));
        for name in [
            "policy_rfc8461.txt",
            "policy_testing_lf.txt",
            "policy_none.txt",
        ] {
            assert!(Policy::parse(&seed(name)).is_ok(), "{name}");
        }
        assert_eq!(
            txt_record(&[&seed("txt_record.txt")]),
            id("20160831085700Z")
        );
        let cached = Cached::parse(std::str::from_utf8(&seed("cached.txt")).unwrap());
        assert_eq!(cached.map(|c| c.fetched), Some(1_700_000_000));
        crate::fuzz::mta_sts(&with_length(RFC_POLICY));
        crate::fuzz::mta_sts(&chunked(RFC_POLICY, 5));
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        let label = "[a-z0-9_-]{1,12}";
        let name = proptest::collection::vec(label, 1..5).prop_map(|l| l.join("."));
        let pattern =
            (any::<bool>(), name).prop_map(|(wild, n)| if wild { format!("*.{n}") } else { n });
        (
            prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)],
            proptest::collection::vec(pattern, 1..6),
            0..=MAX_MAX_AGE,
        )
            .prop_map(|(mode, mx, max_age)| Policy { mode, mx, max_age })
    }

    proptest! {
        #[test]
        fn policies_round_trip_through_text(p in policy_strategy(), id in "[A-Za-z0-9]{1,32}", fetched in any::<i64>()) {
            prop_assert_eq!(Policy::parse(p.to_text().as_bytes()), Ok(p.clone()));
            for m in &p.mx {
                let host = m.strip_prefix("*.").map_or(m.clone(), |rest| format!("x.{rest}"));
                let host = format!("{}.", host.to_ascii_uppercase());
                prop_assert!(p.mx_matches(&host), "{}", host);
            }
            let c = Cached { id, fetched, policy: p };
            prop_assert_eq!(Cached::parse(&c.to_text()), Some(c));
        }

        #[test]
        fn response_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            crate::fuzz::mta_sts(&data);
        }

        #[test]
        fn response_after_an_ok_head_never_panics(
            head in prop_oneof![Just(ok_head("Transfer-Encoding: chunked\r\n")), Just(ok_head("Content-Length: 20\r\n")), Just(ok_head(""))],
            tail in proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'1'), Just(b'a'), Just(b';'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..200),
        ) {
            let mut data = head.into_bytes();
            data.extend_from_slice(&tail);
            crate::fuzz::mta_sts(&data);
        }
    }
}
