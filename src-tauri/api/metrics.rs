//! `/metrics` in Prometheus' text format: requests by route and status, prompt and reply tokens,
//! time to first token and decoding speed as histograms (all from each request's finished
//! record), and, read at each scrape, the requests waiting, the loaded models' bytes per device,
//! runner starts and crashes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::access::audit::{Record, RecordSink};
use crate::core::Core;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    busy: Counter,
    prompt_tokens: Family<Labels, Counter>,
    reply_tokens: Family<Labels, Counter>,
    first_token: Family<Labels, Histogram>,
    decode_speed: Family<Labels, Histogram>,
    waiting: Gauge,
    loaded_bytes: Family<Labels, Gauge>,
    runner_starts: Counter,
    runner_crashes: Counter,
    runner_overlaps: Counter,
    /// The supervisor's totals at the last scrape: counters move by the difference.
    seen: [AtomicU64; 3],
}

fn first_token_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

fn decode_speed_histogram() -> Histogram {
    Histogram::new([1.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("airlock");
        let m = Metrics {
            requests: Family::default(),
            busy: Counter::default(),
            prompt_tokens: Family::default(),
            reply_tokens: Family::default(),
            first_token: Family::new_with_constructor(first_token_histogram),
            decode_speed: Family::new_with_constructor(decode_speed_histogram),
            waiting: Gauge::default(),
            loaded_bytes: Family::default(),
            runner_starts: Counter::default(),
            runner_crashes: Counter::default(),
            runner_overlaps: Counter::default(),
            seen: Default::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "API requests by route and status", m.requests.clone());
        registry.register("busy", "requests answered 503 because the model's slots and queue were full", m.busy.clone());
        registry.register("prompt_tokens", "prompt tokens of finished replies", m.prompt_tokens.clone());
        registry.register("reply_tokens", "tokens generated in finished replies", m.reply_tokens.clone());
        registry.register("time_to_first_token_seconds", "from a request's arrival to its reply's first text", m.first_token.clone());
        registry.register("decode_tokens_per_second", "decoding speed of each finished reply", m.decode_speed.clone());
        registry.register("requests_waiting", "requests waiting for a slot or a load", m.waiting.clone());
        registry.register("loaded_model_bytes", "memory of each loaded model by device (CPU: host memory)", m.loaded_bytes.clone());
        registry.register("runner_starts", "runner processes started", m.runner_starts.clone());
        registry.register("runner_crashes", "runner processes that exited while in use or loaded", m.runner_crashes.clone());
        registry.register("runner_overlaps", "runners started while another of the same weights and context still ran (stays 0)", m.runner_overlaps.clone());
        Metrics { registry, ..m }
    }
}

impl RecordSink for Metrics {
    fn finished(&self, r: &Record) {
        let route = r.route_template.clone().unwrap_or_else(|| "unmatched".into());
        self.requests.get_or_create(&vec![("route", route), ("status", r.status.to_string())]).inc();
        if r.status == 503 {
            self.busy.inc();
        }
        let Some(model) = r.model.clone() else { return };
        let model: Labels = vec![("model", model)];
        if let Some(n) = r.prompt_tokens {
            self.prompt_tokens.get_or_create(&model).inc_by(n);
        }
        if let Some(n) = r.reply_tokens {
            self.reply_tokens.get_or_create(&model).inc_by(n);
        }
        if let Some(ms) = r.first_token_ms {
            self.first_token.get_or_create(&model).observe(ms as f64 / 1000.0);
        }
        if let Some(speed) = r.tokens_per_second {
            self.decode_speed.get_or_create(&model).observe(speed);
        }
    }
}

impl Metrics {
    /// Reads what the engine holds now into the gauges and counters that mirror it.
    fn sample(&self, core: &Core) {
        let sup = &core.engine().supervisor;
        self.waiting.set(sup.waiting() as i64);
        self.loaded_bytes.clear();
        for m in sup.loaded() {
            let p = &m.info.placement;
            self.loaded_bytes.get_or_create(&vec![("model", m.spec.name.clone()), ("device", "CPU".into())]).set(p.ram_bytes as i64);
            for d in &p.devices {
                self.loaded_bytes.get_or_create(&vec![("model", m.spec.name.clone()), ("device", d.name.clone())]).set(d.bytes as i64);
            }
        }
        let totals = [(sup.runner_starts(), &self.runner_starts), (sup.runner_crashes(), &self.runner_crashes), (sup.runner_overlaps(), &self.runner_overlaps)];
        for (i, (total, counter)) in totals.into_iter().enumerate() {
            let before = self.seen[i].swap(total, Ordering::SeqCst);
            counter.inc_by(total.saturating_sub(before));
        }
    }
}

/// `GET /metrics` (admin scope once tokens exist).
pub async fn metrics(State(core): State<Arc<Core>>, Extension(metrics): Extension<Arc<Metrics>>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || {
        metrics.sample(&core);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &metrics.registry).expect("writing to a String cannot fail");
        text
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
