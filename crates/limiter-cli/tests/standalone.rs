//! The `limiter` binary, run as a process: every command's output and exit
//! status, from a settings file and the environment, against the memory
//! storage and a real redis-server.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use limiter::engine::Limiter;
use limiter_testkit::TestRequest;
use limiter_testkit::server::RedisServer;

/// What a run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `limiter` with `args`, only the `env` given (no inherited
/// `RATELIMIT_*`), and `stdin` as its input.
fn limiter(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_limiter"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn settings_file(dir: &Path, text: &str) -> String {
    let path = dir.join("limiter.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

// --- parse -----------------------------------------------------------------

#[test]
fn parse_explains_each_limit_and_its_window() {
    let run = limiter(&["parse", "10/minute; 5 per 2 hours"], &[], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "limit            amount  window    seconds\n\
         10 per 1 minute  10      1 minute  60\n\
         5 per 2 hour     5       2 hour    7200\n"
    );
    let run = limiter(&["--json", "parse", "1/day"], &[], "");
    assert_eq!(run.code, 0);
    let doc = json(&run);
    assert_eq!(doc["limits"][0]["limit"], "1 per 1 day");
    assert_eq!(doc["limits"][0]["window_seconds"], 86_400);
}

#[test]
fn parse_errors_point_at_the_bad_token() {
    let run = limiter(&["parse", "10/secs"], &[], "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "limiter: error: invalid rate limit \"10/secs\": unknown granularity 'secs' at column 4, expected second, \
         minute, hour, day, month or year (singular or plural)"
    );
    assert_eq!(&lines[1..], ["  10/secs", "     ^^^^"]);
    let run = limiter(&["--json", "parse", "10/second;"], &[], "");
    assert_eq!(run.code, 2);
    let doc = json(&run);
    assert_eq!((doc["start"].as_u64(), doc["input"].as_str()), (Some(10), Some("10/second;")));
}

// --- config ----------------------------------------------------------------

#[test]
fn config_shows_each_setting_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(dir.path(), "[ratelimit]\ndefault = \"200 per day\"\nkey_prefix = \"svc\"\n");
    let env = [("RATELIMIT_DEFAULT", "10/minute"), ("RATELIMIT_SHADOW", "true")];
    let run = limiter(&["--config", &file, "config"], &env, "");
    assert_eq!(run.code, 0, "{run:?}");
    let row =
        |name: &str| run.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {run:?}"));
    fn words(line: &str) -> Vec<&str> {
        line.split("  ").map(str::trim).filter(|w| !w.is_empty()).collect()
    }
    assert_eq!(words(row("default limits")), ["default limits", "10 per 1 minute", "env RATELIMIT_DEFAULT"]);
    assert_eq!(words(row("key prefix")), ["key prefix", "svc", file.as_str()]);
    assert_eq!(words(row("shadow mode")), ["shadow mode", "true", "env RATELIMIT_SHADOW"]);
    assert_eq!(words(row("strategy")), ["strategy", "fixed-window", "default"]);
    assert_eq!(words(row("storage check")), ["storage check", "OK"]);
    assert!(!run.stdout.contains("\x1b["), "no colors off a terminal");

    let run = limiter(&["--json", "config"], &[("LIMITER_CONFIG", &file)], "");
    assert_eq!(run.code, 0);
    let doc = json(&run);
    assert_eq!(doc["settings"]["default_limits"]["value"], "200 per 1 day");
    assert_eq!(doc["settings"]["default_limits"]["source"], file.as_str());
    assert_eq!(doc["storage"]["healthy"], true);
}

#[test]
fn config_hides_the_password_and_reports_a_storage_that_does_not_answer() {
    // Nothing listens on port 1.
    let env = [("RATELIMIT_STORAGE_URI", "redis://:hunter2@127.0.0.1:1/0")];
    let run = limiter(&["config"], &env, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("redis://:***@127.0.0.1:1/0 (not connected)"), "{}", run.stdout);
    assert!(run.stdout.contains("storage check") && run.stdout.contains("Error: "), "{}", run.stdout);
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    let run = limiter(&["--json", "config"], &env, "");
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["storage"]["healthy"], false);
    assert_eq!(doc["storage"]["uri"], "redis://:***@127.0.0.1:1/0");
    // The views show what they can; the commands that need the storage fail
    // with the cause.
    let run =
        limiter(&["limits", "--key", "1.2.3.4", "--route", "fast"], &[("RATELIMIT_DEFAULT", "1/second"), env[0]], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("1 per 1 second (default): Storage not available"), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("limiter: error: the storage did not answer"), "{}", run.stderr);
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    // Without a key, the view needs no storage.
    let run = limiter(&["limits", "--route", "fast"], &[("RATELIMIT_DEFAULT", "1/second"), env[0]], "");
    assert_eq!(run.code, 0, "{run:?}");
    let run = limiter(&["check", "--key", "1.2.3.4"], &env, "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("limiter: error: ") && run.stderr.contains("***"), "{}", run.stderr);
}

#[test]
fn configuration_errors_exit_2_with_a_one_line_cause() {
    let run = limiter(&["config"], &[("RATELIMIT_DEFAULTS", "1/second")], "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(run.stderr.contains("RATELIMIT_DEFAULTS") && run.stderr.contains("RATELIMIT_DEFAULT"), "{}", run.stderr);
    let run = limiter(&["--config", "/nonexistent/limiter.toml", "limits"], &[], "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/limiter.toml"), "{}", run.stderr);
    let run = limiter(&["frobnicate"], &[], "");
    assert_eq!(run.code, 2, "clap's usage errors");
}

// --- limits ----------------------------------------------------------------

const MEMORY: &str = "[ratelimit]\ndefault = \"200 per day; 50 per hour\"\napplication = \"5000/day\"\n\
                      meta = \"5 per hour\"\nkey_prefix = \"svc\"\n";

#[test]
fn limits_shows_the_configured_limits_as_trees() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(dir.path(), MEMORY);
    let run = limiter(&["-c", &file, "limits"], &[], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(
            "Meta limits\n└── 5 per 1 hour\nApplication limits\n└── 5000 per 1 day\n\
             Default limits (each route counts its own)\n├── 200 per 1 day (default)\n└── 50 per 1 hour (default)\n"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("This limiter knows no routes"));

    let run = limiter(&["-c", &file, "limits", "--key", "10.0.0.1", "--route", "fast"], &[], "");
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        "Key \"10.0.0.1\", method GET\nRoutes\n└── fast\n    \
         ├── Meta limits\n    │   └── 5 per 1 hour: Pass (5 of 5 remaining)\n    \
         ├── Application limits\n    │   └── 5000 per 1 day: Pass (5000 of 5000 remaining)\n    \
         ├── 200 per 1 day (default): Pass (200 of 200 remaining)\n    \
         └── 50 per 1 hour (default): Pass (50 of 50 remaining)\n"
    );

    let run = limiter(&["-c", &file, "--json", "limits"], &[], "");
    let doc = json(&run);
    assert_eq!(doc["key_prefix"], "svc");
    assert_eq!(doc["meta"][0]["limits"][0], "5 per 1 hour");
    assert_eq!(doc["defaults"][0]["limits"], serde_json::json!(["200 per 1 day", "50 per 1 hour"]));
}

#[test]
fn limits_watch_refreshes_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let file = settings_file(dir.path(), MEMORY);
    let run = limiter(&["-c", &file, "limits", "--watch", "--interval", "0.01", "--count", "3"], &[], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.matches("Meta limits").count(), 3);
    assert!(!run.stdout.contains("\x1b[2J"), "the screen is cleared on a terminal only");
    let run = limiter(&["-c", &file, "--json", "limits", "--watch", "--interval", "0.01", "--count", "2"], &[], "");
    assert_eq!(run.stdout.lines().count(), 2, "one JSON document per view");
    for interval in ["0", "-1", "NaN", "1e20"] {
        let run = limiter(&["-c", &file, "limits", "--watch", &format!("--interval={interval}")], &[], "");
        assert_eq!(run.code, 2, "--interval {interval}: {run:?}");
        assert!(run.stderr.contains("is not a number of seconds above zero"), "{}", run.stderr);
    }
}

// --- check and clear, on a real Redis ----------------------------------------

/// One runtime for a test: the app's Redis connection lives on it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// An app on the same Redis as the CLI: prefix `svc`, 2 per minute.
fn app(rt: &tokio::runtime::Runtime, url: &str) -> Limiter<TestRequest> {
    rt.block_on(async {
        let storage = limiter::storage_from_uri(url).await.unwrap();
        Limiter::builder().any_storage(storage).key_prefix("svc").default_limits("2 per minute").build().unwrap()
    })
}

#[test]
fn check_and_clear_see_the_counters_the_app_writes() {
    let Some(redis) = RedisServer::spawn_or_skip("check_and_clear_see_the_counters_the_app_writes") else { return };
    let url = redis.url();
    let env =
        [("RATELIMIT_STORAGE_URI", url.as_str()), ("RATELIMIT_KEY_PREFIX", "svc"), ("RATELIMIT_DEFAULT", "2/minute")];
    let rt = runtime();
    let app = app(&rt, &url);
    let fast = TestRequest::get("/fast");

    let run = limiter(&["check", "--key", "127.0.0.1", "--route", "/fast"], &env, "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Pass (2 of 2 remaining)"), "{}", run.stdout);
    assert!(run.stdout.contains("LIMITER/svc/127.0.0.1//fast/2/1/minute"), "the key prefix is included");
    assert!(run.stdout.ends_with("Key \"127.0.0.1\" would pass.\n"), "{}", run.stdout);

    rt.block_on(async {
        assert!(app.check(&fast).await.is_allowed());
        assert!(app.check(&fast).await.is_allowed());
        assert!(!app.check(&fast).await.is_allowed());
    });
    let run = limiter(&["check", "-k", "127.0.0.1", "-r", "/fast"], &env, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("Fail (0 of 2 remaining, resets in"), "{}", run.stdout);
    let run = limiter(&["--json", "check", "-k", "127.0.0.1", "-r", "/fast"], &env, "");
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["allowed"], false);
    assert_eq!(doc["counters"][0]["storage_key"], "LIMITER/svc/127.0.0.1//fast/2/1/minute");
    assert_eq!(doc["counters"][0]["remaining"], 0);
    // Another client, another route: untouched.
    assert_eq!(limiter(&["check", "-k", "10.0.0.9", "-r", "/fast"], &env, "").code, 0);
    assert_eq!(limiter(&["check", "-k", "127.0.0.1", "-r", "/slow"], &env, "").code, 0);

    // clear asks first; anything but yes keeps the counters.
    let run = limiter(&["clear", "-k", "127.0.0.1", "-r", "/fast"], &env, "n\n");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("Clear these 1 counters? [y/N]") && run.stdout.ends_with("Nothing cleared.\n"));
    assert!(run.stdout.contains("LIMITER/svc/127.0.0.1//fast/2/1/minute"));
    assert!(!rt.block_on(app.check(&fast)).is_allowed());
    let run = limiter(&["--json", "clear", "-k", "127.0.0.1", "-r", "/fast"], &env, "");
    assert_eq!(run.code, 2, "JSON mode cannot ask");

    let run = limiter(&["clear", "-k", "127.0.0.1", "-r", "/fast"], &env, "y\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("2 per 1 minute LIMITER/svc/127.0.0.1//fast/2/1/minute: Cleared"), "{}", run.stdout);
    assert!(rt.block_on(app.check(&fast)).is_allowed(), "the app's counter is gone");

    let run = limiter(&["--json", "clear", "-y", "-k", "127.0.0.1", "-r", "/fast"], &env, "");
    assert_eq!(run.code, 0);
    assert_eq!(json(&run)["cleared"], serde_json::json!(["LIMITER/svc/127.0.0.1//fast/2/1/minute"]));
    assert_eq!(limiter(&["check", "-k", "127.0.0.1", "-r", "/fast"], &env, "").code, 0);
}

#[test]
fn config_checks_a_live_redis() {
    let Some(redis) = RedisServer::spawn_or_skip("config_checks_a_live_redis") else { return };
    let url = redis.url();
    let run = limiter(&["config"], &[("RATELIMIT_STORAGE_URI", url.as_str())], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("redis ({url})")), "{}", run.stdout);
    let mut redis = redis;
    redis.0.kill();
    let run = limiter(&["config"], &[("RATELIMIT_STORAGE_URI", url.as_str())], "");
    assert_eq!(run.code, 1, "{run:?}");
}
