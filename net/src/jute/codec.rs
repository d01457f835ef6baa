//! Jute primitives: the big-endian reader and writer every record is built from, the decode
//! error, and length-prefixed framing.
//!
//! Jute (org.apache.jute.BinaryInputArchive) encodes `int`/`long` big-endian, `boolean` as one
//! byte, `buffer` and `ustring` as an int length then the bytes (-1 = null), and `vector` as an
//! int count then the items (-1 = null). Every length read here is checked against the bytes
//! that remain before anything is allocated, so a hostile length costs nothing.

/// Why a frame could not be decoded. None of these is a panic: decoding is total on any input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A fixed-size field runs past the end of the frame.
    #[error("truncated record: needed {needed} bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    /// A length or count below -1 (-1 itself means null).
    #[error("negative length {0}")]
    NegativeLength(i32),
    /// A length or count that cannot fit in the bytes that remain.
    #[error("length {len} exceeds the {remaining} bytes remaining")]
    TooLong { len: usize, remaining: usize },
    /// A ustring that is not UTF-8 (Java's decoder would replace; we refuse).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An opcode Warren does not decode; the header is still returned by `decode_request`.
    #[error("unknown opcode {0}")]
    UnknownOpcode(i32),
    /// An op inside a multi (or multiRead) that may not appear there.
    #[error("opcode {op} is not allowed inside opcode {multi}")]
    InvalidMultiOp { multi: i32, op: i32 },
    /// A MultiHeader type in a multi reply that names no result record.
    #[error("invalid result type {0} in a multi reply")]
    InvalidMultiResult(i32),
    /// Bytes left over after a reply record (replies are decoded strictly; requests are not,
    /// as ZooKeeper's server ignores trailing bytes).
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
}

/// Reads jute primitives from one frame, front to back.
#[derive(Debug, Clone)]
pub struct JuteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> JuteReader<'a> {
    pub fn new(buf: &'a [u8]) -> JuteReader<'a> {
        JuteReader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Ok if every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::Truncated { needed: n, remaining });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>()?[0])
    }

    /// Any non-zero byte is true, as java.io.DataInput.readBoolean has it.
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.read_u8()? != 0)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// A length or count prefix: None for -1 (null). `item_bytes_min` is the smallest encoding
    /// of one item, so `len * item_bytes_min` must fit in what remains — checked before the
    /// caller allocates.
    fn read_len(&mut self, item_bytes_min: usize) -> Result<Option<usize>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::NegativeLength(len))?;
        let remaining = self.remaining();
        if len.saturating_mul(item_bytes_min) > remaining {
            return Err(DecodeError::TooLong { len, remaining });
        }
        Ok(Some(len))
    }

    /// A `buffer` where null carries no meaning of its own (passwords, auth, SASL tokens):
    /// null decodes as empty.
    pub fn read_buffer(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.read_buffer_opt()?.unwrap_or_default())
    }

    /// A `buffer` that may be null (length -1): znode data, which ZooKeeper keeps null apart
    /// from empty.
    pub fn read_buffer_opt(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// A `ustring` that may be null (e.g. ReconfigRequest's server lists).
    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => {
                let bytes = self.take(n)?;
                let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
                Ok(Some(s.to_owned()))
            }
        }
    }

    /// A `ustring`; null decodes as "" — for paths, path validation then rejects it with
    /// ZBADARGUMENTS, which is what ZooKeeper answers for a null path.
    pub fn read_ustring(&mut self) -> Result<String, DecodeError> {
        Ok(self.read_ustring_opt()?.unwrap_or_default())
    }

    /// A `vector`; null decodes as empty. `item_bytes_min` bounds the count (see `read_len`).
    pub fn read_vec<T>(
        &mut self,
        item_bytes_min: usize,
        mut read_item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let Some(n) = self.read_len(item_bytes_min)? else {
            return Ok(Vec::new());
        };
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(read_item(self)?);
        }
        Ok(items)
    }

    /// A `vector<ustring>` (children, watch lists, ephemerals).
    pub fn read_string_vec(&mut self) -> Result<Vec<String>, DecodeError> {
        self.read_vec(4, Self::read_ustring)
    }
}

/// Appends jute primitives to a buffer the caller owns (and reuses across replies).
#[derive(Debug)]
pub struct JuteWriter<'a> {
    out: &'a mut Vec<u8>,
}

/// A jute length for `n` bytes or items. Records this large cannot arise: requests are bounded
/// by the server's max packet size, so a reply beyond 2 GiB is a programmer error.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).expect("jute length exceeds i32::MAX; record sizes must be bounded")
}

impl<'a> JuteWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> JuteWriter<'a> {
        JuteWriter { out }
    }

    pub fn write_u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub fn write_bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    pub fn write_i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// Written as given: an empty buffer is length 0, never null.
    pub fn write_buffer(&mut self, v: &[u8]) {
        self.write_i32(len_i32(v.len()));
        self.out.extend_from_slice(v);
    }

    /// A `buffer` that may be null: `None` is written as length -1.
    pub fn write_buffer_opt(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.write_buffer(v),
            None => self.write_i32(-1),
        }
    }

    pub fn write_ustring(&mut self, v: &str) {
        self.write_buffer(v.as_bytes());
    }

    /// None is written as null (-1).
    pub fn write_ustring_opt(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.write_ustring(s),
            None => self.write_i32(-1),
        }
    }

    pub fn write_vec<T>(&mut self, items: &[T], mut write_item: impl FnMut(&mut Self, &T)) {
        self.write_i32(len_i32(items.len()));
        for item in items {
            write_item(self, item);
        }
    }

    pub fn write_string_vec(&mut self, items: &[String]) {
        self.write_vec(items, |w, s| w.write_ustring(s));
    }
}

/// The 4-byte big-endian length prefix at the start of `buf`, if all four bytes are there.
/// The caller applies its own policy to negative and oversized lengths.
pub fn frame_len(buf: &[u8]) -> Option<i32> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(prefix))
}

/// Appends one length-prefixed frame whose record `write_record` writes.
pub(crate) fn write_frame(out: &mut Vec<u8>, write_record: impl FnOnce(&mut JuteWriter<'_>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    write_record(&mut JuteWriter::new(out));
    let len = len_i32(out.len() - start - 4);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}
