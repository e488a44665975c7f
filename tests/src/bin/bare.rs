//! The benchmarks' baseline: a bare axum server that parses each webhook's JSON and answers 200,
//! with the allocator and runtime the binaries of `main!` get. It listens on a free loopback port
//! and writes `listening on http://<addr>` to stderr, as an ocean-rs binary does.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

ocean_runtime::global_allocator!();

async fn accept(body: Bytes) -> StatusCode {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new().route("/integration/webhook", post(accept));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("listening on http://{}", listener.local_addr()?);
    }
    axum::serve(listener, app).await
}
