//! molt-db against a real PostgreSQL server: the one `MOLT_PG_DSN` names, a throwaway
//! cluster that `make test` starts (`scripts/pgcluster.py`). Run them with
//! `.venv/bin/python scripts/pgcluster.py run -- cargo test -p molt-db`.

use std::time::{Duration, Instant};

use molt_db::{Access, Db, DbError, DbSettings, FromRow, Query, Row};
use molt_worker::testing::CtxBuilder;
use molt_worker::{CancelToken, Ctx, EntryError, Status};
use tokio_postgres::NoTls;

/// Generous bound that only a hung server or a lost cancel exceeds.
const HANG_BOUND: Duration = Duration::from_secs(20);

fn dsn() -> String {
    std::env::var("MOLT_PG_DSN").expect(
        "MOLT_PG_DSN is not set: run these tests under `scripts/pgcluster.py run -- cargo test -p molt-db` (make test does)",
    )
}

fn settings() -> DbSettings {
    DbSettings {
        dsn: Some(dsn()),
        pool_size: 2,
        ..DbSettings::default()
    }
}

/// A connection of the test's own, outside molt-db: to set tables up and to watch the server.
async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&dsn(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The cluster's bootstrap superuser (trust over its private socket), for what the app's role
/// may not do.
async fn superuser() -> tokio_postgres::Client {
    let dsn: Vec<String> = dsn()
        .split_whitespace()
        .map(|part| {
            if part.starts_with("user=") {
                "user=postgres".to_owned()
            } else {
                part.to_owned()
            }
        })
        .collect();
    let (client, connection) = tokio_postgres::connect(&dsn.join(" "), NoTls)
        .await
        .expect("connect as postgres");
    tokio::spawn(connection);
    client
}

/// A table `name` with `rows` items, created afresh.
async fn items_table(name: &str, rows: i64) {
    admin()
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id bigint PRIMARY KEY, title text NOT NULL, score integer,
                                  price numeric(8, 2), created_at timestamptz NOT NULL);
             INSERT INTO {name}
               SELECT g, 'item ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE g * 10 END,
                      g + 0.5, timestamptz '2024-01-01 00:00:00+00' + g * interval '1.25 second'
               FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("create the table");
}

fn ctx(db: &Db) -> Ctx<Db> {
    CtxBuilder::new(db.clone()).build()
}

#[derive(Debug, PartialEq)]
struct Item {
    id: i64,
    title: String,
    score: Option<i32>,
}

impl FromRow for Item {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Item {
            id: molt_db::column(row, "id")?,
            title: molt_db::column(row, "title")?,
            score: molt_db::column(row, "score")?,
        })
    }
}

#[tokio::test]
async fn rows_are_read_into_tuples_and_structs_with_typed_parameters() {
    items_table("rows_test", 5).await;
    let db = Db::new(settings()).unwrap();
    let mut conn = db.conn(&ctx(&db)).await.unwrap();
    static ITEMS: Query = Query::new(
        "items",
        "SELECT id, title, score FROM rows_test WHERE id <= $1 ORDER BY id",
    );
    let items: Vec<Item> = conn.query(&ITEMS, &[&3i64]).await.unwrap();
    assert_eq!(
        items,
        [
            Item {
                id: 1,
                title: "item 1".into(),
                score: Some(10)
            },
            Item {
                id: 2,
                title: "item 2".into(),
                score: Some(20)
            },
            Item {
                id: 3,
                title: "item 3".into(),
                score: None
            },
        ]
    );
    let tuples: Vec<(i64, String, Option<i32>)> = conn.query(&ITEMS, &[&1i64]).await.unwrap();
    assert_eq!(tuples, [(1, "item 1".to_owned(), Some(10))]);
    let err = conn.query::<(String,)>(&ITEMS, &[&1i64]).await.unwrap_err();
    assert!(matches!(err, DbError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn statements_are_read_only_unless_the_entry_may_write() {
    items_table("writes_test", 1).await;
    static INSERT: Query = Query::new(
        "insert",
        "INSERT INTO writes_test VALUES ($1, 'x', 1, 1, now())",
    );
    static COUNT: Query = Query::new("count", "SELECT count(*) FROM writes_test");
    let db = Db::new(DbSettings {
        writes: vec!["writer".into()],
        ..settings()
    })
    .unwrap();
    let reader = CtxBuilder::new(db.clone()).entry("reader").build();
    let mut conn = db.conn(&reader).await.unwrap();
    // Outside a transaction: the connection's default is read-only.
    let err = conn.execute(&INSERT, &[&2i64]).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Query { code } if code == "25006"),
        "{err:?}"
    );
    assert!(matches!(
        conn.transaction(Access::ReadWrite).await,
        Err(DbError::WriteNotAllowed { entry: "reader" })
    ));
    drop(conn);

    let writer = CtxBuilder::new(db.clone()).entry("writer").build();
    let mut conn = db.conn(&writer).await.unwrap();
    let mut tx = conn.transaction(Access::ReadWrite).await.unwrap();
    tx.execute(&INSERT, &[&2i64]).await.unwrap();
    tx.commit().await.unwrap();
    {
        // Dropped without a commit: rolled back before the connection's next statement.
        let mut tx = conn.transaction(Access::ReadWrite).await.unwrap();
        tx.execute(&INSERT, &[&3i64]).await.unwrap();
    }
    let (count,): (i64,) = conn.query_one(&COUNT, &[]).await.unwrap();
    assert_eq!(count, 2);
}

/// Polls the server until `pid`'s backend is idle; false after the hang bound.
async fn becomes_idle(admin: &tokio_postgres::Client, pid: i32) -> bool {
    let started = Instant::now();
    while started.elapsed() < HANG_BOUND {
        let row = admin
            .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        if row.get::<_, Option<String>>(0).as_deref() == Some("idle") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

static BACKEND_PID: Query = Query::new("backend_pid", "SELECT pg_backend_pid()");
static SLEEP: Query = Query::new("sleep", "SELECT pg_sleep(10)");

#[tokio::test]
async fn a_cancelled_call_cancels_its_statement_on_the_server_and_the_pool_goes_on() {
    let db = Db::new(DbSettings {
        pool_size: 1,
        ..settings()
    })
    .unwrap();
    let token = CancelToken::new();
    let ctx = CtxBuilder::new(db.clone())
        .cancel_token(token.clone())
        .build();
    let mut conn = db.conn(&ctx).await.unwrap();
    let (pid,): (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
    });
    let started = Instant::now();
    let err = conn.rows(&SLEEP, &[]).await.unwrap_err();
    assert!(matches!(err, DbError::Cancelled), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleep ran to its end"
    );
    canceller.await.unwrap();
    drop(conn);
    let admin = admin().await;
    assert!(
        becomes_idle(&admin, pid).await,
        "the backend never left pg_sleep"
    );
    // The same (only) connection serves the next call.
    let mut conn = db.conn(&CtxBuilder::new(db.clone()).build()).await.unwrap();
    let (again,): (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    assert_eq!(again, pid);
}

#[tokio::test]
async fn dropping_a_call_mid_statement_cancels_it_on_the_server() {
    let db = Db::new(DbSettings {
        pool_size: 1,
        ..settings()
    })
    .unwrap();
    let ctx = CtxBuilder::new(db.clone()).build();
    let mut conn = db.conn(&ctx).await.unwrap();
    let (pid,): (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    // What the runtime does to an async entry whose call is cancelled: drop its future.
    let dropped = tokio::time::timeout(Duration::from_millis(100), async move {
        let _ = conn.rows(&SLEEP, &[]).await;
    })
    .await;
    assert!(dropped.is_err(), "the sleep finished");
    let admin = admin().await;
    assert!(
        becomes_idle(&admin, pid).await,
        "the backend never left pg_sleep"
    );
    let mut conn = db.conn(&CtxBuilder::new(db.clone()).build()).await.unwrap();
    let (again,): (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    assert_eq!(again, pid, "the clean connection went back to the pool");
}

#[tokio::test]
async fn a_statement_past_the_query_limit_times_out_and_is_cancelled_on_the_server() {
    let db = Db::new(DbSettings {
        pool_size: 1,
        query_timeout_ms: 200,
        ..settings()
    })
    .unwrap();
    let mut conn = db.conn(&ctx(&db)).await.unwrap();
    let (pid,): (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    let err = conn.rows(&SLEEP, &[]).await.unwrap_err();
    assert!(matches!(err, DbError::Timeout { limit_ms: 200 }), "{err:?}");
    assert_eq!(EntryError::from(err).status(), Status::Timeout);
    drop(conn);
    assert!(becomes_idle(&admin().await, pid).await);
}

#[tokio::test]
async fn a_call_finding_no_free_connection_in_time_is_busy() {
    let db = Db::new(DbSettings {
        pool_size: 1,
        acquire_timeout_ms: 50,
        ..settings()
    })
    .unwrap();
    let held = db.conn(&ctx(&db)).await.unwrap();
    let err = db
        .conn(&ctx(&db))
        .await
        .err()
        .expect("no connection was free");
    assert!(matches!(err, DbError::Busy), "{err:?}");
    drop(held);
    assert!(db.conn(&ctx(&db)).await.is_ok());
}

#[tokio::test]
async fn a_refused_login_is_unavailable_without_the_password_and_recovers() {
    let user = std::env::var("MOLT_PG_READER_USER").expect("the reader role of pgcluster.py");
    let password = std::env::var("MOLT_PG_READER_PASSWORD").expect("its password");
    let admin_dsn = dsn();
    let dsn_of = |password: &str| {
        let base: Vec<&str> = admin_dsn
            .split_whitespace()
            .filter(|part| !part.starts_with("user="))
            .collect();
        format!("{} user={user} password={password}", base.join(" "))
    };
    let db = Db::new(DbSettings {
        dsn: Some(dsn_of("not-the-password")),
        ..settings()
    })
    .unwrap();
    let err = db
        .conn(&ctx(&db))
        .await
        .err()
        .expect("the login was refused");
    assert!(matches!(err, DbError::Unavailable), "{err:?}");
    let entry = EntryError::from(err);
    assert_eq!(
        (entry.status(), entry.message()),
        (Status::Unavailable, "the database is unavailable")
    );
    // The server takes that password now: the next call connects.
    superuser()
        .await
        .batch_execute(&format!("ALTER ROLE {user} PASSWORD 'not-the-password'"))
        .await
        .unwrap();
    let recovered = db.conn(&ctx(&db)).await;
    superuser()
        .await
        .batch_execute(&format!("ALTER ROLE {user} PASSWORD '{password}'"))
        .await
        .unwrap();
    assert!(recovered.is_ok(), "{:?}", recovered.err());
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_or_is_not_configured_is_unavailable() {
    let unreachable = Db::new(DbSettings {
        dsn: Some("host=/nonexistent/socket/dir dbname=molt user=molt".into()),
        ..settings()
    })
    .unwrap();
    assert!(matches!(
        unreachable.conn(&ctx(&unreachable)).await,
        Err(DbError::Unavailable)
    ));
    let unconfigured = Db::new(DbSettings {
        dsn: None,
        dsn_env: "MOLT_DB_TEST_NOT_SET".into(),
        ..settings()
    })
    .unwrap();
    assert!(matches!(
        unconfigured.conn(&ctx(&unconfigured)).await,
        Err(DbError::Unavailable)
    ));
}

#[tokio::test]
async fn result_sets_encode_as_django_json_and_arrow() {
    items_table("encode_test", 3).await;
    static ROWS: Query = Query::new(
        "rows",
        "SELECT id, title, score, price, created_at FROM encode_test ORDER BY id",
    );
    let db = Db::new(settings()).unwrap();
    let mut conn = db.conn(&ctx(&db)).await.unwrap();
    let result = conn.result_set(&ROWS, &[]).await.unwrap();
    let keys: Vec<String> = ["id", "title", "score", "price", "created_at"]
        .map(String::from)
        .into();
    let mut json = molt_db::django_json::DjangoJson::new();
    json.rows_as_objects(&result.rows, &keys).unwrap();
    assert_eq!(
        String::from_utf8(json.into_bytes()).unwrap(),
        concat!(
            r#"[{"id": 1, "title": "item 1", "score": 10, "price": "1.50", "created_at": "2024-01-01T00:00:01.250Z"}, "#,
            r#"{"id": 2, "title": "item 2", "score": 20, "price": "2.50", "created_at": "2024-01-01T00:00:02.500Z"}, "#,
            r#"{"id": 3, "title": "item 3", "score": null, "price": "3.50", "created_at": "2024-01-01T00:00:03.750Z"}]"#
        )
    );
    let batch = result.to_record_batch().unwrap();
    assert_eq!(batch.num_rows(), 3);
    use arrow_schema::{DataType, TimeUnit};
    let types: Vec<DataType> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Int32,
            DataType::Utf8,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ]
    );
    assert!(!result.to_arrow_ipc().unwrap().is_empty());
}

#[tokio::test]
async fn statements_show_in_the_metrics() {
    let db = Db::new(settings()).unwrap();
    let mut conn = db.conn(&ctx(&db)).await.unwrap();
    let _: (i32,) = conn.query_one(&BACKEND_PID, &[]).await.unwrap();
    let mut text = String::new();
    molt_worker::metrics::MetricsSource::expose(
        &*db.metrics(),
        &mut molt_worker::metrics::Exposition::new(&mut text),
    );
    assert!(
        text.contains("molt_db_statements_total{query=\"backend_pid\",outcome=\"done\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("molt_db_statement_rows_count{query=\"backend_pid\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("molt_db_pool_connections{state=\"in_use\"} 1\n"),
        "{text}"
    );
}
