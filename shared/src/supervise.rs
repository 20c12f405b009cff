//! No silent freeze: a panic anywhere in a binary — a task, a blocking call, a thread of the
//! data path — ends the process with exit status 70 after logging it (task or thread, place,
//! message), so the kubelet restarts the container, which adopts the kernel state it left.
//! The exception is a task started with [`spawn_restarting`] (each cluster's source): its
//! panic is logged and the task restarts after a backoff (1 s doubling to 30 s, reset after a
//! minute of good running), while the others go on and the catalog keeps its last data.
//!
//! [`install_panic_hook`] is called by every binary at start (`CommonArgs::init`).

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The exit status of a process that panicked (EX_SOFTWARE).
pub const PANIC_EXIT: i32 = 70;

tokio::task_local! {
    /// Set while a restartable task runs: its name.
    static RESTARTABLE: String;
}

/// The panic message of `info`, as text.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Installs the process's panic hook (once): log, then exit [`PANIC_EXIT`] unless the panic
/// is inside a restartable task.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = message(info.payload());
            if let Ok(task) = RESTARTABLE.try_with(Clone::clone) {
                tracing::error!(task, at = %place, panic = %text, "task panicked; it restarts");
                return;
            }
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("unnamed");
            tracing::error!(thread, at = %place, panic = %text, "panicked: exiting (status 70) so that the process is restarted");
            // Also on stderr unformatted, in case logging is what broke.
            eprintln!("panic in thread {thread} at {place}: {text}");
            std::process::exit(PANIC_EXIT);
        }));
    });
}

/// Aborts the task it holds when dropped (the inner task of a restarting one).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Backoff of [`spawn_restarting`].
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A run this long resets the backoff to `first`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Runs the future `make` returns as task `name`; when it panics, calls `on_panic` with the
/// message and runs a new one after the backoff. Ends when a run returns. Aborting the
/// returned handle aborts the running task too.
pub fn spawn_restarting<F, Fut>(
    name: String,
    backoff: Backoff,
    mut make: F,
    on_panic: impl Fn(&str) + Send + 'static,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut delay = backoff.first;
        loop {
            let started = Instant::now();
            let mut run = AbortOnDrop(tokio::spawn(RESTARTABLE.scope(name.clone(), make())));
            match (&mut run.0).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    let text = message(e.into_panic().as_ref());
                    on_panic(&text);
                    if started.elapsed() >= backoff.reset_after {
                        delay = backoff.first;
                    }
                    tracing::warn!(task = %name, panic = %text, restart_in = ?delay, "restarting a panicked task");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(backoff.max);
                }
                Err(_) => return,
            }
        }
    })
}
