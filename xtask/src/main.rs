//! rmemring's build and test tasks: `cargo xtask <task>`.
//!
//! Every task installs what it needs (as root, on Debian or Ubuntu) and caches
//! everything outside the repository, in `$RMEMRING_CACHE` or
//! `~/.cache/rmemring`. See `cargo xtask --help` and `docs/vm.md`.

mod arch;
mod bench;
mod cache;
mod chroot;
mod dist;
mod dt;
mod exec;
mod flags;
mod fuzz;
mod guest;
mod host;
mod initramfs;
mod kernel;
mod module;
mod reference;
mod run;
mod soak;
mod suites;
mod test;
mod tsan;
mod vm;

#[cfg(test)]
mod tidy;

use std::path::{
    Path,
    PathBuf, //
};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use xshell::Shell;

use crate::flags::Task;

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<ExitCode> {
    let flags = flags::Xtask::parse();
    let sh = &Shell::new()?;
    sh.change_dir(project_root());

    match flags.task {
        Task::Kernel(cmd) => cmd.run(sh),
        Task::Module(cmd) => cmd.run(sh),
        Task::Guest(cmd) => cmd.run(sh),
        Task::VmRun(cmd) => cmd.run(sh),
        Task::VmShell(cmd) => cmd.run(sh),
        Task::Run(cmd) => cmd.run(sh),
        Task::Test(cmd) => cmd.run(sh),
        Task::Bench(cmd) => cmd.run(sh),
        Task::Fuzz(cmd) => cmd.run(sh),
        Task::Soak(cmd) => cmd.run(sh),
        Task::Dist(cmd) => cmd.run(sh),
    }
}

/// An error and its causes, one per line. Not `{err:?}`: with
/// RUST_BACKTRACE set, that adds a backtrace of the xtask itself, which says
/// nothing about the failure.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        text += &format!("\ncaused by: {cause}");
    }
    text
}

/// The repository root: the parent of this crate's manifest directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}
