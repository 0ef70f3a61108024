//! A small HTTP client for Shoal's API (used by the CLI, by nodes to reach
//! each other's APIs, and by tests).
//!
//! HTTP/1.1 over hyper, one connection per request; `https://` URLs over
//! TLS verified against the cluster CA given (`with_ca`). Given several node URLs
//! it tries them in order and fails over to the next when one does not
//! answer; API errors (`kind: Status`) come back typed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};

use super::error::Status;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {}: {}", .tried.join(", "), .last)]
    Unreachable { tried: Vec<String>, last: String },
    #[error("{}", .status.message)]
    Api { code: StatusCode, status: Box<Status> },
    #[error("bad response from {url}: {message}")]
    Protocol { url: String, message: String },
    #[error("invalid server URL {0:?}: expected https://HOST:PORT (or http:// on this host)")]
    BadUrl(String),
    #[error(
        "{0} is HTTPS, and this client has no cluster CA to verify it with: pass --ca-file (the CA from `shoal kubeconfig`), --ca-pin with the cluster's join token, or --data-dir of a node of the cluster"
    )]
    NoCa(String),
}

/// A client's view of the nodes it talks to (for balanced mode).
type Balance = std::sync::Arc<std::sync::Mutex<Vec<crate::proxy::balance::Stats>>>;

#[derive(Debug, Clone)]
pub struct Client {
    urls: Vec<String>,
    token: Option<String>,
    timeout: Duration,
    /// When set, each request goes first to the node picked by power of two
    /// choices over this client's own outstanding requests and latency.
    balance: Option<Balance>,
    /// TLS to `https://` URLs, trusting the cluster CA only.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Print the server's `Warning` headers on stderr, as kubectl does (the
    /// CLI's client; a node's own requests to peers log them instead).
    print_warnings: bool,
}

/// A server URL's parts: whether it is HTTPS, its host (for the
/// certificate's name), and HOST:PORT to dial.
fn authority(url: &str) -> Result<(bool, String, String), ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::BadUrl(url.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(ClientError::BadUrl(url.to_string())),
    };
    let auth = uri.authority().ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let hostport = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Ok((https, host, hostport))
}

/// The text of a `Warning` header (`299 - "text"`), unescaped; the whole
/// value when it is not in that form.
pub fn warning_text(value: &str) -> String {
    let quoted = value.split_once(' ').and_then(|(_, rest)| rest.split_once(' ')).map(|(_, q)| q.trim());
    let Some(inner) = quoted.and_then(|q| q.strip_prefix('"')).and_then(|q| q.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    out
}

/// One HTTP/1.1 exchange on an open connection.
async fn exchange<I>(
    io: I,
    req: Request<Full<Bytes>>,
    url: &str,
    timeout: Duration,
) -> Result<Response<Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await.map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(async move {
        // (With upgrades, a `101 Switching Protocols` hands the connection
        // over to whoever awaits `hyper::upgrade::on` on the response.)
        let _ = conn.with_upgrades().await;
    });
    match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
    }
}

impl Client {
    /// Tries `urls` in order, failing over to the next one that answers.
    pub fn new(urls: Vec<String>, token: Option<String>) -> Client {
        Client { urls, token, timeout: Duration::from_secs(30), balance: None, tls: None, print_warnings: false }
    }

    /// Verifies `https://` servers against this cluster CA (PEM).
    pub fn with_ca(mut self, ca_pem: &str) -> Result<Client, crate::net::tls::TlsError> {
        self.tls = Some(std::sync::Arc::new(crate::net::tls::api_client_config(ca_pem)?));
        Ok(self)
    }

    /// Prints the `Warning` headers of answers on stderr (`Warning: ...`).
    pub fn printing_warnings(mut self) -> Client {
        self.print_warnings = true;
        self
    }

    /// Verifies `https://` servers with this TLS config.
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Client {
        self.tls = tls;
        self
    }

    /// Spreads requests over `urls` (power of two choices over this client's
    /// own outstanding requests and peak-EWMA latency), failing over on error.
    pub fn balanced(urls: Vec<String>, token: Option<String>) -> Client {
        let now = std::time::Instant::now();
        let stats = urls.iter().map(|_| crate::proxy::balance::Stats::new(now)).collect();
        Client {
            urls,
            token,
            timeout: Duration::from_secs(30),
            balance: Some(std::sync::Arc::new(std::sync::Mutex::new(stats))),
            tls: None,
            print_warnings: false,
        }
    }

    /// The order to try the URLs in for one request.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.urls.len()).collect();
        if let Some(b) = &self.balance {
            let stats = b.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if let Some(first) = crate::proxy::balance::p2c(&stats, &order, rand::random(), rand::random(), now) {
                order.retain(|i| *i != first);
                order.insert(0, first);
            }
        }
        order
    }

    fn record(&self, i: usize, outcome: Option<Duration>, start: bool) {
        if let Some(b) = &self.balance {
            let mut stats = b.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = stats.get_mut(i) {
                let now = std::time::Instant::now();
                if start {
                    s.outstanding += 1;
                    return;
                }
                s.outstanding = s.outstanding.saturating_sub(1);
                match outcome {
                    Some(l) => s.observe(l, now),
                    None => s.fail(now),
                }
            }
        }
    }

    pub fn with_timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Sends one request to `url`; connection failures are `Err(message)`.
    async fn send_to(
        &self,
        url: &str,
        method: &Method,
        path: &str,
        body: &Option<Bytes>,
        headers: &hyper::HeaderMap,
    ) -> Result<Response<Incoming>, Result<String, ClientError>> {
        let (https, host, hostport) = authority(url).map_err(Err)?;
        let tls = match (https, &self.tls) {
            (true, None) => return Err(Err(ClientError::NoCa(url.to_string()))),
            (true, Some(t)) => Some(t.clone()),
            (false, _) => None,
        };
        let connect = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&hostport)).await;
        let stream = match connect {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Ok(format!("{url}: {e}"))),
            Err(_) => return Err(Ok(format!("{url}: connect timed out"))),
        };
        let _ = stream.set_nodelay(true);
        let mut req =
            Request::builder().method(method.clone()).uri(path).header(hyper::header::HOST, hostport.as_str());
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(body.clone().unwrap_or_default()))
            .map_err(|e| Err(ClientError::Protocol { url: url.into(), message: e.to_string() }))?;
        match tls {
            None => exchange(hyper_util::rt::TokioIo::new(stream), req, url, self.timeout).await.map_err(Ok),
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| Err(ClientError::BadUrl(url.to_string())))?;
                let handshake = tokio_rustls::TlsConnector::from(cfg).connect(name, stream);
                let tls = match tokio::time::timeout(Duration::from_secs(5), handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(Ok(format!("{url}: TLS: {e}"))),
                    Err(_) => return Err(Ok(format!("{url}: TLS handshake timed out"))),
                };
                exchange(hyper_util::rt::TokioIo::new(tls), req, url, self.timeout).await.map_err(Ok)
            }
        }
    }

    /// Sends a request, failing over across the known URLs. Returns the
    /// response of the first node that answers (whatever its status).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, Response<Incoming>), ClientError> {
        self.send_with(method, path, body, hyper::HeaderMap::new()).await
    }

    /// `send` with extra request headers: an `Upgrade` request's, for one
    /// (the response's connection upgrades if it is `101`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: hyper::HeaderMap,
    ) -> Result<(String, Response<Incoming>), ClientError> {
        let body = body.map(Bytes::from);
        let mut last = String::from("no server configured");
        for i in self.order() {
            let url = &self.urls[i];
            self.record(i, None, true);
            let t0 = std::time::Instant::now();
            match self.send_to(url, &method, path, &body, &headers).await {
                Ok(r) => {
                    self.record(i, Some(t0.elapsed()), false);
                    return Ok((url.clone(), r));
                }
                Err(Ok(msg)) => {
                    self.record(i, None, false);
                    last = msg;
                }
                Err(Err(e)) => return Err(e),
            }
        }
        Err(ClientError::Unreachable { tried: self.urls.clone(), last })
    }

    /// Sends a request and reads the whole body; non-2xx become `Api` errors.
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, ClientError> {
        let (url, resp) = self.send(method, path, body).await?;
        let code = resp.status();
        if self.print_warnings {
            for w in resp.headers().get_all(hyper::header::WARNING) {
                eprintln!("Warning: {}", warning_text(&String::from_utf8_lossy(w.as_bytes())));
            }
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol { url: url.clone(), message: e.to_string() })?
            .to_bytes();
        if code.is_success() {
            return Ok(bytes);
        }
        let status: Status = serde_json::from_slice(&bytes).unwrap_or_else(|_| Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            code: code.as_u16(),
            reason: code.canonical_reason().unwrap_or("Error").into(),
            error: code.canonical_reason().unwrap_or("Error").into(),
            message: format!("{url}: HTTP {code}: {}", String::from_utf8_lossy(&bytes).trim()),
            details: Default::default(),
        });
        Err(ClientError::Api { code, status: Box::new(status) })
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let b = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Protocol { url: self.urls.join(","), message: e.to_string() })
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let b = self.call(method, path, Some(serde_json::to_vec(body).unwrap_or_default())).await?;
        if b.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Protocol { url: self.urls.join(","), message: e.to_string() })
    }
}
