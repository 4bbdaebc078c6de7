//! The real demo binary as a child process: started with a clean
//! environment plus the variables a test gives, its output read line by
//! line, killed by its pid when the test ends.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-demo");

/// Kills the child (by its pid) if a test fails before stopping it.
pub struct Demo {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// What it printed up to its ready line (set by [`Demo::start`]).
    pub ready: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

pub fn spawn(env: &[(&str, &str)]) -> Demo {
    let mut cmd = Command::new(BIN);
    for var in [
        "SESSION_STORE",
        "DEMO_FRAMEWORK",
        "PORT",
        "DEMO_INSECURE_COOKIES",
        "REDIS_URL",
        "SESSION_SECRET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the demo binary starts");
    let (tx, lines) = mpsc::channel();
    forward(child.stdout.take().unwrap(), tx.clone());
    forward(child.stderr.take().unwrap(), tx);
    Demo {
        child,
        lines,
        ready: String::new(),
    }
}

/// Reads output lines until one contains `needle`; returns everything read.
pub fn wait_for(demo: &Demo, needle: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match demo.lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return Ok(seen);
                }
            }
            Err(_) => return Err(seen),
        }
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Demo {
    /// Starts the binary with `env` plus `PORT` set to a free port, waits
    /// for its ready line and returns it with its base URL.
    pub fn start(env: &[(&str, &str)]) -> (Demo, String) {
        let port = free_port().to_string();
        let mut all = env.to_vec();
        all.push(("PORT", &port));
        let mut demo = spawn(&all);
        let out = wait_for(
            &demo,
            "sessionkit-demo listening on",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|seen| panic!("no ready line; output so far:\n{seen}"));
        assert!(out.contains(&format!("http://localhost:{port} ")), "{out}");
        demo.ready = out;
        (demo, format!("http://127.0.0.1:{port}"))
    }

    /// Waits for the process to exit (it must, within `within`) and returns
    /// its status with everything it printed.
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            out.push_str(&line);
            out.push('\n');
        }
        (status, out)
    }
}
