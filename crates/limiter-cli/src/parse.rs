//! `limiter parse`: explains a rate limit string.

use serde_json::json;

use crate::output::table;
use crate::session::Io;
use crate::{EXIT_ERROR, EXIT_OK};

/// Prints each limit of `text` with its window, or the error pointing at
/// the bad token.
pub(crate) fn parse(text: &str, io: &mut Io<'_>) -> u8 {
    let limits = match limiter::parse_many(text) {
        Ok(limits) => limits,
        Err(e) => {
            if io.json {
                let span = e.span();
                let doc = json!({
                    "error": e.to_string(),
                    "input": e.input(),
                    "start": span.start,
                    "end": span.end,
                });
                let _ = io.print_json(&doc);
            } else {
                // The one-line cause, then the string with the bad token marked.
                let shown = format!("{e:#}");
                let mut lines = shown.lines();
                let _ = writeln!(io.err, "limiter: error: {}", lines.next().unwrap_or_default());
                for line in lines {
                    let _ = writeln!(io.err, "  {}", io.paint.red(line));
                }
            }
            return EXIT_ERROR;
        }
    };
    let result = if io.json {
        let items: Vec<serde_json::Value> = limits
            .iter()
            .map(|l| {
                json!({
                    "limit": l.to_string(),
                    "amount": l.amount(),
                    "multiples": l.multiples(),
                    "granularity": l.granularity().to_string(),
                    "window_seconds": l.window_secs(),
                })
            })
            .collect();
        io.print_json(&json!({ "limits": items }))
    } else {
        let rows: Vec<Vec<String>> = limits
            .iter()
            .map(|l| {
                vec![
                    l.to_string(),
                    l.amount().to_string(),
                    format!("{} {}", l.multiples(), l.granularity()),
                    l.window_secs().to_string(),
                ]
            })
            .collect();
        let text = table(io.paint, &["limit", "amount", "window", "seconds"], &rows);
        io.print(&text)
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => io.error(&e),
    }
}
