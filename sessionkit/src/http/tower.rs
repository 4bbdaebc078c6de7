//! [`SessionLayer`]: sessions for any tower service that answers with axum's body type.
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionkit::{Config, Session, SessionLayer, Sessions, store::memory::MemoryStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
//! struct Visits { count: u64 }
//!
//! async fn hit(session: Session<Visits>) -> String {
//!     let mut v = session.data_mut();
//!     v.count += 1;
//!     format!("visit {}", v.count)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let sessions = Sessions::new(MemoryStore::<Visits>::new(), Config::default());
//! let app: Router = Router::new()
//!     .route("/", get(hit))
//!     .layer(SessionLayer::new(&sessions));
//! # let _ = app;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{DefaultErrorResponder, ErrorResponder, ErrorResponse, SessionSlot};
use crate::record::SessionData;
use crate::sessions::{Engine, Sessions};
use crate::store::Store;

/// The tower layer. Build it from a [`Sessions`].
pub struct SessionLayer<T: SessionData> {
    engine: Arc<dyn Engine<T>>,
    responder: Arc<dyn ErrorResponder>,
}

impl<T: SessionData> Clone for SessionLayer<T> {
    fn clone(&self) -> Self {
        SessionLayer {
            engine: self.engine.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<T: SessionData> SessionLayer<T> {
    /// A layer serving the sessions of `sessions`, with the default error response.
    pub fn new<S: Store<T>>(sessions: &Sessions<T, S>) -> Self {
        SessionLayer {
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

impl<Svc, T: SessionData> Layer<Svc> for SessionLayer<T> {
    type Service = SessionService<Svc, T>;
    fn layer(&self, inner: Svc) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] produces.
pub struct SessionService<Svc, T: SessionData> {
    inner: Svc,
    layer: SessionLayer<T>,
}

impl<Svc: Clone, T: SessionData> Clone for SessionService<Svc, T> {
    fn clone(&self) -> Self {
        SessionService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

/// Renders an [`ErrorResponse`] as an HTTP response.
pub(crate) fn render(e: ErrorResponse) -> Response {
    let mut resp = (e.status, e.body).into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl<Svc, T, B> Service<Request<B>> for SessionService<Svc, T>
where
    Svc: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    Svc::Future: Send + 'static,
    T: SessionData,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let slot = SessionSlot::new(
            self.layer.engine.clone(),
            self.layer.responder.clone(),
            req.headers(),
        );
        req.extensions_mut().insert(slot.clone());
        // The clone that was made ready is the one we must call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            match slot.finish().await {
                Ok(None) => {}
                Ok(Some(set_cookie)) => {
                    if let Ok(v) = HeaderValue::from_str(&set_cookie) {
                        let headers = resp.headers_mut();
                        headers.append(SET_COOKIE, v);
                        // A response that sets the session cookie must not be
                        // cached and replayed to someone else.
                        if !headers.contains_key(CACHE_CONTROL) {
                            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "session could not be saved; replacing the response");
                    resp = render(slot.error_response(&e));
                }
            }
            Ok(resp)
        })
    }
}
