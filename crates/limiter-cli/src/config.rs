//! The standalone binary's limiter (from the settings file and the
//! environment), and `limiter config`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use limiter::engine::{LimitInfo, Limiter, Sleeper, redact_uri};
use limiter::{FailurePolicy, RequestInfo, Settings, Storage};
use serde_json::json;

use crate::output::table;
use crate::session::{Io, Session};
use crate::{EXIT_NO, EXIT_OK};

/// The request type of the standalone binary's limiter, which never sees a
/// request.
#[derive(Debug)]
pub(crate) struct Offline;

impl RequestInfo for Offline {
    fn method(&self) -> &str {
        "GET"
    }
    fn route(&self) -> Option<&str> {
        None
    }
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
    fn header_values(&self, _: &str) -> Vec<&str> {
        Vec::new()
    }
    fn peer_addr(&self) -> Option<IpAddr> {
        None
    }
}

/// Where the standalone binary's settings came from.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub(crate) file: Option<(PathBuf, Settings)>,
    pub(crate) env: Settings,
}

/// The standalone binary's limiter.
pub(crate) struct Loaded {
    pub(crate) limiter: Limiter<Offline>,
    pub(crate) sources: Sources,
    pub(crate) storage_uri: Option<String>,
    pub(crate) unreachable: Option<String>,
}

/// Builds the limiter the settings describe, connecting its storage. A
/// storage that cannot be reached is not an error here (`config` reports
/// it); the commands that need it fail then.
pub(crate) async fn load(path: Option<&Path>) -> Result<Loaded, String> {
    let file = match path {
        Some(p) => Some((p.to_owned(), Settings::from_toml_file(p).map_err(|e| e.to_string())?)),
        None => None,
    };
    let env = Settings::from_env().map_err(|e| e.to_string())?;
    let mut settings = file.as_ref().map(|(_, s)| s.clone()).unwrap_or_default().merge(env.clone());
    let storage_uri = settings.storage_uri.clone();
    let mut builder = Limiter::<Offline>::builder();
    let mut unreachable = None;
    if let Some(uri) = storage_uri.as_deref().filter(|u| !is_memory(u)) {
        // Remote storages are connected here, as an app connects them.
        settings.storage_uri = None;
        let options = settings.storage_options.take().unwrap_or_default();
        match limiter::storage_from_uri_with(uri, &options).await {
            Ok(storage) => builder = builder.any_storage(storage),
            Err(e) => unreachable = Some(e.to_string()),
        }
    }
    let sleeper: Sleeper = Arc::new(|d| Box::pin(tokio::time::sleep(d)));
    let limiter = settings.apply_with_timer(builder, sleeper).and_then(|b| b.build()).map_err(|e| e.to_string())?;
    Ok(Loaded { limiter, sources: Sources { file, env }, storage_uri, unreachable })
}

fn is_memory(uri: &str) -> bool {
    let scheme = uri.trim().split("://").next().unwrap_or_default().to_ascii_lowercase();
    scheme.trim_start_matches("async+") == "memory"
}

/// One row of `config`: a setting, its value and which keys set it.
struct Row {
    name: &'static str,
    key: &'static str,
    value: String,
    set: fn(&Settings) -> bool,
}

fn limits_text(limits: &[LimitInfo]) -> String {
    let texts: Vec<String> = limits
        .iter()
        .map(|l| match &l.limits {
            Some(ls) => ls.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            None => "(computed per request)".to_owned(),
        })
        .collect();
    if texts.is_empty() { "(none)".to_owned() } else { texts.join("; ") }
}

fn policy_text(policy: FailurePolicy) -> String {
    match policy {
        FailurePolicy::FailClosed { retry_after } => {
            format!("fail closed (503, Retry-After {} s)", retry_after.as_secs_f64())
        }
        FailurePolicy::FailOpen => "fail open (let requests through)".to_owned(),
        FailurePolicy::InMemoryFallback => "count in memory until the storage is back".to_owned(),
        _ => format!("{policy:?}"),
    }
}

/// `limiter config`.
pub(crate) async fn show<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    io: &mut Io<'_>,
) -> Result<u8, String> {
    let limiter = session.limiter;
    let table_ = limiter.limit_table();
    let headers = limiter.header_settings();
    let storage = limiter.storage();
    let uri = session.storage_uri.as_deref().map(redact_uri);
    let health: Result<(), String> = match session.reachable() {
        Ok(()) => storage.check().await.map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    let storage_text = match (&uri, &session.unreachable) {
        (Some(uri), Some(_)) => format!("{uri} (not connected)"),
        (Some(uri), None) => format!("{} ({uri})", storage.name()),
        (None, _) => storage.name().to_owned(),
    };
    let storage_name = if session.unreachable.is_some() { "none" } else { storage.name() };
    let header_text = if headers.enabled {
        let mut names = format!("{}, {}, {}, {}", headers.limit, headers.remaining, headers.reset, headers.retry_after);
        if headers.ietf {
            names.push_str(&format!(", {}, {}", headers.ietf_policy, headers.ietf_state));
        }
        names
    } else if headers.ietf {
        format!("{}, {}", headers.ietf_policy, headers.ietf_state)
    } else {
        "off".to_owned()
    };
    let rows = [
        Row {
            name: "enabled",
            key: "RATELIMIT_ENABLED",
            value: limiter.enabled().to_string(),
            set: |s| s.enabled.is_some(),
        },
        Row {
            name: "strategy",
            key: "RATELIMIT_STRATEGY",
            value: limiter.strategy().to_string(),
            set: |s| s.strategy.is_some(),
        },
        Row { name: "storage", key: "RATELIMIT_STORAGE_URI", value: storage_text, set: |s| s.storage_uri.is_some() },
        Row {
            name: "key prefix",
            key: "RATELIMIT_KEY_PREFIX",
            value: limiter.key_prefix().unwrap_or("(none)").to_owned(),
            set: |s| s.key_prefix.is_some(),
        },
        Row {
            name: "default limits",
            key: "RATELIMIT_DEFAULT",
            value: limits_text(&table_.defaults),
            set: |s| s.default_limits.is_some(),
        },
        Row {
            name: "application limits",
            key: "RATELIMIT_APPLICATION",
            value: limits_text(&table_.application),
            set: |s| s.application_limits.is_some(),
        },
        Row {
            name: "meta limits",
            key: "RATELIMIT_META",
            value: limits_text(&table_.meta),
            set: |s| s.meta_limits.is_some(),
        },
        Row {
            name: "on storage failure",
            key: "RATELIMIT_SWALLOW_ERRORS",
            value: policy_text(limiter.failure_policy()),
            set: |s| {
                s.swallow_errors.is_some() || s.in_memory_fallback_enabled.is_some() || s.in_memory_fallback.is_some()
            },
        },
        Row {
            name: "in-memory fallback limits",
            key: "RATELIMIT_IN_MEMORY_FALLBACK",
            value: limits_text(&table_.fallback),
            set: |s| s.in_memory_fallback.is_some(),
        },
        Row {
            name: "headers",
            key: "RATELIMIT_HEADERS_ENABLED",
            value: header_text,
            set: |s| s.headers_enabled.is_some() || s.headers_ietf.is_some(),
        },
        Row {
            name: "fail on first breach",
            key: "RATELIMIT_FAIL_ON_FIRST_BREACH",
            value: limiter.fails_on_first_breach().to_string(),
            set: |s| s.fail_on_first_breach.is_some(),
        },
        Row {
            name: "shadow mode",
            key: "RATELIMIT_SHADOW",
            value: limiter.shadow().to_string(),
            set: |s| s.shadow.is_some(),
        },
    ];
    let source = |row: &Row| -> String {
        match session.sources {
            None => "app".to_owned(),
            Some(sources) if (row.set)(&sources.env) => format!("env {}", row.key),
            Some(Sources { file: Some((path, file)), .. }) if (row.set)(file) => path.display().to_string(),
            Some(_) => "default".to_owned(),
        }
    };
    if io.json {
        let settings: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|r| (r.name.replace([' ', '-'], "_"), json!({ "value": r.value, "source": source(r) })))
            .collect();
        let doc = json!({
            "settings": settings,
            "storage": {
                "name": storage_name,
                "uri": uri,
                "healthy": health.is_ok(),
                "error": health.as_ref().err(),
            },
        });
        io.print_json(&doc)?;
    } else {
        let mut cells: Vec<Vec<String>> =
            rows.iter().map(|r| vec![r.name.to_owned(), r.value.clone(), source(r)]).collect();
        let check = match &health {
            Ok(()) => io.paint.green("OK"),
            Err(e) => io.paint.red(&format!("Error: {e}")),
        };
        cells.insert(3, vec!["storage check".to_owned(), check, String::new()]);
        let title = io.paint.bold("limiter configuration");
        let text = table(io.paint, &["setting", "value", "source"], &cells);
        io.print(&format!("{title}\n{text}"))?;
    }
    Ok(if health.is_ok() { EXIT_OK } else { EXIT_NO })
}
