//! Logging and request spans.
//!
//! Every request gets one span with the method, the route *template* (never the path, which may
//! carry a case reference), the status, the latency and a random request id. Nothing about the
//! client is recorded: no address, no User-Agent, no query string, no body. `clippy.toml` bans the
//! ready-made loggers that would record them.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::{Instrument, Span, field};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::configuration::LogFormat;
use crate::error::ApiError;

/// Modules of dependencies that log a value they were given, which may be a secret or whatever a
/// client chose to send, whatever the operator's filter says: sqlx-postgres logs a
/// connection-URL parameter it does not read with its value (validate() refuses those, but a
/// future 0.9.x may read fewer), and a malformed `.pgpass` line whole (a password among it);
/// actix-http's request decoder logs a malformed `Content-Length` or `Transfer-Encoding` header
/// with its value at DEBUG (the request itself is answered 400).
const SILENCED: [&str; 3] = [
    "sqlx_postgres::options::parse=off",
    "sqlx_postgres::options::pgpass=off",
    "actix_http::h1::decoder=off",
];

/// The operator's filter (`telemetry.level`), with [`SILENCED`] added after it, so that no
/// setting can turn those modules back on.
fn log_filter(filter: &str) -> anyhow::Result<EnvFilter> {
    let mut filter = EnvFilter::try_new(filter)?;
    for directive in SILENCED {
        filter = filter.add_directive(directive.parse()?);
    }
    Ok(filter)
}

/// Drops actix-http's log line for a request it could not parse (a malformed header, a bad or
/// doubled `Content-Length`, an HTTP/1.0 POST without one). actix logs it at ERROR, as
/// `stream error: request parse error: …`, though it is the client's fault, answered with a 400,
/// and changes nothing: at ERROR, any client could fill the log and wake whoever is paged for
/// the service's errors. The dispatcher's other lines (its own failures) are kept.
struct DropUnparsedRequests;

/// The dispatcher's target and the start of the line it writes for an unparsable request.
const DISPATCHER: &str = "actix_http::h1::dispatcher";
const PARSE_ERROR: &str = "stream error: request parse error";

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DropUnparsedRequests {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != tracing::Level::ERROR || metadata.target() != DISPATCHER {
            return true;
        }
        struct Message(bool);
        impl field::Visit for Message {
            fn record_debug(&mut self, field: &field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}").starts_with(PARSE_ERROR);
                }
            }
        }
        let mut parse_error = Message(false);
        event.record(&mut parse_error);
        !parse_error.0
    }
}

/// The registry with the operator's filter, [`SILENCED`] and [`DropUnparsedRequests`]: what every
/// output format is layered on.
fn filtered_registry(
    filter: &str,
) -> anyhow::Result<
    impl tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
> {
    Ok(tracing_subscriber::registry()
        .with(log_filter(filter)?)
        .with(DropUnparsedRequests))
}

/// Installs the global subscriber. `writer` is stdout in production and a buffer in tests.
pub fn init_subscriber<W>(format: LogFormat, filter: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let registry = filtered_registry(filter)?;
    match format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(writer),
            )
            .try_init()?,
    }
    Ok(())
}

/// `tokio::task::spawn_blocking`, keeping the caller's span so that logs from the blocking
/// job stay attached to their request.
pub fn spawn_blocking_with_tracing<F, R>(job: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(job))
}

/// The header that carries the request id back to the client, for support conversations.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The method as logged: the standard ones by name, any other word a client sent as `other`
/// (actix accepts any token as a method, and a client's free text has no place in the log).
fn logged_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: one span per request, one log line when it ends. Records no client data.
pub async fn request_span(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = crate::domain::case_ref::EntryId::generate();
    // Matched as the router matches: on the path with its percent-encoded unreserved characters
    // decoded (`/api/v1/%72eports` is the report route), not on the raw path, which
    // `match_pattern` uses before routing.
    let route = request
        .resource_map()
        .match_pattern(request.match_info().as_str())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http_request",
        http.method = logged_method(request.method()),
        http.route = %route,
        request_id = %request_id,
        http.status_code = field::Empty,
        latency_ms = field::Empty,
    );
    let outcome = next.call(request).instrument(span.clone()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    match outcome {
        Ok(mut response) => {
            let api_error = response
                .response()
                .error()
                .and_then(|error| error.as_error::<ApiError>());
            log_outcome(&span, response.status(), api_error, latency_ms);
            if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
            }
            Ok(response)
        }
        Err(error) => {
            // Only the request deadline (`startup::answer_within`) ends a request with an
            // error instead of a response; actix renders it without the middleware inside this
            // one, so it carries the headers they would have added.
            let status = error.as_response_error().status_code();
            log_outcome(&span, status, error.as_error::<ApiError>(), latency_ms);
            Err(AnsweredByActix { error, request_id }.into())
        }
    }
}

/// Records a finished request's status and latency on its span, and writes its one log line.
fn log_outcome(
    span: &Span,
    status: actix_web::http::StatusCode,
    api_error: Option<&ApiError>,
    latency_ms: f64,
) {
    span.record("http.status_code", status.as_u16());
    span.record("latency_ms", latency_ms);
    let code = api_error.map(ApiError::code);
    if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        // Shedding load (a full crypto queue) or a database that does not answer: the
        // service is working as designed, and a flood must not become an error flood.
        // A database that does not answer says why (its cause chain holds no content).
        let cause = api_error
            .filter(|error| matches!(error, ApiError::DatabaseUnavailable(_)))
            .map(ApiError::log_detail)
            .unwrap_or_default();
        tracing::warn!(
            status = status.as_u16(),
            latency_ms,
            error = code,
            cause = %cause,
            "request refused for now"
        );
    } else if status.is_server_error() {
        // The cause chain of an opaque 500 goes to the log, never to the client.
        let cause = api_error.map(ApiError::log_detail).unwrap_or_default();
        tracing::error!(status = status.as_u16(), latency_ms, cause = %cause, "request failed");
    } else {
        tracing::info!(
            status = status.as_u16(),
            latency_ms,
            error = code,
            "request finished"
        );
    }
}

/// An error that ended a request without a response: actix answers it with its
/// `error_response`, to which this adds the request id and the security headers.
#[derive(Debug)]
struct AnsweredByActix {
    error: actix_web::Error,
    request_id: crate::domain::case_ref::EntryId,
}

impl std::fmt::Display for AnsweredByActix {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(formatter)
    }
}

impl actix_web::ResponseError for AnsweredByActix {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error.as_response_error().status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut response = self.error.error_response();
        let headers = response.headers_mut();
        for (name, value) in crate::error::SECURITY_HEADERS {
            let name = HeaderName::from_static(name);
            if !headers.contains_key(&name) {
                headers.insert(name, HeaderValue::from_static(value));
            }
        }
        if let Ok(value) = HeaderValue::from_str(self.request_id.as_str()) {
            headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer into a shared buffer, for a subscriber that is not the global one.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the service's filtering lets through of what `emit` logs, with the operator's filter
    /// at `trace` for everything.
    fn logged_at_trace(emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = filtered_registry("trace").unwrap().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    /// Even at `trace` for everything, sqlx-postgres's connection-URL and `.pgpass` parsers and
    /// actix's request decoder log nothing, and the rest of sqlx still does.
    #[test]
    fn the_modules_that_log_given_values_stay_silent_at_any_level() {
        let logged = logged_at_trace(|| {
            tracing::warn!(target: "sqlx_postgres::options::parse", value = "hunter2", "x");
            tracing::warn!(target: "sqlx_postgres::options::pgpass", line = "*:*:*:hunter3", "x");
            tracing::debug!(target: "actix_http::h1::decoder", "illegal Content-Length: \"hunter4\"");
            tracing::warn!(target: "sqlx_postgres::connection", "still logged");
        });

        assert!(
            !logged.contains("hunter2")
                && !logged.contains("hunter3")
                && !logged.contains("hunter4"),
            "{logged}"
        );
        assert!(logged.contains("still logged"), "{logged}");
    }

    /// A request actix cannot parse is the client's fault: its ERROR line is dropped, and the
    /// dispatcher's other errors are kept.
    #[test]
    fn an_unparsable_request_logs_no_error_and_other_dispatcher_errors_remain() {
        let logged = logged_at_trace(|| {
            let error = "request parse error: invalid Header provided";
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", error);
            tracing::error!(target: "actix_http::h1::dispatcher", "Response payload stream error: x");
            tracing::error!(target: "incident_vault::elsewhere", "stream error: request parse error");
        });

        assert!(!logged.contains("invalid Header"), "{logged}");
        assert!(logged.contains("Response payload stream error"), "{logged}");
        assert!(logged.contains("incident_vault::elsewhere"), "{logged}");
    }
}
