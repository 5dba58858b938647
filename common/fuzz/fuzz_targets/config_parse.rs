//! Arbitrary text as `rts.toml`: a configuration or a clear error, never a
//! panic; what parses is valid and its derived settings can be read.
//! Run: `cargo +nightly fuzz run config_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = Config::parse(text) {
        assert!(cfg.validate().is_ok());
        let _ = cfg.shard_count();
        let _ = cfg.candidate_ip();
        let _ = cfg.domain("a.example.com");
    }
});
