//! Garbage on every port (RTMP/TCP, media UDP, HTTP) gets a clean error or
//! a counted drop; the server keeps running and a viewer keeps playing.

mod common;
mod rig;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rig::{frames_decoded, Mode, Rig, HTTP};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn shard_counter(api: &serde_json::Value, name: &str) -> u64 {
    api["shards"].as_array().map(|a| a.iter().map(|s| s["counters"][name].as_u64().unwrap_or(0)).sum()).unwrap_or(0)
}

#[test]
fn garbage_everywhere_never_hurts_viewers() -> Result<()> {
    let mut rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/g")?;
    rig.wait_live("live", "g", Duration::from_secs(20))?;
    let mut viewer = rig.play("live", "g", "", 30)?;
    let before = frames_decoded(&mut viewer)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);

    // RTMP: random bytes, a valid C0 + garbage C1, a truncated handshake.
    for i in 0..20 {
        let mut s = TcpStream::connect("10.200.0.1:1935")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut junk = vec![0u8; rng.gen_range(1..20_000)];
        rng.fill(&mut junk[..]);
        if i % 3 == 0 {
            junk[0] = 3; // plausible C0, garbage after
        }
        let _ = s.write_all(&junk);
        if i % 3 != 2 {
            // The server must close the connection (read hits EOF or reset),
            // not hang on to it.
            let mut buf = [0u8; 65536];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    }

    // UDP media ports: random datagrams in every RFC 7983 range, plus
    // STUN-shaped messages with bad integrity and DTLS from unknown peers.
    let udp = UdpSocket::bind("10.200.0.1:0")?;
    for port in [8000u16, 8001] {
        for i in 0..2000 {
            let len = rng.gen_range(1..1500);
            let mut d = vec![0u8; len];
            rng.fill(&mut d[..]);
            d[0] = match i % 5 {
                0 => rng.gen_range(0..4),
                1 => rng.gen_range(20..64),
                2 => rng.gen_range(128..192),
                _ => d[0],
            };
            if i % 7 == 0 && len >= 20 {
                // STUN header with the magic cookie and a consistent length.
                d[0] = 0;
                d[1] = 1;
                let body = ((len - 20) & !3) as u16;
                d[2..4].copy_from_slice(&body.to_be_bytes());
                d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
                d.truncate(20 + body as usize);
            }
            let _ = udp.send_to(&d, ("10.200.0.1", port));
        }
    }

    // HTTP: raw garbage, a broken request line, an absurd header.
    for payload in [&b"\x00\x01\x02garbage\r\n\r\n"[..], b"GET / HTTP/9.9\r\n\r\n", b"POST /whep/a/b HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"] {
        let mut s = TcpStream::connect("10.200.0.1:8080")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(payload)?;
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        assert!(resp.is_empty() || text.starts_with("HTTP/1.1 4"), "garbage HTTP must get a 4xx or a close, got {text:?}");
    }

    // Everything is still up: the server process, the API, the viewer.
    assert!(rig.server().is_running(), "server crashed:\n{}", rig.logs());
    let target = before + 60;
    viewer.wait_for(&format!("(await window.rts.stats()).framesDecoded >= {target}"), Duration::from_secs(20))?;
    // Counted, not silently ignored (stats reach control once a second).
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let api = rig.api()?;
        let dropped = shard_counter(&api, "unknown_dropped") + shard_counter(&api, "stun_rejected");
        let rtmp_errors = shard_counter(&api, "rtmp_errors");
        if dropped >= 1000 && rtmp_errors >= 10 {
            println!("counted: {dropped} datagrams dropped, {rtmp_errors} RTMP protocol errors");
            break;
        }
        assert!(std::time::Instant::now() < end, "drops not counted: dropped={dropped} rtmp_errors={rtmp_errors}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ureq::get(&format!("{HTTP}/api/v1/streams")).call().is_ok());
    Ok(())
}
