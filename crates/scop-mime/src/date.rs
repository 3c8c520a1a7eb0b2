//! Date and time (RFC 5322 §3.3, obsolete forms §4.3).

/// A date-time as written in a message (RFC 5322 §3.3), with its zone offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DateTime {
    /// Four-digit year (two-digit obsolete years are expanded, §4.3).
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31.
    pub day: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 60 (leap second).
    pub second: u8,
    /// Zone offset east of UTC, in minutes.
    pub tz_offset_minutes: i16,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    /// Parses a date-time field value leniently (as the message parser
    /// does): optional day name, obsolete zones and two-digit years,
    /// missing seconds, comments.
    pub fn parse(value: &[u8]) -> Option<DateTime> {
        parse_date(value)
    }

    /// `Thu, 26 Nov 2026 11:13:03 +0000` (RFC 5322 §3.3).
    pub fn to_rfc5322(&self) -> String {
        let days = days_from_civil(self.year as i64, self.month as i64, self.day as i64);
        // 1970-01-01 was a Thursday (index 3).
        let wd = DAYS[(days + 3).rem_euclid(7) as usize];
        let month = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        let sign = if self.tz_offset_minutes < 0 { '-' } else { '+' };
        let off = self.tz_offset_minutes.unsigned_abs();
        format!(
            "{wd}, {:02} {month} {:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.day,
            self.year,
            self.hour,
            self.minute,
            self.second,
            off / 60,
            off % 60
        )
    }

    /// Seconds since the Unix epoch (UTC).
    pub fn unix_timestamp(&self) -> i64 {
        let days = days_from_civil(self.year as i64, self.month as i64, self.day as i64);
        days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64
            - self.tz_offset_minutes as i64 * 60
    }

    /// The UTC date-time of a Unix timestamp (for callers that inject time).
    pub fn from_unix_timestamp(ts: i64) -> DateTime {
        let days = ts.div_euclid(86_400);
        let secs = ts.rem_euclid(86_400);
        // civil_from_days
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
        DateTime {
            year: y.clamp(0, 9999) as u16,
            month: m as u8,
            day: d as u8,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
            tz_offset_minutes: 0,
        }
    }
}

fn words(v: &[u8]) -> Vec<&[u8]> {
    // Strip comments, split on whitespace and commas.
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, &b) in v.iter().enumerate() {
        let sep = depth > 0 || matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'(' | b')');
        if sep {
            if let Some(s) = start.take() {
                out.push(&v[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&v[s..]);
    }
    out
}

fn num(w: &[u8]) -> Option<u32> {
    if w.is_empty() || w.len() > 4 || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(w).ok()?.parse().ok()
}

fn month(w: &[u8]) -> Option<u8> {
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| w[..3].eq_ignore_ascii_case(m.as_bytes()))
        .map(|i| i as u8 + 1)
}

fn zone(w: &[u8]) -> Option<i16> {
    if let [s @ (b'+' | b'-'), d @ ..] = w
        && d.len() == 4
        && d.iter().all(u8::is_ascii_digit)
    {
        let n = num(d)? as i16;
        let m = n / 100 * 60 + n % 100;
        return Some(if *s == b'-' { -m } else { m });
    }
    let up = w.to_ascii_uppercase();
    Some(match up.as_slice() {
        b"UT" | b"UTC" | b"GMT" | b"Z" => 0,
        b"EDT" => -4 * 60,
        b"EST" | b"CDT" => -5 * 60,
        b"CST" | b"MDT" => -6 * 60,
        b"MST" | b"PDT" => -7 * 60,
        b"PST" => -8 * 60,
        [c] if c.is_ascii_alphabetic() => 0, // military zones: treat as 0 (§4.3)
        _ => return None,
    })
}

/// Parses an RFC 5322 date-time leniently: optional day name, obsolete
/// zones and two-digit years, missing seconds, comments.
pub(crate) fn parse_date(v: &[u8]) -> Option<DateTime> {
    let ws = words(v);
    let mut i = 0;
    // Skip a day name.
    if ws
        .first()
        .is_some_and(|w| w.first().is_some_and(u8::is_ascii_alphabetic) && month(w).is_none())
    {
        i = 1;
    }
    // day month year | month day year
    let (day, mon, mut year);
    let a = ws.get(i)?;
    if let Some(d) = num(a) {
        day = d;
        mon = month(ws.get(i + 1)?)?;
        year = num(ws.get(i + 2)?)?;
    } else {
        mon = month(a)?;
        day = num(ws.get(i + 1)?)?;
        year = num(ws.get(i + 2)?)?;
    }
    i += 3;
    if ws.get(i - 1)?.len() < 4 {
        year = if year < 50 {
            year + 2000
        } else if year < 1000 {
            year + 1900
        } else {
            year
        };
    }
    let time = ws.get(i)?;
    let mut t = time.split(|&b| b == b':');
    let hour = num(t.next()?)?;
    let minute = num(t.next()?)?;
    let second = match t.next() {
        Some(s) => num(s)?,
        None => 0,
    };
    let tz = ws.get(i + 1).and_then(|z| zone(z)).unwrap_or(0);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year > 9999 {
        return None;
    }
    Some(DateTime {
        year: year as u16,
        month: mon,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        tz_offset_minutes: tz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let d = parse_date(b" Fri, 21 Nov 1997 09:55:06 -0600").expect("date");
        assert_eq!(d.to_rfc5322(), "Fri, 21 Nov 1997 09:55:06 -0600");
        let d = parse_date(b" 21 Nov 97 09:55 EST (comment)").expect("obs date");
        assert_eq!(d.to_rfc5322(), "Fri, 21 Nov 1997 09:55:00 -0500");
        assert_eq!(
            parse_date(b" Thu,\r\n 13\r\n Feb 1969 23:32 -0330").map(|d| d.year),
            Some(1969)
        );
        assert!(parse_date(b"garbage").is_none());
        let d = DateTime::from_unix_timestamp(1_700_000_000);
        assert_eq!(d.unix_timestamp(), 1_700_000_000);
        assert_eq!(d.to_rfc5322(), "Tue, 14 Nov 2023 22:13:20 +0000");
    }
}
