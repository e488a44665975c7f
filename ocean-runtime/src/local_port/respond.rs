//! The built-in Port's answers in Port's shape: `{"ok": false, "error", "message"}` with a status,
//! and the reading of request bodies, flags and the writer's datasource.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

/// 500: the change could not be stored (nothing of it was kept).
pub(super) fn unstored(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        e.to_string(),
    )
}

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"ok": false, "error": code, "message": message.into()})),
    )
        .into_response()
}

pub(super) fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not JSON: {e}"),
        ))
    })
}

/// `what` with an article: "a blueprint", "an action".
pub(super) fn with_article(what: &str) -> String {
    let vowel = what.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {what}", if vowel { "an" } else { "a" })
}

/// The body and its non-empty `identifier`: 400 when it is not JSON, 422 (`code`) without one.
pub(super) fn identified(
    body: &Bytes,
    code: &str,
    what: &str,
) -> Result<(Value, String), Box<Response>> {
    let body = parse_body(body)?;
    let id = body
        .get("identifier")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("{} needs an `identifier`", with_article(what)),
            ))
        })?;
    Ok((body, id))
}

/// 409: creating `what` `id` again, which exists already, changes nothing.
pub(super) fn taken(what: &str, id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "identifier_taken",
        format!(
            "{} with identifier `{id}` already exists",
            with_article(what)
        ),
    )
}

/// The body as a JSON object: 400 when it is not JSON, 422 when it is not an object.
pub(super) fn parse_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    match parse_body(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be a JSON object",
        ))),
    }
}

pub(super) fn flag(query: &HashMap<String, String>, name: &str, default: bool) -> bool {
    query.get(name).map_or(default, |v| v != "false")
}

pub(super) fn datasource(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split_whitespace().next())
        .unwrap_or("unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_flags_and_datasources() {
        assert_eq!(with_article("blueprint"), "a blueprint");
        assert_eq!(with_article("action"), "an action");
        let query: HashMap<String, String> = [("merge", "true"), ("create", "false")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(flag(&query, "merge", false));
        assert!(!flag(&query, "create", true));
        assert!(flag(&query, "absent", true));
        let mut headers = HeaderMap::new();
        assert_eq!(datasource(&headers), "unknown");
        headers.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static("port-ocean/jira/0.1.0 extra"),
        );
        assert_eq!(datasource(&headers), "port-ocean/jira/0.1.0");
    }

    #[test]
    fn bodies_without_identifiers_or_objects_are_422() {
        let status = |r: Box<Response>| r.status();
        assert_eq!(
            identified(&Bytes::from_static(b"{}"), "invalid_x", "x")
                .err()
                .map(status),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            identified(&Bytes::from_static(b"nope"), "invalid_x", "x")
                .err()
                .map(status),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_object(&Bytes::from_static(b"[1]")).err().map(status),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let (body, id) = identified(&Bytes::from_static(br#"{"identifier":"a"}"#), "c", "x")
            .ok()
            .unwrap_or_default();
        assert_eq!((body["identifier"].as_str(), id.as_str()), (Some("a"), "a"));
    }
}
