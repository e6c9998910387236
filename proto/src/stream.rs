// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The byte stream `read()` on the device returns: whole data records, one
//! after another, each exactly as in the ring (a [`RecordHeader`], the
//! payload, padding to [`RECORD_ALIGN`](super::layout::RECORD_ALIGN)), with no pad records. Every
//! reader of that stream parses it here.
//!
//! A stream cut anywhere (a pipe, `dd` with a small block size) ends in
//! part of a record: [`Records`] stops before it and hands it back as
//! [`Records::remainder`], to go in front of the next chunk.

use super::layout::{
    record_stride,
    RecordHeader,
    HEADER_SIZE,
    KIND_DATA, //
};
use super::view::split_word0;

/// A record of a `read()` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRecord<'a> {
    /// Its header, as the ring had it.
    pub header: RecordHeader,
    /// Its payload, `header.len` bytes.
    pub payload: &'a [u8],
}

/// What is wrong with a `read()` stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The header at `offset` is not a data record's (`read()` returns
    /// nothing else): the stream is not one, or lost its place.
    Kind {
        /// Byte offset of the header in the stream.
        offset: usize,
        /// The kind it has.
        kind: u16,
    },
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StreamError::Kind { offset, kind } => write!(
                f,
                "byte {offset}: a record of kind {kind}, where a read() stream has only data \
                 records (kind {KIND_DATA})"
            ),
        }
    }
}

impl core::error::Error for StreamError {}

/// Reads a [`RecordHeader`] from the first [`HEADER_SIZE`] bytes of `bytes`
/// (little-endian, as in the ring); `None` if there are fewer.
///
/// # Examples
///
/// ```
/// use rmemring_proto::layout::RecordHeader;
/// use rmemring_proto::stream::parse_header;
///
/// let mut bytes = [0u8; 24];
/// bytes[..4].copy_from_slice(&5u32.to_le_bytes());
/// bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
/// bytes[8..16].copy_from_slice(&42u64.to_le_bytes());
/// let header = parse_header(&bytes).unwrap();
/// assert_eq!((header.len, header.kind, header.seq), (5, 1, 42));
/// assert!(parse_header(&bytes[..23]).is_none());
/// ```
pub fn parse_header(bytes: &[u8]) -> Option<RecordHeader> {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes.get(8 * i..8 * i + 8)?);
        Some(u64::from_le_bytes(w))
    };
    let (len, kind, tag) = split_word0(word(0)?);
    Some(RecordHeader {
        len,
        kind,
        tag,
        seq: word(1)?,
        timestamp_ns: word(2)?,
    })
}

/// The records of a `read()` stream chunk.
///
/// # Examples
///
/// ```
/// use rmemring_proto::stream::Records;
///
/// // Two records of 3 and 0 payload bytes, then the first 10 bytes of a third.
/// let mut chunk = Vec::new();
/// for (len, seq) in [(3u32, 7u64), (0, 8)] {
///     chunk.extend_from_slice(&len.to_le_bytes());
///     chunk.extend_from_slice(&1u16.to_le_bytes()); // kind: data
///     chunk.extend_from_slice(&0u16.to_le_bytes()); // tag
///     chunk.extend_from_slice(&seq.to_le_bytes());
///     chunk.extend_from_slice(&0u64.to_le_bytes()); // timestamp
///     chunk.extend_from_slice(&[0xab; 3][..len as usize]);
///     chunk.resize(chunk.len().next_multiple_of(8), 0);
/// }
/// chunk.extend_from_slice(&[0; 10]);
///
/// let mut records = Records::new(&chunk);
/// let seqs: Vec<u64> = records.by_ref().map(|r| r.unwrap().header.seq).collect();
/// assert_eq!(seqs, [7, 8]);
/// assert_eq!(records.remainder().len(), 10);
/// ```
#[derive(Clone, Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    /// The records of `bytes`, which start at a record boundary.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            offset: 0,
            failed: false,
        }
    }

    /// The bytes after the last whole record: the start of one that the
    /// chunk cut, or nothing.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }

    /// Where in the chunk [`Self::remainder`] starts.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<StreamRecord<'a>, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let header = parse_header(self.rest)?;
        if header.kind != KIND_DATA {
            self.failed = true;
            return Some(Err(StreamError::Kind {
                offset: self.offset,
                kind: header.kind,
            }));
        }
        // `len` is a `u32`, so the stride fits a `u64`; a stride that does
        // not fit the chunk (or a `usize`) is a record the chunk cut.
        let stride = usize::try_from(record_stride(header.len)).ok()?;
        let record = self.rest.get(..stride)?;
        let start = HEADER_SIZE as usize;
        let payload = &record[start..start + header.len as usize];
        self.rest = &self.rest[stride..];
        self.offset += stride;
        Some(Ok(StreamRecord { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: u32, kind: u16, seq: u64) -> std::vec::Vec<u8> {
        let mut r = std::vec::Vec::new();
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(&kind.to_le_bytes());
        r.extend_from_slice(&9u16.to_le_bytes());
        r.extend_from_slice(&seq.to_le_bytes());
        r.extend_from_slice(&(seq * 10).to_le_bytes());
        r.extend((0..len).map(|i| i as u8));
        r.resize(r.len().next_multiple_of(8), 0);
        r
    }

    #[test]
    fn every_cut_leaves_the_cut_record_as_remainder() {
        let mut stream = std::vec::Vec::new();
        for (i, len) in [0u32, 1, 7, 8, 100].into_iter().enumerate() {
            stream.extend(record(len, KIND_DATA, i as u64));
        }
        for cut in 0..=stream.len() {
            let mut records = Records::new(&stream[..cut]);
            for (whole, r) in records.by_ref().enumerate() {
                let r = r.unwrap();
                assert_eq!(r.header.seq, whole as u64);
                assert_eq!(r.header.tag, 9);
                assert_eq!(r.payload.len(), r.header.len as usize);
                assert!(r.payload.iter().enumerate().all(|(i, &b)| b == i as u8));
            }
            assert_eq!(records.offset() + records.remainder().len(), cut);
            // The remainder is never a whole record.
            assert!(Records::new(records.remainder()).next().is_none());
        }
    }

    #[test]
    fn a_pad_or_garbage_is_an_error_once() {
        let mut stream = record(4, KIND_DATA, 0);
        stream.extend(record(4, 2, 1));
        stream.extend(record(4, KIND_DATA, 2));
        let results: std::vec::Vec<_> = Records::new(&stream).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(
            results[1],
            Err(StreamError::Kind {
                offset: 32,
                kind: 2
            })
        );
    }
}
