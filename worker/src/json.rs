//! JSON as Python's `json.dumps` writes it with its default options, which is what Django's
//! `JsonResponse` sends: the runtime encodes a typed entry's result this way in the Json
//! codec, so a view can hand the worker's bytes to the response unchanged
//! (`@molt_offload(passthrough=True)`) and answer what `JsonResponse(result)` would.
//!
//! The defaults, and so this: separators `", "` and `": "`; `ensure_ascii` (every character
//! outside U+0020..U+007E escaped, `\uXXXX` in lowercase hex, UTF-16 surrogate pairs above
//! U+FFFF, `\"` `\\` `\n` `\r` `\t` `\b` `\f` by name); floats as Python's `repr` (shortest
//! round-trip digits, exponent form below 1e-4 and from 1e16).
//!
//! ```
//! #[derive(serde::Serialize)]
//! struct Item { title: &'static str, score: f64, tags: Vec<u8> }
//! let bytes = molt_worker::json::to_vec(&Item { title: "café", score: 1e-5, tags: vec![1, 2] }).unwrap();
//! assert_eq!(bytes, br#"{"title": "caf\u00e9", "score": 1e-05, "tags": [1, 2]}"#);
//! ```

use std::fmt::Write as _;
use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// `value` as `json.dumps(value)` would write it. Non-finite floats are an error, as in
/// serde_json (Python would write `NaN`, which is not JSON).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// The serde_json formatter behind [`to_vec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let mut text = String::with_capacity(24);
        write_float(&mut text, value);
        writer.write_all(text.as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        // Python has only doubles: an f32 is the double it widens to.
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json hands quotes, backslashes and control characters to write_char_escape;
        // what is left here is escaped only where it is not printable ASCII.
        if fragment.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut escaped = String::with_capacity(fragment.len() + 16);
        escape_into(&mut escaped, fragment);
        writer.write_all(escaped.as_bytes())
    }
}

/// Appends `text` escaped as `json.dumps` escapes string contents (without the quotes).
pub fn escape_into(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            _ => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
}

/// Appends `repr(value)` for a float: the shortest digits that round-trip (what ryu finds),
/// laid out by CPython's rules: positional when the decimal exponent is in -4..16, else
/// `d.ddde±XX`; `NaN`, `Infinity`, `-Infinity` as `json.dumps` writes them.
pub fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        });
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let (digits, point) = shortest_digits(buffer.format_finite(value.abs()));
    if value < 0.0 {
        out.push('-');
    }
    // `point`: where the decimal point falls, counted from the first digit (CPython's decpt).
    if point > -4 && point <= 16 {
        if point <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat(point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exponent = point - 1;
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    }
}

/// The significant digits of ryu's text for a positive finite value (no leading or trailing
/// zeros) and the position of the decimal point relative to the first of them.
fn shortest_digits(text: &str) -> (String, i32) {
    let (mantissa, exponent) = match text.split_once('e') {
        // ryu writes a plain decimal exponent: it always parses.
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{whole}{fraction}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0').to_owned();
    let point = whole.len() as i32 - leading as i32 + exponent;
    (digits, point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(value: f64) -> String {
        let mut out = String::new();
        write_float(&mut out, value);
        out
    }

    #[test]
    fn floats_are_pythons_repr() {
        // Each right-hand side is what CPython 3.11 prints for repr() of the left.
        for (value, repr) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456789.0, "123456789.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.2345e16, "1.2345e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (513512.683, "513512.683"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float(value), repr, "{value:e}");
        }
    }

    #[test]
    fn strings_are_escaped_as_ensure_ascii_does() {
        let bytes = to_vec("a\"b\\c\n\u{1f}\u{7f}é\u{1F600}/").unwrap();
        assert_eq!(bytes, br#""a\"b\\c\n\u001f\u007f\u00e9\ud83d\ude00/""#);
    }

    #[test]
    fn containers_use_pythons_separators() {
        let value = serde_json::json!({"a": [1, {"b": null}], "c": true, "d": {}});
        assert_eq!(
            to_vec(&value).unwrap(),
            br#"{"a": [1, {"b": null}], "c": true, "d": {}}"#
        );
    }
}
