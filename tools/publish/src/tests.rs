//! Unit tests of the pure parts.

use crate::annexb::{nal_type, split_nals, AuSplitter, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::avcc::avc_decoder_config;
use crate::convert::Converter;
use crate::sei::{
    add_emulation_prevention, parse_timestamp_sei, remove_emulation_prevention,
    write_timestamp_sei, SEI_UUID,
};
use crate::url::RtmpUrl;

/// 6 frames of `testsrc2=size=160x96`, libx264 baseline, `-g 3`, `aud=1`, captured with the
/// publisher's own ffmpeg line.
const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/testsrc2_160x96_6frames.h264");

#[test]
fn emulation_prevention_vectors() {
    let cases: [(&[u8], &[u8]); 5] = [
        (&[0, 0, 0], &[0, 0, 3, 0]),
        (&[0, 0, 1], &[0, 0, 3, 1]),
        (&[0, 0, 3], &[0, 0, 3, 3]),
        (&[0, 0, 4], &[0, 0, 4]),
        (&[0, 0, 0, 0, 0], &[0, 0, 3, 0, 0, 3, 0]),
    ];
    for (rbsp, ebsp) in cases {
        let mut out = Vec::new();
        add_emulation_prevention(rbsp, &mut out);
        assert_eq!(out, ebsp);
        let mut back = Vec::new();
        remove_emulation_prevention(&out, &mut back);
        assert_eq!(back, rbsp);
    }
}

#[test]
fn sei_round_trip_with_emulation_prevention() {
    // 0x0000_0000_0000_0102 has "00 00 00" and "00 00 01" inside: both need escaping.
    for ts in [
        0x0000_0000_0000_0102u64,
        0x0001_0000_0300_0000,
        1_700_000_000_123_456,
        u64::MAX,
        0,
    ] {
        let mut nal = Vec::new();
        write_timestamp_sei(ts, &mut nal);
        assert_eq!(nal[0], 0x06);
        assert!(
            !nal.windows(3)
                .any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3 && w[2] != 3),
            "{nal:02x?}"
        );
        assert_eq!(parse_timestamp_sei(&nal), Some(ts));
    }
    let mut nal = Vec::new();
    write_timestamp_sei(0x0102, &mut nal);
    // Header, type 5, size 24, UUID, then the escaped timestamp 00 00 03 00 00 03 00 00 01 02.
    assert_eq!(&nal[..3], &[0x06, 0x05, 0x18]);
    assert_eq!(&nal[3..19], &SEI_UUID);
    assert_eq!(&nal[19..], &[0, 0, 3, 0, 0, 3, 0, 0, 3, 1, 2, 0x80]);
}

#[test]
fn sei_parser_rejects_others_and_garbage() {
    let x264_sei = split_nals(FIXTURE).find(|n| nal_type(n) == 6).unwrap();
    assert_eq!(
        parse_timestamp_sei(x264_sei),
        None,
        "x264's own SEI has another UUID"
    );
    let mut nal = Vec::new();
    write_timestamp_sei(42, &mut nal);
    for cut in 0..nal.len() - 1 {
        assert_eq!(parse_timestamp_sei(&nal[..cut]), None);
    }
    assert_eq!(parse_timestamp_sei(&[0x06, 0xff, 0xff, 0xff]), None);
    assert_eq!(parse_timestamp_sei(&[0x65, 1, 2]), None);
}

#[test]
fn split_real_ffmpeg_output() {
    let types: Vec<u8> = split_nals(FIXTURE).map(nal_type).collect();
    assert_eq!(types, [9, 7, 8, 6, 5, 9, 1, 9, 1, 9, 7, 8, 5, 9, 1, 9, 1]);
    let sps = split_nals(FIXTURE).nth(1).unwrap();
    assert_eq!(
        &sps[..4],
        &[0x67, 0x42, 0xc0, 0x0d],
        "baseline profile 66, level 1.3"
    );
}

#[test]
fn au_splitter_handles_any_chunking() {
    for chunk in [1, 2, 3, 5, 100, FIXTURE.len()] {
        let mut s = AuSplitter::new();
        let mut aus = Vec::new();
        for c in FIXTURE.chunks(chunk) {
            s.push(c);
            while let Some(au) = s.next_au() {
                aus.push(au);
            }
        }
        aus.extend(s.finish());
        assert_eq!(aus.len(), 6, "chunk {chunk}");
        let lens: Vec<usize> = aus.iter().map(Vec::len).collect();
        assert!(
            aus.concat() == FIXTURE,
            "chunk {chunk}: bytes lost or duplicated: {lens:?} total {}",
            FIXTURE.len()
        );
        for au in &aus {
            assert_eq!(nal_type(split_nals(au).next().unwrap()), NAL_AUD);
            assert_eq!(split_nals(au).filter(|n| nal_type(n) == NAL_AUD).count(), 1);
        }
    }
}

#[test]
fn avc_decoder_configuration_record_layout() {
    let sps = [0x67, 0x42, 0xc0, 0x1e, 0xaa];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let rec = avc_decoder_config(&sps, &pps).unwrap();
    assert_eq!(
        rec,
        [
            1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 5, 0x67, 0x42, 0xc0, 0x1e, 0xaa, 1, 0, 4, 0x68,
            0xce, 0x3c, 0x80
        ]
    );
    // The server's parser agrees.
    let parsed = rts_rtmp::flv::AvcConfig::parse(&rec).unwrap();
    assert_eq!(
        (parsed.profile, parsed.level, parsed.nal_length_size),
        (66, 0x1e, 4)
    );
    assert_eq!(parsed.sps, vec![sps.to_vec()]);
    assert_eq!(parsed.pps, vec![pps.to_vec()]);
    assert!(avc_decoder_config(&[0x67, 1], &pps).is_err());
}

#[test]
fn converter_inserts_sei_before_slice_and_sends_header_once() {
    let mut s = AuSplitter::new();
    s.push(FIXTURE);
    let mut aus = Vec::new();
    while let Some(au) = s.next_au() {
        aus.push(au);
    }
    aus.extend(s.finish());
    let mut c = Converter::new();
    let mut headers = 0;
    for (i, au) in aus.iter().enumerate() {
        let tags = c.convert(au, 1_000 + i as u64).unwrap().unwrap();
        headers += usize::from(tags.sequence_header.is_some());
        assert_eq!(tags.keyframe, i % 3 == 0);
        assert_eq!(tags.frame[0], if tags.keyframe { 0x17 } else { 0x27 });
        assert_eq!(&tags.frame[1..5], &[1, 0, 0, 0]);
        let nals = rts_rtmp::flv::AvccNalus::new(&tags.frame[5..], 4)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let types: Vec<u8> = nals.iter().map(|n| nal_type(n)).collect();
        let first_slice = types.iter().position(|&t| t == 1 || t == NAL_IDR).unwrap();
        assert_eq!(
            parse_timestamp_sei(nals[first_slice - 1]),
            Some(1_000 + i as u64),
            "{types:?}"
        );
        assert_eq!(nals.len(), split_nals(au).count() + 1);
        assert!(
            types.contains(&NAL_SPS) == tags.keyframe && types.contains(&NAL_PPS) == tags.keyframe
        );
    }
    assert_eq!(
        headers, 1,
        "SPS/PPS repeat unchanged on the second IDR: no second header"
    );
    // No SPS/PPS seen yet: nothing a decoder could use.
    let mut fresh = Converter::new();
    assert_eq!(fresh.convert(&aus[1], 0).unwrap(), None);

    // One stamp every 2 access units: the 1st, 3rd, ... carry it.
    let mut sparse = Converter::with_sei_every(2);
    for (i, au) in aus.iter().enumerate() {
        let tags = sparse.convert(au, 7).unwrap().unwrap();
        let nals = rts_rtmp::flv::AvccNalus::new(&tags.frame[5..], 4)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let stamped = nals.iter().any(|n| parse_timestamp_sei(n) == Some(7));
        assert_eq!(stamped, i % 2 == 0, "access unit {i}");
        assert_eq!(nals.len(), split_nals(au).count() + usize::from(stamped));
    }
}

#[test]
fn urls() {
    let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/s?auth_key=abc").unwrap();
    assert_eq!(
        (
            u.host.as_str(),
            u.port,
            u.app.as_str(),
            u.stream_key.as_str()
        ),
        ("127.0.0.1", 1936, "live", "s?auth_key=abc")
    );
    assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
    let u = RtmpUrl::parse("rtmp://[::1]/a/b/c").unwrap();
    assert_eq!(
        (
            u.host.as_str(),
            u.port,
            u.app.as_str(),
            u.stream_key.as_str()
        ),
        ("::1", 1935, "a/b", "c")
    );
    for bad in [
        "http://x/a/b",
        "rtmp://x/a",
        "rtmp://x:y/a/b",
        "rtmp://x/a/",
        "rtmp://[::1/a/b",
    ] {
        assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
    }
}
