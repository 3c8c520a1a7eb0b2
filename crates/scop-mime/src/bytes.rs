//! Byte storage that borrows from the input, or shares one copy of it after
//! [`crate::Message::into_owned`].

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::Arc;

/// Borrowed input bytes, a range of a shared owned input, or owned bytes.
#[derive(Clone)]
pub(crate) enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Shared(Arc<[u8]>, usize, usize),
    Owned(Vec<u8>),
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Shared(a, s, e) => a.get(*s..*e).unwrap_or(&[]),
            Bytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.deref().escape_ascii())
    }
}

impl<'a> From<Cow<'a, [u8]>> for Bytes<'a> {
    fn from(c: Cow<'a, [u8]>) -> Self {
        match c {
            Cow::Borrowed(b) => Bytes::Borrowed(b),
            Cow::Owned(v) => Bytes::Owned(v),
        }
    }
}

/// The single shared copy of an input that borrowed slices are moved into.
pub(crate) struct Owner {
    start: usize,
    len: usize,
    arc: Arc<[u8]>,
}

impl Owner {
    pub(crate) fn new(base: &[u8]) -> Self {
        Owner {
            start: base.as_ptr() as usize,
            len: base.len(),
            arc: Arc::from(base),
        }
    }
}

impl Bytes<'_> {
    pub(crate) fn into_owned(self, owner: &Owner) -> Bytes<'static> {
        match self {
            Bytes::Borrowed(b) => {
                let p = b.as_ptr() as usize;
                if p >= owner.start && p + b.len() <= owner.start + owner.len {
                    let off = p - owner.start;
                    Bytes::Shared(owner.arc.clone(), off, off + b.len())
                } else {
                    Bytes::Owned(b.to_vec())
                }
            }
            Bytes::Shared(a, s, e) => Bytes::Shared(a, s, e),
            Bytes::Owned(v) => Bytes::Owned(v),
        }
    }
}
