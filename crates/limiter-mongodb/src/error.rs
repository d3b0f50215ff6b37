//! Driver errors as [`StorageError`]s with a kind the failure policy acts
//! on, and with the URI's password scrubbed from every message.

use std::fmt;
use std::sync::Arc;

use limiter_core::{StorageError, StorageErrorKind};
use mongodb::error::{Error, ErrorKind};

pub(crate) const NAME: &str = "mongodb";

/// MongoDB's duplicate key error: two upserts of one new `_id` raced.
pub(crate) const DUPLICATE_KEY: i32 = 11_000;

/// Removes the URI's password, raw and percent-decoded, from messages.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Arc<[String]>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(..)")
    }
}

impl Redactor {
    /// The secrets of `uri`: the password of `user:password@`, as written
    /// and decoded. The last `@` ends the credentials, as in `limits`.
    pub(crate) fn for_uri(uri: &str) -> Self {
        let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let mut secrets = Vec::new();
        if let Some((userinfo, _)) = rest.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !password.is_empty()
        {
            secrets.push(password.to_owned());
            let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy().into_owned();
            if decoded != password {
                secrets.push(decoded);
            }
        }
        Redactor { secrets: secrets.into() }
    }

    /// `message` without any secret.
    pub(crate) fn scrub(&self, message: String) -> String {
        self.secrets.iter().fold(message, |message, secret| message.replace(secret.as_str(), "***"))
    }

    /// A driver error as a storage error, saying what was being done.
    pub(crate) fn error_in(&self, doing: &str, e: &Error) -> StorageError {
        // The error's kind, without the raw server reply the driver's
        // Display appends.
        StorageError::new(kind(e), NAME, self.scrub(format!("{doing}: {}", e.kind)))
    }
}

/// What the failure policy should make of a driver error.
pub(crate) fn kind(e: &Error) -> StorageErrorKind {
    match e.kind.as_ref() {
        ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => StorageErrorKind::Timeout,
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => StorageErrorKind::Unavailable,
        ErrorKind::InvalidResponse { .. } | ErrorKind::BsonDeserialization(_) => StorageErrorKind::Protocol,
        ErrorKind::Authentication { .. }
        | ErrorKind::Command(_)
        | ErrorKind::Write(_)
        | ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidTlsConfig { .. }
        | ErrorKind::IncompatibleServer { .. }
        | ErrorKind::SessionsNotSupported
        | ErrorKind::Transaction { .. } => StorageErrorKind::Rejected,
        _ => StorageErrorKind::Other,
    }
}

/// Whether `e` is a duplicate key error (a lost upsert race).
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// A call that did not finish within the per-call timeout.
pub(crate) fn timed_out(timeout: std::time::Duration) -> StorageError {
    StorageError::new(
        StorageErrorKind::Timeout,
        NAME,
        format!("no answer within {timeout:?} (MongoOptions::call_timeout)"),
    )
}

/// A document of an unexpected shape.
pub(crate) fn protocol(message: impl Into<String>) -> StorageError {
    StorageError::new(StorageErrorKind::Protocol, NAME, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_raw_and_decoded() {
        let r = Redactor::for_uri("mongodb://user:p%40ss@db.example:27017/?authSource=admin");
        assert_eq!(r.scrub("auth failed for p%40ss and p@ss".to_owned()), "auth failed for *** and ***");
        let none = Redactor::for_uri("mongodb://db.example:27017");
        assert_eq!(none.scrub("nothing to hide".to_owned()), "nothing to hide");
        assert_eq!(format!("{r:?}"), "Redactor(..)");
    }
}
