//! Reading a capture session's events: filtered pages newest first with a cursor that stays
//! valid while new events arrive (it names the number below which the next page starts, and new
//! events only take higher numbers), exports oldest first, and the live feed.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::CaptureError;
use crate::store::capture::{CaptureStore, CapturedEvent};
use crate::store::StoreError;

/// Which events a listing keeps.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Upper-case HTTP method.
    pub method: Option<String>,
    /// The hundreds digit of the answered status (2 for `2xx`).
    pub status_class: Option<u16>,
    /// Lower-case text to find in header names and values or the body.
    pub text: Option<String>,
}

impl EventFilter {
    /// A filter from the query parameters `method`, `status` (`2xx`...`5xx`) and `q`.
    pub fn parse(method: Option<&str>, status: Option<&str>, q: Option<&str>) -> Result<EventFilter, CaptureError> {
        let method = match method.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) if m.bytes().all(|b| b.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
            Some(m) => return Err(CaptureError::Invalid(format!("method: not an HTTP method: {m:?}"))),
            None => None,
        };
        let status_class = match status.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => match s.as_bytes() {
                [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Some(u16::from(d - b'0')),
                _ => return Err(CaptureError::Invalid(format!("status: expected 2xx, 4xx or 5xx, got {s:?}"))),
            },
            None => None,
        };
        let text = q.filter(|q| !q.is_empty()).map(str::to_lowercase);
        Ok(EventFilter { method, status_class, text })
    }

    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.status_class.is_none() && self.text.is_none()
    }

    pub fn matches(&self, event: &CapturedEvent) -> bool {
        if self.method.as_ref().is_some_and(|m| *m != event.request.method) {
            return false;
        }
        if self.status_class.is_some_and(|class| event.status / 100 != class) {
            return false;
        }
        match &self.text {
            None => true,
            Some(text) => {
                let found = |haystack: &str| haystack.to_lowercase().contains(text.as_str());
                event.request.headers.iter().any(|(name, value)| found(name) || found(value))
                    || match event.request.body_encoding.as_str() {
                        "base64" => STANDARD
                            .decode(&event.request.body)
                            .is_ok_and(|bytes| found(&String::from_utf8_lossy(&bytes))),
                        _ => found(&event.request.body),
                    }
            }
        }
    }
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<CapturedEvent>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<u64>,
}

/// Events read per store call while filling a page.
const READ_CHUNK: usize = 200;
/// Events a filtered listing examines before it returns what it found with a cursor to go on.
const SCAN_BUDGET: usize = 10_000;

/// Up to `limit` events matching `filter`, newest first, below `cursor`.
pub async fn page(
    store: &dyn CaptureStore,
    id: &str,
    filter: &EventFilter,
    cursor: Option<u64>,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let mut before = cursor.unwrap_or(u64::MAX);
    let mut events = Vec::with_capacity(limit);
    let mut scanned = 0;
    loop {
        let chunk = if filter.is_empty() { limit + 1 - events.len() } else { READ_CHUNK };
        let read = store.events_before(id, before, chunk).await?;
        let exhausted = read.len() < chunk;
        for event in read {
            before = event.seq;
            scanned += 1;
            if !filter.matches(&event) {
                continue;
            }
            if events.len() == limit {
                // One more match exists: the page is full and there is more.
                let next = events.last().map(|e: &CapturedEvent| e.seq);
                return Ok(EventPage { events, next_cursor: next });
            }
            events.push(event);
        }
        if exhausted || before <= 1 {
            return Ok(EventPage { events, next_cursor: None });
        }
        if scanned >= SCAN_BUDGET {
            return Ok(EventPage { events, next_cursor: Some(before) });
        }
    }
}

const CURSOR: &str = "capture-before";

/// The opaque form of a cursor.
pub fn encode_cursor(before: u64) -> String {
    crate::cursor::encode(CURSOR, before)
}

/// A cursor this server issued.
pub fn decode_cursor(cursor: &str) -> Result<u64, CaptureError> {
    crate::cursor::decode(CURSOR, cursor)
        .ok_or_else(|| CaptureError::Invalid("cursor: not a cursor this server issued".into()))
}

/// Events read per page of an export.
const EXPORT_PAGE: usize = 500;

/// Events numbered up to `last`, oldest first, a page at a time.
pub fn export(
    store: Arc<dyn CaptureStore>,
    id: String,
    last: u64,
) -> impl Stream<Item = Result<Vec<CapturedEvent>, CaptureError>> {
    async_stream::stream! {
        let mut after = 0;
        while after < last {
            match store.events_after(&id, after, EXPORT_PAGE).await {
                Ok(mut events) => {
                    events.retain(|e| e.seq <= last);
                    let Some(newest) = events.last().map(|e| e.seq) else { return };
                    after = newest;
                    yield Ok(events);
                }
                Err(e) => {
                    yield Err(e.into());
                    return;
                }
            }
        }
    }
}

/// Events recorded after `after`, as they come: follow first, read what the store has after
/// `after`, then pass on live events in order, re-reading the store after a lag. Ends when the
/// session is deleted or expires.
pub async fn live(
    store: Arc<dyn CaptureStore>,
    id: String,
    after: u64,
) -> Result<impl Stream<Item = Result<Arc<CapturedEvent>, CaptureError>>, CaptureError> {
    let mut feed = store.follow(&id).await?;
    Ok(async_stream::stream! {
        let mut last = after;
        let mut catch_up = true;
        loop {
            if catch_up {
                catch_up = false;
                loop {
                    match store.events_after(&id, last, EXPORT_PAGE).await {
                        Ok(events) => {
                            let done = events.len() < EXPORT_PAGE;
                            for event in events {
                                last = event.seq;
                                yield Ok(Arc::new(event));
                            }
                            if done {
                                break;
                            }
                        }
                        Err(e) => {
                            yield Err(e.into());
                            return;
                        }
                    }
                }
            }
            match feed.recv().await {
                Ok(event) if event.seq <= last => {}
                Ok(event) if event.seq == last + 1 => {
                    last = event.seq;
                    yield Ok(event);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => catch_up = true,
                // Deleted, expired, or the feed was interrupted: go on only while it lives.
                Err(RecvError::Closed) => {
                    match store.session(&id).await {
                        Ok(Some(session)) if !session.expired(crate::clock::now_ms()) => {}
                        _ => return,
                    }
                    match store.follow(&id).await {
                        Ok(again) => {
                            feed = again;
                            catch_up = true;
                        }
                        Err(e) => {
                            yield Err(e.into());
                            return;
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in
            ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("sessions-after:3"), &URL_SAFE_NO_PAD.encode("capture-before:x")]
        {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_parse_and_refuse_nonsense() {
        let f = EventFilter::parse(Some("post"), Some("4xx"), Some("Order")).unwrap();
        assert_eq!((f.method.as_deref(), f.status_class, f.text.as_deref()), (Some("POST"), Some(4), Some("order")));
        assert!(EventFilter::parse(None, None, None).unwrap().is_empty());
        assert!(EventFilter::parse(Some("GE T"), None, None).is_err());
        for bad in ["200", "6xx", "2x", "xx"] {
            assert!(EventFilter::parse(None, Some(bad), None).is_err(), "{bad}");
        }
    }
}
