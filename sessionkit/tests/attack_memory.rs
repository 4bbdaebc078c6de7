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

server_side_attack_suite!(app);

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
