//! A small, bounded DER walk over an X.509 certificate (RFC 5280 §4.1),
//! reading only what the mesh needs: the issuer and subject names, the
//! subject public key info and the subject alternative names (§4.2.1.6).
//!
//! Chain, signature, validity and key usage checks are rustls-webpki's job;
//! this walk runs on certificates that webpki has verified, or on our own
//! files, and never panics on any input.

/// Largest certificate accepted, in bytes. Mesh certificates are well under
/// 1 KiB.
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Most subject alternative names read from one certificate.
pub const MAX_SAN_ENTRIES: usize = 64;
/// Most extensions read from one certificate.
pub const MAX_EXTENSIONS: usize = 64;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_VERSION: u8 = 0xa0;
const TAG_ISSUER_UID: u8 = 0x81;
const TAG_SUBJECT_UID: u8 = 0x82;
const TAG_EXTENSIONS: u8 = 0xa3;
/// GeneralName `dNSName [2] IA5String`.
const TAG_GN_DNS: u8 = 0x82;
/// GeneralName `uniformResourceIdentifier [6] IA5String`.
const TAG_GN_URI: u8 = 0x86;
/// GeneralName `iPAddress [7] OCTET STRING`.
const TAG_GN_IP: u8 = 0x87;
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// Why a certificate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerError {
    /// Longer than [`MAX_CERT_LEN`].
    TooLong,
    /// Not well-formed DER where the walk needed it to be.
    Malformed(&'static str),
    /// More than [`MAX_SAN_ENTRIES`] names or [`MAX_EXTENSIONS`] extensions.
    TooMany,
}

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DerError::TooLong => write!(f, "certificate longer than {MAX_CERT_LEN} bytes"),
            DerError::Malformed(what) => write!(f, "malformed certificate: {what}"),
            DerError::TooMany => f.write_str("too many extensions or alternative names"),
        }
    }
}

impl std::error::Error for DerError {}

/// The parts of a certificate the mesh reads. Slices borrow the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertView<'a> {
    /// The issuer `Name`, whole TLV.
    pub issuer: &'a [u8],
    /// The subject `Name`, whole TLV.
    pub subject: &'a [u8],
    /// The `SubjectPublicKeyInfo`, whole TLV.
    pub spki: &'a [u8],
    /// URI subject alternative names.
    pub uris: Vec<&'a [u8]>,
    /// DNS subject alternative names.
    pub dns_names: Vec<&'a [u8]>,
    /// IP address subject alternative names (4 or 16 bytes, as encoded).
    pub ips: Vec<&'a [u8]>,
}

#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Read one TLV ([`scop_codec::der::element`]), with the bytes it spans.
fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (tag, content, after) = scop_codec::der::element(input)?;
    let whole = &input[..input.len() - after.len()];
    Some((
        Tlv {
            tag,
            content,
            whole,
        },
        after,
    ))
}

fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    match next(input) {
        Some((tlv, rest)) if tlv.tag == tag => Ok((tlv, rest)),
        _ => Err(DerError::Malformed(what)),
    }
}

/// Skip an optional element with `tag`.
fn optional<'a>(input: &'a [u8], tag: u8) -> Result<(Option<Tlv<'a>>, &'a [u8]), DerError> {
    match input.first() {
        Some(&t) if t == tag => {
            let (tlv, rest) = next(input).ok_or(DerError::Malformed("optional field"))?;
            Ok((Some(tlv), rest))
        }
        _ => Ok((None, input)),
    }
}

/// Walk a DER certificate.
pub fn parse(der: &[u8]) -> Result<CertView<'_>, DerError> {
    if der.len() > MAX_CERT_LEN {
        return Err(DerError::TooLong);
    }
    let (cert, rest) = expect(der, TAG_SEQUENCE, "Certificate")?;
    if !rest.is_empty() {
        return Err(DerError::Malformed("trailing data"));
    }
    let (tbs, _) = expect(cert.content, TAG_SEQUENCE, "tbsCertificate")?;
    let (_, r) = optional(tbs.content, TAG_VERSION)?;
    let (_, r) = expect(r, TAG_INTEGER, "serialNumber")?;
    let (_, r) = expect(r, TAG_SEQUENCE, "signature")?;
    let (issuer, r) = expect(r, TAG_SEQUENCE, "issuer")?;
    let (_, r) = expect(r, TAG_SEQUENCE, "validity")?;
    let (subject, r) = expect(r, TAG_SEQUENCE, "subject")?;
    let (spki, r) = expect(r, TAG_SEQUENCE, "subjectPublicKeyInfo")?;
    let (_, r) = optional(r, TAG_ISSUER_UID)?;
    let (_, r) = optional(r, TAG_SUBJECT_UID)?;
    let (extensions, r) = optional(r, TAG_EXTENSIONS)?;
    if !r.is_empty() {
        return Err(DerError::Malformed("tbsCertificate trailing data"));
    }
    let mut view = CertView {
        issuer: issuer.whole,
        subject: subject.whole,
        spki: spki.whole,
        uris: Vec::new(),
        dns_names: Vec::new(),
        ips: Vec::new(),
    };
    if let Some(ext) = extensions {
        let (list, rest) = expect(ext.content, TAG_SEQUENCE, "Extensions")?;
        if !rest.is_empty() {
            return Err(DerError::Malformed("extensions trailing data"));
        }
        read_extensions(list.content, &mut view)?;
    }
    Ok(view)
}

fn read_extensions<'a>(mut list: &'a [u8], view: &mut CertView<'a>) -> Result<(), DerError> {
    let mut count = 0usize;
    let mut seen_san = false;
    while !list.is_empty() {
        count += 1;
        if count > MAX_EXTENSIONS {
            return Err(DerError::TooMany);
        }
        let (ext, rest) = expect(list, TAG_SEQUENCE, "Extension")?;
        list = rest;
        let (oid, r) = expect(ext.content, TAG_OID, "extnID")?;
        let (_, r) = optional(r, TAG_BOOLEAN)?;
        let (value, r) = expect(r, TAG_OCTET_STRING, "extnValue")?;
        if !r.is_empty() {
            return Err(DerError::Malformed("extension trailing data"));
        }
        if oid.content == OID_SAN {
            if seen_san {
                return Err(DerError::Malformed("duplicate subjectAltName"));
            }
            seen_san = true;
            read_san(value.content, view)?;
        }
    }
    Ok(())
}

fn read_san<'a>(value: &'a [u8], view: &mut CertView<'a>) -> Result<(), DerError> {
    let (names, rest) = expect(value, TAG_SEQUENCE, "GeneralNames")?;
    if !rest.is_empty() {
        return Err(DerError::Malformed("subjectAltName trailing data"));
    }
    let mut list = names.content;
    let mut count = 0usize;
    while !list.is_empty() {
        count += 1;
        if count > MAX_SAN_ENTRIES {
            return Err(DerError::TooMany);
        }
        let (name, rest) = next(list).ok_or(DerError::Malformed("GeneralName"))?;
        list = rest;
        match name.tag {
            TAG_GN_URI => view.uris.push(name.content),
            TAG_GN_DNS => view.dns_names.push(name.content),
            TAG_GN_IP => view.ips.push(name.content),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element reader's own cases are in scop-codec; here, the
    /// bytes a TLV spans.
    #[test]
    fn a_tlv_spans_its_head_and_contents() {
        let (tlv, rest) = next(&[0x04, 0x81, 0x01, 0xaa, 0xbb]).expect("long form");
        assert_eq!(
            (tlv.tag, tlv.content, rest),
            (0x04, &[0xaa][..], &[0xbb][..])
        );
        assert_eq!(tlv.whole, &[0x04, 0x81, 0x01, 0xaa]);
        assert!(next(&[0x30, 0x80]).is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = parse(&bytes);
        }
        assert_eq!(parse(&vec![0u8; MAX_CERT_LEN + 1]), Err(DerError::TooLong));
    }
}
