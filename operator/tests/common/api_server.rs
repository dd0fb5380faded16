//! The fake API server (`super::fake_api`) over real HTTP/1.1 on 127.0.0.1, so processes — the
//! real operator binary — can talk to it: same store, same handler, same request log, watches
//! streamed as chunked JSON lines. No TLS and no authentication (any or no credentials are
//! accepted); `kubeconfig` writes a file pointing a kube client at it.

use std::net::SocketAddr;
use std::path::Path;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::fake_api::FakeApi;

/// A running server; stops accepting (and drops open connections' tasks) when dropped.
pub struct ApiServer {
    pub api: FakeApi,
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl ApiServer {
    /// Serves `api` on an ephemeral loopback port.
    pub async fn start(api: FakeApi) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let served = api.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = served.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.respond(req).await) }
                    });
                    // A client going away mid-watch ends the connection with an error: not ours.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ApiServer { api, addr, accept }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server (context `fake`, namespace `namespace`) to `path`.
    pub fn kubeconfig(&self, path: &Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
