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
        let report = or_exit(rts_loadgen::tcp::run(&opts));
        emit(&report, &report.summary_table(), opts.json.as_deref());
        std::process::exit(report.exit_code(&opts));
    }
    let report = or_exit(run(&opts));
    emit(&report, &report.summary_table(), opts.json.as_deref());
    std::process::exit(report.exit_code());
}

/// The run's result, or exit 2 with its error.
fn or_exit<T>(r: Result<T, rts_loadgen::Error>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("rts-loadgen: {e}");
        std::process::exit(2);
    })
}

/// Prints the summary and writes the JSON report (exit 2 if it cannot).
fn emit(report: &impl serde::Serialize, summary: &str, json: Option<&std::path::Path>) {
    print!("{summary}");
    if let Some(path) = json {
        if let Err(e) = write_json(report, path) {
            eprintln!("rts-loadgen: writing {}: {e}", path.display());
            std::process::exit(2);
        }
    }
}
