//! Command line. Scripts and CI depend on these flag names (issue 5).

use crate::Error;
use clap::{Parser, ValueEnum};
use std::time::Duration;

/// Signaling shape spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signaling {
    /// WHEP: `POST` the SDP offer to `--url`, 201 + Location + answer.
    Whep,
    /// Alibaba RTS JSON at `http://h:p/{app}/{stream}`.
    Rts,
    /// SRS `POST /rtc/v1/play/` with `streamurl: webrtc://h/app/stream`.
    Srs,
}

impl Signaling {
    /// Lower-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Signaling::Whep => "whep",
            Signaling::Rts => "rts",
            Signaling::Srs => "srs",
        }
    }
}

/// What the viewers play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// WebRTC (ICE, DTLS, SRTP) after `--signaling`.
    Webrtc,
    /// HTTP-FLV: `--url http://host:8088/app/stream.flv` (see `tcp.rs`).
    Flv,
    /// RTMP play: `--url rtmp://host[:1935]/app/stream`.
    Rtmp,
}

/// Everything a run needs. Build it with [`Options::from_args`] or
/// [`Options::new`] and adjust the public fields.
#[derive(Debug, Clone, Parser)]
#[command(name = "rts-loadgen", version, about = "WebRTC load generator: N real viewers (ICE, DTLS, SRTP) with viewer-experience metrics")]
pub struct Options {
    /// WHEP URL, e.g. http://127.0.0.1:8080/whep/live/s (rts/srs derive their endpoint from it).
    #[arg(long)]
    pub url: String,
    /// Viewer sessions to open.
    #[arg(long, default_value_t = 1)]
    pub viewers: u64,
    /// New sessions per second.
    #[arg(long, default_value_t = 50.0)]
    pub ramp: f64,
    /// Seconds to hold, counted from the start of the first session.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Share of viewers that decrypt and verify media (at least one when viewers > 0).
    #[arg(long, default_value_t = 0.01)]
    pub verify_share: f64,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Signaling shape.
    #[arg(long, value_enum, default_value_t = Signaling::Whep)]
    pub signaling: Signaling,
    /// What the viewers play: WebRTC, or the standard outputs over TCP.
    #[arg(long, value_enum, default_value_t = Protocol::Webrtc)]
    pub protocol: Protocol,
    /// flv/rtmp: this many viewers (the first ones) read slowly.
    #[arg(long, default_value_t = 0)]
    pub slow_readers: u64,
    /// flv/rtmp: the slow readers' rate, kbit/s.
    #[arg(long, default_value_t = 100.0)]
    pub slow_read_kbps: f64,
    /// Worker threads (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Fail (exit 1) when stall_ms_total / (verified viewers × duration ms) exceeds this.
    #[arg(long)]
    pub max_stall_ratio: Option<f64>,
    /// Fail (exit 1) when more viewers than this fail.
    #[arg(long)]
    pub max_failed: Option<u64>,
    /// Fail (exit 1) when the verified loss ratio exceeds this.
    #[arg(long)]
    pub max_loss: Option<f64>,
    /// HTTP connect and total timeout per request, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for a STUN success response.
    #[arg(long, default_value_t = 10.0)]
    pub ice_timeout: f64,
    /// Seconds to wait for the DTLS handshake.
    #[arg(long, default_value_t = 10.0)]
    pub dtls_timeout: f64,
    /// No live progress line even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    /// Send every viewer's UDP traffic to this address instead of the answer's
    /// candidate (e.g. an `rts-impair` relay in front of the server; it keeps one
    /// upstream socket per viewer, so the server still sees distinct 5-tuples).
    #[arg(long, value_name = "ADDR")]
    pub relay: Option<std::net::SocketAddr>,
    /// Send to the answer's IPv6 candidate (a dual-stack server offers one
    /// per family; without this flag the IPv4 one is taken). A viewer whose
    /// answer has none fails as `bad_sdp`.
    #[arg(long)]
    pub ipv6: bool,
    /// Workers wake at most this often (µs) and then drain every ready socket
    /// with recvmmsg; arrival times are read once per wake-up, so this is also
    /// the timing resolution of jitter, stall and latency figures (0: wake per event).
    #[arg(long, default_value_t = 1000)]
    pub wake_interval_us: u64,
    /// Do not ask for UDP_GRO on viewer sockets. With it (the default) the
    /// kernel hands each GSO send of the server (a frame's packets) over
    /// whole, one receive per frame instead of one per packet, and on
    /// loopback the server's core no longer segments it for us; every
    /// packet in it is still parsed and counted.
    #[arg(long)]
    pub no_gro: bool,
    /// Do not NACK lost video packets (and do not wait for repairs): the
    /// behaviour before loss repair, for comparison.
    #[arg(long)]
    pub no_nack: bool,
    /// Every viewer drops this percentage of the RTP/RTX datagrams it
    /// receives, before any processing (seeded per viewer with `--seed`):
    /// loss without a relay.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub drop_pct: f64,
    /// Seed of the `--drop-pct` patterns (viewer i uses a seed derived from it and i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// After this many seconds connected, each verified viewer moves to a
    /// new UDP socket (new local port) and sends a check with USE-CANDIDATE
    /// from it, without new signaling or DTLS (a network change).
    #[arg(long, value_name = "S")]
    pub rebind_after: Option<f64>,
    /// Swipe mode: every viewer switches its session (rts's
    /// `POST {WHEP resource}/switch?stream=app/stream`, WHEP only) to the
    /// next stream of `--switch-streams` this often, from one period after
    /// it connected; verified viewers time each switch to the new stream's
    /// first complete frame.
    #[arg(long, value_name = "S", requires = "switch_streams")]
    pub switch_every: Option<f64>,
    /// The streams to switch among, comma-separated: `app/stream`, or
    /// `stream` in the URL's app, each optionally with `?query` (passed on,
    /// e.g. an `auth_key`). Viewer i's step k goes to entry (i + k) mod n.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "switch_every")]
    pub switch_streams: Vec<String>,
    /// A switch with no complete frame of the new stream within this many
    /// seconds of its request counts in `switches_no_frame`.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    pub switch_timeout: f64,
}

impl Options {
    /// Defaults for `url` (one viewer, 30 s, WHEP).
    pub fn new(url: &str) -> Options {
        // Parsing a fixed argument list with only defaults cannot fail.
        Options::try_parse_from(["rts-loadgen", "--url", url]).unwrap_or_else(|_| unreachable!())
    }

    /// Parses a command line (`args[0]` is the program name) and checks values.
    pub fn from_args<I, T>(args: I) -> Result<Options, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let o = Options::try_parse_from(args).map_err(|e| Error::Usage(e.to_string()))?;
        o.validate()?;
        Ok(o)
    }

    /// Rejects values the engine cannot work with.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Usage(format!("--{name} must be a positive number")))
            }
        };
        positive(self.ramp, "ramp")?;
        positive(self.duration, "duration")?;
        positive(self.connect_timeout, "connect-timeout")?;
        positive(self.ice_timeout, "ice-timeout")?;
        positive(self.dtls_timeout, "dtls-timeout")?;
        if !(0.0..=1.0).contains(&self.verify_share) {
            return Err(Error::Usage("--verify-share must be within 0..=1".into()));
        }
        if !(0.0..=100.0).contains(&self.drop_pct) {
            return Err(Error::Usage("--drop-pct must be within 0..=100".into()));
        }
        if let Some(s) = self.rebind_after {
            positive(s, "rebind-after")?;
        }
        positive(self.switch_timeout, "switch-timeout")?;
        positive(self.slow_read_kbps, "slow-read-kbps")?;
        if self.slow_readers > self.viewers {
            return Err(Error::Usage("--slow-readers cannot exceed --viewers".into()));
        }
        if let Some(s) = self.switch_every {
            positive(s, "switch-every")?;
            if self.signaling != crate::Signaling::Whep {
                return Err(Error::Usage("--switch-every needs --signaling whep (the switch is on the WHEP resource)".into()));
            }
            self.switch_targets()?;
        }
        if self.threads == Some(0) {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        match self.protocol {
            Protocol::Webrtc => {
                crate::signaling::Target::parse(&self.url, self.signaling)?;
            }
            p => {
                crate::tcp::Target::parse(&self.url, p)?;
            }
        }
        Ok(())
    }

    /// The `--switch-streams` entries, resolved against the URL's app.
    pub fn switch_targets(&self) -> Result<Vec<crate::swipe::SwitchTarget>, Error> {
        let app = crate::signaling::Target::parse(&self.url, self.signaling)?.app;
        if self.switch_every.is_some() && self.switch_streams.is_empty() {
            return Err(Error::Usage("--switch-every needs --switch-streams".into()));
        }
        crate::swipe::SwitchTarget::parse_list(&self.switch_streams, &app).map_err(Error::Usage)
    }

    /// Verified viewers: `verify_share` of them, rounded up, at least one.
    pub fn verified_count(&self) -> u64 {
        if self.viewers == 0 {
            return 0;
        }
        ((self.viewers as f64 * self.verify_share).ceil() as u64).clamp(1, self.viewers)
    }

    /// Seconds the ramp takes to start every viewer.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.viewers as f64 / self.ramp)
    }

    /// Hard end of the run, from its start: ramp + duration + connect timeout + 10 s.
    pub fn deadline(&self) -> Duration {
        self.ramp_time() + Duration::from_secs_f64(self.duration + self.connect_timeout + 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_command_line() {
        let o = Options::from_args([
            "rts-loadgen", "--url", "http://127.0.0.1:8080/whep/live/s", "--viewers", "1000", "--ramp", "100",
            "--duration", "60", "--verify-share", "0.01", "--json", "r.json", "--signaling", "srs", "--threads", "2",
            "--max-stall-ratio", "0.05", "--max-failed", "3", "--max-loss", "0.02", "--connect-timeout", "5",
            "--relay", "127.0.0.1:9000", "--wake-interval-us", "500", "--no-nack", "--drop-pct", "5",
            "--seed", "7", "--rebind-after", "3", "--ipv6",
        ])
        .unwrap();
        assert!(o.no_nack && o.ipv6);
        assert_eq!((o.drop_pct, o.seed, o.rebind_after), (5.0, 7, Some(3.0)));
        assert_eq!((o.viewers, o.ramp, o.duration, o.signaling), (1000, 100.0, 60.0, Signaling::Srs));
        assert_eq!((o.threads, o.max_failed, o.max_stall_ratio), (Some(2), Some(3), Some(0.05)));
        assert_eq!(o.verified_count(), 10);
        assert_eq!(o.deadline(), Duration::from_secs(10 + 60 + 5 + 10));
        assert_eq!(o.json.as_deref(), Some(std::path::Path::new("r.json")));
        assert_eq!((o.relay, o.wake_interval_us), (Some("127.0.0.1:9000".parse().unwrap()), 500));
    }

    #[test]
    fn swipe_options() {
        let o = Options::from_args([
            "rts-loadgen", "--url", "http://h/whep/live/a", "--switch-every", "5", "--switch-streams", "a,live/b,other/c",
            "--switch-timeout", "2",
        ])
        .unwrap();
        assert_eq!((o.switch_every, o.switch_timeout), (Some(5.0), 2.0));
        let t = o.switch_targets().unwrap();
        let names: Vec<String> = t.iter().map(|t| format!("{}/{}", t.app, t.stream)).collect();
        assert_eq!(names, ["live/a", "live/b", "other/c"]);
        let mut r = Options::new("rtmp://127.0.0.1/live/a");
        r.protocol = Protocol::Rtmp;
        assert!(r.validate().is_ok(), "an rtmp:// URL for --protocol rtmp");
        r.protocol = Protocol::Webrtc;
        assert!(r.validate().is_err(), "but not for WebRTC signaling");
        let d = Options::new("http://h/whep/live/a");
        assert_eq!((d.switch_every, d.switch_streams.len(), d.switch_timeout), (None, 0, 3.0));
        assert!(d.switch_targets().unwrap().is_empty());
    }

    #[test]
    fn defaults_and_minimum_verified() {
        let o = Options::new("http://h/whep/a/b");
        assert_eq!((o.viewers, o.signaling, o.verify_share), (1, Signaling::Whep, 0.01));
        assert_eq!((o.relay, o.wake_interval_us), (None, 1000));
        assert_eq!((o.no_nack, o.drop_pct, o.seed, o.rebind_after), (false, 0.0, 1, None));
        assert!(!o.ipv6, "IPv4 unless asked");
        assert_eq!(o.verified_count(), 1);
        let mut o = o;
        o.viewers = 0;
        assert_eq!(o.verified_count(), 0);
        o.viewers = 20;
        o.verify_share = 0.25;
        assert_eq!(o.verified_count(), 5);
    }

    #[test]
    fn usage_errors() {
        for bad in [
            vec!["x"],
            vec!["x", "--url", "http://h/whep/a/b", "--ramp", "0"],
            vec!["x", "--url", "http://h/whep/a/b", "--verify-share", "2"],
            vec!["x", "--url", "http://h/whep/a/b", "--signaling", "sip"],
            vec!["x", "--url", "ftp://h/a/b"],
            vec!["x", "--url", "http://h/whep/a/b", "--threads", "0"],
            vec!["x", "--url", "http://h/whep/a/b", "--relay", "nohost"],
            vec!["x", "--url", "http://h/whep/a/b", "--drop-pct", "101"],
            vec!["x", "--url", "http://h/whep/a/b", "--drop-pct", "-1"],
            vec!["x", "--url", "http://h/whep/a/b", "--rebind-after", "0"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-every", "5"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-streams", "a,b"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-every", "0", "--switch-streams", "a,b"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-every", "1", "--switch-streams", "a,b c"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-every", "1", "--switch-streams", "a,b", "--switch-timeout", "0"],
            vec!["x", "--url", "http://h/whep/a/b", "--switch-every", "1", "--switch-streams", "a,b", "--signaling", "rts"],
        ] {
            assert!(matches!(Options::from_args(&bad), Err(Error::Usage(_)) | Err(Error::Url(..))), "{bad:?}");
        }
    }
}
