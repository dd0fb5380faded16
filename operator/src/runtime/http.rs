//! The operator's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process serves
//! requests) and `/readyz` (connected to the API server; followers are ready too, so a standby
//! replica counts as available). Anything else is 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::warn;

use super::metrics::Metrics;

/// State the endpoints report.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
}

/// The response for `path`.
pub fn respond(state: &HttpState, path: &str) -> (StatusCode, String) {
    match path {
        "/metrics" => (StatusCode::OK, state.metrics.render()),
        "/healthz" | "/livez" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if state.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// Serves until the task is dropped. Binding errors are returned; per-connection errors logged.
pub async fn serve(addr: SocketAddr, state: Arc<HttpState>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (code, body) = respond(&state, req.uri().path());
                let resp = Response::builder()
                    .status(code)
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(body)));
                async move { Ok::<_, Infallible>(resp.unwrap_or_default()) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                warn!(error = %e, "http connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let state = HttpState {
            metrics: Arc::new(Metrics::default()),
            ready: AtomicBool::new(false),
        };
        assert_eq!(respond(&state, "/healthz").0, StatusCode::OK);
        assert_eq!(
            respond(&state, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&state, "/readyz").0, StatusCode::OK);
        assert!(respond(&state, "/metrics")
            .1
            .contains("tributary_operator_leader"));
        assert_eq!(respond(&state, "/nope").0, StatusCode::NOT_FOUND);
    }
}
