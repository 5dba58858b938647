//! The histograms a shard reports for `/metrics`: first video frame per
//! viewer protocol (from the moment its media can flow) and server-added
//! latency, with bucket counts worked out by hand from the simulated clock.

use super::*;

#[test]
fn first_frames_are_timed_per_protocol_from_when_media_can_flow() {
    let mut rig = Rig::new("");
    let t0 = rig.now;
    // A WebRTC viewer whose keys are installed before anyone publishes.
    let a = Viewer::new(1);
    rig.control(a.add_msg("live", "s", None));
    a.check(&mut rig);
    rig.control(a.start_msg());

    // 300 ms later the publisher connects (no media yet); an HTTP-FLV
    // viewer and an RTMP player are accepted and wait for a keyframe.
    rig.at(t0 + ms(300));
    let mut p = Publisher::connect(&mut rig, 1, "live", "s");
    assert!(p.accepted());
    rig.core.handle_http_open(rig.now, 100, Some("10.200.0.2:50000".parse().unwrap()));
    rig.core.handle_tcp_data(rig.now, 100, b"GET /live/s.flv HTTP/1.1\r\nHost: 10.200.0.1\r\n\r\n");
    rig.drain();
    let mut player = Player::connect(&mut rig, 200, "live", "s");

    // The first keyframe at 420 ms: the WebRTC viewer waited 420 ms, the
    // FLV viewer and the player 120 ms.
    rig.at(t0 + ms(420));
    p.gop(&mut rig, 0, 1);
    player.read(&mut rig);
    assert!(player.media().iter().any(|(video, _, _)| *video), "the player got video");
    // A second WebRTC viewer starts from the GOP cache at once: 0 ms.
    let _b = Viewer::join(&mut rig, 2, "live", "s");

    let s = stream_stats(&mut rig, "s");
    let [webrtc, flv, rtmp] = s.first_frame_hist;
    // Buckets (ms): 5, 10, 25, 50, 100, 150, 250, 500, 1000, 2500, 5000, +Inf.
    assert_eq!(webrtc.counts, [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], "420 ms -> le 0.5 s; 0 ms -> le 5 ms");
    assert_eq!(webrtc.sum_us, 420_000);
    assert_eq!(flv.counts, [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], "120 ms -> le 0.15 s");
    assert_eq!(flv.sum_us, 120_000);
    assert_eq!(rtmp.counts, flv.counts);
    assert_eq!(rtmp.sum_us, 120_000);

    // Later frames, and a viewer that already had one, add nothing.
    p.video(&mut rig, 66, frame(false, 2_500, 3));
    let later = stream_stats(&mut rig, "s");
    assert_eq!(later.first_frame_hist, s.first_frame_hist);
}

#[test]
fn server_latency_counts_every_delivered_frame_and_never_goes_back() {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 0);
    let _v = Viewer::join(&mut rig, 1, "live", "s");
    // Three frames fanned out to the viewer; the rig parks right after each
    // input, so each frame's latency is 0 µs (le 100 µs).
    for i in 1..=3 {
        p.video(&mut rig, 33 * i, frame(false, 2_500, 2));
    }
    let s = stream_stats(&mut rig, "s");
    assert_eq!(s.latency_hist.counts, [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(s.latency_hist.sum_us, 0);
    assert_eq!(s.latency_samples, 3, "the same samples as the percentiles");

    // One more frame whose fan-out ends 2 ms after it came in.
    rig.core.handle_rtmp_data(rig.now, p.conn, &p.encode_video(132, frame(false, 2_500, 2)));
    while rig.core.poll_transmit().is_some() {}
    rig.now += ms(2);
    rig.core.handle_parked(rig.now);
    let s = stream_stats(&mut rig, "s");
    assert_eq!(s.latency_hist.counts, [3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], "2 ms -> le 2.5 ms");
    assert_eq!(s.latency_hist.sum_us, 2_000);
    assert_eq!(s.latency_hist.count(), s.latency_samples);
}
