//! Audio and video messages to an RTMP player, serialized without a chunk
//! serializer's state: every message starts with a type-0 chunk header (its
//! absolute timestamp, length, type and message stream id) on a chunk stream
//! of its own (never one `rml_rtmp`'s serializer uses for commands), then
//! type-3 continuation chunks of [`CHUNK_SIZE`]. Because nothing depends on
//! what was sent before, one encoding of a tag serves every player whose
//! connection uses this chunk size (ours: sent on `connect`) and the same
//! message stream id.

use bytes::{BufMut, Bytes, BytesMut};

use crate::conn::CHUNK_SIZE;

/// Chunk stream of video messages (rml_rtmp's serializer uses 2 to 6).
pub const VIDEO_CSID: u8 = 7;
/// Chunk stream of audio messages.
pub const AUDIO_CSID: u8 = 8;
/// RTMP message type of audio (8) and video (9): the FLV tag types.
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
/// Timestamps from here on go in the extended timestamp field.
const EXTENDED: u32 = 0xff_ffff;

/// One audio (`tag_type` 8) or video (9) tag body as an RTMP message on
/// message stream `stream_id`. Other tag types give an empty encoding.
pub fn encode_media_message(tag_type: u8, timestamp_ms: u32, stream_id: u32, body: &[u8]) -> Bytes {
    let csid = match tag_type {
        VIDEO => VIDEO_CSID,
        AUDIO => AUDIO_CSID,
        _ => return Bytes::new(),
    };
    let chunk = CHUNK_SIZE as usize;
    let chunks = body.len().div_ceil(chunk).max(1);
    let extended = timestamp_ms >= EXTENDED;
    let per_chunk_ts = if extended { 4 } else { 0 };
    let mut out = BytesMut::with_capacity(12 + body.len() + (chunks - 1) + chunks * per_chunk_ts);
    // Type 0: fmt 00 + csid, timestamp (24), length (24), type, stream id (LE).
    out.put_u8(csid);
    out.put_slice(&timestamp_ms.min(EXTENDED).to_be_bytes()[1..]);
    out.put_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.put_u8(tag_type);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp_ms);
    }
    for (i, piece) in body.chunks(chunk).enumerate() {
        if i > 0 {
            // Type 3: fmt 11 + csid; the extended timestamp is repeated, as
            // FFmpeg and Flash write and read it.
            out.put_u8(0xc0 | csid);
            if extended {
                out.put_u32(timestamp_ms);
            }
        }
        out.put_slice(piece);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    /// Decodes with rml_rtmp's deserializer (an independent implementation)
    /// at our chunk size.
    fn decode(bytes: &[u8]) -> Vec<(u8, u32, u32, Vec<u8>)> {
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(CHUNK_SIZE as usize).unwrap();
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(p) = d.get_next_message(input).unwrap() {
            out.push((p.type_id, p.timestamp.value, p.message_stream_id, p.data.to_vec()));
            input = &[];
        }
        out
    }

    #[test]
    fn a_small_video_message_is_one_type_0_chunk() {
        let b = encode_media_message(9, 0x01_0203, 1, &[0x17, 1, 2, 3]);
        // fmt 0 csid 7, timestamp 0x010203, length 4, type 9, stream id 1 (LE), body.
        assert_eq!(&b[..], &[7, 0x01, 0x02, 0x03, 0, 0, 4, 9, 1, 0, 0, 0, 0x17, 1, 2, 3]);
        assert_eq!(decode(&b), vec![(9, 0x01_0203, 1, vec![0x17, 1, 2, 3])]);
    }

    #[test]
    fn long_messages_and_extended_timestamps_decode_with_rml_rtmp() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let b = encode_media_message(9, 5_000, 1, &body);
        assert_eq!(b.len(), 12 + body.len() + 2, "two continuation headers for 3 chunks");
        assert_eq!(b[12 + 4096], 0xc7, "type-3 header on csid 7");
        assert_eq!(decode(&b), vec![(9, 5_000, 1, body.clone())]);
        // Past 24 bits: 0xffffff in the header, the time after it and after
        // every continuation header.
        let ts = 0x0100_0000 + 7;
        let b = encode_media_message(8, ts, 3, &body);
        assert_eq!(&b[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(&b[12..16], &ts.to_be_bytes());
        assert_eq!(decode(&b), vec![(8, ts, 3, body.clone())]);
        // Two messages back to back (audio then video) stay apart.
        let mut two = encode_media_message(8, 10, 1, &[0xaf, 1, 9]).to_vec();
        two.extend_from_slice(&encode_media_message(9, 20, 1, &[0x27, 1]));
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(CHUNK_SIZE as usize).unwrap();
        let first = d.get_next_message(&two).unwrap().unwrap();
        let second = d.get_next_message(&[]).unwrap().unwrap();
        assert_eq!((first.type_id, first.timestamp.value, &first.data[..]), (8, 10, &[0xaf, 1, 9][..]));
        assert_eq!((second.type_id, second.timestamp.value, &second.data[..]), (9, 20, &[0x27, 1][..]));
        assert!(encode_media_message(18, 0, 1, b"meta").is_empty());
    }
}
