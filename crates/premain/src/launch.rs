//! Applying the activation response and starting the real program.
//!
//! Files are written first (mode 0600, parent directories 0700, truncating), those under
//! `/dev/attestation/keys/` and the legacy `/dev/attestation/protected_files_key` before the
//! others so that Gramine's encrypted-files keys exist before files that use them. The
//! environment of the program is the premain's, with the response's `Env` set over it. Then the
//! premain replaces itself with the program (`execve`):
//!
//! - the executable is the program given on the premain's command line
//!   (`quarry-premain /app/server …`, or Gramine's `loader.argv`); without one, the first entry
//!   of the manifest's `Argv`;
//! - the arguments (including `argv[0]`) are the manifest's `Argv`, or, when it is empty, the
//!   premain's own arguments after its name.
//!
//! `MARBLE_TTLS_CONFIG` is refused, as MarbleRun's Gramine and Occlum premains refuse it:
//! transparent TLS needs EGo's or EdgelessRT's socket hooks, which a launcher cannot provide.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use quarry_marble_api::Parameters;
use zeroize::Zeroizing;

use crate::identity::write_private_file;

/// The variable of the transparent-TLS configuration.
pub const TTLS_CONFIG: &str = "MARBLE_TTLS_CONFIG";

/// Why the parameters could not be applied or the program not started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The response asks for transparent TLS.
    #[error(
        "the manifest gives this marble TLS tags ({TTLS_CONFIG}); transparent TLS needs an EGo \
         or EdgelessRT marble and is not supported by quarry-premain"
    )]
    TtlsUnsupported,
    /// A file path is not absolute or relative-safe.
    #[error("file path {0:?} is empty")]
    EmptyPath(String),
    /// A file could not be written.
    #[error("writing file {path}")]
    WriteFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An environment variable cannot be set.
    #[error("environment variable {name:?}: {reason}")]
    InvalidEnv {
        /// The name (lossy).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Neither the manifest nor the command line names a program.
    #[error(
        "no program to start: the manifest's Argv is empty and none was given after quarry-premain"
    )]
    NoProgram,
    /// `execve` failed.
    #[error("starting {program}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the program is started with.
#[derive(Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// The executable.
    pub program: OsString,
    /// `argv`, `argv[0]` included.
    pub argv: Vec<OsString>,
}

/// Decides the executable and arguments from the manifest's `Argv` and the premain's own
/// arguments after its name (see the module documentation).
pub fn plan(manifest_argv: &[String], own_args: &[OsString]) -> Result<LaunchPlan, LaunchError> {
    let argv: Vec<OsString> = if manifest_argv.is_empty() {
        own_args.to_vec()
    } else {
        manifest_argv.iter().map(OsString::from).collect()
    };
    let program = own_args
        .first()
        .or_else(|| argv.first())
        .cloned()
        .ok_or(LaunchError::NoProgram)?;
    if argv.is_empty() {
        return Err(LaunchError::NoProgram);
    }
    Ok(LaunchPlan { program, argv })
}

/// Checks the response and writes its files; returns the environment to set.
pub fn apply(
    parameters: &Parameters,
) -> Result<BTreeMap<OsString, Zeroizing<Vec<u8>>>, LaunchError> {
    if parameters.env.contains_key(TTLS_CONFIG) {
        return Err(LaunchError::TtlsUnsupported);
    }
    let mut env = BTreeMap::new();
    for (name, value) in &parameters.env {
        let invalid = |reason| LaunchError::InvalidEnv {
            name: name.clone(),
            reason,
        };
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(invalid("the name must be non-empty without '=' or NUL"));
        }
        if value.contains(&0) {
            return Err(invalid("the value contains a NUL byte"));
        }
        env.insert(OsString::from(name), Zeroizing::new(value.clone()));
    }

    let is_key = |path: &str| {
        path.starts_with("/dev/attestation/keys/") || path == "/dev/attestation/protected_files_key"
    };
    let keys_first = parameters
        .files
        .iter()
        .filter(|(path, _)| is_key(path))
        .chain(parameters.files.iter().filter(|(path, _)| !is_key(path)));
    for (path, content) in keys_first {
        if path.is_empty() {
            return Err(LaunchError::EmptyPath(path.clone()));
        }
        write_private_file(Path::new(path), content).map_err(|source| LaunchError::WriteFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(env)
}

/// Replaces this process with the program; returns only on failure.
pub fn exec(plan: &LaunchPlan, env: &BTreeMap<OsString, Zeroizing<Vec<u8>>>) -> LaunchError {
    use std::os::unix::process::CommandExt;

    let mut command = std::process::Command::new(&plan.program);
    command.arg0(&plan.argv[0]).args(&plan.argv[1..]);
    for (name, value) in env {
        command.env(name, OsStr::from_bytes(value));
    }
    let source = command.exec();
    LaunchError::Exec {
        program: plan.program.to_string_lossy().into_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn manifest_argv_wins_but_the_command_line_names_the_program() {
        let p = plan(
            &["server".into(), "--port=1".into()],
            &os(&["/app/server", "-x"]),
        )
        .unwrap();
        assert_eq!(p.program, "/app/server");
        assert_eq!(p.argv, os(&["server", "--port=1"]));

        let p = plan(&[], &os(&["/bin/echo", "hi"])).unwrap();
        assert_eq!(p.program, "/bin/echo");
        assert_eq!(p.argv, os(&["/bin/echo", "hi"]));

        let p = plan(&["/bin/true".into()], &[]).unwrap();
        assert_eq!(p.program, "/bin/true");

        assert!(matches!(plan(&[], &[]), Err(LaunchError::NoProgram)));
    }

    #[test]
    fn ttls_and_bad_env_names_are_refused() {
        let mut params = Parameters::default();
        params.env.insert(TTLS_CONFIG.into(), b"{}".to_vec());
        assert!(matches!(apply(&params), Err(LaunchError::TtlsUnsupported)));
        let mut params = Parameters::default();
        params.env.insert("A=B".into(), b"x".to_vec());
        assert!(matches!(
            apply(&params),
            Err(LaunchError::InvalidEnv { .. })
        ));
        let mut params = Parameters::default();
        params.env.insert("A".into(), b"x\0".to_vec());
        assert!(matches!(
            apply(&params),
            Err(LaunchError::InvalidEnv { .. })
        ));
    }

    #[test]
    fn files_are_written_private_with_their_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret.bin");
        let mut params = Parameters::default();
        params
            .files
            .insert(path.display().to_string(), vec![0, 1, 255]);
        params.env.insert("KEY".into(), b"v".to_vec());
        let env = apply(&params).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [0, 1, 255]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(env[&OsString::from("KEY")].as_slice(), b"v");
    }
}
