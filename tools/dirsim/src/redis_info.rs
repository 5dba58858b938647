//! Redis' own figures (`INFO`), read on a connection of their own before
//! and after the load: the server's CPU time and command count are the
//! cost of the directory as Redis sees it, with the simulator's own
//! client work left out.

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// What one `INFO` said.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// `used_cpu_sys + used_cpu_user`, seconds since Redis started.
    pub cpu_s: f64,
    pub total_commands_processed: u64,
    pub used_memory: u64,
    /// `db0`'s keyspace line (`keys=…,expires=…,avg_ttl=…`), empty if none.
    pub keyspace: String,
    /// `DBSIZE`.
    pub keys: u64,
}

/// Parses `INFO`'s `name:value` lines.
pub fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads a snapshot from the Redis at `url`.
pub fn read(url: &str) -> anyhow::Result<Snapshot> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let text: String = redis::cmd("INFO").query(&mut c)?;
    let keys: u64 = redis::cmd("DBSIZE").query(&mut c)?;
    let f = parse(&text);
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(Snapshot {
        cpu_s: num("used_cpu_sys") + num("used_cpu_user"),
        total_commands_processed: num("total_commands_processed") as u64,
        used_memory: num("used_memory") as u64,
        keyspace: f.get("db0").cloned().unwrap_or_default(),
        keys,
    })
}

/// Redis' load over a phase of `wall_s` seconds between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    /// Redis CPU seconds per wall second: its share of one core.
    pub cpu_share_of_one_core: f64,
    pub commands: u64,
    pub commands_per_s: f64,
}

pub fn load(before: &Snapshot, after: &Snapshot, wall_s: f64) -> Load {
    let commands = after.total_commands_processed.saturating_sub(before.total_commands_processed);
    Load { cpu_share_of_one_core: (after.cpu_s - before.cpu_s) / wall_s, commands, commands_per_s: commands as f64 / wall_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines() {
        let f = parse("# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=2,avg_ttl=100\r\n");
        assert_eq!(f["used_cpu_user"], "2.25");
        assert_eq!(f["db0"], "keys=3,expires=2,avg_ttl=100");
        let a = Snapshot { cpu_s: 1.0, total_commands_processed: 100, ..Default::default() };
        let b = Snapshot { cpu_s: 1.5, total_commands_processed: 1100, ..Default::default() };
        let l = load(&a, &b, 2.0);
        assert_eq!((l.cpu_share_of_one_core, l.commands, l.commands_per_s), (0.25, 1000, 500.0));
    }
}
