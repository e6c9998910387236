//! `rmemring`: inspect, drive and benchmark rmemring rings.
//!
//! One binary with a subcommand per job; `rmemring --help` and
//! `docs/cli.md` describe them. Every subcommand but `create` takes the
//! ring as an optional first argument (default `/dev/rmemring0`); `info`,
//! `stat`, `cat`, `produce` and `bench` also work on ring files, which
//! `create` makes.
//!
//! Errors are one line on stderr, `rmemring: ...`, and the exit status says
//! what kind of failure it was (see [`fail`]). Everything printed on stdout
//! goes through [`out`], so that a closed pipe ends a subcommand quietly.

// `println!` panics on a closed pipe; `outln!` returns the error.
#![deny(clippy::print_stdout)]

#[macro_use]
mod out;

mod args;
mod bench;
#[cfg(feature = "bpf")]
mod bpf;
mod cat;
mod create;
mod fail;
mod generate;
mod info;
mod produce;
mod recovered;
mod signals;
mod snapshot;
mod stat;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{
    Parser,
    Subcommand, //
};

/// The ring a subcommand works on when none is named.
pub(crate) const DEFAULT_DEVICE: &str = "/dev/rmemring0";

/// Inspect, drive and benchmark rmemring rings.
///
/// rmemring streams records from a kernel driver to user space through
/// boot-reserved memory, without copying. DEV is a ring device
/// (`/dev/rmemringN`, from `insmod rmemring.ko phys_base=... phys_size=...`
/// or the device tree) or, for `info`, `stat`, `cat`, `produce` and `bench`, a ring
/// file: `rmemring create` makes one, to try it all without a kernel.
#[derive(Parser, Debug)]
#[command(
    name = "rmemring",
    version,
    propagate_version = true,
    after_help = fail::EXIT_STATUS_HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a ring's layout, sizes, physical base, cache and overflow modes
    /// and producer state.
    Info(info::Args),
    /// Show producer and consumer counters, once or every interval with rates.
    Stat(stat::Args),
    /// Stream records to stdout, read in place from the mapping.
    Cat(cat::Args),
    /// Create a ring file, for trying rmemring without a kernel.
    Create(create::Args),
    /// Run the kernel producer (or, on a ring file, a user-space one) until
    /// COUNT records are done or Ctrl-C.
    Produce(produce::Args),
    // The help is `bench::Args`'s: what a device's and a file's run measure.
    Bench(bench::Args),
    /// Benchmark real events: what the sched_switch tracer adds to a
    /// context switch, against the BPF ring buffer, ftrace and perf.
    BenchEvents(bench::events::Args),
    /// Let go of a ring recovered from a previous boot (docs/flight-recorder.md).
    ReleaseRecovered(recovered::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the manual page, or write one per subcommand with --dir.
    Man(generate::ManArgs),
}

/// The ring path argument every subcommand shares.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DeviceArg {
    /// The ring: a /dev/rmemringN device (or, for `info`, `stat`, `cat`,
    /// `produce` and `bench`, a ring file).
    #[arg(value_name = "DEV", default_value = DEFAULT_DEVICE)]
    pub(crate) device: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    signals::install();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Stat(args) => stat::run(&args),
        Command::Cat(args) => cat::run(&args),
        Command::Create(args) => create::run(&args),
        Command::Produce(args) => produce::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchEvents(args) => bench::events::run(&args),
        Command::ReleaseRecovered(args) => recovered::run(&args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail::report(&err),
    }
}
