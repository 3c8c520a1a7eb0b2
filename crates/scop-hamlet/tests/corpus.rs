//! Corpus-wide checks: determinism, feature coverage, structural validity.
//!
//! The checker below is deliberately independent of the generator: it walks
//! the MIME tree of the produced bytes (RFC 2045/2046) with its own small
//! header and parameter parser.

use std::collections::{BTreeMap, HashSet};

use scop_hamlet::{Config, Feature, Features, Hamlet, LineEnding};

const CORPUS: u64 = 5_000;

fn lf_config() -> Config {
    Config {
        line_ending: LineEnding::Lf,
        ..Config::default()
    }
}

#[test]
fn same_inputs_same_bytes() {
    let a = Hamlet::new(7, Config::default());
    let b = Hamlet::new(7, Config::default());
    for i in [0, 1, 2, 99, 12_345, u64::MAX] {
        assert_eq!(a.message(i), b.message(i), "index {i}");
    }
}

#[test]
fn different_seeds_and_indexes_differ() {
    let a = Hamlet::new(1, Config::default());
    let b = Hamlet::new(2, Config::default());
    let mut seen = HashSet::new();
    for i in 0..50 {
        assert_ne!(a.message(i), b.message(i), "index {i}");
        assert!(
            seen.insert(a.message(i)),
            "index {i} repeats an earlier message"
        );
    }
}

#[test]
fn iterator_matches_indexes() {
    let h = Hamlet::new(3, Config::default());
    for (i, m) in h.messages().take(40).enumerate() {
        assert_eq!(m, h.message(i as u64), "index {i}");
    }
}

#[test]
fn lf_variant_is_the_crlf_message_with_lf() {
    let crlf = Hamlet::new(1, Config::default());
    let lf = Hamlet::new(1, lf_config());
    let mut compared = 0;
    for i in 0..400 {
        let m = lf.message(i);
        assert!(!contains(&m, b"\r\n"), "index {i}: CRLF in LF mode");
        if crlf.features(i).contains(Feature::CteBinary) {
            continue;
        }
        let expected: Vec<u8> = crlf_to_lf(&crlf.message(i));
        assert!(
            m == expected,
            "index {i}:\n{}\n----- expected -----\n{}",
            lossy(&m),
            lossy(&expected)
        );
        compared += 1;
    }
    assert!(compared > 300);
}

#[test]
fn lf_messages_are_valid() {
    let h = Hamlet::new(1, lf_config());
    for i in 0..300 {
        let m = h.message(i);
        let mut c = Checker::new(b"\n");
        c.message(&m, 0, &m)
            .unwrap_or_else(|e| panic!("index {i}: {e}\n{}", lossy(&m)));
        assert!(c.binary.is_empty(), "index {i}: binary part in LF mode");
    }
}

#[test]
fn small_and_large_configs() {
    for (min, max) in [(0, 0), (100, 300), (50_000, 80_000)] {
        let h = Hamlet::new(
            5,
            Config {
                min_size: min,
                max_size: max,
                line_ending: LineEnding::Crlf,
            },
        );
        for i in 0..60 {
            let m = h.message(i);
            let mut c = Checker::new(b"\r\n");
            c.message(&m, 0, &m)
                .unwrap_or_else(|e| panic!("{min}..{max} index {i}: {e}\n{}", lossy(&m)));
            if min > 10_000 {
                assert!(
                    m.len() >= min / 2 && m.len() <= max * 2,
                    "{min}..{max} index {i}: {}",
                    m.len()
                );
            }
        }
    }
}

/// The 5,000-message corpus of seed 1: coverage and validity.
#[test]
fn corpus_of_seed_1() {
    let config = Config::default();
    let h = Hamlet::new(1, config.clone());
    let mut counts: BTreeMap<Feature, usize> = BTreeMap::new();
    let mut sizes = Vec::with_capacity(CORPUS as usize);
    // Features seen by scanning the bytes, as a cross-check of the report.
    let scans: &[(Feature, &[u8])] = &[
        (Feature::GroupUndisclosed, b"undisclosed-recipients:;"),
        (Feature::FilenameContinuationEncoded, b"filename*1*="),
        (
            Feature::FilenameRfc2231Language,
            b"filename*=iso-8859-1'fr'",
        ),
        (Feature::MultipartDigest, b"multipart/digest"),
        (Feature::MultipartRelated, b"multipart/related"),
        (Feature::CteBinary, b"Content-Transfer-Encoding: binary"),
        (Feature::HeaderIso2022jp, b"?B?GyRC"),
        (Feature::MessageRfc822, b"message/rfc822"),
        (Feature::InlineImageCid, b"src=\"cid:"),
    ];
    let mut scanned = vec![0usize; scans.len()];
    let mut boundaries_total = 0;
    let mut max_depth = 0;
    for i in 0..CORPUS {
        let (m, f): (Vec<u8>, Features) = h.message_and_features(i);
        if i < 20 {
            assert_eq!(m, h.message(i));
            assert_eq!(f, h.features(i));
        }
        for x in f.iter() {
            *counts.entry(x).or_default() += 1;
        }
        for (k, (feature, needle)) in scans.iter().enumerate() {
            let found = contains(&m, needle);
            if found {
                scanned[k] += 1;
            }
            // The needle may be inside base64 or a nested part in ways the
            // report also records, so only check one direction.
            if *feature != Feature::HeaderIso2022jp && found {
                assert!(
                    f.contains(*feature),
                    "index {i}: {needle:?} present, {feature:?} not reported"
                );
            }
        }
        let mut c = Checker::new(b"\r\n");
        c.message(&m, 0, &m).unwrap_or_else(|e| {
            panic!(
                "index {i}: {e}\n{}",
                String::from_utf8_lossy(&m[..m.len().min(4000)])
            )
        });
        check_line_endings(&m, &c.binary).unwrap_or_else(|e| panic!("index {i}: {e}"));
        // Binary bodies are leaves; a message/rfc822 may also be declared
        // binary, which the report counts too.
        if !c.binary.is_empty() {
            assert!(f.contains(Feature::CteBinary), "index {i}");
        }
        boundaries_total += c.boundaries.len();
        max_depth = max_depth.max(c.max_depth);
        sizes.push(m.len());
    }
    let mut report = String::new();
    for f in Feature::ALL {
        report += &format!("{:40} {}\n", f.name(), counts.get(f).copied().unwrap_or(0));
    }
    if std::env::var_os("HAMLET_REPORT").is_some() {
        eprintln!("{report}");
    }
    for f in Feature::ALL {
        assert!(
            counts.get(f).copied().unwrap_or(0) > 0,
            "feature {} never generated\n{report}",
            f.name()
        );
    }
    for (k, (f, needle)) in scans.iter().enumerate() {
        assert!(scanned[k] > 0, "{f:?}: {needle:?} never found in the bytes");
    }
    assert!(boundaries_total > CORPUS as usize);
    assert_eq!(max_depth, 5, "multiparts should nest exactly up to 5 deep");

    // Sizes: targets are uniform in [min, max]; the whole message may miss
    // by the headers of a small message or the overshoot of the last piece.
    sizes.sort_unstable();
    let n = sizes.len();
    let (p1, p50, p99) = (sizes[n / 100], sizes[n / 2], sizes[n * 99 / 100]);
    let mean = sizes.iter().sum::<usize>() / n;
    eprintln!(
        "sizes: min {} p1 {p1} median {p50} p99 {p99} max {} mean {mean}",
        sizes[0],
        sizes[n - 1]
    );
    assert!(sizes[0] >= config.min_size / 2, "smallest {}", sizes[0]);
    assert!(p1 >= config.min_size, "p1 {p1}");
    assert!(p99 <= config.max_size * 5 / 4, "p99 {p99}");
    assert!(
        sizes[n - 1] <= config.max_size * 2,
        "largest {}",
        sizes[n - 1]
    );
    let mid = (config.min_size + config.max_size) / 2;
    assert!(
        mean.abs_diff(mid) < mid / 5,
        "mean {mean}, expected about {mid}"
    );
}

// ------------------------------------------------------------------ checker

fn lossy(m: &[u8]) -> String {
    String::from_utf8_lossy(&m[..m.len().min(3000)]).into_owned()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn crlf_to_lf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while i < m.len() {
        if m[i] == b'\r' && m.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(m[i]);
        i += 1;
    }
    out
}

/// Every CR is followed by LF and every LF preceded by CR, outside the
/// byte ranges of binary parts.
fn check_line_endings(m: &[u8], binary: &[(usize, usize)]) -> Result<(), String> {
    let inside = |p: usize| binary.iter().any(|&(a, b)| p >= a && p < b);
    for (p, &b) in m.iter().enumerate() {
        if b == b'\r' && m.get(p + 1) != Some(&b'\n') && !inside(p) {
            return Err(format!("bare CR at {p}"));
        }
        if b == b'\n' && (p == 0 || m[p - 1] != b'\r') && !inside(p) {
            return Err(format!("bare LF at {p}"));
        }
    }
    if !m.ends_with(b"\r\n") {
        return Err("message does not end with CRLF".into());
    }
    Ok(())
}

struct Checker {
    eol: &'static [u8],
    /// Deepest multipart nesting seen.
    max_depth: usize,
    boundaries: HashSet<Vec<u8>>,
    /// Byte ranges of binary bodies, as offsets in the top-level message.
    binary: Vec<(usize, usize)>,
}

struct Header {
    name: String,
    value: Vec<u8>,
}

impl Checker {
    fn new(eol: &'static [u8]) -> Checker {
        Checker {
            eol,
            max_depth: 0,
            boundaries: HashSet::new(),
            binary: Vec::new(),
        }
    }

    /// Splits an entity into unfolded headers and body.
    fn split<'a>(&self, e: &'a [u8]) -> Result<(Vec<Header>, &'a [u8]), String> {
        let eol = self.eol;
        if e.starts_with(eol) {
            return Ok((Vec::new(), &e[eol.len()..]));
        }
        let mut blank = eol.to_vec();
        blank.extend_from_slice(eol);
        let end = find(e, &blank).ok_or("no blank line after the headers")?;
        let head = &e[..end + eol.len()];
        let body = &e[end + 2 * eol.len()..];
        let mut headers: Vec<Header> = Vec::new();
        let mut rest = head;
        while !rest.is_empty() {
            let n = find(rest, eol).ok_or("unterminated header line")?;
            let line = &rest[..n];
            rest = &rest[n + eol.len()..];
            if line.len() > 998 {
                return Err(format!("header line of {} bytes", line.len()));
            }
            if line.len() > 76 && contains(line, b"=?") {
                return Err(format!(
                    "line of {} bytes holds an encoded word (RFC 2047 section 2)",
                    line.len()
                ));
            }
            if line.iter().all(|&b| b == b' ' || b == b'\t') {
                return Err("whitespace-only header line".into());
            }
            if line[0] == b' ' || line[0] == b'\t' {
                let h = headers.last_mut().ok_or("continuation without header")?;
                h.value.extend_from_slice(line);
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or("header without colon")?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                return Err(format!(
                    "bad header name {:?}",
                    String::from_utf8_lossy(name)
                ));
            }
            headers.push(Header {
                name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                value: line[colon + 1..].to_vec(),
            });
        }
        Ok((headers, body))
    }

    fn message(&mut self, m: &[u8], offset: usize, top: &[u8]) -> Result<(), String> {
        self.message_at(m, offset, 0, top)
    }

    fn message_at(
        &mut self,
        m: &[u8],
        offset: usize,
        depth: usize,
        top: &[u8],
    ) -> Result<(), String> {
        let (headers, _) = self.split(m)?;
        for required in ["date", "from", "message-id"] {
            if !headers.iter().any(|h| h.name == required) {
                return Err(format!("no {required} header"));
            }
        }
        for h in &headers {
            if h.name == "subject" || h.name == "from" || h.name == "to" {
                check_encoded_words(&h.value)?;
            }
        }
        self.entity(m, offset, false, depth, top)
    }

    fn entity(
        &mut self,
        e: &[u8],
        offset: usize,
        in_digest: bool,
        depth: usize,
        top: &[u8],
    ) -> Result<(), String> {
        self.max_depth = self.max_depth.max(depth);
        if depth > 5 {
            return Err(format!("multiparts nested {depth} deep"));
        }
        let (headers, body) = self.split(e)?;
        let body_offset = offset + (e.len() - body.len());
        let get = |n: &str| {
            headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| h.value.clone())
        };
        let ct = get("content-type");
        let (mime, params) = match &ct {
            Some(v) => parse_content_type(v)?,
            None if in_digest => ("message/rfc822".to_string(), Vec::new()),
            None => ("text/plain".to_string(), Vec::new()),
        };
        let cte = get("content-transfer-encoding")
            .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
            .unwrap_or_else(|| "7bit".into());
        if let Some(d) = get("content-disposition") {
            parse_content_type(&[b"x/".as_slice(), d.trim_ascii_start()].concat())?;
        }
        if let Some(sub) = mime.strip_prefix("multipart/") {
            if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
                return Err(format!("multipart with {cte}"));
            }
            let b = params
                .iter()
                .find(|(k, _)| k == "boundary")
                .map(|(_, v)| v.clone())
                .ok_or("multipart without boundary")?;
            if b.is_empty() || b.len() > 70 || b.ends_with(b" ") {
                return Err("invalid boundary".into());
            }
            if !self.boundaries.insert(b.clone()) {
                return Err(format!(
                    "boundary {:?} used twice",
                    String::from_utf8_lossy(&b)
                ));
            }
            let parts = split_multipart(body, &b, self.eol)?;
            if parts.is_empty() {
                return Err("multipart without parts".into());
            }
            for (start, part) in parts {
                if contains(part, &b) {
                    return Err(format!(
                        "boundary {:?} inside a part",
                        String::from_utf8_lossy(&b)
                    ));
                }
                self.entity(part, body_offset + start, sub == "digest", depth + 1, top)?;
            }
            return Ok(());
        }
        if mime == "message/rfc822" {
            if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
                return Err(format!("message/rfc822 with {cte}"));
            }
            if cte == "7bit" && body.iter().any(|&b| b >= 128) {
                return Err("8-bit data in a 7bit message/rfc822".into());
            }
            return self.message_at(body, body_offset, depth, top);
        }
        match cte.as_str() {
            "7bit" => check_lines(body, self.eol, 998, |b| b < 128 && b != 0, "7bit"),
            "8bit" => check_lines(body, self.eol, 998, |b| b != 0, "8bit"),
            "quoted-printable" => {
                check_lines(
                    body,
                    self.eol,
                    76,
                    |b| (33..=126).contains(&b) || b == b' ' || b == b'\t',
                    "qp",
                )?;
                check_qp(body, self.eol)
            }
            "base64" => check_lines(
                body,
                self.eol,
                76,
                |b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=',
                "base64",
            ),
            "binary" => {
                self.binary.push((body_offset, body_offset + body.len()));
                debug_assert!(body_offset + body.len() <= top.len());
                Ok(())
            }
            other => Err(format!("unknown transfer encoding {other}")),
        }
    }
}

/// Splits a multipart body into `(offset, part)` by its delimiter lines.
fn split_multipart<'a>(
    body: &'a [u8],
    b: &[u8],
    eol: &[u8],
) -> Result<Vec<(usize, &'a [u8])>, String> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(b);
    let mut starts = Vec::new(); // (line start, line end incl. eol, is close)
    let mut p = 0;
    while p < body.len() {
        let end = find(&body[p..], eol).map_or(body.len(), |n| p + n + eol.len());
        let line = &body[p..end];
        if line.starts_with(&delim) {
            let rest = &line[delim.len()..];
            let rest = rest.strip_suffix(eol).unwrap_or(rest);
            match rest {
                b"" => starts.push((p, end, false)),
                b"--" => {
                    starts.push((p, end, true));
                    break;
                }
                _ => return Err("a line extends the boundary".into()),
            }
        }
        p = end;
    }
    match starts.last() {
        Some((_, _, true)) => {}
        _ => return Err("no close delimiter".into()),
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let (_, content_start, _) = w[0];
        let (next, _, _) = w[1];
        // The line break before a delimiter belongs to the delimiter.
        let end = next
            .checked_sub(eol.len())
            .filter(|&e| e >= content_start)
            .unwrap_or(content_start);
        parts.push((content_start, &body[content_start..end.max(content_start)]));
    }
    Ok(parts)
}

fn check_lines(
    body: &[u8],
    eol: &[u8],
    max: usize,
    ok: impl Fn(u8) -> bool,
    what: &str,
) -> Result<(), String> {
    for line in body.split(|&b| b == b'\n') {
        let line = if eol == b"\r\n" {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        if line.len() > max {
            return Err(format!("{what} line of {} bytes", line.len()));
        }
        if let Some(&b) = line.iter().find(|&&b| !ok(b)) {
            return Err(format!("{what} body holds byte {b:#04x}"));
        }
    }
    Ok(())
}

fn check_qp(body: &[u8], eol: &[u8]) -> Result<(), String> {
    for line in body.split(|&b| b == b'\n') {
        let line = if eol == b"\r\n" {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        if line.ends_with(b" ") || line.ends_with(b"\t") {
            return Err("qp line with trailing whitespace".into());
        }
        let mut i = 0;
        while i < line.len() {
            if line[i] == b'=' {
                if i + 1 == line.len() {
                    break; // soft break
                }
                let hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
                if i + 2 >= line.len() {
                    return Err("truncated =XX".into());
                }
                if !(hex(line[i + 1]) && hex(line[i + 2])) {
                    return Err("bad =XX".into());
                }
                i += 3;
            } else {
                i += 1;
            }
        }
    }
    Ok(())
}

fn check_encoded_words(v: &[u8]) -> Result<(), String> {
    let mut rest = v;
    while let Some(p) = find(rest, b"=?") {
        let after = &rest[p..];
        let end = find(&after[2..], b"?=").ok_or("unterminated encoded word")? + 4;
        // `?=` may close the encoded text only after the charset and
        // encoding fields.
        let word = &after[..end];
        let q = word.iter().filter(|&&b| b == b'?').count();
        if q < 4 {
            rest = &after[2..];
            continue;
        }
        if word.len() > 75 {
            return Err(format!("encoded word of {} chars", word.len()));
        }
        rest = &after[end..];
    }
    Ok(())
}

/// Parameters: lowercase names, unescaped values.
type Params = Vec<(String, Vec<u8>)>;

/// Parses `type/subtype; k=v; k="quoted"` into a lowercase type and
/// parameters (names lowercase, quoted values unescaped).
fn parse_content_type(v: &[u8]) -> Result<(String, Params), String> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < v.len() && matches!(v[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let start = i;
    while i < v.len() && v[i] != b';' && v[i] != b' ' {
        i += 1;
    }
    let mime = String::from_utf8_lossy(&v[start..i]).to_ascii_lowercase();
    if !mime.contains('/') {
        return Err(format!("bad media type {mime}"));
    }
    let mut params = Vec::new();
    loop {
        skip_ws(&mut i);
        if i >= v.len() {
            break;
        }
        if v[i] != b';' {
            return Err(format!("expected ';' in {:?}", String::from_utf8_lossy(v)));
        }
        i += 1;
        skip_ws(&mut i);
        let ks = i;
        while i < v.len() && v[i] != b'=' {
            i += 1;
        }
        let key = String::from_utf8_lossy(&v[ks..i])
            .trim()
            .to_ascii_lowercase();
        if i >= v.len() || key.is_empty() {
            return Err(format!(
                "parameter without value in {:?}",
                String::from_utf8_lossy(v)
            ));
        }
        i += 1;
        let mut val = Vec::new();
        if i < v.len() && v[i] == b'"' {
            i += 1;
            loop {
                match v.get(i) {
                    None => return Err("unterminated quoted string".into()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        val.push(*v.get(i + 1).ok_or("dangling backslash")?);
                        i += 2;
                    }
                    Some(&b) => {
                        val.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < v.len() && v[i] != b';' && !matches!(v[i], b' ' | b'\t' | b'\r' | b'\n') {
                if matches!(
                    v[i],
                    b'"' | b'('
                        | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b':'
                        | b'\\'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                ) {
                    return Err(format!("tspecial in token value of {key}"));
                }
                val.push(v[i]);
                i += 1;
            }
        }
        params.push((key, val));
    }
    Ok((mime, params))
}

// ------------------------------------------------------------------- golden

/// The first messages of seed 42, byte for byte: any change to the
/// generator shows up here. `UPDATE_EXPECT=1` rewrites the files.
#[test]
fn golden_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let h = Hamlet::new(42, Config::default());
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut checked = 0;
    for i in 0..3 {
        let path = dir.join(format!("seed42-{i}.eml"));
        let m = h.message(i);
        if update {
            std::fs::write(&path, &m).unwrap();
        }
        let expected = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1)", path.display()));
        assert!(
            m == expected,
            "{} differs from the generator output (UPDATE_EXPECT=1 to accept)",
            path.display()
        );
        checked += 1;
    }
    let lf = Hamlet::new(42, lf_config()).message(0);
    let path = dir.join("seed42-0-lf.eml");
    if update {
        std::fs::write(&path, &lf).unwrap();
    }
    assert!(
        lf == std::fs::read(&path).unwrap(),
        "{} differs",
        path.display()
    );
    assert_eq!(checked, 3);
}
