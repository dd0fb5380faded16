//! The HTTP endpoint (hyper): `/metrics` (Prometheus text), `/livez` (the process serves HTTP)
//! and `/readyz` (a broker: registered, unfenced and caught up with metadata; a controller-only
//! node: the quorum has a leader). It is up from the node's first moment, before the quorum is
//! reachable, so a waiting node is alive but not ready.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Health;

fn respond(health: &Health, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            match health.broker.get() {
                Some(b) => {
                    b.metrics
                        .render(b.replicas.all().len(), b.replicas.total_size())
                        + &b.connections.render()
                        + &log_dir_space(&b.config.log_dir)
                }
                None => String::new(),
            } + &health.render_node(),
        ),
        "/livez" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if health.ready() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Serves HTTP until `stop` flips.
pub async fn serve(listener: TcpListener, health: Arc<Health>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "http accept failed"); continue; }
            },
            _ = stop.changed() => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&health, req.uri().path());
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

/// The log directory's filesystem: total and available bytes (statvfs), read at scrape time.
fn log_dir_space(dir: &std::path::Path) -> String {
    match rustix::fs::statvfs(dir) {
        Ok(v) => format!(
            "# HELP tributary_log_dir_total_bytes Size of the log directory's filesystem.\n\
             # TYPE tributary_log_dir_total_bytes gauge\ntributary_log_dir_total_bytes {}\n\
             # HELP tributary_log_dir_available_bytes Bytes the broker may still write in the log directory's filesystem.\n\
             # TYPE tributary_log_dir_available_bytes gauge\ntributary_log_dir_available_bytes {}\n",
            v.f_blocks.saturating_mul(v.f_frsize),
            v.f_bavail.saturating_mul(v.f_frsize)
        ),
        Err(_) => String::new(),
    }
}
