//! The `rmemring` command-line tool.

fn main() {}
