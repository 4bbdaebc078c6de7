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

use axum_core::response::Response;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{DefaultErrorResponder, ErrorResponder, ErrorResponse, Finish, SessionSlot};
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
    let mut resp = Response::new(e.body.clone().into());
    *resp.status_mut() = e.status;
    e.write_headers(resp.headers_mut());
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
    type Future = SessionFuture<Svc::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let slot = SessionSlot::new(
            self.layer.engine.clone(),
            self.layer.responder.clone(),
            req.headers(),
            req.extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        );
        req.extensions_mut().insert(slot.clone());
        // Called here, on the instance `poll_ready` readied: the response
        // future owns no service, so it needs no clone of its own.
        SessionFuture {
            state: State::Handler {
                fut: self.inner.call(req),
                slot: Some(slot),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`SessionService`]: the handler's, then the
    /// save. Allocates only when the save has to wait for the store.
    pub struct SessionFuture<F, T: SessionData> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, T: SessionData> {
        Handler {
            #[pin]
            fut: F,
            slot: Option<SessionSlot<T>>,
        },
        Saving {
            fut: Pin<Box<dyn Future<Output = Response> + Send>>,
        },
    }
}

impl<F, E, T> Future for SessionFuture<F, T>
where
    F: Future<Output = Result<Response, E>>,
    T: SessionData,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Handler { fut, slot } => {
                    let mut resp = std::task::ready!(fut.poll(cx))?;
                    let slot = slot.take().expect("polled after completion");
                    match slot.finish_now(resp.headers_mut()) {
                        Finish::Done(Ok(())) => return Poll::Ready(Ok(resp)),
                        Finish::Done(Err(e)) => return Poll::Ready(Ok(render(e))),
                        Finish::Io(pending) => {
                            let fut = Box::pin(async move {
                                match slot.finish_io(pending, resp.headers_mut()).await {
                                    Ok(()) => resp,
                                    Err(e) => render(e),
                                }
                            });
                            state.set(State::Saving { fut });
                        }
                    }
                }
                StateProj::Saving { fut } => return fut.as_mut().poll(cx).map(Ok),
            }
        }
    }
}
