//! Replies (RFC 5321 4.2), enhanced status codes (RFC 3463, RFC 2034),
//! their builder and their incremental parser.

use std::fmt;

use crate::error::{ApiMisuse, Error, InvalidInput};
use crate::limits::{REPLY_LINE_MAX, REPLY_LINES_MAX};
use crate::line::{Input, LineRead};

/// An enhanced mail system status code `class.subject.detail`
/// (RFC 3463 section 2; sent per RFC 2034).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedCode {
    /// A code; `class` must be 2, 4 or 5 and `subject`/`detail` at most 999
    /// (RFC 3463 section 2).
    pub fn new(class: u8, subject: u16, detail: u16) -> Result<Self, Error> {
        if matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999 {
            Ok(EnhancedCode {
                class,
                subject,
                detail,
            })
        } else {
            Err(ApiMisuse::InvalidReplyCode.into())
        }
    }

    pub(crate) const fn new_const(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// The class digit (2 success, 4 persistent transient, 5 permanent).
    pub fn class(&self) -> u8 {
        self.class
    }

    /// The subject number.
    pub fn subject(&self) -> u16 {
        self.subject
    }

    /// The detail number.
    pub fn detail(&self) -> u16 {
        self.detail
    }

    /// Parse `d.ddd.ddd` at the start of `text`, returning the code and the
    /// rest of the text after one space.
    fn parse_prefix(text: &str) -> Option<(Self, &str)> {
        let (word, rest) = match text.split_once(' ') {
            Some((w, r)) => (w, r),
            None => (text, ""),
        };
        let mut it = word.split('.');
        let c = it.next()?;
        let s = it.next()?;
        let d = it.next()?;
        if it.next().is_some() || c.len() != 1 || s.is_empty() || d.is_empty() {
            return None;
        }
        if s.len() > 3 || d.len() > 3 {
            return None;
        }
        if !(c.bytes().chain(s.bytes()).chain(d.bytes())).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let code = EnhancedCode::new(c.parse().ok()?, s.parse().ok()?, d.parse().ok()?).ok()?;
        Some((code, rest))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A reply: three-digit code, optional enhanced code, one or more text lines
/// (RFC 5321 4.2; multi-line form 4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// A reply with the given code (200..=599), optional enhanced code whose
    /// class must match the code's first digit, and text; the text is split
    /// on newlines and control characters are replaced by spaces.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: &str) -> Result<Self, Error> {
        // RFC 5321 4.2: first digit 2-5, second digit 0-5.
        if !(200..=599).contains(&code) || (code / 10) % 10 > 5 {
            return Err(ApiMisuse::InvalidReplyCode.into());
        }
        if let Some(e) = enhanced
            && u16::from(e.class) != code / 100
        {
            return Err(ApiMisuse::InvalidReplyCode.into());
        }
        let mut lines: Vec<String> = text
            .split('\n')
            .map(|l| {
                l.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .take(REPLY_LINES_MAX)
            .collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Ok(Reply {
            code,
            enhanced,
            lines,
        })
    }

    pub(crate) fn from_static(code: u16, enhanced: EnhancedCode, text: &str) -> Self {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.to_string()],
        }
    }

    pub(crate) fn plain(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    pub(crate) fn with(code: u16, enh: (u8, u16, u16), text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: Some(EnhancedCode::new_const(enh.0, enh.1, enh.2)),
            lines: vec![text.into()],
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines (without code or enhanced code).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (RFC 5321 4.2.1 positive intermediate).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Append the wire form to `out`; enhanced codes are written on every
    /// line when `enhanced` is true (RFC 2034 section 4).
    pub fn write_to(&self, out: &mut Vec<u8>, enhanced: bool) {
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if i + 1 == n { b' ' } else { b'-' });
            let mut room = REPLY_LINE_MAX - 6;
            if let (true, Some(e)) = (enhanced, self.enhanced) {
                let e = e.to_string();
                out.extend_from_slice(e.as_bytes());
                room -= e.len() + 1;
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            // Text never carries a line break onto the wire (reply
            // injection), and the line stays within REPLY_LINE_MAX.
            let mut end = line.len().min(room);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            out.extend(
                line.as_bytes()[..end]
                    .iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form.
    pub fn to_bytes(&self, enhanced: bool) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v, enhanced);
        v
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes(true)))
    }
}

/// Incremental reply parser: feed bytes, take complete replies; says
/// "need more" by returning `Ok(None)`. Every line and the line count are
/// bounded ([`REPLY_LINE_MAX`], [`REPLY_LINES_MAX`]).
#[derive(Debug, Default)]
pub struct ReplyParser {
    input: Input,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// A parser with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes received from the server.
    pub fn push(&mut self, data: &[u8]) {
        self.input.push(data);
    }

    /// Octets buffered but not yet parsed.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Drop buffered bytes (e.g. after STARTTLS).
    pub fn clear(&mut self) {
        self.input.clear();
        self.code = None;
        self.lines.clear();
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    /// Enhanced codes are recognised when the text starts with one whose
    /// class matches the code.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, Error> {
        loop {
            let line = match self.input.read_line(REPLY_LINE_MAX) {
                LineRead::NeedMore => return Ok(None),
                LineRead::Invalid(e) => {
                    self.code = None;
                    self.lines.clear();
                    return Err(e.into());
                }
                LineRead::Line(l) => l,
            };
            let (code, last, text) = match parse_reply_line(&line) {
                Some(x) => x,
                None => {
                    self.code = None;
                    self.lines.clear();
                    return Err(InvalidInput::Reply.into());
                }
            };
            if self.code.is_some_and(|c| c != code) {
                self.code = None;
                self.lines.clear();
                return Err(InvalidInput::Reply.into());
            }
            if self.lines.len() >= REPLY_LINES_MAX {
                self.code = None;
                self.lines.clear();
                return Err(InvalidInput::Reply.into());
            }
            self.code = Some(code);
            self.lines.push(text);
            if last {
                self.code = None;
                let lines = std::mem::take(&mut self.lines);
                return Ok(Some(build_reply(code, lines)));
            }
        }
    }
}

fn parse_reply_line(line: &[u8]) -> Option<(u16, bool, String)> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(b'2'..=b'5').contains(&line[0]) || line[1] > b'5' {
        return None;
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return None,
    };
    let text = String::from_utf8_lossy(text).into_owned();
    Some((code, last, text))
}

fn build_reply(code: u16, lines: Vec<String>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|l| EnhancedCode::parse_prefix(l))
        .filter(|(e, _)| u16::from(e.class) == code / 100)
        .map(|(e, _)| e);
    let lines = match enhanced {
        Some(_) => lines
            .into_iter()
            .map(|l| match EnhancedCode::parse_prefix(&l) {
                Some((_, rest)) => rest.to_string(),
                None => l,
            })
            .collect(),
        None => lines,
    };
    Reply {
        code,
        enhanced,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_round_trip() {
        let r = Reply::new(
            250,
            Some(EnhancedCode::new(2, 0, 0).unwrap()),
            "first\nsecond",
        )
        .unwrap();
        let wire = r.to_bytes(true);
        assert_eq!(wire, b"250-2.0.0 first\r\n250 2.0.0 second\r\n");
        let mut p = ReplyParser::new();
        p.push(&wire[..5]);
        assert_eq!(p.next_reply().unwrap(), None);
        p.push(&wire[5..]);
        assert_eq!(p.next_reply().unwrap(), Some(r));
    }

    #[test]
    fn rejects_bad_lines() {
        let mut p = ReplyParser::new();
        p.push(b"25x hello\r\n");
        assert!(p.next_reply().is_err());
        p.push(b"250-a\r\n251 b\r\n");
        assert!(p.next_reply().is_err());
        p.push(b"220\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code(), 220);
    }

    #[test]
    fn enhanced_class_must_match() {
        let mut p = ReplyParser::new();
        p.push(b"250 5.0.0 odd\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.enhanced(), None);
        assert!(Reply::new(250, EnhancedCode::new(5, 0, 0).ok(), "x").is_err());
        assert!(Reply::new(600, None, "x").is_err());
    }
}
