//! Streaming domains end to end (issue 19, point 2): two domains on one
//! server, each with its keys, both publishing `live/s`; Chromium reaches
//! them by name (its resolver maps *.example.com to the server) and plays
//! two different streams; one domain's token is refused on the other.

mod common;
mod rig;

use anyhow::Result;
use common::{PublishOpts, Publisher};
use rig::{Mode, Rig, RTMP};
use std::time::Duration;

const DOMAINS: &str = "[auth]\nvalidity_s = 600\n\
    [[domain]]\nname = \"a.example.com\"\ningest_key = \"ia\"\nplay_key = \"pa\"\n\
    [[domain]]\nname = \"b.example.com\"\naliases = [\"b2.example.com\"]\ningest_key = \"ib\"\nplay_key = \"pb\"\n";

fn token(key: &str) -> String {
    rts_common::auth::sign_path("/live/s", key, rts_common::config::unix_now(), "r", "0")
}

fn publish(domain: &str, key: &str, size: &str) -> Result<Publisher> {
    let opts = PublishOpts { audio: false, size: size.into(), extra_args: vec!["-rtmp_tcurl".into(), format!("rtmp://{domain}/live")], ..Default::default() };
    Publisher::start(&format!("{RTMP}/live/s?auth_key={}", token(key)), &opts)
}

#[test]
fn two_domains_play_two_streams_of_the_same_name() -> Result<()> {
    let rig = Rig::start(Mode::Serve, DOMAINS)?;
    let _a = publish("a.example.com", "ia", "640x360")?;
    let _b = publish("b.example.com", "ib", "320x240")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let api = rig.api()?;
        let live: Vec<String> = api["streams"].as_array().into_iter().flatten().filter(|s| s["publishing"] == true).map(|s| format!("{}/{}/{}", s["domain"].as_str().unwrap_or(""), s["app"].as_str().unwrap_or(""), s["stream"].as_str().unwrap_or(""))).collect();
        if live.contains(&"a.example.com/live/s".to_string()) && live.contains(&"b.example.com/live/s".to_string()) {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "both streams live: {live:?}\n{}", rig.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let resolver = "--host-resolver-rules=MAP *.example.com 10.200.0.1";
    for (host, key, width) in [("a.example.com", "pa", 640), ("b2.example.com", "pb", 320)] {
        let mut c = common::Chromium::launch_with(&[resolver])?;
        c.navigate(&format!("http://{host}:8080/play/live/s?auth_key={}", token(key)))?;
        let pred = format!("window.rts && (await window.rts.stats()).frameWidth === {width}");
        if let Err(e) = c.wait_for(&pred, Duration::from_secs(30)) {
            let state = c.eval("(async () => JSON.stringify(await window.rts.stats()))()");
            anyhow::bail!("{host}: {e:#}; {state:?}; console {:?}\n{}", c.console(), rig.logs());
        }
    }
    // A's token on B: refused (the page shows the 403).
    let mut c = common::Chromium::launch_with(&[resolver])?;
    c.navigate(&format!("http://b.example.com:8080/play/live/s?auth_key={}", token("pa")))?;
    c.wait_for("window.rts && window.rts.state === 'error'", Duration::from_secs(20))?;
    let error = c.eval("String(window.rts.error)")?;
    assert!(error.as_str().unwrap_or("").contains("403"), "{error}");
    Ok(())
}
