use rts_rtp::rtcp::*;
use rts_rtp::{unix_micros_to_ntp, Error};

#[test]
fn sender_report_round_trip() {
    let mut buf = [0u8; 128];
    let ntp = unix_micros_to_ntp(1_700_000_000_123_456);
    let n = write_sender_report(
        &mut buf,
        0xabcd_0001,
        ntp,
        90_000,
        1234,
        567_890,
        "rts-stream-1",
    )
    .unwrap();
    assert_eq!(n % 4, 0);
    let pkts = parse_compound(&buf[..n]).unwrap();
    assert_eq!(
        pkts,
        vec![
            RtcpPacket::SenderReport {
                ssrc: 0xabcd_0001,
                ntp,
                rtp_ts: 90_000,
                packet_count: 1234,
                octet_count: 567_890,
                reports: vec![]
            },
            RtcpPacket::Sdes
        ]
    );
}

#[test]
fn receiver_report_round_trip() {
    let blocks = [
        ReportBlock {
            ssrc: 1,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 77,
            lsr: 0x1234_5678,
            dlsr: 65536,
        },
        ReportBlock {
            ssrc: 2,
            cumulative_lost: 0x7f_ffff,
            ..Default::default()
        },
    ];
    let mut buf = [0u8; 128];
    let n = write_receiver_report(&mut buf, 9, &blocks).unwrap();
    assert_eq!(n, 8 + 48);
    let m = write_sdes_cname(&mut buf[n..], 9, "viewer").unwrap();
    let pkts = parse_compound(&buf[..n + m]).unwrap();
    assert_eq!(
        pkts,
        vec![
            RtcpPacket::ReceiverReport {
                ssrc: 9,
                reports: blocks.to_vec()
            },
            RtcpPacket::Sdes
        ]
    );
}

#[test]
fn feedback_round_trips() {
    let mut buf = [0u8; 256];
    let mut n = write_nack(&mut buf, 1, 2, &[100, 101, 105, 116, 117]).unwrap();
    n += write_pli(&mut buf[n..], 3, 4).unwrap();
    n += write_fir(&mut buf[n..], 5, 6, 7).unwrap();
    n += write_bye(&mut buf[n..], &[8, 9]).unwrap();
    let pkts = parse_compound(&buf[..n]).unwrap();
    assert_eq!(
        pkts,
        vec![
            RtcpPacket::Nack {
                sender_ssrc: 1,
                media_ssrc: 2,
                lost: vec![100, 101, 105, 116, 117]
            },
            RtcpPacket::Pli {
                sender_ssrc: 3,
                media_ssrc: 4
            },
            RtcpPacket::Fir {
                sender_ssrc: 5,
                media_ssrc: 6,
                seq_nr: 7
            },
            RtcpPacket::Bye { ssrcs: vec![8, 9] },
        ]
    );
}

#[test]
fn nack_wrap_round_trip() {
    let lost: Vec<u16> = (65530..=65535).chain(0..20).chain([1000]).collect();
    let mut buf = [0u8; 64];
    let n = write_nack(&mut buf, 1, 2, &lost).unwrap();
    assert_eq!(n, 12 + 4 * 3); // 65530..=0x0a, 11..=20 + ..., 1000
    match &parse_compound(&buf[..n]).unwrap()[0] {
        RtcpPacket::Nack { lost: parsed, .. } => assert_eq!(parsed, &lost),
        other => panic!("unexpected {other:?}"),
    }
}

/// Chrome's receiver-side compound: RR (one block) + REMB. The REMB is
/// real Chrome data (pion's test vector): 8927168 bps for SSRC 1215622422.
#[test]
fn chrome_rr_plus_remb() {
    let mut pkt = vec![0x81, 0xc9, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01];
    pkt.extend_from_slice(&[
        0x48, 0x74, 0xed, 0x16, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x1a, 0x2b,
    ]);
    pkt.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
    pkt.extend_from_slice(&[
        143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66, 1, 26, 32, 223, 72, 116, 237, 22,
    ]);
    let pkts = parse_compound(&pkt).unwrap();
    assert_eq!(pkts.len(), 2);
    match &pkts[0] {
        RtcpPacket::ReceiverReport { ssrc: 1, reports } => {
            assert_eq!(reports.len(), 1);
            assert_eq!(reports[0].ssrc, 1_215_622_422);
            assert_eq!(reports[0].cumulative_lost, 2);
            assert_eq!(reports[0].highest_seq, 0x1a2b);
            assert_eq!(reports[0].jitter, 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        pkts[1],
        RtcpPacket::Remb {
            sender_ssrc: 1,
            bitrate_bps: 8_927_168,
            ssrcs: vec![1_215_622_422]
        }
    );
}

/// Transport-wide CC feedback from a Wireshark capture (with RTCP padding).
#[test]
fn twcc_is_other() {
    let twcc = [
        0xaf, 0xcd, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0xdd, 0x58, 0x6e, 0xb6, 0x00, 0x01, 0x00,
        0x09, 0x5e, 0x91, 0x10, 0x00, 0x20, 0x09, 0x1c, 0x0c, 0x2c, 0x38, 0x00, 0x04, 0x00, 0x08,
        0x18, 0x01,
    ];
    assert_eq!(
        parse_compound(&twcc).unwrap(),
        vec![RtcpPacket::Other { pt: 205, fmt: 15 }]
    );
    let raw: Vec<_> = iter_compound(&twcc).collect::<Result<_, _>>().unwrap();
    assert_eq!(raw[0].body.len(), 27); // 28 minus one padding byte
}

#[test]
fn malformed_lengths_are_errors() {
    assert!(parse_compound(&[]).is_err());
    // Length says 8 words, only 2 present.
    assert!(matches!(
        parse_compound(&[0x80, 201, 0, 7, 0, 0, 0, 1]),
        Err(Error::TooShort { .. })
    ));
    // RR claiming one block with none present.
    assert!(matches!(
        parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
        Err(Error::TooShort { .. })
    ));
    // Version 1.
    assert_eq!(
        parse_compound(&[0x40, 201, 0, 0]),
        Err(Error::BadVersion(1))
    );
    // Padding count larger than the body.
    assert_eq!(
        parse_compound(&[0xa0, 201, 0, 1, 0, 0, 0, 9]),
        Err(Error::BadPadding)
    );
    // Trailing garbage after a valid packet.
    let mut buf = [0u8; 32];
    let n = write_pli(&mut buf, 1, 2).unwrap();
    assert!(parse_compound(&buf[..n + 2]).is_err());
}

#[test]
fn iterator_stops_after_error() {
    let mut buf = [0u8; 32];
    let n = write_pli(&mut buf, 1, 2).unwrap();
    buf[n] = 0x80;
    buf[n + 1] = 201;
    buf[n + 3] = 100;
    let mut it = iter_compound(&buf[..n + 8]);
    assert!(matches!(
        it.next(),
        Some(Ok(RawRtcp {
            pt: 206,
            count: 1,
            ..
        }))
    ));
    assert!(matches!(it.next(), Some(Err(_))));
    assert!(it.next().is_none());
}

/// `generic_nack` reads a NACK in place: hand-written FCI entries (PID 100
/// with BLP bits 0, 4 and 15; PID 65535 with bits 0 and 1, across the
/// wrap; an empty BLP) give the numbers they name, the same as the
/// allocating decoder; other packets and a NACK without its two SSRCs give
/// None.
#[test]
fn generic_nack_reads_in_place() {
    let nack: [u8; 24] = [
        0x81, 205, 0, 5, // RTPFB FMT 1, 6 words
        0, 0, 0, 1, // sender SSRC
        0xaa, 0xbb, 0xcc, 0xdd, // media SSRC
        0, 100, 0x80, 0x11, // PID 100: 101, 105, 116
        0xff, 0xff, 0, 0b11, // PID 65535: 0, 1
        0, 7, 0, 0, // PID 7 alone
    ];
    let raw = iter_compound(&nack).next().unwrap().unwrap();
    let (media, lost) = raw.generic_nack().expect("a generic NACK");
    assert_eq!(media, 0xaabb_ccdd);
    let lost: Vec<u16> = lost.collect();
    assert_eq!(lost, [100, 101, 105, 116, 65535, 0, 1, 7]);
    match parse_compound(&nack).unwrap().as_slice() {
        [RtcpPacket::Nack { lost: decoded, .. }] => assert_eq!(decoded, &lost),
        other => panic!("{other:?}"),
    }
    let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd];
    assert!(iter_compound(&pli).next().unwrap().unwrap().generic_nack().is_none());
    let short = [0x81, 205, 0, 1, 0, 0, 0, 1];
    assert!(iter_compound(&short).next().unwrap().unwrap().generic_nack().is_none());
}
