//! Random and truncated input must never panic (10,000 iterations each,
//! deterministic PRNG so failures reproduce).

mod common;

use common::Rng;
use rts_rtp::h264::{avcc_nalus, H264Depacketizer, H264Packetizer};
use rts_rtp::rtcp::{self, iter_compound, parse_compound};
use rts_rtp::RtpHeader;

const ITERATIONS: usize = 10_000;

/// Valid packets to mutate, so the fuzzing reaches past the first checks.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut buf = [0u8; 256];
    let mut n = rtcp::write_sender_report(&mut buf, 1, 2, 3, 4, 5, "cname").unwrap();
    n += rtcp::write_nack(&mut buf[n..], 1, 2, &[1, 2, 40]).unwrap();
    n += rtcp::write_fir(&mut buf[n..], 1, 2, 3).unwrap();
    seeds.push(buf[..n].to_vec());
    seeds.push(vec![
        143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66, 1, 26, 32, 223, 72, 116, 237, 22,
    ]);
    let mut p = H264Packetizer::new(9, 96, 100, 0);
    let mut out = Vec::new();
    let big = vec![0x65; 300];
    p.packetize(0, &[&[0x67, 1], &[0x68, 2], &big], None, &mut out)
        .unwrap();
    seeds.extend(out.iter().map(|b| b.to_vec()));
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.range(0, 4) {
        0 => {
            let len = rng.range(0, 300);
            rng.bytes(len)
        }
        1 => {
            let s = &seeds[rng.range(0, seeds.len())];
            s[..rng.range(0, s.len() + 1)].to_vec()
        }
        _ => {
            let mut s = seeds[rng.range(0, seeds.len())].clone();
            for _ in 0..rng.range(1, 4) {
                let i = rng.range(0, s.len());
                s[i] = rng.next_u64() as u8;
            }
            s
        }
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng::new(0xdead_beef);
    let seeds = seeds();
    let mut depack = H264Depacketizer::new();
    for _ in 0..ITERATIONS {
        let data = mutate(&mut rng, &seeds);
        let _ = parse_compound(&data);
        for raw in iter_compound(&data).flatten() {
            let _ = raw.decode_into(&mut Vec::new());
        }
        for nalu in avcc_nalus(&data, rng.range(0, 6)) {
            if nalu.is_err() {
                break;
            }
        }
        if let Ok(h) = RtpHeader::parse(&data) {
            assert!(h.payload_offset <= h.payload_end && h.payload_end <= data.len());
            let _ = depack.push(&h, h.payload(&data));
            while depack.poll_frame().is_some() {}
        }
        // Headers with arbitrary fields and arbitrary payloads.
        let h = RtpHeader {
            marker: rng.next_u64() & 1 == 1,
            sequence: rng.next_u64() as u16 & 0x7,
            timestamp: rng.next_u64() as u32 & 0x3,
            ..Default::default()
        };
        let _ = depack.push(&h, &data);
    }
}

#[test]
fn packetizer_never_panics_on_odd_nalus() {
    let mut rng = Rng::new(42);
    for _ in 0..ITERATIONS / 10 {
        let max = rng.range(0, 80);
        let mut p = H264Packetizer::new(1, 96, max, rng.next_u64() as u16);
        let nalus: Vec<Vec<u8>> = (0..rng.range(0, 6))
            .map(|_| {
                let len = rng.range(0, 200);
                rng.bytes(len)
            })
            .collect();
        let refs: Vec<&[u8]> = nalus.iter().map(Vec::as_slice).collect();
        let ps = (nalus.clone(), nalus.clone());
        let mut out = Vec::new();
        if p.packetize(0, &refs, Some((&ps.0, &ps.1)), &mut out)
            .is_ok()
        {
            assert!(out.iter().all(|pkt| pkt.len() <= max));
        }
    }
}
