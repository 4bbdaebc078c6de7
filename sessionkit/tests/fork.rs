//! Fork safety of session ids and nonces, with a real `fork`.
//!
//! Session ids and AEAD nonces come from a user-space CSPRNG (`src/rng.rs`).
//! A forked child inherits that state; unless it reseeds, it repeats the
//! parent's ids (two users, one session) and nonces (a broken AEAD). This
//! test forks its own process (it has its own `main`, so nothing else runs
//! when it forks) and compares what parent and child draw next. It first
//! shows that bare `rand::rng()` does repeat across a fork, so the test can
//! tell the difference.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use rand::RngCore;
use sessionkit::codec::Codec;
use sessionkit::keys::{KeyPurpose, KeyRing};
use sessionkit::SessionId;

/// Runs `draw` once in a forked child and once in the parent, returning
/// both results (the child's comes back through a socket).
fn draw_on_both_sides(draw: impl Fn() -> Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let (mut parent_end, mut child_end) = UnixStream::pair().expect("socketpair");
    // SAFETY: the process is single-threaded here (this test has its own
    // main and starts no threads), so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let bytes = draw();
        let ok = child_end.write_all(&bytes).is_ok();
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(child_end);
    let mine = draw();
    let mut theirs = Vec::new();
    parent_end
        .read_to_end(&mut theirs)
        .expect("read the child's bytes");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
    (mine, theirs)
}

fn check(name: &str, repeats_expected: bool, draw: impl Fn() -> Vec<u8>) {
    // Draw once first, so the thread's generator exists (and is inherited).
    let _ = draw();
    let (mine, theirs) = draw_on_both_sides(&draw);
    assert_eq!(mine.len(), theirs.len(), "{name}: lengths");
    assert!(!mine.is_empty(), "{name}: drew nothing");
    if repeats_expected {
        assert_eq!(
            mine, theirs,
            "{name}: expected the unguarded generator to repeat"
        );
    } else {
        assert_ne!(mine, theirs, "{name}: parent and child drew the same bytes");
    }
    println!("fork: {name}: ok");
}

fn main() {
    // The control: rand's thread-local generator alone repeats across fork.
    check("rand::rng() without the guard repeats", true, || {
        let mut b = vec![0u8; 32];
        rand::rng().fill_bytes(&mut b);
        b
    });

    // The application used rand's generator before the fork and sessionkit
    // draws for the first time only after it: its own generator must not be
    // a copy of anything (one shared with the application would be).
    rand::rng().fill_bytes(&mut [0u8; 32]);
    let (mine, theirs) = draw_on_both_sides(|| SessionId::generate().as_bytes().to_vec());
    assert_ne!(mine, theirs, "first draws after a fork repeated each other");
    println!("fork: first sessionkit draw after the fork: ok");

    check("SessionId::generate", false, || {
        SessionId::generate().as_bytes().to_vec()
    });

    let ring = KeyRing::builder()
        .current(1, KeyRing::generate_secret())
        .build()
        .unwrap();
    let codec = Codec::builder()
        .seal(&ring, KeyPurpose::CookieSealing)
        .build();
    // The nonce follows the 5-byte header: 24 bytes for XChaCha20-Poly1305.
    check("the nonce of a sealed value", false, || {
        codec.encode_bytes(b"same plaintext").unwrap()[5..29].to_vec()
    });

    // Forks of forks: each generation must differ from its parent again.
    check("SessionId::generate, second fork", false, || {
        SessionId::generate().as_bytes().to_vec()
    });
}
