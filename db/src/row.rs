//! Rows into the user's own types.

use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::error::DbError;

/// A type a row can be read into. Implemented for tuples of up to eight `FromSql` values (by
/// position); implement it for a struct of your own by column name:
///
/// ```
/// use molt_db::{DbError, FromRow};
/// use tokio_postgres::Row;
///
/// struct Item { id: i64, title: String }
///
/// impl FromRow for Item {
///     fn from_row(row: &Row) -> Result<Self, DbError> {
///         Ok(Item { id: molt_db::column(row, "id")?, title: molt_db::column(row, "title")? })
///     }
/// }
/// ```
pub trait FromRow: Sized {
    /// Reads one row.
    fn from_row(row: &Row) -> Result<Self, DbError>;
}

/// Column `name` of `row` as `T`: a [`DbError::Decode`] naming the column if it is missing or
/// of another type.
pub fn column<'r, T: FromSql<'r>>(row: &'r Row, name: &str) -> Result<T, DbError> {
    row.try_get(name).map_err(|_| DbError::Decode {
        column: name.to_owned(),
        wanted: std::any::type_name::<T>(),
    })
}

macro_rules! tuple_from_row {
    ($($index:tt $ty:ident),+) => {
        impl<$($ty),+> FromRow for ($($ty,)+)
        where
            $($ty: for<'r> FromSql<'r>,)+
        {
            fn from_row(row: &Row) -> Result<Self, DbError> {
                Ok(($(
                    row.try_get::<_, $ty>($index).map_err(|_| DbError::Decode {
                        column: row
                            .columns()
                            .get($index)
                            .map_or_else(|| format!("#{}", $index), |column| column.name().to_owned()),
                        wanted: std::any::type_name::<$ty>(),
                    })?,
                )+))
            }
        }
    };
}

tuple_from_row!(0 A);
tuple_from_row!(0 A, 1 B);
tuple_from_row!(0 A, 1 B, 2 C);
tuple_from_row!(0 A, 1 B, 2 C, 3 D);
tuple_from_row!(0 A, 1 B, 2 C, 3 D, 4 E);
tuple_from_row!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);
tuple_from_row!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G);
tuple_from_row!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H);
