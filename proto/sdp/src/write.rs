//! Tiny helpers shared by the answer and offer writers.

use std::fmt::{self, Write};

/// Appends one SDP line terminated by CRLF (RFC 8866 §5 requires CRLF on output).
pub(crate) fn line(out: &mut String, args: fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
    out.push_str("\r\n");
}

/// `sdp_line!(out, "a=mid:{}", mid)`: one CRLF-terminated line.
macro_rules! sdp_line {
    ($out:expr, $($arg:tt)*) => {
        $crate::write::line($out, format_args!($($arg)*))
    };
}
pub(crate) use sdp_line;
