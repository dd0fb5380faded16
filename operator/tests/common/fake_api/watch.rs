//! Watches for the fake API server: a bounded history of changes (one event per write, numbered
//! by the resourceVersion the write gave), label selectors, and the stream of JSON lines a
//! `?watch=true` request gets. It does not send BOOKMARK events (the API allows a server to
//! send none), does not turn a label change that leaves a selector into DELETED, and ends a
//! watch only at `timeoutSeconds` or when the client goes away.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::{json, Value};

use super::FakeApi;

/// Changes kept for watches; a watch from an older resourceVersion is answered 410 Gone.
pub const HISTORY: usize = 2000;
/// How long a watch without `timeoutSeconds` stays open.
const DEFAULT_WATCH: Duration = Duration::from_secs(300);

/// One change of one object.
#[derive(Clone, Debug)]
pub struct Event {
    pub version: u64,
    pub collection: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// The recent changes; `evicted` is the newest version no longer kept (0: nothing evicted).
#[derive(Default)]
pub struct History {
    events: VecDeque<Event>,
    evicted: u64,
}

impl History {
    pub fn push(&mut self, event: Event) {
        if self.events.len() == HISTORY {
            if let Some(old) = self.events.pop_front() {
                self.evicted = old.version;
            }
        }
        self.events.push_back(event);
    }

    /// Changes in `collection` after `since`, or `None` when some of them were evicted.
    pub fn after(&self, collection: &str, since: u64) -> Option<Vec<Event>> {
        if since < self.evicted {
            return None;
        }
        Some(
            self.events
                .iter()
                .filter(|e| e.version > since && in_collection(collection, &e.collection))
                .cloned()
                .collect(),
        )
    }
}

/// Whether an object stored at `stored` belongs to the `requested` collection: the same path,
/// or the all-namespaces path of its kind (`/api/v1/services` for
/// `/api/v1/namespaces/kafka/services`).
pub fn in_collection(requested: &str, stored: &str) -> bool {
    if requested == stored {
        return true;
    }
    let Some((prefix, rest)) = stored.split_once("/namespaces/") else {
        return false;
    };
    let kind = rest.split_once('/').map_or("", |(_, kind)| kind);
    !kind.is_empty() && requested == format!("{prefix}/{kind}")
}

/// A parsed `labelSelector`: `k=v`, `k==v`, `k!=v`, `k` (exists) and `!k` (absent), ANDed.
#[derive(Clone, Debug, Default)]
pub struct Selector(Vec<(String, Op)>);

#[derive(Clone, Debug)]
enum Op {
    Eq(String),
    Ne(String),
    Exists,
    Absent,
}

impl Selector {
    pub fn parse(raw: &str) -> Selector {
        let terms = raw.split(',').filter(|t| !t.is_empty()).map(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                (k.to_owned(), Op::Ne(v.to_owned()))
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k.to_owned(), Op::Eq(v.to_owned()))
            } else if let Some(k) = t.strip_prefix('!') {
                (k.to_owned(), Op::Absent)
            } else {
                (t.to_owned(), Op::Exists)
            }
        });
        Selector(terms.collect())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|(k, op)| match op {
            Op::Eq(v) => labels[k] == json!(v),
            Op::Ne(v) => labels[k] != json!(v),
            Op::Exists => !labels[k].is_null(),
            Op::Absent => labels[k].is_null(),
        })
    }
}

/// What a watch request asked for.
pub struct WatchRequest {
    pub collection: String,
    pub selector: Selector,
    /// Send changes after this version; `None` (no or `0` resourceVersion): first an ADDED
    /// event for every current object, as the apiserver does.
    pub since: Option<u64>,
    pub timeout: Option<Duration>,
}

struct WatchState {
    api: FakeApi,
    req: WatchRequest,
    since: u64,
    pending: VecDeque<Bytes>,
    changes: tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = serde_json::to_vec(&json!({ "type": kind, "object": object })).expect("json");
    text.push(b'\n');
    Bytes::from(text)
}

/// The watch's stream of JSON lines, or `Err(version)` (the oldest version still watchable)
/// when `since` is too old.
pub fn stream(api: &FakeApi, req: WatchRequest) -> Result<BoxStream<'static, Bytes>, u64> {
    let changes = api.changes.subscribe();
    let (since, pending) = match req.since {
        Some(v) => {
            let store = api.store.lock().expect("lock");
            if store.history.after(&req.collection, v).is_none() {
                return Err(store.history.evicted);
            }
            (v, VecDeque::new())
        }
        None => {
            let (version, items) = api.snapshot(&req.collection, &req.selector);
            (version, items.iter().map(|o| line("ADDED", o)).collect())
        }
    };
    let timeout = req.timeout.unwrap_or(DEFAULT_WATCH);
    let state = WatchState {
        api: api.clone(),
        req,
        since,
        pending,
        changes,
        deadline: tokio::time::Instant::now() + timeout,
    };
    Ok(Box::pin(futures::stream::unfold(state, next_line)))
}

async fn next_line(mut st: WatchState) -> Option<(Bytes, WatchState)> {
    loop {
        if let Some(l) = st.pending.pop_front() {
            return Some((l, st));
        }
        // Mark the current version seen before reading the history, so a write landing in
        // between still wakes `changed()` below.
        st.changes.borrow_and_update();
        let events = {
            let store = st.api.store.lock().expect("lock");
            store.history.after(&st.req.collection, st.since)
        };
        // Evicted while the watch was open: end it; the client re-watches and gets 410.
        let events = events?;
        for e in events {
            st.since = e.version;
            if st.req.selector.matches(&e.object) {
                st.pending.push_back(line(e.kind, &e.object));
            }
        }
        if !st.pending.is_empty() {
            continue;
        }
        tokio::select! {
            r = st.changes.changed() => r.ok()?,
            () = tokio::time::sleep_until(st.deadline) => return None,
        }
    }
}
