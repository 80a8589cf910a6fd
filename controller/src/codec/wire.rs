//! Big-endian field writer and bounds-checked reader under every controller format (pure).

use uuid::Uuid;

use super::{DecodeError, EncodeError};

/// Appends big-endian fields. A length that does not fit a u32 is remembered and reported by
/// `finish`, so encoders stay straight-line code.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    error: Option<EncodeError>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub fn uuid(&mut self, v: &Uuid) {
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// A u32 count or length; records the error if `len` does not fit.
    pub fn len(&mut self, what: &'static str, len: usize) {
        match u32::try_from(len) {
            Ok(n) => self.u32(n),
            Err(_) => {
                self.error.get_or_insert(EncodeError::TooLong { what, len });
                self.u32(u32::MAX);
            }
        }
    }
    pub fn bytes(&mut self, what: &'static str, v: &[u8]) {
        self.len(what, v.len());
        self.buf.extend_from_slice(v);
    }
    pub fn string(&mut self, what: &'static str, v: &str) {
        self.bytes(what, v.as_bytes());
    }
    pub fn position(&self) -> usize {
        self.buf.len()
    }
    /// Overwrites the u32 placeholder at `at` with the bytes written since it.
    pub fn patch_len(&mut self, what: &'static str, at: usize) {
        let len = self.buf.len() - at - 4;
        let v = match u32::try_from(len) {
            Ok(n) => n,
            Err(_) => {
                self.error.get_or_insert(EncodeError::TooLong { what, len });
                u32::MAX
            }
        };
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.buf),
        }
    }
}

/// Reads big-endian fields from untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                at: self.pos,
                needed_bytes: n,
                available_bytes: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(what, N)?);
        Ok(a)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                what,
                value: u64::from(v),
                at,
            }),
        }
    }
    pub fn uuid(&mut self, what: &'static str) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }
    /// A u32 count of items of at least `item_bytes_min` bytes each, checked against the bytes
    /// left so that a forged count cannot make us allocate.
    pub fn count(
        &mut self,
        what: &'static str,
        item_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.u32(what)?;
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        if n.saturating_mul(item_bytes_min.max(1)) > self.remaining() {
            return Err(DecodeError::TooMany {
                what,
                count: u64::from(count),
                at,
                available_bytes: self.remaining(),
            });
        }
        Ok(n)
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(what, 1)?;
        self.take(what, n)
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| DecodeError::InvalidUtf8 { what, at })
    }
    pub fn version(&mut self, what: &'static str, supported: u8) -> Result<(), DecodeError> {
        let version = self.u8(what)?;
        if version != supported {
            return Err(DecodeError::UnsupportedVersion {
                what,
                version,
                supported,
            });
        }
        Ok(())
    }
    /// A version byte in `oldest..=newest`; returns it.
    pub fn version_in(
        &mut self,
        what: &'static str,
        oldest: u8,
        newest: u8,
    ) -> Result<u8, DecodeError> {
        let version = self.u8(what)?;
        if !(oldest..=newest).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                what,
                version,
                supported: newest,
            });
        }
        Ok(version)
    }
    /// Everything must have been read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                what,
                at: self.pos,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}
