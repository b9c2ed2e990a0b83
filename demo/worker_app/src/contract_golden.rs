//! The demo contract's golden cases: every request in `tests/fixtures/contract_golden.json`
//! (written by the Python reference, `gen_golden.py` beside it) must give the same bytes here,
//! in both codecs: same fields, same order, same types, same float bits, same messages.

use molt_worker::{Codec, EntryError};
use serde::Deserialize;

const FIXTURE: &str = include_str!("../tests/fixtures/contract_golden.json");

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    entry: String,
    request_json: String,
    request_msgpack_hex: Option<String>,
    reply_json: Option<String>,
    reply_msgpack_hex: Option<String>,
    error: Option<String>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("fixture hex"))
        .collect()
}

type EntryResult = Result<Vec<u8>, EntryError>;

fn run(case: &Case, codec: Codec, payload: &[u8]) -> EntryResult {
    assert!(
        ["list_items", "compute"].contains(&case.entry.as_str()),
        "{}: unknown entry {}",
        case.name,
        case.entry
    );
    crate::call(&case.entry, codec, payload)
}

/// What the Python reference answered for `case` in `codec`.
fn expected(case: &Case, codec: Codec) -> EntryResult {
    match (&case.error, codec) {
        (Some(message), _) => Err(EntryError::InvalidInput(message.clone())),
        (None, Codec::Json) => Ok(case.reply_json.clone().expect("reply_json").into_bytes()),
        (None, _) => Ok(hex(case
            .reply_msgpack_hex
            .as_deref()
            .expect("reply_msgpack_hex"))),
    }
}

fn fixture() -> Fixture {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture parses");
    assert!(
        fixture.cases.len() >= 50,
        "the fixture should hold a few dozen cases"
    );
    fixture
}

#[test]
fn json_replies_match_the_python_reference_byte_for_byte() {
    for case in fixture().cases {
        let got = run(&case, Codec::Json, case.request_json.as_bytes());
        assert_eq!(
            got.as_ref().map(|bytes| String::from_utf8_lossy(bytes)),
            expected(&case, Codec::Json)
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes)),
            "{}",
            case.name
        );
    }
}

#[test]
fn msgpack_replies_match_the_python_reference_byte_for_byte() {
    let mut packed_cases = 0;
    for case in fixture().cases {
        let Some(request) = case.request_msgpack_hex.as_deref() else {
            continue;
        };
        packed_cases += 1;
        assert_eq!(
            run(&case, Codec::MsgPack, &hex(request)),
            expected(&case, Codec::MsgPack),
            "{}",
            case.name
        );
    }
    assert!(packed_cases >= 50);
}
