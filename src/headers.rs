//! Request headers as the capture and webhook paths record and show them.

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
