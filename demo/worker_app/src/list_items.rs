//! `list_items`: the demo's typical list endpoint over the fake database. Specified in
//! `docs/demo-contract.md`; `demo/django_app/demoapp/contract.py` is the pure-Python twin.

use serde::Serialize;
use serde_json::Value;

use molt_worker::{CancelToken, Ctx, EntryError};

use crate::fakedb::{CostKnobs, IsoTimestamp, Row, Title};
use crate::fields::{invalid, Fields};
use crate::DemoState;

const USER_ID_MAX: i64 = 2_147_483_647;
const Q_MAX_CHARS: usize = 100;
const LIMIT_MAX: i64 = 500;
const LIMIT_DEFAULT: i64 = 50;
const ROWS_MAX: i64 = 200_000;
const ROWS_DEFAULT: i64 = 2000;
const CURSOR_PREFIX: &str = "v1:";
/// Rows between two looks at the cancellation token: a few microseconds of work.
const CANCEL_CHECK_ROWS: u32 = 256;

/// The `list_items` entry.
pub fn list_items(fields: Fields, ctx: &Ctx<DemoState>) -> Result<Page, EntryError> {
    ListQuery::parse(&fields)?.run(&ctx.state().cost, ctx.cancel_token())
}

/// A validated `list_items` request.
#[derive(Debug, PartialEq, Eq)]
struct ListQuery {
    user_id: u64,
    /// ASCII-lowercased; `None` when `q` is absent or empty (everything matches).
    q_folded: Option<Vec<u8>>,
    status: StatusFilter,
    limit: usize,
    /// Only rows with a smaller id are listed (the cursor's id, or one past the largest).
    before_id: u32,
    rows: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusFilter {
    Open,
    Closed,
    All,
}

impl StatusFilter {
    fn admits(self, row: &Row) -> bool {
        match self {
            StatusFilter::Open => row.is_open(),
            StatusFilter::Closed => !row.is_open(),
            StatusFilter::All => true,
        }
    }
}

impl ListQuery {
    /// Checks the fields in the contract's order, so the first fault reported is the same as
    /// the Python reference's.
    fn parse(fields: &Fields) -> Result<Self, EntryError> {
        // The ranges below are all within u32, so the narrowing casts cannot truncate.
        let user_id = fields.int("user_id", 1, USER_ID_MAX, None)? as u64;

        let q_folded = match fields.get("q") {
            None => None,
            Some(Value::String(q)) if q.chars().count() <= Q_MAX_CHARS => {
                Some(q.to_ascii_lowercase().into_bytes()).filter(|q| !q.is_empty())
            }
            Some(_) => {
                return Err(invalid(format!(
                    "q must be a string of at most {Q_MAX_CHARS} characters"
                )))
            }
        };

        let status = match fields.get("status") {
            None => StatusFilter::All,
            Some(Value::String(status)) if status == "open" => StatusFilter::Open,
            Some(Value::String(status)) if status == "closed" => StatusFilter::Closed,
            Some(Value::String(status)) if status == "all" => StatusFilter::All,
            Some(_) => return Err(invalid("status must be one of open, closed, all")),
        };

        let limit = fields.int("limit", 1, LIMIT_MAX, Some(LIMIT_DEFAULT))? as usize;

        let before_id = match fields.get("cursor") {
            None => ROWS_MAX as u32 + 1,
            Some(cursor) => parse_cursor(cursor)
                .ok_or_else(|| invalid("cursor must be the next_cursor of a previous reply"))?,
        };

        let rows = fields.int("rows", 0, ROWS_MAX, Some(ROWS_DEFAULT))? as u32;
        Ok(ListQuery {
            user_id,
            q_folded,
            status,
            limit,
            before_id,
            rows,
        })
    }

    /// Scans every row newest first (descending id: `created_at` grows with the id), counting
    /// the `q` matches by status and keeping the first `limit` that also pass the status
    /// filter and the cursor. Titles are built only when `q` needs them or a row is kept.
    fn run(&self, knobs: &CostKnobs, cancel: &CancelToken) -> Result<Page, EntryError> {
        if !knobs.delay(cancel) {
            return Err(EntryError::Cancelled);
        }
        let mut meter = knobs.meter();
        let mut items = Vec::with_capacity(self.limit.min(self.rows as usize));
        let mut counts = Counts { open: 0, closed: 0 };
        let mut has_more = false;
        for index in (0..self.rows).rev() {
            if index % CANCEL_CHECK_ROWS == 0 && cancel.is_cancelled() {
                return Err(EntryError::Cancelled);
            }
            let row = Row::generate(self.user_id, index);
            if !meter.charge(&row, cancel) {
                return Err(EntryError::Cancelled);
            }
            let mut title = None;
            if let Some(q) = &self.q_folded {
                let built = Title::from_word(row.title_word(self.user_id));
                if !built.contains(q) {
                    continue;
                }
                title = Some(built);
            }
            if row.is_open() {
                counts.open += 1;
            } else {
                counts.closed += 1;
            }
            if row.id >= self.before_id || !self.status.admits(&row) {
                continue;
            }
            if items.len() == self.limit {
                has_more = true;
                continue;
            }
            items.push(Item {
                id: row.id,
                created_at: IsoTimestamp::from_epoch(row.created_epoch()),
                status: row.status(),
                title: title.unwrap_or_else(|| Title::from_word(row.title_word(self.user_id))),
                score: row.score(),
                unread: row.unread(),
            });
        }
        let next_cursor = match items.last() {
            Some(last) if has_more => Some(format!("{CURSOR_PREFIX}{}", last.id)),
            _ => None,
        };
        Ok(Page {
            items,
            next_cursor,
            counts,
        })
    }
}

/// The id a cursor carries: `v1:` then a decimal id in 1..=200000 without leading zeros.
fn parse_cursor(cursor: &Value) -> Option<u32> {
    let digits = cursor.as_str()?.strip_prefix(CURSOR_PREFIX)?;
    let canonical = !digits.is_empty()
        && digits.len() <= 6
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    let id: u32 = if canonical {
        digits.parse().ok()?
    } else {
        return None;
    };
    (i64::from(id) <= ROWS_MAX).then_some(id)
}

/// The reply. Field order is part of the contract (msgpack maps and JSON objects keep it).
#[derive(Serialize)]
pub struct Page {
    items: Vec<Item>,
    next_cursor: Option<String>,
    counts: Counts,
}

#[derive(Serialize)]
struct Item {
    id: u32,
    created_at: IsoTimestamp,
    status: &'static str,
    title: Title,
    score: u32,
    unread: bool,
}

#[derive(Serialize)]
struct Counts {
    open: u32,
    closed: u32,
}

#[cfg(test)]
mod tests {
    use molt_worker::testing::ctx_with_state;
    use molt_worker::{Codec, FromPayload, IntoReply, Payload};

    use super::*;

    fn call(codec: Codec, payload: &[u8]) -> Result<Vec<u8>, EntryError> {
        crate::call("list_items", codec, payload)
    }

    fn page(json: &str) -> Value {
        serde_json::from_slice(&call(Codec::Json, json.as_bytes()).unwrap()).unwrap()
    }

    fn error(json: &str) -> String {
        match call(Codec::Json, json.as_bytes()) {
            Err(EntryError::InvalidInput(message)) => message,
            other => panic!("expected InvalidInput for {json}, got {other:?}"),
        }
    }

    #[test]
    fn invalid_fields_are_named_in_the_contract_order() {
        let cases = [
            (r#"{}"#, "user_id is required"),
            (
                r#"{"user_id": 0}"#,
                "user_id must be an integer between 1 and 2147483647",
            ),
            (
                r#"{"user_id": "7"}"#,
                "user_id must be an integer between 1 and 2147483647",
            ),
            (
                r#"{"user_id": 1, "q": 5}"#,
                "q must be a string of at most 100 characters",
            ),
            (
                r#"{"user_id": 1, "status": "done"}"#,
                "status must be one of open, closed, all",
            ),
            (
                r#"{"user_id": 1, "limit": 501}"#,
                "limit must be an integer between 1 and 500",
            ),
            (
                r#"{"user_id": 1, "cursor": "v1:012"}"#,
                "cursor must be the next_cursor of a previous reply",
            ),
            (
                r#"{"user_id": 1, "cursor": "v1:200001"}"#,
                "cursor must be the next_cursor of a previous reply",
            ),
            (
                r#"{"user_id": 1, "rows": -1}"#,
                "rows must be an integer between 0 and 200000",
            ),
            (
                r#"{"user_id": 1, "status": "x", "limit": 0}"#,
                "status must be one of open, closed, all",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(error(json), message, "{json}");
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        assert_eq!(
            page(r#"{"user_id": 3, "rows": 30, "extra": [1]}"#),
            page(r#"{"user_id": 3, "rows": 30}"#)
        );
    }

    #[test]
    fn raw_payloads_are_refused() {
        assert!(matches!(
            call(Codec::Raw, b"{}"),
            Err(EntryError::InvalidInput(_))
        ));
    }

    #[test]
    fn items_come_newest_first() {
        let reply = page(r#"{"user_id": 11, "limit": 500, "rows": 400}"#);
        let items = reply["items"].as_array().unwrap();
        assert_eq!(items.len(), 400);
        for pair in items.windows(2) {
            assert!(pair[0]["created_at"].as_str() > pair[1]["created_at"].as_str());
            assert!(pair[0]["id"].as_u64() > pair[1]["id"].as_u64());
        }
    }

    #[test]
    fn cursor_paging_walks_every_matching_row_exactly_once() {
        let filter = r#""user_id": 5, "q": "Ri", "status": "open", "limit": 7, "rows": 3000"#;
        let first = page(&format!("{{{filter}}}"));
        let expected = first["counts"]["open"].as_u64().unwrap();
        let mut seen = Vec::new();
        let mut reply = first;
        loop {
            for item in reply["items"].as_array().unwrap() {
                assert_eq!(item["status"], "open");
                assert!(item["title"].as_str().unwrap().contains("ri"));
                seen.push(item["id"].as_u64().unwrap());
            }
            match reply["next_cursor"].as_str() {
                Some(cursor) => reply = page(&format!(r#"{{{filter}, "cursor": "{cursor}"}}"#)),
                None => break,
            }
        }
        assert!(expected > 7, "the walk should span several pages");
        assert_eq!(seen.len() as u64, expected);
        assert!(
            seen.windows(2).all(|pair| pair[0] > pair[1]),
            "strictly descending, no repeats"
        );
    }

    #[test]
    fn counts_cover_q_matches_of_every_status_regardless_of_cursor() {
        let all = page(r#"{"user_id": 8, "rows": 500, "limit": 500}"#);
        assert_eq!(all["items"].as_array().unwrap().len(), 500);
        assert_eq!(
            all["counts"]["open"].as_u64().unwrap() + all["counts"]["closed"].as_u64().unwrap(),
            500
        );
        let later = page(r#"{"user_id": 8, "rows": 500, "status": "closed", "cursor": "v1:3"}"#);
        assert_eq!(later["counts"], all["counts"]);
        assert!(later["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["id"].as_u64() < Some(3)));
    }

    #[test]
    fn zero_rows_is_an_empty_page() {
        assert_eq!(
            call(Codec::Json, br#"{"user_id": 1, "rows": 0}"#).unwrap(),
            br#"{"items": [], "next_cursor": null, "counts": {"open": 0, "closed": 0}}"#
        );
    }

    #[test]
    fn cancelled_scan_stops_with_cancelled() {
        let ctx = ctx_with_state(DemoState::with_cost(CostKnobs::default()));
        ctx.cancel_token().cancel();
        let fields = query_fields(r#"{"user_id": 1, "rows": 200000}"#);
        assert!(matches!(
            list_items(fields, &ctx),
            Err(EntryError::Cancelled)
        ));
    }

    fn query_fields(json: &str) -> Fields {
        Fields::from_payload(
            "list_items",
            Payload::new(Codec::Json, json.as_bytes().to_vec()),
        )
        .unwrap()
    }

    fn query(json: &str) -> ListQuery {
        ListQuery::parse(&query_fields(json)).unwrap()
    }

    #[test]
    fn cost_knobs_change_the_cost_not_the_answer() {
        let query = query(r#"{"user_id": 25, "rows": 50, "q": "i"}"#);
        let cancel = CancelToken::new();
        let plain = query.run(&CostKnobs::default(), &cancel).unwrap();
        let knobs = CostKnobs {
            delay_ms: 1,
            decode_us_per_row: 1,
            cpu_iters_per_row: 3,
        };
        let costly = query.run(&knobs, &cancel).unwrap();
        assert_eq!(
            costly.into_reply(Codec::Json).unwrap(),
            plain.into_reply(Codec::Json).unwrap()
        );
    }

    #[test]
    fn simulated_delay_ends_with_cancelled_when_the_token_fires() {
        let cancel = CancelToken::new();
        let firer = cancel.clone();
        let thread = std::thread::spawn(move || firer.cancel());
        let knobs = CostKnobs {
            delay_ms: 60_000,
            ..CostKnobs::default()
        };
        let outcome = query(r#"{"user_id": 1}"#).run(&knobs, &cancel);
        thread.join().unwrap();
        assert!(matches!(outcome, Err(EntryError::Cancelled)));
    }

    #[test]
    fn msgpack_and_json_replies_carry_the_same_page() {
        let request = serde_json::json!({"user_id": 77, "q": "e", "rows": 900, "limit": 20});
        let json: Value =
            serde_json::from_slice(&call(Codec::Json, request.to_string().as_bytes()).unwrap())
                .unwrap();
        let packed = call(Codec::MsgPack, &rmp_serde::to_vec_named(&request).unwrap()).unwrap();
        assert_eq!(rmp_serde::from_slice::<Value>(&packed).unwrap(), json);
    }
}
