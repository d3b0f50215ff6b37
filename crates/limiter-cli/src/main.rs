//! The `limiter` binary: the limiter described by the settings file and the
//! `RATELIMIT_*` environment. See the library's documentation.

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("limiter: error: cannot start the async runtime: {e}");
            return ExitCode::from(limiter_cli::EXIT_ERROR);
        }
    };
    runtime.block_on(limiter_cli::run_standalone(std::env::args_os()))
}
