//! `rmemring completions SHELL` and `rmemring man`: shell completions
//! (`clap_complete`) and manual pages (`clap_mangen`) generated from the
//! command line's own definition, so they never disagree with `--help`.
//!
//! Packagers run them at build time, as they do `rustup completions` or
//! `gh completion`; `cargo xtask dist` writes both into its `dist`
//! directory.

use std::io::{
    self,
    Write as _, //
};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{
    fail,
    Cli, //
};

/// Print a shell completion script.
///
/// bash: `rmemring completions bash > /usr/share/bash-completion/completions/rmemring`
/// (or `source <(rmemring completions bash)` in ~/.bashrc);
/// zsh: `rmemring completions zsh > "${fpath[1]}/_rmemring"`;
/// fish: `rmemring completions fish > ~/.config/fish/completions/rmemring.fish`.
#[derive(clap::Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// Print the manual page in roff, or write one page per subcommand.
///
/// `rmemring man | man -l -` reads it; `rmemring man --dir DIR` writes
/// rmemring.1 and rmemring-SUBCOMMAND.1 for each subcommand into DIR (for
/// /usr/share/man/man1).
#[derive(clap::Args, Debug)]
pub(crate) struct ManArgs {
    /// Write rmemring.1 and a page per subcommand into this directory
    /// (created if missing) instead of printing rmemring.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "rmemring", &mut script);
    write_stdout(&script)
}

pub(crate) fn man(args: &ManArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for cmd in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
                let path = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
                let mut page = Vec::new();
                render(cmd, &mut page)?;
                std::fs::write(&path, page)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            render(&cmd, &mut page)?;
            write_stdout(&page)
        }
    }
}

/// A page in the usual order: NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
/// SUBCOMMANDS, EXIT STATUS (which every subcommand shares), VERSION.
fn render(cmd: &clap::Command, out: &mut Vec<u8>) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).source(format!(
        "rmemring {}",
        cmd.get_version().unwrap_or_default()
    ));
    let page = &mut Vec::new();
    man.render_title(page)?;
    man.render_name_section(page)?;
    man.render_synopsis_section(page)?;
    man.render_description_section(page)?;
    man.render_options_section(page)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(page)?;
    }
    page.extend_from_slice(b".SH \"EXIT STATUS\"\n.nf\n");
    let statuses = fail::EXIT_STATUS_HELP
        .strip_prefix("Exit status:\n")
        .unwrap_or(fail::EXIT_STATUS_HELP);
    for line in statuses.lines() {
        page.extend_from_slice(roff_line(line).as_bytes());
        page.push(b'\n');
    }
    page.extend_from_slice(b".fi\n");
    man.render_version_section(page)?;
    // Each section starts with the same two-line definition of `\*(Aq`:
    // once is enough.
    let page = String::from_utf8_lossy(page);
    let mut parts = page.split(AQ_DEFINITION);
    out.extend_from_slice(parts.next().unwrap_or_default().as_bytes());
    out.extend_from_slice(AQ_DEFINITION.as_bytes());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    Ok(())
}

/// What `clap_mangen` puts before every section it renders.
const AQ_DEFINITION: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// `text` as one line of roff text: backslashes and dashes escaped, and
/// a leading `.` or `'` kept from being read as a request.
fn roff_line(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes `bytes` to stdout; a closed pipe is `EPIPE`, as for every
/// subcommand (see `out`).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}
