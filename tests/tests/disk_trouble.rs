//! Disk trouble under the durable queue: a filesystem that fills up (a small tmpfs the test
//! mounts, so it runs as root and is skipped with a message otherwise) makes ingress answer 503
//! without acknowledging what it could not commit, loses nothing acknowledged, and recovers by
//! itself once space returns; a queue file that is not a database stops start-up with a message
//! naming it and is left as it was.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ocean_runtime::testing::{TestApp, eventually};
use ocean_tests::{JIRA_MAPPING, issue_event};

const WAIT: Duration = Duration::from_secs(60);

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocean-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tmpfs of `size` mounted at `at`, unmounted when dropped; `None` when this process may not
/// mount one (not root, or no mount permission in this container).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: the app may still hold its files open when a failed test unwinds.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with a file until writing fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file
        .write_all(&block)
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
    // The last few bytes too.
    while file
        .write_all(&block[..512])
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_what_it_cannot_commit_loses_nothing_and_recovers() {
    let dir = fresh_dir("disk-full");
    let Some(tmpfs) = Tmpfs::mount(&dir.join("queue"), "8m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (the test needs root); the full-disk behaviour is not checked"
        );
        return;
    };
    // No mapping yet: the events wait in the queue, which fills the disk.
    let app = TestApp::builder()
        .data_dir(dir.join("app"))
        .env("OCEAN__QUEUE__PATH", tmpfs.0.display().to_string())
        .start()
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    // Events of about 50 KB.
    let summary = "x".repeat(50 * 1024);
    let mut post = {
        let (app, summary) = (&app, &summary);
        let mut n = 0;
        move || {
            n += 1;
            let key = format!("DF-{n}");
            async move {
                let (status, body) = app
                    .post(
                        "/webhook",
                        &issue_event("created", &key, summary, "To Do", "Bug"),
                    )
                    .await
                    .unwrap();
                (key, status, body)
            }
        }
    };
    for _ in 0..20 {
        let (key, status, body) = post().await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(key);
    }

    let filler = fill(&tmpfs.0);
    // Once the disk is full, deliveries are refused with a reason, never acknowledged.
    let mut refused = 0;
    for _ in 0..1000 {
        if refused >= 20 {
            break;
        }
        let (key, status, body) = post().await;
        match status {
            200 => acknowledged.push(key),
            503 | 507 => {
                assert!(body["error"].is_string(), "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(refused > 0, "nothing was refused on a full disk");

    // Space returns: the queue takes events again by itself.
    std::fs::remove_file(filler).unwrap();
    let key = eventually("the queue to take events again", WAIT, || {
        let next = post();
        async move {
            let (key, status, _) = next.await;
            Ok::<_, ()>((status == 200).then_some(key))
        }
    })
    .await;
    acknowledged.push(key);
    for _ in 0..20 {
        let (key, status, body) = post().await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(key);
    }
    // With a mapping, every acknowledged event is processed.
    app.set_mapping(JIRA_MAPPING).await.unwrap();
    let reload = reqwest::Client::new()
        .post(format!("{}/admin/mapping/reload", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    for key in &acknowledged {
        eventually(key, WAIT, || app.entity("jiraIssue", key)).await;
    }
    println!(
        "{} acknowledged, {refused} refused while the disk was full",
        acknowledged.len()
    );
    app.shutdown().await;
    drop(tmpfs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_queue_file_that_is_not_a_database_stops_start_up_and_is_kept() {
    let dir = fresh_dir("disk-corrupt");
    let queue = dir.join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let file = queue.join("queue.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let started = TestApp::builder()
        .mapping(JIRA_MAPPING)
        .data_dir(dir.join("app"))
        .env("OCEAN__QUEUE__PATH", queue.display().to_string())
        .start()
        .await;
    let Err(e) = started else {
        panic!("the app started on a queue file that is not a database");
    };
    let message = e.to_string();
    assert!(
        message.contains("OCEAN__QUEUE__PATH") && message.contains(&file.display().to_string()),
        "{message}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file was changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
