//! The panic policy of every binary (`causeway_shared::supervise`), in a child process (the
//! hook ends the process it is installed in): a panic in a task or a thread exits with status
//! 70, naming where; a restartable task is restarted after its backoff while the process
//! lives on.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use causeway_shared::supervise::{Backoff, PANIC_EXIT, install_panic_hook, spawn_restarting};

const MODE: &str = "CAUSEWAY_PANIC_CHILD";

/// Runs this test binary's `child` test in a child process in `mode`.
fn run_child(mode: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// What the child does; nothing unless started by [`run_child`].
#[test]
fn child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    install_panic_hook();
    let rt = tokio::runtime::Runtime::new().unwrap();
    match mode.as_str() {
        "task" => rt.block_on(async {
            let _ = tokio::spawn(async { panic!("boom in a task") }).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            println!("STILL RUNNING");
        }),
        "thread" => {
            let _ = std::thread::Builder::new()
                .name("datapath-rx".into())
                .spawn(|| panic!("boom in a thread"))
                .unwrap()
                .join();
            std::thread::sleep(Duration::from_secs(5));
            println!("STILL RUNNING");
        }
        "restart" => rt.block_on(async {
            let runs = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(AtomicUsize::new(0));
            let (r, s) = (runs.clone(), seen.clone());
            let backoff = Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(40),
                reset_after: Duration::from_secs(60),
            };
            let task = spawn_restarting(
                "source b".into(),
                backoff,
                move || {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 2 {
                            panic!("boom {n}");
                        }
                    }
                },
                move |msg| {
                    assert!(msg.starts_with("boom"), "{msg}");
                    s.fetch_add(1, Ordering::SeqCst);
                },
            );
            task.await.unwrap();
            println!(
                "RUNS {} PANICS {}",
                runs.load(Ordering::SeqCst),
                seen.load(Ordering::SeqCst)
            );
        }),
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn a_panic_in_a_task_or_a_thread_ends_the_process_with_status_70() {
    for (mode, needle) in [
        ("task", "boom in a task"),
        ("thread", "panic in thread datapath-rx"),
    ] {
        let (code, text) = run_child(mode);
        assert_eq!(code, Some(PANIC_EXIT), "{mode}: {text}");
        assert!(text.contains(needle), "{mode}: {text}");
        assert!(!text.contains("STILL RUNNING"), "{mode}: {text}");
    }
}

#[test]
fn a_restartable_task_restarts_after_its_backoff_and_the_process_lives_on() {
    let (code, text) = run_child("restart");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("RUNS 3 PANICS 2"), "{text}");
}
