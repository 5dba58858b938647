//! HTTP callbacks (`[hooks]`), the shape SRS operators already run
//! (`http_hooks`): a JSON object POSTed to the configured URL per event.
//! `on_publish` and `on_play` decide: a 2xx answer allows (unless its body
//! is JSON with a non-zero `code`, as SRS reads it), anything else refuses
//! with that status as the reason; a hook server that does not answer in
//! `timeout_ms` or cannot be reached gets the `fail_open` policy.
//! `on_unpublish` and `on_stop` are notices.
//!
//! Calls run on their own threads, at most `MAX_IN_FLIGHT` at once (more
//! get the policy at once, counted): a slow or dead hook server never
//! holds signaling's pool, the rings or the shards.

use rts_common::config::HooksConfig;
use rts_common::ipc::HookCall;
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const MAX_IN_FLIGHT: usize = 256;

/// A hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(String),
    /// No usable answer (timeout, connection refused): the policy decides.
    Failed(String),
}

#[derive(Default, Debug, serde::Serialize)]
pub struct HookCounters {
    pub called: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    /// Not called: too many calls in flight (the policy applied).
    pub overflow: AtomicU64,
}

#[derive(Default)]
pub struct Hooks {
    in_flight: AtomicUsize,
    pub counters: HookCounters,
}

/// The JSON body for `call` (SRS's field names, and ours).
pub fn body(call: &HookCall, server_id: &str) -> serde_json::Value {
    let param = if call.param.is_empty() { String::new() } else { format!("?{}", call.param) };
    json!({
        "action": call.action,
        "server_id": server_id,
        "client_id": format!("{:016x}", call.session),
        "ip": call.client.map(|a| a.ip().to_string()).unwrap_or_default(),
        "vhost": if call.domain.is_empty() { "__defaultVhost__" } else { call.domain.as_str() },
        "app": call.app,
        "stream": call.stream,
        "param": param,
        "stream_url": format!("/{}/{}", call.app, call.stream),
        "protocol": call.protocol.as_str(),
    })
}

/// POSTs `body` to `url` and reads the verdict (blocking, `timeout`).
pub fn post(url: &str, body: &serde_json::Value, timeout: Duration) -> Verdict {
    let agent = ureq::AgentBuilder::new().timeout_connect(timeout).timeout(timeout).redirects(0).build();
    match agent.post(url).set("Content-Type", "application/json").send_string(&body.to_string()) {
        Ok(resp) => {
            let status = resp.status();
            if !(200..300).contains(&status) {
                return Verdict::Refuse(format!("hook answered {status}"));
            }
            let text = resp.into_string().unwrap_or_default();
            match serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("code").and_then(|c| c.as_i64())) {
                Some(code) if code != 0 => Verdict::Refuse(format!("hook answered code {code}")),
                _ if text.trim() != "" && text.trim().parse::<i64>().is_ok_and(|c| c != 0) => Verdict::Refuse(format!("hook answered {}", text.trim())),
                _ => Verdict::Allow,
            }
        }
        Err(ureq::Error::Status(status, _)) => Verdict::Refuse(format!("hook answered {status}")),
        Err(ureq::Error::Transport(t)) => Verdict::Failed(t.to_string()),
    }
}

impl Hooks {
    /// Calls the hook for `call` now (blocking): Allow when none is
    /// configured; a failure becomes the policy's answer.
    pub fn decide(&self, cfg: &HooksConfig, call: &HookCall, server_id: &str) -> Verdict {
        let url = cfg.url(&call.action);
        if url.is_empty() {
            return Verdict::Allow;
        }
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.counters.overflow.fetch_add(1, Ordering::Relaxed);
            return self.policy(cfg, "too many hook calls in flight".into());
        }
        self.counters.called.fetch_add(1, Ordering::Relaxed);
        let v = post(url, &body(call, server_id), Duration::from_millis(cfg.timeout_ms));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match v {
            Verdict::Refuse(r) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(action = %call.action, app = %call.app, stream = %call.stream, reason = %r, "hook refused");
                Verdict::Refuse(r)
            }
            Verdict::Failed(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(action = %call.action, url, error = %e, fail_open = cfg.fail_open, "hook failed");
                self.policy(cfg, e)
            }
            Verdict::Allow => Verdict::Allow,
        }
    }

    fn policy(&self, cfg: &HooksConfig, why: String) -> Verdict {
        if cfg.fail_open {
            Verdict::Allow
        } else {
            Verdict::Refuse(format!("hook unavailable: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_common::ipc::Protocol;

    #[test]
    fn the_body_has_srs_fields() {
        let call = HookCall {
            action: "on_play".into(),
            session: 0xab,
            protocol: Protocol::Webrtc,
            client: Some("203.0.113.7:5000".parse().unwrap()),
            domain: String::new(),
            app: "live".into(),
            stream: "s".into(),
            param: "auth_key=x".into(),
        };
        let b = body(&call, "edge-1");
        assert_eq!(b["action"], "on_play");
        assert_eq!(b["client_id"], "00000000000000ab");
        assert_eq!(b["ip"], "203.0.113.7");
        assert_eq!(b["vhost"], "__defaultVhost__");
        assert_eq!(b["param"], "?auth_key=x");
        assert_eq!(b["stream_url"], "/live/s");
        assert_eq!(b["protocol"], "webrtc");
        assert_eq!(b["server_id"], "edge-1");
    }
}
