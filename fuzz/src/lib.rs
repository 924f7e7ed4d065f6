//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// Headers read from a request head at most, as hyper's default.
pub const MAX_HEADERS: usize = 100;

/// The request a raw head turns into, as hyper would hand it to the
/// handshake: `None` where hyper answers 400 itself (an incomplete or
/// malformed head, a bad method, target, header name or value).
pub fn request_from_head(head: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri: Uri = parsed.path?.parse().ok()?;
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(())
        .ok()?;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        req.headers_mut().append(name, value);
    }
    Some(req)
}

/// `pairs` as headers; values that cannot be header values are left out.
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'static str, &'a [u8])>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.append(name, v);
        }
    }
    map
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
