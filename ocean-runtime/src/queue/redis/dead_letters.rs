//! Dead letters on Redis: listed, read, replayed and dropped by the operator's commands.

use std::collections::HashMap;

use super::super::{DeadLetter, DeadLetterStore, QueueError};
use super::RedisQueue;
use super::inner::Inner;
use super::reply::{classify, parse_letter, stored_letter, text, unexpected};
use crate::envelope::Envelope;
use crate::group_commit::StorageError;
use crate::processor::BoxFuture;

impl DeadLetterStore for RedisQueue {
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let all: HashMap<u64, Vec<u8>> = redis::cmd("HGETALL")
                .arg(&self.inner.keys[11])
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            let mut letters = all
                .into_iter()
                .map(|(id, bytes)| parse_letter(id, &bytes).map_err(QueueError::Storage))
                .collect::<Result<Vec<_>, _>>()?;
            letters.sort_by_key(|l| l.id);
            Ok(letters)
        })
    }

    fn get(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let bytes: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&self.inner.keys[11])
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            stored_letter(id, bytes)
        })
    }

    fn remove(&self, id: u64) -> BoxFuture<'_, Result<Option<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let key = &self.inner.keys[11];
            let (bytes, _): (Option<Vec<u8>>, i64) = redis::pipe()
                .atomic()
                .hget(key, id)
                .hdel(key, id)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            stored_letter(id, bytes)
        })
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let key = &self.inner.keys[11];
            let (n, _): (usize, i64) = redis::pipe()
                .atomic()
                .hlen(key)
                .del(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            Ok(n)
        })
    }

    fn replay(&self, id: u64, event: Envelope) -> BoxFuture<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let record = event.to_record().map_err(StorageError::from)?;
            let (sup, groups) = Inner::event_args(&event);
            let id = id.to_string();
            let capacity = inner.opts.capacity.to_string();
            let mut args: Vec<&[u8]> =
                vec![id.as_bytes(), &record, capacity.as_bytes(), sup.as_bytes()];
            args.extend(groups.iter().map(String::as_bytes));
            let answer = inner.run(&inner.scripts.replay, &args).await?;
            match text(&answer).as_deref() {
                Some("ok") => Ok(true),
                Some("gone") => Ok(false),
                Some("full") => Err(QueueError::Full {
                    capacity: inner.opts.capacity,
                }),
                _ => Err(unexpected("replay", &answer)),
            }
        })
    }
}
