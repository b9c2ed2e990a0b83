//! Field-by-field validation for the demo contract's entries. Serde's own messages differ from
//! the Python reference's, so the payload is decoded as a loose map and every field is
//! checked here, with the exact messages `docs/demo-contract.md` lists.

use molt_worker::{EntryError, FromPayload, Payload};
use serde_json::{Map, Value};

/// A decoded payload map. Keys the entry does not know are ignored; a null value counts as
/// absent.
pub struct Fields(Map<String, Value>);

/// The request of the contract's entries: the payload decoded in its codec, required to be
/// a map.
impl FromPayload for Fields {
    fn from_payload(entry: &'static str, payload: Payload) -> Result<Self, EntryError> {
        match payload.decode::<Value>(entry)? {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err(invalid("payload must be a map")),
        }
    }
}

impl Fields {
    /// The value of `field`, unless absent or null.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|value| !value.is_null())
    }

    /// An integer in `low..=high`; `default` when absent, or "`field` is required" without one.
    pub fn int(
        &self,
        field: &str,
        low: i64,
        high: i64,
        default: Option<i64>,
    ) -> Result<i64, EntryError> {
        let Some(value) = self.get(field) else {
            return default.ok_or_else(|| invalid(format!("{field} is required")));
        };
        // Floats and integers beyond i64 get the same message as out-of-range integers, as in
        // Python, where `5.0` is not an int and integers have no width.
        value
            .as_i64()
            .filter(|number| (low..=high).contains(number))
            .ok_or_else(|| {
                invalid(format!(
                    "{field} must be an integer between {low} and {high}"
                ))
            })
    }
}

/// An InvalidInput error with `message`.
pub fn invalid(message: impl Into<String>) -> EntryError {
    EntryError::InvalidInput(message.into())
}

#[cfg(test)]
mod tests {
    use molt_worker::Codec;

    use super::*;

    fn decode(json: &str) -> Result<Fields, EntryError> {
        Fields::from_payload("test", Payload::new(Codec::Json, json.as_bytes().to_vec()))
    }

    fn fields(json: &str) -> Fields {
        decode(json).unwrap()
    }

    #[test]
    fn non_map_payload_is_refused() {
        assert_eq!(decode("[1]").err(), Some(invalid("payload must be a map")));
    }

    #[test]
    fn null_counts_as_absent() {
        assert_eq!(fields(r#"{"n": null}"#).int("n", 1, 9, Some(4)), Ok(4));
        assert_eq!(
            fields(r#"{"n": null}"#).int("n", 1, 9, None),
            Err(invalid("n is required"))
        );
    }

    #[test]
    fn floats_bools_and_huge_integers_are_not_integers() {
        for json in [
            r#"{"n": 5.0}"#,
            r#"{"n": true}"#,
            r#"{"n": "5"}"#,
            r#"{"n": 18446744073709551615}"#,
        ] {
            assert_eq!(
                fields(json).int("n", 1, 9, None),
                Err(invalid("n must be an integer between 1 and 9")),
                "{json}"
            );
        }
    }
}
