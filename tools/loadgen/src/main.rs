//! `rts-loadgen` command line: see the README "Load generator" section.
//! Exit codes: 0 OK, 1 thresholds missed, 2 usage or set-up error.
#![forbid(unsafe_code)]

use clap::Parser;
use rts_loadgen::{run, write_json, Options};

fn main() {
    let opts = match Options::try_parse_from(std::env::args_os()) {
        Ok(o) => o,
        Err(e) => {
            // --help / --version print to stdout and succeed; real usage errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = opts.validate() {
        eprintln!("rts-loadgen: {e}");
        std::process::exit(2);
    }
    if opts.protocol != rts_loadgen::Protocol::Webrtc {
        let report = match rts_loadgen::tcp::run(&opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("rts-loadgen: {e}");
                std::process::exit(2);
            }
        };
        print!("{}", report.summary_table());
        if let Some(path) = &opts.json {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("rts-loadgen: writing {}: {e}", path.display());
                std::process::exit(2);
            }
        }
        std::process::exit(report.exit_code(&opts));
    }
    let report = match run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rts-loadgen: {e}");
            std::process::exit(2);
        }
    };
    print!("{}", report.summary_table());
    if let Some(path) = &opts.json {
        if let Err(e) = write_json(&report, path) {
            eprintln!("rts-loadgen: writing {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    std::process::exit(report.exit_code());
}
