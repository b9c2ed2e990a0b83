//! The example service's binary: `molt-web-service --listen 127.0.0.1:8100`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let app = molt_demo_worker::app().exports(molt_web_service::EXPORTS);
    molt_web::run(app, molt_web_service::routes)
}
