//! The driver: starts Redis and each server, pre-creates sessions, runs wrk
//! against every variant and workload in interleaved rounds, and collects
//! requests/s, p99, server CPU per request and Redis commands per request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{self, Variant};
use crate::wire;

/// The cores the server and the load generator are pinned to.
const SERVER_CORE: &str = "0";
const CLIENT_CORE: &str = "1";

const LUA: &str = include_str!("../lua/rotate.lua");

/// A request pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Read,
    Write,
    New,
}

impl Workload {
    pub const ALL: &'static [Workload] = &[Workload::Read, Workload::Write, Workload::New];

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.iter().copied().find(|w| w.name() == name)
    }

    pub fn path(self) -> &'static str {
        match self {
            Workload::Read => "/read",
            Workload::Write => "/write",
            Workload::New => "/new",
        }
    }

    pub fn name(self) -> &'static str {
        &self.path()[1..]
    }
}

/// What `all` runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub duration: u64,
    pub warmup: u64,
    pub connections: u32,
    pub sessions: usize,
    pub variants: Vec<Variant>,
    /// The workloads to run (every one by default).
    pub workloads: Vec<Workload>,
}

/// One measured wrk run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub variant: Variant,
    pub workload: Workload,
    pub rps: f64,
    pub p99_us: f64,
    pub cpu_us_per_req: f64,
    /// The user-space part of `cpu_us_per_req` (the rest is the kernel's:
    /// sockets, wake-ups). Session work is user time; comparing it with the
    /// ceiling's says what a target leaves for it.
    pub user_cpu_us_per_req: f64,
    /// Server CPU time over wall time (1.0 = one core busy).
    pub cpu_util: f64,
    /// Commands Redis ran per request during the load (`INFO commandstats`),
    /// including those inside Lua scripts.
    pub redis_cmds_per_req: Option<f64>,
    /// Commands clients sent per request (round trips; `MONITOR` over
    /// [`MONITORED_REQUESTS`] sequential requests after the load).
    pub redis_round_trips_per_req: Option<f64>,
    pub redis_cpu_us_per_req: Option<f64>,
    /// The same framework's ceiling measured in windows interleaved with this
    /// sample's, on the same workload: (req/s, server CPU µs/request). `None` for the
    /// ceilings themselves.
    pub paired_ceiling: Option<(f64, f64)>,
    /// Share of the machine's CPU time the hypervisor gave to other guests
    /// during the windows (`/proc/stat` steal), when the kernel reports it.
    pub steal: Option<f64>,
    /// Times wrk went to sleep per request (its voluntary context switches).
    /// On loopback the server's `write` wakes a sleeping wrk from inside its
    /// own system call (the receiving side's softirq runs on the sender's
    /// core), so each of these costs the server kernel time: a slower server
    /// lets wrk sleep more often and pays more per request for it.
    pub client_sleeps_per_req: Option<f64>,
    /// Requests wrk counted as errors (a session variant answers 500 when it
    /// loses a session), plus, after a load checked against the store (see
    /// `Ledger`), the writes or sessions that went missing.
    pub errors: u64,
    /// Responses wrk counted over the measured windows.
    pub requests: u64,
    /// wrk runs (windows) the sample adds up.
    pub windows: u64,
}

/// Length of one measured window. Shorter windows follow the host's swings
/// more closely, but each is a fresh wrk process that connects and ramps up
/// before it loads the server fully, a cost that weighs more on a shorter
/// window: 2 s halves it against 1 s.
const WINDOW_SECS: u64 = 2;

impl Sample {
    /// req/s as a fraction of the paired ceiling's; `None` for a ceiling.
    pub fn rps_fraction(&self) -> Option<f64> {
        self.paired_ceiling.map(|(rps, _)| self.rps / rps)
    }

    /// The paired ceiling's CPU µs/request ÷ this sample's; `None` for a
    /// ceiling.
    pub fn cpu_fraction(&self) -> Option<f64> {
        self.paired_ceiling
            .map(|(_, cpu)| cpu / self.cpu_us_per_req)
    }

    /// [`Sample::cpu_fraction`] counting the CPU Redis spent on this
    /// variant's requests too (a save script moves work from the server into
    /// Redis, which the server's CPU alone does not see); the same as
    /// `cpu_fraction` for a variant without Redis.
    pub fn cpu_fraction_with_redis(&self) -> Option<f64> {
        let redis = self.redis_cpu_us_per_req.unwrap_or(0.0);
        self.paired_ceiling
            .map(|(_, cpu)| cpu / (self.cpu_us_per_req + redis))
    }
}

/// Requests sent one by one under `MONITOR` to count Redis round trips.
pub const MONITORED_REQUESTS: usize = 200;

/// Kills and reaps a child process when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time of a process (all its threads) in clock ticks: user (utime) and
/// system (stime).
#[derive(Clone, Copy, Default)]
struct CpuTicks {
    user: u64,
    system: u64,
}

impl CpuTicks {
    fn total(self) -> u64 {
        self.user + self.system
    }

    fn since(self, before: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }
}

/// [`CpuTicks`] of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> std::io::Result<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields restart after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| std::io::Error::other("bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let num = |i: usize| -> std::io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad /proc stat field"))
    };
    Ok(CpuTicks {
        user: num(11)?,
        system: num(12)?,
    })
}

/// The machine's (idle + busy, steal) clock ticks so far, summed over its
/// CPUs, from the first line of `/proc/stat`. Steal is the time the
/// hypervisor ran someone else while this VM wanted the CPU; `None` where
/// the kernel does not report it.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let steal = *fields.get(7)?;
    Some((fields.iter().take(8).sum(), steal))
}

fn wait_for_port(port: u16, within: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > within {
            return Err(std::io::Error::other(format!(
                "nothing listening on port {port}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_redis(dir: &Path) -> std::io::Result<(Guard, u16)> {
    let port = free_port()?;
    let child = Command::new("taskset")
        .args(["-c", CLIENT_CORE, "redis-server"])
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let guard = Guard(child);
    wait_for_port(port, Duration::from_secs(10))?;
    Ok((guard, port))
}

fn start_server(variant: Variant, redis_port: Option<u16>) -> std::io::Result<(Guard, u16)> {
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", SERVER_CORE])
        .arg(exe)
        .args(["serve", variant.name(), &port.to_string()]);
    if let Some(rp) = redis_port {
        cmd.arg(format!("redis://127.0.0.1:{rp}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(std::io::Error::other(format!(
            "{} did not start (said {line:?})",
            variant.name()
        )));
    }
    wait_for_port(port, Duration::from_secs(10))?;
    Ok((guard, port))
}

fn expect(what: &str, reply: &wire::Reply, body: &str) -> std::io::Result<()> {
    if reply.status != 200 || reply.body.trim() != body {
        return Err(std::io::Error::other(format!(
            "{what}: expected 200 {body:?}, got {} {:?}",
            reply.status, reply.body
        )));
    }
    Ok(())
}

/// Checks that the variant really keeps sessions (so a broken variant cannot
/// look fast), then pre-creates `n` sessions and returns their cookies.
fn prepare(variant: Variant, port: u16, n: usize) -> std::io::Result<Vec<String>> {
    let name = variant.name();
    if !variant.keeps_sessions() {
        expect(name, &wire::http_get(port, "/read", None)?, "1 bench-user")?;
        // Same header size as a session cookie (43-char id), so the ceiling
        // parses comparable requests.
        return Ok((0..n).map(|i| format!("__Host-id={:0>43}", i)).collect());
    }
    let new = wire::http_get(port, "/new", None)?;
    expect(&format!("{name} /new"), &new, "1")?;
    let c1 = new
        .set_cookie
        .ok_or_else(|| std::io::Error::other(format!("{name} /new set no cookie")))?;
    expect(
        &format!("{name} /read"),
        &wire::http_get(port, "/read", Some(&c1))?,
        "1 bench-user",
    )?;
    let write = wire::http_get(port, "/write", Some(&c1))?;
    expect(&format!("{name} /write"), &write, "2")?;
    let c2 = write.set_cookie.unwrap_or(c1);
    expect(
        &format!("{name} /read after /write"),
        &wire::http_get(port, "/read", Some(&c2))?,
        "2 bench-user",
    )?;
    (0..n)
        .map(|_| {
            let r = wire::http_get(port, "/new", None)?;
            expect(&format!("{name} /new"), &r, "1")?;
            r.set_cookie
                .ok_or_else(|| std::io::Error::other(format!("{name} /new set no cookie")))
        })
        .collect()
}

struct WrkResult {
    requests: u64,
    duration_s: f64,
    p99_us: f64,
    errors: u64,
    /// wrk's voluntary context switches, when the OS reports them.
    sleeps: Option<u64>,
}

/// Voluntary context switches of every child process reaped so far
/// (`getrusage(RUSAGE_CHILDREN)`); wrk is the only child reaped while it runs.
fn children_sleeps() -> Option<u64> {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .ok()
        .and_then(|u| u64::try_from(u.voluntary_context_switches()).ok())
}

fn wrk(
    opts: &Options,
    dir: &Path,
    port: u16,
    workload: Workload,
    cookies: &Path,
    secs: u64,
) -> std::io::Result<WrkResult> {
    let cookie_arg = match workload {
        Workload::New => "-".into(),
        _ => cookies.display().to_string(),
    };
    let sleeps_before = children_sleeps();
    let out = Command::new("taskset")
        .args(["-c", CLIENT_CORE, "wrk", "-t1"])
        .arg(format!("-c{}", opts.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(dir.join("rotate.lua"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["--", workload.path(), &cookie_arg])
        .output()?;
    let sleeps = children_sleeps()
        .zip(sleeps_before)
        .map(|(after, before)| after.saturating_sub(before));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH_RESULT"))
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "wrk gave no result: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
    let fields: BTreeMap<&str, f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let get = |k: &str| fields.get(k).copied().unwrap_or(0.0);
    Ok(WrkResult {
        requests: get("requests") as u64,
        duration_s: get("duration_us") / 1e6,
        p99_us: get("p99_us"),
        errors: (get("connect_errors")
            + get("read_errors")
            + get("write_errors")
            + get("status_errors")
            + get("timeouts")) as u64,
        sleeps,
    })
}

/// A server under measurement: its process, port and cookie file.
struct Target<'a> {
    variant: Variant,
    server: &'a Guard,
    port: u16,
    cookies: &'a Path,
    /// Redis (port, pid) for the variants that use it.
    redis: Option<(u16, u32)>,
}

/// What the windows of one server added up to.
#[derive(Default)]
struct Tally {
    requests: u64,
    duration_s: f64,
    cpu_ticks: CpuTicks,
    p99s_us: Vec<f64>,
    errors: u64,
    redis_calls: u64,
    redis_cpu_ticks: u64,
    machine_ticks: u64,
    steal_ticks: u64,
    /// wrk's sleeps over the windows that reported them.
    client_sleeps: u64,
    /// A window whose sleeps the OS did not report (the sum is then unknown).
    client_sleeps_missing: bool,
}

impl Tally {
    /// Runs one window of `secs` against `t` and adds it up.
    fn window(
        &mut self,
        opts: &Options,
        dir: &Path,
        t: &Target<'_>,
        workload: Workload,
        secs: u64,
    ) -> std::io::Result<()> {
        let redis_before = t
            .redis
            .map(|(rp, pid)| {
                Ok::<_, std::io::Error>((wire::redis_command_calls(rp)?, cpu_ticks(pid)?))
            })
            .transpose()?;
        let machine_before = machine_ticks();
        let cpu_before = cpu_ticks(t.server.pid())?;
        let r = wrk(opts, dir, t.port, workload, t.cookies, secs)?;
        let cpu_after = cpu_ticks(t.server.pid())?;
        if let (Some((all_b, steal_b)), Some((all_a, steal_a))) = (machine_before, machine_ticks())
        {
            self.machine_ticks += all_a - all_b;
            self.steal_ticks += steal_a - steal_b;
        }
        if let (Some((calls_b, rcpu_b)), Some((rp, pid))) = (redis_before, t.redis) {
            self.redis_cpu_ticks += cpu_ticks(pid)?.since(rcpu_b).total();
            self.redis_calls += wire::redis_command_calls(rp)? - calls_b;
        }
        self.requests += r.requests;
        self.duration_s += r.duration_s;
        let spent = cpu_after.since(cpu_before);
        self.cpu_ticks.user += spent.user;
        self.cpu_ticks.system += spent.system;
        self.p99s_us.push(r.p99_us);
        self.errors += r.errors;
        self.client_sleeps += r.sleeps.unwrap_or(0);
        self.client_sleeps_missing |= r.sleeps.is_none();
        Ok(())
    }

    fn sample(self, t: &Target<'_>, workload: Workload, ticks: f64) -> Sample {
        let reqs = self.requests.max(1) as f64;
        let cpu_s = self.cpu_ticks.total() as f64 / ticks;
        let p99s = self.p99s_us;
        Sample {
            variant: t.variant,
            workload,
            rps: self.requests as f64 / self.duration_s.max(1e-9),
            p99_us: crate::report::median(p99s.clone()).unwrap_or(0.0),
            cpu_us_per_req: cpu_s * 1e6 / reqs,
            user_cpu_us_per_req: self.cpu_ticks.user as f64 / ticks * 1e6 / reqs,
            cpu_util: cpu_s / self.duration_s.max(1e-9),
            redis_cmds_per_req: t.redis.map(|_| self.redis_calls as f64 / reqs),
            redis_round_trips_per_req: None,
            redis_cpu_us_per_req: t
                .redis
                .map(|_| self.redis_cpu_ticks as f64 / ticks * 1e6 / reqs),
            paired_ceiling: None,
            steal: (self.machine_ticks > 0)
                .then(|| self.steal_ticks as f64 / self.machine_ticks as f64),
            client_sleeps_per_req: (!self.client_sleeps_missing)
                .then(|| self.client_sleeps as f64 / reqs),
            errors: self.errors,
            requests: self.requests,
            windows: p99s.len() as u64,
        }
    }
}

/// Measures `variant` for `opts.duration` seconds in [`WINDOW_SECS`] windows
/// and, with a `ceiling`, that ceiling for as long, interleaved C V V C…, so
/// both see the same host over the same seconds (a drift within the pair
/// cancels). Returns (variant, ceiling) samples; the variant's carries its
/// pair.
fn measure(
    opts: &Options,
    dir: &Path,
    ticks: f64,
    variant: &Target<'_>,
    ceiling: Option<&Target<'_>>,
    workload: Workload,
) -> std::io::Result<(Sample, Option<Sample>)> {
    let mut v = Tally::default();
    let mut c = Tally::default();
    let window = WINDOW_SECS.min(opts.duration);
    for i in 0..opts.duration.div_ceil(window) {
        match ceiling {
            Some(ct) if i % 2 == 0 => {
                c.window(opts, dir, ct, workload, window)?;
                v.window(opts, dir, variant, workload, window)?;
            }
            Some(ct) => {
                v.window(opts, dir, variant, workload, window)?;
                c.window(opts, dir, ct, workload, window)?;
            }
            None => v.window(opts, dir, variant, workload, window)?,
        }
    }
    let c = ceiling.map(|ct| c.sample(ct, workload, ticks));
    let mut v = v.sample(variant, workload, ticks);
    v.paired_ceiling = c.as_ref().map(|c| (c.rps, c.cpu_us_per_req));
    Ok((v, c))
}

/// The progress line of one sample, on stderr.
fn report_line(round: usize, s: &Sample) {
    eprintln!(
        "round {} {:<33} {:<5} {:>9.0} req/s  p99 {:>7.2} ms  cpu {:>6.1} µs/req (user {:.2}, {:>3.0}% of a core){}{}{}{}{}",
        round + 1,
        s.variant.name(),
        s.workload.name(),
        s.rps,
        s.p99_us / 1000.0,
        s.cpu_us_per_req,
        s.user_cpu_us_per_req,
        s.cpu_util * 100.0,
        s.steal
            .map(|st| format!("  steal {:.0}%", st * 100.0))
            .unwrap_or_default(),
        s.client_sleeps_per_req
            .map(|z| format!("  wrk sleeps {z:.3}/req"))
            .unwrap_or_default(),
        s.rps_fraction()
            .zip(s.cpu_fraction())
            .map(|(f, c)| format!("  × ceiling {f:.2}, by CPU {c:.2}"))
            .unwrap_or_default(),
        s.redis_cmds_per_req
            .map(|c| format!(
                "  redis {:.2} round trips, {c:.2} cmds run/req",
                s.redis_round_trips_per_req.unwrap_or(f64::NAN)
            ))
            .unwrap_or_default(),
        if s.errors > 0 {
            format!("  {} ERRORS", s.errors)
        } else {
            String::new()
        },
    );
}

/// What a workload must change in the store by a known amount, read before
/// and after the workload's whole load (warm-up, windows, monitored
/// requests). wrk checks statuses, not what was kept: a variant that saved
/// nothing on `/write`, or made sessions it never stored on `/new`, would
/// pass for a fast one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ledger {
    /// `/write` on a store that keeps the data on the server: the sum of the
    /// pre-created sessions' counters, which each write raises by one (wrk's
    /// one thread walks the cookies in order, so with more sessions than
    /// connections no two writes of one session overlap), and how many of
    /// them could not be read (lost sessions). `each` keeps every session's
    /// counter (0 when unreadable): the sum cannot see a write saved under
    /// another session, the spread of the increases can (see
    /// [`Counted::walks`]).
    Counters {
        sum: u64,
        unreadable: u64,
        each: Vec<u64>,
    },
    /// `/new` on a Redis store: the keys in Redis, at least one per session.
    Keys(u64),
}

/// What wrk and the monitored requests counted over one workload: at least
/// `lo` requests succeeded (wrk's responses less its errors) and at most `hi`
/// reached the server (wrk stops without counting the requests still in
/// flight, up to one per connection).
#[derive(Debug, Default, Clone, Copy)]
struct Counted {
    lo: u64,
    hi: u64,
    /// Passes over the cookie list (each wrk run, the monitored requests),
    /// and requests that failed. One pass sends each session ⌊m/n⌋ or
    /// ⌈m/n⌉ of its m requests (one thread, cookies in order, the requests
    /// still in flight at its end the next ones in that order), so with
    /// every request applied the sessions' increases differ by at most
    /// `walks`; each failed request can widen that by one more.
    walks: u64,
    failed: u64,
}

impl Counted {
    fn add_wrk(&mut self, requests: u64, errors: u64, connections: u32) {
        self.lo += requests.saturating_sub(errors);
        self.hi += requests + u64::from(connections);
        self.walks += 1;
        self.failed += errors;
    }
}

impl Ledger {
    fn read(
        variant: Variant,
        workload: Workload,
        port: u16,
        cookies: &[String],
        redis_port: Option<u16>,
    ) -> std::io::Result<Option<Ledger>> {
        match (workload, redis_port) {
            (Workload::Write, _) if variant.keeps_sessions() && !variant.keeps_data_in_cookie() => {
                let each = counters(port, cookies)?;
                Ok(Some(Ledger::Counters {
                    sum: each.iter().flatten().sum(),
                    unreadable: each.iter().filter(|c| c.is_none()).count() as u64,
                    each: each.into_iter().map(Option::unwrap_or_default).collect(),
                }))
            }
            (Workload::New, Some(rp)) if variant.uses_redis() => {
                Ok(Some(Ledger::Keys(wire::redis_int(rp, "DBSIZE")?)))
            }
            _ => Ok(None),
        }
    }

    /// How many writes or sessions are missing between `self` and `after`
    /// given what was `counted`, with what to say; `None` when they add up.
    fn shortfall(&self, after: &Ledger, counted: Counted) -> Option<(u64, String)> {
        match (self, after) {
            (
                Ledger::Counters {
                    unreadable: lost_before,
                    ..
                },
                Ledger::Counters {
                    unreadable: lost_after,
                    ..
                },
            ) if lost_after > lost_before => Some((
                lost_after - lost_before,
                format!(
                    "{} sessions could no longer be read after the load",
                    lost_after - lost_before
                ),
            )),
            (
                Ledger::Counters {
                    sum: before,
                    each: each_before,
                    ..
                },
                Ledger::Counters {
                    sum: after,
                    each: each_after,
                    ..
                },
            ) => {
                let (before, after) = (*before, *after);
                let kept = after.saturating_sub(before);
                if after < before || kept < counted.lo {
                    Some((
                        counted.lo.saturating_sub(kept).max(1),
                        format!(
                            "counters rose by {kept} ({before} to {after}) for at least {} writes answered: writes were lost",
                            counted.lo
                        ),
                    ))
                } else if kept > counted.hi {
                    Some((
                        kept - counted.hi,
                        format!(
                            "counters rose by {kept} for at most {} writes sent: some were applied twice",
                            counted.hi
                        ),
                    ))
                } else {
                    misrouted(each_before, each_after, counted, kept)
                }
            }
            (Ledger::Keys(before), Ledger::Keys(after)) => {
                let (before, after) = (*before, *after);
                let kept = after.saturating_sub(before);
                (kept < counted.lo).then(|| {
                    (
                        counted.lo - kept,
                        format!(
                            "{kept} keys added to Redis for at least {} sessions created: sessions were not stored",
                            counted.lo
                        ),
                    )
                })
            }
            _ => Some((1, "the ledger changed kind".into())),
        }
    }
}

/// When the sum adds up (`kept` writes applied): whether the sessions'
/// increases spread wider than the passes over the cookie list allow (see
/// [`Counted::walks`]), as when a store saved one session's write under
/// another; how far, and why. Each request that may have reached the
/// server without being applied (failed, or in flight when wrk stopped and
/// dropped) can leave one hole in a pass: allowed too.
fn misrouted(before: &[u64], after: &[u64], counted: Counted, kept: u64) -> Option<(u64, String)> {
    let rises = before.iter().zip(after).map(|(b, a)| a.saturating_sub(*b));
    let (lo, hi) = rises.fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let allowed = counted.walks + counted.failed + counted.hi.saturating_sub(kept);
    (lo <= hi && hi - lo > allowed).then(|| {
        (
            hi - lo - allowed,
            format!(
                "sessions' counters rose by {lo} to {hi}, where {} passes over the cookies and {} failed requests allow a spread of {allowed}: writes landed on the wrong session",
                counted.walks, counted.failed
            ),
        )
    })
}

/// The counter `/read` answers for each of `cookies`; `None` where it did
/// not answer `200 "<counter> bench-user"` (lost sessions: reported as the
/// sample's errors, not a reason to stop the run).
fn counters(port: u16, cookies: &[String]) -> std::io::Result<Vec<Option<u64>>> {
    cookies
        .iter()
        .map(|c| {
            let r = wire::http_get(port, "/read", Some(c))?;
            Ok((r.status == 200)
                .then(|| {
                    let (n, user) = r.body.trim().split_once(' ')?;
                    (user == "bench-user").then_some(n.parse::<u64>().ok()?)
                })
                .flatten())
        })
        .collect()
}

/// Rounds × variants × workloads, interleaved; returns every sample.
pub fn run_all(opts: &Options) -> std::io::Result<Vec<Sample>> {
    for (tool, package) in [
        ("wrk", "wrk"),
        ("taskset", "util-linux"),
        ("redis-server", "redis-server"),
    ] {
        if Command::new("which")
            .arg(tool)
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(std::io::Error::other(format!(
                "{tool} is not installed (Debian/Ubuntu: apt-get install {package})"
            )));
        }
    }
    if opts.sessions < 2 * opts.connections as usize {
        // The `/write` check (see `Ledger`) needs the writes of one session
        // never to overlap: wrk walks the cookies in order, one request per
        // connection in flight.
        return Err(std::io::Error::other(format!(
            "--sessions ({}) must be at least twice --connections ({}): the /write check assumes no two writes of one session overlap",
            opts.sessions, opts.connections
        )));
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sessionkit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("rotate.lua"), LUA)?;
    let ticks = clock_ticks_per_sec();

    let needs_redis = opts.variants.iter().any(|v| v.uses_redis());
    let redis = if needs_redis {
        Some(start_redis(&dir)?)
    } else {
        None
    };
    let redis_port = redis.as_ref().map(|(_, p)| *p);
    let redis_pid = redis.as_ref().map(|(g, _)| g.pid());

    // Per variant and workload: warm-up, then the variant's and its
    // ceiling's windows, interleaved.
    let per_run = opts.warmup + 2 * opts.duration;
    let measured = opts.variants.iter().filter(|v| !v.is_ceiling()).count();
    let total = opts.rounds * measured * opts.workloads.len() * per_run as usize;
    eprintln!(
        "sessionkit-bench: {} rounds × {} variants × {} workloads × ({}s warm-up + {}s ceiling + {}s variant, interleaved in {}s windows), ~{} min",
        opts.rounds,
        measured,
        opts.workloads.len(),
        opts.warmup,
        opts.duration,
        opts.duration,
        WINDOW_SECS.min(opts.duration),
        total.div_ceil(60) + 1
    );

    if let Some(n) = servers::memory_max_entries()? {
        eprintln!(
            "sessionkit-bench: memory variants bounded at {n} sessions ({})",
            servers::MEMORY_MAX_ENTRIES_ENV
        );
    }

    let mut samples = Vec::new();
    for round in 0..opts.rounds {
        // The ceilings of this round: started once, then measured in
        // windows interleaved with each variant's (same framework,
        // same workload), so a variant's fraction compares figures taken over
        // the same seconds. The host's speed drifts within seconds here; a
        // ceiling measured once per round put that drift into every fraction.
        let mut ceilings = BTreeMap::new();
        for &v in &opts.variants {
            if v.is_ceiling() {
                let (server, port) = start_server(v, None)?;
                let cookies = prepare(v, port, opts.sessions)?;
                let cookie_file = dir.join(format!("cookies-{}.txt", v.name()));
                std::fs::write(&cookie_file, cookies.join("\n") + "\n")?;
                // Warmed up like every variant: a fresh process measured
                // cold in its first window would flatter whichever variant
                // is paired with it first.
                if opts.warmup > 0 {
                    for &workload in &opts.workloads {
                        wrk(opts, &dir, port, workload, &cookie_file, opts.warmup)?;
                    }
                }
                ceilings.insert(v.name(), (server, port, cookie_file));
            }
        }
        // Start each round at a different variant and run odd rounds
        // backwards, so no variant always runs first, or always right after
        // the same neighbour, or always before its peer. (Rotating the whole
        // list, ceilings included, skipped the ceiling at index 0: rounds 1
        // and 2 ran in one order, and ours always ran before the peers.)
        let order: Vec<_> = opts
            .variants
            .iter()
            .copied()
            .filter(|v| !v.is_ceiling())
            .collect();
        let n = order.len();
        // Rounds start a third (a round's share) of the list apart: rotated
        // by one, the reversal of odd rounds put the last variant last again.
        let step = (n / opts.rounds.max(1)).max(1);
        for k in 0..n {
            let i = (k + round * step) % n;
            let variant = if round % 2 == 1 {
                order[n - 1 - i]
            } else {
                order[i]
            };
            if variant.uses_redis() {
                if let Some(rp) = redis_port {
                    wire::redis_bulk(rp, "FLUSHALL").ok();
                }
            }
            let (server, port) =
                start_server(variant, redis_port.filter(|_| variant.uses_redis()))?;
            let cookies = prepare(variant, port, opts.sessions)?;
            let cookie_file = dir.join(format!("cookies-{}.txt", variant.name()));
            std::fs::write(&cookie_file, cookies.join("\n") + "\n")?;
            for &workload in &opts.workloads {
                let ledger = Ledger::read(variant, workload, port, &cookies, redis_port)?;
                let mut counted = Counted::default();
                if opts.warmup > 0 {
                    let w = wrk(opts, &dir, port, workload, &cookie_file, opts.warmup)?;
                    counted.add_wrk(w.requests, w.errors, opts.connections);
                }
                let redis = redis_port.zip(redis_pid).filter(|_| variant.uses_redis());
                let target = Target {
                    variant,
                    server: &server,
                    port,
                    cookies: &cookie_file,
                    redis,
                };
                let ceiling =
                    ceilings
                        .get(variant.ceiling().name())
                        .map(|(c_server, c_port, c_cookies)| Target {
                            variant: variant.ceiling(),
                            server: c_server,
                            port: *c_port,
                            cookies: c_cookies,
                            redis: None,
                        });
                let (mut sample, ceiling) =
                    measure(opts, &dir, ticks, &target, ceiling.as_ref(), workload)?;
                if let Some(c) = ceiling {
                    report_line(round, &c);
                    samples.push(c);
                }
                if let Some(rp) = redis.map(|(rp, _)| rp) {
                    let mut failed = None;
                    let mut answered = 0u64;
                    let (client, _script) = wire::redis_monitor(rp, || {
                        for c in cookies.iter().cycle().take(MONITORED_REQUESTS) {
                            let cookie = (workload != Workload::New).then_some(c.as_str());
                            match wire::http_get(port, workload.path(), cookie) {
                                Ok(r) => answered += u64::from(r.status == 200),
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                    })?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    sample.redis_round_trips_per_req =
                        Some(client as f64 / MONITORED_REQUESTS as f64);
                    counted.lo += answered;
                    counted.hi += MONITORED_REQUESTS as u64;
                    counted.walks += 1;
                    counted.failed += MONITORED_REQUESTS as u64 - answered;
                }
                counted.lo += sample.requests.saturating_sub(sample.errors);
                counted.hi += sample.requests + sample.windows * u64::from(opts.connections);
                counted.walks += sample.windows;
                counted.failed += sample.errors;
                if let Some(before) = ledger {
                    let after = Ledger::read(variant, workload, port, &cookies, redis_port)?
                        .ok_or_else(|| std::io::Error::other("no ledger after the load"))?;
                    if let Some((missing, why)) = before.shortfall(&after, counted) {
                        eprintln!(
                            "sessionkit-bench: {} {}: {why}",
                            variant.name(),
                            workload.name()
                        );
                        sample.errors += missing;
                    }
                }
                report_line(round, &sample);
                samples.push(sample);
            }
            drop(server);
        }
        drop(ceilings);
    }
    drop(redis);
    std::fs::remove_dir_all(&dir).ok();
    Ok(samples)
}

/// `sessionkit-bench clients`: each client of [`crate::clients::CLIENTS`]
/// in its own process on the server's core, against one Redis on the
/// client's core, `rounds` times in turn; prints a markdown table of the
/// medians.
pub fn run_clients(rounds: usize, secs: u64, concurrency: usize) -> std::io::Result<String> {
    use crate::clients::{Sample, CLIENTS};
    use crate::report::median;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sessionkit-bench-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (_redis, port) = start_redis(&dir)?;
    let url = format!("redis://127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for round in 1..=rounds {
        for &name in CLIENTS {
            let out = Command::new("taskset")
                .args(["-c", SERVER_CORE])
                .arg(&exe)
                .args(["client-load", name, &url, &secs.to_string()])
                .arg(concurrency.to_string())
                .stderr(Stdio::inherit())
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let sample = text
                .lines()
                .last()
                .and_then(Sample::parse)
                .filter(|_| out.status.success())
                .ok_or_else(|| std::io::Error::other(format!("client {name} failed: {text:?}")))?;
            eprintln!(
                "round {round} {name:<22} {:>9.0} GET/s  cpu {:>6.2} µs/GET",
                sample.gets_per_sec(),
                sample.cpu_us_per_get()
            );
            samples.entry(name).or_default().push(sample);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cpu = |name: &str| {
        median(samples[name].iter().map(Sample::cpu_us_per_get).collect()).unwrap_or(f64::NAN)
    };
    let base = cpu(CLIENTS[0]);
    let mut table = format!(
        "| client | GET/s (median) | CPU µs per GET (median) | rounds' CPU µs per GET | CPU ÷ {} |\n|---|---:|---:|---|---:|\n",
        CLIENTS[0]
    );
    for &name in CLIENTS {
        let s = &samples[name];
        let each: Vec<String> = s
            .iter()
            .map(|x| format!("{:.2}", x.cpu_us_per_get()))
            .collect();
        table.push_str(&format!(
            "| {name} | {:.0} | {:.2} | {} | {:.2} |\n",
            median(s.iter().map(Sample::gets_per_sec).collect()).unwrap_or(f64::NAN),
            cpu(name),
            each.join(", "),
            cpu(name) / base
        ));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::{Counted, Ledger};

    /// Two passes over the cookies, no failed request.
    fn counted(lo: u64, hi: u64) -> Counted {
        Counted {
            lo,
            hi,
            walks: 2,
            failed: 0,
        }
    }

    /// Ten sessions whose counters add up to `sum`, as even as can be.
    fn sums(sum: u64) -> Ledger {
        counters(
            (0..10)
                .map(|i| sum / 10 + u64::from(i < sum % 10))
                .collect(),
        )
    }

    fn counters(each: Vec<u64>) -> Ledger {
        Ledger::Counters {
            sum: each.iter().sum(),
            unreadable: 0,
            each,
        }
    }

    #[test]
    fn sessions_that_can_no_longer_be_read_are_errors() {
        let before = Ledger::Counters {
            sum: 1_000,
            unreadable: 2,
            each: vec![500, 500, 0, 0],
        };
        let after = Ledger::Counters {
            sum: 1_400,
            unreadable: 10,
            each: vec![700, 700, 0, 0],
        };
        let (missing, why) = before.shortfall(&after, counted(0, 1_000)).unwrap();
        assert_eq!(missing, 8);
        assert!(why.contains("no longer be read"), "{why}");
    }

    #[test]
    fn writes_that_add_up_pass_and_lost_or_doubled_writes_are_errors() {
        let before = sums(1_000);
        // Between what was answered and what was sent: fine.
        for after in [1_500, 1_520, 1_532] {
            assert_eq!(before.shortfall(&sums(after), counted(500, 532)), None);
        }
        // 10 answered writes left no trace.
        let (missing, why) = before.shortfall(&sums(1_490), counted(500, 532)).unwrap();
        assert_eq!(missing, 10);
        assert!(why.contains("lost"), "{why}");
        // More than was sent: applied twice.
        let (extra, why) = before.shortfall(&sums(1_540), counted(500, 532)).unwrap();
        assert_eq!(extra, 8);
        assert!(why.contains("twice"), "{why}");
        // Counters that went down (a store that forgot sessions) are an
        // error even when nothing was counted.
        assert!(before.shortfall(&sums(10), counted(0, 0)).is_some());
    }

    #[test]
    fn writes_that_add_up_but_landed_on_the_wrong_session_are_errors() {
        let before = counters(vec![100; 4]);
        // Two passes of 6 and 5 writes over 4 sessions: rises of 2 or 3.
        let even = counters(vec![103, 103, 103, 102]);
        assert_eq!(before.shortfall(&even, counted(11, 11)), None);
        // The same 11 writes, all saved under the first session.
        let (missing, why) = before
            .shortfall(&counters(vec![111, 100, 100, 100]), counted(11, 11))
            .unwrap();
        assert_eq!(missing, 9, "a spread of 11 where 2 passes allow 2");
        assert!(why.contains("wrong session"), "{why}");
        // Failed requests widen what is allowed, one each.
        let mut with_failures = counted(11, 20);
        with_failures.failed = 9;
        assert_eq!(
            before.shortfall(&counters(vec![111, 100, 100, 100]), with_failures),
            None
        );
    }

    #[test]
    fn new_sessions_must_each_leave_a_key() {
        let before = Ledger::Keys(1_000);
        assert_eq!(
            before.shortfall(&Ledger::Keys(1_700), counted(700, 732)),
            None
        );
        // More keys than sessions is fine (a store may keep an index).
        assert_eq!(
            before.shortfall(&Ledger::Keys(2_500), counted(700, 732)),
            None
        );
        let (missing, _) = before
            .shortfall(&Ledger::Keys(1_000), counted(700, 732))
            .unwrap();
        assert_eq!(missing, 700);
        assert!(before.shortfall(&sums(1_000), counted(0, 0)).is_some());
    }

    #[test]
    fn wrk_counts_give_the_range_of_requests_that_reached_the_server() {
        let mut c = Counted::default();
        c.add_wrk(100, 3, 32);
        c.add_wrk(50, 0, 32);
        assert_eq!((c.lo, c.hi), (147, 214));
        // More errors than responses (connect errors) cannot underflow.
        c.add_wrk(1, 5, 32);
        assert_eq!((c.lo, c.hi), (147, 247));
        assert_eq!((c.walks, c.failed), (3, 8));
    }
}
