//! Named statements.

use std::borrow::Cow;

/// A statement and the name it is measured under: declare each once, as a `static`, and run
/// it with [`Conn::query`](crate::Conn::query) and friends. It is prepared on first use on
/// each connection and cached there.
///
/// ```
/// use molt_db::Query;
/// static ITEM_TITLE: Query = Query::new("item_title", "SELECT title FROM items WHERE id = $1");
/// assert_eq!(ITEM_TITLE.name(), "item_title");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    name: Cow<'static, str>,
    sql: Cow<'static, str>,
}

impl Query {
    /// A statement with `$1`, `$2`, ... placeholders, measured as `name`.
    pub const fn new(name: &'static str, sql: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            sql: Cow::Borrowed(sql),
        }
    }

    /// A statement known only at start-up (read from the manifest).
    pub fn owned(name: String, sql: String) -> Self {
        Self {
            name: Cow::Owned(name),
            sql: Cow::Owned(sql),
        }
    }

    /// The name it is measured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}
