//! Configuration reload (SIGHUP, `POST /api/v1/reload` on the admin
//! listener): the file is read again and what can change without cutting
//! anyone is applied; what cannot (listeners, ports, shard count, the shm
//! region, …) is reported back, never silently ignored.
//!
//! Applied live: `[auth]` and `[[domain]]` (keys, with their secondary keys
//! for rotation; the shards get them over the control channel, decision
//! 004), `[log] level`, `[admin] token`, `[billing] interval_s`, the
//! cluster's limits (`capacity_viewers`, `redirect_target`,
//! `pull_linger_s`, `max_hops`), the answer options
//! `[webrtc] red` / `playout_delay_hint`, `[dataplane] spread_after`,
//! `[ops] drain_s`, `[hooks]` and the signaling limits
//! (`[limits] signaling_per_ip_per_s`, `sessions_per_ip`).

use rts_common::config::{Config, ConfigError};
use serde_json::Value;

/// Settings a reload applies: a whole section, or `section.key`.
const LIVE: &[&str] = &[
    "auth",
    "domain",
    "log.level",
    "admin.token",
    "billing.interval_s",
    "cluster.capacity_viewers",
    "cluster.redirect_target",
    "cluster.pull_linger_s",
    "cluster.max_hops",
    "webrtc.red",
    "webrtc.playout_delay_hint",
    "dataplane.spread_after",
    // Read from the file when a drain starts.
    "ops.drain_s",
    "hooks",
    "limits.signaling_per_ip_per_s",
    "limits.sessions_per_ip",
];

/// What a reload did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReloadReport {
    /// The reload's number (the shards log it).
    pub generation: u64,
    /// Settings that changed and now apply.
    pub applied: Vec<String>,
    /// Settings that changed in the file but need a restart: still as before.
    pub restart_needed: Vec<String>,
}

/// The configuration to run with after reading `new` while running `old`:
/// `old` with the live settings taken from `new`; and the changed paths,
/// (applied, needing a restart).
pub fn plan(old: &Config, new: &Config) -> Result<(Config, Vec<String>, Vec<String>), ConfigError> {
    let invalid = |e: serde_json::Error| ConfigError::Invalid(e.to_string());
    let (o, n) = (serde_json::to_value(old).map_err(invalid)?, serde_json::to_value(new).map_err(invalid)?);
    let (Value::Object(o), Value::Object(n)) = (o, n) else { return Err(ConfigError::Invalid("not a table".into())) };
    let mut merged = o.clone();
    let (mut applied, mut restart) = (Vec::new(), Vec::new());
    for (section, new_v) in &n {
        let old_v = o.get(section).unwrap_or(&Value::Null);
        if old_v == new_v {
            continue;
        }
        if LIVE.contains(&section.as_str()) {
            merged.insert(section.clone(), new_v.clone());
            applied.push(section.clone());
            continue;
        }
        match (old_v, new_v) {
            (Value::Object(ov), Value::Object(nv)) => {
                for (key, nk) in nv {
                    if ov.get(key) == Some(nk) {
                        continue;
                    }
                    let path = format!("{section}.{key}");
                    if LIVE.contains(&path.as_str()) {
                        if let Some(Value::Object(m)) = merged.get_mut(section) {
                            m.insert(key.clone(), nk.clone());
                        }
                        applied.push(path);
                    } else {
                        restart.push(path);
                    }
                }
            }
            // A section added or removed (e.g. [cluster], [billing]).
            _ => restart.push(section.clone()),
        }
    }
    let cfg: Config = serde_json::from_value(Value::Object(merged)).map_err(invalid)?;
    cfg.validate()?;
    Ok((cfg, applied, restart))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn keys_and_limits_apply_and_listeners_are_reported() {
        let old = cfg("[auth]\nplay_key = \"p1\"\n[rtmp]\nlisten = \"0.0.0.0:1935\"\n[log]\nlevel = \"info\"\n");
        let new = cfg("[auth]\nplay_key = \"p2\"\nplay_key_secondary = \"p1\"\n[rtmp]\nlisten = \"0.0.0.0:1936\"\n[log]\nlevel = \"debug\"\n\
                       [dataplane]\nspread_after = 50\nshards = 3\n[[domain]]\nname = \"a.example.com\"\nplay_key = \"pa\"\n");
        let (run, applied, restart) = plan(&old, &new).unwrap();
        assert_eq!(applied, ["auth", "dataplane.spread_after", "domain", "log.level"]);
        assert_eq!(restart, ["dataplane.shards", "rtmp.listen"]);
        assert_eq!(run.auth.play_key.as_deref(), Some("p2"));
        assert_eq!(run.auth.play_key_secondary.as_deref(), Some("p1"));
        assert_eq!(run.domains.len(), 1);
        assert_eq!((run.log.level.as_str(), run.dataplane.spread_after), ("debug", 50));
        assert_eq!(run.rtmp.listen.port(), 1935, "the listener stays until a restart");
        assert_eq!(run.dataplane.shards, 0);
    }

    #[test]
    fn a_section_added_needs_a_restart_and_nothing_changed_is_empty() {
        let old = cfg("");
        let (_, applied, restart) = plan(&old, &cfg("[cluster]\nredis = \"redis://10.0.0.1:6379\"\n")).unwrap();
        assert!(applied.is_empty());
        assert_eq!(restart, ["cluster"]);
        let (run, applied, restart) = plan(&old, &cfg("")).unwrap();
        assert!(applied.is_empty() && restart.is_empty());
        assert_eq!(serde_json::to_value(&run).unwrap(), serde_json::to_value(&old).unwrap());
        // Within an existing [billing], the interval is live, the path is not.
        let old = cfg("[billing]\npath = \"/a\"\ninterval_s = 60\n");
        let (run, applied, restart) = plan(&old, &cfg("[billing]\npath = \"/b\"\ninterval_s = 5\n")).unwrap();
        assert_eq!((applied, restart), (vec!["billing.interval_s".to_string()], vec!["billing.path".to_string()]));
        assert_eq!(run.billing.map(|b| (b.interval_s, b.path)), Some((5, "/a".into())));
    }
}
