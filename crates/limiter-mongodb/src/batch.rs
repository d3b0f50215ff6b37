//! Decides a [`Batch`] on MongoDB, whatever the strategy.
//!
//! MongoDB has no server-side scripts and `limits`' layout keeps one
//! document per key, so a batch cannot be one command. What each mode costs
//! in round trips, for a request with N limits:
//!
//! - [`Mode::Sequential`]: one `findAndModify` per hit item and one `find`
//!   per peeked item, one after the other, stopping after the first refusal
//!   when asked: 1 to N round trips. Each hit is atomic on its own
//!   document. The first hit on a key costs two more (the update matches
//!   nothing, a `find`, then an `insert`), and so does a refused
//!   moving-window hit (a `find` for the window's statistics).
//! - [`Mode::Peek`]: one `find` of every key at once: 1 round trip.
//! - [`Mode::AllOrNothing`]: a multi-document transaction (MongoDB needs a
//!   replica set or a sharded cluster for it): one `find` of every key, and
//!   then either an abort (refused: 2 round trips) or one write per
//!   distinct key hit and a commit (K + 2), started over on a write conflict.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use limiter_core::storage::{Action, Batch, Item, Mode, Outcome};
use limiter_core::{StorageError, StorageErrorKind};
use mongodb::bson::{Document, doc};
use mongodb::error::{Error, TRANSIENT_TRANSACTION_ERROR};
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};

use crate::MongoStorage;
use crate::error::{NAME, is_duplicate_key};
use crate::model::{Model, Now};

/// How many times a hit starts over when its document changed under it (a
/// lost race to create it, or a refusal no longer true).
const ATTEMPTS: usize = 8;

/// Whether an item is only read: a peek, a cost of nothing, or a cost that
/// can never pass (refused without being counted).
fn read_only(item: &Item<'_>, mode: Mode) -> bool {
    matches!(mode, Mode::Peek) || item.action == Action::Peek || item.cost == 0 || item.cost > item.limit.amount()
}

/// A failure inside a batch: from the driver (maybe worth a retry), or a
/// document this crate cannot read.
enum Failure {
    Driver(Error),
    Storage(StorageError),
}

/// How one try of an all-or-nothing transaction ended.
enum Attempt {
    /// Every item fits and is written: commit, then answer this.
    Commit(Outcome),
    /// An item does not fit: nothing was written; abort, then answer this.
    Refused(Outcome),
    /// A document changed since it was read: start over.
    Retry,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Driver(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Storage(e)
    }
}

impl MongoStorage {
    fn failure(&self, doing: &str, f: Failure) -> StorageError {
        match f {
            Failure::Driver(e) => self.redactor.error_in(doing, &e),
            Failure::Storage(e) => e,
        }
    }

    /// Decides `batch` within the call timeout.
    pub(crate) async fn decide_batch<M: Model>(&self, batch: &Batch<'_>) -> Result<Outcome, StorageError> {
        let work = async {
            let now = Now::new(batch.now);
            let collection = self.collection(M::COLLECTION);
            match batch.mode {
                Mode::Sequential { stop_at_first_breach } => {
                    self.sequential::<M>(&collection, batch, &now, stop_at_first_breach).await
                }
                Mode::AllOrNothing => self.all_or_nothing::<M>(&collection, batch, &now).await,
                _ => self.peek_all::<M>(&collection, batch, &now).await,
            }
        };
        self.with_indexes(work).await
    }

    async fn sequential<M: Model>(
        &self,
        collection: &Collection<Document>,
        batch: &Batch<'_>,
        now: &Now,
        stop_at_first_breach: bool,
    ) -> Result<Outcome, StorageError> {
        let mut outcome = Outcome::with_capacity(batch.items.len());
        let mut stopped = false;
        for item in batch.items {
            if stopped {
                outcome.push(None);
                continue;
            }
            let key = M::id(&item.limit, &item.key);
            let (allowed, doc) = if read_only(item, batch.mode) {
                let doc = read::<M>(collection, &key).await.map_err(|f| self.failure("read", f))?;
                (doc.fits(item, now), doc)
            } else {
                take::<M>(collection, item, &key, now).await.map_err(|f| self.failure("hit", f))?
            };
            outcome.push(Some(doc.state(item, now, allowed)));
            stopped = !allowed && stop_at_first_breach;
        }
        Ok(outcome)
    }

    /// Every item read with one `find`.
    async fn peek_all<M: Model>(
        &self,
        collection: &Collection<Document>,
        batch: &Batch<'_>,
        now: &Now,
    ) -> Result<Outcome, StorageError> {
        let keys: Vec<String> = batch.items.iter().map(|item| M::id(&item.limit, &item.key)).collect();
        let mut cursor = collection
            .find(doc! { "_id": { "$in": keys.clone() } })
            .await
            .map_err(|e| self.redactor.error_in("read", &e))?;
        let mut found = HashMap::with_capacity(keys.len());
        while cursor.advance().await.map_err(|e| self.redactor.error_in("read", &e))? {
            let doc = cursor.deserialize_current().map_err(|e| self.redactor.error_in("read", &e))?;
            if let Ok(id) = doc.get_str("_id") {
                found.insert(id.to_owned(), doc);
            }
        }
        let mut outcome = Outcome::with_capacity(batch.items.len());
        for (item, key) in batch.items.iter().zip(&keys) {
            let doc = M::parse(found.get(key))?;
            outcome.push(Some(doc.state(item, now, doc.fits(item, now))));
        }
        Ok(outcome)
    }

    /// Every item in one transaction: every document read at once, the
    /// batch decided here, and the documents written only if every item
    /// fits. A concurrent write to one of them aborts the transaction (a
    /// write conflict), which then starts over.
    async fn all_or_nothing<M: Model>(
        &self,
        collection: &Collection<Document>,
        batch: &Batch<'_>,
        now: &Now,
    ) -> Result<Outcome, StorageError> {
        const DOING: &str =
            "all-or-nothing batch (a multi-document transaction: it needs a replica set or a sharded cluster)";
        let mut session = self.client.start_session().await.map_err(|e| self.redactor.error_in(DOING, &e))?;
        // Conflicting transactions start over, with a growing random pause
        // so they do not collide again, until one answers or the call
        // timeout ends the call.
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt = attempt.saturating_add(1);
            session.start_transaction().await.map_err(|e| self.redactor.error_in(DOING, &e))?;
            match transaction::<M>(collection, batch, now, &mut session).await {
                Ok(Attempt::Commit(outcome)) => match session.commit_transaction().await {
                    Ok(()) => return Ok(outcome),
                    Err(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) => {}
                    Err(e) => return Err(self.redactor.error_in(DOING, &e)),
                },
                Ok(Attempt::Refused(outcome)) => {
                    session.abort_transaction().await.map_err(|e| self.redactor.error_in(DOING, &e))?;
                    return Ok(outcome);
                }
                Ok(Attempt::Retry) => {
                    let _ = session.abort_transaction().await;
                }
                Err(Failure::Driver(e)) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) || is_duplicate_key(&e) => {
                    let _ = session.abort_transaction().await;
                }
                Err(f) => {
                    let _ = session.abort_transaction().await;
                    return Err(self.failure(DOING, f));
                }
            }
        }
    }
}

/// A random pause of up to `attempt` milliseconds (at most 20).
fn backoff(attempt: u32) -> Duration {
    let ceiling = u64::from(attempt.min(20)) * 1_000;
    let noise = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_micros(noise % ceiling.max(1))
}

/// One try of an all-or-nothing batch, in `session`'s transaction.
async fn transaction<M: Model>(
    collection: &Collection<Document>,
    batch: &Batch<'_>,
    now: &Now,
    session: &mut ClientSession,
) -> Result<Attempt, Failure> {
    let keys: Vec<String> = batch.items.iter().map(|item| M::id(&item.limit, &item.key)).collect();
    let mut cursor = collection.find(doc! { "_id": { "$in": keys.clone() } }).session(&mut *session).await?;
    let mut documents: HashMap<String, Pending<M>> = HashMap::with_capacity(keys.len());
    while cursor.advance(&mut *session).await? {
        let doc = cursor.deserialize_current()?;
        if let Ok(id) = doc.get_str("_id") {
            documents.insert(id.to_owned(), Pending::read(Some(&doc))?);
        }
    }
    drop(cursor);
    // The batch, decided on the documents as read, each item seeing the
    // earlier items' hits on the same key; answered as committed, or as
    // before the batch if an item refuses.
    let mut committed = Outcome::with_capacity(batch.items.len());
    let mut refused = Outcome::with_capacity(batch.items.len());
    let mut all = true;
    for (item, key) in batch.items.iter().zip(&keys) {
        let document = match documents.get_mut(key) {
            Some(document) => document,
            None => documents.entry(key.clone()).or_insert(Pending::read(None)?),
        };
        let allowed = if read_only(item, batch.mode) {
            document.current.fits(item, now)
        } else {
            let (allowed, after) = document.current.apply(item, now, false);
            if allowed {
                document.current = after;
                document.hit = true;
            }
            allowed
        };
        all &= allowed;
        committed.push(Some(document.current.state(item, now, allowed)));
        refused.push(Some(document.original.state(item, now, allowed)));
    }
    if !all {
        return Ok(Attempt::Refused(refused));
    }
    for (key, document) in &documents {
        if !document.hit {
            continue;
        }
        let written = document.current.document(key, true);
        let existed = document.existed;
        let result = if existed {
            collection
                .replace_one(doc! { "_id": key }, written)
                .session(&mut *session)
                .await
                .map(|r| r.matched_count == 1)
        } else {
            collection.insert_one(written).session(&mut *session).await.map(|_| true)
        };
        match result {
            Ok(true) => {}
            // Deleted since it was read, or created: start over.
            Ok(false) => return Ok(Attempt::Retry),
            Err(e) if is_duplicate_key(&e) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Attempt::Commit(committed))
}

/// One key's document in a transaction.
struct Pending<M> {
    /// Whether it exists on the server (else it is inserted).
    existed: bool,
    /// As read.
    original: M,
    /// After the batch's hits so far.
    current: M,
    /// Whether a hit changed it (it is written on commit).
    hit: bool,
}

impl<M: Model> Pending<M> {
    fn read(doc: Option<&Document>) -> Result<Self, StorageError> {
        let original = M::parse(doc)?;
        Ok(Pending { existed: doc.is_some(), current: original.clone(), original, hit: false })
    }
}

async fn read<M: Model>(collection: &Collection<Document>, key: &str) -> Result<M, Failure> {
    Ok(M::parse(collection.find_one(doc! { "_id": key }).await?.as_ref())?)
}

/// One hit, decided on the server in one `findAndModify` under the
/// document's lock and answered from the document after it. A first hit
/// inserts the document instead (two first hits cannot both succeed: the
/// loser updates the winner's document); a refused moving-window hit reads
/// the document for the window's statistics.
async fn take<M: Model>(
    collection: &Collection<Document>,
    item: &Item<'_>,
    key: &str,
    now: &Now,
) -> Result<(bool, M), Failure> {
    let (filter, update) = M::server_hit(item, now, key);
    for _ in 0..ATTEMPTS {
        let after = collection
            .find_one_and_update(filter.clone(), update.clone())
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(after) = after {
            return Ok(M::server_answer(&after, item)?);
        }
        let current = collection.find_one(doc! { "_id": key }).await?;
        let current = match current {
            Some(doc) => M::parse(Some(&doc))?,
            None => {
                let (allowed, first) = M::parse(None)?.apply(item, now, true);
                match collection.insert_one(first.document(key, allowed)).await {
                    Ok(_) => return Ok((allowed, first)),
                    Err(e) if is_duplicate_key(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // The update's filter refused it (the moving window): refused,
        // unless the document changed in between and the cost fits now.
        // Otherwise the document was deleted and created again meanwhile.
        if M::REFUSES_BY_FILTER && !current.fits(item, now) {
            return Ok((false, current));
        }
    }
    Err(Failure::Storage(StorageError::new(
        StorageErrorKind::Unavailable,
        NAME,
        format!("hit: {key:?} kept changing under {ATTEMPTS} attempts"),
    )))
}
