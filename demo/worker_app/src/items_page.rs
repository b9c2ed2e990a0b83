//! `items_page`: a page of a user's items from PostgreSQL with the per-status counts, the
//! `/db/entry` endpoint's Rust entry, written on molt-db directly. Specified in
//! `docs/demo-contract.md` ("`items_page`"); it answers the JSON bytes of the response body,
//! the same bytes as `/db/baseline`'s `JsonResponse`.

use chrono::{DateTime, Utc};
use molt_db::django_json::DjangoJson;
use molt_db::{Conn, Param, Query, SqlValue};
use molt_worker::{Codec, Ctx, EntryError, Reply};
use serde_json::Value;

use crate::fields::{invalid, Fields};
use crate::DemoState;

const USER_ID_MAX: i64 = 2_147_483_647;
const LIMIT_MAX: i64 = 5_000;
const LIMIT_DEFAULT: i64 = 50;
const STATUSES: [&str; 3] = ["open", "closed", "archived"];
const CURSOR_PREFIX: &str = "v1:";
/// 9999-12-31T23:59:59.999999Z, the last instant Python's datetime holds.
const CREATED_US_MAX: u64 = 253_402_300_799_999_999;
const CURSOR_MESSAGE: &str = "cursor must be the next_cursor of a previous reply";
const ITEM_KEYS: [&str; 6] = ["id", "category", "status", "title", "score", "created_at"];

/// The page query, one statement per shape (status filter or not, cursor or not), each
/// the index scan the `/db/baseline` ORM queryset compiles to.
static PAGE: Query = Query::new(
    "items_page",
    "SELECT id, category, status, title, score, created_at FROM demoapp_item \
     WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
);
static PAGE_BY_STATUS: Query = Query::new(
    "items_page_by_status",
    "SELECT id, category, status, title, score, created_at FROM demoapp_item \
     WHERE user_id = $1 AND status = $3 ORDER BY created_at DESC, id DESC LIMIT $2",
);
static PAGE_AFTER: Query = Query::new(
    "items_page_after",
    "SELECT id, category, status, title, score, created_at FROM demoapp_item \
     WHERE user_id = $1 AND created_at <= $3 AND (created_at < $3 OR id < $4) \
     ORDER BY created_at DESC, id DESC LIMIT $2",
);
static PAGE_BY_STATUS_AFTER: Query = Query::new(
    "items_page_by_status_after",
    "SELECT id, category, status, title, score, created_at FROM demoapp_item \
     WHERE user_id = $1 AND status = $5 AND created_at <= $3 AND (created_at < $3 OR id < $4) \
     ORDER BY created_at DESC, id DESC LIMIT $2",
);
static COUNTS: Query = Query::new(
    "items_counts",
    "SELECT status, count(*) FROM demoapp_item WHERE user_id = $1 GROUP BY status",
);

/// A valid request.
struct PageQuery {
    user_id: i32,
    /// `None`: every status.
    status: Option<String>,
    limit: i64,
    /// The previous page's last item: (created_at, id).
    after: Option<(DateTime<Utc>, i64)>,
}

impl PageQuery {
    /// Checks the fields in the contract's order, with its messages.
    fn parse(fields: &Fields) -> Result<Self, EntryError> {
        // Within 1..=2^31-1, so the narrowing cannot truncate.
        let user_id = fields.int("user_id", 1, USER_ID_MAX, None)? as i32;
        let status = match fields.get("status") {
            None => None,
            Some(Value::String(status)) if status == "all" => None,
            Some(Value::String(status)) if STATUSES.contains(&status.as_str()) => {
                Some(status.clone())
            }
            Some(_) => return Err(invalid("status must be one of open, closed, archived, all")),
        };
        let limit = fields.int("limit", 1, LIMIT_MAX, Some(LIMIT_DEFAULT))?;
        let after = match fields.get("cursor") {
            None => None,
            Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| invalid(CURSOR_MESSAGE))?),
        };
        Ok(Self {
            user_id,
            status,
            limit,
            after,
        })
    }
}

/// `v1:<created_us>:<id>`: `0` or 1 to 18 digits without a leading zero, at most
/// [`CREATED_US_MAX`]; an id of 1 to 19 digits without a leading zero, at most `i64::MAX`.
fn parse_cursor(cursor: &Value) -> Option<(DateTime<Utc>, i64)> {
    let rest = cursor.as_str()?.strip_prefix(CURSOR_PREFIX)?;
    let (created, id) = rest.split_once(':')?;
    let canonical = |digits: &str, most: usize, zero_allowed: bool| {
        !digits.is_empty()
            && digits.len() <= most
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (!digits.starts_with('0') || (zero_allowed && digits == "0"))
    };
    if !canonical(created, 18, true) || !canonical(id, 19, false) {
        return None;
    }
    let created_us: u64 = created.parse().ok().filter(|&us| us <= CREATED_US_MAX)?;
    let id: i64 = id.parse().ok()?;
    let created_at = DateTime::from_timestamp_micros(i64::try_from(created_us).ok()?)?;
    Some((created_at, id))
}

/// The `items_page` entry: the page and the counts, two statements on one connection,
/// answered as the response body's JSON bytes whatever the call's codec.
pub async fn items_page(fields: Fields, ctx: Ctx<DemoState>) -> Result<Reply, EntryError> {
    let query = PageQuery::parse(&fields)?;
    let mut conn = ctx.state().db.conn(&ctx).await?;
    let body = page_json(&mut conn, &query).await?;
    Ok(Reply::with_codec(Codec::Json, body))
}

async fn page_json(conn: &mut Conn, query: &PageQuery) -> Result<Vec<u8>, EntryError> {
    // One more row than the page: it only decides `next_cursor`.
    let fetch = query.limit + 1;
    let user_id = &query.user_id;
    let rows = match (&query.after, &query.status) {
        (None, None) => conn.rows(&PAGE, &[user_id, &fetch]).await?,
        (None, Some(status)) => {
            conn.rows(&PAGE_BY_STATUS, &[user_id, &fetch, status])
                .await?
        }
        (Some((created, id)), None) => {
            conn.rows(&PAGE_AFTER, &[user_id, &fetch, created, id])
                .await?
        }
        (Some((created, id)), Some(status)) => {
            let params: [Param<'_>; 5] = [user_id, &fetch, created, id, status];
            conn.rows(&PAGE_BY_STATUS_AFTER, &params).await?
        }
    };
    let counts = conn.rows(&COUNTS, &[user_id]).await?;
    let page_len = rows.len().min(query.limit as usize);
    let mut json = DjangoJson::new();
    json.begin_object();
    json.key("items");
    json.begin_array();
    for row in &rows[..page_len] {
        json.begin_object();
        for (index, key) in ITEM_KEYS.iter().enumerate() {
            json.key(key);
            json.value(&SqlValue::from_column(row, index)?);
        }
        json.end_object();
    }
    json.end_array();
    json.key("next_cursor");
    match rows.get(page_len).and(rows.get(page_len.wrapping_sub(1))) {
        Some(last) => {
            let id: i64 = molt_db::column(last, "id")?;
            let created_at: DateTime<Utc> = molt_db::column(last, "created_at")?;
            json.string(&format!(
                "{CURSOR_PREFIX}{}:{id}",
                created_at.timestamp_micros()
            ));
        }
        None => json.null(),
    }
    json.key("counts");
    json.begin_object();
    for status in STATUSES {
        let mut count = 0i64;
        for row in &counts {
            if molt_db::column::<&str>(row, "status")? == status {
                count = molt_db::column(row, "count")?;
            }
        }
        json.key(status);
        json.int(count);
    }
    json.end_object();
    json.end_object();
    Ok(json.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_only_in_their_canonical_form() {
        let parsed = |text: &str| parse_cursor(&Value::String(text.into()));
        let (created, id) = parsed("v1:1704067230123000:1").unwrap();
        assert_eq!((created.timestamp_micros(), id), (1_704_067_230_123_000, 1));
        assert!(parsed("v1:0:5").is_some());
        for refused in [
            "v1:01:5",
            "v1:1:0",
            "v1:1:05",
            "v1:-1:5",
            "v2:1:5",
            "v1:1",
            "v1:253402300800000000:1",
            "v1:1:9223372036854775808",
            "v1:1234567890123456789:1",
        ] {
            assert!(parsed(refused).is_none(), "{refused}");
        }
    }
}
