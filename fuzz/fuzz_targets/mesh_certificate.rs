//! The mesh's certificate reader fed arbitrary bytes: the bounded DER walk
//! and the role lookup must return an error, never panic, whatever a peer
//! presents (in the handshake they only see chains rustls has verified, but
//! the reader must not rely on that).
#![no_main]

use rustls::pki_types::CertificateDer;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = scop_mesh::der::parse(data);
    let _ = scop_mesh::role_of_certificate(&CertificateDer::from(data));
});
