//! What the queue carries: an event with the facts ingress found out about it (its group keys,
//! whether a later event supersedes it, its delivery id, the processors whose verifier refused
//! it), and the record both are stored as. Authors see only the [`WebhookEvent`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use crate::event::{InvalidJson, WebhookEvent, unix_ms};

/// The facts ingress found out about an event, which the queue schedules by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// Ordering keys (one per matching processor with a `group`): an event waits while an earlier
    /// event sharing one of its keys is queued or in flight.
    pub(crate) group_keys: Vec<String>,
    /// Whether a later event with the same group keys makes this one unnecessary (every processor
    /// of its path only needs the latest event of a group).
    pub(crate) supersedable: bool,
    /// The sender's delivery id (path, header, value), when it sent one; a durable queue stores it
    /// with the event so that a redelivery after a restart is still recognised.
    pub(crate) delivery_key: Option<String>,
    /// The processors whose ingress verifier refused this delivery; they do not process it.
    pub(crate) unauthenticated: Vec<String>,
}

/// An event and its [`Schedule`]: what ingress hands the queue and the queue hands a worker.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// The event, as its processors see it.
    pub(crate) event: WebhookEvent,
    /// What the queue schedules it by.
    pub(crate) schedule: Schedule,
}

/// The event as a durable queue stores it (the payload is parsed again from the body on load).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    id: Cow<'a, str>,
    path: Cow<'a, str>,
    headers: Cow<'a, [(String, String)]>,
    /// Absent in a queue record, which keeps the body as raw bytes after the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    received_at_ms: u64,
    group_keys: Cow<'a, [String]>,
    unauthenticated: Cow<'a, [String]>,
    #[serde(default)]
    supersedable: bool,
    /// The sender's delivery id, kept so that a redelivery is still recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery_key: Option<Cow<'a, str>>,
}

/// First byte of a queue record (see [`WebhookEvent::to_record`]); a JSON record starts with `{`.
const RECORD_TAG: u8 = 1;

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

impl Envelope {
    /// An event with nothing found out about it yet (ingress always finds something out).
    #[cfg(test)]
    pub(crate) fn new(event: WebhookEvent) -> Self {
        Self {
            event,
            schedule: Schedule::default(),
        }
    }

    /// The event's ordering keys.
    pub(crate) fn group_keys(&self) -> &[String] {
        &self.schedule.group_keys
    }

    /// Whether a later event of the same groups supersedes it.
    pub(crate) fn supersedable(&self) -> bool {
        self.schedule.supersedable
    }

    /// The sender's delivery id, if any.
    pub(crate) fn delivery_key(&self) -> Option<&str> {
        self.schedule.delivery_key.as_deref()
    }

    /// The processors whose ingress verifier refused the delivery.
    pub(crate) fn unauthenticated(&self) -> &[String] {
        &self.schedule.unauthenticated
    }

    /// The envelope as JSON bytes (a dead letter's form, and queues written by earlier versions).
    ///
    /// # Errors
    /// The body is not UTF-8 (cannot happen for a body that parsed as JSON).
    pub(crate) fn to_stored(&self) -> Result<Vec<u8>, RecordError> {
        let body = std::str::from_utf8(self.event.raw_body()).map_err(|_| RecordError::NotUtf8)?;
        serde_json::to_vec(&self.stored(Some(body))).map_err(RecordError::malformed)
    }

    fn stored<'a>(&'a self, body: Option<&'a str>) -> Stored<'a> {
        let (e, s) = (&self.event, &self.schedule);
        Stored {
            id: e.id().into(),
            path: e.path().into(),
            headers: e.headers().into(),
            body: body.map(Into::into),
            received_at_ms: unix_ms(e.received_at()),
            group_keys: s.group_keys.as_slice().into(),
            unauthenticated: s.unauthenticated.as_slice().into(),
            supersedable: s.supersedable,
            delivery_key: s.delivery_key.as_deref().map(Into::into),
        }
    }

    /// The envelope as a queue record: [`RECORD_TAG`], the length of what follows as a
    /// little-endian `u32`, the JSON of everything but the body, then the body's bytes as they
    /// arrived (no escaping on the way in, no unescaping on the way out).
    pub(crate) fn to_record(&self) -> Result<Vec<u8>, RecordError> {
        let meta = serde_json::to_vec(&self.stored(None)).map_err(RecordError::malformed)?;
        let len = u32::try_from(meta.len()).map_err(|_| RecordError::TooLarge)?;
        let body = self.event.raw_body();
        let mut out = Vec::with_capacity(5 + meta.len() + body.len());
        out.push(RECORD_TAG);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(body);
        Ok(out)
    }

    /// An envelope read back from [`to_record`](Self::to_record) bytes, or from the JSON of
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

    /// An envelope read back from [`to_stored`](Self::to_stored) bytes.
    ///
    /// # Errors
    /// The bytes are not a stored event.
    pub(crate) fn from_stored(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut s: Stored<'_> = serde_json::from_slice(bytes).map_err(RecordError::malformed)?;
        let body = s.body.take().ok_or(RecordError::NoBody)?;
        Self::from_parts(s, Bytes::from(body.into_owned()))
    }

    fn from_parts(s: Stored<'_>, body: Bytes) -> Result<Self, RecordError> {
        let event = WebhookEvent::new(
            s.id.into_owned(),
            s.path.into_owned(),
            s.headers.into_owned(),
            body,
        )
        .map_err(|InvalidJson(e)| RecordError::Body(Arc::new(e)))?
        .received(UNIX_EPOCH + Duration::from_millis(s.received_at_ms));
        Ok(Self {
            event,
            schedule: Schedule {
                group_keys: s.group_keys.into_owned(),
                supersedable: s.supersedable,
                delivery_key: s.delivery_key.map(Cow::into_owned),
                unauthenticated: s.unauthenticated.into_owned(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Envelope, b: &Envelope) {
        let (x, y) = (&a.event, &b.event);
        assert_eq!(x.id(), y.id());
        assert_eq!(x.path(), y.path());
        assert_eq!(x.headers(), y.headers());
        assert_eq!(x.raw_body(), y.raw_body());
        assert_eq!(x.payload(), y.payload());
        assert_eq!(unix_ms(x.received_at()), unix_ms(y.received_at()));
        assert_eq!(a.schedule, b.schedule);
    }

    #[test]
    fn queue_records_keep_the_raw_body_and_read_both_formats() {
        // Spacing and escapes that a re-serialisation would change.
        let event = WebhookEvent::new(
            "1",
            "/webhook",
            [("X-Hub".to_owned(), "a".to_owned())],
            "{\"a\" :  \"\\u00e9\\n\", \"b\": [1,2]}".to_owned(),
        )
        .unwrap();
        let e = Envelope {
            event,
            schedule: Schedule {
                group_keys: vec!["p:A-1".into()],
                unauthenticated: vec!["other".into()],
                supersedable: true,
                delivery_key: Some("/w\u{1f}webhook-id\u{1f}d-1".into()),
            },
        };
        let record = e.to_record().unwrap();
        assert_eq!(record[0], RECORD_TAG);
        assert!(record.ends_with(e.event.raw_body()));
        same(&e, &Envelope::from_record(&record).unwrap());
        // Queues written before records existed hold `to_stored` JSON.
        same(&e, &Envelope::from_record(&e.to_stored().unwrap()).unwrap());
        for cut in [1, 3, 5, record.len() - e.event.raw_body().len() - 1] {
            assert!(
                Envelope::from_record(&record[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
