//! The example service for its tests only: its routes, plus `POST /test/sleep_async` and
//! `POST /test/slow_add_note`, whose cancellation the tests watch on the server.

use std::process::ExitCode;

use molt_db::{Access, Query};
use molt_demo_worker::DemoState;
use molt_web::axum::Router;
use molt_worker::{Ctx, EntryError};

/// The request of `slow_add_note`.
#[derive(serde::Deserialize)]
struct SlowNote {
    user_id: i32,
    body: String,
    /// How long the server sleeps before inserting, in seconds.
    delay_s: f64,
}

/// One statement: sleep on the server, then insert. Cancelled on the server while it sleeps,
/// it inserts nothing; cancelled only on the client side, it would insert at the end.
static SLOW_INSERT: Query = Query::new(
    "slow_add_note",
    "WITH pause AS (SELECT pg_sleep($3)) \
     INSERT INTO web_notes (user_id, body) SELECT $1, $2 FROM pause RETURNING id",
);

/// Inserts a note after `delay_s` seconds of `pg_sleep`, in a read-write transaction.
async fn slow_add_note(request: SlowNote, ctx: Ctx<DemoState>) -> Result<i64, EntryError> {
    if !(0.0..=30.0).contains(&request.delay_s) {
        return Err(EntryError::InvalidInput(
            "delay_s must be between 0 and 30".into(),
        ));
    }
    let db: &molt_db::Db = ctx.state().as_ref();
    let mut conn = db.conn(&ctx).await?;
    let mut transaction = conn.transaction(Access::ReadWrite).await?;
    let (id,): (i64,) = transaction
        .query_one(
            &SLOW_INSERT,
            &[&request.user_id, &request.body, &request.delay_s],
        )
        .await?;
    transaction.commit().await?;
    Ok(id)
}

fn main() -> ExitCode {
    let app = molt_demo_worker::test_app()
        .async_entry("slow_add_note", slow_add_note)
        .exports(molt_web_service::TEST_EXPORTS);
    molt_web::run(app, |web| {
        molt_web_service::routes(web).nest(
            "/test",
            Router::new()
                .route("/sleep_async", web.entry("sleep_async"))
                .route("/slow_add_note", web.entry("slow_add_note")),
        )
    })
}
