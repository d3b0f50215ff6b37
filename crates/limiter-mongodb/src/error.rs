//! Driver errors as [`StorageError`]s with a kind the failure policy acts
//! on, and with the URI's secrets (password, session token) scrubbed from
//! every message.

use std::fmt;
use std::sync::Arc;

use limiter_core::engine::is_secret_mechanism_property;
use limiter_core::{StorageError, StorageErrorKind};
use mongodb::error::{
    Error, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR,
    WriteFailure,
};

pub(crate) const NAME: &str = "mongodb";

/// MongoDB's duplicate key error: two upserts of one new `_id` raced.
pub(crate) const DUPLICATE_KEY: i32 = 11_000;

/// Removes the URI's secrets, raw and percent-decoded, from messages.
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
    /// The secrets of `uri`: the password of `user:password@`, and the
    /// values of secret `authMechanismProperties` (an `AWS_SESSION_TOKEN`:
    /// [`is_secret_mechanism_property`]), each as written and decoded. The last `@` ends
    /// the credentials, as in `limits`.
    pub(crate) fn for_uri(uri: &str) -> Self {
        let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let mut secrets = Vec::new();
        let mut push = |secret: &str| {
            if !secret.is_empty() {
                secrets.push(secret.to_owned());
                let decoded = percent_encoding::percent_decode_str(secret).decode_utf8_lossy();
                if decoded != secret {
                    secrets.push(decoded.into_owned());
                }
            }
        };
        let location = match rest.rsplit_once('@') {
            Some((userinfo, location)) => {
                if let Some((_, password)) = userinfo.split_once(':') {
                    push(password);
                }
                location
            }
            None => rest,
        };
        let query = location.split_once('?').map_or("", |(_, query)| query);
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            // Option names in any case, as the driver reads them.
            if name.eq_ignore_ascii_case("authMechanismProperties") {
                // The driver splits the decoded value; its errors quote
                // the decoded entries.
                let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                for properties in [value, &decoded] {
                    for entry in properties.split(',') {
                        match entry.split_once(':') {
                            Some((key, _)) if !is_secret_mechanism_property(key) => {}
                            Some((_, secret)) => push(secret),
                            None => push(entry),
                        }
                    }
                }
            }
        }
        // Longest first, so that no secret is cut by a shorter one inside it.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
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
    let kind = match e.kind.as_ref() {
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
    };
    if !matches!(kind, StorageErrorKind::Rejected | StorageErrorKind::Other) {
        return kind;
    }
    transient_kind(server_code(e), |label| e.contains_label(label)).unwrap_or(kind)
}

/// The code the server answered with, if the error is its answer.
fn server_code(e: &Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Labels that say the same call may succeed later: the driver's (and the
/// server's) marks of retryable writes, transient transaction errors, and
/// an overloaded server.
const TRANSIENT_LABELS: [&str; 4] =
    [RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR, RETRYABLE_ERROR, SYSTEM_OVERLOADED_ERROR];

/// Server codes of a member that cannot serve the call now but will (or
/// another member will) soon: a primary stepping down or restarting
/// (NotWritablePrimary 10107, NotPrimaryNoSecondaryOk 13435,
/// NotPrimaryOrSecondary 13436, LegacyNotPrimary 10058,
/// InterruptedDueToReplStateChange 11602, PrimarySteppedDown 189,
/// ShutdownInProgress 91, InterruptedAtShutdown 11600), a member it cannot
/// reach (HostUnreachable 6, HostNotFound 7, SocketException 9001), or a
/// majority not yet available (ReadConcernMajorityNotAvailableYet 134). The
/// driver's retryable read codes, minus the time limits below.
const UNAVAILABLE_CODES: [i32; 12] = [10_107, 13_435, 13_436, 10_058, 11_602, 189, 91, 11_600, 6, 7, 9_001, 134];

/// Server codes of a time limit passing: NetworkTimeout 89,
/// ExceededTimeLimit 262, MaxTimeMSExpired 50.
const TIMEOUT_CODES: [i32; 3] = [89, 262, 50];

/// The transient kind of a server's refusal with `code` and the labels
/// `labelled` says it carries, or `None` if retrying cannot help. Labels
/// win over codes: a retry was promised.
fn transient_kind(code: Option<i32>, labelled: impl Fn(&str) -> bool) -> Option<StorageErrorKind> {
    if TRANSIENT_LABELS.iter().any(|label| labelled(label)) {
        return Some(StorageErrorKind::Unavailable);
    }
    let code = code?;
    if UNAVAILABLE_CODES.contains(&code) {
        Some(StorageErrorKind::Unavailable)
    } else if TIMEOUT_CODES.contains(&code) {
        Some(StorageErrorKind::Timeout)
    } else {
        None
    }
}

/// Whether `e` is a duplicate key error (a lost upsert race).
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
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

    #[test]
    fn session_tokens_are_scrubbed_raw_and_decoded() {
        let r = Redactor::for_uri(
            "mongodb://u:pw@db/?authMechanism=MONGODB-AWS\
             &AUTHMECHANISMPROPERTIES=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:Fwo%2BG,CUSTOM:zz",
        );
        assert_eq!(
            r.scrub("token Fwo%2BG, Fwo+G, zz; pw; service mongodb".to_owned()),
            "token ***, ***, ***; ***; service mongodb"
        );
        // The driver quotes an entry without a colon whole.
        let typo = Redactor::for_uri("mongodb://db/?authMechanismProperties=AWS_SESSION_TOKEN=FwoG");
        assert_eq!(typo.scrub("got AWS_SESSION_TOKEN=FwoG".to_owned()), "got ***");
    }

    #[test]
    fn a_longer_secret_is_scrubbed_before_a_shorter_one_inside_it() {
        let r = Redactor::for_uri("mongodb://u:ab@db/?authMechanismProperties=AWS_SESSION_TOKEN:xabyz");
        assert_eq!(r.scrub("xabyz ab".to_owned()), "*** ***");
    }

    /// A server's `{ok: 0, code, codeName, errmsg}` answer, as the driver
    /// reads it.
    fn command_error(code: i32, name: &str) -> Error {
        let answer = mongodb::bson::doc! { "code": code, "codeName": name, "errmsg": format!("{name} (test)") };
        Error::from(ErrorKind::Command(mongodb::bson::from_document(answer).unwrap()))
    }

    /// A write concern error: the one server answer whose labels the
    /// driver's public API can build.
    fn write_concern_error(code: i32, labels: &[&str]) -> Error {
        let answer = mongodb::bson::doc! { "code": code, "codeName": "Test", "errmsg": "test", "errorLabels": labels };
        Error::from(ErrorKind::Write(WriteFailure::WriteConcernError(mongodb::bson::from_document(answer).unwrap())))
    }

    #[test]
    fn failover_and_shutdown_answers_are_unavailable() {
        for (code, name) in [
            (10_107, "NotWritablePrimary"),
            (13_435, "NotPrimaryNoSecondaryOk"),
            (13_436, "NotPrimaryOrSecondary"),
            (10_058, "LegacyNotPrimary"),
            (11_602, "InterruptedDueToReplStateChange"),
            (189, "PrimarySteppedDown"),
            (91, "ShutdownInProgress"),
            (11_600, "InterruptedAtShutdown"),
            (6, "HostUnreachable"),
            (7, "HostNotFound"),
            (9_001, "SocketException"),
            (134, "ReadConcernMajorityNotAvailableYet"),
        ] {
            let e = command_error(code, name);
            assert_eq!(kind(&e), StorageErrorKind::Unavailable, "{name} ({code})");
            let storage_error = Redactor::default().error_in("hit", &e);
            assert!(storage_error.is_transient(), "{storage_error}");
        }
    }

    #[test]
    fn server_time_limits_are_timeouts() {
        for (code, name) in [(89, "NetworkTimeout"), (262, "ExceededTimeLimit"), (50, "MaxTimeMSExpired")] {
            assert_eq!(kind(&command_error(code, name)), StorageErrorKind::Timeout, "{name} ({code})");
        }
    }

    #[test]
    fn refusals_that_a_retry_cannot_cure_stay_rejected() {
        for (code, name) in [(13, "Unauthorized"), (2, "BadValue"), (11_000, "DuplicateKey"), (26, "NamespaceNotFound")]
        {
            assert_eq!(kind(&command_error(code, name)), StorageErrorKind::Rejected, "{name} ({code})");
        }
        assert_eq!(kind(&write_concern_error(100, &[])), StorageErrorKind::Rejected);
    }

    #[test]
    fn retryable_labels_make_any_refusal_unavailable() {
        for label in [RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR, RETRYABLE_ERROR, SYSTEM_OVERLOADED_ERROR] {
            let e = write_concern_error(100, &[label]);
            assert!(e.contains_label(label), "{e}");
            assert_eq!(kind(&e), StorageErrorKind::Unavailable, "{label}");
        }
        // A write concern error of a stepping-down primary, unlabelled.
        assert_eq!(kind(&write_concern_error(189, &[])), StorageErrorKind::Unavailable);
    }

    #[test]
    fn the_decision_reads_labels_and_codes() {
        let none = |_: &str| false;
        assert_eq!(transient_kind(Some(10_107), none), Some(StorageErrorKind::Unavailable));
        assert_eq!(transient_kind(Some(262), none), Some(StorageErrorKind::Timeout));
        assert_eq!(transient_kind(Some(2), none), None);
        assert_eq!(transient_kind(None, none), None);
        let retryable = |label: &str| label == RETRYABLE_WRITE_ERROR;
        assert_eq!(transient_kind(Some(2), retryable), Some(StorageErrorKind::Unavailable));
        assert_eq!(transient_kind(None, retryable), Some(StorageErrorKind::Unavailable));
        // A label no retry logic reads changes nothing.
        assert_eq!(transient_kind(Some(2), |label: &str| label == "NoWritesPerformed"), None);
    }

    #[test]
    fn client_side_kinds_keep_their_meaning() {
        let timed_out = Error::from(ErrorKind::Io(std::sync::Arc::new(std::io::ErrorKind::TimedOut.into())));
        assert_eq!(kind(&timed_out), StorageErrorKind::Timeout);
        assert_eq!(kind(&Error::from(ErrorKind::Shutdown)), StorageErrorKind::Unavailable);
    }
}
