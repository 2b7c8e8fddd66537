//! Request headers: as the capture and webhook paths record and show them, and the base URL
//! they say clients reached us at.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

/// Header names (lower case) to values; a repeated header's values are joined with `, `, and
/// bytes that are not UTF-8 are replaced.
pub fn joined(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_string())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// The base URL clients reached us at: `public_url` (`--public-url`) when set, else
/// X-Forwarded-Proto/Host, else Host.
pub fn base_url(public_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_string();
    }
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or("").trim());
    let proto = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host").or_else(|| header("host")).filter(|h| !h.is_empty()).unwrap_or("localhost");
    format!("{proto}://{host}")
}
