//! Which PKCS#11 module this workstation loads. It never comes from the media:
//! a ceremony file may only say which module and token it *expects*, and a
//! difference stops `plan` and `run` before anything is loaded.
//!
//! In order of precedence:
//! 1. `--module PATH` (and `--module-init-string`) on the command line;
//! 2. the environment variable [`MODULE_ENV`];
//! 3. the workstation's configuration file, [`CONFIG_PATH`] (or the file named
//!    by [`CONFIG_ENV`]), which must be a regular file owned by root and
//!    writable by nobody else, in a directory with the same properties:
//!    `{"module": "/usr/lib/…/libvendor.so", "module_init_string": "…"}`;
//! 4. [`DEFAULT_MODULE`] (SoftHSM2 from Debian, for rehearsals).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hsm::ModuleSpec;

/// The workstation-local HSM configuration file.
pub const CONFIG_PATH: &str = "/etc/byok-ceremony/hsm.json";
/// Environment variable naming another configuration file (same ownership rules).
pub const CONFIG_ENV: &str = "BYOK_HSM_CONFIG";
/// Environment variable naming the module.
pub const MODULE_ENV: &str = "BYOK_PKCS11_MODULE";
/// The module used when nothing else names one.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const MAX_CONFIG: u64 = 16 * 1024;

/// Where the module path came from (shown by `plan` and recorded by `run`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum ModuleOrigin {
    /// `--module`.
    CommandLine,
    /// [`MODULE_ENV`].
    Environment,
    /// The workstation's configuration file.
    ConfigFile(PathBuf),
    /// [`DEFAULT_MODULE`].
    BuiltInDefault,
}

impl fmt::Display for ModuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleOrigin::CommandLine => f.write_str("--module"),
            ModuleOrigin::Environment => write!(f, "${MODULE_ENV}"),
            ModuleOrigin::ConfigFile(p) => write!(f, "workstation configuration {}", p.display()),
            ModuleOrigin::BuiltInDefault => f.write_str("built-in default"),
        }
    }
}

/// The module this workstation will load, and where that choice came from.
#[derive(Clone, Debug)]
pub struct LocalModule {
    /// Path and init string.
    pub spec: ModuleSpec,
    /// Where the path came from.
    pub origin: ModuleOrigin,
}

/// Why the local module could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum ModuleConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read the HSM configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file could be changed by someone other than root.
    #[error("the HSM configuration {path} is not trustworthy: {why}. It must be a regular file owned by root and writable by nobody else (chown root:root, chmod 644), in a directory with the same properties; or name the module with --module")]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The configuration file is not valid.
    #[error("the HSM configuration {path} is not valid ({reason}); expected {{\"module\": \"/absolute/path/libvendor.so\", \"module_init_string\": \"…\"}}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    module: PathBuf,
    #[serde(default)]
    module_init_string: Option<String>,
}

/// Work out the module from the command line, the environment, the
/// configuration file or the default (see the module docs).
pub fn resolve(
    cli_module: Option<&Path>,
    cli_init_string: Option<&str>,
) -> Result<LocalModule, ModuleConfigError> {
    let init = cli_init_string.map(str::to_string);
    if let Some(path) = cli_module {
        return Ok(local(path.to_path_buf(), init, ModuleOrigin::CommandLine));
    }
    if let Some(path) = std::env::var_os(MODULE_ENV).filter(|v| !v.is_empty()) {
        return Ok(local(PathBuf::from(path), init, ModuleOrigin::Environment));
    }
    let config = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONFIG_PATH));
    match std::fs::symlink_metadata(&config) {
        Ok(_) => {
            let c = read_config(&config)?;
            Ok(local(
                c.module,
                init.or(c.module_init_string),
                ModuleOrigin::ConfigFile(config),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !config_named_explicitly() => Ok(
            local(DEFAULT_MODULE.into(), init, ModuleOrigin::BuiltInDefault),
        ),
        Err(source) => Err(ModuleConfigError::Read {
            path: config,
            source,
        }),
    }
}

fn config_named_explicitly() -> bool {
    std::env::var_os(CONFIG_ENV).is_some_and(|v| !v.is_empty())
}

fn local(path: PathBuf, init_string: Option<String>, origin: ModuleOrigin) -> LocalModule {
    LocalModule {
        spec: ModuleSpec { path, init_string },
        origin,
    }
}

fn read_config(path: &Path) -> Result<ConfigFile, ModuleConfigError> {
    trusted_by_root(path, true)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        trusted_by_root(dir, false)?;
    }
    let invalid = |reason: String| ModuleConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = crate::media::read_bounded(path, "HSM configuration", MAX_CONFIG)
        .map_err(|e| invalid(e.to_string()))?;
    let c: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if !c.module.is_absolute() {
        return Err(invalid(format!(
            "module {} is not an absolute path",
            c.module.display()
        )));
    }
    Ok(c)
}

fn trusted_by_root(path: &Path, is_file: bool) -> Result<(), ModuleConfigError> {
    use std::os::unix::fs::MetadataExt;
    let untrusted = |why: String| ModuleConfigError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|source| ModuleConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if is_file && !meta.file_type().is_file() {
        return Err(untrusted("it is not a regular file (a symlink?)".into()));
    }
    if !is_file && !meta.file_type().is_dir() {
        return Err(untrusted("its directory is not a plain directory".into()));
    }
    if meta.uid() != 0 {
        return Err(untrusted(format!("it is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "it is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// What a ceremony file may say about the HSM it expects; checked against
/// the local module and token, never used to choose them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The module path the ceremony was planned for.
    pub module: Option<&'a Path>,
    /// The init string it was planned with.
    pub module_init_string: Option<&'a str>,
}

/// The ceremony file expects another module than this workstation's.
#[derive(Debug, thiserror::Error)]
#[error("the ceremony file expects the HSM module {expected} but this workstation uses {actual} (from {origin}); nothing was loaded. The module is never taken from the media: if {expected} is right, pass --module {expected} (or set ${MODULE_ENV}), otherwise correct the ceremony file")]
pub struct ModuleMismatch {
    /// What the file expects.
    pub expected: String,
    /// What this workstation uses.
    pub actual: String,
    /// Where that came from.
    pub origin: ModuleOrigin,
}

impl LocalModule {
    /// Check a ceremony file's expectations; loads nothing.
    pub fn check_expected(&self, expected: &Expected<'_>) -> Result<(), ModuleMismatch> {
        let mismatch = |e: String, a: String| ModuleMismatch {
            expected: e,
            actual: a,
            origin: self.origin.clone(),
        };
        if let Some(want) = expected.module {
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if !want.is_absolute() || canon(want) != canon(&self.spec.path) {
                return Err(mismatch(
                    want.display().to_string(),
                    self.spec.path.display().to_string(),
                ));
            }
        }
        if let Some(want) = expected.module_init_string {
            if Some(want) != self.spec.init_string.as_deref() {
                return Err(mismatch(
                    format!("{} with init string {want:?}", self.spec.path.display()),
                    format!(
                        "{} with init string {:?}",
                        self.spec.path.display(),
                        self.spec.init_string.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_and_expectations_are_compared_not_used() {
        let m = resolve(Some(Path::new("/usr/lib/x.so")), Some("cfg")).unwrap();
        assert_eq!(m.origin, ModuleOrigin::CommandLine);
        assert_eq!(m.spec.init_string.as_deref(), Some("cfg"));
        m.check_expected(&Expected::default()).unwrap();
        m.check_expected(&Expected {
            module: Some(Path::new("/usr/lib/x.so")),
            module_init_string: Some("cfg"),
        })
        .unwrap();
        let e = m
            .check_expected(&Expected {
                module: Some(Path::new("params/libvendor.so")),
                module_init_string: None,
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("params/libvendor.so") && e.contains("nothing was loaded"),
            "{e}"
        );
        assert!(m
            .check_expected(&Expected {
                module: None,
                module_init_string: Some("other"),
            })
            .is_err());
    }

    #[test]
    fn config_file_must_be_owned_by_root_and_not_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = dir.path().join("hsm.json");
        std::fs::write(
            &p,
            br#"{"module": "/usr/lib/vendor.so", "module_init_string": "x"}"#,
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = nix_is_root();
        match read_config(&p) {
            Ok(c) => {
                assert!(root);
                assert_eq!(c.module, Path::new("/usr/lib/vendor.so"));
            }
            Err(e) => assert!(
                !root && matches!(e, ModuleConfigError::Untrusted { .. }),
                "{e}"
            ),
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            read_config(&p),
            Err(ModuleConfigError::Untrusted { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            read_config(&link),
            Err(ModuleConfigError::Untrusted { .. })
        ));
        if root {
            std::fs::write(&p, br#"{"module": "relative.so"}"#).unwrap();
            assert!(matches!(
                read_config(&p),
                Err(ModuleConfigError::Invalid { .. })
            ));
        }
    }

    fn nix_is_root() -> bool {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::metadata(dir.path()).unwrap().uid() == 0
    }
}
