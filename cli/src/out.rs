//! What the subcommands print, and a closed pipe.
//!
//! Rust ignores `SIGPIPE`, so a write to a pipe whose reader has gone
//! (`rmemring stat -w --json | head -1`) fails with `EPIPE` instead of
//! ending the process, and `println!` turns that failure into a panic
//! (exit 101). So every line a subcommand prints goes through `outln!`
//! (or `out!`), which returns the error instead; the subcommand passes it
//! up with `?`, stopping whatever it was doing, and [`crate::fail`] exits
//! with status 0 for `EPIPE`, like `head` expects of any stream. `cat`,
//! which writes straight to the descriptor, ends the same way.
//! `clippy::print_stdout` is denied in this binary, so that nothing
//! prints around this module.

use std::fmt;
use std::io::{
    self,
    Write, //
};

/// `println!` that returns the write's error: `outln!("{x}")?`.
macro_rules! outln {
    () => {
        $crate::out::print(::std::format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::out::print(::std::format_args!($($arg)*), true)
    };
}

/// `print!` that returns the write's error: `out!("{text}")?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(::std::format_args!($($arg)*), false)
    };
}

/// Writes `args` (and a newline) to stdout.
pub(crate) fn print(args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    if newline {
        stdout.write_all(b"\n")?;
    }
    // Stdout is line-buffered; text without a newline is flushed now, so
    // that its error (a closed pipe) surfaces here and not at exit.
    stdout.flush()
}

/// Writes `value` as one line of JSON to stdout.
///
/// The `--json` outputs are `#[derive(Serialize)]` structs whose fields are
/// declared in alphabetical order: the order the objects had when they
/// were `serde_json` maps, which docs and scripts may show or diff.
pub(crate) fn json_line(value: &impl serde::Serialize) -> io::Result<()> {
    let line = serde_json::to_string(value).map_err(io::Error::other)?;
    print(format_args!("{line}"), true)
}

/// Writes `text` to stderr, for output that goes there instead of stdout
/// (`bench --json` prints its table on stderr); a closed stderr ends the
/// subcommand the way a closed stdout does.
pub(crate) fn print_stderr(text: &str) -> io::Result<()> {
    let mut stderr = io::stderr().lock();
    stderr.write_all(text.as_bytes())?;
    stderr.flush()
}
