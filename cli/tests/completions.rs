//! `rmemring completions SHELL` and `rmemring man`, generated from the
//! command line's definition: the bash script parses (`bash -n`), loads,
//! and completes every subcommand; the zsh script parses (`zsh -n`) and
//! loads through `compinit` from `$fpath`, defining `_rmemring` for
//! `rmemring`; the fish script parses (`fish --no-execute`) and completes
//! `rmemring ca` to `cat`; a truncated zsh or fish script fails those
//! checks; there is a manual page for the command and for each
//! subcommand, every one names every option `--help` shows, and each
//! renders with `groff` without a warning.
//!
//! `cargo xtask test` installs bash, zsh, fish and groff and sets
//! `RMEMRING_REQUIRE_SHELLS`, which makes a missing one a failure; without
//! it the zsh and fish checks are skipped, and the pages checked as text
//! only, where those programs are not installed.
//!
//! The subcommands and options are read from `rmemring --help`, so a new
//! subcommand or option is checked without touching this file.

#![cfg(not(loom))]

use std::path::Path;
use std::process::{
    Command,
    Output,
    Stdio, //
};

mod common;

use common::{
    run_bin,
    temp_dir, //
};

const BIN: &str = env!("CARGO_BIN_EXE_rmemring");

fn run(args: &[&str]) -> Output {
    run_bin(BIN, args)
}

/// `rmemring ARGS`' stdout; it must succeed.
fn stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `rmemring --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let help = stdout(&["--help"]);
    let list = help
        .split_once("Commands:\n")
        .expect("--help lists the subcommands")
        .1;
    let names: Vec<String> = list
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 9, "too few subcommands in:\n{help}");
    names
}

/// The long options `rmemring SUBCOMMAND --help` shows.
fn long_options(subcommand: &str) -> Vec<String> {
    let help = stdout(&[subcommand, "--help"]);
    let mut options: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            line.split([' ', ',', '='])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned)
        })
        .collect();
    options.dedup();
    options
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What bash's completion function offers for the words `line` (the last
/// one being completed), with the script at `script` loaded.
fn bash_complete(script: &Path, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}' || exit 3\n\
         complete -p rmemring >/dev/null || exit 4\n\
         COMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _rmemring rmemring \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        line.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash completing {line:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_parses_loads_and_completes_every_subcommand() {
    let dir = temp_dir("bash");
    let script = dir.path().join("rmemring.bash");
    std::fs::write(&script, stdout(&["completions", "bash"])).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    let offered = bash_complete(&script, &["rmemring", ""]);
    for name in subcommands() {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
    assert_eq!(
        bash_complete(&script, &["rmemring", "comp"]),
        ["completions"]
    );
    // The options of a subcommand, and the values of an enumerated one.
    let cat = bash_complete(&script, &["rmemring", "cat", "--"]);
    for option in long_options("cat") {
        assert!(cat.contains(&option), "cat {option} not offered: {cat:?}");
    }
    let mut shells = bash_complete(&script, &["rmemring", "completions", ""]);
    shells.retain(|word| !word.starts_with('-'));
    shells.sort();
    assert_eq!(shells, ["bash", "elvish", "fish", "powershell", "zsh"]);
}

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        for name in &subcommands {
            assert!(script.contains(name.as_str()), "{shell}: no {name}");
        }
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

/// Whether `program` can run the checks: installed, or else (when
/// `cargo xtask test` asks for every shell) a failure.
fn have_or_required(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("RMEMRING_REQUIRE_SHELLS").is_none(),
        "{program} is not installed (RMEMRING_REQUIRE_SHELLS is set)"
    );
    eprintln!("{program} is not installed: its completion script is not checked");
    false
}

/// `program args`, failing with its output unless it succeeds; its stdout.
fn shell(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ));
    }
    Ok(text(&out.stdout))
}

/// The zsh script `dir/_rmemring` parses, and loads as zsh loads
/// completions: `compinit` finds it on `$fpath` by its `#compdef` line and
/// binds it to `rmemring`, it autoloads, and run (sourced, as the autoloaded
/// function's first call runs it) it defines `_rmemring` and the
/// subcommands' helper.
fn check_zsh(dir: &Path) -> Result<(), String> {
    let script = dir.join("_rmemring");
    shell("zsh", &["-n", script.to_str().unwrap()])?;
    let program = format!(
        "fpath=('{}' $fpath)\n\
         autoload -Uz compinit && compinit -u -D || exit 3\n\
         [[ $_comps[rmemring] == _rmemring ]] || {{ print -u2 \"rmemring completes with '$_comps[rmemring]'\"; exit 4 }}\n\
         autoload +X _rmemring || exit 5\n\
         source '{}/_rmemring' || exit 6\n\
         (( $+functions[_rmemring] && $+functions[_rmemring_commands] )) || {{ print -u2 'not defined'; exit 7 }}",
        dir.display(),
        dir.display()
    );
    shell("zsh", &["-f", "-c", &program]).map(drop)
}

/// The fish script `script` parses and, sourced, completes `rmemring ca`
/// to `cat` and `rmemring cat --fo` to `--format`.
fn check_fish(script: &Path) -> Result<(), String> {
    let script = script.to_str().unwrap();
    shell("fish", &["--no-execute", script])?;
    let complete = |line: &str| {
        let program = format!("source '{script}' || exit 3; complete -C '{line}'");
        shell("fish", &["--no-config", "-c", &program]).map(|out| {
            out.lines()
                .map(|l| l.split('\t').next().unwrap_or(l).to_owned())
                .collect::<Vec<_>>()
        })
    };
    let ca = complete("rmemring ca")?;
    if ca != ["cat"] {
        return Err(format!("fish completes `rmemring ca` to {ca:?}"));
    }
    let fo = complete("rmemring cat --fo")?;
    if fo != ["--format"] {
        return Err(format!("fish completes `rmemring cat --fo` to {fo:?}"));
    }
    Ok(())
}

/// The first half of `script`, cut in the middle of a line: just inside
/// the first single-quoted word that opens past the middle (` '`), so that
/// the cut cannot fall where the rest still parses (between two commands).
fn truncated(script: &str) -> &str {
    let mut middle = script.len() / 2;
    while !script.is_char_boundary(middle) {
        middle -= 1;
    }
    let cut = script[middle..]
        .find(" '")
        .map_or(middle, |i| middle + i + 2);
    &script[..cut]
}

#[test]
fn zsh_completion_parses_and_loads_and_a_broken_one_does_not() {
    if !have_or_required("zsh") {
        return;
    }
    let dir = temp_dir("zsh");
    let script = stdout(&["completions", "zsh"]);
    std::fs::write(dir.path().join("_rmemring"), &script).unwrap();
    check_zsh(dir.path()).unwrap();

    std::fs::write(dir.path().join("_rmemring"), truncated(&script)).unwrap();
    assert!(check_zsh(dir.path()).is_err(), "a truncated script passed");
}

#[test]
fn fish_completion_parses_loads_and_completes_and_a_broken_one_does_not() {
    if !have_or_required("fish") {
        return;
    }
    let dir = temp_dir("fish");
    let path = dir.path().join("rmemring.fish");
    let script = stdout(&["completions", "fish"]);
    std::fs::write(&path, &script).unwrap();
    check_fish(&path).unwrap();

    std::fs::write(&path, truncated(&script)).unwrap();
    assert!(check_fish(&path).is_err(), "a truncated script passed");
}

/// `page` rendered by groff as text, failing on any warning (`-ww`).
fn groff(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=200n"])
        .arg(page)
        .env("GROFF_NO_SGR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "groff {}: {out:?}", page.display());
    assert!(
        out.stderr.is_empty(),
        "groff warns about {}:\n{}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Bold and underlined text comes as overstrikes: keep the letters.
    let text = String::from_utf8(out.stdout).unwrap();
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        plain.push(c);
    }
    plain
}

#[test]
fn a_manual_page_for_the_command_and_each_subcommand() {
    let dir = temp_dir("man");
    let out = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let render = have("groff");
    if !render {
        eprintln!("groff is not installed: the pages are checked as text only");
    }

    let main = dir.path().join("rmemring.1");
    let printed = stdout(&["man"]);
    assert_eq!(std::fs::read_to_string(&main).unwrap(), printed);
    assert!(printed.contains(".TH rmemring 1"), "{printed}");
    let subcommands = subcommands();
    for name in &subcommands {
        assert!(
            printed.contains(&format!("rmemring\\-{}(1)", name.replace('-', "\\-"))),
            "rmemring.1 does not list {name}"
        );
    }
    if render {
        let text = groff(&main);
        assert!(
            text.contains("EXIT STATUS") && text.contains("EX_NOPERM"),
            "{text}"
        );
    }

    let mut expected: Vec<String> = subcommands
        .iter()
        .map(|name| format!("rmemring-{name}.1"))
        .chain(["rmemring.1".to_owned()])
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);

    for name in &subcommands {
        let page = dir.path().join(format!("rmemring-{name}.1"));
        let roff = std::fs::read_to_string(&page).unwrap();
        assert!(
            roff.contains(&format!(".TH rmemring-{name} 1")),
            "{name}: {roff}"
        );
        // Every option --help shows, as the page spells it (roff escapes
        // the dashes), and as it reads once rendered.
        let text = render.then(|| groff(&page));
        for option in long_options(name) {
            let escaped = option.replace('-', "\\-");
            assert!(roff.contains(&escaped), "rmemring-{name}.1 lacks {option}");
            if let Some(text) = &text {
                assert!(
                    text.contains(&option),
                    "rmemring-{name}.1 renders without {option}:\n{text}"
                );
            }
        }
    }
}
