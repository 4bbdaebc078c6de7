//! The store calls' tracing spans: recorded when a subscriber listens at
//! DEBUG, not even created otherwise. That matters most with no subscriber
//! at all: tracing's `log` feature (which axum's default `tower-log` turns
//! on, in this build as in most axum applications) then turns a span nobody
//! records into `log` calls at its creation, every enter and exit, and its
//! drop: about 400 instructions per store call under callgrind.
//!
//! One test, in steps: the `log` logger is process-wide, and once any
//! tracing subscriber has been set, tracing stops falling back to `log` for
//! the rest of the process, so the step without a subscriber must run first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sessionkit::resilience::fault::FaultyStore;
use sessionkit::store::memory::MemoryStore;
use sessionkit::{Config, CookieAction, Sessions};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records the names of the spans it is asked to create, at `max` and
/// more severe levels.
struct Spans {
    max: Level,
    names: Arc<Mutex<Vec<&'static str>>>,
    next: AtomicU64,
}

impl Subscriber for Spans {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.names.lock().unwrap().push(span.metadata().name());
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Every `log` record, as "target: message".
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{}: {}", record.target(), record.args());
        LOGGED.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// One request that creates a session and one that loads and changes it,
/// through a store with no synchronous path (every load and save is a
/// store call).
fn two_requests() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FaultyStore::new(MemoryStore::<u32>::new());
        let sessions = Sessions::new(store, Config::default());
        let s = sessions.load(None).await.unwrap();
        *s.data_mut() = 1;
        let CookieAction::Set { value, .. } = sessions.commit(&s, None).await.unwrap() else {
            panic!("a new session sets its cookie");
        };
        let s = sessions.load(Some(&value)).await.unwrap();
        assert_eq!(*s.data(), 1, "the session was saved and loaded back");
        *s.data_mut() = 2;
        sessions.commit(&s, Some(&value)).await.unwrap();
    });
}

/// The span names [`two_requests`] makes under a subscriber listening at `max`.
fn spans_at(max: Level) -> Vec<&'static str> {
    let names = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Spans {
        max,
        names: names.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(subscriber, two_requests);
    let names = names.lock().unwrap().clone();
    names
}

#[test]
fn store_calls_are_traced_only_when_a_subscriber_listens_at_debug() {
    // 1. No subscriber, a `log` logger taking everything.
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    two_requests();
    drop(tracing::debug_span!("probe").entered());
    let logged = LOGGED.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.contains("probe")),
        "tracing falls back to log in this build: {logged:?}"
    );
    assert!(
        !logged.iter().any(|l| l.contains("sessionkit.store.")),
        "{logged:?}"
    );

    // 2. A subscriber at DEBUG sees every store call.
    let names = spans_at(Level::DEBUG);
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("sessionkit.store.load"), 1, "{names:?}");
    assert_eq!(count("sessionkit.store.save"), 2, "{names:?}");

    // 3. One at INFO is asked for none.
    let names = spans_at(Level::INFO);
    assert!(
        !names.iter().any(|n| n.starts_with("sessionkit.store.")),
        "{names:?}"
    );
}
