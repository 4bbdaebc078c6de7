//! The demo on actix-web 4: routes wired to [`crate::api`] behind
//! [`sessionkit::http::actix::SessionMiddleware`]. Nothing here decides
//! anything about sessions; it only moves request parts in and the
//! [`Reply`] out.
//!
//! actix-web runs its own runtime (an actix `System` with worker threads),
//! so [`spawn`] starts it on a thread of its own; the stores built on the
//! caller's Tokio runtime keep working from the workers.
//!
//! ```
//! use actix_web::{test, App};
//! use sessionkit::{Config, Sessions, store::memory::MemoryStore};
//! use sessionkit_demo::{actix_app, api::DemoSessions, DemoSession};
//!
//! # actix_web::rt::System::new().block_on(async {
//! let sessions = Sessions::new(MemoryStore::<DemoSession>::new(), Config::default());
//! let app = DemoSessions::with_revocation(sessions);
//! let service = test::init_service(App::new().configure(actix_app::routes(&app))).await;
//! let resp = test::call_service(&service, test::TestRequest::get().uri("/healthz").to_request()).await;
//! assert!(resp.status().is_success());
//! # });
//! ```

use std::io;

use actix_web::dev::{ServerHandle, Service, ServiceResponse};
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use sessionkit::http::actix::SessionMiddleware;
use sessionkit::{Session, Store};
use tokio::sync::oneshot;

use crate::api::{self, ApiError, DemoSessions, Reply, Revocation};
use crate::{DemoSession, PAGE};

fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(reply.body)
}

fn error_of(e: &actix_web::Error) -> ApiError {
    ApiError::new(e.as_response_error().status_code().as_u16(), e.to_string())
}

/// The demo's routes (the page, `/healthz` and the JSON API), for
/// `App::new().configure(routes(&app))`.
pub fn routes<S: Store<DemoSession>>(
    app: &DemoSessions<S>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let app = app.clone();
    move |cfg: &mut web::ServiceConfig| {
        let session = |f: fn(&Session<DemoSession>) -> Reply| {
            move |s: Session<DemoSession>| async move { respond(f(&s)) }
        };
        // A route's wrong method gets the API's JSON 405, not an empty body.
        let resource = |path: &str| {
            web::resource(path)
                .default_service(web::to(|| async { respond(api::method_not_allowed()) }))
        };
        let api = web::scope("/api")
            .app_data(web::Data::new(app.revocation.clone()))
            .wrap_fn(|req, srv| {
                // `api::refuse_cross_site` in front of every API route.
                let verdict = {
                    let header = |name: &str| req.headers().get(name).map(|v| v.as_bytes());
                    api::refuse_cross_site(
                        req.method().as_str(),
                        req.path(),
                        header("sec-fetch-site"),
                        header("origin"),
                        header("host"),
                    )
                };
                let call = match verdict {
                    Ok(()) => Ok(srv.call(req)),
                    Err(e) => Err(req.into_response(respond(e.into()))),
                };
                async move {
                    match call {
                        Ok(answer) => answer.await.map(ServiceResponse::map_into_boxed_body),
                        Err(refused) => Ok(refused),
                    }
                }
            })
            .wrap(DefaultHeaders::new().add((CACHE_CONTROL, api::API_CACHE_CONTROL)))
            .wrap(SessionMiddleware::new(&app.sessions).error_responder(api::json_store_error))
            .service(resource("/me").get(session(api::me)))
            .service(
                resource("/login")
                    .app_data(web::PayloadConfig::new(api::LOGIN_BODY_LIMIT))
                    .post(login),
            )
            .service(resource("/logout").post(session(api::logout)))
            .service(resource("/counter").post(session(api::counter)))
            .service(resource("/flash").get(session(api::flash)))
            .service(resource("/admin/revoke/{username}").post(revoke))
            .default_service(web::to(|| async { respond(api::no_such_route()) }));
        cfg.service(web::resource("/").get(|| async {
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(PAGE)
        }))
        .service(web::resource("/healthz").get(|| async {
            HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(api::HEALTHZ)
        }))
        .service(api);
    }
}

async fn login(
    session: Session<DemoSession>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    let body = body.as_ref().map(|b| b.as_ref()).map_err(error_of);
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.as_bytes());
    respond(api::login(&session, content_type, body))
}

async fn revoke(
    revocation: web::Data<Revocation>,
    username: Result<web::Path<String>, actix_web::Error>,
) -> HttpResponse {
    let username = username.as_ref().map(|p| p.as_str()).map_err(error_of);
    respond(api::revoke(revocation.as_ref().as_deref(), username).await)
}

/// A running actix-web server: its handle (to stop it) and what it ended with.
pub struct ActixServer {
    /// Stops the server (`handle.stop(true)` lets in-flight requests finish).
    pub handle: ServerHandle,
    /// The server's result, once it has stopped.
    pub done: oneshot::Receiver<io::Result<()>>,
}

/// Starts the demo on actix-web, on `listener`, in a thread of its own.
pub fn spawn<S: Store<DemoSession>>(
    app: DemoSessions<S>,
    listener: std::net::TcpListener,
) -> io::Result<ActixServer> {
    let routes = routes(&app);
    let (started_tx, started) = std::sync::mpsc::channel();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("actix-web".into())
        .spawn(move || {
            let result = actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(routes.clone()))
                    // The demo binary handles SIGINT/SIGTERM itself and stops
                    // the server through its handle.
                    .disable_signals()
                    .listen(listener);
                let server = match server {
                    Ok(s) => s.run(),
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = started_tx.send(Ok(server.handle()));
                server.await
            });
            let _ = done_tx.send(result);
        })?;
    let handle = started
        .recv()
        .map_err(|_| io::Error::other("the actix-web thread ended before starting"))??;
    Ok(ActixServer { handle, done })
}
