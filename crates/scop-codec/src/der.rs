//! DER elements (ITU-T X.690): enough to walk certificates and public
//! keys, never to accept what DER forbids.

/// One DER element at the start of `input`: its tag, its contents and
/// what follows it. `None` when the input is cut short, or uses a
/// high tag number, an indefinite length or a length of more than three
/// octets (16 MiB: more than any certificate or key).
pub fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (content, after) = rest.split_at_checked(len)?;
    Some((tag, content, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_and_long_forms_and_what_der_forbids() {
        assert_eq!(element(&[]), None);
        assert_eq!(element(&[0x30]), None);
        assert_eq!(element(&[0x30, 0x02, 0x00]), None, "cut short");
        assert_eq!(element(&[0x30, 0x80]), None, "indefinite length");
        assert_eq!(
            element(&[0x30, 0x84, 0, 0, 0, 1, 0]),
            None,
            "four length octets"
        );
        assert_eq!(element(&[0x1f, 0x01, 0x00]), None, "high tag number");
        assert_eq!(
            element(&[0x04, 0x81, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..])),
            "long form"
        );
        assert_eq!(
            element(&[0x02, 0x01, 0x05, 0x30, 0x00]),
            Some((0x02, &[0x05][..], &[0x30, 0x00][..]))
        );
    }

    proptest! {
        /// Any element that encodes with a definite length reads back,
        /// whatever follows it.
        #[test]
        fn written_elements_read_back(
            tag in 0u8..0x1f,
            content in proptest::collection::vec(any::<u8>(), 0..70_000),
            after in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = vec![tag];
            let len = content.len();
            match len {
                0..=0x7f => bytes.push(len as u8),
                0x80..=0xff => bytes.extend([0x81, len as u8]),
                0x100..=0xffff => bytes.extend([0x82, (len >> 8) as u8, len as u8]),
                _ => bytes.extend([0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
            }
            bytes.extend_from_slice(&content);
            bytes.extend_from_slice(&after);
            prop_assert_eq!(element(&bytes), Some((tag, &content[..], &after[..])));
        }

        /// On any bytes: no panic, and the parts lie within the input in
        /// order.
        #[test]
        fn parts_are_in_the_input(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some((_, content, after)) = element(&bytes) {
                prop_assert_eq!(content.len() + after.len() <= bytes.len(), true);
                prop_assert_eq!(&bytes[bytes.len() - after.len()..], after);
            }
        }
    }
}
