//! The HTTP endpoint (hyper): `/metrics` (Prometheus text), `/livez` (the process serves HTTP)
//! and `/readyz` (registered and caught up with metadata).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

fn respond(broker: &Broker, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            broker
                .metrics
                .render(broker.replicas.all().len(), broker.replicas.total_size()),
        ),
        "/livez" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if broker.ready.load(Ordering::Acquire) => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Serves HTTP until `stop` flips.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "http accept failed"); continue; }
            },
            _ = stop.changed() => return,
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&broker, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
}
