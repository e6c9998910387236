//! The results of the checks: `ok - NAME`, `not ok - NAME: WHY`, skips, and
//! the exit status they make.

use std::process::ExitCode;

/// Results of the checks so far.
#[derive(Default)]
pub(crate) struct Report {
    passed: u32,
    failed: u32,
    /// Whether a skipped check counts as a failure (`--strict`).
    strict: bool,
}

impl Report {
    /// No results yet; `strict`: a skip is a failure.
    pub(crate) fn new(strict: bool) -> Self {
        Self {
            strict,
            ..Self::default()
        }
    }

    /// Records one check.
    pub(crate) fn check(&mut self, name: &str, result: anyhow::Result<()>) {
        match result {
            Ok(()) => {
                println!("ok - {name}");
                self.passed += 1;
            }
            Err(e) => {
                println!("not ok - {name}: {e:#}");
                self.failed += 1;
            }
        }
    }

    /// Records a check that a condition holds.
    pub(crate) fn expect(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        let result = if ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!(why()))
        };
        self.check(name, result);
    }

    /// Records a check that cannot run here, and why: a pass, or under
    /// `--strict` a failure.
    pub(crate) fn skip(&mut self, name: &str, why: &str) {
        if self.strict {
            println!("not ok - {name}: skipped, which --strict forbids: {why}");
            self.failed += 1;
        } else {
            println!("ok - {name} # SKIP: {why}");
        }
    }

    /// Prints the totals; the exit status is the number of failures,
    /// capped at 100 (a status is one byte, and above 128 a shell reads a
    /// signal).
    pub(crate) fn finish(&self) -> ExitCode {
        println!("# {} passed, {} failed", self.passed, self.failed);
        ExitCode::from(self.failed.min(100) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn a_skip_passes_unless_strict() {
        let mut lenient = Report::new(false);
        lenient.skip("group", "not here");
        assert_eq!((lenient.passed, lenient.failed), (0, 0));
        let mut strict = Report::new(true);
        strict.skip("group", "not here");
        assert_eq!((strict.passed, strict.failed), (0, 1));
    }
}
