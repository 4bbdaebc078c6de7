//! Every attack, written once. Each takes a running [`App`] and asserts what
//! the attacker gets: never someone else's session, never a 5xx, never an
//! unbounded cost. The defence each one pins is named in its docs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use super::{
    peak_rss_bytes, random_id, rss_bytes, within, App, SetCookie, ABSOLUTE, HOSTILE_REQUEST_BOUND,
    HOSTILE_RSS_BOUND, IDLE,
};

const ANON: &str = "anon:0";

/// Fixation: the attacker plants a session (one they obtained, or a
/// well-formed id they made up) in the victim's browser; the victim logs in.
/// Defence: `regenerate_id` at login, and the store killing the old id.
pub async fn fixation_a_planted_session_does_not_become_the_victims_login(app: &App) {
    let planted = app.anonymous_session().await;
    let victim = app.login("alice", Some(&planted)).await;
    assert_ne!(victim, planted, "login must issue a new cookie value");
    assert_eq!(app.me(&victim).await, "alice:1");
    let attacker = app.me(&planted).await;
    assert!(
        !attacker.contains("alice"),
        "attacker rides the login: {attacker}"
    );
    if app.server_side {
        assert_eq!(attacker, ANON, "the planted id must be dead after login");
    }
    // An id the attacker made up is never adopted.
    let made_up = random_id();
    let victim = app.login("alice", Some(&made_up)).await;
    assert_ne!(victim, made_up);
    assert_eq!(app.me(&made_up).await, ANON);
}

/// Fixation on re-login: logging in again as the same user also changes the
/// id, and the previous one dies (server-side stores; a sealed cookie cannot
/// be killed, see SECURITY.md).
pub async fn fixation_the_previous_id_dies_when_the_same_user_logs_in_again(app: &App) {
    let first = app.login("alice", None).await;
    let second = app.login("alice", Some(&first)).await;
    assert_ne!(first, second);
    assert_eq!(app.me(&second).await, "alice:0");
    assert_eq!(
        app.me(&first).await,
        ANON,
        "the id before re-login is still alive"
    );
}

/// Replay after logout. Defence: `destroy` deletes the record server-side.
pub async fn replay_after_logout_gives_a_fresh_session(app: &App) {
    let stolen = app.login("alice", None).await;
    let out = app.call("POST", "/logout", Some(&stolen)).await;
    assert_eq!(out.cookie, SetCookie::Removed);
    let replay = app.call("GET", "/me", Some(&stolen)).await;
    assert_eq!(replay.body, ANON, "a logged-out cookie was served");
    // Left alone: by now the browser's cookie of that name may be a new
    // login's, which an expiry would log out (see `crate::sessions`).
    assert_eq!(
        replay.cookie,
        SetCookie::Unchanged,
        "a cookie naming no session is not touched"
    );
}

/// Replay after "log out everywhere". Defence: the owner index and revoke.
pub async fn replay_after_owner_revoke_gives_a_fresh_session(app: &App) {
    let phone = app.login("alice", None).await;
    let laptop = app.login("alice", None).await;
    let bob = app.login("bob", None).await;
    let revoked = app.call("POST", "/admin/revoke/alice", None).await;
    assert_eq!(revoked.body, "2");
    assert_eq!(app.me(&phone).await, ANON);
    assert_eq!(app.me(&laptop).await, ANON);
    assert_eq!(
        app.me(&bob).await,
        "bob:0",
        "another user's session was revoked"
    );
}

/// Replay after the idle timeout. Defence: the core checks the record's idle
/// deadline on every load, whatever the store still holds.
pub async fn replay_after_idle_expiry_gives_a_fresh_session(app: &App) {
    let stolen = app.login("alice", None).await;
    assert_eq!(app.me(&stolen).await, "alice:0");
    app.clock.advance(IDLE + Duration::from_secs(1));
    let replay = app.call("GET", "/me", Some(&stolen)).await;
    assert_eq!(replay.body, ANON, "an idle-expired cookie was served");
    // The request whose delete removed the session expires its cookie; a
    // cookie store cannot delete, so it leaves the cookie to its `Max-Age`
    // (a page's other requests may race a new login, see `sessions`).
    let expected = if app.server_side {
        SetCookie::Removed
    } else {
        SetCookie::Unchanged
    };
    assert_eq!(replay.cookie, expected);
    assert!(app.events.expired.load(Ordering::SeqCst) >= 1);
    // Presented again: already deleted, so left alone on every store.
    let again = app.call("GET", "/me", Some(&stolen)).await;
    assert_eq!(
        (again.body.as_str(), again.cookie),
        (ANON, SetCookie::Unchanged)
    );
}

/// Replay after the absolute lifetime, of a session kept busy all along.
/// Defence: the absolute deadline in the record, which activity never moves.
pub async fn replay_after_absolute_expiry_gives_a_fresh_session(app: &App) {
    let mut cookie = app.login("alice", None).await;
    let step = Duration::from_secs(20 * 60);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < ABSOLUTE {
        app.clock.advance(step);
        elapsed += step;
        let r = app.call("GET", "/me", Some(&cookie)).await;
        assert_eq!(r.body, "alice:0", "kept busy, alive at {elapsed:?}");
        if let SetCookie::Set(v) = r.cookie {
            cookie = v; // the cookie store re-seals on touch
        }
    }
    app.clock
        .advance(ABSOLUTE - elapsed + Duration::from_secs(1));
    let replay = app.call("GET", "/me", Some(&cookie)).await;
    assert_eq!(
        replay.body, ANON,
        "a session past its absolute lifetime was served"
    );
}

/// Replay from another browser, with sessions bound to the User-Agent (the
/// app of this attack is built with [`super::Kit::bound_to_user_agent`]).
/// Defence: the keyed binding fingerprint kept in the record, which every
/// store must carry through its encoding.
pub async fn binding_a_cookie_replayed_from_another_browser_gives_a_fresh_session(app: &App) {
    let login = app.call_as("Firefox", "POST", "/login/alice", None).await;
    let stolen = login.new_cookie();
    let theft = app.call_as("curl/8", "GET", "/me", Some(&stolen)).await;
    assert_eq!((theft.status, theft.body.as_str()), (200, ANON));
    let owner = app.call_as("Firefox", "GET", "/me", Some(&stolen)).await;
    assert_eq!(
        owner.body, "alice:0",
        "the rightful browser keeps its session"
    );
}

/// Changes at `i` the character of `value` to another URL-safe one.
fn flip(value: &str, i: usize, to: u8) -> String {
    let mut b = value.as_bytes().to_vec();
    b[i] = to;
    String::from_utf8(b).unwrap()
}

/// Tampering: every single-character change, truncation and extension of a
/// valid cookie gives a fresh session (and no 5xx). Defences: canonical id
/// parsing (server-side stores), authenticated encryption (cookie store).
pub async fn tampering_any_changed_character_gives_a_fresh_session(app: &App) {
    let valid = app.login("alice", None).await;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut forged = Vec::new();
    for i in 0..valid.len() {
        let c = valid.as_bytes()[i];
        let to = alphabet[(alphabet.iter().position(|&a| a == c).unwrap_or(0) + 1) % 64];
        forged.push(flip(&valid, i, to));
    }
    // Every other value of the last character (its low bits are padding for ids).
    let last = valid.len() - 1;
    for &to in alphabet {
        if to != valid.as_bytes()[last] {
            forged.push(flip(&valid, last, to));
        }
    }
    forged.push(valid[..valid.len() - 1].to_owned());
    forged.push(format!("{valid}A"));
    forged.push(format!("{valid}="));
    for f in &forged {
        let r = app.call("GET", "/me", Some(f)).await;
        assert_eq!(r.status, 200, "tampered cookie {f:?} gave {r:?}");
        assert_eq!(r.body, ANON, "tampered cookie {f:?} was accepted");
    }
    assert_eq!(app.me(&valid).await, "alice:0");
    println!("{} tampered cookies rejected", forged.len());
}

/// Cookie values aimed at the store's key space or at the HTTP stack.
pub fn injection_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "*",
        "sessionkit:*",
        "sessionkit:owner:*",
        "../../../../etc/passwd",
        "..%2f..%2f",
        "%0d%0aSET%20x%201",
        "%00",
        "\\r\\nFLUSHALL",
        "id",
        "{}",
        "[1,2]",
        "' OR 1=1 --",
        "",
        "\"quoted\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("A".repeat(10 * 1024));
    v.push(format!("{}*", "A".repeat(42)));
    v
}

/// Key injection: hostile cookie values give a fresh session and no 5xx.
/// CR, LF and NUL cannot be put in a header by a well-behaved client, so
/// those go over a raw socket: the HTTP stack refuses them (400) or the
/// layer sees them as no session. Defence: cookie values are parsed as a
/// session id (or opened as a sealed value) before any store work.
pub async fn key_injection_gives_a_fresh_session(app: &App) {
    for value in injection_values() {
        let r = app.call("GET", "/me", Some(&value)).await;
        assert_eq!(r.status, 200, "{value:?}: {r:?}");
        assert_eq!(r.body, ANON, "{value:?}");
    }
    for raw in [
        &b"__Host-id=a\rb"[..],
        b"__Host-id=a\nFLUSHALL",
        b"__Host-id=a\0b",
        b"__Host-id=\r\n\r\nGET / HTTP/1.1",
    ] {
        let mut req = b"GET /me HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncookie: ".to_vec();
        req.extend_from_slice(raw);
        req.extend_from_slice(b"\r\n\r\n");
        let status = app.raw_request(&req).await;
        assert!(
            matches!(status, None | Some(400) | Some(200)),
            "{raw:?}: status {status:?}"
        );
    }
    // Still serving.
    let r = app.call("GET", "/me", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, ANON));
}

/// Cookie names are matched exactly, and two session cookies in one request
/// count as none and fire `on_ambiguous_cookie`. Defence: `find_cookie_in`.
pub async fn ambiguous_or_lookalike_cookies_give_no_session(app: &App) {
    let victim = app.login("alice", None).await;
    let planted = app.anonymous_session().await;
    for header in [
        format!("__HOST-ID={victim}"),
        format!("x__Host-id={victim}"),
        format!("__Host-id_={victim}"),
        format!("__Host-i d={victim}"),
        // The name without its prefix (another app's, or this one's before
        // the prefix became the default).
        format!("id={victim}"),
        // A second cookie of the name, planted by something that could
        // (browsers refuse a `__Host-` cookie with a Domain or a Path).
        format!("__Host-id={planted}; __Host-id={victim}"),
        format!("__Host-id={victim}; other=1; __Host-id={planted}"),
    ] {
        let r = app.raw_cookie("GET", "/me", Some(&header)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, ANON, "{header} was served a session");
    }
    assert_eq!(app.events.ambiguous.load(Ordering::SeqCst), 2);
    let exact = app
        .raw_cookie(
            "GET",
            "/me",
            Some(&format!(
                "x__Host-id=1; __Host-id={victim}; __Host-idx=2; id=3"
            )),
        )
        .await;
    assert_eq!(exact.body, "alice:0");
}

/// Enumeration: `n` random well-formed ids over HTTP, after real sessions
/// exist: none finds a session. The caller checks the invalid-lookup counter.
pub async fn enumeration_finds_nothing(app: &App, n: usize) {
    for i in 0..50 {
        app.login(&format!("user{i}"), None).await;
    }
    let hits = stream::iter(0..n)
        .map(|_| async {
            let r = app.call("GET", "/me", Some(&random_id())).await;
            assert_eq!(r.status, 200);
            usize::from(r.body != ANON)
        })
        .buffer_unordered(16)
        .fold(0, |a, b| async move { a + b })
        .await;
    assert_eq!(hits, 0, "{n} random ids found {hits} sessions");
}

/// Hostile input: huge and numerous cookies are answered within
/// [`HOSTILE_REQUEST_BOUND`] each, with less than [`HOSTILE_RSS_BOUND`] of
/// memory growth, and the server keeps serving.
pub async fn hostile_headers_stay_within_time_and_memory_bounds(app: &App) {
    let victim = app.login("alice", None).await;
    let rss_before = rss_bytes();
    // 1 MiB Cookie header: over hyper's header buffer, refused before the layer.
    let mut req =
        b"GET /me HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncookie: __Host-id=".to_vec();
    req.extend(std::iter::repeat_n(b'A', 1 << 20));
    req.extend_from_slice(b"\r\n\r\n");
    let status = within(
        "1 MiB Cookie header",
        HOSTILE_REQUEST_BOUND,
        app.raw_request(&req),
    )
    .await;
    println!("1 MiB Cookie header answered with {status:?} (None: connection closed)");
    assert!(matches!(status, None | Some(431) | Some(400)), "{status:?}");
    // 256 KiB session cookie: under hyper's limit, so it reaches the layer.
    let big = "A".repeat(256 * 1024);
    let r = within(
        "256 KiB session cookie",
        HOSTILE_REQUEST_BOUND,
        app.call("GET", "/me", Some(&big)),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, ANON));
    // 1000 cookies, the session among them: found, by exact name.
    let many: Vec<String> = (0..1000).map(|i| format!("c{i}=v{i}")).collect();
    let mut with_session = many.clone();
    with_session.insert(500, format!("__Host-id={victim}"));
    let r = within(
        "1000 cookies",
        HOSTILE_REQUEST_BOUND,
        app.raw_cookie("GET", "/me", Some(&with_session.join("; "))),
    )
    .await;
    assert_eq!(r.body, "alice:0");
    // 1000 cookies all named `__Host-id`: ambiguous, no session.
    let ids: Vec<String> = (0..1000).map(|_| format!("__Host-id={victim}")).collect();
    let r = within(
        "1000 session cookies",
        HOSTILE_REQUEST_BOUND,
        app.raw_cookie("GET", "/me", Some(&ids.join("; "))),
    )
    .await;
    assert_eq!(r.body, ANON);
    let grown = rss_bytes().saturating_sub(rss_before);
    println!(
        "RSS growth across hostile headers: {} KiB (bound {} MiB), peak RSS {} MiB",
        grown / 1024,
        HOSTILE_RSS_BOUND >> 20,
        peak_rss_bytes() >> 20
    );
    assert!(grown < HOSTILE_RSS_BOUND);
    assert_eq!(app.me(&victim).await, "alice:0");
}

/// Race: a request that loaded the session before a logout saves after it.
/// Defence: updates never recreate a deleted record (`SaveOutcome::Gone`).
pub async fn race_a_slow_save_after_logout_leaves_the_session_deleted(app: &App) {
    let cookie = app.login("alice", None).await;
    let slow = {
        let url = format!("{}/slow-bump", app.base);
        let header = format!("__Host-id={cookie}");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("cookie", header)
                .send()
                .await
                .unwrap()
        })
    };
    app.wait_for_slow_request().await;
    let out = app.call("POST", "/logout", Some(&cookie)).await;
    assert_eq!(out.cookie, SetCookie::Removed);
    app.release_slow_request();
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    let set = slow
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        set.as_deref().is_none_or(|v| v.contains("Max-Age=0")),
        "the slow request re-issued a cookie: {set:?}"
    );
    assert_eq!(
        app.me(&cookie).await,
        ANON,
        "the logged-out session came back"
    );
}

/// Race: many logins of one user at once, each from its own planted
/// session, give independent sessions, and every planted id is harmless.
/// Then many logins at once from one planted session: never a 5xx, and the
/// planted id is harmless afterwards.
pub async fn race_parallel_logins_give_independent_fixation_safe_sessions(app: &App) {
    let n = 16;
    let planted: Vec<String> =
        futures_util::future::join_all((0..n).map(|_| app.anonymous_session())).await;
    let logged: Vec<String> =
        futures_util::future::join_all(planted.iter().map(|p| app.login("alice", Some(p)))).await;
    let distinct: HashSet<_> = logged.iter().collect();
    assert_eq!(distinct.len(), n, "two logins share a session");
    for (p, l) in planted.iter().zip(&logged) {
        assert!(!planted.contains(l));
        let attacker = app.me(p).await;
        assert!(!attacker.contains("alice"), "{attacker}");
        if app.server_side {
            assert_eq!(attacker, ANON);
        }
        assert_eq!(app.me(l).await, "alice:1");
    }
    // Independent: bumping one leaves the others alone.
    let r = app.call("POST", "/bump", Some(&logged[0])).await;
    assert_eq!(r.body, "2");
    let first = match r.cookie {
        SetCookie::Set(v) => v,
        _ => logged[0].clone(),
    };
    assert_eq!(app.me(&first).await, "alice:2");
    for l in &logged[1..] {
        assert_eq!(app.me(l).await, "alice:1");
    }
    // Same planted session, many logins at once.
    let one = app.anonymous_session().await;
    let replies = futures_util::future::join_all(
        (0..8).map(|_| app.call("POST", "/login/alice", Some(&one))),
    )
    .await;
    for r in &replies {
        assert_eq!(r.status, 200, "{r:?}");
        if let SetCookie::Set(v) = &r.cookie {
            assert_ne!(v, &one);
        }
    }
    let attacker = app.me(&one).await;
    assert!(!attacker.contains("alice"), "{attacker}");
    if app.server_side {
        assert_eq!(attacker, ANON);
    }
}
