//! `worker_app`: a molt worker with entries of its own, the template to copy.
//!
//! - `count_primes` (sync, CPU-bound): runs on the worker's bounded compute pool and looks at
//!   its context as it goes, so a Timeout or a Cancel stops it.
//! - `remind` (async): awaits a timer, the stand-in for any I/O (a socket, a database); a
//!   Timeout, a Cancel or the client going away drops its future.
//! - `stats` (inline): what the app's state has counted, answered on the transport's thread.
//!
//! The manifest beside this file is embedded: `worker_app --stdio` or
//! `worker_app --socket /run/app/worker.sock` runs with it, `--exports PATH` overrides it.

mod primes;
mod reminders;

use std::process::ExitCode;

use molt_worker::App;

/// The entries' shared state: built once at start-up, reached through `ctx.state()`.
#[derive(Default)]
pub struct AppState {
    /// Reminders that were delivered, for `stats`.
    pub reminders: reminders::Counter,
}

fn app() -> App<AppState> {
    App::with_state(|_startup| Ok(AppState::default()))
        .entry("count_primes", primes::count_primes)
        .async_entry("remind", reminders::remind)
        .inline_entry("stats", reminders::stats)
        .exports(include_str!("../molt_exports.json"))
}

fn main() -> ExitCode {
    app().run()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn every_entry_answers_through_the_app() {
        let client = super::app().test_client().unwrap();
        let primes: Value = client
            .call_json("count_primes", &json!({"below": 100}))
            .unwrap();
        assert_eq!(primes, json!({"below": 100, "count": 25, "largest": 97}));
        let reminder: Value = client
            .call_json("remind", &json!({"after_ms": 1, "note": "tea"}))
            .unwrap();
        assert_eq!(reminder, json!({"note": "tea", "waited_ms": 1}));
        let stats: Value = client.call_json("stats", &json!({})).unwrap();
        assert_eq!(stats, json!({"reminders_sent": 1}));
    }
}
