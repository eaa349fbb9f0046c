//! What `byok-airgap` asks a person, and when it may not ask.
//!
//! The rules for each command (is there a terminal to ask on, was the value
//! given on the command line, may the question be skipped) are decided here,
//! before anything is loaded, as typed requests whose `validate` says how the
//! value will be confirmed or why the command cannot run. [`Prompt`] is the
//! one place that reads a typed answer: a value typed back (a fingerprint or a
//! digest, with retries for typing slips) or an exact word (the ceremony ID,
//! `sign`).

use std::io::{BufRead, Write};

use super::Error;

/// How a value shown on the bastion's screen is confirmed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Given on the command line (`--expect-…`).
    Expected(String),
    /// Typed back by a person at the terminal.
    TypedBack,
}

/// `wrap`: the wrapping key's fingerprint must be confirmed.
#[derive(Clone, Debug)]
pub struct WrapConfirmation {
    /// `--expect-wrapping-key-sha256`.
    pub expect_wrapping_key_sha256: Option<String>,
    /// Whether standard input is a terminal.
    pub terminal: bool,
}

impl WrapConfirmation {
    /// The given fingerprint, else a person types it back; without a
    /// terminal and without one given, the wrap cannot be confirmed.
    pub fn validate(&self) -> Result<Confirmation, Error> {
        match (&self.expect_wrapping_key_sha256, self.terminal) {
            (Some(e), _) => Ok(Confirmation::Expected(e.clone())),
            (None, true) => Ok(Confirmation::TypedBack),
            (None, false) => Err(Error::FingerprintNotConfirmed),
        }
    }
}

/// `ceremony run`: the ceremony ID and the parameters digest.
#[derive(Clone, Debug)]
pub struct RunConfirmation {
    /// `--non-interactive`: do not ask for the ceremony ID.
    pub non_interactive: bool,
    /// `--expect-parameters-digest`.
    pub expect_parameters_digest: Option<String>,
    /// Whether standard input is a terminal.
    pub terminal: bool,
}

impl RunConfirmation {
    /// How the parameters digest is confirmed. Interactive runs need a
    /// terminal; `--non-interactive` alone (no digest, no terminal) is refused.
    pub fn validate(&self) -> Result<Confirmation, Error> {
        if !self.non_interactive && !self.terminal {
            return Err(Error::NoTerminalToRun);
        }
        match (&self.expect_parameters_digest, self.terminal) {
            (Some(e), _) => Ok(Confirmation::Expected(e.clone())),
            (None, true) => Ok(Confirmation::TypedBack),
            (None, false) => Err(Error::ParametersNotConfirmed),
        }
    }
}

/// `ceremony sign`: a custodian confirms by typing `sign`, unless `--yes`.
#[derive(Clone, Debug)]
pub struct SignConfirmation {
    /// `--yes`.
    pub yes: bool,
    /// Whether standard input is a terminal.
    pub terminal: bool,
}

impl SignConfirmation {
    /// Whether to ask (`true`), not to ask (`--yes`), or why it cannot run.
    pub fn validate(&self) -> Result<bool, Error> {
        match (self.yes, self.terminal) {
            (true, _) => Ok(false),
            (false, true) => Ok(true),
            (false, false) => Err(Error::NoTerminalToSign),
        }
    }

    /// What the attestation records about the confirmation.
    pub fn recorded(&self) -> &'static str {
        if self.yes {
            "--yes"
        } else {
            "typed"
        }
    }
}

/// How many times a typing slip (not 64 hex digits) may be retried.
pub const TYPE_BACK_ATTEMPTS: usize = 3;

/// Questions asked of the person at the terminal: reads answers from `input`,
/// writes questions to `output` (standard error, so that standard output
/// stays for results).
pub struct Prompt<R, W> {
    input: R,
    output: W,
}

impl Prompt<std::io::StdinLock<'static>, std::io::Stderr> {
    /// Questions on standard error, answers from standard input.
    pub fn terminal() -> Self {
        Prompt::new(std::io::stdin().lock(), std::io::stderr())
    }
}

impl<R: BufRead, W: Write> Prompt<R, W> {
    /// Questions to `output`, answers from `input`.
    pub fn new(input: R, output: W) -> Self {
        Prompt { input, output }
    }

    fn ask(&mut self, question: &str) -> Option<String> {
        // A failed write to the terminal still lets the answer be read.
        let _ = write!(self.output, "{question}");
        let _ = self.output.flush();
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    }

    /// Ask for a value shown on the bastion (a fingerprint or a digest) and
    /// `check` what is typed. A typing slip ([`Error::FingerprintFormat`]) may
    /// be retried up to [`TYPE_BACK_ATTEMPTS`] times in all (the last slip's
    /// error is returned); a different value stops everything with `check`'s
    /// error, no answer (end of input) with `unconfirmed`.
    pub fn type_back<T>(
        &mut self,
        question: &str,
        unconfirmed: Error,
        check: impl Fn(&str) -> Result<T, Error>,
    ) -> Result<T, Error> {
        for attempt in 1..=TYPE_BACK_ATTEMPTS {
            let Some(line) = self.ask(question) else {
                return Err(unconfirmed);
            };
            match check(&line) {
                Err(Error::FingerprintFormat(_)) if attempt < TYPE_BACK_ATTEMPTS => {
                    let _ = writeln!(
                        self.output,
                        "That is not 64 hex digits (spaces are fine). Try again."
                    );
                }
                other => return other,
            }
        }
        Err(unconfirmed)
    }

    /// Ask for an exact word (surrounding spaces ignored); whether it was typed.
    pub fn type_exactly(&mut self, question: &str, expected: &str) -> bool {
        self.ask(question)
            .is_some_and(|line| line.trim() == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_rules() {
        let cases: [(Option<&str>, bool, Result<Confirmation, &str>); 4] = [
            (Some("ab"), true, Ok(Confirmation::Expected("ab".into()))),
            (Some("ab"), false, Ok(Confirmation::Expected("ab".into()))),
            (None, true, Ok(Confirmation::TypedBack)),
            (
                None,
                false,
                Err("the wrapping key fingerprint must be confirmed before wrapping: run interactively and type it back, or pass --expect-wrapping-key-sha256 HEX with the value the bastion printed"),
            ),
        ];
        for (expect, terminal, want) in cases {
            let got = WrapConfirmation {
                expect_wrapping_key_sha256: expect.map(String::from),
                terminal,
            }
            .validate()
            .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{expect:?} {terminal}");
        }
    }

    type RunCase<'a> = (bool, Option<&'a str>, bool, Result<Confirmation, &'a str>);

    #[test]
    fn run_rules() {
        let no_terminal = "no terminal to confirm on; pass --non-interactive with --expect-parameters-digest HEX (both are recorded in the transcript)";
        let alone = Error::ParametersNotConfirmed.to_string();
        let cases: [RunCase; 8] = [
            // non_interactive, expect, terminal
            (false, None, true, Ok(Confirmation::TypedBack)),
            (
                false,
                Some("d"),
                true,
                Ok(Confirmation::Expected("d".into())),
            ),
            (false, None, false, Err(no_terminal)),
            (false, Some("d"), false, Err(no_terminal)),
            (
                true,
                Some("d"),
                false,
                Ok(Confirmation::Expected("d".into())),
            ),
            (
                true,
                Some("d"),
                true,
                Ok(Confirmation::Expected("d".into())),
            ),
            (true, None, true, Ok(Confirmation::TypedBack)),
            (true, None, false, Err(&alone)),
        ];
        for (non_interactive, expect, terminal, want) in cases {
            let r = RunConfirmation {
                non_interactive,
                expect_parameters_digest: expect.map(String::from),
                terminal,
            };
            let got = r.validate().map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{r:?}");
        }
        assert!(alone.contains("--expect-parameters-digest"), "{alone}");
    }

    #[test]
    fn sign_rules() {
        let no_terminal = "no terminal to confirm on; pass --yes to sign non-interactively (it is recorded in the attestation)";
        for (yes, terminal, want, recorded) in [
            (true, false, Ok(false), "--yes"),
            (true, true, Ok(false), "--yes"),
            (false, true, Ok(true), "typed"),
            (false, false, Err(no_terminal), "typed"),
        ] {
            let s = SignConfirmation { yes, terminal };
            let got = s.validate().map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{s:?}");
            assert_eq!(s.recorded(), recorded);
        }
    }

    fn prompt(input: &str) -> Prompt<&[u8], Vec<u8>> {
        Prompt::new(input.as_bytes(), Vec::new())
    }

    fn hex64(s: &str) -> Result<String, Error> {
        let t: String = s.split_whitespace().collect();
        if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            if t == "ab".repeat(32) {
                Ok(t)
            } else {
                Err(Error::FingerprintNotConfirmed)
            }
        } else {
            Err(Error::FingerprintFormat(t))
        }
    }

    #[test]
    fn type_back_retries_slips_only() {
        let good = "ab".repeat(32);
        // Two slips, then the value.
        let input = format!("12\nxyz\n{good}\n");
        let mut p = prompt(&input);
        assert_eq!(
            p.type_back("Q: ", Error::NotConfirmed, hex64).unwrap(),
            good
        );
        let shown = String::from_utf8(p.output).unwrap();
        assert_eq!(shown.matches("Q: ").count(), 3);
        assert_eq!(shown.matches("Try again.").count(), 2);
        // Three slips: stopped, with the third slip's error.
        let mut p = prompt("1\n2\n3\n");
        assert!(matches!(
            p.type_back("Q: ", Error::ParametersNotConfirmed, hex64),
            Err(Error::FingerprintFormat(t)) if t == "3"
        ));
        // Another value is not retried.
        let input = format!("{}\n{good}\n", "cd".repeat(32));
        let mut p = prompt(&input);
        assert!(matches!(
            p.type_back("Q: ", Error::NotConfirmed, hex64),
            Err(Error::FingerprintNotConfirmed)
        ));
        // No answer at all (end of input).
        let mut p = prompt("");
        assert!(matches!(
            p.type_back("Q: ", Error::NotConfirmed, hex64),
            Err(Error::NotConfirmed)
        ));
    }

    #[test]
    fn type_exactly_needs_the_word() {
        assert!(prompt("  sign \n").type_exactly("Type 'sign': ", "sign"));
        assert!(!prompt("Sign\n").type_exactly("Type 'sign': ", "sign"));
        assert!(!prompt("").type_exactly("Type 'sign': ", "sign"));
        let mut p = prompt("2026-11-prod\n");
        assert!(p.type_exactly(
            "Type the ceremony ID (2026-11-prod) to begin: ",
            "2026-11-prod"
        ));
        assert_eq!(
            String::from_utf8(p.output).unwrap(),
            "Type the ceremony ID (2026-11-prod) to begin: "
        );
    }
}
