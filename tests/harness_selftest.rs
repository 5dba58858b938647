//! Proves each piece of the integration-test harness on its own, before the server exists:
//! namespaces, process supervision, headless Chromium (navigation + WebRTC inside a
//! namespace), the ffmpeg publisher, and the web player page's signaling requests.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::run_ip;
use common::*;
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from((SERVER_IP, port))
}

/// `accept` with a deadline: the accept runs on a helper thread; on timeout we connect to
/// the listener ourselves so that thread ends.
fn accept_within(listener: &TcpListener, timeout: Duration) -> Result<TcpStream> {
    let addr = listener.local_addr()?;
    let listener = listener.try_clone()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(s, _)| s));
    });
    match rx.recv_timeout(timeout) {
        Ok(conn) => Ok(conn?),
        Err(_) => {
            let _ = TcpStream::connect_timeout(&addr, SECOND);
            anyhow::bail!("no connection on {addr} within {timeout:?}")
        }
    }
}

#[test]
fn netns_children_inherit_the_threads_namespace_and_drop_restores_it() -> Result<()> {
    let ns = enter_fresh_netns()?;
    let addrs = run_ip(&["-o", "-4", "addr"])?;
    assert!(
        addrs.contains("rtsv0") && addrs.contains("inet 10.200.0.1/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains("rtsv1") && addrs.contains("inet 10.200.0.2/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains("lo") && addrs.contains("127.0.0.1/8"),
        "{addrs}"
    );
    let routes = run_ip(&["route"])?;
    assert!(routes.contains("default via 10.200.0.2"), "{routes}");
    // Sockets opened by this thread are in the namespace too: 10.200.0.1 is bindable.
    let listener = TcpListener::bind(server_addr(0))?;
    TcpStream::connect(listener.local_addr()?)?;
    drop(listener);
    drop(ns);
    assert!(
        run_ip(&["link", "show", "rtsv0"]).is_err(),
        "rtsv0 visible after leaving the namespace"
    );
    Ok(())
}

#[test]
fn netns_isolates_listeners_between_test_threads() -> Result<()> {
    let (port_tx, port_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let owner = std::thread::spawn(move || -> Result<bool> {
        let _ns = enter_fresh_netns()?;
        let listener = TcpListener::bind(server_addr(0))?;
        let addr = listener.local_addr()?;
        // A thread spawned from inside the namespace shares it.
        let inherited = std::thread::spawn(move || TcpStream::connect(addr).is_ok())
            .join()
            .unwrap_or(false);
        port_tx.send(addr.port())?;
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
        Ok(inherited)
    });
    let port = port_rx.recv_timeout(Duration::from_secs(10))?;
    let _ns = enter_fresh_netns()?;
    let err = TcpStream::connect_timeout(&server_addr(port), SECOND)
        .expect_err("saw another test's listener");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    done_tx.send(())?;
    let inherited = owner
        .join()
        .map_err(|_| anyhow::anyhow!("owner thread panicked"))??;
    assert!(inherited, "child thread did not inherit the namespace");
    Ok(())
}

#[test]
fn server_process_waits_on_log_lines_and_fails_fast_on_exit() -> Result<()> {
    let mut server = ServerProcess::start_program(
        "sh",
        &[
            "-c",
            "echo booting; echo \"listening $RTS_X\" >&2; exec sleep 60",
        ],
        &[("RTS_X", "42")],
    )?;
    assert_eq!(
        server.wait_for_log("listening", 10 * SECOND)?,
        "listening 42"
    );
    // stdout and stderr are read by separate threads: "booting" may be
    // recorded after "listening". Wait for it too, so nothing of the
    // child's output is still on its way when `from` is taken.
    server.wait_for_log("booting", 10 * SECOND)?;
    let from = server.logs().len();
    assert!(server
        .wait_for_log_since(from, "booting", Duration::from_millis(200))
        .is_err());
    assert!(server.is_running());
    server.kill();
    assert!(!server.is_running());

    // A server that dies is reported at once, not after the whole timeout.
    let quitter = ServerProcess::start_program("sh", &["-c", "echo bye; exit 3"], &[])?;
    let started = Instant::now();
    let err = quitter
        .wait_for_log("never printed", Duration::from_secs(30))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(format!("{err:#}").contains("bye"), "{err:#}");
    Ok(())
}

#[test]
fn wait_for_tcp_sees_listeners_and_reports_dead_servers() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let listener = TcpListener::bind(server_addr(0))?;
    wait_for_tcp(listener.local_addr()?, 5 * SECOND)?;
    let closed = listener.local_addr()?;
    drop(listener);
    assert!(wait_for_tcp(closed, Duration::from_millis(300)).is_err());

    let mut dead = ServerProcess::start_program("true", &[], &[])?;
    dead.logs().wait_closed(10 * SECOND);
    let err = dead
        .wait_for_tcp(closed, Duration::from_millis(300))
        .unwrap_err();
    assert!(format!("{err:#}").contains("exited"), "{err:#}");
    Ok(())
}

#[test]
fn dropping_a_child_kills_its_whole_process_group() -> Result<()> {
    let guard = ChildGuard::run("sh", &["-c", "sleep 60 & echo $!; wait"])?;
    let (_, line) = guard.logs().wait_for_line(0, "", 10 * SECOND)?;
    let grandchild: u32 = line.trim().parse()?;
    drop(guard);
    // SIGKILL is asynchronous for processes we cannot wait on; give it a bounded moment.
    let deadline = Instant::now() + 5 * SECOND;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("gone");
        if matches!(state, "gone" | "Z" | "X") {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "grandchild {grandchild} survived: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn publisher_sends_rtmp_c0_and_exits_nonzero_when_refused() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let listener = TcpListener::bind(server_addr(0))?;
    let url = format!("rtmp://{}/live/selftest", listener.local_addr()?);
    let mut publisher = Publisher::start(&url, &PublishOpts::default())?;
    let mut conn = accept_within(&listener, 20 * SECOND)?;
    conn.set_read_timeout(Some(10 * SECOND))?;
    let mut c0c1 = [0u8; 1 + 1536];
    conn.read_exact(&mut c0c1)?;
    assert_eq!(c0c1[0], 0x03, "C0 must carry RTMP version 3");
    assert!(publisher.is_running());
    drop(conn); // the "server" refuses the publish
    let status = publisher.wait_exit(20 * SECOND)?;
    assert!(!status.success(), "ffmpeg exited with {status}");
    assert!(
        !publisher.stderr().is_empty(),
        "ffmpeg said nothing about the failure"
    );
    Ok(())
}

#[test]
fn publish_opts_build_the_documented_command_line() {
    let args = PublishOpts {
        audio: false,
        profile: "high".into(),
        bframes: Some(2),
        ..Default::default()
    }
    .ffmpeg_args("rtmp://h/app/s");
    let line = args.join(" ");
    assert!(line.contains("-i testsrc2=size=640x360:rate=30"), "{line}");
    assert!(!line.contains("sine="), "{line}");
    assert!(
        line.contains("-profile:v high") && line.contains("-bf 2") && line.contains("-g 60"),
        "{line}"
    );
    assert!(line.ends_with("-f flv rtmp://h/app/s"), "{line}");
    let with_audio = PublishOpts::default().ffmpeg_args("u").join(" ");
    assert!(
        with_audio.contains("sine=frequency=440:sample_rate=48000")
            && with_audio.contains("-c:a aac"),
        "{with_audio}"
    );
}

#[test]
fn chromium_evaluates_and_navigates_inside_the_namespace() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let http = TestHttpServer::start(server_addr(0), |req| match req.path() {
        "/" => HttpResponse::html(
            "<!doctype html><title>fixture</title><script>window.marker = 40 + 2</script>",
        ),
        _ => HttpResponse::not_found(),
    })?;
    let mut browser = Chromium::launch()?;
    assert_eq!(browser.eval("1+1")?, Value::from(2));
    assert_eq!(
        browser.eval("Promise.resolve('async ok')")?,
        Value::from("async ok")
    );
    let err = browser
        .eval("(() => { throw new Error('boom') })()")
        .unwrap_err();
    assert!(format!("{err:#}").contains("boom"), "{err:#}");

    browser.navigate(&http.url("/"))?;
    assert_eq!(browser.eval("window.marker")?, Value::from(42));
    assert_eq!(
        browser.eval("location.host")?,
        Value::from(http.addr().to_string())
    );
    assert!(http
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.target == "/"));

    let started = Instant::now();
    let err = browser
        .wait_for("window.later", Duration::from_millis(300))
        .unwrap_err();
    assert!(format!("{err:#}").contains("timeout"), "{err:#}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    browser.eval("setTimeout(() => { window.later = 'set' }, 300)")?;
    assert_eq!(
        browser.wait_for("window.later", 10 * SECOND)?,
        Value::from("set")
    );
    Ok(())
}

/// Two peer connections in one page exchange a data-channel message. Chromium skips
/// loopback when gathering, so a connected pair means the veth addresses carried it
/// (getStats redacts candidate addresses without a media permission, so count instead).
const LOOPBACK_PAGE: &str = r#"<!doctype html><script>
window.run = async () => {
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const received = new Promise((resolve) => {
    b.ondatachannel = (e) => { e.channel.onmessage = (m) => resolve(m.data); };
  });
  const ch = a.createDataChannel('selftest');
  ch.onopen = () => ch.send('hello');
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const message = await received;
  const out = { message, hostCandidates: 0, dtlsState: null };
  (await a.getStats()).forEach((s) => {
    if (s.type === 'local-candidate' && s.candidateType === 'host') out.hostCandidates++;
    if (s.type === 'transport') out.dtlsState = s.dtlsState;
  });
  return out;
};
</script>"#;

#[test]
fn chromium_runs_webrtc_inside_the_namespace() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let http = TestHttpServer::start(server_addr(0), |_| HttpResponse::html(LOOPBACK_PAGE))?;
    let mut browser = Chromium::launch()?;
    browser.navigate(&http.url("/loopback"))?;
    let result = browser
        .eval("window.run()")
        .map_err(|e| e.context(browser.console().join("\n")))?;
    assert_eq!(result["message"], "hello", "{result}");
    assert_eq!(result["dtlsState"], "connected", "{result}");
    assert!(result["hostCandidates"].as_u64() >= Some(1), "{result}");
    Ok(())
}

/// Serves the real player page at `/play/live/cam1`; every signaling POST is refused.
fn player_fixture_server() -> Result<TestHttpServer> {
    let page = common::player_page()?;
    TestHttpServer::start(server_addr(0), move |req| {
        match (req.method.as_str(), req.path()) {
            ("GET", "/play/live/cam1") => HttpResponse::html(page.clone()),
            ("POST", _) => HttpResponse::new(403, "text/plain", "denied by fixture"),
            _ => HttpResponse::not_found(),
        }
    })
}

fn last_post(http: &TestHttpServer) -> HttpRequest {
    http.requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST")
        .expect("the player sent no POST")
}

fn assert_recvonly_offer(sdp: &str) {
    assert!(sdp.starts_with("v=0"), "{sdp}");
    assert!(sdp.contains("m=video") && sdp.contains("m=audio"), "{sdp}");
    assert_eq!(sdp.matches("a=recvonly").count(), 2, "{sdp}");
    // Gathering completed before signaling: the browser's candidates are in the offer.
    assert!(sdp.contains("a=candidate:"), "{sdp}");
}

#[test]
fn player_page_sends_whep_rts_and_srs_signaling_requests() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let http = player_fixture_server()?;
    let host = http.addr().to_string();
    let mut browser = Chromium::launch()?;
    for signaling in ["whep", "rts", "srs"] {
        browser.navigate(&http.url(&format!(
            "/play/live/cam1?signaling={signaling}&auth_key=k1"
        )))?;
        let error = browser.wait_for(
            "window.rts.state === 'error' && window.rts.error",
            15 * SECOND,
        )?;
        assert!(
            error.as_str().unwrap_or("").contains("403"),
            "{signaling}: {error}"
        );
        let post = last_post(&http);
        match signaling {
            "whep" => {
                assert_eq!(post.target, "/whep/live/cam1?auth_key=k1");
                assert_eq!(post.header("content-type"), Some("application/sdp"));
                assert_recvonly_offer(&post.body_text());
            }
            "rts" => {
                assert_eq!(post.target, "/live/cam1?auth_key=k1");
                let body: Value = serde_json::from_slice(&post.body)?;
                assert_eq!(body["version"], "2");
                assert_eq!(body["sdk_version"], "rts-player");
                assert_eq!(
                    body["streamurl"],
                    format!("artc://{host}/live/cam1?auth_key=k1")
                );
                assert_eq!(body["jsep"]["type"], "offer");
                assert_recvonly_offer(body["jsep"]["sdp"].as_str().unwrap_or(""));
            }
            _ => {
                assert_eq!(post.target, "/rtc/v1/play/");
                let body: Value = serde_json::from_slice(&post.body)?;
                assert_eq!(body["api"], format!("http://{host}/rtc/v1/play/"));
                assert_eq!(
                    body["streamurl"],
                    format!("webrtc://{host}/live/cam1?auth_key=k1")
                );
                assert_recvonly_offer(body["sdp"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// A stand-in for the server: a second browser answers the player's offer with a canvas
/// video track and an oscillator audio track. Its candidates are plain IPs (no mDNS), as
/// the server's ICE-lite candidate will be.
const ANSWERER_PAGE: &str = r#"<!doctype html><canvas id=c width=320 height=240></canvas><script>
window.answer = async (offer) => {
  const canvas = document.getElementById('c'), ctx = canvas.getContext('2d');
  let n = 0;
  setInterval(() => { ctx.fillStyle = `hsl(${(n++ * 9) % 360},80%,50%)`; ctx.fillRect(0, 0, 320, 240); }, 33);
  const video = canvas.captureStream(30).getVideoTracks()[0];
  const ac = new AudioContext(), osc = ac.createOscillator(), dest = ac.createMediaStreamDestination();
  osc.connect(dest); osc.start();
  const pc = new RTCPeerConnection();
  window.pc = pc;
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  pc.addTrack(video);
  pc.addTrack(dest.stream.getAudioTracks()[0]);
  await pc.setLocalDescription(await pc.createAnswer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
  }
  return pc.localDescription.sdp;
};
</script>"#;

#[test]
fn player_page_plays_video_and_audio_over_whep() -> Result<()> {
    let _ns = enter_fresh_netns()?;
    let page = common::player_page()?;
    let (offer_tx, offer_rx) = mpsc::channel::<String>();
    let (answer_tx, answer_rx) = mpsc::channel::<String>();
    let answer_rx = std::sync::Mutex::new(answer_rx);
    let http = TestHttpServer::start(server_addr(0), move |req| {
        match (req.method.as_str(), req.path()) {
            ("GET", "/play/live/cam1") => HttpResponse::html(page.clone()),
            ("GET", "/answerer") => HttpResponse::html(ANSWERER_PAGE),
            ("POST", "/whep/live/cam1") => {
                let _ = offer_tx.send(req.body_text());
                match answer_rx
                    .lock()
                    .map(|rx| rx.recv_timeout(Duration::from_secs(30)))
                {
                    Ok(Ok(answer)) => HttpResponse::new(201, "application/sdp", answer)
                        .with_header("Location", "/whep/live/cam1/session-1"),
                    _ => HttpResponse::new(500, "text/plain", "no answer"),
                }
            }
            ("DELETE", "/whep/live/cam1/session-1") => HttpResponse::new(200, "text/plain", ""),
            _ => HttpResponse::not_found(),
        }
    })?;
    let mut sender = Chromium::launch_with(&["--disable-features=WebRtcHideLocalIpsWithMdns"])?;
    sender.navigate(&http.url("/answerer"))?;
    let mut player = Chromium::launch()?;
    player.navigate(&http.url("/play/live/cam1?auth_key=k1"))?;

    let offer = offer_rx.recv_timeout(Duration::from_secs(20))?;
    assert_recvonly_offer(&offer);
    let answer = sender.eval(&format!("window.answer({})", Value::from(offer)))?;
    answer_tx.send(answer.as_str().unwrap_or_default().to_owned())?;

    let predicate =
        "window.rts.stats().then(s => s.framesDecoded >= 10 && s.totalSamplesReceived > 0 && s.connectionState === 'connected' && s)";
    let stats = player
        .wait_for(predicate, 30 * SECOND)
        .map_err(|e| e.context(player.console().join("\n")))?;
    // Media can flow on a writable ICE pair a moment before Chrome's
    // connectionState leaves "connecting" (both ends are full ICE here), so
    // the wait above includes the state rather than sampling it once.
    assert!(
        stats["firstFrameMs"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{stats}"
    );
    assert!(stats["bytesReceived"].as_u64() > Some(0), "{stats}");
    assert_eq!(player.eval("window.rts.state")?, "playing");

    assert_eq!(player.eval("window.rts.stop()")?, Value::from(200));
    assert!(http
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.target == "/whep/live/cam1/session-1"));
    assert_eq!(player.eval("window.rts.pc.connectionState")?, "closed");
    Ok(())
}
