//! The on-disk byte format of a WAL batch: pure encode/decode functions, no IO.
//! Layout and the reasoning behind it are documented in `wal/mod.rs`.

use std::ops::Range;

/// Every batch starts at a multiple of this, and a flush writes whole blocks only (O_DIRECT).
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes of the batch header at the start of every batch.
pub const BATCH_HEADER_BYTES: usize = 32;
/// Bytes of the per-record header: len, crc, lsn.
pub const RECORD_HEADER_BYTES: usize = 16;
/// "WRN1" little endian; the digit is the format version.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"WRN1");

/// Why bytes at a batch position are not a valid batch. `Empty` is the normal end of a
/// segment; everything else is damage (a torn or failed write, or corruption). The messages
/// are what an operator reads when recovery refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The header is all zero bytes: nothing was ever written here.
    #[error("no batch header (zero bytes)")]
    Empty,
    /// Fewer bytes are available than the header or the batch needs (file cut short).
    #[error("file cut short: the batch needs {needed} bytes, {available} are left")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic {0:#010x} (not a batch header)")]
    BadMagic(u32),
    #[error("batch header CRC mismatch")]
    BadHeaderCrc,
    /// The batch does not name the last valid lsn as its predecessor.
    #[error("prev_lsn link broken: the batch follows lsn {prev_lsn}, the log so far ends at lsn {expected}")]
    ChainBroken { prev_lsn: u64, expected: u64 },
    /// first_lsn does not exceed the previous lsn (stale bytes of an older batch).
    #[error("first lsn {first_lsn} is below the lowest allowed lsn {min_lsn}")]
    LsnNotIncreasing { first_lsn: u64, min_lsn: u64 },
    #[error("bad record count in the batch header")]
    BadCount,
    #[error("record {index}: bad length")]
    BadRecordLen { index: u32 },
    #[error("record {index}: lsn {lsn} out of sequence")]
    BadRecordLsn { index: u32, lsn: u64 },
    #[error("record {index}: CRC mismatch")]
    BadRecordCrc { index: u32 },
    #[error("records fill {used} bytes, the header declares {declared}")]
    BodySizeMismatch { declared: u32, used: usize },
}

/// The fixed header at the start of every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Lsn of the last record of the previous batch in the log (0 for the first batch ever).
    pub prev_lsn: u64,
    /// Lsn of the first record; the batch holds first_lsn, first_lsn + 1, ...
    pub first_lsn: u64,
    pub record_count: u32,
    /// Bytes of encoded records after the header (each record padded to 8 bytes).
    pub body_bytes: u32,
}

impl BatchHeader {
    pub fn last_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.record_count) - 1
    }

    /// Header + body, before the zero padding to the block boundary.
    pub fn used_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.body_bytes as usize
    }

    /// Bytes the batch occupies on disk: the next batch starts this far after it.
    pub fn disk_bytes(&self) -> u64 {
        align_up(self.used_bytes() as u64, BLOCK_BYTES)
    }

    pub fn encode(&self) -> [u8; BATCH_HEADER_BYTES] {
        let mut out = [0u8; BATCH_HEADER_BYTES];
        out[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.prev_lsn.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        out[24..28].copy_from_slice(&self.record_count.to_le_bytes());
        out[28..32].copy_from_slice(&self.body_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header (magic, crc); chain and lsn checks are `decode_batch`'s.
    pub fn decode(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: bytes.len() });
        }
        let bytes = &bytes[..BATCH_HEADER_BYTES];
        if bytes.iter().all(|&b| b == 0) {
            return Err(BatchError::Empty);
        }
        let magic = read_u32(bytes, 0);
        if magic != BATCH_MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        if read_u32(bytes, 4) != crc32c::crc32c(&bytes[8..]) {
            return Err(BatchError::BadHeaderCrc);
        }
        Ok(BatchHeader {
            prev_lsn: read_u64(bytes, 8),
            first_lsn: read_u64(bytes, 16),
            record_count: read_u32(bytes, 24),
            body_bytes: read_u32(bytes, 28),
        })
    }
}

/// A batch that passed every check; `records[i]` is the payload range of lsn first_lsn + i
/// within the bytes given to `decode_batch`.
#[derive(Debug)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<Range<usize>>,
}

pub fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// Bytes one record takes in a batch body.
pub fn record_bytes(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + align_up(payload_len as u64, 8) as usize
}

/// The crc of a record covers its lsn too, so a record copied to another position or left over
/// from an older batch with another lsn cannot pass as the record expected there.
pub fn record_crc(lsn: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload)
}

/// Appends one encoded record (header, payload, zero padding) to `body`.
pub fn encode_record(body: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length fits u32 (checked by append)");
    let start = body.len();
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(&record_crc(lsn, payload).to_le_bytes());
    body.extend_from_slice(&lsn.to_le_bytes());
    body.extend_from_slice(payload);
    body.resize(start + record_bytes(payload.len()), 0);
}

/// Validates the batch starting at `bytes[0]`: header, chain (`prev_lsn` must equal
/// `last_lsn`, the last valid lsn before it), lsns (above `last_lsn` and at least the
/// segment's `min_lsn`, consecutive within the batch), every record's length and crc, and that
/// the records fill exactly `body_bytes`. Any failure rejects the whole batch.
pub fn decode_batch(bytes: &[u8], last_lsn: u64, min_lsn: u64) -> Result<DecodedBatch, BatchError> {
    let header = BatchHeader::decode(bytes)?;
    if header.prev_lsn != last_lsn {
        return Err(BatchError::ChainBroken { prev_lsn: header.prev_lsn, expected: last_lsn });
    }
    let min_first = min_lsn.max(last_lsn + 1);
    if header.first_lsn < min_first {
        return Err(BatchError::LsnNotIncreasing { first_lsn: header.first_lsn, min_lsn: min_first });
    }
    let count = u64::from(header.record_count);
    if count == 0 || header.first_lsn.checked_add(count).is_none() {
        return Err(BatchError::BadCount);
    }
    if count * RECORD_HEADER_BYTES as u64 > u64::from(header.body_bytes) {
        return Err(BatchError::BadCount);
    }
    if bytes.len() < header.used_bytes() {
        return Err(BatchError::Truncated { needed: header.used_bytes(), available: bytes.len() });
    }
    let body = &bytes[BATCH_HEADER_BYTES..header.used_bytes()];
    let records = decode_records(body, &header)?;
    Ok(DecodedBatch { header, records })
}

fn decode_records(body: &[u8], header: &BatchHeader) -> Result<Vec<Range<usize>>, BatchError> {
    let mut records = Vec::with_capacity(header.record_count as usize);
    let mut offset = 0usize;
    for index in 0..header.record_count {
        let expected_lsn = header.first_lsn + u64::from(index);
        if body.len() - offset < RECORD_HEADER_BYTES {
            return Err(BatchError::BadRecordLen { index });
        }
        let len = read_u32(body, offset) as usize;
        let size = record_bytes(len);
        if size > body.len() - offset {
            return Err(BatchError::BadRecordLen { index });
        }
        let lsn = read_u64(body, offset + 8);
        if lsn != expected_lsn {
            return Err(BatchError::BadRecordLsn { index, lsn });
        }
        let payload = offset + RECORD_HEADER_BYTES..offset + RECORD_HEADER_BYTES + len;
        if read_u32(body, offset + 4) != record_crc(lsn, &body[payload.clone()]) {
            return Err(BatchError::BadRecordCrc { index });
        }
        records.push(payload.start + BATCH_HEADER_BYTES..payload.end + BATCH_HEADER_BYTES);
        offset += size;
    }
    if offset != body.len() {
        return Err(BatchError::BodySizeMismatch { declared: header.body_bytes, used: offset });
    }
    Ok(records)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_batch(prev_lsn: u64, first_lsn: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut body, first_lsn + i as u64, p);
        }
        let header =
            BatchHeader { prev_lsn, first_lsn, record_count: payloads.len() as u32, body_bytes: body.len() as u32 };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(&body);
        out.resize(header.disk_bytes() as usize, 0);
        out
    }

    fn payloads_of(bytes: &[u8], batch: &DecodedBatch) -> Vec<Vec<u8>> {
        batch.records.iter().map(|r| bytes[r.clone()].to_vec()).collect()
    }

    #[test]
    fn roundtrip_including_empty_payload() {
        let payloads = vec![vec![], vec![1], vec![7; 4095], vec![9; 4096]];
        let bytes = encode_batch(4, 5, &payloads);
        assert_eq!(bytes.len() % BLOCK_BYTES as usize, 0);
        let batch = decode_batch(&bytes, 4, 1).unwrap();
        assert_eq!(batch.header.last_lsn(), 8);
        assert_eq!(payloads_of(&bytes, &batch), payloads);
    }

    #[test]
    fn zero_header_is_empty_not_damage() {
        assert_eq!(decode_batch(&[0u8; 4096], 0, 1).unwrap_err(), BatchError::Empty);
    }

    #[test]
    fn chain_and_lsn_rules_reject_stale_batches() {
        let bytes = encode_batch(10, 11, &[vec![1, 2, 3]]);
        // A stale batch from before: its predecessor is not our last lsn.
        assert!(matches!(decode_batch(&bytes, 20, 1), Err(BatchError::ChainBroken { .. })));
        // A batch whose first lsn does not exceed the previous one.
        let bytes = encode_batch(20, 20, &[vec![1]]);
        assert!(matches!(decode_batch(&bytes, 20, 1), Err(BatchError::LsnNotIncreasing { .. })));
        // Below the segment's first lsn.
        let bytes = encode_batch(0, 3, &[vec![1]]);
        assert!(matches!(decode_batch(&bytes, 0, 5), Err(BatchError::LsnNotIncreasing { .. })));
    }

    #[test]
    fn a_record_from_another_lsn_is_rejected() {
        let mut bytes = encode_batch(0, 1, &[vec![1; 10], vec![2; 10]]);
        // Replace record 2 with the same payload encoded for lsn 7 (a stale copy).
        let mut other = Vec::new();
        encode_record(&mut other, 7, &[2; 10]);
        let at = BATCH_HEADER_BYTES + record_bytes(10);
        bytes[at..at + other.len()].copy_from_slice(&other);
        assert!(matches!(decode_batch(&bytes, 0, 1), Err(BatchError::BadRecordLsn { index: 1, lsn: 7 })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Flipping any byte of a batch's header or body rejects the whole batch; it never
        /// yields different records.
        #[test]
        fn any_flipped_byte_is_detected(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let mut bytes = encode_batch(3, 4, &payloads);
            let used = BatchHeader::decode(&bytes).unwrap().used_bytes();
            let at = at.index(used);
            // Payload-internal padding bytes are not covered by a crc; skip them.
            let batch = decode_batch(&bytes, 3, 1).unwrap();
            let in_padding = at >= BATCH_HEADER_BYTES && !batch.records.iter().any(|r| {
                let header = r.start - RECORD_HEADER_BYTES;
                (header..r.end).contains(&at)
            });
            prop_assume!(!in_padding);
            bytes[at] ^= xor;
            prop_assert!(decode_batch(&bytes, 3, 1).is_err());
        }

        /// Any strict prefix of a batch's used bytes is rejected as truncated or damaged.
        #[test]
        fn any_cut_is_detected(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode_batch(0, 1, &payloads);
            let used = BatchHeader::decode(&bytes).unwrap().used_bytes();
            prop_assert!(decode_batch(&bytes[..cut.index(used)], 0, 1).is_err());
        }
    }
}
