//! A throw-away `redis-server` for tests (feature `testing`): started on a
//! free port in a temporary directory, with persistence off, and killed by
//! its pid when dropped. Never touches port 6379 or any Redis already running.
//!
//! The server is started by a tiny `sh` guard that kills it (by pid) as soon
//! as the guard's stdin closes, which happens when the [`RedisServer`] is
//! dropped *or* the test process dies in any way: a server kept in a `static`
//! (never dropped) or left by a panicking test does not outlive the tests.
//!
//! ```no_run
//! use sessionkit::testing::redis_server::RedisServer;
//!
//! let server = RedisServer::start().expect("redis-server");
//! println!("{} (pid {}), also at {}", server.url(), server.pid(), server.unix_url());
//! // Fault tests: pause it, resume it, kill -9 it, restart it on the same port.
//! server.pause().unwrap();
//! server.resume().unwrap();
//! # let mut server = server;
//! server.restart().unwrap();
//! ```
//!
//! Needs `/usr/bin/redis-server` (or one on `PATH`); when missing, starting
//! fails with a message naming the package to install.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// What to install when `redis-server` is missing.
pub const INSTALL_HINT: &str =
    "redis-server not found: install it with `apt-get install redis-server` (Debian/Ubuntu)";

/// A running `redis-server` owned by the test. Dropping it kills the process.
#[derive(Debug)]
pub struct RedisServer {
    guard: Guard,
    port: u16,
    extra: Vec<OsString>,
    dir: tempfile::TempDir,
}

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// The binary is not installed.
    #[error("{INSTALL_HINT}")]
    NotInstalled,
    /// Starting, signalling or reaching the process failed.
    #[error("test redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer `PING` in time.
    #[error("test redis-server did not answer PING within {0:?}")]
    NotReady(Duration),
}

fn binary() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/redis-server");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> std::io::Result<u16> {
    // The OS picks a free port; it stays free in practice for the moment
    // until redis binds it (a clash shows as a failed start and is retried).
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Self, RedisServerError> {
        Self::start_with_args(Vec::<OsString>::new())
    }

    /// Starts a server with extra `redis-server` arguments (e.g. TLS
    /// settings), kept for [`RedisServer::restart`].
    pub fn start_with_args(
        extra: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Self, RedisServerError> {
        let extra: Vec<OsString> = extra.into_iter().map(Into::into).collect();
        let mut last = None;
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("sessionkit-redis-")
                .tempdir()?;
            let port = free_port()?;
            let guard = spawn(&dir, port, &extra)?;
            let mut server = RedisServer {
                guard,
                port,
                extra: extra.clone(),
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                // Most likely the port was taken meanwhile: try another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RedisServerError::NotReady(Duration::ZERO)))
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, for signals in fault tests.
    pub fn pid(&self) -> u32 {
        self.guard.pid
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The path of the server's unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `unix://<socket path>`.
    pub fn unix_url(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// Sends one inline command and returns the raw reply (for tests that
    /// inspect the server: `INFO commandstats`, `CONFIG RESETSTAT`, `DBSIZE`).
    pub fn command(&self, line: &str) -> Result<String, RedisServerError> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{line}\r\nQUIT\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.trim_end_matches("+OK\r\n").to_owned())
    }

    /// Stops the process with SIGSTOP (it keeps its connections but answers nothing).
    pub fn pause(&self) -> Result<(), RedisServerError> {
        self.signal("STOP")
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) -> Result<(), RedisServerError> {
        self.signal("CONT")
    }

    /// Kills the process with SIGKILL (data is lost: persistence is off).
    pub fn kill(&mut self) -> Result<(), RedisServerError> {
        self.kill_now();
        Ok(())
    }

    /// Kills the process if it runs and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill_now();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.guard = spawn(&self.dir, self.port, &self.extra)?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                // The old socket may linger a moment; try again.
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => self.kill_now(),
            }
        }
    }

    fn signal(&self, name: &str) -> Result<(), RedisServerError> {
        // `kill(1)` rather than libc: this crate forbids `unsafe`.
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{name} failed: {status}")).into())
        }
    }

    fn kill_now(&mut self) {
        // Closing the guard's stdin makes it `kill -9` the server; then reap it.
        drop(self.guard.stdin.take());
        let _ = self.guard.shell.wait();
    }

    fn wait_ready(&mut self) -> Result<(), RedisServerError> {
        let limit = Duration::from_secs(10);
        let start = Instant::now();
        while start.elapsed() < limit {
            if !alive(self.guard.pid) {
                return Err(std::io::Error::other("redis-server exited during start-up").into());
            }
            // Our own process must answer, not some other server that took the port.
            if let Ok(reply) = self.command("INFO server") {
                if reply.contains(&format!("process_id:{}\r\n", self.guard.pid)) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(RedisServerError::NotReady(limit))
    }
}

/// Whether a process runs (not gone, not a zombie). Where `/proc` is
/// missing, assume it does and let the readiness check time out.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => !std::path::Path::new("/proc/self").exists(),
    }
}

/// The `sh` process that owns one `redis-server`.
#[derive(Debug)]
struct Guard {
    shell: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

/// Starts the server in the background, prints its pid, waits for stdin to
/// close (EOF on drop or when the test process dies) and kills it by pid.
const GUARD_SCRIPT: &str = r#"bin="$1"; shift
"$bin" "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
read -r _ || true
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    extra: &[OsString],
) -> Result<Guard, RedisServerError> {
    let bin = binary().ok_or(RedisServerError::NotInstalled)?;
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(GUARD_SCRIPT)
        .arg("sessionkit-redis-guard")
        .arg(bin)
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir.path())
        .arg("--unixsocket")
        .arg(dir.path().join("redis.sock"))
        .arg("--unixsocketperm")
        .arg("700")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdin = shell.stdin.take();
    let mut line = String::new();
    if let Some(out) = shell.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let Ok(pid) = line.trim().parse() else {
        drop(stdin);
        let _ = shell.wait();
        return Err(std::io::Error::other("redis-server guard did not report a pid").into());
    };
    Ok(Guard { shell, stdin, pid })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGCONT first: a paused process would not die until resumed.
        let _ = self.resume();
        self.kill_now();
    }
}
