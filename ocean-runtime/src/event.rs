//! The webhook event as received: id, path, headers, raw body and parsed payload. What the queue
//! needs to know besides travels beside it, in [`crate::envelope::Envelope`].

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::Value;

use crate::processor::ProcessError;

/// One webhook delivery, kept exactly as it arrived.
///
/// The raw body is kept byte for byte so signatures can be verified long after the request is gone;
/// the payload is that body parsed as JSON once.
///
/// ```
/// use ocean_runtime::WebhookEvent;
///
/// let event = WebhookEvent::new(
///     "ev-1",
///     "/webhook",
///     [("X-GitHub-Event".to_owned(), "issues".to_owned())],
///     r#"{"action": "opened", "issue": {"number": 7}}"#,
/// )?;
/// assert_eq!(event.header("x-github-event"), Some("issues"));
/// assert_eq!(event.str_at("/action")?, "opened");
/// assert_eq!(event.value_at("/issue/number")?, 7);
/// assert!(event.str_at("/issue/title").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    id: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    payload: Value,
    received_at: SystemTime,
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A request body that is not JSON.
///
/// Returned by [`WebhookEvent::new`](crate::WebhookEvent::new).
#[derive(Debug, thiserror::Error)]
#[error("body is not valid JSON: {0}")]
pub struct InvalidJson(#[from] pub(crate) serde_json::Error);

impl WebhookEvent {
    /// Builds an event from a delivery: `path` is the processor path (e.g. `/webhook`), header names are
    /// stored lower-case.
    ///
    /// # Errors
    /// [`InvalidJson`] when the body does not parse as JSON.
    pub fn new(
        id: impl Into<String>,
        path: impl Into<String>,
        headers: impl IntoIterator<Item = (String, String)>,
        body: impl Into<Bytes>,
    ) -> Result<Self, InvalidJson> {
        let body = body.into();
        let payload = serde_json::from_slice(&body)?;
        Ok(Self {
            id: id.into(),
            path: path.into(),
            headers: headers
                .into_iter()
                .map(|(mut k, v)| {
                    k.make_ascii_lowercase();
                    (k, v)
                })
                .collect(),
            body,
            payload,
            received_at: SystemTime::now(),
        })
    }

    /// The event id answered to the sender (`{"status":"ok","id":…}`).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The processor path the event was posted to, without the `/integration` prefix.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Every header, names lower-case, in arrival order.
    #[must_use]
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body exactly as received.
    #[must_use]
    pub fn raw_body(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as JSON.
    #[must_use]
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// When ingress accepted the event.
    #[must_use]
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// The same event as accepted at `at` (an event read back from a queue record).
    pub(crate) fn received(mut self, at: SystemTime) -> Self {
        self.received_at = at;
        self
    }

    /// The value at a JSON pointer (`/issue/key`) of the payload.
    ///
    /// # Errors
    /// A permanent [`ProcessError`] naming the pointer when nothing is there.
    pub fn value_at(&self, pointer: &str) -> Result<&Value, ProcessError> {
        self.payload
            .pointer(pointer)
            .ok_or_else(|| ProcessError::permanent(format!("payload has no value at `{pointer}`")))
    }

    /// The string at a JSON pointer (`/issue/key`) of the payload.
    ///
    /// # Errors
    /// A permanent [`ProcessError`] naming the pointer when nothing is there or it is not a string.
    pub fn str_at(&self, pointer: &str) -> Result<&str, ProcessError> {
        self.value_at(pointer)?.as_str().ok_or_else(|| {
            ProcessError::permanent(format!("payload value at `{pointer}` is not a string"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> WebhookEvent {
        WebhookEvent::new(
            "1",
            "/webhook",
            [("X-Hub".to_owned(), "a".to_owned())],
            body.to_owned(),
        )
        .unwrap()
    }

    #[test]
    fn headers_are_case_insensitive_and_body_is_kept() {
        let e = event(r#"{"a": 1}"#);
        assert_eq!(e.header("x-hub"), Some("a"));
        assert_eq!(e.header("X-HUB"), Some("a"));
        assert_eq!(e.raw_body(), br#"{"a": 1}"#);
    }

    #[test]
    fn str_at_names_the_pointer_on_failure() {
        let e = event(r#"{"issue": {"key": "A-1", "n": 3}}"#);
        assert_eq!(e.str_at("/issue/key").unwrap(), "A-1");
        assert!(
            e.str_at("/issue/n")
                .unwrap_err()
                .to_string()
                .contains("/issue/n")
        );
        assert!(e.str_at("/nope").unwrap_err().to_string().contains("/nope"));
    }

    #[test]
    fn invalid_json_is_rejected() {
        assert!(WebhookEvent::new("1", "/w", [], "{nope".to_owned()).is_err());
    }
}
