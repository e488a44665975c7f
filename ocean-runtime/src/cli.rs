//! The generated binary's operator commands:
//!
//! - `<binary> dead-letters list|show ID|replay ID|delete ID|purge` talks to the running
//!   integration through its admin endpoints
//!   (`http://OCEAN__APPLICATION__HOST:OCEAN__APPLICATION__PORT/admin/…`, with
//!   `OCEAN__ADMIN__TOKEN`); when nothing answers there, it opens the queue itself: the disk queue
//!   (a replayed event is then processed at the next start) or the Redis queue (shared: any
//!   running replica processes a replayed event).
//! - `<binary> local-port` runs the built-in Port on its own, for several replicas to share
//!   (`OCEAN__LOCAL_PORT__HOST`, `OCEAN__LOCAL_PORT__PORT`, `OCEAN__LOCAL_PORT__DATA_DIR`; with
//!   `OCEAN__PORT__CLIENT_ID`/`OCEAN__PORT__CLIENT_SECRET` set, it gives tokens only for them).

#![allow(clippy::print_stdout)] // printing is what a command does

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::config::{Config, QueueBackend};
use crate::local_port::{LocalPort, LocalPortOptions};
use crate::queue::{Backend, DiskQueue, RedisQueue};

const USAGE: &str = "usage: <binary> [dead-letters list | dead-letters show ID | dead-letters replay ID | dead-letters delete ID | dead-letters purge | local-port]";

enum Command {
    List,
    Show(u64),
    Replay(u64),
    Delete(u64),
    Purge,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let id = |s: Option<&String>| -> Result<u64, String> {
        s.ok_or("missing dead letter ID")?
            .parse()
            .map_err(|_| "a dead letter ID is a whole number".to_owned())
    };
    match args.get(1).map(String::as_str) {
        Some("list") | None => Ok(Command::List),
        Some("show") => Ok(Command::Show(id(args.get(2))?)),
        Some("replay") => Ok(Command::Replay(id(args.get(2))?)),
        Some("delete") => Ok(Command::Delete(id(args.get(2))?)),
        Some("purge") => Ok(Command::Purge),
        Some(other) => Err(format!("unknown dead-letters command `{other}`")),
    }
}

/// Whether `args` (without the program name) name an operator command rather than serving.
pub(crate) fn is_command(args: &[String]) -> bool {
    args.first()
        .is_some_and(|a| a == "local-port" || a == "dead-letters")
}

/// Runs an operator command if `args` (without the program name) holds one; `None` means "serve".
pub(crate) fn run(args: &[String], config: &Config) -> Option<ExitCode> {
    let first = args.first()?;
    if first == "local-port" {
        return Some(local_port(config));
    }
    if first != "dead-letters" {
        eprintln!("unknown command `{first}`\n{USAGE}");
        return Some(ExitCode::from(2));
    }
    let command = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return Some(ExitCode::from(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match online(&command, config).await {
            Ok(answer) => answer,
            Err(Offline) => offline(&command, config).await,
        }
    });
    Some(match result {
        Ok(v) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    })
}

struct Offline;

async fn online(command: &Command, config: &Config) -> Result<Result<Value, String>, Offline> {
    let host = if config.host.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        config.host.to_string()
    };
    let base = format!("http://{host}:{}/admin/dead-letters", config.port);
    let client = reqwest::Client::new();
    let request = match command {
        Command::List => client.get(&base),
        Command::Show(id) => client.get(format!("{base}/{id}")),
        Command::Replay(id) => client.post(format!("{base}/{id}/replay")),
        Command::Delete(id) => client.delete(format!("{base}/{id}")),
        Command::Purge => client.delete(&base),
    };
    let request = match &config.admin_token {
        Some(token) => request.bearer_auth(&token.0),
        None => request,
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Offline),
        Err(e) => return Ok(Err(format!("the integration did not answer: {e}"))),
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Ok(if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        ))
    })
}

async fn offline(command: &Command, config: &Config) -> Result<Value, String> {
    let (backend, note) = match config.queue_backend {
        QueueBackend::Memory => {
            return Err(
                "the integration is not running and its queue is in memory: there are no dead letters to read"
                    .to_owned(),
            );
        }
        QueueBackend::Disk => (
            Backend::new(
                DiskQueue::open(&config.queue_path, usize::MAX).map_err(|e| e.to_string())?,
            ),
            "the integration is not running; the event is processed at its next start",
        ),
        QueueBackend::Redis => {
            let options = crate::app::redis_options(config, false).map_err(|e| e.to_string())?;
            (
                Backend::new(
                    RedisQueue::connect(options)
                        .await
                        .map_err(|e| e.to_string())?,
                ),
                "queued in Redis; a running replica processes it",
            )
        }
    };
    let queue = &*backend.dead_letters;
    let letter = |id: u64| async move {
        queue
            .get(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no dead letter {id}"))
    };
    match command {
        Command::List => {
            let all = queue.list().await.map_err(|e| e.to_string())?;
            Ok(json!({"status": "ok", "deadLetters": all}))
        }
        Command::Show(id) => Ok(json!({"status": "ok", "deadLetter": letter(*id).await?})),
        Command::Delete(id) => match queue.remove(*id).await {
            Ok(Some(_)) => Ok(json!({"status": "ok", "deleted": id})),
            Ok(None) => Err(format!("no dead letter {id}")),
            Err(e) => Err(e.to_string()),
        },
        Command::Purge => queue
            .purge()
            .await
            .map(|n| json!({"status": "ok", "purged": n}))
            .map_err(|e| e.to_string()),
        Command::Replay(id) => {
            let envelope = letter(*id)
                .await?
                .to_envelope()
                .map_err(|e| e.to_string())?;
            let event_id = envelope.event.id().to_owned();
            if !queue
                .replay(*id, envelope)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no dead letter {id}"));
            }
            Ok(json!({"status": "ok", "replayed": id, "eventId": event_id, "note": note}))
        }
    }
}

/// `<binary> local-port`: the built-in Port alone, until SIGINT or SIGTERM.
fn local_port(config: &Config) -> ExitCode {
    let Some(runtime) = crate::run::multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let stop = crate::run::stop_signal();
        let options = LocalPortOptions {
            data_dir: config.local_port_data_dir.clone(),
            addr: std::net::SocketAddr::new(config.local_port_host, config.local_port_port),
            credentials: config.credentials.clone(),
        };
        let port = match LocalPort::start(options).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "serving the built-in local Port at {} (data in {}); point replicas at it with OCEAN__PORT__BASE_URL and any OCEAN__PORT__CLIENT_ID/OCEAN__PORT__CLIENT_SECRET",
            port.base_url(),
            config.local_port_data_dir.display()
        );
        stop.await;
        port.shutdown().await;
        ExitCode::SUCCESS
    })
}
