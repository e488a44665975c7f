//! Reading the scripts' replies and stored records, and turning Redis errors into queue errors.

use std::sync::Arc;

use redis::Value;

use super::super::{DeadLetter, QueueError};
use crate::envelope::{Envelope, RecordError};
use crate::group_commit::StorageError;

pub(super) fn hex(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes()
        .fold(String::with_capacity(s.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

pub(super) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

pub(super) fn unexpected(what: &str, v: &impl std::fmt::Debug) -> QueueError {
    QueueError::Storage(StorageError::Unexpected {
        script: what.to_owned(),
        answer: format!("{v:?}"),
    })
}

/// A dead letter that does not encode or decode.
pub(super) fn letter_error(e: serde_json::Error) -> StorageError {
    StorageError::Record(RecordError::Malformed(Arc::new(e)))
}

/// What the last call said about Redis.
pub(super) fn classify(e: &redis::RedisError) -> QueueError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Storage(StorageError::Redis(Arc::new(e.clone())))
    }
}

/// A dead letter as stored: the JSON of [`DeadLetter`], or (for an event the reaper gave up on)
/// `T`, a JSON line with the error, then the event's record.
pub(super) fn parse_letter(id: u64, bytes: &[u8]) -> Result<DeadLetter, StorageError> {
    if let Some(rest) = bytes.strip_prefix(b"T") {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(RecordError::Truncated)?;
        let meta: serde_json::Value = serde_json::from_slice(&rest[..nl]).map_err(letter_error)?;
        let event = Envelope::from_record(&rest[nl + 1..])?;
        let mut letter = DeadLetter::of_event(
            &event,
            meta["error"].as_str().unwrap_or_default().to_owned(),
            u32::try_from(meta["attempts"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
            meta["failed_at_ms"].as_u64().unwrap_or(0),
        );
        letter.id = id;
        return Ok(letter);
    }
    let mut letter: DeadLetter = serde_json::from_slice(bytes).map_err(letter_error)?;
    letter.id = id;
    Ok(letter)
}

/// The dead letter stored under `id`, if any.
pub(super) fn stored_letter(
    id: u64,
    bytes: Option<Vec<u8>>,
) -> Result<Option<DeadLetter>, QueueError> {
    bytes
        .map(|b| parse_letter(id, &b).map_err(QueueError::Storage))
        .transpose()
}
