//! [`Tool`]: a typed description of one external command, and running it.

use crate::{STDERR_TAIL_LINES, ToolError, debian_package};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a successful run wrote.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// One external command: program, arguments, environment, optional stdin and working
/// directory. Built with chained calls, run with [`Tool::run`] or [`Tool::run_with`].
#[derive(Clone, Debug)]
pub struct Tool {
    program: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_clear: bool,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
}

impl Tool {
    /// `program` is a name looked up in `PATH`, or a path.
    pub fn new(program: impl Into<String>) -> Tool {
        Tool {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            stdin: None,
            cwd: None,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Tool {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Set an environment variable for the program.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Tool {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Start from an empty environment (then only what [`Tool::env`] sets), as for a
    /// program run inside another system's tree.
    pub fn env_clear(mut self) -> Tool {
        self.env_clear = true;
        self
    }

    /// Feed these bytes on stdin (otherwise stdin is `/dev/null`).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Tool {
        self.stdin = Some(data.into());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Tool {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// The command line, shell-quoted, as errors show it.
    pub fn command_line(&self) -> String {
        std::iter::once(OsStr::new(&self.program))
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run to completion; an error unless it exits with status 0.
    pub fn run(&self) -> Result<Output, ToolError> {
        self.run_with(&mut |_, _| {})
    }

    /// Run to completion, handing every output line (without its newline) to `on_line`
    /// as it arrives, on the calling thread. Both streams are also captured whole.
    pub fn run_with(&self, on_line: &mut dyn FnMut(Stream, &str)) -> Result<Output, ToolError> {
        let command = self.command_line();
        if let Some(dir) = &self.cwd
            && let Err(source) = std::fs::metadata(dir)
        {
            return Err(ToolError::Cwd {
                command,
                dir: dir.clone(),
                source,
            });
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ToolError::Missing {
                    program: self.program.clone(),
                    package: debian_package(&self.program),
                });
            }
            Err(source) => return Err(ToolError::Spawn { command, source }),
        };
        let io_err = |why: String| ToolError::Io {
            command: command.clone(),
            why,
        };
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(io_err("no pipe to the child's output".into()));
        };
        let stdin = child.stdin.take();
        let mut output = Output::default();
        let pumped: Result<(), String> = std::thread::scope(|s| {
            if let (Some(mut pipe), Some(data)) = (stdin, self.stdin.as_deref()) {
                // A program that exits without reading all of its input is not an error
                // here; its exit status says whether it failed.
                s.spawn(move || {
                    let _ = pipe.write_all(data);
                });
            }
            let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
            let tx2 = tx.clone();
            let a = s.spawn(move || pump(out, Stream::Stdout, &tx));
            let b = s.spawn(move || pump(err, Stream::Stderr, &tx2));
            for (stream, line) in rx {
                let text = String::from_utf8_lossy(&line);
                on_line(stream, text.trim_end_matches(['\n', '\r']));
                match stream {
                    Stream::Stdout => output.stdout.extend_from_slice(&line),
                    Stream::Stderr => output.stderr.extend_from_slice(&line),
                }
            }
            for h in [a, b] {
                h.join()
                    .map_err(|_| "an output reader panicked".to_string())?
                    .map_err(|e| format!("reading its output: {e}"))?;
            }
            Ok(())
        });
        let status = child
            .wait()
            .map_err(|e| io_err(format!("waiting for it: {e}")))?;
        pumped.map_err(io_err)?;
        if status.success() {
            return Ok(output);
        }
        Err(ToolError::Failed {
            command,
            status: describe(&status),
            code: status.code(),
            stderr_tail: tail(&output.stderr, STDERR_TAIL_LINES),
        })
    }
}

fn pump(r: impl Read, stream: Stream, tx: &mpsc::Sender<(Stream, Vec<u8>)>) -> std::io::Result<()> {
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if tx.send((stream, line)).is_err() {
            return Ok(());
        }
    }
}

fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => status.to_string(),
    }
}

/// The last `n` non-empty lines of `bytes`.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Shell-quote one word (only when needed), so that a printed command can be pasted.
fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_feeds_stdin() {
        let out = Tool::new("sh")
            .args(["-c", "cat; echo err >&2"])
            .stdin("hello\n")
            .run()
            .unwrap();
        assert_eq!(out.stdout_text(), "hello\n");
        assert_eq!(out.stderr_text(), "err\n");
    }

    #[test]
    fn failure_names_command_status_and_stderr_tail() {
        let script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";
        let e = Tool::new("sh").args(["-c", script]).run().unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("sh -c 'for i in"), "{msg}");
        assert!(msg.contains("(exit status 3)"), "{msg}");
        assert!(msg.contains("line30") && msg.contains("line11"), "{msg}");
        assert!(!msg.contains("line10\n"), "{msg}");
        assert!(matches!(e, ToolError::Failed { code: Some(3), .. }));
    }

    #[test]
    fn missing_program_is_reported_with_its_package() {
        let e = Tool::new("/nonexistent/mkfs.erofs").run().unwrap_err();
        match e {
            ToolError::Missing { program, package } => {
                assert_eq!(program, "/nonexistent/mkfs.erofs");
                assert_eq!(package, Some("erofs-utils"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn env_clear_cwd_and_line_callback() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let out = Tool::new("/bin/sh")
            .args(["-c", "pwd; echo \"[$HOME][$X]\"; echo e >&2"])
            .env_clear()
            .env("X", "1")
            .current_dir(dir.path())
            .run_with(&mut |s, l| lines.push((s, l.to_string())))
            .unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(out.stdout_text(), format!("{}\n[][1]\n", cwd.display()));
        assert!(lines.contains(&(Stream::Stderr, "e".to_string())));
        assert!(lines.contains(&(Stream::Stdout, "[][1]".to_string())));
    }

    #[test]
    fn missing_cwd_is_not_mistaken_for_a_missing_program() {
        let e = Tool::new("sh")
            .current_dir("/nonexistent-dir")
            .run()
            .unwrap_err();
        assert!(matches!(e, ToolError::Cwd { .. }), "{e:?}");
    }

    #[test]
    fn quoting() {
        let t = Tool::new("echo").args(["a b", "it's", "--x=/p/q", ""]);
        assert_eq!(t.command_line(), r"echo 'a b' 'it'\''s' --x=/p/q ''");
    }
}
