//! `GET /metrics`: the store as Prometheus text or OpenMetrics (by the Accept
//! header). Takes a bound listener and a shutdown future, so tests bind
//! 127.0.0.1:0 (mini-redis's `run(listener, shutdown)`).

use std::convert::Infallible;
use std::future::Future;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::shared::{SharedRef, lock};
use crate::store::now_ms;
use crate::text::{self, Format};

/// Serves until `shutdown` completes.
pub async fn serve(listener: TcpListener, shared: SharedRef, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a /metrics connection: {e}");
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, shared: &SharedRef) -> Response<Full<Bytes>> {
    let reply = |status, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = text::negotiate(accept);
            let snap = lock(shared).store.snapshot(now_ms());
            let ctype = match format {
                Format::OpenMetrics => text::OPENMETRICS_CONTENT_TYPE,
                Format::Prometheus => text::PROMETHEUS_CONTENT_TYPE,
            };
            reply(StatusCode::OK, ctype, text::render(&snap, format))
        }
        "/" => reply(
            StatusCode::OK,
            "text/html",
            "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
