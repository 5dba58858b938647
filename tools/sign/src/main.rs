//! `rts-sign URL --key K [--ttl S] [--validity V]`: the same signer as
//! `rts sign`, as a standalone tool for scripts that do not ship the server.

use clap::Parser;

#[derive(Parser)]
#[command(name = "rts-sign", about = "Print an Alibaba type-A signed URL (auth_key=...)")]
struct Args {
    url: String,
    #[arg(long)]
    key: String,
    /// Seconds the URL should stay valid from now.
    #[arg(long)]
    ttl: Option<u64>,
    /// The server's [auth] validity_s.
    #[arg(long, default_value_t = 1800)]
    validity: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let ts = rts_common::auth::timestamp_for_ttl(rts_common::config::unix_now(), a.ttl, a.validity);
    let url = rts_common::auth::sign_url(&a.url, &a.key, ts, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{url}");
    Ok(())
}
