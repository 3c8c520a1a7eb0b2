//! Fuzz entry points (wired into cargo-fuzz targets and proptests).

use crate::message::Body;
use crate::{encode, equivalent, limits};

/// Parses `data` and exercises every accessor; must never panic.
pub fn parse(data: &[u8]) {
    let Ok(p) = crate::parse(data) else { return };
    let mut sink = 0usize;
    p.message.walk(&mut |m| {
        for h in m.headers() {
            sink +=
                h.text().len() + h.addresses().len() + h.message_ids().len() + h.unfolded().len();
            if let Some(d) = h.date() {
                sink += d.to_rfc5322().len();
            }
        }
        sink += m.content_type().params.len();
        match m.body() {
            Body::Leaf(l) => sink += l.text().map_or(0, |t| t.len()) + l.decoded().len(),
            Body::Multipart(mp) => {
                sink += mp.preamble().len() + mp.epilogue().len() + mp.boundary().len()
            }
            Body::Message(_) => {}
        }
    });
    for d in &p.diagnostics {
        sink += d.to_string().len();
    }
    std::hint::black_box(sink);
}

/// Checks the round-trip contract on `data`, panicking on a violation:
/// `raw()` re-emits the input, `parse(encode(m))` succeeds and is equivalent
/// to `m`, `encode` is a fixed point, and `into_owned` keeps the tree.
pub fn round_trip(data: &[u8]) {
    let Ok(p) = crate::parse(data) else { return };
    let m = &p.message;
    assert!(m.raw() == data, "raw() does not re-emit the input");
    let e1 = encode(m);
    if e1.len() > limits::MAX_MESSAGE_SIZE {
        return;
    }
    let p2 = match crate::parse(&e1) {
        Ok(p2) => p2,
        Err(e) => panic!(
            "re-parse of the encoding failed: {e}\nencoding: {}",
            e1.escape_ascii()
        ),
    };
    if let Err(d) = equivalent(m, &p2.message) {
        panic!(
            "parse(encode(m)) differs from m: {d}\ninput: {}\nencoding: {}",
            data.escape_ascii(),
            e1.escape_ascii()
        );
    }
    let e2 = encode(&p2.message);
    if e1 != e2 {
        panic!(
            "encode is not a fixed point\nfirst:  {}\nsecond: {}",
            e1.escape_ascii(),
            e2.escape_ascii()
        );
    }
    let owned = m.clone().into_owned();
    if let Err(d) = equivalent(m, &owned) {
        panic!("into_owned changed the tree: {d}");
    }
    assert!(owned.raw() == data, "into_owned changed raw()");
}
