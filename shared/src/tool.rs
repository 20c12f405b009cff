//! Running an external tool (`nft`, `ovs-vsctl`, `ovs-ofctl`, `ip netns exec ...`) the one
//! way the binaries do it: arguments, optional text on stdin, stdout captured and returned,
//! the first lines of stderr kept for the error, and a deadline after which the tool is
//! killed, so a wedged tool never stalls a sync loop.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of stderr kept in [`ToolError::Failed`].
const STDERR_LINES: usize = 8;

/// Why running a tool failed; each variant names the program and what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} did not finish within {after:?} and was killed")]
    Timeout {
        program: String,
        args: String,
        after: Duration,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
}

/// A program with fixed leading arguments (`ip netns exec <ns> nft`), extra environment
/// and a deadline per run.
#[derive(Clone, Debug)]
pub struct Tool {
    program: PathBuf,
    prefix: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Tool {
    /// `program` with a 10 s deadline.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            prefix: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Runs `program` inside network namespace `netns` (`ip netns exec <netns> <program>`).
    pub fn in_netns(program: &str, netns: &str) -> Self {
        let mut tool = Self::new("ip");
        tool.prefix = ["netns", "exec", netns, program].map(String::from).to_vec();
        tool
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The program as errors name it: the tool itself, not the `ip netns exec` wrapper.
    pub fn name(&self) -> String {
        match self.prefix.last() {
            Some(inner) => inner.clone(),
            None => self.program.display().to_string(),
        }
    }

    fn command(&self, args: &[&str], stdin: bool) -> StdCommand {
        let mut cmd = StdCommand::new(&self.program);
        cmd.args(&self.prefix)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn_error(&self, source: std::io::Error) -> ToolError {
        ToolError::Spawn {
            program: self.name(),
            source,
        }
    }

    fn outcome(
        &self,
        args: &[&str],
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: &[u8],
    ) -> Result<String, ToolError> {
        if !status.success() {
            let stderr = String::from_utf8_lossy(stderr);
            return Err(ToolError::Failed {
                program: self.name(),
                args: args.join(" "),
                status: status.to_string(),
                stderr: stderr
                    .lines()
                    .take(STDERR_LINES)
                    .collect::<Vec<_>>()
                    .join(" | "),
            });
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    fn timed_out(&self, args: &[&str]) -> ToolError {
        ToolError::Timeout {
            program: self.name(),
            args: args.join(" "),
            after: self.timeout,
        }
    }

    /// Runs the tool from a blocking thread and returns its stdout.
    pub fn run_blocking(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ToolError> {
        let mut child = self
            .command(args, stdin.is_some())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        // stdin, stdout and stderr each get a thread, so a tool that writes a lot before
        // reading all its input cannot deadlock against us.
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => {
                let text = text.to_string();
                // A failed write shows up as the tool's own error.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
        let stdout = reader(child.stdout.take());
        let stderr = reader(child.stderr.take());
        let status = wait_until(&mut child, Instant::now() + self.timeout);
        let status = match status {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.timed_out(args));
            }
            Err(e) => return Err(self.spawn_error(e)),
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        self.outcome(args, status, stdout, &stderr)
    }

    /// Runs the tool on the tokio runtime and returns its stdout; the child is killed when
    /// the deadline passes or the future is dropped.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ToolError> {
        let mut cmd = tokio::process::Command::from(self.command(args, stdin.is_some()));
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let pipe = child.stdin.take();
        let write = async move {
            if let (Some(text), Some(mut pipe)) = (stdin, pipe) {
                use tokio::io::AsyncWriteExt;
                // A failed write shows up as the tool's own error; dropping the pipe
                // closes the tool's stdin.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        // Written and read at once, so large input and output cannot deadlock.
        let feed = async {
            let ((), out) = tokio::join!(write, child.wait_with_output());
            out
        };
        let out = tokio::time::timeout(self.timeout, feed)
            .await
            .map_err(|_| self.timed_out(args))?
            .map_err(|e| self.spawn_error(e))?;
        self.outcome(args, out.status, out.stdout, &out.stderr)
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` until `deadline`; `None` when it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_run_returns_stdout_and_feeds_stdin() {
        let out = Tool::new("cat").run_blocking(&[], Some("hello\n")).unwrap();
        assert_eq!(out, "hello\n");
    }

    #[test]
    fn blocking_run_handles_output_larger_than_a_pipe() {
        // 1 MiB through stdin and back: both pipes fill long before the end.
        let text = "x".repeat(1 << 20);
        let out = Tool::new("cat").run_blocking(&[], Some(&text)).unwrap();
        assert_eq!(out.len(), text.len());
    }

    #[test]
    fn blocking_failure_names_program_arguments_and_stderr() {
        let err = Tool::new("sh")
            .run_blocking(&["-c", "echo first >&2; echo second >&2; exit 3"], None)
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ToolError::Failed { .. }), "{text}");
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("first | second"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
    }

    #[test]
    fn blocking_run_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = Tool::new("sleep")
            .with_timeout(Duration::from_millis(200))
            .run_blocking(&["30"], None)
            .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("sleep 30"), "{err}");
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_it() {
        let err = Tool::new("/nonexistent/causeway-tool")
            .run_blocking(&[], None)
            .unwrap_err();
        assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/causeway-tool"),
            "{err}"
        );
    }

    #[test]
    fn environment_reaches_the_tool() {
        let out = Tool::new("sh")
            .with_env("CAUSEWAY_TOOL_TEST", "seen")
            .run_blocking(&["-c", "printf %s \"$CAUSEWAY_TOOL_TEST\""], None)
            .unwrap();
        assert_eq!(out, "seen");
    }

    #[test]
    fn netns_wrapper_is_named_by_the_inner_tool() {
        let tool = Tool::in_netns("nft", "example");
        assert_eq!(tool.name(), "nft");
    }

    #[tokio::test]
    async fn async_run_returns_stdout_and_times_out() {
        let out = Tool::new("cat").run(&[], Some("async\n")).await.unwrap();
        assert_eq!(out, "async\n");
        let text = "y".repeat(1 << 20);
        let out = Tool::new("cat").run(&[], Some(&text)).await.unwrap();
        assert_eq!(out.len(), text.len());
        let err = Tool::new("sleep")
            .with_timeout(Duration::from_millis(200))
            .run(&["30"], None)
            .await
            .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
        let err = Tool::new("false").run(&[], None).await.unwrap_err();
        assert!(matches!(err, ToolError::Failed { .. }), "{err}");
    }
}
