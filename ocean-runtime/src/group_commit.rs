//! Group commit for the embedded databases (the disk queue, the built-in Port): one writer thread
//! per database commits every operation that has accumulated in one transaction, so the cost of a
//! durable commit is shared by all the writers that were waiting.
//!
//! redb refuses every operation after one failed on I/O (a full disk, say) until the database is
//! opened again; the writer does that by itself ([`Db`]), so that the database works again as soon
//! as the disk does.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::oneshot;

/// Why a queue or store operation did not reach its database (or Redis), typed by cause.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database file failed on I/O (a full disk, say) and cannot be opened again yet.
    #[error("{} failed on I/O and cannot be opened again yet", .path.display())]
    Closed {
        /// The database file.
        path: PathBuf,
    },
    /// The writer thread has stopped (the owner is shutting down).
    #[error("the {0} writer has stopped")]
    Stopped(&'static str),
    /// The embedded database refused the operation.
    #[error("{what}: {source}")]
    Database {
        /// Which database.
        what: &'static str,
        /// redb's error.
        source: Arc<redb::Error>,
    },
    /// Not committed, because an earlier commit failed while this write waited behind it.
    #[error("not committed: an earlier commit failed ({0})")]
    Behind(Arc<StorageError>),
    /// A stored event or dead letter could not be written or read back.
    #[error(transparent)]
    Record(#[from] crate::envelope::RecordError),
    /// Redis refused a command.
    #[error("redis: {0}")]
    Redis(Arc<redis::RedisError>),
    /// A record the queue holds by reference is not in its database.
    #[error("{0} is not in the database")]
    NotFound(String),
    /// A Redis script answered something it never answers.
    #[error("unexpected answer from the {script} script: {answer}")]
    Unexpected {
        /// The script.
        script: String,
        /// What it answered.
        answer: String,
    },
}

impl StorageError {
    /// redb's `error` on database `what`.
    pub(crate) fn db(what: &'static str, error: impl Into<redb::Error>) -> Self {
        Self::Database {
            what,
            source: Arc::new(error.into()),
        }
    }
}

/// A redb database that is opened again after an I/O error. Readers take the current handle with
/// [`Db::get`] for the length of one transaction.
pub(crate) struct Db {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` while it could not be opened again.
    current: RwLock<Option<Arc<Database>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether redb failed on I/O (and refuses everything until the database is opened again).
fn is_io(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

impl Db {
    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`.
    ///
    /// # Errors
    /// redb's, e.g. a file that is not a redb database (which is left as it is).
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Self, redb::DatabaseError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        Ok(Self {
            path: path.to_owned(),
            cache_bytes,
            current: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The database as it is now.
    ///
    /// # Errors
    /// It failed on I/O and could not be opened again yet.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StorageError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StorageError::Closed {
                path: self.path.clone(),
            })
    }

    /// Drops the handle (waiting up to 5 s for readers to finish with it) and opens the file again.
    fn reopen(&self) -> Result<(), StorageError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if Arc::strong_count(&old) > 1 {
                *current = Some(old);
                return Err(StorageError::Closed {
                    path: self.path.clone(),
                });
            }
        }
        let db = redb::Builder::new()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)
            .map_err(|e| StorageError::db("reopen", e))?;
        *current = Some(Arc::new(db));
        Ok(())
    }

    /// The current handle, opening the file again first if an I/O error closed it.
    fn get_or_reopen(&self, what: &str) -> Result<Arc<Database>, StorageError> {
        if let Ok(db) = self.get() {
            return Ok(db);
        }
        self.reopen().inspect_err(|e| {
            tracing::debug!(error = %e, "{what}: the database cannot be opened again yet");
        })?;
        tracing::info!("{what}: the database is open again");
        self.get()
    }
}

/// Most operations in one transaction.
const MAX_GROUP: usize = 4096;

/// Tells the waiting writer how its group's commit went.
pub(crate) type Committed = oneshot::Receiver<Result<(), StorageError>>;

/// Called by the writer thread after a failed commit, for an owner that applied the operations
/// to a copy in memory before submitting them: it gets the database (holding what was committed)
/// and a function that fails every operation still queued, so that it can bring its copy back to
/// the database's state with nothing in between (it should call the function while holding the
/// lock under which it submits).
pub(crate) type Recover = Box<dyn Fn(&Db, &mut dyn FnMut()) + Send>;

/// An empty commit with full durability.
fn flush(db: &Database) -> Result<(), redb::Error> {
    db.begin_write()?.commit()?;
    Ok(())
}

struct Pending<Op> {
    op: Op,
    /// `None` when nobody waits for the commit.
    done: Option<oneshot::Sender<Result<(), StorageError>>>,
}

/// The sending side of a database's writer thread.
pub(crate) struct GroupWriter<Op> {
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<Pending<Op>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    what: &'static str,
}

impl<Op> Drop for GroupWriter<Op> {
    /// Stops the writer thread and waits for its final commit, so that the database is closed
    /// (and can be opened again, e.g. by a restart in the same process) once this returns.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("{}: the writer thread panicked", self.what);
        }
    }
}

impl<Op: Send + 'static> GroupWriter<Op> {
    /// Starts the writer thread. `commit` writes a group of operations in one transaction. When the
    /// last `GroupWriter` is dropped, the thread commits once more with full durability (making any
    /// earlier commit that skipped its fsync durable) and ends.
    pub(crate) fn spawn(
        what: &'static str,
        db: Arc<Db>,
        commit: fn(&Database, &[Op]) -> Result<(), redb::Error>,
    ) -> std::io::Result<Self> {
        Self::spawn_with(what, db, commit, None)
    }

    /// [`spawn`](Self::spawn), with `recover` called after every failed commit (see [`Recover`]).
    pub(crate) fn spawn_with(
        what: &'static str,
        db: Arc<Db>,
        commit: fn(&Database, &[Op]) -> Result<(), redb::Error>,
        recover: Option<Recover>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Pending<Op>>();
        let thread = std::thread::Builder::new()
            .name(format!("{what} writer"))
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(p) => group.push(p),
                            Err(_) => break,
                        }
                    }
                    let (ops, dones): (Vec<Op>, Vec<_>) =
                        group.into_iter().map(|p| (p.op, p.done)).unzip();
                    let result = match db.get_or_reopen(what) {
                        Ok(handle) => match commit(&handle, &ops) {
                            Ok(()) => Ok(()),
                            Err(e) => {
                                tracing::error!(error = %e, "{what}: commit failed");
                                drop(handle);
                                if is_io(&e) {
                                    // The next group opens it again (when the disk works again).
                                    if let Err(why) = db.reopen() {
                                        tracing::warn!(error = %why, "{what}: the database cannot be opened again yet");
                                    }
                                }
                                Err(StorageError::db(what, e))
                            }
                        },
                        Err(e) => Err(e),
                    };
                    if let (Err(e), Some(recover)) = (&result, &recover) {
                        let mut fail_queued = || {
                            while let Ok(p) = rx.try_recv() {
                                if let Some(done) = p.done {
                                    let _ = done.send(Err(StorageError::Behind(Arc::new(e.clone()))));
                                }
                            }
                        };
                        recover(&db, &mut fail_queued);
                    }
                    // Told only once the owner's copy is back to what is committed.
                    for done in dones.into_iter().flatten() {
                        let _ = done.send(result.clone());
                    }
                }
                match db.get() {
                    Ok(handle) => {
                        if let Err(e) = flush(&handle) {
                            tracing::warn!(error = %e, "{what}: final commit failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "{what}: no final commit"),
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            what,
        })
    }

    fn stopped(&self) -> StorageError {
        StorageError::Stopped(self.what)
    }

    fn sender(&self) -> Result<&mpsc::Sender<Pending<Op>>, StorageError> {
        self.tx.as_ref().ok_or_else(|| self.stopped())
    }

    /// Queues `op` (operations are committed in the order they are submitted).
    ///
    /// # Errors
    /// The writer thread has stopped.
    pub(crate) fn submit(&self, op: Op) -> Result<Committed, StorageError> {
        let (done, committed) = oneshot::channel();
        self.sender()?
            .send(Pending {
                op,
                done: Some(done),
            })
            .map_err(|_| self.stopped())?;
        Ok(committed)
    }

    /// Queues `op` without waiting for its commit.
    ///
    /// # Errors
    /// The writer thread has stopped.
    pub(crate) fn submit_detached(&self, op: Op) -> Result<(), StorageError> {
        self.sender()?
            .send(Pending { op, done: None })
            .map_err(|_| self.stopped())
    }

    /// Queues `op` and waits until it is committed.
    ///
    /// # Errors
    /// The commit failed or the writer thread has stopped.
    pub(crate) async fn write(&self, op: Op) -> Result<(), StorageError> {
        self.submit(op)?.await.map_err(|_| self.stopped())?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    /// Held by the test while it queues writes behind the failing commit.
    static GATE: Mutex<()> = Mutex::new(());
    /// Set once the failing commit has started (and waits at the gate).
    static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn commit(_: &Database, ops: &[&'static str]) -> Result<(), redb::Error> {
        if ops.contains(&"fail") {
            ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(GATE.lock());
            return Err(redb::Error::Corrupted("refused for the test".to_owned()));
        }
        Ok(())
    }

    /// After a failed commit, the operations queued behind it fail too (none commits after the
    /// owner restored its copy), and the owner's recovery runs once.
    #[tokio::test]
    async fn a_failed_commit_fails_what_was_queued_behind_it_and_recovers() {
        let dir = std::env::temp_dir().join(format!("ocean-gc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Arc::new(Db::open(&dir.join("t.redb"), 1024 * 1024).unwrap());
        let recovered = Arc::new(Mutex::new(0));
        // Held while submitting, as the built-in Port's state lock is.
        let lock = Arc::new(Mutex::new(()));
        let recover: Recover = {
            let (recovered, lock) = (Arc::clone(&recovered), Arc::clone(&lock));
            Box::new(move |_, fail_queued| {
                let _held = lock.lock().unwrap();
                fail_queued();
                *recovered.lock().unwrap() += 1;
            })
        };
        let writer = GroupWriter::spawn_with("test", db, commit, Some(recover)).unwrap();
        // The failing commit runs alone; two writes are queued while it does.
        let gate = GATE.lock().unwrap();
        let a = writer.submit("fail").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ENTERED.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit never started"
            );
            std::thread::yield_now();
        }
        let (b, c) = {
            let _held = lock.lock().unwrap();
            (
                writer.submit("after").unwrap(),
                writer.submit("after").unwrap(),
            )
        };
        drop(gate);
        let results = [a.await.unwrap(), b.await.unwrap(), c.await.unwrap()];
        assert!(
            matches!(&results[0], Err(StorageError::Database { .. })),
            "the failed commit's write: {results:?}"
        );
        assert!(
            results[1..]
                .iter()
                .all(|r| matches!(r, Err(StorageError::Behind(_)))),
            "every write behind the failed commit fails as such: {results:?}"
        );
        assert_eq!(*recovered.lock().unwrap(), 1);
        let later = writer.write("later").await;
        assert!(later.is_ok(), "later writes commit: {later:?}");
        drop(writer);
        let _ = std::fs::remove_dir_all(dir);
    }
}
