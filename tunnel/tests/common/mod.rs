//! Namespace harness of the tunnel's integration tests: uniquely named network namespaces
//! (`cwt-<pid>-<name>`), commands with bounded run time, children killed on drop, and running a
//! closure inside a namespace on a dedicated thread (`setns` affects only the calling thread).
#![allow(unsafe_code, dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// Time on `CLOCK_MONOTONIC` (since boot, suspend not counted), as programs that read that
/// clock directly see it; `Instant` measures the same clock but does not expose its origin.
pub fn monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A network namespace deleted on drop (which also deletes its veth ends and TUN devices).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(short: &str) -> Result<Self> {
        let name = format!("cwt-{}-{short}", std::process::id());
        // A namespace left behind by an earlier run with the same pid (a VM boots to the same pids);
        // "Cannot remove namespace file" when there is none is expected and not shown.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside, bounded to 60 s; fails on non-zero exit.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Starts a long-running command inside; killed when the guard drops.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        let child = Command::new("ip")
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {cmd}"))?;
        Ok(ChildGuard(Some(child)))
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets, TUN devices and
    /// netlink connections it creates belong to the namespace and keep working from any thread.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process killed (and reaped) on drop. Kills only the process we started.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Waits up to `timeout` for the child to exit by itself and returns its output.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let mut child = self.0.take().expect("child present");
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
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command with a 60 s bound; fails with its stderr on non-zero exit.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd}"))?;
    let out = ChildGuard(Some(child))
        .wait(Duration::from_secs(60))
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

/// Joins two namespaces with a veth pair and gives each end an address (`a/24`, `b/24`).
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> Result<()> {
    let (ia, ib) = ("cwt-va", "cwt-vb");
    a.exec(
        "ip",
        &[
            "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", &b.name,
        ],
    )?;
    a.exec("ip", &["addr", "add", &format!("{a_addr}/24"), "dev", ia])?;
    b.exec("ip", &["addr", "add", &format!("{b_addr}/24"), "dev", ib])?;
    a.exec("ip", &["link", "set", ia, "up"])?;
    b.exec("ip", &["link", "set", ib, "up"])?;
    Ok(())
}

/// Pings until one reply arrives or `timeout` passes.
pub fn ping(ns: &Netns, dst: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match ns.exec("ping", &["-c", "1", "-W", "1", dst]) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("ping {dst} from {}", ns.name)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Moves `bytes` over TCP from `client` to an iperf3 server in `server` listening on `addr`,
/// and back with `-R`; returns the parsed receiver throughput in bit/s of each direction.
pub fn tcp_both_ways(
    client: &Netns,
    server: &Netns,
    addr: &str,
    bytes: &str,
) -> Result<(f64, f64)> {
    let mut rates = Vec::new();
    for reverse in [false, true] {
        let srv = server.spawn("iperf3", &["-s", "-1", "-B", addr])?;
        std::thread::sleep(Duration::from_millis(300));
        let mut args = vec!["-c", addr, "-n", bytes, "-J", "--connect-timeout", "3000"];
        if reverse {
            args.push("-R");
        }
        let mut out = Err(anyhow::anyhow!("not run"));
        for _ in 0..10 {
            out = client.exec("timeout", &[&["30", "iperf3"][..], &args].concat());
            if out.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let out = out?;
        drop(srv);
        let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 json")?;
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("bits_per_second")?;
        rates.push(bps);
    }
    Ok((rates[0], rates[1]))
}
