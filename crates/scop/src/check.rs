//! The round-trip check behind `scop mime check` and `scop selfcheck`.
//!
//! For a message `m` the parser accepts, three properties must hold:
//! 1. lossless re-emit: the unmodified parse re-emits the input byte for byte;
//! 2. equivalence: `parse(encode(m))` is equivalent to `m`;
//! 3. fixed point: `encode(parse(encode(m))) == encode(m)`.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What the check concluded about one message.
#[derive(Debug)]
pub enum Outcome {
    /// All three properties hold.
    Equivalent,
    /// A property fails; the text says which and where.
    Different(String),
    /// The parser does not accept the input as a message.
    Unparsable(String),
}

/// Checks one message. A panic inside the libraries is caught and reported
/// as a difference (it is a bug: parsers must never panic).
pub fn check(input: &[u8]) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| check_inner(input))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Different(format!("the library panicked: {what}"))
        }
    }
}

fn check_inner(input: &[u8]) -> Outcome {
    let parsed = match scop_mime::parse(input) {
        Ok(parsed) => parsed,
        Err(err) => return Outcome::Unparsable(err.to_string()),
    };
    let message = &parsed.message;
    if message.raw() != input {
        return Outcome::Different(format!(
            "lossless re-emit: the parsed message does not re-emit its input\n{}",
            first_difference(input, message.raw())
        ));
    }
    let encoded = scop_mime::encode(message);
    let reparsed = match scop_mime::parse(&encoded) {
        Ok(parsed) => parsed,
        Err(err) => {
            return Outcome::Different(format!("the encoded message does not parse: {err}"));
        }
    };
    if let Err(difference) = scop_mime::equivalent(message, &reparsed.message) {
        return Outcome::Different(format!(
            "parse(encode(m)) is not equivalent to m: {difference}"
        ));
    }
    let again = scop_mime::encode(&reparsed.message);
    if again != encoded {
        return Outcome::Different(format!(
            "encode is not a fixed point: encode(parse(encode(m))) != encode(m)\n{}",
            first_difference(&encoded, &again)
        ));
    }
    Outcome::Equivalent
}

/// Counts of outcomes, printed as the last line of a check.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub equivalent: u64,
    pub different: u64,
    pub unparsable: u64,
}

impl Tally {
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Equivalent => self.equivalent += 1,
            Outcome::Different(_) => self.different += 1,
            Outcome::Unparsable(_) => self.unparsable += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.equivalent += other.equivalent;
        self.different += other.different;
        self.unparsable += other.unparsable;
    }

    pub fn checked(&self) -> u64 {
        self.equivalent + self.different + self.unparsable
    }

    pub fn ok(&self) -> bool {
        self.different == 0 && self.unparsable == 0
    }

    /// `checked N messages: E equivalent, D different, U unparsable`
    pub fn summary(&self) -> String {
        format!(
            "checked {} messages: {} equivalent, {} different, {} unparsable",
            self.checked(),
            self.equivalent,
            self.different,
            self.unparsable
        )
    }
}

/// A human description of where two byte strings first differ, with the
/// surrounding bytes escaped.
pub fn first_difference(left: &[u8], right: &[u8]) -> String {
    let at = left
        .iter()
        .zip(right)
        .position(|(a, b)| a != b)
        .unwrap_or(left.len().min(right.len()));
    let from = at.saturating_sub(40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  first difference at byte {at} (lengths {} and {}):",
        left.len(),
        right.len()
    );
    let _ = writeln!(
        out,
        "  left:  {}",
        escape(&left[from..(at + 60).min(left.len())])
    );
    let _ = write!(
        out,
        "  right: {}",
        escape(&right[from..(at + 60).min(right.len())])
    );
    out
}

/// Bytes as a printable, escaped string.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_summary_line() {
        let mut t = Tally::default();
        t.add(&Outcome::Equivalent);
        t.add(&Outcome::Different("x".into()));
        t.add(&Outcome::Unparsable("y".into()));
        assert_eq!(
            t.summary(),
            "checked 3 messages: 1 equivalent, 1 different, 1 unparsable"
        );
        assert!(!t.ok());
    }

    #[test]
    fn first_difference_points_at_the_byte() {
        let d = first_difference(b"Subject: a\r\n", b"Subject: b\r\n");
        assert!(d.contains("byte 9"), "{d}");
        assert!(d.contains("left:  Subject: a\\r\\n"), "{d}");
    }

    #[test]
    fn simple_message_is_equivalent() {
        let msg = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        assert!(matches!(check(msg), Outcome::Equivalent));
    }
}
