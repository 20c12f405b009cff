//! Network namespaces for tests: a guard that deletes its namespace on drop, commands run
//! inside with a bound on their run time, children killed on drop, and closures run on a
//! thread that has entered the namespace.
//!
//! Namespaces are named `cw-<pid>-<short>`, so test binaries running side by side never
//! share one; a namespace left by an earlier run with the same pid (a freshly booted VM
//! reaches the same pids) is deleted first. Deleting a namespace also deletes its veth ends
//! and TUN devices. Every wait of this module has a bound: see [`RUN_TIMEOUT`] and the
//! `timeout` arguments.
//!
//! - [`child`]: [`ChildGuard`] and [`run`]/[`sh`] on the host;
//! - [`net`]: bridges, veth pairs, pod namespaces, routed nodes, pings, a TCP transfer with iperf3;
//! - [`echo`]: TCP and UDP servers answering their name, and the clients asking them.

pub mod child;
pub mod echo;
pub mod net;

use std::fs::File;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use nix::sched::{CloneFlags, setns};

use crate::probe;

pub use child::{ChildGuard, RUN_TIMEOUT, run, sh};
pub use echo::{Echo, ask, connect, udp_ask};
pub use net::{bridge, fails_to_ping, ping, pod, routed_node, tcp_both_ways, veth, veth_pair};
pub use nix::sys::signal::Signal;

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `cw-<pid>-<short>` with its loopback up.
    pub fn new(short: &str) -> Result<Self> {
        let name = format!("cw-{}-{short}", std::process::id());
        // "Cannot remove namespace file" when there is none is expected and not shown.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&name));
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`, `ip -n` and `... netns NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/etc/netns/NAME`: files put here (a `resolv.conf`, say) are what `ip netns exec`
    /// mounts over their `/etc` namesakes for commands run inside. Removed on drop.
    fn etc_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.name)
    }

    /// A command that runs `program` inside (`ip netns exec NAME program`), for callers that
    /// set their own environment and output; [`ChildGuard::spawn`] starts it guarded.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `cmd` inside, bounded by [`RUN_TIMEOUT`]; its stdout, or an error with its
    /// output on a non-zero exit.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `GET url` (`http://IP:PORT/path`) from inside, with [`crate::probe::get`]'s bounds:
    /// the status code (0 when nothing answers) and the body.
    pub fn http_get(&self, url: &str) -> (u16, String) {
        let Some((addr, path)) = probe::parse_url(url) else {
            return (0, String::new());
        };
        self.enter(move || probe::get(addr, &path))
            .unwrap_or_default()
    }

    /// The `state` of `cluster` in the `/readyz` body at `url` (see
    /// [`probe::readyz_state`]), empty when absent.
    pub fn readyz_state(&self, url: &str, cluster: &str) -> String {
        probe::readyz_state(&self.http_get(url).1, cluster)
    }

    /// Writes `/etc/netns/<name>/<file>`, which `ip netns exec` mounts over `/etc/<file>`
    /// for the commands it runs (a `resolv.conf` of the namespace's own); removed with the
    /// namespace.
    pub fn write_etc(&self, file: &str, text: &str) -> Result<()> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(dir.join(file), text).with_context(|| format!("write {file}"))?;
        Ok(())
    }

    /// Runs a shell script inside, as [`Netns::exec`] does.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.exec("sh", &["-c", script])
    }

    /// Starts a long-running `cmd` inside, stdout and stderr piped; killed when the guard
    /// drops.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut command = self.command(cmd);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ChildGuard::spawn(&mut command)
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets, TUN devices and
    /// netlink connections it creates belong to the namespace and keep working from any
    /// thread.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        enter(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.etc_dir());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a new thread that has entered the namespace named `name` (see
/// [`Netns::enter`]); `setns` changes only the calling thread, so the test's own threads
/// stay where they are.
pub fn enter<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("open {path}"))?;
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in namespace {name} panicked"))?
}
