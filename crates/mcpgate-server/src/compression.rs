//! Response compression (`server.compression`): gzip for bodies of at least `min_size` bytes, for clients that
//! accept it. tower-http's default predicate already leaves alone Server-Sent Event streams (which must go out
//! event by event, never buffered), gRPC and images; on top of it, the size threshold keeps small answers — the
//! fast path's bread and butter — free of gzip's CPU and latency.

use http::Response;
use http_body::Body;
use mcpgate_config::CompressionConfig;
use tower_http::compression::{
    CompressionLayer,
    predicate::{DefaultPredicate, Predicate, SizeAbove},
};

/// Whether a response is compressed.
#[derive(Clone)]
pub(crate) struct Large {
    enabled: bool,
    /// The size first: it settles most answers (the fast path's are small) with one header read, where the
    /// default predicate reads `Content-Type` three times.
    inner: tower_http::compression::predicate::And<SizeAbove, DefaultPredicate>,
}

impl Predicate for Large {
    fn should_compress<B: Body>(&self, response: &Response<B>) -> bool {
        self.enabled && self.inner.should_compress(response)
    }
}

/// The compression layer `config` asks for. Always a layer (so the service type does not depend on the
/// config); switched off, it compresses nothing.
pub(crate) fn layer(config: &CompressionConfig) -> CompressionLayer<Large> {
    let predicate = Large {
        enabled: config.enabled,
        inner: SizeAbove::new(config.min_size.0).and(DefaultPredicate::new()),
    };
    CompressionLayer::new().gzip(true).compress_when(predicate)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::{Router, body::Body as AxumBody, routing::get};
    use http::Request;
    use mcpgate_config::ByteSize;
    use tower::ServiceExt;

    use super::*;

    async fn encoding(
        config: &CompressionConfig,
        body: &'static str,
        content_type: &'static str,
    ) -> Option<String> {
        let app = Router::new()
            .route("/", get(move || async move { ([(http::header::CONTENT_TYPE, content_type)], body) }))
            .layer(layer(config));
        let request = Request::get("/").header("accept-encoding", "gzip").body(AxumBody::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        response.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn only_large_non_stream_bodies_are_compressed_and_only_when_enabled() {
        let large: &'static str = "x".repeat(2048).leak();
        let small: &'static str = "x".repeat(1000).leak();
        let on = CompressionConfig::default();
        assert_eq!(encoding(&on, large, "application/json").await.as_deref(), Some("gzip"));
        assert_eq!(encoding(&on, small, "application/json").await, None);
        assert_eq!(encoding(&on, large, "text/event-stream").await, None);
        let off = CompressionConfig { enabled: false, ..on.clone() };
        assert_eq!(encoding(&off, large, "application/json").await, None);
        let low = CompressionConfig { min_size: ByteSize(64), ..on };
        assert_eq!(encoding(&low, small, "application/json").await.as_deref(), Some("gzip"));
    }
}
