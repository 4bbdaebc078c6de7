//! actix-web 4: [`SessionMiddleware`] and the `Session<T>` extractor
//! (feature `actix`).
//!
//! The same sessions as the tower layer, from the same core: the middleware
//! only moves headers between actix-web's types and [`crate::http`], so the
//! rules (lazy load, save only when changed, cookie attributes, what clients
//! see when the store fails) are one piece of code for both frameworks.
//!
//! ```
//! use actix_web::{web, App, HttpResponse, test};
//! use sessionkit::{Config, Session, Sessions, store::memory::MemoryStore};
//! use sessionkit::http::actix::SessionMiddleware;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct Visits { count: u64 }
//!
//! async fn hit(session: Session<Visits>) -> HttpResponse {
//!     let mut v = session.data_mut();
//!     v.count += 1;
//!     HttpResponse::Ok().body(format!("visit {}", v.count))
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let sessions = Sessions::new(MemoryStore::<Visits>::new(), Config::default());
//! let app = test::init_service(
//!     App::new()
//!         .wrap(SessionMiddleware::new(&sessions))
//!         .route("/", web::get().to(hit)),
//! )
//! .await;
//! let resp = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
//! assert!(resp.headers().contains_key("set-cookie"));
//! # });
//! ```
//!
//! # Redis and several workers
//! actix-web runs each worker on its own thread, with its own Tokio runtime.
//! A redis-rs connection is driven by a task on the runtime that made it, so
//! a command sent to it from another worker crosses threads twice. A
//! `RedisStore` therefore keeps one connection per runtime it is used from,
//! made by that runtime's first command: a store connected before
//! `HttpServer::new` and cloned into every worker talks to Redis from each
//! worker's own thread (`RedisStore::connections` counts them). Building the
//! store inside the app factory instead, with `RedisStoreBuilder::build_lazy`
//! (feature `redis`; it needs no `.await`), gives the same one connection per
//! worker. A `ClusteredStore` shared by every worker has one cache for all of
//! them, and its Redis commands run on each worker's connection; built per
//! worker with `ClusteredStore::connect_lazy` (feature `cluster`), each
//! worker is a node of the fleet with its own cache, its own subscription
//! and its own node id.
//!
//! # Extractors
//! - `Session<T>` loads the session (once per request, however many
//!   extractors ask). A store failure answers with the error responder's
//!   response (by default 503, see [`crate::http`]).
//! - [`MaybeSession<T>`] is the anonymous mode: `None` when the store fails,
//!   so pages that can render without a session keep working; a missing
//!   middleware is still an error (a 500 naming the misconfiguration).
//! - `Option<Session<T>>` also works, through actix-web's own `Option`
//!   extractor, but that one turns *every* error into `None`, a missing
//!   [`SessionMiddleware`] included: prefer `MaybeSession<T>`.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::binding::{ClientHeaders, ClientInfo};
use crate::http::{
    extract, extract_optional, DefaultErrorResponder, ErrorResponder, ErrorResponse, HeaderSink,
    SessionRejection, SessionSlot,
};
use crate::record::SessionData;
use crate::session::Session;
use crate::sessions::{Engine, Sessions};
use crate::store::Store;

/// The actix-web middleware: `App::new().wrap(SessionMiddleware::new(&sessions))`.
#[derive(Clone)]
pub struct SessionMiddleware<T: SessionData> {
    engine: Arc<dyn Engine<T>>,
    responder: Arc<dyn ErrorResponder>,
}

impl<T: SessionData> SessionMiddleware<T> {
    /// A middleware serving the sessions of `sessions`, with the default error response.
    pub fn new<S: Store<T>>(sessions: &Sessions<T, S>) -> Self {
        SessionMiddleware {
            engine: sessions.engine(),
            responder: Arc::new(DefaultErrorResponder),
        }
    }

    /// Replaces the response sent when the store fails (see [`crate::http`]).
    pub fn error_responder(mut self, responder: impl ErrorResponder) -> Self {
        self.responder = Arc::new(responder);
        self
    }
}

impl<Svc, B, T> Transform<Svc, ServiceRequest> for SessionMiddleware<T>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: SessionData,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionMiddlewareService<Svc, T>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: Svc) -> Self::Future {
        ready(Ok(SessionMiddlewareService {
            service: Rc::new(service),
            middleware: self.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around the application.
pub struct SessionMiddlewareService<Svc, T: SessionData> {
    service: Rc<Svc>,
    middleware: SessionMiddleware<T>,
}

type LocalBoxFuture<O> = Pin<Box<dyn Future<Output = O>>>;

impl<Svc, B, T> Service<ServiceRequest> for SessionMiddlewareService<Svc, T>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: SessionData,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let cookies = req
            .headers()
            .get_all(header::COOKIE)
            .map(HeaderValue::as_bytes);
        let binding = self.middleware.engine.config().binding();
        let client = if binding.enabled() {
            let h = req.headers();
            let all = |name| h.get_all(name).map(HeaderValue::as_bytes).collect();
            let headers = ClientHeaders {
                forwarded: all(header::FORWARDED),
                x_forwarded_for: all(header::X_FORWARDED_FOR),
                user_agent: h.get(header::USER_AGENT).map(HeaderValue::as_bytes),
            };
            ClientInfo::from_request(req.peer_addr().map(|a| a.ip()), &headers, binding)
        } else {
            ClientInfo::default()
        };
        let slot = SessionSlot::from_cookie_headers(
            self.middleware.engine.clone(),
            self.middleware.responder.clone(),
            cookies,
            client,
        );
        req.extensions_mut().insert(slot.clone());
        let handled = self.service.call(req);
        Box::pin(async move {
            let mut resp = match handled.await {
                Ok(resp) => resp,
                Err(e) => return Err(commit_under_error(&slot, e).await),
            };
            match slot.finish_into(resp.headers_mut()).await {
                Ok(()) => Ok(resp.map_into_left_body()),
                Err(e) => {
                    let (req, _) = resp.into_parts();
                    Ok(ServiceResponse::new(req, render(&e)).map_into_right_body())
                }
            }
        })
    }
}

/// A service inside the middleware failed with `e` (a middleware's `Err`,
/// which actix-web renders as a response like any other): the session is
/// committed all the same, as for a handler's error response (a failed
/// login attempt counted, a logout done). When the commit has headers to
/// send (a cookie set or expired), they go on `e`'s own response, and the
/// error becomes an [`InternalError`](actix_web::error::InternalError)
/// carrying that response, since an `actix_web::Error` renders lazily and
/// takes no headers; otherwise `e` passes on untouched. A failed save
/// answers with the store error's response instead, as on success.
async fn commit_under_error<T: SessionData>(
    slot: &SessionSlot<T>,
    e: actix_web::Error,
) -> actix_web::Error {
    // Into a map of its own first: `e`'s response is rendered only when
    // there is something to put on it (an error made with
    // `InternalError::from_response`, a redirect to a login page say, hands
    // its response out once; rendered for nothing, `e` would answer a bare
    // 500 afterwards).
    let mut session_headers = HeaderMap::new();
    match slot.finish_into(&mut session_headers).await {
        // Only `Vary: Cookie` (the session was read, no cookie to send):
        // `e` passes on untouched rather than be turned into another error
        // type for a header a rendered error page can do without.
        Ok(()) if session_headers.keys().all(|name| name == header::VARY) => e,
        Ok(()) => {
            let mut resp = e.error_response();
            let headers = resp.headers_mut();
            for (name, value) in session_headers.iter() {
                if name == header::SET_COOKIE {
                    // Again through the sink: the cookie's caching rule
                    // applies to this response's own `Cache-Control`.
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    headers.add_set_cookie(value);
                } else if name == header::VARY {
                    headers.vary_cookie();
                } else if name != header::CACHE_CONTROL {
                    headers.append(name.clone(), value.clone());
                }
            }
            actix_web::error::InternalError::from_response(e, resp).into()
        }
        Err(save) => actix_web::error::InternalError::from_response(e, render(&save)).into(),
    }
}

impl HeaderSink for HeaderMap {
    fn add(&mut self, name: &'static str, value: &str) -> bool {
        HeaderValue::from_str(value)
            .map(|v| self.append(HeaderName::from_static(name), v))
            .is_ok()
    }
    fn add_set_cookie(&mut self, value: String) -> bool {
        let Ok(value) = HeaderValue::try_from(value) else {
            return false;
        };
        self.append(header::SET_COOKIE, value);
        if !self.contains_key(header::CACHE_CONTROL) {
            self.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        } else if let Some(safe) = super::cookie_safe_cache_control(
            self.get_all(header::CACHE_CONTROL)
                .map(HeaderValue::as_bytes),
        ) {
            let safe = HeaderValue::try_from(safe)
                .unwrap_or_else(|_| HeaderValue::from_static("no-store"));
            self.insert(header::CACHE_CONTROL, safe);
        }
        true
    }
    fn vary_cookie(&mut self) {
        if !super::varies_by_cookie(self.get_all(header::VARY).map(HeaderValue::as_bytes)) {
            self.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
    }
}

/// The status in actix-web's `http` 0.2 type (every `http` 1 status is a
/// valid 0.2 one; the fallback cannot be reached).
fn status(e: &ErrorResponse) -> StatusCode {
    StatusCode::from_u16(e.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Renders an [`ErrorResponse`] as an actix-web response.
fn render(e: &ErrorResponse) -> HttpResponse {
    let mut resp = HttpResponse::with_body(status(e), e.body.clone()).map_into_boxed_body();
    e.write_headers(resp.headers_mut());
    resp
}

impl ResponseError for SessionRejection {
    fn status_code(&self) -> StatusCode {
        status(&self.response())
    }

    fn error_response(&self) -> HttpResponse {
        if let SessionRejection::MissingLayer(ty) = self {
            tracing::error!(
                data = ty,
                "Session<T> extracted without SessionMiddleware<T>: add \
                 `.wrap(SessionMiddleware::new(&sessions))` to the App, with the same T"
            );
        }
        render(&self.response())
    }
}

fn slot<T: SessionData>(req: &HttpRequest) -> Option<SessionSlot<T>> {
    req.extensions().get::<SessionSlot<T>>().cloned()
}

impl<T: SessionData> FromRequest for Session<T> {
    type Error = SessionRejection;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(extract(slot::<T>(req)))
    }
}

/// `Option<Session<T>>` that tells a failing store (`None`) from a missing
/// [`SessionMiddleware`] (a 500): the anonymous mode for actix-web handlers.
///
/// ```
/// use actix_web::HttpResponse;
/// use sessionkit::http::actix::MaybeSession;
///
/// async fn home(MaybeSession(session): MaybeSession<u32>) -> HttpResponse {
///     match session {
///         Some(s) => HttpResponse::Ok().body(format!("visits: {}", *s.data())),
///         None => HttpResponse::Ok().body("welcome (sessions are down)"),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MaybeSession<T: SessionData>(pub Option<Session<T>>);

impl<T: SessionData> FromRequest for MaybeSession<T> {
    type Error = SessionRejection;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let slot = slot::<T>(req);
        Box::pin(async move { extract_optional(slot).await.map(MaybeSession) })
    }
}
