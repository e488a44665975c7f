//! The built-in Port's router called directly, without a socket, over a store in a temporary
//! folder: what the handler modules' tests use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower_service::Service;

use super::persist::Store;
use super::{Shared, router};
use crate::config::PortCredentials;

/// A writer's `User-Agent`, as an Ocean integration sends it.
pub(super) const AGENT: &str = "port-ocean/jira/0.1.0/jira/exporter";

pub(super) struct Harness {
    pub(super) shared: Arc<Shared>,
    router: Router,
    dir: PathBuf,
    token: String,
}

impl Harness {
    /// A Port with no credentials set (any non-empty pair is accepted) and a token.
    pub(super) async fn new(name: &str) -> Self {
        Self::with_credentials(name, None).await
    }

    pub(super) async fn with_credentials(name: &str, credentials: Option<PortCredentials>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ocean-local-port-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let shared = Arc::new(Shared {
            store: Store::open(&dir).unwrap(),
            credentials: credentials.clone(),
            tokens: Mutex::new(HashMap::new()),
        });
        let mut harness = Self {
            router: router(Arc::clone(&shared)),
            shared,
            dir,
            token: String::new(),
        };
        let (id, secret) = credentials.map_or(("id".to_owned(), "secret".to_owned()), |c| {
            (c.client_id, c.client_secret)
        });
        let (status, body) = harness
            .raw(
                "POST",
                "/v1/auth/access_token",
                Some(serde_json::json!({"clientId": id, "clientSecret": secret})),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        harness.token = body["accessToken"].as_str().unwrap().to_owned();
        harness
    }

    /// A request with the harness's token and an Ocean `User-Agent`.
    pub(super) async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let auth = format!("Bearer {}", self.token);
        self.raw(
            method,
            uri,
            body,
            &[("authorization", &auth), ("user-agent", AGENT)],
        )
        .await
    }

    /// A request with these headers only; the answer's status and JSON body (`Null` if none).
    pub(super) async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let body = body.map_or_else(Vec::new, |b| serde_json::to_vec(&b).unwrap());
        self.bytes(method, uri, body, headers).await
    }

    /// A request with a body of any bytes.
    pub(super) async fn bytes(
        &self,
        method: &str,
        uri: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "port.test");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Body::from(body)).unwrap();
        let mut router = self.router.clone();
        std::future::poll_fn(|cx| <Router as Service<Request<Body>>>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        let response = router.call(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
