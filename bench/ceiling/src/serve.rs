//! The HTTP/1.1 edge every HTTP mode shares (the ceiling and both relays):
//! accept loop, routing (`GET /health`, `POST /mcp`), body limit, response
//! helpers. What differs between modes is only what answers `POST /mcp`.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::rpc::Reply;

/// Largest request body accepted (same order of magnitude as a gateway limit);
/// the HTTP relay applies it to upstream answers too.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The response type of every mode: bodies are small and always complete.
pub type HttpResponse = Response<Full<Bytes>>;

/// What answers `POST /mcp` in one mode.
pub trait McpHandler: Send + Sync + 'static {
    /// Answers one `POST /mcp` whose body (at most [`MAX_BODY`]) was read completely.
    fn mcp(&self, headers: HeaderMap, body: Bytes) -> impl Future<Output = HttpResponse> + Send;
}

/// Serves `handler` on `listener` until the process ends. The handler lives as
/// long as the process, so it is leaked once instead of reference-counted per request.
pub async fn run<H: McpHandler>(listener: TcpListener, handler: H) -> ! {
    let handler: &'static H = Box::leak(Box::new(handler));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // e.g. EMFILE: back off briefly instead of spinning.
                eprintln!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                service_fn(move |req| async move { Ok::<_, Infallible>(route(handler, req).await) });
            let _ =
                http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn route<H: McpHandler>(handler: &H, req: Request<Incoming>) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => text(StatusCode::OK, "ok"),
        (&Method::POST, "/mcp") => {
            let (parts, body) = req.into_parts();
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => handler.mcp(parts.headers, collected.to_bytes()).await,
                Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A response with `status`, `body` and, when given, a `Content-Type`.
pub fn response(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    response(status, Some(HeaderValue::from_static("text/plain")), Bytes::from_static(body.as_bytes()))
}

/// A [`Reply`] as HTTP: JSON with its status, or `202 Accepted` with no body.
pub fn reply(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Json(status, body) => {
            response(status, Some(HeaderValue::from_static("application/json")), body)
        }
        Reply::Accepted => response(StatusCode::ACCEPTED, None, Bytes::new()),
    }
}
