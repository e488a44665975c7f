//! The webhook event as received: id, path, headers, raw body and parsed payload.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::Value;

use crate::processor::ProcessError;

/// One webhook delivery, kept exactly as it arrived.
///
/// The raw body is kept byte for byte so signatures can be verified long after the request is gone;
/// the payload is that body parsed as JSON once.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    id: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    payload: Value,
    received_at: SystemTime,
    group_keys: Vec<String>,
    unauthenticated: Vec<String>,
    supersedable: bool,
    delivery_key: Option<String>,
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The event as a durable queue stores it (the payload is parsed again from the body on load).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    id: std::borrow::Cow<'a, str>,
    path: std::borrow::Cow<'a, str>,
    headers: std::borrow::Cow<'a, [(String, String)]>,
    /// Absent in a queue record, which keeps the body as raw bytes after the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
    received_at_ms: u64,
    group_keys: std::borrow::Cow<'a, [String]>,
    unauthenticated: std::borrow::Cow<'a, [String]>,
    #[serde(default)]
    supersedable: bool,
    /// The sender's delivery id, kept so that a redelivery is still recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery_key: Option<std::borrow::Cow<'a, str>>,
}

/// First byte of a queue record (see [`WebhookEvent::to_record`]); a JSON record starts with `{`.
const RECORD_TAG: u8 = 1;

/// A request body that is not JSON.
#[derive(Debug, thiserror::Error)]
#[error("body is not valid JSON: {0}")]
pub struct InvalidJson(#[from] serde_json::Error);

/// A queued event or dead letter that cannot be written or read back.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record ends before its own length says.
    #[error("truncated queue record")]
    Truncated,
    /// The record's JSON is not a stored event.
    #[error("not a stored event: {0}")]
    Malformed(std::sync::Arc<serde_json::Error>),
    /// The stored event has no body.
    #[error("the stored event has no body")]
    NoBody,
    /// The stored body does not parse as JSON.
    #[error("the stored body is not JSON: {0}")]
    Body(std::sync::Arc<serde_json::Error>),
    /// The body is not UTF-8, so it cannot be stored inside JSON (a body that parsed as JSON is).
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// The event's headers and facts take more than 4 GiB.
    #[error("the event's headers are too large to store")]
    TooLarge,
}

impl RecordError {
    fn malformed(e: serde_json::Error) -> Self {
        Self::Malformed(std::sync::Arc::new(e))
    }
}

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
            group_keys: Vec::new(),
            unauthenticated: Vec::new(),
            supersedable: false,
            delivery_key: None,
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

    /// The event's ordering keys (one per matching processor with a `group`): an event waits while
    /// an earlier event sharing one of its keys is queued or in flight.
    #[must_use]
    pub(crate) fn group_keys(&self) -> &[String] {
        &self.group_keys
    }

    /// Sets the ordering keys (done by ingress).
    pub(crate) fn set_group_keys(&mut self, keys: Vec<String>) {
        self.group_keys = keys;
    }

    /// Whether a later event with the same group keys makes this one unnecessary (every processor
    /// of its path only needs the latest event of a group).
    #[must_use]
    pub(crate) fn supersedable(&self) -> bool {
        self.supersedable
    }

    /// The sender's delivery id (path, header, value), when it sent one; a durable queue stores it
    /// with the event so that a redelivery after a restart is still recognised.
    #[must_use]
    pub(crate) fn delivery_key(&self) -> Option<&str> {
        self.delivery_key.as_deref()
    }

    /// Sets the delivery id (done by ingress).
    pub(crate) fn set_delivery_key(&mut self, key: Option<String>) {
        self.delivery_key = key;
    }

    /// Marks the event supersedable (done by ingress).
    pub(crate) fn set_supersedable(&mut self, supersedable: bool) {
        self.supersedable = supersedable;
    }

    /// The processors whose ingress verifier refused this delivery; they do not process it.
    #[must_use]
    pub(crate) fn unauthenticated(&self) -> &[String] {
        &self.unauthenticated
    }

    /// Records the processors whose verifier refused the delivery (done by ingress).
    pub(crate) fn set_unauthenticated(&mut self, processors: Vec<String>) {
        self.unauthenticated = processors;
    }

    /// The event as bytes for a durable queue.
    ///
    /// # Errors
    /// The body is not UTF-8 (cannot happen for a body that parsed as JSON).
    pub(crate) fn to_stored(&self) -> Result<Vec<u8>, RecordError> {
        let body = std::str::from_utf8(&self.body).map_err(|_| RecordError::NotUtf8)?;
        serde_json::to_vec(&self.stored(Some(body))).map_err(RecordError::malformed)
    }

    fn stored<'a>(&'a self, body: Option<&'a str>) -> Stored<'a> {
        Stored {
            id: self.id.as_str().into(),
            path: self.path.as_str().into(),
            headers: self.headers.as_slice().into(),
            body: body.map(Into::into),
            received_at_ms: unix_ms(self.received_at),
            group_keys: self.group_keys.as_slice().into(),
            unauthenticated: self.unauthenticated.as_slice().into(),
            supersedable: self.supersedable,
            delivery_key: self.delivery_key.as_deref().map(Into::into),
        }
    }

    /// The event as a queue record: [`RECORD_TAG`], the length of what follows as a little-endian
    /// `u32`, the JSON of everything but the body, then the body's bytes as they arrived (no
    /// escaping on the way in, no unescaping on the way out).
    pub(crate) fn to_record(&self) -> Result<Vec<u8>, RecordError> {
        let meta = serde_json::to_vec(&self.stored(None)).map_err(RecordError::malformed)?;
        let len = u32::try_from(meta.len()).map_err(|_| RecordError::TooLarge)?;
        let mut out = Vec::with_capacity(5 + meta.len() + self.body.len());
        out.push(RECORD_TAG);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// An event read back from [`to_record`](Self::to_record) bytes, or from the JSON of
    /// [`to_stored`](Self::to_stored) (how queues written by earlier versions hold events).
    pub(crate) fn from_record(bytes: &[u8]) -> Result<Self, RecordError> {
        let Some((&RECORD_TAG, rest)) = bytes.split_first() else {
            return Self::from_stored(bytes);
        };
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(RecordError::Truncated)?;
        let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| RecordError::TooLarge)?;
        let (meta, body) = rest.split_at_checked(len).ok_or(RecordError::Truncated)?;
        let s: Stored<'_> = serde_json::from_slice(meta).map_err(RecordError::malformed)?;
        Self::from_parts(s, Bytes::copy_from_slice(body))
    }

    /// An event read back from [`to_stored`](Self::to_stored) bytes.
    ///
    /// # Errors
    /// The bytes are not a stored event.
    pub(crate) fn from_stored(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut s: Stored<'_> = serde_json::from_slice(bytes).map_err(RecordError::malformed)?;
        let body = s.body.take().ok_or(RecordError::NoBody)?;
        Self::from_parts(s, Bytes::from(body.into_owned()))
    }

    fn from_parts(s: Stored<'_>, body: Bytes) -> Result<Self, RecordError> {
        let mut event = Self::new(
            s.id.into_owned(),
            s.path.into_owned(),
            s.headers.into_owned(),
            body,
        )
        .map_err(|InvalidJson(e)| RecordError::Body(std::sync::Arc::new(e)))?;
        event.received_at =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(s.received_at_ms);
        event.group_keys = s.group_keys.into_owned();
        event.unauthenticated = s.unauthenticated.into_owned();
        event.supersedable = s.supersedable;
        event.delivery_key = s.delivery_key.map(std::borrow::Cow::into_owned);
        Ok(event)
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

    fn same(a: &WebhookEvent, b: &WebhookEvent) {
        assert_eq!(a.id(), b.id());
        assert_eq!(a.path(), b.path());
        assert_eq!(a.headers(), b.headers());
        assert_eq!(a.raw_body(), b.raw_body());
        assert_eq!(a.payload(), b.payload());
        assert_eq!(a.group_keys(), b.group_keys());
        assert_eq!(a.unauthenticated(), b.unauthenticated());
        assert_eq!(a.supersedable(), b.supersedable());
        assert_eq!(a.delivery_key(), b.delivery_key());
        assert_eq!(unix_ms(a.received_at()), unix_ms(b.received_at()));
    }

    #[test]
    fn queue_records_keep_the_raw_body_and_read_both_formats() {
        // Spacing and escapes that a re-serialisation would change.
        let mut e = event("{\"a\" :  \"\\u00e9\\n\", \"b\": [1,2]}");
        e.set_group_keys(vec!["p:A-1".into()]);
        e.set_unauthenticated(vec!["other".into()]);
        e.set_supersedable(true);
        e.set_delivery_key(Some("/w\u{1f}webhook-id\u{1f}d-1".into()));
        let record = e.to_record().unwrap();
        assert_eq!(record[0], RECORD_TAG);
        assert!(record.ends_with(e.raw_body()));
        same(&e, &WebhookEvent::from_record(&record).unwrap());
        // Queues written before records existed hold `to_stored` JSON.
        same(
            &e,
            &WebhookEvent::from_record(&e.to_stored().unwrap()).unwrap(),
        );
        for cut in [1, 3, 5, record.len() - e.raw_body().len() - 1] {
            assert!(
                WebhookEvent::from_record(&record[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn invalid_json_is_rejected() {
        assert!(WebhookEvent::new("1", "/w", [], "{nope".to_owned()).is_err());
    }
}
