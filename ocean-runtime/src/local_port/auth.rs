//! `POST /v1/auth/access_token` and the bearer token every other `/v1` route requires.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Shared;
use super::respond::{error, parse_body};

/// How long a token is accepted.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(super) async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let valid = token.is_some_and(|t| {
        let tokens = shared.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(&t)
            .is_some_and(|expires| Instant::now() < *expires)
    });
    if valid {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }
}

pub(super) async fn access_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let id = body
        .get("clientId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = body
        .get("clientSecret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let accepted = match &shared.credentials {
        Some(c) => c.client_id == id && c.client_secret == secret,
        None => !id.is_empty() && !secret.is_empty(),
    };
    if !accepted {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "clientId or clientSecret is wrong",
        );
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    shared
        .tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(token.clone(), Instant::now() + TOKEN_LIFETIME);
    Json(json!({"ok": true, "accessToken": token, "expiresIn": TOKEN_LIFETIME.as_secs(), "tokenType": "Bearer"})).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use axum::http::StatusCode;
    use serde_json::json;

    use super::super::harness::Harness;
    use crate::config::PortCredentials;

    #[tokio::test]
    async fn tokens_are_issued_for_the_configured_credentials_only() {
        let port = Harness::with_credentials(
            "auth-creds",
            Some(PortCredentials {
                client_id: "me".to_owned(),
                client_secret: "s3cret".to_owned(),
            }),
        )
        .await;
        let ask = |id: &str, secret: &str| json!({"clientId": id, "clientSecret": secret});
        let (status, body) = port
            .raw(
                "POST",
                "/v1/auth/access_token",
                Some(ask("me", "wrong")),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_credentials");
        let (status, body) = port
            .raw(
                "POST",
                "/v1/auth/access_token",
                Some(ask("me", "s3cret")),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["tokenType"], "Bearer");
        assert_eq!(body["expiresIn"], 3600);
        assert_eq!(body["accessToken"].as_str().unwrap().len(), 32);
        let (status, body) = port
            .bytes("POST", "/v1/auth/access_token", b"{".to_vec(), &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_json");
    }

    #[tokio::test]
    async fn without_credentials_any_non_empty_pair_is_accepted() {
        let port = Harness::new("auth-open").await;
        let (status, _) = port
            .raw(
                "POST",
                "/v1/auth/access_token",
                Some(json!({"clientId": "", "clientSecret": "x"})),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn routes_need_a_token_that_has_not_expired() {
        let port = Harness::new("auth-routes").await;
        let (status, _) = port.call("GET", "/v1/organization", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = port.raw("GET", "/v1/organization", None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "unauthorized");
        let bogus = [("authorization", "Bearer nope")];
        let (status, _) = port.raw("GET", "/v1/organization", None, &bogus).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let expired = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        port.shared
            .tokens
            .lock()
            .unwrap()
            .insert("old".to_owned(), expired);
        let old = [("authorization", "Bearer old")];
        let (status, _) = port.raw("GET", "/v1/organization", None, &old).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Token and ingest routes are open; an unknown route is a JSON 404.
        let (status, _) = port.raw("POST", "/ingest/logs/x", None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = port.call("GET", "/v2/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
    }
}
