//! Bounded, incremental CRLF line reader shared by both state machines.

use crate::error::InvalidInput;

/// Result of asking the reader for a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// No complete line yet: feed more bytes.
    NeedMore,
    /// A line, CRLF removed.
    Line(Vec<u8>),
    /// A complete but invalid line (already dropped from the buffer).
    Invalid(InvalidInput),
}

/// Input buffer with a scan position, so every byte is scanned once, and a
/// skip mode for over-long lines so nothing is buffered without bound.
#[derive(Debug, Default)]
pub(crate) struct Input {
    buf: Vec<u8>,
    start: usize,
    scanned: usize,
    skipping: bool,
}

impl Input {
    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Drop everything buffered (e.g. plaintext pipelined after STARTTLS).
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.len();
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.skipping = false;
        n
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Consume `n` raw bytes (data mode).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        self.start += n;
        if self.scanned < self.start {
            self.scanned = self.start;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
    }

    /// Next CRLF-terminated line of at most `max` octets (CRLF included).
    pub(crate) fn read_line(&mut self, max: usize) -> LineRead {
        let from = self.scanned.max(self.start);
        match self.buf[from..].iter().position(|&b| b == b'\n') {
            None => {
                self.scanned = self.buf.len();
                if self.skipping || self.len() >= max {
                    self.skipping = true;
                    self.consume(self.len());
                }
                LineRead::NeedMore
            }
            Some(off) => {
                let lf = from + off;
                let line_start = self.start;
                let end = lf + 1;
                if self.skipping {
                    self.skipping = false;
                    self.consume(end - line_start);
                    return LineRead::Invalid(InvalidInput::LineTooLong);
                }
                let raw = &self.buf[line_start..lf];
                let res = if raw.last() != Some(&b'\r') {
                    Err(InvalidInput::BareLf)
                } else if raw.len() + 1 > max {
                    Err(InvalidInput::LineTooLong)
                } else {
                    let line = &raw[..raw.len() - 1];
                    if line.contains(&b'\r') {
                        Err(InvalidInput::BareCr)
                    } else if line.contains(&0) {
                        Err(InvalidInput::Nul)
                    } else {
                        Ok(line.to_vec())
                    }
                };
                self.consume(end - line_start);
                match res {
                    Ok(l) => LineRead::Line(l),
                    Err(e) => LineRead::Invalid(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_errors() {
        let mut i = Input::default();
        i.push(b"HELO a\r\nX\nY\rZ\r\n\0\r\npartial");
        assert_eq!(i.read_line(512), LineRead::Line(b"HELO a".to_vec()));
        assert_eq!(i.read_line(512), LineRead::Invalid(InvalidInput::BareLf));
        assert_eq!(i.read_line(512), LineRead::Invalid(InvalidInput::BareCr));
        assert_eq!(i.read_line(512), LineRead::Invalid(InvalidInput::Nul));
        assert_eq!(i.read_line(512), LineRead::NeedMore);
        i.push(b"\r\n");
        assert_eq!(i.read_line(512), LineRead::Line(b"partial".to_vec()));
    }

    #[test]
    fn over_long_line_is_skipped_without_buffering() {
        let mut i = Input::default();
        for _ in 0..100 {
            i.push(&[b'a'; 100]);
            assert_eq!(i.read_line(512), LineRead::NeedMore);
            assert!(i.len() < 1024);
        }
        i.push(b"aaa\r\nNOOP\r\n");
        assert_eq!(
            i.read_line(512),
            LineRead::Invalid(InvalidInput::LineTooLong)
        );
        assert_eq!(i.read_line(512), LineRead::Line(b"NOOP".to_vec()));
    }

    #[test]
    fn limit_counts_crlf() {
        let mut i = Input::default();
        let mut l = vec![b'a'; 510];
        l.extend_from_slice(b"\r\n");
        i.push(&l);
        assert!(matches!(i.read_line(512), LineRead::Line(_)));
        let mut l = vec![b'a'; 511];
        l.extend_from_slice(b"\r\n");
        i.push(&l);
        assert_eq!(
            i.read_line(512),
            LineRead::Invalid(InvalidInput::LineTooLong)
        );
    }
}
