//! Child processes of tests: killed and reaped on drop, waited for with a bound.

use std::io::Read as _;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on [`run`], [`sh`] and [`super::Netns::exec`]: commands that set up a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed (SIGKILL) and reaped on drop. Signals go only to the process we
/// started.
#[derive(Debug)]
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Starts `command` with stdin closed (its stdout and stderr as the caller set them).
    pub fn spawn(command: &mut Command) -> Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {:?}", command.get_program()))?;
        Ok(Self(Some(child)))
    }

    /// The process id, while it has not been reaped.
    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Whether the child has exited (it is reaped then, and its output kept for [`Self::wait`]).
    pub fn has_exited(&mut self) -> Result<bool> {
        match self.0.as_mut() {
            Some(child) => Ok(child.try_wait()?.is_some()),
            None => Ok(true),
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let id = self.id().context("child already reaped")?;
        let pid = Pid::from_raw(i32::try_from(id).context("pid")?);
        kill(pid, signal).with_context(|| format!("kill -{signal} {id}"))?;
        Ok(())
    }

    /// Kills (SIGKILL) and reaps the child now, as after a crash; nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the child to exit by itself and returns its output; after
    /// `timeout` kills it and fails with its stderr.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let mut child = self.0.take().context("child already reaped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "timed out after {timeout:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the child and returns what it wrote to its (piped) stderr, for a failure
    /// message.
    pub fn kill_for_stderr(mut self) -> String {
        let Some(mut child) = self.0.take() else {
            return String::new();
        };
        let _ = child.kill();
        let _ = child.wait();
        let mut text = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` on the host, bounded by [`RUN_TIMEOUT`]; its stdout, or an error with its
/// output on a non-zero exit.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = ChildGuard::spawn(
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?
    .wait(RUN_TIMEOUT)
    .with_context(|| format!("{cmd} {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a shell script on the host, as [`run`] does.
pub fn sh(script: &str) -> Result<String> {
    run("sh", &["-c", script])
}
