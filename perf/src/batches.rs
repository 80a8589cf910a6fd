//! Record batches the producers send, built before the run starts.
//!
//! Values are pseudo-random (incompressible, like OMB's payload files), different for every
//! producer. Uncompressed batches are built by `skein-net`'s builder and later only patched
//! (times, CRC); compressed ones by `kafka-protocol`'s encoder, once, or per send in e2e mode,
//! where the send times inside the compressed records change every time.

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use skein_net::RecordBatchBuilder;

use crate::cli::CompressionArg;

/// `len` bytes from a xorshift generator seeded by `seed`.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Snappy => Compression::Snappy,
        CompressionArg::Lz4 => Compression::Lz4,
        CompressionArg::Zstd => Compression::Zstd,
    }
}

/// One batch of `records` records whose values are `value`, the first 8 bytes of record `j`
/// replaced by `times_ns(j)` (big-endian) when given.
pub fn build(
    value: &[u8],
    records: u32,
    timestamp_ms: i64,
    c: CompressionArg,
    times_ns: Option<&dyn Fn(usize) -> u64>,
) -> Result<Bytes> {
    let stamped = |j: usize| -> Vec<u8> {
        let mut v = value.to_vec();
        if let Some(t) = times_ns {
            v[..8].copy_from_slice(&t(j).to_be_bytes());
        }
        v
    };
    if c == CompressionArg::None {
        let mut b = RecordBatchBuilder::new(timestamp_ms);
        for j in 0..records as usize {
            b.push(timestamp_ms, None, Some(&stamped(j)), &[]);
        }
        return Ok(b.build());
    }
    let recs: Vec<Record> = (0..records as usize)
        .map(|j| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: j as i64,
            // The encoder batches records whose offset - sequence is constant; the base
            // sequence it writes is the first record's: -1, as for a non-idempotent producer.
            sequence: j as i32 - 1,
            timestamp: timestamp_ms,
            key: None,
            value: Some(Bytes::from(stamped(j))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression(c),
    };
    RecordBatchEncoder::encode(&mut buf, &recs, &options)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .with_context(|| format!("encoding a {c:?} batch"))?;
    Ok(buf.freeze())
}

/// Record values of a compressed batch (decompressed), for e2e times and payload bytes.
pub fn compressed_values(batch: &[u8]) -> Result<Vec<Bytes>> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("decoding a compressed batch")?;
    Ok(set.records.into_iter().filter_map(|r| r.value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::walk_batch;

    #[test]
    fn payload_is_deterministic_and_incompressible_looking() {
        let a = payload(1024, 1);
        assert_eq!(a, payload(1024, 1));
        assert_ne!(a, payload(1024, 2));
        let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 200, "{distinct} distinct byte values");
    }

    #[test]
    fn compressed_batches_round_trip_with_times() {
        let value = payload(100, 3);
        for c in [
            CompressionArg::Lz4,
            CompressionArg::Zstd,
            CompressionArg::Gzip,
        ] {
            let t = |j: usize| 1000 + j as u64;
            let b = build(&value, 5, 1_700_000_000_000, c, Some(&t)).unwrap();
            assert!(walk_batch(&b).unwrap().compressed);
            let values = compressed_values(&b).unwrap();
            assert_eq!(values.len(), 5);
            for (j, v) in values.iter().enumerate() {
                assert_eq!(
                    u64::from_be_bytes(v[..8].try_into().unwrap()),
                    1000 + j as u64
                );
                assert_eq!(&v[8..], &value[8..]);
            }
        }
        let plain = build(&value, 5, 0, CompressionArg::None, None).unwrap();
        let info = walk_batch(&plain).unwrap();
        assert_eq!((info.compressed, info.value_bytes), (false, 500));
    }
}
