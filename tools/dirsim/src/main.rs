//! `rts-dirsim`: see [`rts_dirsim`]. Prints the report, writes it as JSON
//! with `--json`, exits 1 when the run did not pass (a failed or
//! incomplete lookup, a failed heartbeat, entries left after the TTL).

use anyhow::Context;
use clap::Parser;
use rts_dirsim::options::Options;

fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    let report = rts_dirsim::run(&o)?;
    println!("{}", report.summary());
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}
