//! Fragmented MP4 (ISO/IEC 14496-12, CMAF) for HLS: the initialization
//! segment (`ftyp` + `moov` with an H.264 and an optional AAC track) and
//! fragments (`moof` + `mdat`) of both tracks. Only the boxes HLS players
//! read are written; sample tables in `moov` are empty (everything is in
//! the fragments). Decision 019 says why this is written here.

use bytes::{BufMut, Bytes, BytesMut};

pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Video timestamps are in 90 kHz units; audio in its sample rate.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// The H.264 track: the publisher's AVCDecoderConfigurationRecord and the
/// picture size its SPS declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    pub avcc: Bytes,
    pub width: u16,
    pub height: u16,
}

/// The AAC track: the AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    pub asc: Bytes,
    pub sample_rate: u32,
    pub channels: u8,
}

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub data: Bytes,
    /// In the track's timescale.
    pub duration: u32,
    /// Sync sample (video keyframe; every audio sample).
    pub sync: bool,
    /// Presentation minus decode time (B-frames), in the track's timescale.
    pub cts_offset: i32,
}

/// One track's samples in a fragment, from decode time `base`.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub track: u32,
    pub base: u64,
    pub samples: &'a [Sample],
}

/// Writes a box: size, type, then what `body` writes.
fn boxed(b: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = b.len();
    b.put_u32(0);
    b.put_slice(kind);
    body(b);
    let size = (b.len() - start) as u32;
    b[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: version and flags after the type.
fn full(b: &mut BytesMut, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut BytesMut)) {
    boxed(b, kind, |b| {
        b.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(b);
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `ftyp` + `moov`.
pub fn init_segment(video: &VideoConfig, audio: Option<&AudioConfig>) -> Bytes {
    let mut b = BytesMut::with_capacity(1024 + video.avcc.len());
    boxed(&mut b, b"ftyp", |b| {
        b.put_slice(b"iso6");
        b.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41", b"avc1"] {
            b.put_slice(brand);
        }
    });
    boxed(&mut b, b"moov", |b| {
        full(b, b"mvhd", 0, 0, |b| {
            b.put_u32(0); // creation
            b.put_u32(0); // modification
            b.put_u32(1000);
            b.put_u32(0); // duration: unknown (live)
            b.put_u32(0x0001_0000); // rate 1.0
            b.put_u16(0x0100); // volume 1.0
            b.put_bytes(0, 10);
            MATRIX.iter().for_each(|&m| b.put_u32(m));
            b.put_bytes(0, 24);
            b.put_u32(if audio.is_some() { 3 } else { 2 }); // next_track_ID
        });
        trak(b, VIDEO_TRACK, Some((video.width, video.height)), VIDEO_TIMESCALE, b"vide", |b| {
            full(b, b"vmhd", 0, 1, |b| b.put_bytes(0, 8));
        }, |b| avc1(b, video));
        if let Some(a) = audio {
            trak(b, AUDIO_TRACK, None, a.sample_rate, b"soun", |b| {
                full(b, b"smhd", 0, 0, |b| b.put_u32(0));
            }, |b| mp4a(b, a));
        }
        boxed(b, b"mvex", |b| {
            let tracks: &[u32] = if audio.is_some() { &[VIDEO_TRACK, AUDIO_TRACK] } else { &[VIDEO_TRACK] };
            for &t in tracks {
                full(b, b"trex", 0, 0, |b| {
                    b.put_u32(t);
                    b.put_u32(1); // sample description index
                    b.put_u32(0);
                    b.put_u32(0);
                    b.put_u32(0);
                });
            }
        });
    });
    b.freeze()
}

fn trak(
    b: &mut BytesMut,
    id: u32,
    size: Option<(u16, u16)>,
    timescale: u32,
    handler: &[u8; 4],
    media_header: impl FnOnce(&mut BytesMut),
    sample_entry: impl FnOnce(&mut BytesMut),
) {
    boxed(b, b"trak", |b| {
        full(b, b"tkhd", 0, 3, |b| {
            b.put_u32(0);
            b.put_u32(0);
            b.put_u32(id);
            b.put_u32(0);
            b.put_u32(0); // duration
            b.put_bytes(0, 8);
            b.put_u16(0); // layer
            b.put_u16(0); // alternate group
            b.put_u16(if size.is_some() { 0 } else { 0x0100 }); // volume
            b.put_u16(0);
            MATRIX.iter().for_each(|&m| b.put_u32(m));
            let (w, h) = size.unwrap_or((0, 0));
            b.put_u32(u32::from(w) << 16);
            b.put_u32(u32::from(h) << 16);
        });
        boxed(b, b"mdia", |b| {
            full(b, b"mdhd", 0, 0, |b| {
                b.put_u32(0);
                b.put_u32(0);
                b.put_u32(timescale);
                b.put_u32(0);
                b.put_u16(0x55c4); // language "und"
                b.put_u16(0);
            });
            full(b, b"hdlr", 0, 0, |b| {
                b.put_u32(0);
                b.put_slice(handler);
                b.put_bytes(0, 12);
                b.put_slice(if handler == b"vide" { b"VideoHandler\0" } else { b"SoundHandler\0" });
            });
            boxed(b, b"minf", |b| {
                media_header(b);
                boxed(b, b"dinf", |b| {
                    full(b, b"dref", 0, 0, |b| {
                        b.put_u32(1);
                        full(b, b"url ", 0, 1, |_| {}); // media in the same file
                    });
                });
                boxed(b, b"stbl", |b| {
                    full(b, b"stsd", 0, 0, |b| {
                        b.put_u32(1);
                        sample_entry(b);
                    });
                    full(b, b"stts", 0, 0, |b| b.put_u32(0));
                    full(b, b"stsc", 0, 0, |b| b.put_u32(0));
                    full(b, b"stsz", 0, 0, |b| {
                        b.put_u32(0);
                        b.put_u32(0);
                    });
                    full(b, b"stco", 0, 0, |b| b.put_u32(0));
                });
            });
        });
    });
}

fn avc1(b: &mut BytesMut, v: &VideoConfig) {
    boxed(b, b"avc1", |b| {
        b.put_bytes(0, 6);
        b.put_u16(1); // data reference index
        b.put_bytes(0, 16);
        b.put_u16(v.width);
        b.put_u16(v.height);
        b.put_u32(0x0048_0000); // 72 dpi
        b.put_u32(0x0048_0000);
        b.put_u32(0);
        b.put_u16(1); // frame count
        b.put_bytes(0, 32); // compressor name
        b.put_u16(0x0018); // depth
        b.put_i16(-1);
        boxed(b, b"avcC", |b| b.put_slice(&v.avcc));
    });
}

fn mp4a(b: &mut BytesMut, a: &AudioConfig) {
    boxed(b, b"mp4a", |b| {
        b.put_bytes(0, 6);
        b.put_u16(1);
        b.put_bytes(0, 8);
        b.put_u16(u16::from(a.channels.max(1)));
        b.put_u16(16);
        b.put_u32(0);
        // 16.16 sample rate; rates above 65535 Hz do not fit (the esds has it).
        b.put_u32(if a.sample_rate <= 0xffff { a.sample_rate << 16 } else { 0 });
        full(b, b"esds", 0, 0, |b| esds(b, &a.asc));
    });
}

/// The ES_Descriptor of an AAC track (ISO/IEC 14496-1 §7.2.6).
fn esds(b: &mut BytesMut, asc: &[u8]) {
    // Each descriptor: tag, then its length in the 4-byte expandable form.
    fn desc(b: &mut BytesMut, tag: u8, body: &[u8]) {
        b.put_u8(tag);
        let n = body.len() as u32;
        b.put_slice(&[0x80 | (n >> 21) as u8 & 0x7f, 0x80 | (n >> 14) as u8 & 0x7f, 0x80 | (n >> 7) as u8 & 0x7f, n as u8 & 0x7f]);
        b.put_slice(body);
    }
    let mut specific = BytesMut::new();
    desc(&mut specific, 0x05, asc);
    let mut config = BytesMut::new();
    config.put_u8(0x40); // objectTypeIndication: MPEG-4 audio
    config.put_u8(0x15); // streamType audio (5) << 2 | reserved 1
    config.put_bytes(0, 3); // bufferSizeDB
    config.put_u32(0); // maxBitrate
    config.put_u32(0); // avgBitrate
    config.put_slice(&specific);
    let mut es = BytesMut::new();
    es.put_u16(AUDIO_TRACK as u16); // ES_ID
    es.put_u8(0);
    desc(&mut es, 0x04, &config);
    desc(&mut es, 0x06, &[0x02]); // SLConfigDescriptor: predefined MP4
    desc(b, 0x03, &es);
}

const SAMPLE_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (an I-frame)
const SAMPLE_NON_SYNC: u32 = 0x0101_0000; // depends on others, sample_is_non_sync_sample

/// One fragment: `moof` (sequence number `seq`, one `traf` per run) and
/// the `mdat` with the runs' samples in order.
pub fn fragment(seq: u32, runs: &[Run<'_>]) -> Bytes {
    let data_len: usize = runs.iter().flat_map(|r| r.samples).map(|s| s.data.len()).sum();
    let mut b = BytesMut::with_capacity(256 + runs.iter().map(|r| r.samples.len() * 16).sum::<usize>() + data_len);
    let mut offsets = Vec::with_capacity(runs.len());
    boxed(&mut b, b"moof", |b| {
        full(b, b"mfhd", 0, 0, |b| b.put_u32(seq));
        for r in runs {
            boxed(b, b"traf", |b| {
                full(b, b"tfhd", 0, 0x02_0000, |b| b.put_u32(r.track)); // default-base-is-moof
                full(b, b"tfdt", 1, 0, |b| b.put_u64(r.base));
                let video = r.track == VIDEO_TRACK;
                // data offset, duration, size; video: flags and signed composition offsets.
                let flags = if video { 0x0f01 } else { 0x0301 };
                full(b, b"trun", u8::from(video), flags, |b| {
                    b.put_u32(r.samples.len() as u32);
                    offsets.push(b.len());
                    b.put_u32(0); // data offset, patched below
                    for s in r.samples {
                        b.put_u32(s.duration);
                        b.put_u32(s.data.len() as u32);
                        if video {
                            b.put_u32(if s.sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC });
                            b.put_i32(s.cts_offset);
                        }
                    }
                });
            });
        }
    });
    // Data offsets count from the start of the moof (default-base-is-moof).
    let mut at = b.len() + 8;
    for (r, &pos) in runs.iter().zip(&offsets) {
        b[pos..pos + 4].copy_from_slice(&(at as u32).to_be_bytes());
        at += r.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    b.put_u32((8 + data_len) as u32);
    b.put_slice(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples) {
        b.put_slice(&s.data);
    }
    b.freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The boxes at the top of `data`: (type, body). Panics on a size that
    /// does not fit, so nesting is checked by walking.
    pub fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            assert!(size >= 8 && at + size <= data.len(), "box size {size} at {at} of {}", data.len());
            out.push((data[at + 4..at + 8].try_into().unwrap(), &data[at + 8..at + size]));
            at += size;
        }
        out
    }

    fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
        boxes(data).into_iter().find(|(k, _)| k == kind).map(|(_, b)| b).unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(kind)))
    }

    fn video() -> VideoConfig {
        VideoConfig { avcc: Bytes::from_static(&[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0xc0, 0x1e, 1, 0, 2, 0x68, 0xce]), width: 640, height: 360 }
    }

    #[test]
    fn init_segment_nests_and_carries_both_configs() {
        let audio = AudioConfig { asc: Bytes::from_static(&[0x11, 0x90]), sample_rate: 48_000, channels: 2 };
        let init = init_segment(&video(), Some(&audio));
        let top: Vec<[u8; 4]> = boxes(&init).iter().map(|(k, _)| *k).collect();
        assert_eq!(top, vec![*b"ftyp", *b"moov"]);
        let moov = child(&init, b"moov");
        let kinds: Vec<[u8; 4]> = boxes(moov).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec![*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
        let traks: Vec<&[u8]> = boxes(moov).into_iter().filter(|(k, _)| k == b"trak").map(|(_, b)| b).collect();
        let stsd = |trak: &[u8]| {
            let stbl = child(child(child(trak, b"mdia"), b"minf"), b"stbl");
            child(stbl, b"stsd")[8..].to_vec() // version/flags, entry count
        };
        let v = stsd(traks[0]);
        assert_eq!(&v[4..8], b"avc1");
        let avcc = &v[8 + 78..];
        assert_eq!(&avcc[4..8], b"avcC");
        assert_eq!(&avcc[8..], &video().avcc[..]);
        let a = stsd(traks[1]);
        assert_eq!(&a[4..8], b"mp4a");
        // The 16.16 rate in the sample entry, then the esds ending in the ASC and SL descriptor.
        assert_eq!(u32::from_be_bytes(a[8 + 24..8 + 28].try_into().unwrap()), 48_000 << 16);
        assert!(a.windows(7).any(|w| w == [0x05, 0x80, 0x80, 0x80, 2, 0x11, 0x90]), "DecoderSpecificInfo with the ASC");
        // mdhd timescales.
        let mdhd = |trak: &[u8]| u32::from_be_bytes(child(child(trak, b"mdia"), b"mdhd")[12..16].try_into().unwrap());
        assert_eq!((mdhd(traks[0]), mdhd(traks[1])), (90_000, 48_000));
    }

    #[test]
    fn fragment_offsets_point_at_each_runs_samples() {
        let s = |fill: u8, len: usize, sync: bool| Sample { data: Bytes::from(vec![fill; len]), duration: 3000, sync, cts_offset: 0 };
        let v = [s(1, 100, true), s(2, 50, false)];
        let a = [Sample { duration: 1024, ..s(9, 20, true) }];
        let f = fragment(7, &[Run { track: VIDEO_TRACK, base: 90_000, samples: &v }, Run { track: AUDIO_TRACK, base: 48_000, samples: &a }]);
        let top = boxes(&f);
        assert_eq!((top[0].0, top[1].0), (*b"moof", *b"mdat"));
        let moof = top[0].1;
        assert_eq!(u32::from_be_bytes(child(moof, b"mfhd")[4..8].try_into().unwrap()), 7);
        let trafs: Vec<&[u8]> = boxes(moof).into_iter().filter(|(k, _)| k == b"traf").map(|(_, b)| b).collect();
        assert_eq!(trafs.len(), 2);
        for (traf, (first_fill, base)) in trafs.iter().zip([(1u8, 90_000u64), (9, 48_000)]) {
            assert_eq!(u64::from_be_bytes(child(traf, b"tfdt")[4..12].try_into().unwrap()), base);
            let trun = child(traf, b"trun");
            let offset = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
            assert_eq!(f[offset], first_fill, "data offset from the moof start");
        }
        let v_trun = child(trafs[0], b"trun");
        assert_eq!(v_trun[0], 1, "version 1: signed composition offsets");
        assert_eq!(u32::from_be_bytes(v_trun[4..8].try_into().unwrap()), 2, "sample count");
        assert_eq!(u32::from_be_bytes(v_trun[20..24].try_into().unwrap()), SAMPLE_SYNC);
        assert_eq!(u32::from_be_bytes(v_trun[36..40].try_into().unwrap()), SAMPLE_NON_SYNC);
        assert_eq!(top[1].1.len(), 170);
    }
}
