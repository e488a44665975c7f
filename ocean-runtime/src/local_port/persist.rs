//! The built-in Port's persistence: the in-memory [`State`] under one lock, written through to redb.
//!
//! Every mutation is applied in memory under the lock and its changes are handed, in the same
//! order, to a writer thread that commits whatever has queued up in one durable transaction (group
//! commit). A request is answered only after its changes are committed, so an answered write
//! survives `kill -9`. A failed commit reloads the state from disk.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::LocalPortError;
use super::store::{Change, State, Stored};
use crate::group_commit::{GroupWriter, StorageError};

/// The database's name in errors and logs.
const WHAT: &str = "built-in Port";

const ENTITIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("entities");
const INTEGRATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("integrations");
const BLUEPRINTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("blueprints");
const EXTRAS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("extras");

/// The state plus its persistence.
pub(crate) struct Store {
    /// Changed before its changes are committed; a failed commit reloads it from the database
    /// (see `Store::open`), so that memory never holds what the disk does not.
    state: std::sync::Arc<Mutex<State>>,
    writer: GroupWriter<Vec<Change>>,
}

fn commit(db: &Database, batches: &[Vec<Change>]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut entities = txn.open_table(ENTITIES)?;
        let mut integrations = txn.open_table(INTEGRATIONS)?;
        let mut blueprints = txn.open_table(BLUEPRINTS)?;
        let mut extras = txn.open_table(EXTRAS)?;
        for change in batches.iter().flatten() {
            match change {
                Change::PutEntity(k, v) => {
                    entities.insert(k.as_str(), v.as_slice())?;
                }
                Change::DeleteEntity(k) => {
                    entities.remove(k.as_str())?;
                }
                Change::PutIntegration(k, v) => {
                    integrations.insert(k.as_str(), v.as_slice())?;
                }
                Change::PutBlueprint(k, v) => {
                    blueprints.insert(k.as_str(), v.as_slice())?;
                }
                Change::DeleteBlueprint(k) => {
                    blueprints.remove(k.as_str())?;
                }
                Change::PutExtra(k, v) => {
                    extras.insert(k.as_str(), v.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn load(db: &Database) -> Result<State, redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(ENTITIES)?;
    txn.open_table(INTEGRATIONS)?;
    txn.open_table(BLUEPRINTS)?;
    txn.open_table(EXTRAS)?;
    txn.commit()?;
    let mut state = State::default();
    let read = db.begin_read()?;
    for row in read.open_table(ENTITIES)?.iter()? {
        let (k, v) = row?;
        let Ok(stored) = serde_json::from_slice::<Stored>(v.value()) else {
            tracing::warn!(
                key = k.value(),
                "built-in Port: skipping an unreadable entity record"
            );
            continue;
        };
        if let Some((bp, id)) = k.value().split_once('\u{1f}') {
            state
                .entities
                .insert((bp.to_owned(), id.to_owned()), stored);
        }
    }
    for row in read.open_table(INTEGRATIONS)?.iter()? {
        let (k, v) = row?;
        if let Ok(record) = serde_json::from_slice(v.value()) {
            state.integrations.insert(k.value().to_owned(), record);
        }
    }
    for row in read.open_table(BLUEPRINTS)?.iter()? {
        let (k, v) = row?;
        if let Ok(record) = serde_json::from_slice(v.value()) {
            state.blueprints.insert(k.value().to_owned(), record);
        }
    }
    for row in read.open_table(EXTRAS)?.iter()? {
        let (k, v) = row?;
        if let Ok(record) = serde_json::from_slice(v.value()) {
            state.extras.insert(k.value().to_owned(), record);
        }
    }
    Ok(state)
}

impl Store {
    /// Opens (or creates) the store in `dir` and loads it into memory.
    pub(crate) fn open(dir: &Path) -> Result<Self, LocalPortError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalPortError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("port.redb");
        // The entities live in memory (`State`); the database is written, and read only at start.
        let storage = |reason: String| LocalPortError::Storage {
            path: path.clone(),
            reason,
        };
        let db = crate::group_commit::Db::open(&path, 16 * 1024 * 1024)
            .map_err(|e| storage(e.to_string()))?;
        let state = db
            .get()
            .and_then(|handle| load(&handle).map_err(|e| StorageError::db(WHAT, e)))
            .map_err(|e| storage(e.to_string()))?;
        let state = std::sync::Arc::new(Mutex::new(state));
        let recover: crate::group_commit::Recover = {
            let state = std::sync::Arc::clone(&state);
            Box::new(move |db, fail_queued| {
                // Writes submit under this lock: nothing new is queued or applied meanwhile.
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                fail_queued();
                match db
                    .get()
                    .and_then(|handle| load(&handle).map_err(|e| StorageError::db(WHAT, e)))
                {
                    Ok(committed) => {
                        *state = committed;
                        tracing::warn!(
                            "built-in Port: a commit failed; its state is back to what is on disk"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "built-in Port: a commit failed and the committed state cannot be read back")
                    }
                }
            })
        };
        let writer = GroupWriter::spawn_with(WHAT, std::sync::Arc::new(db), commit, Some(recover))
            .map_err(|source| LocalPortError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Self { state, writer })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Mutates the state and waits until the changes are durable.
    pub(crate) async fn write<R>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Change>) -> R,
    ) -> Result<R, StorageError> {
        let (committed, result) = {
            let mut state = self.lock();
            let mut changes = Vec::new();
            let result = f(&mut state, &mut changes);
            if changes.is_empty() {
                return Ok(result);
            }
            // Submitted under the lock, so that commits keep the order of the changes.
            (self.writer.submit(changes)?, result)
        };
        committed.await.map_err(|_| StorageError::Stopped(WHAT))??;
        Ok(result)
    }
}
