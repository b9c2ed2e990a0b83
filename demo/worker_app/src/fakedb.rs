//! The demo's fake database: every user's rows generated on demand from splitmix64, so that
//! `demo/django_app/demoapp/contract.py` (pure Python) produces the same rows bit for bit.
//! `docs/demo-contract.md` is the specification; nothing here allocates per row.

use std::time::{Duration, Instant};

use molt_worker::CancelToken;

/// splitmix64's increment (the golden-ratio gamma).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Unix time of row 0's slot: 2024-01-01T00:00:00Z.
pub const EPOCH_BASE: u64 = 1_704_067_200;

/// Seconds between the starts of consecutive rows' slots; a row's time lies inside its slot,
/// so `created_at` grows strictly with the id.
pub const ROW_SPACING_S: u64 = 600;

/// 6 bits of a row's title word pick one of these: exactly 64 lowercase ASCII words, none
/// longer than 10 bytes (so a title fits [`Title`]'s buffer).
const WORDS: [&str; 64] = [
    "alpha", "amber", "anchor", "apple", "arrow", "aspen", "atlas", "autumn", //
    "badge", "basin", "beacon", "birch", "blaze", "bloom", "breeze", "bridge", //
    "cable", "canyon", "cedar", "cinder", "clover", "comet", "coral", "crest", //
    "delta", "dune", "ember", "falcon", "fern", "fjord", "flint", "forest", //
    "garnet", "glacier", "granite", "harbor", "hazel", "horizon", "island", "jasper", //
    "juniper", "lagoon", "lantern", "maple", "meadow", "mesa", "nebula", "oasis", //
    "orbit", "pebble", "pine", "prairie", "quartz", "raven", "ridge", "river", //
    "sierra", "summit", "thistle", "timber", "tundra", "valley", "willow", "zephyr",
];

/// splitmix64's output function.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output number `index` (from 0) of splitmix64 seeded with `seed`: random access into the
/// stream, so rows can be generated in any order.
#[inline]
pub fn splitmix64_output(seed: u64, index: u64) -> u64 {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// One generated row, without its title (only returned rows and `q` matching need that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based; row `id` is made from stream outputs `2 * (id - 1)` and `2 * (id - 1) + 1`.
    pub id: u32,
    /// The first of the row's two words: time, status, score and unread come from its bits.
    pub word: u64,
}

impl Row {
    /// Row `index` (0-based) of the user whose stream is seeded with `user_id`.
    #[inline]
    pub fn generate(user_id: u64, index: u32) -> Self {
        Row {
            id: index + 1,
            word: splitmix64_output(user_id, 2 * u64::from(index)),
        }
    }

    /// The word [`Title::from_word`] turns into this row's title.
    #[inline]
    pub fn title_word(&self, user_id: u64) -> u64 {
        splitmix64_output(user_id, 2 * u64::from(self.id - 1) + 1)
    }

    /// About 30 % of rows are open.
    #[inline]
    pub fn is_open(&self) -> bool {
        (self.word >> 16) % 10 < 3
    }

    /// `"open"` or `"closed"`.
    pub fn status(&self) -> &'static str {
        if self.is_open() {
            "open"
        } else {
            "closed"
        }
    }

    /// Unix seconds: inside the row's own slot of [`ROW_SPACING_S`] seconds.
    pub fn created_epoch(&self) -> u64 {
        EPOCH_BASE + u64::from(self.id - 1) * ROW_SPACING_S + self.word % ROW_SPACING_S
    }

    /// 0..=999.
    pub fn score(&self) -> u32 {
        // The modulus keeps it under 1000, so the narrowing cannot truncate.
        ((self.word >> 32) % 1000) as u32
    }

    /// About 25 % of rows are unread.
    pub fn unread(&self) -> bool {
        (self.word >> 48) & 3 == 0
    }
}

/// A row's title held inline: 3 to 5 of [`WORDS`], space-separated, at most 54 bytes.
#[derive(Clone, Copy)]
pub struct Title {
    bytes: [u8; 56],
    len: u8,
}

impl Title {
    /// The title a row's second word encodes.
    pub fn from_word(word: u64) -> Self {
        let mut title = Title {
            bytes: [0; 56],
            len: 0,
        };
        let count = 3 + word % 3;
        let mut at = 0;
        for j in 0..count {
            if j > 0 {
                title.bytes[at] = b' ';
                at += 1;
            }
            // Masked to 6 bits: always a valid index into the 64 words.
            let chosen = WORDS[((word >> (8 + 6 * j)) & 63) as usize].as_bytes();
            title.bytes[at..at + chosen.len()].copy_from_slice(chosen);
            at += chosen.len();
        }
        // At most 5 words of 10 bytes and 4 spaces: fits in a u8.
        title.len = at as u8;
        title
    }

    /// The title's bytes (lowercase ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The title as text.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII words and spaces.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Whether `needle` occurs in the title, byte for byte. Titles are short, so a scan for
    /// the needle's first byte beats building a searcher per row.
    pub fn contains(&self, needle: &[u8]) -> bool {
        let Some((&first, rest)) = needle.split_first() else {
            return true;
        };
        let haystack = self.as_bytes();
        let Some(last_start) = haystack.len().checked_sub(needle.len()) else {
            return false;
        };
        (0..=last_start)
            .any(|at| haystack[at] == first && &haystack[at + 1..at + needle.len()] == rest)
    }
}

impl serde::Serialize for Title {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` held inline.
#[derive(Clone, Copy)]
pub struct IsoTimestamp([u8; 20]);

impl IsoTimestamp {
    /// The UTC time of `epoch_s` Unix seconds, by the civil-from-days algorithm (proleptic
    /// Gregorian; years 1970..=9999 are all this contract can produce).
    pub fn from_epoch(epoch_s: u64) -> Self {
        let days = epoch_s / 86_400;
        let secs = epoch_s % 86_400;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);

        let mut text = *b"0000-00-00T00:00:00Z";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], secs / 3600);
        put_digits(&mut text[14..16], secs % 3600 / 60);
        put_digits(&mut text[17..19], secs % 60);
        IsoTimestamp(text)
    }

    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl serde::Serialize for IsoTimestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Writes the low `out.len()` decimal digits of `value`, zero-padded.
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        // A digit 0..=9: the narrowing cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Simulated database cost, read from the environment at start-up; all 0 by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostKnobs {
    /// `MOLT_FAKE_DB_DELAY_MS`: a sleep per call (the round trip to the database).
    pub delay_ms: u64,
    /// `MOLT_FAKE_DB_DECODE_US_PER_ROW`: busy time per generated row (decoding it).
    pub decode_us_per_row: u64,
    /// `MOLT_FAKE_DB_CPU_ITERS`: extra splitmix64 rounds per generated row.
    pub cpu_iters_per_row: u64,
}

const KNOB_LIMITS: [(&str, u64); 3] = [
    ("MOLT_FAKE_DB_DELAY_MS", 60_000),
    ("MOLT_FAKE_DB_DECODE_US_PER_ROW", 1_000),
    ("MOLT_FAKE_DB_CPU_ITERS", 1_000_000),
];

impl CostKnobs {
    /// The knobs `lookup` (an environment) describes: unset or blank is 0, a value over the
    /// cap is the cap, anything but a decimal non-negative integer is 0 with a warning.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let [delay_ms, decode_us_per_row, cpu_iters_per_row] = KNOB_LIMITS.map(|(name, cap)| {
            let raw = lookup(name).unwrap_or_default();
            let raw = raw.trim();
            if raw.is_empty() {
                0
            } else if raw.bytes().all(|b| b.is_ascii_digit()) {
                // All digits: only overflow can fail, and an overflowing value is over the cap.
                raw.parse::<u64>().map_or(cap, |value| value.min(cap))
            } else {
                log::warn!("ignoring {name}: not a non-negative integer");
                0
            }
        });
        CostKnobs {
            delay_ms,
            decode_us_per_row,
            cpu_iters_per_row,
        }
    }

    /// The knobs this process's environment sets.
    pub fn from_env() -> Self {
        CostKnobs::from_lookup(|name| std::env::var(name).ok())
    }

    /// Sleeps the per-call delay; false when the token fired meanwhile.
    pub fn delay(&self, cancel: &CancelToken) -> bool {
        self.delay_ms == 0 || !cancel.wait_timeout(Duration::from_millis(self.delay_ms))
    }

    /// Starts charging per-row cost for one scan.
    pub fn meter(&self) -> RowMeter {
        RowMeter {
            knobs: *self,
            started: Instant::now(),
            generated: 0,
        }
    }
}

/// Charges the per-row knobs of one scan as rows are generated.
pub struct RowMeter {
    knobs: CostKnobs,
    started: Instant,
    generated: u64,
}

impl RowMeter {
    /// Charges one generated row; false when the token fired during the busy wait.
    #[inline]
    pub fn charge(&mut self, row: &Row, cancel: &CancelToken) -> bool {
        self.generated += 1;
        if self.knobs.cpu_iters_per_row != 0 {
            std::hint::black_box(burn(row.word, self.knobs.cpu_iters_per_row));
        }
        if self.knobs.decode_us_per_row != 0 {
            // Paced against the scan's start, so timer overshoot on one row is not repeated.
            let until =
                self.started + Duration::from_micros(self.generated * self.knobs.decode_us_per_row);
            while Instant::now() < until {
                if cancel.is_cancelled() {
                    return false;
                }
                std::hint::spin_loop();
            }
        }
        true
    }
}

/// `iterations` extra splitmix64 rounds: CPU work the optimiser cannot drop (the caller
/// passes the result through `black_box`).
fn burn(mut word: u64, iterations: u64) -> u64 {
    for _ in 0..iterations {
        word = mix(word.wrapping_add(GAMMA));
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // First outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
        assert_eq!(splitmix64_output(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64_output(0, 1), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn timestamps_follow_the_gregorian_calendar() {
        assert_eq!(IsoTimestamp::from_epoch(0).as_str(), "1970-01-01T00:00:00Z");
        assert_eq!(
            IsoTimestamp::from_epoch(951_782_400).as_str(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            IsoTimestamp::from_epoch(1_709_641_496).as_str(),
            "2024-03-05T12:24:56Z"
        );
        assert_eq!(
            IsoTimestamp::from_epoch(4_102_444_799).as_str(),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn created_at_grows_strictly_with_the_id() {
        let times: Vec<u64> = (0..1000)
            .map(|index| Row::generate(42, index).created_epoch())
            .collect();
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn titles_have_three_to_five_known_words() {
        for index in 0..500 {
            let row = Row::generate(9, index);
            let title = Title::from_word(row.title_word(9));
            let words: Vec<&str> = title.as_str().split(' ').collect();
            assert!((3..=5).contains(&words.len()), "{}", title.as_str());
            assert!(words.iter().all(|word| WORDS.contains(word)));
        }
    }

    #[test]
    fn title_search_finds_needles_anywhere_and_only_there() {
        let title = Title::from_word(Row::generate(3, 0).title_word(3));
        let text = title.as_str();
        assert!(title.contains(b""));
        assert!(title.contains(text.as_bytes()));
        assert!(title.contains(&text.as_bytes()[text.len() - 2..]));
        assert!(title.contains(&text.as_bytes()[..1]));
        assert!(!title.contains(format!("{text} ").as_bytes()));
        assert!(!title.contains(b"zz"));
    }

    #[test]
    fn knobs_parse_caps_and_ignore_garbage() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        assert_eq!(CostKnobs::from_lookup(env(&[])), CostKnobs::default());
        assert_eq!(
            CostKnobs::from_lookup(env(&[
                ("MOLT_FAKE_DB_DELAY_MS", " 5 "),
                ("MOLT_FAKE_DB_DECODE_US_PER_ROW", "99999999999999999999999"),
                ("MOLT_FAKE_DB_CPU_ITERS", "-3"),
            ])),
            CostKnobs {
                delay_ms: 5,
                decode_us_per_row: 1_000,
                cpu_iters_per_row: 0
            }
        );
    }

    #[test]
    fn delay_returns_early_when_cancelled() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let knobs = CostKnobs {
            delay_ms: 60_000,
            ..CostKnobs::default()
        };
        assert!(!knobs.delay(&cancel));
    }

    #[test]
    fn decode_busy_wait_stops_when_cancelled() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let mut meter = CostKnobs {
            decode_us_per_row: 1_000,
            ..CostKnobs::default()
        }
        .meter();
        assert!(!meter.charge(&Row::generate(1, 0), &cancel));
    }
}
