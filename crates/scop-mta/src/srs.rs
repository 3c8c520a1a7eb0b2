//! Sender Rewriting Scheme (sans-IO), so that mail we forward passes SPF
//! at the next hop: the envelope sender `user@origin.example` becomes
//! `SRS0=HHHH=TT=origin.example=user@our.domain`, and a bounce sent to that
//! address is accepted only with a valid hash and a recent timestamp, then
//! routed back to the original sender.
//!
//! `HHHH` is the first four base32 characters of HMAC-SHA256 over the
//! lower-cased `TT`, domain and local part (case-insensitive, since
//! relays may change case); `TT` is the day number modulo 1024 in two
//! base32 characters. Time is passed in.

use aws_lc_rs::hmac;

/// How many days a rewritten address stays valid for bounces.
pub const MAX_AGE_DAYS: i64 = 21;

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const DAY: i64 = 86_400;

/// An SRS key (keep it secret: it prevents others from using us as a
/// bounce relay).
#[derive(Debug, Clone)]
pub struct Srs {
    key: Vec<u8>,
}

/// Why an SRS address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not of the form `SRS0=HHHH=TT=domain=local`.
    #[error("not an SRS0 address")]
    Malformed,
    /// The hash does not match: forged.
    #[error("SRS hash mismatch")]
    BadHash,
    /// Older than [`MAX_AGE_DAYS`].
    #[error("SRS address expired")]
    Expired,
}

impl Srs {
    /// A rewriter with `key`.
    pub fn new(key: &[u8]) -> Self {
        Srs { key: key.to_vec() }
    }

    fn hash(&self, tt: &str, domain: &str, local: &str) -> String {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let data = format!(
            "{}={}={}",
            tt.to_ascii_lowercase(),
            domain.to_ascii_lowercase(),
            local.to_ascii_lowercase()
        );
        let tag = hmac::sign(&k, data.as_bytes());
        let t = tag.as_ref();
        // 20 bits -> 4 base32 characters.
        let bits = (u32::from(t[0]) << 12) | (u32::from(t[1]) << 4) | (u32::from(t[2]) >> 4);
        (0..4)
            .map(|i| B32[((bits >> (15 - 5 * i)) & 31) as usize] as char)
            .collect()
    }

    fn timestamp(now: i64) -> String {
        let day = now.div_euclid(DAY).rem_euclid(1024);
        let mut s = String::new();
        s.push(B32[(day >> 5) as usize] as char);
        s.push(B32[(day & 31) as usize] as char);
        s
    }

    /// Rewrites `sender` (`local@domain`) for forwarding from
    /// `our_domain`. The null sender stays null (returns `None`).
    pub fn forward(&self, sender: &str, our_domain: &str, now: i64) -> Option<String> {
        let (local, domain) = sender.rsplit_once('@')?;
        if local.is_empty() || domain.is_empty() {
            return None;
        }
        let tt = Self::timestamp(now);
        let h = self.hash(&tt, domain, local);
        Some(format!("SRS0={h}={tt}={domain}={local}@{our_domain}"))
    }

    /// Whether `local` (the local part of a recipient at our domain) looks
    /// like an SRS0 address.
    pub fn is_srs(local: &str) -> bool {
        local.len() > 5
            && local
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("SRS0="))
    }

    /// The original sender for a bounce addressed to the SRS local part
    /// `local`, if its hash and age check out.
    pub fn reverse(&self, local: &str, now: i64) -> Result<String, SrsError> {
        if !Self::is_srs(local) {
            return Err(SrsError::Malformed);
        }
        let mut parts = local[5..].splitn(4, '=');
        let (Some(h), Some(tt), Some(domain), Some(orig)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if h.len() != 4 || tt.len() != 2 || domain.is_empty() || orig.is_empty() {
            return Err(SrsError::Malformed);
        }
        if !self.hash(tt, domain, orig).eq_ignore_ascii_case(h) {
            return Err(SrsError::BadHash);
        }
        let decode = |c: u8| {
            B32.iter()
                .position(|&b| b == c.to_ascii_lowercase())
                .map(|p| p as i64)
        };
        let tb = tt.as_bytes();
        let (Some(hi), Some(lo)) = (decode(tb[0]), decode(tb[1])) else {
            return Err(SrsError::Malformed);
        };
        let then = (hi << 5) | lo;
        let today = now.div_euclid(DAY).rem_euclid(1024);
        let age = (today - then).rem_euclid(1024);
        if age > MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        Ok(format!("{orig}@{domain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_750_000_000;

    #[test]
    fn round_trip() {
        let srs = Srs::new(b"secret");
        let a = srs
            .forward("Alice@Origin.example", "fwd.example", NOW)
            .unwrap();
        assert!(a.starts_with("SRS0="), "{a}");
        assert!(a.ends_with("=Origin.example=Alice@fwd.example"), "{a}");
        let local = a.rsplit_once('@').unwrap().0;
        assert_eq!(srs.reverse(local, NOW).unwrap(), "Alice@Origin.example");
        // Case changes on the way back do not matter.
        assert_eq!(
            srs.reverse(&local.to_ascii_uppercase(), NOW + DAY).unwrap(),
            "ALICE@ORIGIN.EXAMPLE"
        );
    }

    #[test]
    fn forged_and_expired_are_refused() {
        let srs = Srs::new(b"secret");
        let a = srs.forward("a@o.example", "f.example", NOW).unwrap();
        let local = a.rsplit_once('@').unwrap().0;
        assert_eq!(
            Srs::new(b"other").reverse(local, NOW),
            Err(SrsError::BadHash)
        );
        let tampered = local.replace("=a", "=b");
        assert_eq!(srs.reverse(&tampered, NOW), Err(SrsError::BadHash));
        assert_eq!(
            srs.reverse(local, NOW + (MAX_AGE_DAYS + 1) * DAY),
            Err(SrsError::Expired)
        );
        assert!(srs.reverse(local, NOW + MAX_AGE_DAYS * DAY).is_ok());
        assert_eq!(srs.reverse("SRS0=xx", NOW), Err(SrsError::Malformed));
        assert_eq!(srs.reverse("bob", NOW), Err(SrsError::Malformed));
    }

    #[test]
    fn null_sender_stays_null() {
        assert_eq!(Srs::new(b"k").forward("", "f.example", NOW), None);
    }

    proptest! {
        #[test]
        fn reverse_never_panics(s in "\\PC{0,80}") {
            let _ = Srs::new(b"k").reverse(&s, NOW);
        }

        #[test]
        fn any_sender_round_trips(local in "[a-zA-Z0-9.+_-]{1,30}", domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
            let srs = Srs::new(b"k");
            let a = srs.forward(&format!("{local}@{domain}"), "f.example", NOW).unwrap();
            let l = a.rsplit_once('@').unwrap().0;
            prop_assert_eq!(srs.reverse(l, NOW).unwrap(), format!("{local}@{domain}"));
        }
    }
}
