//! `sessionkit-bench clients`: what one Redis `GET` costs the process that
//! sends it, per client library, with no HTTP around it.
//!
//! A Redis `/read` spends several µs of server CPU over the floor (see
//! BENCHMARKS.md), more than the target allows; this measures how much of
//! that is the client stack alone, and whether another client would do the
//! same work for less. Each client runs in its own process on the server's
//! core (a current-thread Tokio runtime, as the bench servers), with
//! `--concurrency` tasks each sending `GET` of one existing 200-byte value
//! in a loop; Redis runs on the other core. The process's own CPU time
//! (`getrusage`, user + system) over the measured seconds, divided by the
//! `GET`s answered, is the figure; clients alternate within each round.
//!
//! Clients:
//! - `redis-rs-manager`: redis-rs' `ConnectionManager` configured as
//!   `RedisStore` configures it (500 ms response timeout);
//! - `redis-rs-multiplexed`: redis-rs' `MultiplexedConnection`, same timeout
//!   (what the manager wraps, without reconnection);
//! - `redis-rs-no-timeout`: the manager without a response timeout;
//! - `fred`: fred 10 (tower-sessions' Redis client), one connection, defaults;
//! - `sessionkit-store`: `RedisStore::load` of an existing session (key
//!   derivation, the `GET` through the manager, the record's decoding).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use sessionkit::expiry::ExpiryPolicy;
use sessionkit::store::redis::RedisStore;
use sessionkit::store::{Save, SaveOutcome};
use sessionkit::{Record, SessionId, Store};
use tower_sessions_redis_store::fred;

use crate::servers::BenchData;

/// The clients measured, in the order each round runs them.
pub const CLIENTS: &[&str] = &[
    "redis-rs-manager",
    "redis-rs-multiplexed",
    "redis-rs-no-timeout",
    "fred",
    "sessionkit-store",
];

/// As `RedisStore`'s default.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const KEY: &str = "bench:clients:value";

enum Client {
    Manager(redis::aio::ConnectionManager),
    Multiplexed(redis::aio::MultiplexedConnection),
    Fred(fred::prelude::Client),
    Store(RedisStore<BenchData>, String),
}

impl Client {
    async fn connect(name: &str, url: &str) -> std::io::Result<Client> {
        use redis::aio::{ConnectionManager, ConnectionManagerConfig};
        let client = || redis::Client::open(url).map_err(err);
        Ok(match name {
            "redis-rs-manager" | "redis-rs-no-timeout" => {
                let timeout = (name == "redis-rs-manager").then_some(RESPONSE_TIMEOUT);
                let config = ConnectionManagerConfig::new().set_response_timeout(timeout);
                Client::Manager(
                    ConnectionManager::new_with_config(client()?, config)
                        .await
                        .map_err(err)?,
                )
            }
            "redis-rs-multiplexed" => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Client::Multiplexed(
                    client()?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(err)?,
                )
            }
            "fred" => {
                use fred::prelude::{Builder, ClientLike, Config};
                let config = Config::from_url(url).map_err(err)?;
                let c = Builder::from_config(config).build().map_err(err)?;
                c.init().await.map_err(err)?;
                Client::Fred(c)
            }
            "sessionkit-store" => {
                let store = RedisStore::<BenchData>::connect(url).await.map_err(err)?;
                let record = Record::new(
                    SessionId::generate(),
                    crate::servers::fresh(),
                    std::time::SystemTime::now(),
                    &ExpiryPolicy::default(),
                );
                let save = Save::create(&record);
                let SaveOutcome::Saved(cookie) = store.save(save).await.map_err(err)? else {
                    return Err(err("sessionkit-store: the session was not created"));
                };
                Client::Store(store, cookie)
            }
            _ => return Err(err(format!("unknown client {name:?}"))),
        })
    }

    /// One `GET` of the value (or one load of the session); `Err` if the
    /// answer is missing or an error.
    async fn get(&self) -> std::io::Result<()> {
        let missing = || std::io::Error::other("no value");
        match self {
            Client::Manager(c) => redis_rs_get(&mut c.clone()).await,
            Client::Multiplexed(c) => redis_rs_get(&mut c.clone()).await,
            Client::Fred(c) => {
                use fred::prelude::KeysInterface;
                let v: fred::types::Value = c.get(KEY).await.map_err(std::io::Error::other)?;
                (!v.is_null()).then_some(()).ok_or_else(missing)
            }
            Client::Store(store, cookie) => store
                .load(cookie)
                .await
                .map_err(std::io::Error::other)?
                .map(|_| ())
                .ok_or_else(missing),
        }
    }
}

/// One `GET` of the value through a redis-rs connection (a clone: clones
/// share the connection).
async fn redis_rs_get(conn: &mut impl redis::aio::ConnectionLike) -> std::io::Result<()> {
    let v: redis::Value = redis::cmd("GET")
        .arg(KEY)
        .query_async(conn)
        .await
        .map_err(err)?;
    matches!(v, redis::Value::BulkString(_))
        .then_some(())
        .ok_or_else(|| err("no value"))
}

/// Any error as an I/O error (the bench's error type).
fn err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> std::io::Error {
    std::io::Error::other(e)
}

/// This process's user + system CPU time so far.
fn cpu_time() -> std::io::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).map_err(std::io::Error::other)?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(tv(usage.user_time()) + tv(usage.system_time()))
}

/// What one client process measured.
pub struct Sample {
    pub gets: u64,
    pub cpu: Duration,
    pub wall: Duration,
}

impl Sample {
    pub fn cpu_us_per_get(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.gets.max(1) as f64
    }
    pub fn gets_per_sec(&self) -> f64 {
        self.gets as f64 / self.wall.as_secs_f64()
    }
    /// The line the child prints and the parent parses.
    pub fn line(&self) -> String {
        format!(
            "gets {} cpu_ns {} wall_ns {}",
            self.gets,
            self.cpu.as_nanos(),
            self.wall.as_nanos()
        )
    }
    pub fn parse(line: &str) -> Option<Sample> {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["gets", g, "cpu_ns", c, "wall_ns", w] => Some(Sample {
                gets: g.parse().ok()?,
                cpu: Duration::from_nanos(c.parse().ok()?),
                wall: Duration::from_nanos(w.parse().ok()?),
            }),
            _ => None,
        }
    }
}

/// The child's side: load Redis through `name` for `warmup` + `secs`, then
/// return what the measured part cost.
pub fn run_client(
    name: &str,
    url: &str,
    warmup: Duration,
    secs: Duration,
    concurrency: usize,
) -> std::io::Result<Sample> {
    if !CLIENTS.contains(&name) {
        return Err(err(format!("unknown client {name:?}; one of {CLIENTS:?}")));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        {
            // The value every client reads (the store variant reads its own).
            let mut c = redis::Client::open(url)
                .map_err(std::io::Error::other)?
                .get_multiplexed_async_connection()
                .await
                .map_err(std::io::Error::other)?;
            redis::cmd("SET")
                .arg(KEY)
                .arg("v".repeat(200))
                .query_async::<()>(&mut c)
                .await
                .map_err(std::io::Error::other)?;
        }
        let client = Arc::new(Client::connect(name, url).await?);
        client.get().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let gets = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let (client, stop, gets) = (client.clone(), stop.clone(), gets.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client.get().await?;
                    gets.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), std::io::Error>(())
            }));
        }
        tokio::time::sleep(warmup).await;
        let (g0, c0, t0) = (gets.load(Ordering::Relaxed), cpu_time()?, Instant::now());
        tokio::time::sleep(secs).await;
        let (g1, c1, t1) = (gets.load(Ordering::Relaxed), cpu_time()?, Instant::now());
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.map_err(std::io::Error::other)??;
        }
        Ok(Sample {
            gets: g1 - g0,
            cpu: c1 - c0,
            wall: t1 - t0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_line_parses_back() {
        let s = Sample {
            gets: 12345,
            cpu: Duration::from_nanos(987_654_321),
            wall: Duration::from_millis(4000),
        };
        let back = Sample::parse(&s.line()).unwrap();
        assert_eq!((back.gets, back.cpu, back.wall), (s.gets, s.cpu, s.wall));
        assert!((back.cpu_us_per_get() - 80.0044).abs() < 0.001);
    }

    #[test]
    fn hostile_sample_lines_are_refused() {
        for line in [
            "",
            "gets",
            "gets x cpu_ns 1 wall_ns 1",
            "gets 1 cpu_ns -1 wall_ns 1",
            "gets 1 cpu_ns 1 wall_ns 1 extra",
        ] {
            assert!(Sample::parse(line).is_none(), "{line:?}");
        }
    }

    /// Every client against a real `redis-server` of the test's own (on a
    /// free port), briefly: each connects, finds the value and counts its
    /// `GET`s and its CPU time.
    #[test]
    fn every_client_reads_from_a_real_redis() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("sk-bench-clients-test-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let up = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let url = format!("redis://127.0.0.1:{port}");
        let results: Vec<_> = CLIENTS
            .iter()
            .map(|name| {
                let short = Duration::from_millis(200);
                (*name, run_client(name, &url, Duration::ZERO, short, 4))
            })
            .collect();
        let _ = redis.kill();
        let _ = redis.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(up, "redis-server did not listen on {port}");
        for (name, result) in results {
            let sample = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(sample.gets > 0, "{name} answered no GET");
            assert!(sample.cpu > Duration::ZERO, "{name}: no CPU time counted");
        }
    }

    #[test]
    fn an_unknown_client_is_refused_by_name() {
        let err = run_client(
            "nope",
            "redis://127.0.0.1:1",
            Duration::ZERO,
            Duration::ZERO,
            1,
        )
        .err()
        .expect("an unknown client");
        assert!(err.to_string().contains("unknown client \"nope\""), "{err}");
    }
}
