//! The attack suite (see `tests/attack_support`) against [`MemoryStore`],
//! over real HTTP.

mod attack_support;

use attack_support::{attacks, counting, App, Data, Kit};
use sessionkit::store::memory::MemoryStore;

async fn app() -> App {
    let kit = Kit::new();
    let store = MemoryStore::<Data>::builder()
        .clock(kit.clock.clone())
        .build();
    kit.serve_query(store).await
}

async fn bound_app() -> App {
    let kit = Kit::bound_to_user_agent();
    let store = MemoryStore::<Data>::builder()
        .clock(kit.clock.clone())
        .build();
    kit.serve_query(store).await
}

attack_suite!(bound_app; binding_a_cookie_replayed_from_another_browser_gives_a_fresh_session);

attack_suite!(app;
    fixation_a_planted_session_does_not_become_the_victims_login,
    fixation_the_previous_id_dies_when_the_same_user_logs_in_again,
    replay_after_logout_gives_a_fresh_session,
    replay_after_owner_revoke_gives_a_fresh_session,
    replay_after_idle_expiry_gives_a_fresh_session,
    replay_after_absolute_expiry_gives_a_fresh_session,
    tampering_any_changed_character_gives_a_fresh_session,
    key_injection_gives_a_fresh_session,
    ambiguous_or_lookalike_cookies_give_no_session,
    hostile_headers_stay_within_time_and_memory_bounds,
    race_a_slow_save_after_logout_leaves_the_session_deleted,
    race_parallel_logins_give_independent_fixation_safe_sessions,
);

/// 10^5 random ids over HTTP: no hit, and every one is counted as an invalid lookup.
#[test]
fn enumeration_of_a_hundred_thousand_random_ids_finds_nothing_and_is_counted() {
    const N: usize = 100_000;
    let invalid = counting("sessionkit_invalid_lookups_total", || async {
        attacks::enumeration_finds_nothing(&app().await, N).await;
    });
    println!("invalid lookups counted: {invalid}");
    assert!(invalid >= N as u64, "only {invalid} of {N} counted");
}
