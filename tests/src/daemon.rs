//! A long-running binary under test (a Causeway binary, a stand-in server): its stdout and
//! stderr go to a log file (a pipe nobody reads would stall a chatty binary once full), it is
//! killed (SIGKILL) and reaped on drop, also when the test fails, and every wait on it has a
//! deadline and fails with its log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::netns::{ChildGuard, Signal};
use crate::wait;

/// How often [`Daemon::wait_for`] checks its condition.
const POLL: Duration = Duration::from_millis(100);

/// A running binary with its log.
#[derive(Debug)]
pub struct Daemon {
    child: ChildGuard,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with stdin closed and its stdout and stderr written to `log`
    /// (created anew).
    pub fn spawn(command: &mut Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = ChildGuard::spawn(command.stdout(Stdio::from(out)).stderr(Stdio::from(err)))?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id, until it has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far, without terminal colour sequences.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.child.signal(signal)
    }

    /// Kills (SIGKILL) and reaps the process now, as a crash would: nothing is cleaned up.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Polls `condition` until it holds, for at most `timeout`; fails at once if the process
    /// has exited, and on either failure with the log.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<()> {
        let mut exited = false;
        let waited = wait::poll(timeout, POLL, what, || {
            if condition() {
                return Some(true);
            }
            exited = self.child.has_exited().unwrap_or(true);
            exited.then_some(false)
        });
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => bail!("the process exited before {what}:\n{}", self.log()),
            Err(e) => bail!("{e}:\n{}", self.log()),
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status and its log.
    /// After `timeout` it is killed, and the error carries the log.
    pub fn wait(self, timeout: Duration) -> Result<(std::process::ExitStatus, String)> {
        let Self { child, log } = self;
        match child.wait(timeout) {
            Ok(Output { status, .. }) => Ok((status, read_log(&log))),
            Err(e) => Err(e.context(read_log(&log))),
        }
    }

    /// SIGTERM, and a clean exit (status 0) within `timeout`; the log.
    pub fn stop(self, timeout: Duration) -> Result<String> {
        self.signal(Signal::SIGTERM)?;
        let (status, log) = self
            .wait(timeout)
            .with_context(|| format!("no exit within {timeout:?} of SIGTERM"))?;
        if !status.success() {
            bail!("exit {status} after SIGTERM:\n{log}");
        }
        Ok(log)
    }
}

/// The log at `path` so far, without terminal colour sequences.
fn read_log(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// `text` without the CSI sequences (ESC `[` parameters, final letter) terminals colour with.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
