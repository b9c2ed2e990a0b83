//! `molt_worker_test`: the demo's worker plus molt-worker's test entries (`sleep`, `spin`,
//! `sleep_async`, `panic`), with `molt_exports.test.json` embedded. Built for the test suites
//! only: the production binary cannot run those entries, whatever its manifest says.

fn main() -> std::process::ExitCode {
    molt_demo_worker::test_app().run()
}
