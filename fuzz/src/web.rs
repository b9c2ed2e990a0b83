//! The `web_request` target: one HTTP request through a molt-web router, in-process (tower's
//! `oneshot`, no socket), at molt-web's extraction and decoding: typed path and query
//! parameters (`molt_web::Path`, `molt_web::Query`) and an entry's body, JSON or MsgPack by
//! `Content-Type`, answered in the codec `Accept` asks for.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use molt_web::axum;
use molt_web::{Path, Query, Web, WebConfig};
use molt_worker::{App, Ctx, EntryError};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::assert_safe_message;

/// The request of the fuzzed entry: every kind of field a contract has (integers, text, a
/// list, an optional, an enum in each of serde's shapes). `deny_unknown_fields` keeps the
/// independent decode below exact: no skipped value whose depth one decoder would refuse and
/// another not.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    id: u64,
    name: String,
    tags: Vec<String>,
    flag: Option<bool>,
    kind: Kind,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    Count(i32),
    Span { from: i16, to: i16 },
}

/// The typed path parameters of `GET /users/{id}/{tag}`.
#[derive(Debug, Serialize, Deserialize)]
struct UserPath {
    id: u64,
    tag: String,
}

/// The typed query of `GET /users/{id}/{tag}`: every field optional, so no query at all is
/// valid.
#[derive(Debug, Serialize, Deserialize)]
struct Page {
    limit: Option<u32>,
    status: Option<Status>,
    q: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Open,
    Closed,
}

/// What `GET /users/{id}/{tag}` answers: the parameters as extracted.
#[derive(Debug, Serialize, Deserialize)]
struct Extracted {
    path: UserPath,
    page: Page,
}

fn echo(request: Typed, _ctx: &Ctx) -> Result<Typed, EntryError> {
    Ok(request)
}

async fn user(Path(path): Path<UserPath>, Query(page): Query<Page>) -> axum::response::Response {
    let json = serde_json::to_vec(&Extracted { path, page }).expect("plain fields encode as JSON");
    ([(header::CONTENT_TYPE, molt_web::JSON)], json).into_response()
}

/// The router every input goes through, with the service's layers, and the runtime it runs
/// on; built once.
fn service() -> &'static (tokio::runtime::Runtime, Router) {
    static SERVICE: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let entries = App::new()
            .inline_entry("echo_typed", echo)
            .into_entries(None, runtime.handle())
            .expect("the fuzz app builds");
        let web = Web::new(entries, WebConfig::default());
        let router = web.finish(
            Router::new()
                .route("/entry", web.entry("echo_typed"))
                .route("/users/{id}/{tag}", get(user)),
        );
        (runtime, router)
    })
}

/// Bytes a URI may carry as they are in a path segment or a query: unreserved, sub-delims,
/// `:`, `@` and `%` (so that broken percent escapes reach the decoders). Everything else is
/// percent-encoded, which makes every input a valid URI.
fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&byte)
}

fn uri_part(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if is_kept(byte) {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    text
}

/// The request codecs: what the first byte's low bits pick as `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BodyType {
    Json,
    MsgPack,
    /// No `Content-Type`: JSON.
    Absent,
    /// Neither codec: 415.
    Other,
}

/// `data[0]` picks the request: bit 0x04 the route (`POST /entry`, else `GET
/// /users/{id}/{tag}`), bits 0x03 the `Content-Type`, bits 0x18 the `Accept` (none, JSON,
/// MsgPack, both with MsgPack preferred). The rest, split at NUL bytes, is the `{id}` segment,
/// the `{tag}` segment, the query string and the body (the body keeps any further NULs).
///
/// Never panics, in molt-web or the entry. Every answer other than 200 is one of molt-web's
/// statuses with a JSON body `{"error": {"code", "message"}}` (both non-empty, the message
/// safe to show). The entry answers 200 exactly when serde decodes the body as its request in
/// the codec `Content-Type` names (an empty body being `null`), and its reply, in the codec
/// `Accept` picks, decodes to that same request; otherwise 400 `InvalidInput`, or 415 for a
/// media type that is neither. A `{id}` that is plain digits and fits a `u64`, with a `{tag}`
/// without escapes and no query, is 200 with both as sent; a `{id}` that is not a number
/// (and has no escape that could make it one) is 400 `InvalidInput` naming `id`.
///
/// ```
/// molt_fuzz::web_request(b"\x04\0\0\0{\"id\": 1, \"name\": \"a\", \"tags\": [], \"kind\": \"Plain\"}");
/// molt_fuzz::web_request(b"\x00123\0tag\0limit=5&status=open");
/// ```
pub fn web_request(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let body_type = match flags & 0x03 {
        0 => BodyType::Json,
        1 => BodyType::MsgPack,
        2 => BodyType::Absent,
        _ => BodyType::Other,
    };
    let accept = match (flags >> 3) & 0x03 {
        0 => None,
        1 => Some(molt_web::JSON),
        2 => Some(molt_web::MSGPACK),
        _ => Some("application/json;q=0.5, application/msgpack"),
    };
    let mut parts = rest.splitn(4, |&byte| byte == 0);
    let id = parts.next().unwrap_or_default();
    let tag = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let to_entry = flags & 0x04 != 0;
    let (method, uri) = if to_entry {
        (Method::POST, "/entry".to_owned())
    } else {
        let mut uri = format!("/users/{}/{}", uri_part(id), uri_part(tag));
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&uri_part(query));
        }
        (Method::GET, uri)
    };
    let mut request = Request::builder().method(method).uri(&uri);
    request = match body_type {
        BodyType::Json => request.header(header::CONTENT_TYPE, molt_web::JSON),
        BodyType::MsgPack => request.header(header::CONTENT_TYPE, molt_web::MSGPACK),
        BodyType::Absent => request,
        BodyType::Other => request.header(header::CONTENT_TYPE, "text/plain"),
    };
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("every byte outside the kept set is percent-encoded");

    let (runtime, router) = service();
    let (status, content_type, reply) = runtime.block_on(async {
        let response = router
            .clone()
            .oneshot(request)
            .await
            .expect("a router never fails");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let reply = response
            .into_body()
            .collect()
            .await
            .expect("an in-memory body")
            .to_bytes();
        (status, content_type, reply)
    });

    if status != StatusCode::OK {
        let quotable = quotable_text(data, &[id, tag, query], body);
        let code = assert_error_body(status, content_type.as_deref(), &reply, &quotable);
        if to_entry {
            let expected = match body_type {
                BodyType::Other => "UnsupportedMediaType",
                _ => "InvalidInput",
            };
            assert_eq!(code, expected, "POST /entry answered {status}");
            assert!(
                body_type == BodyType::Other || decode_request(body_type, body).is_none(),
                "POST /entry refused a body serde decodes: {code}"
            );
        } else {
            check_refused_path(status, &code, &reply, id, tag, query);
        }
        return;
    }

    if to_entry {
        let sent = decode_request(body_type, body)
            .expect("POST /entry accepted a body serde does not decode");
        let replied = decode_reply(content_type.as_deref(), &reply);
        assert_eq!(replied, sent, "the entry's reply is not its request");
    } else {
        let extracted: Extracted =
            serde_json::from_slice(&reply).expect("GET /users answers its JSON");
        if let Some(number) = plain_number(id) {
            assert_eq!(
                extracted.path.id, number,
                "{{id}} extracted as another number"
            );
        }
        if is_clean(tag) {
            assert_eq!(
                extracted.path.tag.as_bytes(),
                tag,
                "{{tag}} extracted as other text"
            );
        }
    }
}

/// `{id}`'s value when it is ASCII digits only and fits a `u64`.
fn plain_number(id: &[u8]) -> Option<u64> {
    if id.is_empty() || !id.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(id).ok()?.parse().ok()
}

/// Whether a segment reaches the handler as it was sent: UTF-8 without escapes.
fn is_clean(segment: &[u8]) -> bool {
    !segment.contains(&b'%') && std::str::from_utf8(segment).is_ok()
}

/// What an error message may quote back without leaking anything: the input, its URI parts
/// percent-decoded, and the JSON string literals of its body unescaped (serde quotes the keys
/// and strings it refuses, also in a body that does not parse to the end).
fn quotable_text(input: &[u8], uri_parts: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut text = input.to_vec();
    for part in uri_parts {
        text.extend(percent_decoded(part));
        text.push(b' ');
    }
    let mut rest = body;
    while let Some(start) = rest.iter().position(|&byte| byte == b'"') {
        let literal = &rest[start..];
        // The closing quote: the first one not escaped by an odd run of backslashes.
        let mut end = None;
        let mut escaped = false;
        for (index, &byte) in literal.iter().enumerate().skip(1) {
            match byte {
                b'\\' => escaped = !escaped,
                b'"' if !escaped => {
                    end = Some(index);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        if let Ok(decoded) = serde_json::from_slice::<String>(&literal[..=end]) {
            text.extend_from_slice(decoded.as_bytes());
            text.push(b' ');
        }
        rest = &literal[end + 1..];
    }
    text
}

/// `%XX` escapes decoded, anything else (a broken escape included) as it is.
fn percent_decoded(bytes: &[u8]) -> Vec<u8> {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if let (b'%', Some(&high), Some(&low)) =
            (bytes[index], bytes.get(index + 1), bytes.get(index + 2))
        {
            if let (Some(high), Some(low)) = (hex(high), hex(low)) {
                out.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    out
}

/// What a refusal of `GET /users/{id}/{tag}` must agree with: the parameters it was sent.
fn check_refused_path(
    status: StatusCode,
    code: &str,
    reply: &[u8],
    id: &[u8],
    tag: &[u8],
    query: &[u8],
) {
    if status == StatusCode::NOT_FOUND {
        assert!(
            id.is_empty() || tag.is_empty(),
            "GET /users/{{id}}/{{tag}} not found with both segments sent"
        );
        return;
    }
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "GET /users answered {status}"
    );
    assert_eq!(code, "InvalidInput");
    if plain_number(id).is_some() && is_clean(tag) {
        assert!(
            !query.is_empty(),
            "GET /users refused a plain {{id}} and {{tag}} without a query"
        );
    }
    // Path parameters are checked before the query, `{id}` before `{tag}`, but a `{tag}` that
    // is not UTF-8 once decoded is refused before either is parsed.
    if !id.contains(&b'%') && plain_number(id).is_none() && is_clean(tag) {
        let body: serde_json::Value = serde_json::from_slice(reply).expect("checked JSON");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("id"),
            "a non-numeric {{id}} refused without naming it: {message:?}"
        );
    }
}

/// Checks an error answer's status, `Content-Type` and body; returns its code.
fn assert_error_body(
    status: StatusCode,
    content_type: Option<&str>,
    reply: &[u8],
    input: &[u8],
) -> String {
    assert!(
        matches!(status.as_u16(), 400 | 404 | 406 | 413 | 415),
        "unexpected status {status}"
    );
    assert_eq!(content_type, Some(molt_web::JSON), "a {status} not in JSON");
    let body: serde_json::Value = serde_json::from_slice(reply)
        .unwrap_or_else(|err| panic!("a {status} body that is not JSON ({err})"));
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "a {status} without error.code: {body}");
    assert!(
        !message.is_empty(),
        "a {status} without error.message: {body}"
    );
    assert_safe_message(message, input);
    code.to_owned()
}

/// The body as the entry's request, decoded by serde on its own (an empty body is `null`).
fn decode_request(body_type: BodyType, body: &[u8]) -> Option<Typed> {
    match body_type {
        BodyType::MsgPack if body.is_empty() => rmp_serde::from_slice(&[0xc0]).ok(),
        BodyType::MsgPack => rmp_serde::from_slice(body).ok(),
        BodyType::Json | BodyType::Absent if body.is_empty() => {
            serde_json::from_slice(b"null").ok()
        }
        BodyType::Json | BodyType::Absent => serde_json::from_slice(body).ok(),
        BodyType::Other => None,
    }
}

/// An entry's 200 reply, decoded in the codec its `Content-Type` names.
fn decode_reply(content_type: Option<&str>, reply: &[u8]) -> Typed {
    match content_type {
        Some(molt_web::MSGPACK) => rmp_serde::from_slice(reply).expect("a MsgPack reply"),
        Some(molt_web::JSON) => serde_json::from_slice(reply).expect("a JSON reply"),
        other => panic!("an entry reply with Content-Type {other:?}"),
    }
}
