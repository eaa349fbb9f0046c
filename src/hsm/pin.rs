//! Where a PIN comes from. Never from the command line: argv is visible to
//! every user of the machine and lands in shell history.

use std::path::PathBuf;

use secrecy::SecretString;
use zeroize::Zeroizing;

/// Where to read a token PIN from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// Ask on the terminal without echo.
    Prompt,
    /// Read from this environment variable.
    Env(String),
    /// Read the first line of this file.
    File(PathBuf),
}

/// Why no PIN could be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The environment variable is unset or empty.
    #[error(
        "environment variable {0} is not set or is empty; export the PIN in it or use --pin-file"
    )]
    EnvMissing(String),
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PIN file is empty.
    #[error("the PIN file {0} is empty")]
    FileEmpty(PathBuf),
    /// No terminal to prompt on.
    #[error("cannot prompt for the {what} PIN: no terminal ({source}); use --pin-env VAR or --pin-file PATH")]
    NoTerminal {
        /// Which PIN.
        what: String,
        /// The terminal error.
        source: std::io::Error,
    },
    /// The typed PIN was empty.
    #[error("no PIN was entered")]
    Empty,
}

impl PinSource {
    /// Read the PIN; `what` names the token in the prompt.
    pub fn read(&self, what: &str) -> Result<SecretString, PinError> {
        match self {
            PinSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => Err(PinError::EnvMissing(var.clone())),
            },
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    PinError::File {
                        path: path.clone(),
                        source,
                    }
                })?);
                let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
                if line.is_empty() {
                    return Err(PinError::FileEmpty(path.clone()));
                }
                Ok(SecretString::from(line.to_string()))
            }
            PinSource::Prompt => {
                let typed = Zeroizing::new(
                    rpassword::prompt_password(format!("PIN for {what} (input hidden): "))
                        .map_err(|source| PinError::NoTerminal {
                            what: what.to_string(),
                            source,
                        })?,
                );
                if typed.is_empty() {
                    return Err(PinError::Empty);
                }
                Ok(SecretString::from(typed.to_string()))
            }
        }
    }
}
