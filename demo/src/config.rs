//! The demo's start-up configuration, read once from the environment.
//!
//! Every variable is parsed fallibly and every problem is reported together,
//! naming the variable and the values it accepts, so a typo fails the start
//! with a message that says how to fix it.
//!
//! ```
//! use sessionkit_demo::config::{DemoConfig, StoreKind};
//!
//! let vars = |name: &str| match name {
//!     "SESSION_STORE" => Ok("memory".to_owned()),
//!     "PORT" => Ok("8080".to_owned()),
//!     _ => Err(std::env::VarError::NotPresent),
//! };
//! let config = DemoConfig::from_vars(vars).unwrap();
//! assert_eq!(config.store, StoreKind::Memory);
//! assert_eq!(config.port, 8080);
//!
//! let bad = |name: &str| match name {
//!     "SESSION_STORE" => Ok("mongo".to_owned()),
//!     _ => Err(std::env::VarError::NotPresent),
//! };
//! let err = DemoConfig::from_vars(bad).unwrap_err();
//! assert!(err.to_string().contains("supported values: memory, redis, cookie, cluster"));
//! ```

use std::env::VarError;
use std::fmt;

use sessionkit::{Config, ConfigError};

/// Which session store the demo runs on (`SESSION_STORE`).
///
/// Each kind is one variant here and one match arm in [`crate::serve_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// [`sessionkit::store::memory::MemoryStore`]: in this process, lost on restart.
    Memory,
    /// [`sessionkit::store::redis::RedisStore`] at `REDIS_URL`, wrapped in
    /// [`sessionkit::resilience::Resilient`].
    Redis,
    /// [`sessionkit::store::cookie::CookieStore`]: the whole session sealed
    /// in the cookie with a key from `SESSION_SECRET`; nothing server-side.
    Cookie,
    /// [`sessionkit::store::cluster::ClusteredStore`]: Redis at `REDIS_URL`
    /// with a local cache per process, kept honest over pub/sub with
    /// messages authenticated by a key from `SESSION_SECRET`; wrapped in
    /// [`sessionkit::resilience::Resilient`].
    Cluster,
}

impl StoreKind {
    /// Every supported kind, in the order the error message lists them.
    pub const ALL: &'static [StoreKind] = &[
        StoreKind::Memory,
        StoreKind::Redis,
        StoreKind::Cookie,
        StoreKind::Cluster,
    ];

    /// The value `SESSION_STORE` takes for this kind.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
            StoreKind::Cookie => "cookie",
            StoreKind::Cluster => "cluster",
        }
    }

    /// Whether this store talks to the Redis at `REDIS_URL`.
    pub fn uses_redis(self) -> bool {
        matches!(self, StoreKind::Redis | StoreKind::Cluster)
    }

    /// Whether this store derives keys from `SESSION_SECRET` (the Redis
    /// store when it is set: it then seals the stored values), so a secret
    /// given for it must be long enough.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            StoreKind::Cookie | StoreKind::Cluster | StoreKind::Redis
        )
    }
}

/// Which web framework serves the demo (`DEMO_FRAMEWORK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// axum, through [`sessionkit::SessionLayer`].
    Axum,
    /// actix-web 4, through [`sessionkit::http::actix::SessionMiddleware`].
    Actix,
}

impl Framework {
    /// Every supported framework.
    pub const ALL: &'static [Framework] = &[Framework::Axum, Framework::Actix];

    /// The value `DEMO_FRAMEWORK` takes for this framework.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Axum => "axum",
            Framework::Actix => "actix",
        }
    }
}

/// `SESSION_SECRET`: the secret the cookie and cluster stores derive their
/// keys from. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(String);

impl SessionSecret {
    /// Wraps a secret (at least [`sessionkit::keys::MIN_SECRET_LEN`] bytes
    /// to be accepted by the key ring).
    pub fn new(secret: impl Into<String>) -> Self {
        SessionSecret(secret.into())
    }

    /// The secret itself, for the key ring. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// `REDIS_URL` when unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The demo's configuration. [`DemoConfig::default`] is what an empty
/// environment gives: memory store, axum, port 3000, secure cookies.
#[derive(Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// The session store (`SESSION_STORE`, default `memory`).
    pub store: StoreKind,
    /// The framework (`DEMO_FRAMEWORK`, default `axum`).
    pub framework: Framework,
    /// The port on 127.0.0.1 (`PORT`, default 3000; 0 lets the OS pick one).
    pub port: u16,
    /// Drop the cookie's `Secure` attribute (`DEMO_INSECURE_COOKIES=1`).
    /// Chrome and Firefox accept `Secure` cookies on `http://localhost`, so
    /// this is needed only under another host name over plain HTTP, or in a
    /// browser that refuses them there (Safari has).
    pub insecure_cookies: bool,
    /// The Redis of the `redis` and `cluster` stores (`REDIS_URL`, default
    /// [`DEFAULT_REDIS_URL`]). It may hold a password: it is never logged.
    pub redis_url: String,
    /// `SESSION_SECRET`, for the `cookie` and `cluster` stores. When unset
    /// there, a throw-away secret is generated at start (with a warning).
    pub session_secret: Option<SessionSecret>,
}

/// `REDIS_URL` without its password (`redis://user:***@host`), for `Debug`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig")
            .field("store", &self.store)
            .field("framework", &self.framework)
            .field("port", &self.port)
            .field("insecure_cookies", &self.insecure_cookies)
            .field("redis_url", &without_password(&self.redis_url))
            .field("session_secret", &self.session_secret)
            .finish()
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            store: StoreKind::Memory,
            framework: Framework::Axum,
            port: 3000,
            insecure_cookies: false,
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            session_secret: None,
        }
    }
}

/// One thing wrong with the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemoConfigProblem {
    /// A variable holds a value outside the supported set.
    #[error("{var}={value:?} is not supported; supported values: {supported}")]
    Unsupported {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// The accepted values, comma-separated.
        supported: String,
    },
    /// `PORT` is not a number from 0 to 65535.
    #[error("PORT={0:?} is not a port number (0 to 65535; 0 lets the OS pick one)")]
    Port(String),
    /// `REDIS_URL` is not a URL the Redis client takes. The value is not
    /// quoted: it may hold a password.
    #[error(
        "REDIS_URL is not a Redis URL (expected redis://[user:password@]host:port[/db] \
         or unix:///path/to/redis.sock; the value is not shown as it may hold a password)"
    )]
    RedisUrl,
    /// `SESSION_SECRET` is too short for the key ring. The value is not quoted.
    #[error(
        "SESSION_SECRET is {0} bytes; at least {min} are required (e.g. `openssl rand -base64 32`)",
        min = sessionkit::keys::MIN_SECRET_LEN
    )]
    SessionSecretTooShort(usize),
    /// A variable is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUnicode(&'static str),
}

/// Every problem found in the environment, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfigError {
    problems: Vec<DemoConfigProblem>,
}

impl DemoConfigError {
    /// The problems, in the order the variables were read.
    pub fn problems(&self) -> &[DemoConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for DemoConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid demo configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DemoConfigError {}

fn choose<K: Copy>(
    var: &'static str,
    raw: &str,
    all: &[K],
    name: impl Fn(K) -> &'static str,
) -> Result<K, DemoConfigProblem> {
    let wanted = raw.trim().to_ascii_lowercase();
    all.iter()
        .copied()
        .find(|k| name(*k) == wanted)
        .ok_or_else(|| DemoConfigProblem::Unsupported {
            var,
            value: raw.to_owned(),
            supported: all.iter().map(|k| name(*k)).collect::<Vec<_>>().join(", "),
        })
}

/// Whether `url` has a scheme and shape the Redis client takes (the client
/// checks the rest when connecting).
fn is_redis_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return false;
    };
    matches!(scheme, "redis" | "unix" | "redis+unix")
        && !rest.is_empty()
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl DemoConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, DemoConfigError> {
        Self::from_vars(|name| std::env::var(name))
    }

    /// Reads the configuration through `var` (shaped like [`std::env::var`]),
    /// so tests can pass any environment. An empty value counts as unset.
    pub fn from_vars(
        var: impl Fn(&str) -> Result<String, VarError>,
    ) -> Result<Self, DemoConfigError> {
        let mut problems = Vec::new();
        let mut config = DemoConfig::default();
        let mut get = |name: &'static str| match var(name) {
            Ok(v) if v.trim().is_empty() => None,
            Ok(v) => Some(v),
            Err(VarError::NotPresent) => None,
            Err(VarError::NotUnicode(_)) => {
                problems.push(DemoConfigProblem::NotUnicode(name));
                None
            }
        };
        let store = get("SESSION_STORE");
        let framework = get("DEMO_FRAMEWORK");
        let port = get("PORT");
        let insecure = get("DEMO_INSECURE_COOKIES");
        let redis_url = get("REDIS_URL");
        let secret = get("SESSION_SECRET");
        if let Some(v) = store {
            match choose("SESSION_STORE", &v, StoreKind::ALL, StoreKind::name) {
                Ok(k) => config.store = k,
                Err(p) => problems.push(p),
            }
        }
        if let Some(v) = framework {
            match choose("DEMO_FRAMEWORK", &v, Framework::ALL, Framework::name) {
                Ok(k) => config.framework = k,
                Err(p) => problems.push(p),
            }
        }
        if let Some(v) = port {
            match v.trim().parse::<u16>() {
                Ok(p) => config.port = p,
                Err(_) => problems.push(DemoConfigProblem::Port(v)),
            }
        }
        if let Some(v) = insecure {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => config.insecure_cookies = true,
                "0" | "false" | "no" => config.insecure_cookies = false,
                _ => problems.push(DemoConfigProblem::Unsupported {
                    var: "DEMO_INSECURE_COOKIES",
                    value: v,
                    supported: "1, true, yes, 0, false, no".into(),
                }),
            }
        }
        if let Some(v) = redis_url {
            config.redis_url = v.trim().to_owned();
        }
        if config.store.uses_redis() && !is_redis_url(&config.redis_url) {
            problems.push(DemoConfigProblem::RedisUrl);
        }
        // Taken as it is (not trimmed): every byte is key material.
        config.session_secret = secret.map(SessionSecret);
        if let Some(secret) = &config.session_secret {
            let len = secret.expose().len();
            if config.store.uses_secret() && len < sessionkit::keys::MIN_SECRET_LEN {
                problems.push(DemoConfigProblem::SessionSecretTooShort(len));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(DemoConfigError { problems })
        }
    }

    /// The session configuration this demo configuration asks for: the
    /// library's secure defaults, minus `Secure` when `insecure_cookies` is set.
    pub fn session_config(&self) -> Result<Config, ConfigError> {
        let builder = Config::builder();
        let builder = if self.insecure_cookies {
            builder.dangerously_allow_insecure_http()
        } else {
            builder
        };
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Result<String, VarError> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .ok_or(VarError::NotPresent)
        }
    }

    #[test]
    fn an_empty_environment_gives_the_defaults() {
        assert_eq!(
            DemoConfig::from_vars(env(&[])).unwrap(),
            DemoConfig::default()
        );
    }

    #[test]
    fn values_are_read_case_insensitively_and_trimmed() {
        let c = DemoConfig::from_vars(env(&[
            ("SESSION_STORE", " Memory "),
            ("DEMO_FRAMEWORK", "AXUM"),
            ("PORT", "0"),
            ("DEMO_INSECURE_COOKIES", "1"),
        ]))
        .unwrap();
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.framework, Framework::Axum);
        assert_eq!(c.port, 0);
        assert!(c.insecure_cookies);
        assert!(!c.session_config().unwrap().cookie().secure());
    }

    #[test]
    fn every_bad_variable_is_reported_with_what_it_accepts() {
        let err = DemoConfig::from_vars(env(&[
            ("SESSION_STORE", "mongo"),
            ("DEMO_FRAMEWORK", "rocket"),
            ("PORT", "70000"),
            ("DEMO_INSECURE_COOKIES", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems().len(), 4);
        let text = err.to_string();
        for needle in [
            "SESSION_STORE=\"mongo\" is not supported; supported values: memory, redis, cookie, cluster",
            "DEMO_FRAMEWORK=\"rocket\" is not supported; supported values: axum, actix",
            "PORT=\"70000\"",
            "DEMO_INSECURE_COOKIES=\"maybe\"",
        ] {
            assert!(text.contains(needle), "{text} lacks {needle}");
        }
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        for port in ["-1", "3000x", "99999999999999999999", "\u{0}", "٣٠٠٠"] {
            let var = move |name: &str| {
                if name == "PORT" {
                    Ok(port.to_owned())
                } else {
                    Err(VarError::NotPresent)
                }
            };
            assert!(DemoConfig::from_vars(var).is_err(), "{port:?}");
        }
        let not_unicode = |name: &str| {
            if name == "SESSION_STORE" {
                Err(VarError::NotUnicode(OsString::from("x")))
            } else {
                Err(VarError::NotPresent)
            }
        };
        let err = DemoConfig::from_vars(not_unicode).unwrap_err();
        assert_eq!(
            err.problems(),
            &[DemoConfigProblem::NotUnicode("SESSION_STORE")]
        );
    }

    #[test]
    fn redis_urls_are_checked_only_for_the_redis_store_and_never_quoted() {
        let c = DemoConfig::from_vars(env(&[
            ("SESSION_STORE", "redis"),
            ("DEMO_FRAMEWORK", "actix"),
        ]))
        .unwrap();
        assert_eq!(c.store, StoreKind::Redis);
        assert_eq!(c.framework, Framework::Actix);
        assert_eq!(c.redis_url, DEFAULT_REDIS_URL);
        let c = DemoConfig::from_vars(env(&[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", " redis://:pw@db:6380/2 "),
        ]))
        .unwrap();
        assert_eq!(c.redis_url, "redis://:pw@db:6380/2");
        let printed = format!("{c:?}");
        assert!(!printed.contains("pw"), "{printed}");
        assert!(printed.contains("redis://:***@db:6380/2"), "{printed}");
        assert!(DemoConfig::from_vars(env(&[("REDIS_URL", "nonsense")])).is_ok());
        for bad in [
            "nonsense-with-secret",
            "http://secret@host",
            "redis://",
            "redis://se cret@host",
            "redis://secret@host\r\nFLUSHALL",
        ] {
            let var = move |name: &str| match name {
                "SESSION_STORE" => Ok("redis".to_owned()),
                "REDIS_URL" => Ok(bad.to_owned()),
                _ => Err(VarError::NotPresent),
            };
            let err = DemoConfig::from_vars(var).unwrap_err();
            assert_eq!(err.problems(), &[DemoConfigProblem::RedisUrl], "{bad:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn the_session_secret_is_checked_for_the_stores_that_use_it_and_never_printed() {
        let secret = "s3cret-".repeat(5);
        let var = |store: &'static str, secret: String| {
            move |name: &str| match name {
                "SESSION_STORE" => Ok(store.to_owned()),
                "SESSION_SECRET" => Ok(secret.clone()),
                _ => Err(VarError::NotPresent),
            }
        };
        let users = StoreKind::ALL.iter().filter(|k| k.uses_secret());
        for store in users.map(|k| k.name()) {
            let c = DemoConfig::from_vars(var(store, secret.clone())).unwrap();
            assert_eq!(c.session_secret.as_ref().unwrap().expose(), secret);
            assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
            let err = DemoConfig::from_vars(var(store, "s3cret-short".into())).unwrap_err();
            assert_eq!(
                err.problems(),
                &[DemoConfigProblem::SessionSecretTooShort(12)]
            );
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        // Not used by the memory store: not checked.
        assert!(DemoConfig::from_vars(var("memory", "short".into())).is_ok());
        let c = DemoConfig::from_vars(env(&[("SESSION_STORE", "cookie")])).unwrap();
        assert_eq!(c.session_secret, None);
    }

    #[test]
    fn secure_cookies_are_the_default() {
        let c = DemoConfig::default().session_config().unwrap();
        assert!(c.cookie().secure() && c.cookie().http_only());
    }
}
