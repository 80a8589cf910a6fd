//! Kafka's record compression codecs, for the log cleaner's rewrite of compressed batches
//! (pure, any shard).
//!
//! Appends never decompress (batches are stored as produced); only the cleaner does, to filter
//! the records of a compressed batch and compress the survivors again with the batch's codec.
//! Formats are Kafka's: gzip (RFC 1952), snappy in xerial-java framing (raw snappy accepted on
//! input, as the Java client does), LZ4 frames with independent blocks (what Kafka's
//! `KafkaLZ4BlockInputStream` requires), zstd frames. These codecs run on the reactor thread:
//! a batch is at most `BATCH_BYTES_MAX` compressed and `DECOMPRESSED_BATCH_BYTES_MAX` inflated.

use std::io::{Read, Write};

use crate::batch::Compression;

/// xerial snappy-java's stream header: magic, then version 1 and compatible version 1.
const XERIAL_SNAPPY_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial snappy block (snappy-java's default).
const XERIAL_SNAPPY_BLOCK_BYTES: usize = 32 << 10;
/// zstd level of the Java client's default (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

/// Inflates `data`; `None` if it is not valid for `codec` or inflates beyond `limit_bytes`.
pub(crate) fn decompress(codec: Compression, data: &[u8], limit_bytes: usize) -> Option<Vec<u8>> {
    match codec {
        Compression::None => (data.len() <= limit_bytes).then(|| data.to_vec()),
        Compression::Gzip => read_limited(flate2::read::MultiGzDecoder::new(data), limit_bytes),
        Compression::Snappy => snappy_decompress(data, limit_bytes),
        Compression::Lz4 => read_limited(lz4::Decoder::new(data).ok()?, limit_bytes),
        Compression::Zstd => {
            read_limited(zstd::stream::read::Decoder::new(data).ok()?, limit_bytes)
        }
        Compression::Unknown(_) => None,
    }
}

/// Deflates `data` with `codec`; `None` if the codec failed (or is unknown).
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Option<Vec<u8>> {
    match codec {
        Compression::None => Some(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).ok()?;
            e.finish().ok()
        }
        Compression::Snappy => snappy_compress(data),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .ok()?;
            e.write_all(data).ok()?;
            let (out, result) = e.finish();
            result.ok().map(|()| out)
        }
        Compression::Zstd => zstd::stream::encode_all(data, ZSTD_LEVEL).ok(),
        Compression::Unknown(_) => None,
    }
}

fn read_limited(reader: impl Read, limit_bytes: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    let mut limited = reader.take(limit_bytes as u64 + 1);
    limited.read_to_end(&mut out).ok()?;
    (out.len() <= limit_bytes).then_some(out)
}

fn snappy_decompress(data: &[u8], limit_bytes: usize) -> Option<Vec<u8>> {
    let Some(mut blocks) = data.strip_prefix(&XERIAL_SNAPPY_HEADER[..]) else {
        return snappy_block(data, limit_bytes);
    };
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let len_bytes: [u8; 4] = blocks.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = blocks.get(4..4 + len)?;
        out.extend_from_slice(&snappy_block(block, limit_bytes - out.len())?);
        blocks = &blocks[4 + len..];
    }
    Some(out)
}

fn snappy_block(block: &[u8], limit_bytes: usize) -> Option<Vec<u8>> {
    // The declared length is checked before anything is allocated for it.
    if snap::raw::decompress_len(block).ok()? > limit_bytes {
        return None;
    }
    snap::raw::Decoder::new().decompress_vec(block).ok()
}

fn snappy_compress(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = XERIAL_SNAPPY_HEADER.to_vec();
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(XERIAL_SNAPPY_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).ok()?;
        out.extend_from_slice(&u32::try_from(compressed.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_data() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for codec in CODECS {
            let c = compress(codec, &data).unwrap();
            if codec != Compression::None {
                assert!(c.len() < data.len() / 4, "{codec:?} compresses");
            }
            assert_eq!(
                decompress(codec, &c, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            assert!(
                decompress(codec, &c, data.len() - 1).is_none(),
                "{codec:?} refuses to inflate past the limit"
            );
        }
        assert!(compress(Compression::Unknown(6), &data).is_none());
    }

    #[test]
    fn snappy_reads_xerial_frames_and_raw_blocks() {
        let framed = compress(Compression::Snappy, b"hello snappy").unwrap();
        assert!(framed.starts_with(XERIAL_SNAPPY_HEADER));
        assert_eq!(
            decompress(Compression::Snappy, &framed, 100).unwrap(),
            b"hello snappy"
        );
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"hello raw")
            .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 100).unwrap(),
            b"hello raw"
        );
    }

    #[test]
    fn lz4_frames_have_independent_blocks_as_kafka_requires() {
        let c = compress(Compression::Lz4, b"lz4 frame").unwrap();
        // Frame magic, then FLG: version 01, block independence (bit 5), no content checksum.
        assert_eq!(&c[..4], &[0x04, 0x22, 0x4d, 0x18]);
        assert_eq!(c[4] & 0b1110_0100, 0b0110_0000);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), c in 0usize..5) {
            let _ = decompress(CODECS[c], &bytes, 1 << 20);
        }
    }
}
