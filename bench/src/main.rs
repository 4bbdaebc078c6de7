//! Load benchmark of sessionkit against tower-sessions and actix-session.
//!
//! ```text
//! cargo run --release -p sessionkit-bench -- all        # the whole run, prints the table
//! cargo run --release -p sessionkit-bench -- list       # the variants
//! cargo run --release -p sessionkit-bench -- serve sessionkit-memory 8080 [redis://…]
//! cargo run --release -p sessionkit-bench -- clients    # CPU per Redis GET, per client library
//! ```
//!
//! `all` options: `--rounds N` (3), `--duration SECS` (4: measured seconds
//! per variant and workload, in 2 s windows interleaved with as many
//! of its ceiling's), `--warmup SECS` (1), `--connections N` (32), `--sessions N` (1000), `--variants a,b,…`
//! (every variant; ceilings are added as needed), `--workloads read,write,new`
//! (every workload). One variant and workload, e.g. `all --rounds 2
//! --variants sessionkit-memory --workloads read`, is the quick A/B cell:
//! the stderr lines give req/s, server CPU per request with its user-space
//! part, and the fraction of the ceiling measured beside it. See BENCHMARKS.md.
//!
//! `all` prints a line with the run's times, source revision and command
//! line and one describing the host (`src/machine.rs`), then the tables.
//!
//! `clients` (`src/clients.rs`) loads a Redis of its own with `GET`s from
//! each Redis client library in turn, no HTTP around them, and prints the
//! CPU each spends per command: options `--rounds N` (3), `--duration SECS`
//! (4), `--concurrency N` (32 tasks).
//!
//! `SESSIONKIT_BENCH_MEMORY_MAX_ENTRIES=N` bounds the memory variants' store
//! at N sessions instead of the library's default (100 000).
//! `SESSIONKIT_BENCH_ACTIX_WORKERS=N` runs the actix-web variants on N
//! workers instead of one (all on the server's one core).

mod clients;
mod driver;
mod machine;
mod report;
mod servers;
mod wire;

use servers::Variant;

const USAGE: &str = "usage: sessionkit-bench all [--rounds N] [--duration SECS] [--warmup SECS] \
[--connections N] [--sessions N] [--variants a,b,...] [--workloads read,write,new]\n       sessionkit-bench list\n       \
sessionkit-bench serve <variant> <port> [redis-url]\n       \
sessionkit-bench clients [--rounds N] [--duration SECS] [--concurrency N]";

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("sessionkit-bench: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse_all(args: &[String]) -> driver::Options {
    let mut opts = driver::Options {
        rounds: 3,
        duration: 4,
        warmup: 1,
        connections: 32,
        sessions: 1000,
        variants: Variant::ALL.to_vec(),
        workloads: driver::Workload::ALL.to_vec(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        let num = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| fail(format!("{flag}: {value:?} is not a number")))
        };
        match flag.as_str() {
            "--rounds" => opts.rounds = num().max(1) as usize,
            "--duration" => opts.duration = num().max(1),
            "--warmup" => opts.warmup = num(),
            "--connections" => opts.connections = num().max(1) as u32,
            "--sessions" => opts.sessions = num().max(1) as usize,
            "--variants" => {
                let mut chosen: Vec<Variant> = value
                    .split(',')
                    .map(|n| {
                        Variant::parse(n.trim())
                            .unwrap_or_else(|| fail(format!("unknown variant {n:?}")))
                    })
                    .collect();
                // Every fraction needs its ceiling in the same run.
                for v in chosen.clone() {
                    if !chosen.contains(&v.ceiling()) {
                        chosen.push(v.ceiling());
                    }
                }
                opts.variants = Variant::ALL
                    .iter()
                    .copied()
                    .filter(|v| chosen.contains(v))
                    .collect();
            }
            "--workloads" => {
                let chosen: Vec<driver::Workload> = value
                    .split(',')
                    .map(|n| {
                        driver::Workload::parse(n.trim())
                            .unwrap_or_else(|| fail(format!("unknown workload {n:?}")))
                    })
                    .collect();
                opts.workloads = driver::Workload::ALL
                    .iter()
                    .copied()
                    .filter(|w| chosen.contains(w))
                    .collect();
            }
            other => fail(format!("unknown option {other}")),
        }
    }
    if opts.variants.iter().all(|v| v.is_ceiling()) {
        // Ceilings are measured beside the variants they pair with, never alone.
        fail("--variants: name at least one variant that is not a ceiling");
    }
    opts
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("all") => {
            let opts = parse_all(&args[1..]);
            let started = time::OffsetDateTime::now_utc();
            let (revision, host) = (machine::revision(), machine::host_line());
            eprintln!(
                "{}\n{host}",
                machine::run_line(started, None, &revision, &args)
            );
            match driver::run_all(&opts) {
                Ok(samples) => {
                    let ended = time::OffsetDateTime::now_utc();
                    println!(
                        "{}\n\n{host}\n",
                        machine::run_line(started, Some(ended), &revision, &args)
                    );
                    print!("{}", report::markdown(&samples, &opts.variants));
                }
                Err(e) => {
                    eprintln!("sessionkit-bench: {e}");
                    std::process::exit(1)
                }
            }
        }
        Some("list") => {
            for v in Variant::ALL {
                println!("{}", v.name());
            }
        }
        Some("serve") => {
            let variant = args
                .get(1)
                .and_then(|n| Variant::parse(n))
                .unwrap_or_else(|| fail("serve needs a known variant (see `list`)"));
            let port = args
                .get(2)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| fail("serve needs a port"));
            if let Err(e) = servers::serve(variant, port, args.get(3).cloned()) {
                eprintln!("sessionkit-bench serve {}: {e}", variant.name());
                std::process::exit(1)
            }
        }
        Some("clients") => {
            let (mut rounds, mut secs, mut concurrency) = (3usize, 4u64, 32usize);
            let mut it = args[1..].iter();
            while let Some(flag) = it.next() {
                let value: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| fail(format!("{flag} needs a whole number")));
                match flag.as_str() {
                    "--rounds" => rounds = value.max(1) as usize,
                    "--duration" => secs = value.max(1),
                    "--concurrency" => concurrency = value.max(1) as usize,
                    _ => fail(format!("unknown option {flag}")),
                }
            }
            match driver::run_clients(rounds, secs, concurrency) {
                Ok(table) => print!("{table}"),
                Err(e) => {
                    eprintln!("sessionkit-bench clients: {e}");
                    std::process::exit(1)
                }
            }
        }
        // The child of `clients`: one client's load, one line of figures.
        Some("client-load") => {
            let (Some(name), Some(url), Some(secs), Some(conc)) = (
                args.get(1),
                args.get(2),
                args.get(3).and_then(|s| s.parse().ok()),
                args.get(4).and_then(|s| s.parse().ok()),
            ) else {
                fail("client-load needs <client> <redis-url> <secs> <concurrency>")
            };
            let warmup = std::time::Duration::from_secs(1);
            match clients::run_client(
                name,
                url,
                warmup,
                std::time::Duration::from_secs(secs),
                conc,
            ) {
                Ok(sample) => println!("{}", sample.line()),
                Err(e) => {
                    eprintln!("sessionkit-bench client-load {name}: {e}");
                    std::process::exit(1)
                }
            }
        }
        _ => fail("no command"),
    }
}
