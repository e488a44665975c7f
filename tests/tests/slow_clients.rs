//! Slow and abusive clients against a real integration process (the `replica` binary, on its
//! defaults: disk queue, built-in Port): 1,000 half-open connections do not keep a normal client
//! out and are closed after the timeout; a client trickling a header is closed by the header
//! timeout; a stalled body is answered 408; an idle keep-alive connection is closed; connections
//! over the cap are answered 503; a stalled client does not hold a shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ocean_runtime::testing::TestBinary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");

const HALF_OPEN: usize = 1000;

/// Whether the server has closed `stream` (end of file or reset), waiting at most `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (e.g. a 408 or 503) before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// The text the server sends on `stream` until it closes it or `wait` ends.
async fn answer_within(stream: &mut TcpStream, wait: Duration) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_keep_others_out() {
    let (dir, mapping) = ocean_tests::folder_with_jira_mapping("slow").unwrap();
    let mut app = TestBinary::start(
        REPLICA,
        &dir,
        &[
            ("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str()),
            ("OCEAN__INGRESS__HEADER_TIMEOUT_SECONDS", "3"),
            ("OCEAN__INGRESS__IDLE_TIMEOUT_SECONDS", "2"),
            ("OCEAN__INGRESS__MAX_CONNECTIONS", "1010"),
            ("OCEAN__INGRESS__BODY_TIMEOUT_SECONDS", "1"),
        ],
    )
    .unwrap();
    let url = app.ingress_url();
    let addr = address(&url);

    // 1,000 connections that send half a request head and then nothing.
    let opened = Instant::now();
    let mut half_open = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut s = TcpStream::connect(&addr).await.expect(
            "a connection opens (the test needs about 1,100 file descriptors: raise `ulimit -n`)",
        );
        s.write_all(b"POST /integration/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            .await
            .unwrap();
        half_open.push(s);
    }

    // A normal client still gets its 200 at once.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let answer = http
        .post(format!("{url}/integration/webhook"))
        .json(&ocean_tests::issue_event(
            "created", "SLOW-1", "normal", "To Do", "Bug",
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status(), 200);
    assert!(
        took < Duration::from_secs(1),
        "a normal client waited {took:?} beside {HALF_OPEN} half-open connections"
    );
    drop(http);

    // Over the cap (1,010 open), connections are answered 503 and closed.
    let mut refused = 0;
    let mut extra = Vec::new();
    for _ in 0..20 {
        extra.push(TcpStream::connect(&addr).await.unwrap());
    }
    for s in &mut extra {
        let text = answer_within(s, Duration::from_millis(300)).await;
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("retry-after: 1"), "{text}");
            assert!(text.contains("OCEAN__INGRESS__MAX_CONNECTIONS"), "{text}");
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "{refused} of 20 connections over the cap were refused"
    );
    drop(extra);

    // Every half-open connection is closed once the timeouts pass (idle 2 s, header 3 s).
    let mut still_open = 0;
    for s in &mut half_open {
        let left = Duration::from_secs(8).saturating_sub(opened.elapsed());
        if !closed_within(s, left).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "half-open connections left open 8 s after they opened"
    );
    drop(half_open);

    // A client that trickles a head byte by byte (so it is never idle) is cut off by the header
    // timeout, not before.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    let began = Instant::now();
    let head = b"POST /integration/webhook HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(b"a".repeat(200).iter())
        .copied()
        .collect::<Vec<_>>();
    let mut cut_after = None;
    for byte in head {
        if trickle.write_all(&[byte]).await.is_err() {
            cut_after = Some(began.elapsed());
            break;
        }
        if closed_within(&mut trickle, Duration::from_millis(250)).await {
            cut_after = Some(began.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the trickling client is cut off");
    assert!(
        cut_after >= Duration::from_millis(2900) && cut_after < Duration::from_secs(8),
        "cut off after {cut_after:?} (header timeout 3 s)"
    );

    // A body that stops arriving is answered 408 with the variable to change.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"POST /integration/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"webhookEv")
        .await
        .unwrap();
    let text = answer_within(&mut stalled, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("OCEAN__INGRESS__BODY_TIMEOUT_SECONDS"),
        "{text}"
    );

    // An idle keep-alive connection is closed after the idle timeout.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut kept, Duration::from_secs(6)).await,
        "an idle keep-alive connection stays open"
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1900),
        "closed before the idle timeout"
    );

    // The one event accepted went through.
    let port_url = app.port_url();
    let http = reqwest::Client::new();
    let token = ocean_runtime::testing::local_port_token(&http, &port_url)
        .await
        .unwrap();
    ocean_runtime::testing::eventually("SLOW-1 in Port", Duration::from_secs(30), || {
        let (http, token, port_url) = (http.clone(), token.clone(), port_url.clone());
        async move {
            let r = http
                .get(format!(
                    "{port_url}/v1/blueprints/jiraIssue/entities/SLOW-1"
                ))
                .bearer_auth(token)
                .send()
                .await?;
            Ok::<_, reqwest::Error>((r.status() == 200).then_some(()))
        }
    })
    .await;
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_a_shutdown() {
    let (dir, mapping) = ocean_tests::folder_with_jira_mapping("stalled-stop").unwrap();
    let mut app = TestBinary::start(
        REPLICA,
        &dir,
        &[
            ("OCEAN__PORT_APP_CONFIG_FILE", mapping.as_str()),
            ("OCEAN__INGRESS__BODY_TIMEOUT_SECONDS", "600"),
            ("OCEAN__MAX_WAIT_SECONDS_BEFORE_SHUTDOWN", "2"),
        ],
    )
    .unwrap();
    let addr = address(&app.ingress_url());
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /integration/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"",
        )
        .await
        .unwrap();
    // The request is being read once the server answers another one on a new connection.
    let live = reqwest::get(format!("http://{addr}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let stopping = Instant::now();
    let status = app.signal_and_wait("-TERM").await.unwrap();
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "a stalled body held the shutdown for {:?}",
        stopping.elapsed()
    );
    assert!(
        app.log()
            .iter()
            .any(|l| l.contains("connections still open when the shutdown wait ended")),
        "the log says a connection was closed"
    );
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}
