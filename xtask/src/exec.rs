//! Running external commands: echo each one, stream its output, keep the lines.
//!
//! A [`Log`] is where a task's commands and their output go: the terminal
//! (stderr, so that `vm-run`'s stdout carries only the guest command's output)
//! or a file (`cargo xtask test` keeps build logs out of its report).

use std::fmt::Display;
use std::fs::File;
use std::io::{
    BufRead,
    BufReader,
    Write, //
};
use std::path::{
    Path,
    PathBuf, //
};
use std::process::{
    Command,
    ExitStatus,
    Stdio, //
};

use anyhow::{
    bail,
    Context,
    Result, //
};
use xshell::Cmd;

/// How many trailing output lines a failure shows when the output went to a file.
const TAIL_LINES: usize = 40;

/// Where commands and their output go.
pub struct Log {
    file: Option<(PathBuf, File)>,
}

impl Log {
    /// Everything to stderr.
    pub fn terminal() -> Log {
        Log { file: None }
    }

    /// Everything to a new file at `path`.
    pub fn to_file(path: &Path) -> Result<Log> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Log {
            file: Some((path.to_path_buf(), file)),
        })
    }

    /// The log file, if the output goes to one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Writes one line.
    pub fn line(&self, line: &str) {
        match &self.file {
            // A log that cannot be written is not worth failing a build over.
            Some((_, file)) => drop(writeln!(&*file, "{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Writes `$ COMMAND`, before running it.
    pub fn echo(&self, cmd: &dyn Display) {
        self.line(&format!("$ {cmd}"));
    }

    /// Runs `cmd`, streaming its stdout and stderr here, and returns the lines.
    /// Fails if it exits non-zero.
    pub fn run(&self, cmd: Cmd<'_>) -> Result<Vec<String>> {
        let shown = cmd.to_string();
        self.run_shown(cmd, &shown)
    }

    /// Like [`Log::run`], echoing `shown` instead of the command itself.
    pub fn run_shown(&self, cmd: Cmd<'_>, shown: &str) -> Result<Vec<String>> {
        let (status, lines) = self.run_status(cmd, shown)?;
        if !status.success() {
            let mut msg = format!("`{shown}` failed ({status})");
            if let Some(path) = self.path() {
                msg += &format!("; last lines of {}:\n", path.display());
                msg += &tail(&lines, TAIL_LINES).join("\n");
            }
            bail!(msg);
        }
        Ok(lines)
    }

    /// Like [`Log::run_shown`], but returns the exit status instead of
    /// failing on it.
    pub fn run_status(&self, cmd: Cmd<'_>, shown: &str) -> Result<(ExitStatus, Vec<String>)> {
        self.echo(&shown);
        let mut command = Command::from(cmd);
        let (reader, writer) = std::io::pipe()?;
        command
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting `{shown}`"))?;
        // The command holds our copies of the pipe's write end: close them, or
        // the reader never sees the end of the output.
        drop(command);

        let mut lines = Vec::new();
        for line in BufReader::new(reader).split(b'\n') {
            let line = line.with_context(|| format!("reading the output of `{shown}`"))?;
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            self.line(line);
            lines.push(line.to_owned());
        }
        Ok((child.wait()?, lines))
    }

    /// Runs `cmd` and returns its trimmed stdout; its stderr comes here.
    pub fn read(&self, cmd: Cmd<'_>) -> Result<String> {
        self.echo(&cmd);
        let output = cmd.quiet().ignore_status().output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            self.line(line);
        }
        if !output.status.success() {
            bail!("command failed ({}): {}", output.status, stderr.trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// `args` as a shell would need them: words with spaces or quotes quoted.
pub fn shell_words<S: AsRef<str>>(args: &[S]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|arg| {
            let arg = arg.as_ref();
            let plain = !arg.is_empty()
                && !arg.contains(|c: char| c.is_whitespace() || "'\"\\;&|<>()*?!`$".contains(c));
            if plain {
                arg.to_owned()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// The last `n` of `lines`.
pub fn tail(lines: &[String], n: usize) -> &[String] {
    &lines[lines.len().saturating_sub(n)..]
}
