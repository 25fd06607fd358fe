//! A QEMU guest driven over its serial console: start it (TCG, OVMF, virtio disk, user-mode
//! network), wait for text, type commands and read their exit status.
//!
//! The console is QEMU's stdio: a reader thread appends everything the guest prints to a
//! buffer and to a log file, so a failure can show what the guest said.

use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// What the guest needs from the host.
pub struct VmConfig {
    pub disk: PathBuf,
    /// The writable copy of the OVMF variable store (made once per disk: the EFI variables
    /// survive reboots and restarts of QEMU, as on real hardware).
    pub vars: PathBuf,
    pub serial_log: PathBuf,
    pub memory_mib: u32,
}

impl VmConfig {
    /// Copy a fresh OVMF variable store to `vars` (for a new machine).
    pub fn fresh_vars(vars: &Path) -> Result<()> {
        fs::copy(OVMF_VARS, vars)
            .with_context(|| format!("copying {OVMF_VARS} (package ovmf) to {}", vars.display()))?;
        Ok(())
    }
}

pub struct Vm {
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<Vec<u8>>>,
    /// Everything before this offset in `console` has been matched already.
    cursor: usize,
    serial_log: PathBuf,
    commands: u32,
}

impl Vm {
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        let format = if cfg.disk.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", "q35", "-accel", "tcg", "-smp", "2"])
            .args(["-m", &cfg.memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "none"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                cfg.vars.display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=virtio,format={format},file={}",
                cfg.disk.display()
            ))
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .args([
                "-chardev",
                "stdio,id=s0,signal=off",
                "-serial",
                "chardev:s0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
        let stdin = child.stdin.take().context("qemu's stdin")?;
        let mut stdout = child.stdout.take().context("qemu's stdout")?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&cfg.serial_log)
            .with_context(|| format!("opening {}", cfg.serial_log.display()))?;
        let sink = console.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log.write_all(&buf[..n]);
                        if let Ok(mut c) = sink.lock() {
                            c.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        });
        Ok(Vm {
            child,
            stdin,
            console,
            cursor: 0,
            serial_log: cfg.serial_log.clone(),
            commands: 0,
        })
    }

    /// Wait until `needle` appears after the cursor; return what came before it and move
    /// the cursor past it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let found = self.wait_for_any(&[needle], timeout)?;
        Ok(found.1)
    }

    /// Wait for the first of `needles`; returns its index and the text before it.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> Result<(usize, String)> {
        let start = Instant::now();
        loop {
            if let Some(hit) = self.find(needles) {
                return Ok(hit);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the VM stopped ({status}) while waiting for {needles:?}\n{}",
                    self.tail(40)
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {}s waiting for {needles:?} on the serial console\n{}",
                    timeout.as_secs(),
                    self.tail(40)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn find(&mut self, needles: &[&str]) -> Option<(usize, String)> {
        let console = self.console.lock().ok()?;
        let hay = &console[self.cursor..];
        let mut best: Option<(usize, usize, usize)> = None; // (pos, index, len)
        for (i, n) in needles.iter().enumerate() {
            if let Some(pos) = find_bytes(hay, n.as_bytes())
                && best.is_none_or(|(p, _, _)| pos < p)
            {
                best = Some((pos, i, n.len()));
            }
        }
        let (pos, index, len) = best?;
        let before = String::from_utf8_lossy(&hay[..pos]).into_owned();
        self.cursor += pos + len;
        Some((index, before))
    }

    /// Type `text` on the console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        self.stdin
            .write_all(text.as_bytes())
            .and_then(|()| self.stdin.flush())
            .context("typing on the VM's serial console")
    }

    /// Run a shell command in the logged-in guest; its exit status and output.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        self.commands += 1;
        let n = self.commands;
        // The quotes split the marker in the echoed command line, so only the output of
        // `echo` matches it.
        self.send(&format!("{cmd}; echo \"@@E{n}\"\"=$?@@\"\n"))?;
        let marker = format!("@@E{n}=");
        let out = self
            .wait_for(&marker, timeout)
            .with_context(|| format!("running `{cmd}` in the guest"))?;
        let rc = self.wait_for("@@", Duration::from_secs(10))?;
        let rc: i32 = rc
            .trim()
            .parse()
            .with_context(|| format!("reading the exit status of `{cmd}`: {rc:?}"))?;
        // Drop the prompt and the echoed command line.
        let echoed = format!("\"@@E{n}\"\"");
        let out = match out.find(&echoed) {
            Some(i) => match out[i..].find('\n') {
                Some(j) => out[i + j + 1..].to_string(),
                None => String::new(),
            },
            None => out,
        };
        Ok((rc, clean(&out)))
    }

    /// Run a command that must succeed; its output.
    pub fn ok(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        let (rc, out) = self.run(cmd, timeout)?;
        if rc != 0 {
            bail!("`{cmd}` failed in the guest (exit {rc}):\n{out}");
        }
        Ok(out)
    }

    /// Wait for QEMU to exit by itself (a poweroff).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the VM did not power off within {}s\n{}",
            timeout.as_secs(),
            self.tail(40)
        )
    }

    /// Pull the plug.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines the guest printed.
    pub fn tail(&self, lines: usize) -> String {
        let text = self
            .console
            .lock()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        let text = clean(&text);
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of the serial console (all in {}) ---\n{}",
            all.len() - from,
            self.serial_log.display(),
            all[from..].join("\n")
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Console text without carriage returns and terminal escape sequences.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_returns_are_dropped() {
        assert_eq!(clean("a\r\n\u{1b}[?2004hb\u{1b}[0mc"), "a\nbc");
    }
}
