//! `count_primes {below}` → `{below, count, largest}`: a sieve of Eratosthenes, the kind of
//! loop that costs CPython seconds and a native worker milliseconds.

use molt_worker::{Ctx, EntryError};
use serde::{Deserialize, Serialize};

use crate::AppState;

/// Largest `below` accepted: the sieve holds one byte per number (50 MB).
const BELOW_MAX: u64 = 50_000_000;

/// Numbers crossed out between two looks at the context.
const CHECK_EVERY: u64 = 1 << 16;

/// The request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountPrimes {
    /// Count the primes strictly below this.
    below: u64,
}

/// The reply; field order is the JSON's.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Primes {
    below: u64,
    count: u64,
    largest: Option<u64>,
}

/// Counts the primes below `req.below`, stopping as soon as the call is cancelled.
pub fn count_primes(req: CountPrimes, ctx: &Ctx<AppState>) -> Result<Primes, EntryError> {
    if req.below > BELOW_MAX {
        return Err(EntryError::InvalidInput(format!(
            "below must be at most {BELOW_MAX}"
        )));
    }
    let below = req.below as usize;
    let mut composite = vec![false; below];
    let mut crossed = 0u64;
    let mut n = 2;
    while n * n < below {
        if !composite[n] {
            for multiple in (n * n..below).step_by(n) {
                composite[multiple] = true;
                crossed += 1;
                if crossed % CHECK_EVERY == 0 {
                    ctx.check()?;
                }
            }
        }
        n += 1;
    }
    let (count, largest) = (2..below)
        .filter(|&n| !composite[n])
        .fold((0, None), |(count, _), n| (count + 1, Some(n as u64)));
    Ok(Primes {
        below: req.below,
        count,
        largest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use molt_worker::testing::ctx_with_state;

    fn count(below: u64) -> Result<Primes, EntryError> {
        count_primes(CountPrimes { below }, &ctx_with_state(AppState::default()))
    }

    #[test]
    fn small_ranges_have_the_known_counts() {
        for (below, count_, largest) in [
            (0, 0, None),
            (2, 0, None),
            (3, 1, Some(2)),
            (100, 25, Some(97)),
            (1_000_000, 78_498, Some(999_983)),
        ] {
            assert_eq!(
                count(below).unwrap(),
                Primes {
                    below,
                    count: count_,
                    largest
                },
                "{below}"
            );
        }
    }

    #[test]
    fn too_large_a_range_is_refused_by_name() {
        assert_eq!(
            count(BELOW_MAX + 1),
            Err(EntryError::InvalidInput(
                "below must be at most 50000000".into()
            ))
        );
    }

    #[test]
    fn a_cancelled_call_stops_sieving() {
        let ctx = ctx_with_state(AppState::default());
        ctx.cancel_token().cancel();
        assert_eq!(
            count_primes(CountPrimes { below: BELOW_MAX }, &ctx),
            Err(EntryError::Cancelled)
        );
    }
}
