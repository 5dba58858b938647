mod common;

use bytes::Bytes;
use common::Rng;
use rts_rtp::h264::*;
use rts_rtp::{Error, RtpHeader};

const SSRC: u32 = 0x1122_3344;

fn parse(p: &Bytes) -> (RtpHeader, &[u8]) {
    let h = RtpHeader::parse(p).unwrap();
    (h, h.payload(p))
}

fn nal(header: u8, len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut n = rng.bytes(len);
    n[0] = header;
    n
}

#[test]
fn fu_a_split_sizes_exact() {
    let mut rng = Rng::new(1);
    let idr = nal(0x65, 3000, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 10);
    let mut out = Vec::new();
    p.packetize(9000, &[&idr], None, &mut out).unwrap();
    // 2999 body bytes in chunks of 1200 - 12 - 2 = 1186: 1186 + 1186 + 627.
    let sizes: Vec<usize> = out.iter().map(Bytes::len).collect();
    assert_eq!(sizes, vec![1200, 1200, 12 + 2 + 627]);
    let mut body = Vec::new();
    for (i, pkt) in out.iter().enumerate() {
        let (h, payload) = parse(pkt);
        assert_eq!(
            (h.ssrc, h.payload_type, h.timestamp, h.sequence),
            (SSRC, 96, 9000, 10 + i as u16)
        );
        assert_eq!(h.marker, i == 2);
        assert_eq!(payload[0], 0x60 | 28, "FU indicator keeps F/NRI, type 28");
        let expected_fu_header = match i {
            0 => 0x80 | 5,
            1 => 5,
            _ => 0x40 | 5,
        };
        assert_eq!(payload[1], expected_fu_header);
        body.extend_from_slice(&payload[2..]);
    }
    assert_eq!(body, &idr[1..]);
    assert_eq!(p.packets_sent(), 3);
    assert_eq!(p.octets_sent(), (1188 + 1188 + 629) as u64);
    assert_eq!(p.next_sequence(), 13);
}

#[test]
fn exact_fit_is_a_single_nal_packet() {
    let mut rng = Rng::new(2);
    let fits = nal(0x41, 1188, &mut rng);
    let too_big = nal(0x41, 1189, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 0);
    let mut out = Vec::new();
    p.packetize(0, &[&fits], None, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][12..], &fits[..]);
    out.clear();
    p.packetize(0, &[&too_big], None, &mut out).unwrap();
    let sizes: Vec<usize> = out.iter().map(Bytes::len).collect();
    assert_eq!(sizes, vec![1200, 12 + 2 + 2]);
}

#[test]
fn stap_a_parameter_sets_before_idr() {
    let mut rng = Rng::new(3);
    let sps = vec![0x67, 0x42, 0xc0, 0x1f, 0xda];
    let pps = vec![0x68, 0xce, 0x3c, 0x80];
    let idr = nal(0x65, 2000, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 102, 1200, 0);
    let mut out = Vec::new();
    let ps = (std::slice::from_ref(&sps), std::slice::from_ref(&pps));
    p.packetize(3000, &[&[0x09, 0xf0], &idr], Some((ps.0, ps.1)), &mut out)
        .unwrap();
    assert_eq!(out.len(), 1 + 2);
    let (h, payload) = parse(&out[0]);
    assert!(!h.marker);
    let mut expected = vec![0x60 | 24, 0, 5];
    expected.extend_from_slice(&sps);
    expected.extend_from_slice(&[0, 4]);
    expected.extend_from_slice(&pps);
    assert_eq!(payload, &expected[..]);
    assert_eq!(parse(&out[1]).1[1], 0x80 | 5);
    assert!(parse(&out[2]).0.marker);

    // A frame that carries its own SPS/PPS gets no second copy.
    out.clear();
    p.packetize(6000, &[&sps, &pps, &idr], Some((ps.0, ps.1)), &mut out)
        .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(parse(&out[0]).1, &expected[..]);

    // Nor does a non-IDR frame.
    out.clear();
    p.packetize(9000, &[&[0x41, 1, 2]], Some((ps.0, ps.1)), &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&out[0]).1, &[0x41, 1, 2]);
}

#[test]
fn small_nals_aggregate_with_max_nri() {
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 0);
    let mut out = Vec::new();
    let sei = [0x06, 5, 1, 0xff];
    let slice = [0x41, 0x9a, 0x02];
    p.packetize(0, &[&sei, &slice], None, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    let (h, payload) = parse(&out[0]);
    assert!(h.marker);
    assert_eq!(
        payload,
        &[0x40 | 24, 0, 4, 0x06, 5, 1, 0xff, 0, 3, 0x41, 0x9a, 0x02]
    );
}

#[test]
fn marker_only_on_last_packet_and_aud_filler_dropped() {
    let mut rng = Rng::new(4);
    let a = nal(0x41, 900, &mut rng);
    let b = nal(0x41, 900, &mut rng);
    let c = nal(0x41, 5000, &mut rng);
    let filler = [0x0c, 0xff, 0xff];
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 0);
    let mut out = Vec::new();
    p.packetize(
        1,
        &[&[0x09, 0x10], &a, &filler, &b, &c, &filler],
        None,
        &mut out,
    )
    .unwrap();
    let markers: Vec<bool> = out.iter().map(|p| parse(p).0.marker).collect();
    assert_eq!(markers.iter().filter(|m| **m).count(), 1);
    assert!(markers.last().unwrap());
    assert!(out.iter().all(|p| p.len() <= 1200));
    // a and b do not fit together: two single NAL packets, then 5 FU-As.
    assert_eq!(parse(&out[0]).1, &a[..]);
    assert_eq!(parse(&out[1]).1, &b[..]);
    assert_eq!(out.len(), 2 + 4999usize.div_ceil(1186));

    // Nothing to send: no packets, no sequence consumed.
    out.clear();
    p.packetize(2, &[&[0x09, 0x10], &[]], None, &mut out)
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(p.next_sequence(), 7);
}

#[test]
fn sequence_wraps() {
    let mut rng = Rng::new(5);
    let big = nal(0x41, 4000, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 65534);
    let mut out = Vec::new();
    p.packetize(0, &[&big], None, &mut out).unwrap();
    let seqs: Vec<u16> = out.iter().map(|p| parse(p).0.sequence).collect();
    assert_eq!(seqs, vec![65534, 65535, 0, 1]);
    assert_eq!(p.next_sequence(), 2);
    p.set_next_sequence(500);
    out.clear();
    p.packetize(0, &[&[0x41, 0]], None, &mut out).unwrap();
    assert_eq!(parse(&out[0]).0.sequence, 500);
}

#[test]
fn tiny_max_packet_size_is_an_error() {
    let mut p = H264Packetizer::new(SSRC, 96, 14, 0);
    assert_eq!(
        p.packetize(0, &[&[0x41, 0]], None, &mut Vec::new()),
        Err(Error::MaxPacketSizeTooSmall(14))
    );
    let mut p = H264Packetizer::new(SSRC, 96, 15, 0);
    let mut out = Vec::new();
    p.packetize(0, &[&[0x41, 1, 2, 3]], None, &mut out).unwrap();
    assert_eq!(out.len(), 3); // one body byte per FU-A
}

/// Splits `total` bytes into 1..=4 NAL units with valid headers.
fn random_frame(rng: &mut Rng, total: usize) -> Vec<Vec<u8>> {
    let k = rng.range(1, 5).min(total);
    let mut sizes = vec![1usize; k];
    for _ in k..total.min(k + 64) {
        let i = rng.range(0, k);
        sizes[i] += 1;
    }
    let rest = total - sizes.iter().sum::<usize>();
    sizes[0] += rest;
    let types = [1u8, 5, 6];
    sizes
        .into_iter()
        .map(|len| {
            let header = (rng.next_u64() as u8 & 0x60) | types[rng.range(0, types.len())];
            nal(header, len, rng)
        })
        .collect()
}

#[test]
fn round_trip_random_frames() {
    let mut rng = Rng::new(0x5eed);
    let mut depack = H264Depacketizer::new();
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 65000);
    let mut out = Vec::new();
    for i in 0..120u32 {
        let max = if i % 3 == 0 {
            rng.range(15, 1500)
        } else {
            1200
        };
        let seq = p.next_sequence();
        p = H264Packetizer::new(SSRC, 96, max, seq);
        let total = if i < 10 {
            i as usize + 1
        } else {
            rng.range(1, 200_000)
        };
        let frame = random_frame(&mut rng, total);
        let refs: Vec<&[u8]> = frame.iter().map(Vec::as_slice).collect();
        out.clear();
        let ts = i.wrapping_mul(3000);
        p.packetize(ts, &refs, None, &mut out).unwrap();
        let mut got = None;
        for (j, pkt) in out.iter().enumerate() {
            assert!(pkt.len() <= max);
            let (h, payload) = parse(pkt);
            assert_eq!(h.marker, j + 1 == out.len());
            if let Some(f) = depack.push(&h, payload) {
                assert!(got.is_none());
                got = Some(f);
            }
        }
        let f = got.expect("frame emitted on marker");
        assert!(f.complete, "frame {i}");
        assert_eq!(f.timestamp, ts);
        assert_eq!(f.keyframe, is_keyframe(&refs));
        assert_eq!(f.nalus, frame, "frame {i}");
    }
}

#[test]
fn missing_fu_a_fragment_is_incomplete() {
    let mut rng = Rng::new(6);
    let big = nal(0x65, 6000, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 0);
    let mut out = Vec::new();
    p.packetize(100, &[&big], None, &mut out).unwrap();
    p.packetize(200, &[&[0x41, 7]], None, &mut out).unwrap();
    let mut d = H264Depacketizer::new();
    let mut frames = Vec::new();
    for (i, pkt) in out.iter().enumerate() {
        if i == 2 {
            continue; // lose a middle fragment
        }
        let (h, payload) = parse(pkt);
        frames.extend(d.push(&h, payload));
    }
    assert_eq!(frames.len(), 2);
    assert!(!frames[0].complete);
    assert_eq!(frames[0].timestamp, 100);
    assert!(frames[1].complete);
    assert_eq!(frames[1].nalus, vec![vec![0x41, 7]]);
}

#[test]
fn lost_first_fragment_and_lost_marker() {
    let mut rng = Rng::new(7);
    let big = nal(0x41, 3000, &mut rng);
    let mut p = H264Packetizer::new(SSRC, 96, 1200, 0);
    let mut out = Vec::new();
    p.packetize(1, &[&big], None, &mut out).unwrap(); // packets 0..3
    p.packetize(2, &[&big], None, &mut out).unwrap(); // 3..6
    p.packetize(3, &[&[0x41, 1]], None, &mut out).unwrap(); // 6
    let mut d = H264Depacketizer::new();
    let feed = |d: &mut H264Depacketizer, i: usize| {
        let (h, payload) = parse(&out[i]);
        d.push(&h, payload)
    };
    // Frame 1 loses its first packet (stream joined mid-frame).
    assert!(feed(&mut d, 1).is_none());
    let f1 = feed(&mut d, 2).unwrap();
    assert!(!f1.complete && f1.nalus.is_empty());
    // Frame 2 loses its marker packet; the next timestamp closes it.
    assert!(feed(&mut d, 3).is_none());
    assert!(feed(&mut d, 4).is_none());
    let f2 = feed(&mut d, 6).unwrap();
    assert_eq!((f2.timestamp, f2.complete), (2, false));
    // Frame 3 arrived right after a gap: reported, but not complete.
    let f3 = d.poll_frame().unwrap();
    assert_eq!((f3.timestamp, f3.complete), (3, false));
    assert!(d.poll_frame().is_none());
    // Duplicates are ignored.
    assert!(feed(&mut d, 6).is_none());
}
