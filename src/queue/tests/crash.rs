//! Crash safety (SPEC §7): a child process acknowledges events until it is killed with SIGKILL; every event
//! it acknowledged must be pending when the store is reopened. The child is this test binary re-executed
//! with a filter for an ignored test, so no extra program is needed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{event, event_ids, open};

const CRASH_DIR_ENV: &str = "IMAGESTREAM_INGEST_QUEUE_CRASH_DIR";
const CRASH_CHILD: &str = "queue::tests::crash::crash_child_acks_events_until_killed";

/// Child half of [`every_acknowledged_event_survives_kill_9`]: acknowledges events until it is killed.
/// Does nothing unless started by that test (it sets the state directory in the environment).
#[test]
#[ignore = "child process of every_acknowledged_event_survives_kill_9"]
fn crash_child_acks_events_until_killed() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (queue, _) = open(Path::new(&dir), 10_000_000);
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..8 {
            let queue = queue.clone();
            tasks.spawn(async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    let id = format!("w{writer}-{n}");
                    queue
                        .enqueue(vec![event(&id, &id, "sha256:a")])
                        .await
                        .unwrap();
                    println!("acked {id}");
                    n += 1;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[test]
fn every_acknowledged_event_survives_kill_9() {
    const KILL_AFTER: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            CRASH_CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The first line may follow libtest's "test <name> ... " on the same line.
            if let Some((_, id)) = line.rsplit_once("acked ") {
                if lines_tx.send(id.to_string()).is_err() {
                    break;
                }
            }
        }
    });

    let mut acked = Vec::new();
    while acked.len() < KILL_AFTER {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(id) => acked.push(id),
            Err(_) => break,
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines the child printed before it died are acknowledgements too.
    acked.extend(lines.try_iter());
    assert!(
        acked.len() >= KILL_AFTER,
        "child acknowledged only {} events before stopping",
        acked.len()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pending = runtime.block_on(async {
        let (queue, _) = open(dir.path(), 10_000_000);
        let pending: std::collections::HashSet<String> = event_ids(&queue).into_iter().collect();
        queue.shutdown().await;
        pending
    });
    println!(
        "{} events acknowledged before kill -9, {} pending after reopen",
        acked.len(),
        pending.len()
    );
    let lost: Vec<_> = acked.iter().filter(|id| !pending.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost after kill -9: {lost:?}",
        lost.len()
    );
}
