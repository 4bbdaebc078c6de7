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
//! assert!(err.to_string().contains("supported values: memory"));
//! ```

use std::env::VarError;
use std::fmt;

use sessionkit::{Config, ConfigError};

/// Which session store the demo runs on (`SESSION_STORE`).
///
/// Only the stores this build has are listed; `cookie`, `redis` and
/// `cluster` arrive with those stores, each as one variant here and one
/// match arm in [`crate::serve_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// [`sessionkit::store::memory::MemoryStore`]: in this process, lost on restart.
    Memory,
}

impl StoreKind {
    /// Every supported kind, in the order the error message lists them.
    pub const ALL: &'static [StoreKind] = &[StoreKind::Memory];

    /// The value `SESSION_STORE` takes for this kind.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
        }
    }
}

/// Which web framework serves the demo (`DEMO_FRAMEWORK`).
///
/// `actix` arrives with the actix integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// axum, through [`sessionkit::SessionLayer`].
    Axum,
}

impl Framework {
    /// Every supported framework.
    pub const ALL: &'static [Framework] = &[Framework::Axum];

    /// The value `DEMO_FRAMEWORK` takes for this framework.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Axum => "axum",
        }
    }
}

/// The demo's configuration. [`DemoConfig::default`] is what an empty
/// environment gives: memory store, axum, port 3000, secure cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// The session store (`SESSION_STORE`, default `memory`).
    pub store: StoreKind,
    /// The framework (`DEMO_FRAMEWORK`, default `axum`).
    pub framework: Framework,
    /// The port on 127.0.0.1 (`PORT`, default 3000; 0 lets the OS pick one).
    pub port: u16,
    /// Drop the cookie's `Secure` attribute (`DEMO_INSECURE_COOKIES=1`).
    /// Browsers accept `Secure` cookies on `http://localhost`, so this is only
    /// needed to reach the demo over plain HTTP under another host name.
    pub insecure_cookies: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            store: StoreKind::Memory,
            framework: Framework::Axum,
            port: 3000,
            insecure_cookies: false,
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
            ("SESSION_STORE", "redis"),
            ("DEMO_FRAMEWORK", "rocket"),
            ("PORT", "70000"),
            ("DEMO_INSECURE_COOKIES", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems().len(), 4);
        let text = err.to_string();
        for needle in [
            "SESSION_STORE=\"redis\" is not supported; supported values: memory",
            "DEMO_FRAMEWORK=\"rocket\" is not supported; supported values: axum",
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
    fn secure_cookies_are_the_default() {
        let c = DemoConfig::default().session_config().unwrap();
        assert!(c.cookie().secure() && c.cookie().http_only());
    }
}
