//! mbox files (mboxrd quoting).

/// Splits an mbox (mboxrd: `>From ` lines are unquoted) into messages; a
/// file that does not start with a `From ` line is one message.
pub fn split_mbox(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    if !data.starts_with(b"From ") {
        return None;
    }
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") && previous_blank {
            if let Some(mut m) = current.take() {
                // The blank line before a separator belongs to the mbox.
                if m.ends_with(b"\r\n\r\n") {
                    m.truncate(m.len() - 2);
                } else if m.ends_with(b"\n\n") {
                    m.truncate(m.len() - 1);
                }
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let m = current.get_or_insert_with(Vec::new);
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            m.extend_from_slice(&line[1..]);
        } else {
            m.extend_from_slice(line);
        }
    }
    messages.extend(current);
    Some(messages)
}

#[cfg(test)]
mod tests {
    use super::split_mbox;

    #[test]
    fn mbox_splits_and_unquotes() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nbody\n";
        let messages = split_mbox(mbox).expect("an mbox");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], b"Subject: one\n\nFrom here\n");
        assert_eq!(messages[1], b"Subject: two\n\nbody\n");
    }

    #[test]
    fn plain_file_is_not_an_mbox() {
        assert!(split_mbox(b"Subject: x\n\nbody\n").is_none());
    }
}
