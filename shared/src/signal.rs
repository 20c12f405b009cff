//! The end of a binary's life: SIGTERM (what the kubelet sends) or Ctrl-C.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. Should the SIGTERM handler be impossible to
/// install (it never is on Linux), Ctrl-C still ends the wait.
pub async fn shutdown_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "no SIGTERM handler; only Ctrl-C stops this process");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use super::*;

    #[tokio::test]
    async fn sigterm_ends_the_wait() {
        let wait = tokio::spawn(shutdown_signal());
        // Let the task install its handlers before the signal arrives: a SIGTERM without a
        // handler would end the test process.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!wait.is_finished(), "nothing received yet");
        kill(Pid::this(), Signal::SIGTERM).expect("kill");
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("shutdown_signal returns after SIGTERM")
            .expect("task");
    }
}
