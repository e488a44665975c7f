//! The generated binary's operator commands: `<binary> dead-letters list|show ID|replay ID|delete ID|purge`.
//!
//! A command talks to the running integration through its admin endpoints
//! (`http://OCEAN__APPLICATION__HOST:OCEAN__APPLICATION__PORT/admin/…`, with `OCEAN__ADMIN__TOKEN`);
//! when nothing answers there, it opens the disk queue itself (a replayed event is then processed
//! at the next start).

#![allow(clippy::print_stdout)] // printing is what a command does

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::config::{Config, QueueBackend};
use crate::queue::{DiskQueue, EventQueue};

const USAGE: &str = "usage: <binary> [dead-letters list | dead-letters show ID | dead-letters replay ID | dead-letters delete ID | dead-letters purge]";

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

/// Runs an operator command if `args` (without the program name) holds one; `None` means "serve".
pub(crate) fn run(args: &[String], config: &Config) -> Option<ExitCode> {
    let first = args.first()?;
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
    if config.queue_backend != QueueBackend::Disk {
        return Err(
            "the integration is not running and its queue is in memory: there are no dead letters to read"
                .to_owned(),
        );
    }
    let queue = DiskQueue::open(&config.queue_path, usize::MAX).map_err(|e| e.to_string())?;
    let queue = &queue;
    let letter = |id: u64| async move {
        queue
            .dead_letter(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no dead letter {id}"))
    };
    match command {
        Command::List => {
            let all = queue.dead_letters().await.map_err(|e| e.to_string())?;
            Ok(json!({"status": "ok", "deadLetters": all}))
        }
        Command::Show(id) => Ok(json!({"status": "ok", "deadLetter": letter(*id).await?})),
        Command::Delete(id) => match queue.remove_dead_letter(*id).await {
            Ok(Some(_)) => Ok(json!({"status": "ok", "deleted": id})),
            Ok(None) => Err(format!("no dead letter {id}")),
            Err(e) => Err(e.to_string()),
        },
        Command::Purge => queue
            .purge_dead_letters()
            .await
            .map(|n| json!({"status": "ok", "purged": n}))
            .map_err(|e| e.to_string()),
        Command::Replay(id) => {
            let event = letter(*id).await?.to_event()?;
            let event_id = event.id().to_owned();
            queue.push(event).await.map_err(|e| e.to_string())?;
            queue
                .remove_dead_letter(*id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"status": "ok", "replayed": id, "eventId": event_id,
                      "note": "the integration is not running; the event is processed at its next start"}))
        }
    }
}
