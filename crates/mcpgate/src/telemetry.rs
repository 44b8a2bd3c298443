//! OpenTelemetry export (`telemetry` section): the OTLP/HTTP protobuf exporter, a batch span processor on the
//! tokio runtime, and the `tracing` layer that turns mcpgate's telemetry spans — those of the target
//! [`TARGET`], made by `mcpgate_server::telemetry` — into OTel spans. Log lines stay logs: the layer takes no
//! events and no other span.
//!
//! The exporter also honours the standard `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (collector credentials) and
//! `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`; the batch processor the `OTEL_BSP_*` variables (schedule delay, queue
//! and batch sizes).

use std::time::Duration;

use anyhow::Context as _;
use mcpgate_config::TelemetryConfig;
use mcpgate_server::telemetry::TARGET;
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{Sampler, SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing::{Level, Subscriber};
use tracing_subscriber::{Layer, filter::Targets, registry::LookupSpan};

/// How long shutdown waits for the last spans to be sent; the exporter's own timeout (10 s unless
/// `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise) bounds each attempt.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// The running exporter: flush it on the way out.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Build the exporter and the layer that feeds it. Must run inside the tokio runtime (the batch processor is a
/// task of it).
pub fn layer<S>(config: &TelemetryConfig) -> anyhow::Result<(impl Layer<S> + use<S>, Telemetry)>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let url = config.traces_url();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&url)
        .build()
        .with_context(|| format!("cannot set up the OTLP exporter for {url}"))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // A caller's sampling decision (the `traceparent` flags) is followed; new traces are sampled by ratio.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build())
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("mcpgate");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, Level::INFO));
    Ok((layer, Telemetry { provider }))
}

/// Say where traces go (once the subscriber is installed).
pub fn announce(config: &TelemetryConfig) {
    let (endpoint, service) = (config.traces_url(), &config.service_name);
    tracing::info!(%endpoint, %service, sample_ratio = config.sample_ratio, "exporting traces over OTLP/HTTP");
}

impl Telemetry {
    /// Send the spans still buffered and stop the exporter. Bounded by [`FLUSH_TIMEOUT`]; a collector that does
    /// not answer costs spans, not the exit.
    pub async fn shutdown(self) {
        // The processor's shutdown blocks its thread until the export task has finished: not a runtime worker.
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(FLUSH_TIMEOUT, flushed).await {
            Ok(Ok(Ok(()))) => tracing::debug!("trace exporter flushed"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "trace exporter did not flush cleanly"),
            Ok(Err(error)) => tracing::warn!(%error, "trace exporter shutdown failed"),
            Err(_) => tracing::warn!(timeout = ?FLUSH_TIMEOUT, "trace exporter did not flush in time"),
        }
    }
}
