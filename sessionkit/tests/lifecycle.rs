//! Lifecycle through the framework-free core: expiry with an injected clock,
//! regenerate, destroy, flash across requests, and the events each path fires.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::store::memory::MemoryStore;
use sessionkit::{
    Clock, Config, CookieAction, DeleteReason, EventKind, ExpiryKind, ManualClock, SessionId,
    Sessions,
};

#[derive(Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Data {
    user: Option<String>,
    n: u32,
}

type Log = Arc<Mutex<Vec<EventKind>>>;

fn setup_bounded(
    clock: &ManualClock,
    max_entries: usize,
) -> (Sessions<Data, MemoryStore<Data>>, Log) {
    let log: Log = Arc::default();
    let push = |log: &Log| {
        let log = log.clone();
        move |e: &sessionkit::SessionEvent| log.lock().unwrap().push(e.kind)
    };
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .absolute_lifetime(Duration::from_secs(3600))
        .clock(clock.clone())
        .on_started(push(&log))
        .on_loaded(push(&log))
        .on_deleted(push(&log))
        .on_regenerated(push(&log))
        .on_expired(push(&log))
        .build()
        .unwrap();
    let store = MemoryStore::<Data>::builder()
        .clock(clock.clone())
        .max_entries(max_entries)
        .build();
    (Sessions::new(store, config), log)
}

fn setup(clock: &ManualClock) -> (Sessions<Data, MemoryStore<Data>>, Log) {
    setup_bounded(clock, 100_000)
}

/// Runs one "request": load, apply `f`, commit; returns the cookie the browser keeps.
async fn request(
    sessions: &Sessions<Data, MemoryStore<Data>>,
    cookie: Option<&str>,
    f: impl FnOnce(&sessionkit::Session<Data>),
) -> (Option<String>, Data) {
    let s = sessions.load(cookie).await.unwrap();
    f(&s);
    let data = s.data().clone();
    let kept = match sessions.commit(&s, cookie).await.unwrap() {
        CookieAction::Set { value, .. } => Some(value),
        CookieAction::None => cookie.map(str::to_owned),
        CookieAction::Remove => None,
    };
    (kept, data)
}

#[tokio::test]
async fn idle_timeout_ends_a_session_without_activity() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    clock.advance(Duration::from_secs(599));
    let (cookie, data) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(data.n, 1, "alive one second before the idle deadline");
    // That request was in the second half of the window: activity recorded.
    clock.advance(Duration::from_secs(599));
    let (cookie, data) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(data.n, 1, "sliding expiration kept it alive");
    clock.advance(Duration::from_secs(601));
    let (_, data) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(data, Data::default(), "idle session must be gone");
    let log = log.lock().unwrap();
    assert!(log.contains(&EventKind::Expired(ExpiryKind::Idle)));
    assert!(log.contains(&EventKind::Deleted(DeleteReason::Expired(ExpiryKind::Idle))));
}

#[tokio::test]
async fn absolute_lifetime_ends_even_an_active_session() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (mut cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    for _ in 0..11 {
        clock.advance(Duration::from_secs(300));
        let (c, data) = request(&sessions, cookie.as_deref(), |s| s.data_mut().n += 1).await;
        assert!(
            data.n > 1,
            "active session alive before the absolute deadline"
        );
        cookie = c;
    }
    clock.advance(Duration::from_secs(301)); // 3601 s after creation
    let (_, data) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(data, Data::default());
    let log = log.lock().unwrap();
    assert!(
        log.contains(&EventKind::Expired(ExpiryKind::Absolute)),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_shortened_timeout_ends_sessions_written_under_the_longer_one() {
    let clock = ManualClock::new();
    let (long, _) = setup(&clock); // idle 600 s, absolute 3600 s
    let store = long.store().clone();
    let shortened = |idle: u64, absolute: u64| {
        let config = Config::builder()
            .idle_timeout(Duration::from_secs(idle))
            .absolute_lifetime(Duration::from_secs(absolute))
            .clock(clock.clone())
            .build()
            .unwrap();
        Sessions::new(store.clone(), config)
    };
    let (idle_cookie, _) = request(&long, None, |s| s.data_mut().n = 1).await;
    let (busy_cookie, _) = request(&long, None, |s| s.data_mut().n = 2).await;
    clock.advance(Duration::from_secs(120));
    // Still alive under the policy it was written with...
    let (_, data) = request(&long, idle_cookie.as_deref(), |_| {}).await;
    assert_eq!(data.n, 1);
    // ...but 120 s idle is past a 60 s idle timeout.
    let idle = shortened(60, 3600);
    let s = idle.load(idle_cookie.as_deref()).await.unwrap();
    assert!(s.is_new(), "idle for 120 s under a 60 s idle timeout");
    // An absolute lifetime cut to 100 s ends a session 120 s old, however active.
    let (busy_cookie, data) = request(&long, busy_cookie.as_deref(), |s| s.data_mut().n += 1).await;
    assert_eq!(data.n, 3);
    let strict = shortened(60, 100);
    let s = strict.load(busy_cookie.as_deref()).await.unwrap();
    assert!(s.is_new(), "120 s old under a 100 s absolute lifetime");
}

/// Listings through `Sessions` see sessions as loads do: a shortened idle
/// timeout leaves out sessions idle past it and clamps the others' deadlines,
/// although the store still holds them under the deadlines they were
/// written with.
#[tokio::test]
async fn listings_follow_a_shortened_timeout_as_loads_do() {
    let clock = ManualClock::new();
    let (long, _) = setup(&clock); // idle 600 s, absolute 3600 s
    let (idle_cookie, _) = request(&long, None, |s| s.set_owner(Some("ann"))).await;
    clock.advance(Duration::from_secs(120));
    let (busy_cookie, _) = request(&long, None, |s| s.set_owner(Some("ann"))).await;
    let strict = Sessions::new(
        long.store().clone(),
        Config::builder()
            .idle_timeout(Duration::from_secs(60))
            .absolute_lifetime(Duration::from_secs(3600))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let busy = SessionId::parse(busy_cookie.as_deref().unwrap()).unwrap();
    assert_eq!(
        long.by_owner("ann").await.unwrap().len(),
        2,
        "both live at 600 s"
    );
    let listed = strict.by_owner("ann").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [busy.handle()]
    );
    assert!(listed[0].idle_deadline <= clock.now() + Duration::from_secs(60));
    let found = strict
        .find_by(&|r| r.owner.as_deref() == Some("ann"))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        [busy.handle()]
    );
    assert!(strict.load(idle_cookie.as_deref()).await.unwrap().is_new());
}

/// Two clients at different addresses.
fn alice_and_mallory() -> (
    sessionkit::binding::ClientInfo,
    sessionkit::binding::ClientInfo,
) {
    let client = |ip: [u8; 4]| sessionkit::binding::ClientInfo {
        ip: Some(ip.into()),
        user_agent: None,
    };
    (client([10, 0, 0, 1]), client([10, 0, 0, 2]))
}

/// A session bound to `client` holding `n = 1`; its cookie.
async fn bound_session<S: sessionkit::Store<Data>>(
    sessions: &Sessions<Data, S>,
    client: &sessionkit::binding::ClientInfo,
) -> String {
    let s = sessions.load_for(None, client).await.unwrap();
    s.data_mut().n = 1;
    let CookieAction::Set { value: cookie, .. } = sessions.commit(&s, None).await.unwrap() else {
        panic!("a new session with data sets its cookie");
    };
    cookie
}

/// A bound session presented by another client, whose delete fails: that
/// client still gets a fresh session (not a store error), and the mismatch
/// is reported once.
#[tokio::test]
async fn a_failed_delete_of_a_mismatched_session_still_hands_out_a_fresh_one() {
    use sessionkit::resilience::fault::{Fault, FaultyStore};
    let mismatches = Arc::new(Mutex::new(0));
    let m = mismatches.clone();
    let config = Config::builder()
        .bind_to_ip(true)
        .binding_key(sessionkit::BindingKey::new([7u8; 32]))
        .destroy_on_binding_mismatch(true)
        .on_binding_mismatch(move |_| *m.lock().unwrap() += 1)
        .build()
        .unwrap();
    let store = FaultyStore::new(MemoryStore::<Data>::new());
    let switch = store.switch();
    let sessions = Sessions::new(store, config);
    let (alice, mallory) = alice_and_mallory();
    let cookie = bound_session(&sessions, &alice).await;
    // The load goes through, the delete after it fails.
    switch.set_after(&[Fault::None, Fault::Unavailable], Fault::None);
    let s = sessions.load_for(Some(&cookie), &mallory).await.unwrap();
    assert!(s.is_new(), "a bound session handed to another client");
    assert_eq!(*mismatches.lock().unwrap(), 1);
    // Still alice's (the delete failed), still refused to mallory.
    let s = sessions.load_for(Some(&cookie), &alice).await.unwrap();
    assert_eq!((s.is_new(), s.data().n), (false, 1));
}

#[tokio::test]
async fn a_load_without_a_client_neither_refuses_nor_rebinds_a_bound_session() {
    let config = Config::builder()
        .bind_to_ip(true)
        .binding_key(sessionkit::BindingKey::new([7u8; 32]))
        .destroy_on_binding_mismatch(true)
        .build()
        .unwrap();
    let sessions = Sessions::new(MemoryStore::<Data>::new(), config);
    let (alice, mallory) = alice_and_mallory();
    let cookie = bound_session(&sessions, &alice).await;
    // A background job holding the cookie: the session, unchanged binding.
    let job = sessions.load(Some(&cookie)).await.unwrap();
    assert!(!job.is_new(), "the job was handed a fresh session");
    job.data_mut().n = 2;
    assert_eq!(
        sessions.commit(&job, Some(&cookie)).await.unwrap(),
        CookieAction::None
    );
    // Still alice's, with the job's change; still refused to anyone else.
    let s = sessions.load_for(Some(&cookie), &alice).await.unwrap();
    assert_eq!((s.is_new(), s.data().n), (false, 2));
    let s = sessions.load_for(Some(&cookie), &mallory).await.unwrap();
    assert!(s.is_new(), "a bound session handed to another client");
}

#[tokio::test]
async fn regenerate_kills_the_old_id_at_once_and_keeps_the_data() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (old, _) = request(&sessions, None, |s| s.data_mut().n = 7).await;
    let (new, data) = request(&sessions, old.as_deref(), |s| s.regenerate_id()).await;
    assert_ne!(old, new);
    assert_eq!(data.n, 7);
    let (_, via_old) = request(&sessions, old.as_deref(), |_| {}).await;
    assert_eq!(via_old, Data::default(), "old id must be dead");
    let (_, via_new) = request(&sessions, new.as_deref(), |_| {}).await;
    assert_eq!(via_new.n, 7);
    assert!(log.lock().unwrap().contains(&EventKind::Regenerated));
}

#[tokio::test]
async fn destroy_deletes_server_side_and_removes_the_cookie() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 3).await;
    let s = sessions.load(cookie.as_deref()).await.unwrap();
    s.destroy();
    assert_eq!(
        sessions.commit(&s, cookie.as_deref()).await.unwrap(),
        CookieAction::Remove
    );
    let (_, replay) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(
        replay,
        Data::default(),
        "replayed cookie must not bring the session back"
    );
    assert!(log
        .lock()
        .unwrap()
        .contains(&EventKind::Deleted(DeleteReason::Destroyed)));
}

/// Two requests destroy one session (a double-clicked logout): the one
/// whose delete removed it reports it and expires the cookie; the other
/// found it gone and does neither (its cookie may by then carry a new
/// login's id).
#[tokio::test]
async fn a_destroy_that_finds_the_session_gone_neither_reports_nor_expires() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 3).await;
    let first = sessions.load(cookie.as_deref()).await.unwrap();
    let second = sessions.load(cookie.as_deref()).await.unwrap();
    first.destroy();
    second.destroy();
    assert_eq!(
        sessions.commit(&first, cookie.as_deref()).await.unwrap(),
        CookieAction::Remove
    );
    assert_eq!(
        sessions.commit(&second, cookie.as_deref()).await.unwrap(),
        CookieAction::None
    );
    let destroyed = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == EventKind::Deleted(DeleteReason::Destroyed))
        .count();
    assert_eq!(destroyed, 1);
}

/// A data guard still alive on the committing thread (on actix-web, a
/// `spawn_local` task holding `data()` across an `.await` after its handler
/// returned) fails the commit with an error: waiting for the guard would
/// hang the thread for good.
#[tokio::test]
async fn a_commit_while_this_thread_holds_a_data_guard_fails_instead_of_hanging() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let s = sessions.load(None).await.unwrap();
    s.data_mut().n = 1;
    let guard = s.data();
    let commit = tokio::time::timeout(Duration::from_secs(5), sessions.commit(&s, None));
    let out = commit.await.expect("the commit returned");
    let err = out.expect_err("the commit fails");
    assert_eq!(guard.n, 1);
    // A programming error, not an outage: no 503 telling the client to retry.
    assert!(!err.is_transient(), "{err:?}");
    use sessionkit::http::{DefaultErrorResponder, ErrorResponder};
    let answer = DefaultErrorResponder.respond(&err);
    assert_eq!((answer.status.as_u16(), answer.retry_after), (500, None));
}

#[tokio::test]
async fn flash_set_now_is_read_on_the_next_request_once() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.flash().set("notice", "saved")).await;
    // A request that does not read flash leaves it pending.
    let (cookie, _) = request(&sessions, cookie.as_deref(), |s| s.data_mut().n = 1).await;
    let s = sessions.load(cookie.as_deref()).await.unwrap();
    assert_eq!(s.flash().take("notice").as_deref(), Some("saved"));
    sessions.commit(&s, cookie.as_deref()).await.unwrap();
    let s = sessions.load(cookie.as_deref()).await.unwrap();
    assert!(s.flash().is_empty(), "flash is consumed by reading");
}

/// A client that never reads its flash (an API client not following the
/// redirect that would show it) does not grow its session without end: the
/// newest `FLASH_LIMIT` messages are kept.
#[tokio::test]
async fn unread_flash_is_kept_to_the_newest_messages() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (mut cookie, _) = request(&sessions, None, |s| s.flash().set("n", "0")).await;
    for i in 1..40 {
        let (next, _) = request(&sessions, cookie.as_deref(), |s| {
            s.flash().set("n", i.to_string())
        })
        .await;
        cookie = next;
    }
    let s = sessions.load(cookie.as_deref()).await.unwrap();
    let values: Vec<_> = s.flash().take_all().into_iter().map(|f| f.value).collect();
    let newest: Vec<_> = (40 - sessionkit::flash::FLASH_LIMIT..40)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(values, newest);
}

#[tokio::test]
async fn overlapping_requests_keep_each_others_flash_and_owner() {
    // Two requests on one session, both loaded before either saved (a page
    // and an XHR, say). The first reads the pending flash, sets a new one and
    // logs the user in; the second, saving after it, changed only the data.
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.flash().set("notice", "saved")).await;
    let cookie = cookie.as_deref();
    let first = sessions.load(cookie).await.unwrap();
    let second = sessions.load(cookie).await.unwrap();
    assert_eq!(first.flash().take("notice").as_deref(), Some("saved"));
    first.flash().set("notice", "welcome");
    first.set_owner(Some("ann"));
    sessions.commit(&first, cookie).await.unwrap();
    second.data_mut().n = 5;
    sessions.commit(&second, cookie).await.unwrap();

    let s = sessions.load(cookie).await.unwrap();
    let flash: Vec<_> = s.flash().take_all().into_iter().map(|f| f.value).collect();
    assert_eq!(
        flash,
        ["welcome"],
        "a read flash came back, or a set one was lost"
    );
    assert_eq!(s.owner().as_deref(), Some("ann"), "the login was undone");
    assert_eq!(s.data().n, 5);
    assert_eq!(sessions.by_owner("ann").await.unwrap().len(), 1);
    sessions.commit(&s, cookie).await.unwrap();

    // The same with take_all, and the later request setting flash of its own.
    let (cookie, _) = request(&sessions, None, |s| s.flash().set("a", "1")).await;
    let cookie = cookie.as_deref();
    let first = sessions.load(cookie).await.unwrap();
    let second = sessions.load(cookie).await.unwrap();
    assert_eq!(first.flash().take_all().len(), 1);
    sessions.commit(&first, cookie).await.unwrap();
    second.flash().set("b", "2");
    sessions.commit(&second, cookie).await.unwrap();
    let s = sessions.load(cookie).await.unwrap();
    let keys: Vec<_> = s.flash().take_all().into_iter().map(|f| f.key).collect();
    assert_eq!(keys, ["b"]);
}

#[tokio::test]
async fn a_regenerate_keeps_an_overlapping_requests_update() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let cookie = cookie.as_deref();
    let login = sessions.load(cookie).await.unwrap();
    let other = sessions.load(cookie).await.unwrap();
    other.data_mut().n = 7;
    sessions.commit(&other, cookie).await.unwrap();
    login.regenerate_id();
    login.data_mut().user = Some("ann".into());
    let CookieAction::Set { value, .. } = sessions.commit(&login, cookie).await.unwrap() else {
        panic!("a regenerate sets a new cookie");
    };
    let s = sessions.load(Some(&value)).await.unwrap();
    assert_eq!(
        *s.data(),
        Data {
            user: Some("ann".into()),
            n: 7
        },
        "the overlapping request's update was lost"
    );
    assert!(sessions.load(cookie).await.unwrap().is_new(), "old id dead");
}

/// A login (a new id, user "ann") of the session `cookie` names, in a
/// request running beside one that loaded it before; the new cookie.
async fn login_in_parallel(
    sessions: &Sessions<Data, MemoryStore<Data>>,
    cookie: Option<&str>,
) -> Option<String> {
    let (after_login, _) = request(sessions, cookie, |s| {
        s.regenerate_id();
        s.data_mut().user = Some("ann".into());
    })
    .await;
    assert_ne!(after_login.as_deref(), cookie);
    after_login
}

/// A browser's requests overlap: one still carrying the old cookie while a
/// login regenerates the id must not answer with an expiry of the cookie
/// (same name: it would expire the new, logged-in one if it arrived last).
#[tokio::test]
async fn a_request_overlapping_a_login_never_expires_the_new_cookie() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let cookie = cookie.as_deref();
    // Loaded before the login, saved after it: the store answers Gone.
    let slow = sessions.load(cookie).await.unwrap();
    let after_login = login_in_parallel(&sessions, cookie).await;
    slow.data_mut().n = 2;
    assert_eq!(
        sessions.commit(&slow, cookie).await.unwrap(),
        CookieAction::None,
        "a save that finds its session regenerated away leaves the cookie alone"
    );
    // Loaded after the login: the old id names no session.
    let late = sessions.load(cookie).await.unwrap();
    assert!(late.is_new(), "the old id is dead");
    assert_eq!(
        sessions.commit(&late, cookie).await.unwrap(),
        CookieAction::None,
        "a cookie naming no session is left alone"
    );
    // ... even by a request that destroys the fresh session it was given
    // (a "clear my session" route hit with the old cookie).
    let clearing = sessions.load(cookie).await.unwrap();
    assert!(clearing.is_new());
    clearing.destroy();
    assert_eq!(
        sessions.commit(&clearing, cookie).await.unwrap(),
        CookieAction::None,
        "destroying a fresh session must not expire the login's cookie"
    );
    let s = sessions.load(after_login.as_deref()).await.unwrap();
    assert_eq!(s.data().user.as_deref(), Some("ann"), "still logged in");
    // A request that ends the session itself still expires its cookie.
    let s = sessions.load(after_login.as_deref()).await.unwrap();
    s.destroy();
    assert_eq!(
        sessions.commit(&s, after_login.as_deref()).await.unwrap(),
        CookieAction::Remove
    );
}

/// A logout whose request loaded the session before a parallel login moved
/// it to a new id ends the logged-in session (it does not find the old id
/// gone and leave the login alive under the new one), reports it once and
/// expires the cookie.
#[tokio::test]
async fn a_logout_racing_a_login_ends_the_logged_in_session() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let cookie = cookie.as_deref();
    let logout = sessions.load(cookie).await.unwrap();
    let after_login = login_in_parallel(&sessions, cookie).await;
    logout.destroy();
    assert_eq!(
        sessions.commit(&logout, cookie).await.unwrap(),
        CookieAction::Remove
    );
    let s = sessions.load(after_login.as_deref()).await.unwrap();
    assert!(s.is_new(), "the login must be ended by the logout");
    assert_eq!(s.data().user, None);
    let destroyed = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == EventKind::Deleted(DeleteReason::Destroyed))
        .count();
    assert_eq!(destroyed, 1);
}

/// A `Session` kept past its request (a spawned task, a WebSocket): what it
/// changes then is not saved, and that is said once, not silently dropped.
#[tokio::test]
async fn a_change_after_the_response_is_counted_and_not_saved() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let s = sessions.load(cookie.as_deref()).await.unwrap();
    assert!(!s.is_committed());
    s.data_mut().n = 2;
    sessions.commit(&s, cookie.as_deref()).await.unwrap();
    assert!(s.is_committed());
    let recorder = DebuggingRecorder::new();
    let snapshot = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        s.data_mut().n = 99;
        s.destroy();
        s.set_owner(Some("late"));
    });
    let late: Vec<_> = snapshot
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "sessionkit_late_changes_total")
        .map(|(.., v)| v)
        .collect();
    assert_eq!(late, [DebugValue::Counter(1)], "one report per session");
    let again = sessions.load(cookie.as_deref()).await.unwrap();
    assert!(!again.is_new(), "the late destroy did nothing");
    assert_eq!(again.data().n, 2, "the late change was not saved");
    assert_eq!(again.owner(), None);
}

#[tokio::test]
async fn revoke_and_bulk_delete_fire_on_deleted_for_each_session() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let mut alice = Vec::new();
    for _ in 0..3 {
        let (c, _) = request(&sessions, None, |s| s.set_owner(Some("alice"))).await;
        alice.push(c);
    }
    request(&sessions, None, |s| s.set_owner(Some("bob"))).await;
    assert_eq!(sessions.by_owner("alice").await.unwrap().len(), 3);
    assert_eq!(sessions.revoke_owner("alice").await.unwrap(), 3);
    for c in &alice {
        let s = sessions.load(c.as_deref()).await.unwrap();
        assert!(s.is_new(), "revoked session must not load");
    }
    assert_eq!(
        sessions
            .bulk_delete(&|r| r.owner.as_deref() == Some("bob"))
            .await
            .unwrap(),
        1
    );
    let log = log.lock().unwrap();
    let revoked = log
        .iter()
        .filter(|k| **k == EventKind::Deleted(DeleteReason::OwnerRevoked))
        .count();
    let bulk = log
        .iter()
        .filter(|k| **k == EventKind::Deleted(DeleteReason::BulkDelete))
        .count();
    assert_eq!((revoked, bulk), (3, 1));
}

#[tokio::test]
async fn a_full_memory_store_evicts_and_reports_it() {
    let clock = ManualClock::new();
    let (sessions, log) = setup_bounded(&clock, 64); // one per shard
    for _ in 0..500 {
        request(&sessions, None, |s| s.data_mut().n = 1).await;
    }
    assert!(
        sessions.store().len() <= 64,
        "bound exceeded: {}",
        sessions.store().len()
    );
    let evicted = log
        .lock()
        .unwrap()
        .iter()
        .filter(|k| **k == EventKind::Deleted(DeleteReason::Evicted))
        .count();
    assert!(evicted >= 500 - 64);
}

/// The owner of each `on_deleted` event, in order.
type Owners = Arc<Mutex<Vec<Option<String>>>>;

/// A memory store's sessions, and the owner of each `on_deleted` event.
fn owners_of_deletions() -> (Sessions<Data, MemoryStore<Data>>, Owners) {
    let owners: Owners = Arc::default();
    let o = owners.clone();
    let config = Config::builder()
        .on_deleted(move |e| o.lock().unwrap().push(e.owner.clone()))
        .build()
        .unwrap();
    (Sessions::new(MemoryStore::<Data>::new(), config), owners)
}

#[tokio::test]
async fn a_logout_that_clears_the_owner_first_is_reported_under_that_owner() {
    let (sessions, owners) = owners_of_deletions();
    let (cookie, _) = request(&sessions, None, |s| s.set_owner(Some("alice"))).await;
    request(&sessions, cookie.as_deref(), |s| {
        s.set_owner(None::<String>);
        s.set_owner(Some("mallory"));
        s.destroy();
    })
    .await;
    assert_eq!(*owners.lock().unwrap(), [Some("alice".to_string())]);
}

/// A logout racing a login is reported under the login's owner: the
/// session it ended is the logged-in one, whatever the logout loaded.
#[tokio::test]
async fn a_logout_that_ended_a_racing_login_is_reported_under_its_owner() {
    let (sessions, owners) = owners_of_deletions();
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let cookie = cookie.as_deref();
    let logout = sessions.load(cookie).await.unwrap();
    request(&sessions, cookie, |s| {
        s.regenerate_id();
        s.set_owner(Some("ann"));
    })
    .await;
    logout.destroy();
    sessions.commit(&logout, cookie).await.unwrap();
    assert_eq!(*owners.lock().unwrap(), [Some("ann".to_string())]);
}

#[tokio::test]
async fn an_admin_delete_by_id_is_reported_under_the_sessions_owner() {
    let (sessions, owners) = owners_of_deletions();
    let (cookie, _) = request(&sessions, None, |s| s.set_owner(Some("alice"))).await;
    let id = sessions.load(cookie.as_deref()).await.unwrap().id();
    assert!(sessions.delete(&id).await.unwrap());
    assert!(!sessions.delete(&id).await.unwrap(), "already gone");
    assert_eq!(*owners.lock().unwrap(), [Some("alice".to_string())]);
}

/// A memory store on `clock`, swept every 20 ms, behind `config`.
fn swept_every_20ms(clock: &ManualClock, config: Config) -> Sessions<Data, MemoryStore<Data>> {
    let store = MemoryStore::<Data>::builder()
        .clock(clock.clone())
        .sweep_interval(Duration::from_millis(20))
        .build();
    Sessions::new(store, config)
}

/// Whether the store is empty within two seconds (the sweeper's work).
async fn emptied(sessions: &Sessions<Data, MemoryStore<Data>>) -> bool {
    for _ in 0..100 {
        if sessions.store().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn the_sweeper_removes_expired_sessions_in_the_background() {
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let l = log.clone();
    let config = Config::builder()
        .clock(clock.clone())
        .on_deleted(move |e| l.lock().unwrap().push(e.kind))
        .build()
        .unwrap();
    let sessions = swept_every_20ms(&clock, config);
    request(&sessions, None, |s| s.data_mut().n = 1).await;
    assert_eq!(sessions.store().len(), 1);
    clock.advance(Duration::from_secs(24 * 3600));
    assert!(emptied(&sessions).await, "sweeper did not run");
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[EventKind::Deleted(DeleteReason::Evicted)]
    );
}

/// A callback that panics (a faulty audit hook) is caught: the sweeper
/// keeps running (a panic ended its task for good), and a revoke that
/// meets an expired session on its way (removed inline, reported through
/// the same callback) finishes instead of leaving the rest of the owner's
/// sessions alive and out of the owner index.
#[tokio::test]
async fn a_panicking_callback_stops_neither_the_sweeper_nor_a_revoke() {
    let clock = ManualClock::new();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let config = Config::builder()
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(600))
        .on_deleted(move |_| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            panic!("a faulty audit hook");
        })
        .build()
        .unwrap();
    let sessions = swept_every_20ms(&clock, config);
    for _ in 0..2 {
        request(&sessions, None, |s| s.data_mut().n = 1).await;
        clock.advance(Duration::from_secs(601));
        assert!(emptied(&sessions).await, "the sweeper stopped");
    }
    // One of ann's sessions expires unswept, then twenty live ones.
    let owned = |n: u32| {
        let sessions = &sessions;
        async move {
            let s = sessions.load(None).await.unwrap();
            s.set_owner(Some("ann"));
            s.data_mut().n = n;
            sessions.commit(&s, None).await.unwrap();
        }
    };
    owned(0).await;
    clock.advance(Duration::from_secs(601));
    for n in 1..=20 {
        owned(n).await;
    }
    let revoked = sessions.revoke_owner("ann").await.unwrap();
    assert_eq!(revoked, 20);
    assert!(
        sessions.store().is_empty(),
        "every session of ann's is gone"
    );
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 22);
}

#[tokio::test]
async fn a_new_session_that_is_never_changed_is_never_stored() {
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| {
        let _ = s.data().n;
    })
    .await;
    assert!(cookie.is_none());
    assert!(sessions.store().is_empty());
}

/// What a [`Hooked`] store does besides its work.
#[derive(Clone)]
enum Hook {
    /// Waits until two deletes are in flight, so two requests that loaded
    /// one expired session both reach their delete.
    PairUp(Arc<tokio::sync::Barrier>),
    /// Before the first delete only, regenerates the session (a login racing
    /// an admin's purge): the listed id is gone, the session lives on under
    /// a new id with the same data.
    RegenerateFirst(Arc<std::sync::atomic::AtomicBool>),
    /// Fails the next save once, when armed (a store hiccup).
    FailNextSave(Arc<std::sync::atomic::AtomicBool>),
    /// Deletes the session just before the next save, when armed (a logout
    /// landing between a load and its write).
    DeleteBeforeNextSave(Arc<std::sync::atomic::AtomicBool>),
}

/// A memory store with a [`Hook`].
#[derive(Clone)]
struct Hooked {
    inner: MemoryStore<Data>,
    hook: Hook,
}

#[async_trait::async_trait]
impl sessionkit::Store<Data> for Hooked {
    async fn load(
        &self,
        cookie_value: &str,
    ) -> Result<Option<sessionkit::Record<Data>>, sessionkit::StoreError> {
        self.inner.load(cookie_value).await
    }

    async fn save(
        &self,
        save: sessionkit::store::Save<'_, Data>,
    ) -> Result<sessionkit::store::SaveOutcome, sessionkit::StoreError> {
        match &self.hook {
            Hook::FailNextSave(armed) if armed.swap(false, std::sync::atomic::Ordering::SeqCst) => {
                return Err(sessionkit::StoreError::Unavailable("armed to fail".into()));
            }
            Hook::DeleteBeforeNextSave(armed)
                if armed.swap(false, std::sync::atomic::Ordering::SeqCst) =>
            {
                self.inner.delete(&save.record.id).await?;
            }
            _ => {}
        }
        self.inner.save(save).await
    }

    async fn delete(&self, id: &sessionkit::SessionId) -> Result<bool, sessionkit::StoreError> {
        use std::sync::atomic::Ordering;
        match &self.hook {
            Hook::PairUp(gate) => {
                gate.wait().await;
            }
            Hook::RegenerateFirst(raced) if !raced.swap(true, Ordering::SeqCst) => {
                let old = self.inner.load(&id.encode()).await?.expect("listed");
                let mut moved = old.clone();
                moved.id = sessionkit::SessionId::generate();
                let saved = self
                    .inner
                    .save(sessionkit::store::Save::regenerate(
                        &moved,
                        old.id,
                        Some(&old.data),
                    ))
                    .await?;
                assert!(saved.is_saved());
            }
            Hook::RegenerateFirst(_) | Hook::FailNextSave(_) | Hook::DeleteBeforeNextSave(_) => {}
        }
        self.inner.delete(id).await
    }

    fn holds_sessions(&self) -> bool {
        true
    }
}

type Listed = sessionkit::Record<Data, sessionkit::SessionHandle>;

#[async_trait::async_trait]
impl sessionkit::QueryStore<Data> for Hooked {
    fn iter(&self) -> futures_util::stream::BoxStream<'_, Result<Listed, sessionkit::StoreError>> {
        self.inner.iter()
    }

    async fn by_owner(&self, owner: &str) -> Result<Vec<Listed>, sessionkit::StoreError> {
        self.inner.by_owner(owner).await
    }

    async fn delete_handle(
        &self,
        handle: &sessionkit::SessionHandle,
    ) -> Result<bool, sessionkit::StoreError> {
        self.inner.delete_handle(handle).await
    }

    async fn delete_owner(
        &self,
        owner: &str,
    ) -> Result<Vec<sessionkit::store::Removed>, sessionkit::StoreError> {
        self.inner.delete_owner(owner).await
    }
}

/// Two requests (a page's parallel XHRs) carry one idle-expired cookie:
/// both see it expired, one deletion is reported, and only the request that
/// removed it expires the cookie.
#[tokio::test]
async fn parallel_loads_of_an_expired_session_report_one_deletion() {
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let push = |log: &Log| {
        let log = log.clone();
        move |e: &sessionkit::SessionEvent| log.lock().unwrap().push(e.kind)
    };
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone())
        .on_deleted(push(&log))
        .on_expired(push(&log))
        .build()
        .unwrap();
    let store = Hooked {
        inner: MemoryStore::<Data>::builder().clock(clock.clone()).build(),
        hook: Hook::PairUp(Arc::new(tokio::sync::Barrier::new(2))),
    };
    let sessions = Sessions::new(store, config);
    let s = sessions.load(None).await.unwrap();
    s.data_mut().n = 1;
    let CookieAction::Set { value, .. } = sessions.commit(&s, None).await.unwrap() else {
        panic!("a new session sets its cookie")
    };
    clock.advance(Duration::from_secs(601));
    let (a, b) = tokio::join!(sessions.load(Some(&value)), sessions.load(Some(&value)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.data().n + b.data().n, 0, "both got a fresh session");
    let actions = [
        sessions.commit(&a, Some(&value)).await.unwrap(),
        sessions.commit(&b, Some(&value)).await.unwrap(),
    ];
    let removes = actions
        .iter()
        .filter(|a| matches!(a, CookieAction::Remove))
        .count();
    assert_eq!(removes, 1, "{actions:?}");
    let log = log.lock().unwrap();
    let count = |k: EventKind| log.iter().filter(|e| **e == k).count();
    assert_eq!(count(EventKind::Expired(ExpiryKind::Idle)), 2, "{log:?}");
    assert_eq!(
        count(EventKind::Deleted(DeleteReason::Expired(ExpiryKind::Idle))),
        1,
        "{log:?}"
    );
}

/// A purge of every matching session does not miss one that a login
/// regenerated between the listing and its delete.
#[tokio::test]
async fn a_bulk_delete_catches_a_session_regenerated_under_it() {
    let store = Hooked {
        inner: MemoryStore::new(),
        hook: Hook::RegenerateFirst(Arc::default()),
    };
    let sessions = Sessions::new(store, Config::default());
    for user in ["acme-1", "acme-2", "other"] {
        let s = sessions.load(None).await.unwrap();
        s.data_mut().user = Some(user.into());
        sessions.commit(&s, None).await.unwrap();
    }
    let acme = |r: &Listed| {
        r.data
            .user
            .as_deref()
            .is_some_and(|u| u.starts_with("acme"))
    };
    assert_eq!(sessions.bulk_delete(&acme).await.unwrap(), 2);
    assert!(sessions.find_by(&acme).await.unwrap().is_empty());
    assert_eq!(sessions.count().await.unwrap(), 1, "the other one stays");
}

/// A request that runs past its session's idle deadline keeps its changes:
/// the load found the session a second from that deadline and recorded the
/// activity before the handler ran (the store would have refused the save).
#[tokio::test]
async fn a_request_running_across_the_idle_deadline_keeps_its_changes() {
    let clock = ManualClock::new();
    let (sessions, log) = setup(&clock);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    clock.advance(Duration::from_secs(599));
    let slow = sessions.load(cookie.as_deref()).await.unwrap();
    assert!(!slow.is_new(), "alive when loaded");
    // The handler takes 30 s, within the 60 s allowance.
    clock.advance(Duration::from_secs(30));
    slow.data_mut().n = 2;
    assert_eq!(
        sessions.commit(&slow, cookie.as_deref()).await.unwrap(),
        CookieAction::None,
        "saved under the same id"
    );
    let (_, data) = request(&sessions, cookie.as_deref(), |_| {}).await;
    assert_eq!(data.n, 2, "the slow request's change was kept");
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, EventKind::Expired(_))),
        "never expired"
    );
}

/// Only a load close to the deadline writes ahead of the handler: with 100 s
/// left (more than the 60 s allowance) the store's copy is untouched until
/// the commit; with 30 s left it is moved by the load itself.
#[tokio::test]
async fn only_a_load_within_the_allowance_records_activity_ahead() {
    use sessionkit::Store;
    let clock = ManualClock::new();
    let store = MemoryStore::<Data>::builder().clock(clock.clone()).build();
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone())
        .build()
        .unwrap();
    let sessions = Sessions::new(store.clone(), config);
    let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
    let cookie = cookie.unwrap();
    let deadline = |store: MemoryStore<Data>, cookie: String| async move {
        store.load(&cookie).await.unwrap().unwrap().idle_deadline
    };
    let created = deadline(store.clone(), cookie.clone()).await;
    clock.advance(Duration::from_secs(500));
    let s = sessions.load(Some(&cookie)).await.unwrap();
    assert_eq!(deadline(store.clone(), cookie.clone()).await, created);
    sessions.commit(&s, Some(&cookie)).await.unwrap();
    let touched = deadline(store.clone(), cookie.clone()).await;
    assert!(touched > created, "the commit recorded the read");
    clock.advance(Duration::from_secs(570));
    let s = sessions.load(Some(&cookie)).await.unwrap();
    let ahead = deadline(store.clone(), cookie.clone()).await;
    assert!(ahead > touched, "the load recorded it");
    // Nothing left for the commit to write: the deadline stays as the load
    // left it, even with the clock a second on.
    clock.advance(Duration::from_secs(1));
    sessions.commit(&s, Some(&cookie)).await.unwrap();
    assert_eq!(deadline(store.clone(), cookie.clone()).await, ahead);
    assert_eq!(s.data().n, 1);
}

/// The write ahead of the handler fails (a store hiccup): the request
/// still runs, and its commit writes the activity instead, even for a
/// read-only request.
#[tokio::test]
async fn a_failed_write_ahead_is_made_good_by_the_commit() {
    use sessionkit::Store;
    let clock = ManualClock::new();
    let inner = MemoryStore::<Data>::builder().clock(clock.clone()).build();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Hooked {
        inner: inner.clone(),
        hook: Hook::FailNextSave(armed.clone()),
    };
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone())
        .build()
        .unwrap();
    let sessions = Sessions::new(store, config);
    let first = sessions.load(None).await.unwrap();
    first.data_mut().n = 1;
    let cookie = sessions
        .commit(&first, None)
        .await
        .unwrap()
        .value()
        .unwrap()
        .to_owned();
    let before = inner.load(&cookie).await.unwrap().unwrap().idle_deadline;
    clock.advance(Duration::from_secs(590));
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = sessions.load(Some(&cookie)).await.unwrap();
    assert!(
        !s.is_new(),
        "the failed write ahead did not lose the session"
    );
    assert_eq!(
        inner.load(&cookie).await.unwrap().unwrap().idle_deadline,
        before
    );
    sessions.commit(&s, Some(&cookie)).await.unwrap();
    let after = inner.load(&cookie).await.unwrap().unwrap().idle_deadline;
    assert!(after > before, "the commit wrote the activity");
}

/// A session deleted between its load and the write ahead of the handler
/// (a logout on another request) is handed out fresh, and was never
/// reported as loaded.
#[tokio::test]
async fn a_session_gone_before_its_write_ahead_is_fresh_and_not_reported_loaded() {
    let clock = ManualClock::new();
    let inner = MemoryStore::<Data>::builder().clock(clock.clone()).build();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Hooked {
        inner: inner.clone(),
        hook: Hook::DeleteBeforeNextSave(armed.clone()),
    };
    let log: Log = Arc::default();
    let l = log.clone();
    let config = Config::builder()
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.clone())
        .on_loaded(move |e| l.lock().unwrap().push(e.kind))
        .build()
        .unwrap();
    let sessions = Sessions::new(store, config);
    let create = |n: u32| {
        let sessions = &sessions;
        async move {
            let s = sessions.load(None).await.unwrap();
            s.data_mut().n = n;
            let action = sessions.commit(&s, None).await.unwrap();
            action.value().unwrap().to_owned()
        }
    };
    let cookie = create(1).await;
    clock.advance(Duration::from_secs(590));
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = sessions.load(Some(&cookie)).await.unwrap();
    assert!(s.is_new(), "deleted before its write ahead");
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    // Untouched, the next one is loaded and reported.
    let cookie = create(2).await;
    clock.advance(Duration::from_secs(590));
    assert_eq!(sessions.load(Some(&cookie)).await.unwrap().data().n, 2);
    assert_eq!(*log.lock().unwrap(), [EventKind::Loaded]);
}

/// Beyond the allowance the deadline wins: a request that outlives even the
/// activity it recorded on load has its save refused, and that is counted,
/// not silent.
#[test]
fn a_save_refused_because_the_session_expired_during_the_request_is_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::new();
    let (sessions, _) = setup(&clock);
    let recorder = DebuggingRecorder::new();
    let snapshot = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let (cookie, _) = request(&sessions, None, |s| s.data_mut().n = 1).await;
            clock.advance(Duration::from_secs(599));
            let slow = sessions.load(cookie.as_deref()).await.unwrap();
            assert!(!slow.is_new(), "alive when loaded");
            // Touched on load: 600 s from here, not 1 s.
            clock.advance(Duration::from_secs(601));
            slow.data_mut().n = 2;
            assert_eq!(
                sessions.commit(&slow, cookie.as_deref()).await.unwrap(),
                CookieAction::None
            );
        })
    });
    let dropped: Vec<_> = snapshot
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "sessionkit_saves_dropped_total")
        .map(|(.., v)| v)
        .collect();
    assert_eq!(dropped, [DebugValue::Counter(1)]);
}
