//! trellis-tools: the one runner trellis uses for external programs.
//!
//! trellis relies on the field's standard tools (mmdebstrap, apt and dpkg inside a chroot,
//! `mkfs.ext4`, `mkfs.erofs`, `systemd-sysext`, ...). Every call goes through [`Tool`], so
//! that every failure reads the same way: the program, its arguments, its exit status and
//! the end of what it wrote on stderr; and a program that is not installed is reported
//! with the Debian package that provides it.

mod packages;
mod run;

pub use packages::debian_package;
pub use run::{Output, Stream, Tool};

use std::path::PathBuf;

/// How much of a failed tool's stderr an error quotes (its last lines, where tools put the
/// reason).
pub const STDERR_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not installed (not found in `PATH`, or the path given does not exist).
    #[error("{program} is not installed{}", install_hint(*.package))]
    Missing {
        program: String,
        /// The Debian package that provides it, when known.
        package: Option<&'static str>,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {command} in {dir}: {source}")]
    Cwd {
        command: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}){}", stderr_block(stderr_tail))]
    Failed {
        /// The program and its arguments, shell-quoted.
        command: String,
        /// `exit status 2`, `killed by signal 9`, ...
        status: String,
        /// The exit code, when the program exited (not killed).
        code: Option<i32>,
        /// The last [`STDERR_TAIL_LINES`] lines of stderr.
        stderr_tail: String,
    },
    #[error("{command}: {why}")]
    Io { command: String, why: String },
}

fn install_hint(package: Option<&str>) -> String {
    match package {
        Some(p) => format!(" (install the Debian package {p}: apt-get install {p})"),
        None => " (not found in PATH)".to_string(),
    }
}

fn stderr_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("  {l}")).collect();
        format!(":\n{}", indented.join("\n"))
    }
}

impl ToolError {
    /// The whole stderr tail of a failed run (empty for other errors).
    pub fn stderr_tail(&self) -> &str {
        match self {
            ToolError::Failed { stderr_tail, .. } => stderr_tail,
            _ => "",
        }
    }
}

/// Find `program` in `PATH` (or check it, when it contains a `/`).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fail with [`ToolError::Missing`] for the first of `programs` that is not installed, so
/// that a long job stops before it starts rather than half-way.
pub fn require(programs: &[&str]) -> Result<(), ToolError> {
    for p in programs {
        if which(p).is_none() {
            return Err(ToolError::Missing {
                program: (*p).to_string(),
                package: debian_package(p),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_its_package() {
        let e = require(&["sh", "mkfs.erofs-not-here"]).unwrap_err();
        assert!(matches!(e, ToolError::Missing { package: None, .. }));
        let e = ToolError::Missing {
            program: "mmdebstrap".into(),
            package: debian_package("mmdebstrap"),
        };
        assert_eq!(
            e.to_string(),
            "mmdebstrap is not installed (install the Debian package mmdebstrap: \
             apt-get install mmdebstrap)"
        );
    }

    #[test]
    fn which_finds_sh_and_checks_paths() {
        assert!(which("sh").is_some());
        assert!(which("/bin/sh").is_some());
        assert!(which("/nonexistent/sh").is_none());
    }
}
