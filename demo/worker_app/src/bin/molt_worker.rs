//! `molt_worker`: the demo's worker, with the repository's `molt_exports.json` embedded.

fn main() -> std::process::ExitCode {
    molt_demo_worker::app().run()
}
