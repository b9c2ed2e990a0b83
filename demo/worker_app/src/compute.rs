//! `compute`: a CPU-bound kernel (statistics and a histogram over `n` splitmix64 values), the
//! kind of loop that is slow in CPython and fast here. Specified in `docs/demo-contract.md`;
//! `demo/django_app/demoapp/contract.py` is the pure-Python twin.

use serde::Serialize;

use molt_worker::{CancelToken, Ctx, EntryError};

use crate::fakedb::{mix, GAMMA};
use crate::fields::Fields;

const N_MAX: i64 = 50_000_000;
const SEED_MAX: i64 = i64::MAX;
const BUCKETS_MAX: i64 = 100;
const BUCKETS_DEFAULT: i64 = 10;
/// Values are reduced into `0..VALUE_RANGE`.
const VALUE_RANGE: u64 = 1_000_000;
/// Values between two looks at the cancellation token: a few microseconds of work.
const CANCEL_CHECK_VALUES: u64 = 4096;

/// The `compute` entry.
pub fn compute<S>(fields: Fields, ctx: &Ctx<S>) -> Result<Statistics, EntryError> {
    // The ranges are non-negative, so the casts to unsigned cannot wrap.
    let n = fields.int("n", 1, N_MAX, None)? as u64;
    let seed = fields.int("seed", 0, SEED_MAX, Some(0))? as u64;
    let buckets = fields.int("buckets", 1, BUCKETS_MAX, Some(BUCKETS_DEFAULT))? as u64;
    statistics(n, seed, buckets, ctx.cancel_token())
}

/// The reply. Field order is part of the contract.
#[derive(Debug, PartialEq, Serialize)]
pub struct Statistics {
    n: u64,
    seed: u64,
    sum: u64,
    min: u64,
    max: u64,
    /// `sum / n`: both are below 2^53, so each side's division rounds the exact quotient once
    /// and Python's `int / int` gives the same double.
    mean: f64,
    histogram: Vec<u64>,
}

/// Value `k` is output `k` of splitmix64 seeded with `seed`, modulo [`VALUE_RANGE`]; it falls
/// in bucket `value * buckets / VALUE_RANGE`. Requires `n >= 1` and `buckets >= 1`.
fn statistics(
    n: u64,
    seed: u64,
    buckets: u64,
    cancel: &CancelToken,
) -> Result<Statistics, EntryError> {
    let mut histogram = vec![0u64; buckets as usize];
    let (mut sum, mut min, mut max) = (0u64, u64::MAX, 0u64);
    let mut state = seed;
    for k in 0..n {
        if k % CANCEL_CHECK_VALUES == 0 && cancel.is_cancelled() {
            return Err(EntryError::Cancelled);
        }
        state = state.wrapping_add(GAMMA);
        let value = mix(state) % VALUE_RANGE;
        sum += value;
        min = min.min(value);
        max = max.max(value);
        // value < VALUE_RANGE, so the bucket index is below `buckets`.
        histogram[(value * buckets / VALUE_RANGE) as usize] += 1;
    }
    Ok(Statistics {
        n,
        seed,
        sum,
        min,
        max,
        mean: sum as f64 / n as f64,
        histogram,
    })
}

#[cfg(test)]
mod tests {
    use molt_worker::Codec;

    use super::*;
    use crate::fakedb::splitmix64_output;

    fn call(json: &str) -> Result<Vec<u8>, EntryError> {
        crate::call("compute", Codec::Json, json.as_bytes())
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (r#"{"seed": 1}"#, "n is required"),
            (r#"{"n": 0}"#, "n must be an integer between 1 and 50000000"),
            (
                r#"{"n": 5, "seed": -1}"#,
                "seed must be an integer between 0 and 9223372036854775807",
            ),
            (
                r#"{"n": 5, "buckets": 101}"#,
                "buckets must be an integer between 1 and 100",
            ),
            (r#"[5]"#, "payload must be a map"),
        ];
        for (json, message) in cases {
            assert_eq!(
                call(json),
                Err(EntryError::InvalidInput(message.into())),
                "{json}"
            );
        }
    }

    #[test]
    fn statistics_agree_with_the_values_one_by_one() {
        let values: Vec<u64> = (0..1000)
            .map(|k| splitmix64_output(99, k) % VALUE_RANGE)
            .collect();
        let stats = statistics(1000, 99, 7, &CancelToken::new()).unwrap();
        assert_eq!(stats.sum, values.iter().sum::<u64>());
        assert_eq!(stats.min, *values.iter().min().unwrap());
        assert_eq!(stats.max, *values.iter().max().unwrap());
        assert_eq!(stats.histogram.iter().sum::<u64>(), 1000);
        assert_eq!(
            stats.histogram[0],
            values
                .iter()
                .filter(|&&value| value < VALUE_RANGE / 7 + 1)
                .count() as u64
        );
    }

    #[test]
    fn reply_keeps_the_contract_field_order() {
        let reply = String::from_utf8(call(r#"{"n": 3, "buckets": 2}"#).unwrap()).unwrap();
        let positions: Vec<usize> = [
            "\"n\"",
            "\"seed\"",
            "\"sum\"",
            "\"min\"",
            "\"max\"",
            "\"mean\"",
            "\"histogram\"",
        ]
        .iter()
        .map(|key| reply.find(key).unwrap())
        .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "{reply}"
        );
    }

    #[test]
    fn cancelled_kernel_stops_with_cancelled() {
        let cancel = CancelToken::new();
        cancel.cancel();
        assert_eq!(
            statistics(N_MAX as u64, 1, 10, &cancel),
            Err(EntryError::Cancelled)
        );
    }
}
