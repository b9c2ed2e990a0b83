//! Content negotiation: the request's codec from `Content-Type`, the reply's from `Accept`,
//! and the `Content-Type` each reply codec goes out with.

use axum::http::{header, HeaderMap, StatusCode};
use molt_worker::Codec;

use crate::error::HttpError;

/// `Content-Type` of JSON.
pub const JSON: &str = "application/json";
/// `Content-Type` of MsgPack.
pub const MSGPACK: &str = "application/msgpack";

/// The codec of a request body: JSON (`application/json`, `*/*+json`, or no `Content-Type`
/// at all) or MsgPack (`application/msgpack`, `application/x-msgpack`,
/// `application/vnd.msgpack`); anything else is 415.
pub(crate) fn request_codec(headers: &HeaderMap) -> Result<Codec, HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Codec::Json);
    };
    let media = value
        .to_str()
        .ok()
        .and_then(|text| text.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .unwrap_or_default();
    codec_of(&media).ok_or_else(|| {
        HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type must be {JSON} or {MSGPACK}"),
        )
    })
}

/// The codec of the reply: the best of JSON and MsgPack that `Accept` takes (by `q`, then by
/// order), the request's own for `*/*`, `application/*` or no `Accept`; 406 if it takes
/// neither.
pub(crate) fn reply_codec(headers: &HeaderMap, request: Codec) -> Result<Codec, HttpError> {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .filter(|text| !text.trim().is_empty())
    else {
        return Ok(request);
    };
    let mut best: Option<(f32, Codec)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|param| {
                let (name, value) = param.split_once('=')?;
                (name.trim() == "q").then(|| value.trim().parse::<f32>().ok())?
            })
            .next()
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let codec = match media.as_str() {
            "*/*" | "application/*" => Some(request),
            media => codec_of(media),
        };
        if let Some(codec) = codec {
            if best.map_or(true, |(best_q, _)| q > best_q) {
                best = Some((q, codec));
            }
        }
    }
    best.map(|(_, codec)| codec).ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            format!("Accept must allow {JSON} or {MSGPACK}"),
        )
    })
}

fn codec_of(media: &str) -> Option<Codec> {
    match media {
        "application/json" => Some(Codec::Json),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            Some(Codec::MsgPack)
        }
        media if media.starts_with("application/") && media.ends_with("+json") => Some(Codec::Json),
        _ => None,
    }
}

/// The `Content-Type` a reply in `codec` goes out with.
pub(crate) fn content_type(codec: Codec) -> &'static str {
    match codec {
        Codec::Json => JSON,
        Codec::MsgPack => MSGPACK,
        Codec::ArrowIpc => "application/vnd.apache.arrow.stream",
        // Raw, and any codec added later: opaque bytes.
        _ => "application/octet-stream",
    }
}

/// The payload an empty body stands for: `null` (an entry over `()` or an `Option`).
pub(crate) fn empty_payload(codec: Codec) -> Vec<u8> {
    match codec {
        Codec::MsgPack => vec![0xc0],
        _ => b"null".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn content_type_picks_the_request_codec() {
        let codec = |value| request_codec(&headers(header::CONTENT_TYPE, value));
        assert_eq!(codec("application/json; charset=utf-8"), Ok(Codec::Json));
        assert_eq!(codec("application/problem+json"), Ok(Codec::Json));
        assert_eq!(codec("Application/MsgPack"), Ok(Codec::MsgPack));
        assert_eq!(codec("application/x-msgpack"), Ok(Codec::MsgPack));
        assert_eq!(request_codec(&HeaderMap::new()), Ok(Codec::Json));
        let refused = codec("text/plain").unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn accept_picks_the_reply_codec_by_quality_then_order() {
        let codec = |value| reply_codec(&headers(header::ACCEPT, value), Codec::Json);
        assert_eq!(codec("application/msgpack"), Ok(Codec::MsgPack));
        assert_eq!(
            codec("application/json;q=0.5, application/msgpack"),
            Ok(Codec::MsgPack)
        );
        assert_eq!(
            codec("application/msgpack;q=0.2, application/json;q=0.9"),
            Ok(Codec::Json)
        );
        assert_eq!(
            codec("application/msgpack, application/json"),
            Ok(Codec::MsgPack)
        );
        assert_eq!(codec("text/html, */*;q=0.1"), Ok(Codec::Json));
        assert_eq!(
            reply_codec(&HeaderMap::new(), Codec::MsgPack),
            Ok(Codec::MsgPack)
        );
        assert_eq!(
            codec("text/html, application/json;q=0")
                .unwrap_err()
                .status(),
            StatusCode::NOT_ACCEPTABLE
        );
    }
}
