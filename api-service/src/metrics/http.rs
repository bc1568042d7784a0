//! Request counts and latencies per route: a layer the router puts around every route
//! (and its fallback), so it sees axum's `MatchedPath` — the route template, never the
//! raw path — and the final status, timeouts and caught panics included.
//!
//! Recording costs a few atomic operations per request and nothing else: each route's
//! layer instance keeps the series it resolved, per method, in a `OnceLock`; only the first
//! request of a route and method (or an unexpected one) takes the mutex of the shared table.
//! A request the client abandons before the answer is not counted.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response, StatusCode};
use smsgate_shared::metrics::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use tower::{Layer, Service};

/// The methods that get a label of their own; any other is counted as `other`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];
const METHOD_LABELS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The `route` of requests no route matched (the 404 fallback): unknown paths share it.
pub const UNMATCHED: &str = "unmatched";

fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

/// The HTTP metrics and the table of their series. Cheap to clone.
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Every series created so far.
    series: Mutex<HashMap<SeriesKey, Arc<Series>>>,
}

/// A method's index in [`METHOD_LABELS`], and the route template (`None`: unmatched).
type SeriesKey = (usize, Option<String>);

/// One method on one route.
struct Series {
    route: Option<String>,
    method: &'static str,
    duration: Histogram,
    requests: IntCounterVec,
    /// Created on first use, so a route shows only the classes it answered.
    by_class: [OnceLock<IntCounter>; 5],
}

impl Series {
    fn record(&self, status: StatusCode, seconds: f64) {
        self.duration.observe(seconds);
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class]
            .get_or_init(|| {
                self.requests.with_label_values(&[
                    self.method,
                    self.route.as_deref().unwrap_or(UNMATCHED),
                    STATUS_CLASSES[class],
                ])
            })
            .inc();
    }
}

impl HttpMetrics {
    pub fn new(requests: IntCounterVec, duration: HistogramVec) -> HttpMetrics {
        HttpMetrics {
            inner: Arc::new(Inner {
                requests,
                duration,
                series: Mutex::default(),
            }),
        }
    }

    /// The layer to put around the router's routes (`Router::layer`, after the others).
    pub fn layer(&self) -> RecordHttpLayer {
        RecordHttpLayer {
            metrics: self.clone(),
        }
    }

    fn series(&self, method: usize, route: Option<&str>) -> Arc<Series> {
        let mut table = self.inner.series.lock().expect("series table lock");
        table
            .entry((method, route.map(str::to_owned)))
            .or_insert_with(|| {
                let method = METHOD_LABELS[method];
                Arc::new(Series {
                    route: route.map(str::to_owned),
                    method,
                    duration: self
                        .inner
                        .duration
                        .with_label_values(&[method, route.unwrap_or(UNMATCHED)]),
                    requests: self.inner.requests.clone(),
                    by_class: Default::default(),
                })
            })
            .clone()
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct RecordHttpLayer {
    metrics: HttpMetrics,
}

impl<S> Layer<S> for RecordHttpLayer {
    type Service = RecordHttp<S>;

    /// Called once per route (per method of it) and once for the fallback.
    fn layer(&self, inner: S) -> RecordHttp<S> {
        RecordHttp {
            inner,
            metrics: self.metrics.clone(),
            resolved: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub struct RecordHttp<S> {
    inner: S,
    metrics: HttpMetrics,
    /// This route's series, by method index.
    resolved: Arc<[OnceLock<Arc<Series>>; METHOD_LABELS.len()]>,
}

impl<S> RecordHttp<S> {
    fn series_for<B>(&self, request: &Request<B>) -> Arc<Series> {
        let method = method_index(request.method());
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let cell = &self.resolved[method];
        match cell.get() {
            Some(series) if series.route.as_deref() == route => series.clone(),
            _ => {
                let series = self.metrics.series(method, route);
                let _ = cell.set(series.clone());
                series
            }
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RecordHttp<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let series = self.series_for(&request);
        Recorded {
            started: Instant::now(),
            series: Some(series),
            future: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's response future; records the request when it completes.
    pub struct Recorded<F> {
        #[pin]
        future: F,
        series: Option<Arc<Series>>,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if let (Ok(response), Some(series)) = (&result, this.series.take()) {
            series.record(response.status(), this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(METHOD_LABELS[method_index(&Method::POST)], "POST");
        assert_eq!(METHOD_LABELS[method_index(&Method::TRACE)], "other");
        assert_eq!(
            METHOD_LABELS[method_index(&Method::from_bytes(b"PROPFIND").unwrap())],
            "other"
        );
    }
}
