//! The body of the `fn main` that `ocean_runtime::main!()` generates.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::config::{Config, IntegrationInfo};
use crate::registry::Registry;
use crate::state::StateInit;

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(
                std::env::var("OCEAN__APPLICATION__LOG_LEVEL")
                    .unwrap_or_else(|_| "info".to_owned()),
            )
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The runtime a serving command runs on; `None` (logged) when it cannot be built.
pub(crate) fn multi_thread_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!("cannot start the async runtime: {e}"))
        .ok()
}

/// Listens for SIGINT and SIGTERM from the call on (the handlers are installed before this
/// returns, so a signal that arrives while the app is still starting is not lost, nor does it
/// kill the process with the default action); the future resolves on the first. Call it inside
/// the runtime.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, interrupt) {
                (Some(mut term), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Some(mut term), None) => {
                    term.recv().await;
                }
                (None, Some(mut interrupt)) => {
                    interrupt.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the integration: reads the settings, collects the processors, starts everything and runs
/// until SIGINT or SIGTERM. Every start-up failure is logged with its cause and gives exit code 1.
#[must_use]
pub fn run_main(info: IntegrationInfo, state: Option<StateInit>) -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // An operator command does not run the integration: its spec's settings are not needed.
    let info = if crate::cli::is_command(&args) {
        IntegrationInfo { spec: None, ..info }
    } else {
        info
    };
    let config = match Config::from_env(info) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(code) = crate::cli::run(&args, &config) {
        return code;
    }
    let registry = match Registry::from_inventory() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let stop = stop_signal();
        let mut app = App::new(config, registry);
        if let Some(init) = state {
            app = app.state_init(init);
        }
        let app = match app.start().await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        stop.await;
        tracing::info!("stop signal received; shutting down");
        app.shutdown().await;
        ExitCode::SUCCESS
    })
}
