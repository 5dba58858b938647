//! The FLV file format around the tag bodies RTMP carries (FLV spec v10.1
//! §E.2-E.4): what HTTP-FLV serves and `.flv` files hold. Writing is three
//! fixed layouts; reading walks the tags of a byte stream and stops at the
//! first malformed one with an error (never a panic, never reading past
//! the input).

use bytes::{BufMut, Bytes};

use crate::error::FlvError;

/// FLV TagType of audio, video and script data (`onMetaData`).
pub const TAG_AUDIO: u8 = 8;
/// See [`TAG_AUDIO`].
pub const TAG_VIDEO: u8 = 9;
/// See [`TAG_AUDIO`].
pub const TAG_SCRIPT: u8 = 18;

/// The file header with its first PreviousTagSize (0): signature, version
/// 1, flags (audio 0x04, video 0x01), header length 9.
pub fn file_header(audio: bool, video: bool) -> [u8; 13] {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Bytes [`write_tag`] adds around a body.
pub const TAG_OVERHEAD: usize = 11 + 4;

/// Largest body a tag can carry (24-bit DataSize).
pub const MAX_TAG_BODY: usize = 0xff_ffff;

/// Appends one tag: the 11-byte header (type, 24-bit size, timestamp as
/// 24 bits plus an extension byte, stream id 0), the body, then its
/// PreviousTagSize. Errors on a body over [`MAX_TAG_BODY`].
pub fn write_tag(out: &mut impl BufMut, tag_type: u8, timestamp_ms: u32, body: &[u8]) -> Result<(), FlvError> {
    if body.len() > MAX_TAG_BODY {
        return Err(FlvError::TagTooLarge(body.len()));
    }
    let size = body.len() as u32;
    out.put_u8(tag_type);
    out.put_slice(&size.to_be_bytes()[1..]);
    out.put_slice(&(timestamp_ms & 0xff_ffff).to_be_bytes()[1..]);
    out.put_u8((timestamp_ms >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(body);
    out.put_u32(size + 11);
    Ok(())
}

/// One tag of a file: its type, timestamp (ms, extension byte applied) and
/// body (a slice of the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`], [`TAG_SCRIPT`] or another value.
    pub tag_type: u8,
    /// Milliseconds.
    pub timestamp_ms: u32,
    /// The tag body, as RTMP would carry it.
    pub body: Bytes,
}

/// Reads the tags of a whole FLV file (header included). Returns the tags
/// up to the first error, and that error if there is one; a file cut in the
/// middle of a tag ends with [`FlvError::Truncated`].
pub fn read_file(data: &Bytes) -> (Vec<FileTag>, Option<FlvError>) {
    let mut tags = Vec::new();
    if data.len() < 9 || &data[..3] != b"FLV" {
        return (tags, Some(FlvError::NotFlv));
    }
    let header = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    let Some(mut pos) = header.checked_add(4).filter(|&p| header >= 9 && p <= data.len()) else {
        return (tags, Some(FlvError::Truncated("FLV header")));
    };
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + 11) else {
            return (tags, Some(FlvError::Truncated("FLV tag header")));
        };
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let timestamp_ms = (u32::from(h[7]) << 24) | (u32::from(h[4]) << 16) | (u32::from(h[5]) << 8) | u32::from(h[6]);
        let body_at = pos + 11;
        if data.len() < body_at + size + 4 {
            return (tags, Some(FlvError::Truncated("FLV tag body")));
        }
        tags.push(FileTag { tag_type: h[0] & 0x1f, timestamp_ms, body: data.slice(body_at..body_at + size) });
        pos = body_at + size + 4;
    }
    (tags, None)
}

/// Reads an FLV byte stream as it arrives (HTTP-FLV from another server):
/// the file header once, then tags. Bytes are pushed in whatever pieces the
/// network gives; [`FlvReader::next_tag`] hands out each complete tag, its
/// body sliced from one buffer (no copy per tag beyond the receive).
/// A tag larger than `max_body` is an error, so a peer cannot make it
/// buffer without bound.
#[derive(Debug)]
pub struct FlvReader {
    buf: bytes::BytesMut,
    header_done: bool,
    max_body: usize,
}

impl FlvReader {
    /// A reader that refuses tags with bodies over `max_body` bytes.
    pub fn new(max_body: usize) -> FlvReader {
        FlvReader { buf: bytes::BytesMut::new(), header_done: false, max_body: max_body.min(MAX_TAG_BODY) }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet handed out as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag; None until more bytes arrive. After an error
    /// the stream is unusable.
    pub fn next_tag(&mut self) -> Result<Option<FileTag>, FlvError> {
        if !self.header_done {
            if self.buf.len() >= 3 && &self.buf[..3] != b"FLV" {
                return Err(FlvError::NotFlv);
            }
            if self.buf.len() < 9 {
                return Ok(None);
            }
            let header = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=64).contains(&header) {
                return Err(FlvError::NotFlv);
            }
            if self.buf.len() < header + 4 {
                return Ok(None);
            }
            let _ = self.buf.split_to(header + 4);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let h = &self.buf[..11];
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        if size > self.max_body {
            return Err(FlvError::TagTooLarge(size));
        }
        if self.buf.len() < 11 + size + 4 {
            // Room for the whole tag at once, not one reallocation per piece.
            self.buf.reserve(11 + size + 4 - self.buf.len());
            return Ok(None);
        }
        let timestamp_ms = (u32::from(h[7]) << 24) | (u32::from(h[4]) << 16) | (u32::from(h[5]) << 8) | u32::from(h[6]);
        let tag_type = h[0] & 0x1f;
        let mut tag = self.buf.split_to(11 + size + 4);
        let _ = tag.split_to(11);
        tag.truncate(size);
        Ok(Some(FileTag { tag_type, timestamp_ms, body: tag.freeze() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_tag_layout_match_the_spec() {
        // Hand-built per FLV spec v10.1 §E.2/E.4: a video tag of 3 bytes at
        // 0x01_23_45_67 ms (timestamp 0x234567 + extension 0x01).
        assert_eq!(file_header(true, true), [0x46, 0x4c, 0x56, 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]);
        assert_eq!(file_header(false, true)[4], 1);
        let mut out = Vec::new();
        write_tag(&mut out, TAG_VIDEO, 0x0123_4567, &[0xaa, 0xbb, 0xcc]).unwrap();
        assert_eq!(out, [9, 0, 0, 3, 0x23, 0x45, 0x67, 0x01, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0, 0, 0, 14]);
        let big = vec![0u8; MAX_TAG_BODY + 1];
        assert!(matches!(write_tag(&mut Vec::new(), TAG_AUDIO, 0, &big), Err(FlvError::TagTooLarge(_))));
    }

    #[test]
    fn the_stream_reader_gives_the_same_tags_whatever_the_pieces() {
        let mut file = file_header(true, true).to_vec();
        write_tag(&mut file, TAG_SCRIPT, 0, b"meta").unwrap();
        write_tag(&mut file, TAG_VIDEO, 40, &[0x17, 1, 0, 0, 0]).unwrap();
        write_tag(&mut file, TAG_AUDIO, 0x0100_0000, &[0xaf, 1, 7]).unwrap();
        let want = vec![(18u8, 0u32, b"meta".to_vec()), (9, 40, vec![0x17, 1, 0, 0, 0]), (8, 0x0100_0000, vec![0xaf, 1, 7])];
        for piece in [1, 2, 5, 13, 100] {
            let mut r = FlvReader::new(1 << 20);
            let mut got = Vec::new();
            for chunk in file.chunks(piece) {
                r.push(chunk);
                while let Some(t) = r.next_tag().unwrap() {
                    got.push((t.tag_type, t.timestamp_ms, t.body.to_vec()));
                }
            }
            assert_eq!(got, want, "pieces of {piece}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn the_stream_reader_refuses_what_is_not_flv_or_too_large() {
        let mut r = FlvReader::new(1024);
        r.push(b"HTTP/1.1 200");
        assert_eq!(r.next_tag(), Err(FlvError::NotFlv));
        let mut r = FlvReader::new(4);
        let mut file = file_header(true, true).to_vec();
        write_tag(&mut file, TAG_VIDEO, 0, &[0; 5]).unwrap();
        r.push(&file[..13 + 11]);
        assert_eq!(r.next_tag(), Err(FlvError::TagTooLarge(5)));
        // A header length below 9 is not FLV.
        let mut r = FlvReader::new(1024);
        r.push(&[b'F', b'L', b'V', 1, 5, 0, 0, 0, 3, 0, 0, 0, 0]);
        assert_eq!(r.next_tag(), Err(FlvError::NotFlv));
    }

    #[test]
    fn reads_back_what_it_writes_and_stops_at_damage() {
        let mut file = file_header(true, true).to_vec();
        write_tag(&mut file, TAG_SCRIPT, 0, b"meta").unwrap();
        write_tag(&mut file, TAG_VIDEO, 40, &[0x17, 1, 0, 0, 0]).unwrap();
        write_tag(&mut file, TAG_AUDIO, 0x0100_0000, &[0xaf, 1, 7]).unwrap();
        let data = Bytes::from(file.clone());
        let (tags, err) = read_file(&data);
        assert_eq!(err, None);
        let got: Vec<(u8, u32, &[u8])> = tags.iter().map(|t| (t.tag_type, t.timestamp_ms, &t.body[..])).collect();
        assert_eq!(got, vec![(18, 0, &b"meta"[..]), (9, 40, &[0x17, 1, 0, 0, 0][..]), (8, 0x0100_0000, &[0xaf, 1, 7][..])]);
        // Cut anywhere inside the last tag: the tags before it, and an error.
        for cut in file.len() - 17..file.len() {
            let (tags, err) = read_file(&Bytes::from(file[..cut].to_vec()));
            assert_eq!(tags.len(), 2, "cut at {cut}");
            assert!(matches!(err, Some(FlvError::Truncated(_))), "cut at {cut}: {err:?}");
        }
        assert_eq!(read_file(&Bytes::from_static(b"GIF89a...")).1, Some(FlvError::NotFlv));
        // A header length pointing past the end.
        let mut bad = file_header(true, true).to_vec();
        bad[8] = 200;
        assert!(matches!(read_file(&Bytes::from(bad)).1, Some(FlvError::Truncated(_))));
    }
}
