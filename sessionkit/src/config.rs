//! [`Config`]: every setting in one builder, validated once at start-up.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::{Config, SameSite};
//!
//! let config = Config::builder()
//!     .cookie_name("__Host-sid")
//!     .idle_timeout(Duration::from_secs(15 * 60))
//!     .absolute_lifetime(Duration::from_secs(8 * 3600))
//!     .same_site(SameSite::Strict)
//!     .build()
//!     .expect("valid configuration");
//! assert_eq!(config.cookie().name(), "__Host-sid");
//!
//! // Every problem is reported at once.
//! let err = Config::builder()
//!     .cookie_name("bad name;")
//!     .idle_timeout(Duration::ZERO)
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.problems().len(), 2);
//! ```
//!
//! Defaults are the secure ones: cookie `__Host-id`, `HttpOnly`, `Secure`,
//! `SameSite=Lax`, `Path=/`, no `Domain`; 30 minutes idle (sliding) and
//! 12 hours absolute. Turning `Secure` off needs
//! [`ConfigBuilder::dangerously_allow_insecure_http`].
//!
//! The default name carries the `__Host-` prefix: browsers then refuse a
//! cookie of that name set by a sibling subdomain or for another path
//! (which would otherwise sit beside ours, make every request ambiguous
//! and log the user out: "cookie tossing"). With a `Domain` or a `Path`
//! other than `/` the default is `__Secure-id`, and without `Secure` plain
//! `id`; a name given with [`ConfigBuilder::cookie_name`] is kept as given.
//!
//! ```
//! use sessionkit::Config;
//!
//! assert_eq!(Config::default().cookie().name(), "__Host-id");
//! let shared = Config::builder().cookie_domain("example.com").build().unwrap();
//! assert_eq!(shared.cookie().name(), "__Secure-id");
//! let local = Config::builder().dangerously_allow_insecure_http().build().unwrap();
//! assert_eq!(local.cookie().name(), "id");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::binding::{BindingConfig, TrustedProxies};
use crate::events::{Callbacks, SessionEvent};
use crate::expiry::{Clock, ExpiryPolicy, SystemClock};

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level cross-site navigations (the default).
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

/// Cookie attributes of the session cookie.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
}

impl CookieConfig {
    /// The cookie name, matched exactly on requests.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether the cookie carries `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }
    /// Whether the cookie carries `HttpOnly`.
    pub fn http_only(&self) -> bool {
        self.http_only
    }
    /// The `SameSite` attribute.
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }
    /// The `Path` attribute.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The `Domain` attribute, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
}

/// A validated configuration. Build one with [`Config::builder`].
#[derive(Clone)]
pub struct Config {
    pub(crate) cookie: CookieConfig,
    pub(crate) expiry: ExpiryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) callbacks: Callbacks,
    pub(crate) binding: BindingConfig,
    pub(crate) binding_key: Option<BindingKey>,
}

/// The secret key client-binding fingerprints are computed with (at least 32
/// bytes). Derive it from your key material, e.g. with a dedicated HKDF purpose.
/// The key bytes are zeroized when the last clone is dropped.
#[derive(Clone)]
pub struct BindingKey(Arc<[Zeroizing<Vec<u8>>]>);

impl BindingKey {
    /// Wraps key bytes. Fewer than 32 bytes is a configuration error at `build()`.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        BindingKey(Arc::from(vec![Zeroizing::new(bytes.as_ref().to_vec())]))
    }

    /// The key ring's binding-fingerprint subkeys (HKDF purpose
    /// [`KeyPurpose::BindingFingerprint`](crate::keys::KeyPurpose::BindingFingerprint)):
    /// sessions are bound under the current key; fingerprints made under a
    /// previous key still match, and are re-made under the current key on
    /// the session's next write.
    #[cfg(feature = "crypto")]
    pub fn from_key_ring(ring: &crate::keys::KeyRing) -> Self {
        use crate::keys::KeyPurpose;
        let current = ring.current_id();
        let (_, key) = ring.current(KeyPurpose::BindingFingerprint);
        let mut keys = vec![Zeroizing::new(key.expose_secret().to_vec())];
        keys.extend(
            ring.subkeys(KeyPurpose::BindingFingerprint)
                .filter(|(id, _)| *id != current)
                .map(|(_, k)| Zeroizing::new(k.expose_secret().to_vec())),
        );
        BindingKey(Arc::from(keys))
    }

    /// The current key.
    pub(crate) fn current(&self) -> &[u8] {
        &self.0[0]
    }

    /// The previous keys, newest first.
    pub(crate) fn previous(&self) -> impl Iterator<Item = &[u8]> {
        self.0[1..].iter().map(|k| k.as_slice())
    }

    fn shortest(&self) -> usize {
        self.0.iter().map(|k| k.len()).min().unwrap_or(0)
    }
}

impl fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingKey(<redacted>)")
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("cookie", &self.cookie)
            .field("expiry", &self.expiry)
            .field("callbacks", &self.callbacks)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Starts a builder with the secure defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
    /// The cookie attributes.
    pub fn cookie(&self) -> &CookieConfig {
        &self.cookie
    }
    /// The expiry rules.
    pub fn expiry(&self) -> &ExpiryPolicy {
        &self.expiry
    }
    /// The clock sessions are timed with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    /// What sessions are bound to.
    pub fn binding(&self) -> &BindingConfig {
        &self.binding
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::builder().build().expect("the defaults are valid")
    }
}

/// The longest idle timeout or absolute lifetime a configuration accepts:
/// ten years.
///
/// Browsers keep a cookie at most 400 days whatever its `Max-Age` (Chrome;
/// RFC 6265bis asks for such a cap): with both durations longer than that,
/// a client idle for 400 days loses its cookie before the server-side
/// deadline. Every save sends a fresh `Max-Age`, so an active client keeps
/// it.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The cookie name is empty or holds characters a cookie name cannot hold.
    #[error(
        "cookie name {0:?} is not a valid cookie name (use letters, digits and !#$%&'*+-.^_`|~)"
    )]
    CookieName(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A duration longer than [`MAX_LIFETIME`] (ten years): a deadline that
    /// far could not be represented on every platform, and no session should
    /// live that long; a session meant to "never" expire is a long-lived
    /// token, not a session.
    #[error("{0} is longer than ten years")]
    DurationTooLong(&'static str),
    /// The idle timeout is longer than the absolute lifetime.
    #[error("idle_timeout ({idle:?}) is longer than absolute_lifetime ({absolute:?})")]
    IdleLongerThanAbsolute {
        /// The idle timeout.
        idle: Duration,
        /// The absolute lifetime.
        absolute: Duration,
    },
    /// `SameSite=None` was asked for with [`ConfigBuilder::same_site`]: it
    /// sends the session cookie on cross-site requests (a CSRF exposure), so
    /// it takes the explicit
    /// [`ConfigBuilder::dangerously_allow_cross_site_cookie`].
    #[error(
        "SameSite=None sends the session cookie on cross-site requests (CSRF exposure); \
         call dangerously_allow_cross_site_cookie() to choose it"
    )]
    SameSiteNoneNotConfirmed,
    /// `SameSite=None` was asked for without `Secure`; browsers reject such cookies.
    #[error("SameSite=None requires Secure; browsers reject the cookie otherwise")]
    SameSiteNoneWithoutSecure,
    /// A `__Host-` cookie must be Secure, have Path=/ and no Domain.
    #[error("a __Host- cookie must be Secure, use Path=/ and have no Domain (use __Secure- with a Domain)")]
    HostPrefix,
    /// A `__Secure-` cookie must be Secure.
    #[error("a __Secure- cookie must be Secure")]
    SecurePrefix,
    /// The path does not start with `/` or holds control characters or `;`.
    #[error("cookie path {0:?} must start with '/' and hold no ';' or control characters")]
    Path(String),
    /// The domain is not a host name (labels of 1 to 63 letters, digits and
    /// inner hyphens, dot-separated, at most 253 bytes; one leading dot is
    /// allowed and ignored, as browsers do). A browser drops a cookie whose
    /// `Domain` it cannot use, and every request would then start afresh.
    #[error("cookie domain {0:?} is not a valid domain")]
    Domain(String),
    /// Client binding is on but no binding key (of at least 32 bytes) was given.
    #[error("client binding needs a binding_key of at least 32 bytes")]
    BindingKey,
    /// A trusted proxy is neither an IP address nor a CIDR network.
    #[error(transparent)]
    TrustedProxy(#[from] crate::binding::InvalidProxy),
    /// Trusted proxies were given but IP binding is off, so they would do nothing.
    #[error("trusted_proxies only matter with bind_to_ip(true)")]
    ProxiesWithoutIpBinding,
    /// A trusted-proxy range so broad that any client in it could claim
    /// any address (see [`TrustedProxies::too_broad`]; `0.0.0.0/0`).
    #[error(
        "trusted proxy range {0} is broader than any network of proxies: every client in it \
         could choose the address its session is bound to (list your proxies' own ranges, or \
         call dangerously_trust_broad_proxy_ranges)"
    )]
    ProxyRangeTooBroad(String),
    /// A proxy header was chosen but no proxy is trusted, so none is read.
    #[error("proxy_header only matters with trusted_proxies")]
    ProxyHeaderWithoutProxies,
    /// Binding options were given but no binding is on, so they would do nothing.
    #[error("destroy_on_binding_mismatch / binding_key need bind_to_ip or bind_to_user_agent")]
    BindingOptionsWithoutBinding,
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid session configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
impl std::error::Error for ConfigError {}

/// Builder for [`Config`]; methods consume and return the builder.
#[must_use = "call .build() to get a Config"]
pub struct ConfigBuilder {
    cookie: CookieConfig,
    expiry: ExpiryPolicy,
    clock: Arc<dyn Clock>,
    callbacks: Callbacks,
    binding: BindingConfig,
    binding_key: Option<BindingKey>,
    trusted_proxies: Vec<String>,
    proxy_header: Option<crate::binding::ProxyHeader>,
    broad_proxy_ranges: bool,
    cross_site_cookie: bool,
    /// `cookie_name` was called (otherwise the name follows the attributes:
    /// see [`default_cookie_name`]).
    cookie_name_chosen: bool,
}

/// The cookie name a configuration gets when it names none: the strictest
/// prefix its attributes allow.
fn default_cookie_name(c: &CookieConfig) -> &'static str {
    match (c.secure, c.path == "/" && c.domain.is_none()) {
        (true, true) => "__Host-id",
        (true, false) => "__Secure-id",
        (false, _) => "id",
    }
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            cookie: CookieConfig {
                name: String::new(), // chosen in `build` unless given
                secure: true,
                http_only: true,
                same_site: SameSite::Lax,
                path: "/".into(),
                domain: None,
            },
            expiry: ExpiryPolicy::default(),
            clock: Arc::new(SystemClock),
            callbacks: Callbacks::default(),
            binding: BindingConfig::default(),
            binding_key: None,
            trusted_proxies: Vec::new(),
            proxy_header: None,
            broad_proxy_ranges: false,
            cross_site_cookie: false,
            cookie_name_chosen: false,
        }
    }
}

macro_rules! callback_setter {
    ($(#[$doc:meta])* $name:ident, $slot:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, f: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
            self.callbacks.$slot = Some(Arc::new(f));
            self
        }
    };
}

impl ConfigBuilder {
    /// The session cookie's name. `__Host-` and `__Secure-` prefixes are
    /// validated against the other attributes. The default follows them:
    /// `__Host-id`, or `__Secure-id` with a `Domain` or a `Path` other than
    /// `/`, or `id` without `Secure` (see the [module docs](self)).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self.cookie_name_chosen = true;
        self
    }
    /// The `SameSite` attribute (default `Lax`; `Strict` is stricter).
    /// `None` is refused here: see
    /// [`ConfigBuilder::dangerously_allow_cross_site_cookie`].
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }
    /// `SameSite=None`: the browser sends the session cookie on cross-site
    /// requests too (an application embedded in another site's frame, a
    /// cross-site API called with credentials), so any site can make
    /// requests that carry the user's session: protect every state-changing
    /// route with CSRF tokens. Needs `Secure` (browsers drop the cookie
    /// otherwise).
    ///
    /// ```
    /// use sessionkit::{Config, SameSite};
    ///
    /// assert!(Config::builder().same_site(SameSite::None).build().is_err());
    /// let config = Config::builder().dangerously_allow_cross_site_cookie().build().unwrap();
    /// assert_eq!(config.cookie().same_site(), SameSite::None);
    /// ```
    pub fn dangerously_allow_cross_site_cookie(mut self) -> Self {
        self.cookie.same_site = SameSite::None;
        self.cross_site_cookie = true;
        self
    }
    /// The `Path` attribute (default `/`).
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }
    /// The `Domain` attribute (default none: host-only).
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }
    /// Drops `HttpOnly`, letting page scripts read the session cookie (and
    /// any injected script steal it). Only for applications that must.
    pub fn dangerously_allow_script_access(mut self) -> Self {
        self.cookie.http_only = false;
        self
    }
    /// Drops `Secure`, so the cookie also travels over plain HTTP where
    /// anyone on the path can read it. For local development only.
    pub fn dangerously_allow_insecure_http(mut self) -> Self {
        self.cookie.secure = false;
        self
    }
    /// Time without activity after which a session is dead (default 30 min).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.expiry.idle_timeout = d;
        self
    }
    /// Time after creation after which a session is dead whatever the activity (default 12 h).
    pub fn absolute_lifetime(mut self, d: Duration) -> Self {
        self.expiry.absolute_lifetime = d;
        self
    }
    /// Whether activity moves the idle deadline (default true).
    pub fn sliding_expiration(mut self, on: bool) -> Self {
        self.expiry.sliding = on;
        self
    }
    /// How long a request may run after loading its session without losing
    /// its changes to the idle deadline (default 60 s, capped at half the
    /// idle timeout): a load with less than this left records the activity
    /// before the handler runs. See [`ExpiryPolicy::touch_on_load`].
    pub fn request_allowance(mut self, d: Duration) -> Self {
        self.expiry.request_allowance = d;
        self
    }
    /// The clock (default the system clock); tests inject [`crate::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Binds sessions to the client IP address (see [`crate::binding`]).
    pub fn bind_to_ip(mut self, on: bool) -> Self {
        self.binding.ip = on;
        self
    }
    /// Binds sessions to the `User-Agent` header.
    pub fn bind_to_user_agent(mut self, on: bool) -> Self {
        self.binding.user_agent = on;
        self
    }
    /// Proxies (addresses or CIDR networks) whose forwarding header is
    /// believed for the client IP: `X-Forwarded-For` unless
    /// [`ConfigBuilder::proxy_header`] says `Forwarded`. Only that one header
    /// is read (see [`crate::binding`]).
    pub fn trusted_proxies<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        proxies: I,
    ) -> Self {
        self.trusted_proxies = proxies.into_iter().map(Into::into).collect();
        self
    }
    /// Accepts trusted-proxy ranges broader than any network of proxies
    /// (see [`TrustedProxies::too_broad`]): every client inside them can
    /// then choose the address its session is bound to. Only for a service
    /// that no client can reach but through the proxies.
    pub fn dangerously_trust_broad_proxy_ranges(mut self) -> Self {
        self.broad_proxy_ranges = true;
        self
    }
    /// The forwarding header the trusted proxies write the client address
    /// into (default [`ProxyHeader::XForwardedFor`](crate::binding::ProxyHeader)).
    /// Pick the one your proxies *write*: the other is passed through as the
    /// client sent it, and believing it would let a client claim any address.
    ///
    /// ```
    /// use sessionkit::{binding::ProxyHeader, BindingKey, Config};
    ///
    /// let config = Config::builder()
    ///     .bind_to_ip(true)
    ///     .binding_key(BindingKey::new([7u8; 32]))
    ///     .trusted_proxies(["10.0.0.0/8"])
    ///     .proxy_header(ProxyHeader::Forwarded)
    ///     .build()
    ///     .unwrap();
    /// # let _ = config;
    /// ```
    pub fn proxy_header(mut self, header: crate::binding::ProxyHeader) -> Self {
        self.proxy_header = Some(header);
        self
    }
    /// Deletes a session when another client presents it (default: the
    /// other client just gets a fresh session and the original stays).
    pub fn destroy_on_binding_mismatch(mut self, on: bool) -> Self {
        self.binding.destroy_on_mismatch = on;
        self
    }
    /// The key binding fingerprints are computed with (required with binding).
    pub fn binding_key(mut self, key: BindingKey) -> Self {
        self.binding_key = Some(key);
        self
    }

    callback_setter!(
        /// Called when a new session is saved for the first time.
        on_started, started);
    callback_setter!(
        /// Called when a request loads an existing session.
        on_loaded, loaded);
    callback_setter!(
        /// Called for every deletion a request or the store made, once per
        /// session: destroy (by the request whose delete removed the
        /// session, or with the cookie store every destroy; a destroy that
        /// finds the session already ended by another request, a revoke or
        /// a regenerate fires nothing, whoever removed it was reported),
        /// expiry found by a load (by the request whose delete removed the
        /// session), bulk delete, owner revoke, sweep and eviction. Not for
        /// a record a store let lapse on its own (Redis drops a key at its
        /// deadline; the cookie store deletes nothing): count those with
        /// `on_expired`, which fires for every load that finds a session
        /// past a deadline.
        on_deleted, deleted);
    callback_setter!(
        /// Called when a session gets a new id.
        on_regenerated, regenerated);
    callback_setter!(
        /// Called when a load finds a session past a deadline (by every
        /// load that does: parallel requests or a replayed cookie-store
        /// cookie fire it more than once).
        on_expired, expired);
    callback_setter!(
        /// Called when a session is presented by a client other than the one it is bound to.
        on_binding_mismatch, binding_mismatch);
    callback_setter!(
        /// Called when a request carries the session cookie more than once
        /// (it is then served without a session): a sign of a cookie planted
        /// for a parent domain or path. The event carries no owner.
        on_ambiguous_cookie, ambiguous_cookie);

    /// Validates everything and returns the configuration, or every problem found.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        if !self.cookie_name_chosen {
            self.cookie.name = default_cookie_name(&self.cookie).to_owned();
        }
        let mut problems = Vec::new();
        let c = &self.cookie;
        if !is_cookie_name(&c.name) {
            problems.push(ConfigProblem::CookieName(c.name.clone()));
        }
        if !c.path.starts_with('/') || c.path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
            problems.push(ConfigProblem::Path(c.path.clone()));
        }
        if let Some(d) = c.domain.as_deref().filter(|d| !is_cookie_domain(d)) {
            problems.push(ConfigProblem::Domain(d.to_owned()));
        }
        if c.same_site == SameSite::None && !self.cross_site_cookie {
            problems.push(ConfigProblem::SameSiteNoneNotConfirmed);
        }
        if c.same_site == SameSite::None && !c.secure {
            problems.push(ConfigProblem::SameSiteNoneWithoutSecure);
        }
        // Browsers match the prefixes case-insensitively (RFC 6265bis), so
        // `__HOST-id` gets the same rules, or they would drop the cookie.
        let prefixed = |p: &str| {
            c.name
                .get(..p.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(p))
        };
        if prefixed("__Host-") && (!c.secure || c.path != "/" || c.domain.is_some()) {
            problems.push(ConfigProblem::HostPrefix);
        }
        if prefixed("__Secure-") && !c.secure {
            problems.push(ConfigProblem::SecurePrefix);
        }
        let e = &self.expiry;
        if e.idle_timeout.is_zero() {
            problems.push(ConfigProblem::ZeroDuration("idle_timeout"));
        }
        if e.absolute_lifetime.is_zero() {
            problems.push(ConfigProblem::ZeroDuration("absolute_lifetime"));
        }
        for (name, d) in [
            ("idle_timeout", e.idle_timeout),
            ("absolute_lifetime", e.absolute_lifetime),
        ] {
            if d > MAX_LIFETIME {
                problems.push(ConfigProblem::DurationTooLong(name));
            }
        }
        if e.idle_timeout > e.absolute_lifetime && !e.absolute_lifetime.is_zero() {
            problems.push(ConfigProblem::IdleLongerThanAbsolute {
                idle: e.idle_timeout,
                absolute: e.absolute_lifetime,
            });
        }
        let mut binding = self.binding;
        match TrustedProxies::parse(&self.trusted_proxies) {
            Ok(p) => {
                if let Some(range) = p.too_broad().filter(|_| !self.broad_proxy_ranges) {
                    problems.push(ConfigProblem::ProxyRangeTooBroad(range));
                }
                binding.trusted_proxies = p.header(self.proxy_header.unwrap_or_default());
            }
            Err(e) => problems.push(ConfigProblem::TrustedProxy(e)),
        }
        if !self.trusted_proxies.is_empty() && !binding.ip {
            problems.push(ConfigProblem::ProxiesWithoutIpBinding);
        }
        if self.proxy_header.is_some() && self.trusted_proxies.is_empty() {
            problems.push(ConfigProblem::ProxyHeaderWithoutProxies);
        }
        if binding.enabled() {
            if self.binding_key.as_ref().is_none_or(|k| k.shortest() < 32) {
                problems.push(ConfigProblem::BindingKey);
            }
        } else if binding.destroy_on_mismatch || self.binding_key.is_some() {
            problems.push(ConfigProblem::BindingOptionsWithoutBinding);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            cookie: self.cookie,
            expiry: self.expiry,
            clock: self.clock,
            callbacks: self.callbacks,
            binding,
            binding_key: self.binding_key,
        })
    }
}

/// A host name a browser takes as a cookie's `Domain` (see
/// [`ConfigProblem::Domain`]).
fn is_cookie_domain(domain: &str) -> bool {
    let d = domain.strip_prefix('.').unwrap_or(domain);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// RFC 6265 cookie-name token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure() {
        let c = Config::default();
        assert!(c.cookie().secure() && c.cookie().http_only());
        assert_eq!(c.cookie().same_site(), SameSite::Lax);
        assert_eq!(c.cookie().path(), "/");
        assert!(c.expiry().sliding);
    }

    #[test]
    fn host_prefix_with_a_domain_is_rejected() {
        let err = Config::builder()
            .cookie_name("__Host-id")
            .cookie_domain("example.com")
            .build()
            .unwrap_err();
        assert_eq!(err.problems(), &[ConfigProblem::HostPrefix]);
    }

    #[test]
    fn cookie_prefixes_are_checked_whatever_their_case() {
        for name in ["__host-id", "__HOST-id"] {
            let err = Config::builder()
                .cookie_name(name)
                .cookie_domain("example.com")
                .build()
                .unwrap_err();
            assert_eq!(err.problems(), &[ConfigProblem::HostPrefix], "{name}");
        }
        let err = Config::builder()
            .cookie_name("__SECURE-id")
            .dangerously_allow_insecure_http()
            .build()
            .unwrap_err();
        assert!(err.problems().contains(&ConfigProblem::SecurePrefix));
        let err = Config::builder()
            .cookie_name("__Host-id")
            .cookie_path("/app")
            .build()
            .unwrap_err();
        assert_eq!(err.problems(), &[ConfigProblem::HostPrefix]);
        assert!(Config::builder()
            .cookie_name("__Secure-id")
            .cookie_domain("example.com")
            .build()
            .is_ok());
    }

    #[test]
    fn same_site_none_needs_secure() {
        let err = Config::builder()
            .dangerously_allow_cross_site_cookie()
            .dangerously_allow_insecure_http()
            .build()
            .unwrap_err();
        assert!(err
            .problems()
            .contains(&ConfigProblem::SameSiteNoneWithoutSecure));
    }

    #[test]
    fn same_site_none_takes_the_explicit_opt_out() {
        let err = Config::builder()
            .same_site(SameSite::None)
            .build()
            .unwrap_err();
        assert_eq!(err.problems(), [ConfigProblem::SameSiteNoneNotConfirmed]);
        assert!(err
            .to_string()
            .contains("dangerously_allow_cross_site_cookie"));
        let config = Config::builder()
            .dangerously_allow_cross_site_cookie()
            .build()
            .unwrap();
        assert_eq!(config.cookie().same_site(), SameSite::None);
    }

    #[test]
    fn hostile_names_paths_and_domains_are_rejected() {
        for name in ["", "a b", "a;b", "a=b", "é", "a\r\n"] {
            assert!(
                Config::builder().cookie_name(name).build().is_err(),
                "{name:?}"
            );
        }
        assert!(Config::builder().cookie_path("x").build().is_err());
        assert!(Config::builder().cookie_path("/;x").build().is_err());
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for domain in [
            "a b",
            "",
            ".",
            "example.com.",
            "a..b",
            "-x.com",
            "x-.com",
            "..example.com",
            &long_label,
            &long_name,
        ] {
            assert!(
                Config::builder().cookie_domain(domain).build().is_err(),
                "{domain:?}"
            );
        }
        for domain in [
            "example.com",
            ".example.com",
            "a-b.example",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(
                Config::builder().cookie_domain(domain).build().is_ok(),
                "{domain:?}"
            );
        }
    }

    #[test]
    fn binding_needs_a_long_key_and_valid_proxies() {
        let err = Config::builder()
            .bind_to_ip(true)
            .binding_key(BindingKey::new([0u8; 16]))
            .trusted_proxies(["10.0.0.0/8", "nope"])
            .build()
            .unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
        let err = Config::builder()
            .trusted_proxies(["10.0.0.1"])
            .build()
            .unwrap_err();
        assert_eq!(err.problems(), &[ConfigProblem::ProxiesWithoutIpBinding]);
        let err = Config::builder()
            .bind_to_ip(true)
            .binding_key(BindingKey::new([7u8; 32]))
            .proxy_header(crate::binding::ProxyHeader::Forwarded)
            .build()
            .unwrap_err();
        assert_eq!(err.problems(), &[ConfigProblem::ProxyHeaderWithoutProxies]);
        let ip_bound = || {
            Config::builder()
                .bind_to_ip(true)
                .binding_key(BindingKey::new([7u8; 32]))
        };
        for all in ["0.0.0.0/0", "::/0", "128.0.0.0/1", "2000::/3", "2600::/12"] {
            let err = ip_bound()
                .trusted_proxies(["10.0.0.1", all])
                .build()
                .unwrap_err();
            assert_eq!(
                err.problems(),
                &[ConfigProblem::ProxyRangeTooBroad(all.into())],
                "{all}"
            );
            assert!(err
                .to_string()
                .contains("dangerously_trust_broad_proxy_ranges"));
            assert!(ip_bound()
                .trusted_proxies([all])
                .dangerously_trust_broad_proxy_ranges()
                .build()
                .is_ok());
        }
        assert!(ip_bound()
            .trusted_proxies([
                "10.0.0.0/8",
                "172.16.0.0/12",
                "fc00::/7",
                "fd12:3456::/32",
                "2400:cb00::/32",
                "2600:1f00::/24",
                "192.0.2.7",
            ])
            .build()
            .is_ok());
        assert!(Config::builder()
            .bind_to_user_agent(true)
            .binding_key(BindingKey::new([7u8; 32]))
            .build()
            .is_ok());
    }

    #[test]
    fn lifetimes_too_long_to_be_a_session_are_rejected() {
        // Duration::MAX meant as "never": it would overflow SystemTime on
        // every new session (a panic per request), so it is refused here.
        let err = Config::builder()
            .idle_timeout(Duration::MAX)
            .absolute_lifetime(Duration::MAX)
            .build()
            .unwrap_err();
        assert_eq!(
            err.problems(),
            &[
                ConfigProblem::DurationTooLong("idle_timeout"),
                ConfigProblem::DurationTooLong("absolute_lifetime"),
            ]
        );
        assert!(Config::builder()
            .idle_timeout(MAX_LIFETIME)
            .absolute_lifetime(MAX_LIFETIME)
            .build()
            .is_ok());
    }

    #[test]
    fn idle_longer_than_absolute_is_rejected() {
        let err = Config::builder()
            .idle_timeout(Duration::from_secs(10))
            .absolute_lifetime(Duration::from_secs(5))
            .build()
            .unwrap_err();
        assert!(matches!(
            err.problems()[0],
            ConfigProblem::IdleLongerThanAbsolute { .. }
        ));
        assert!(err.to_string().contains("idle_timeout"));
    }
}
