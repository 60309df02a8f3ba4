//! Kubernetes Events on the scheduled pod, published off the hot path.
//!
//! Handlers call [`EventSink::publish`], which never blocks: the [`EventPublisher`] pushes into
//! a bounded channel (a full channel drops the event and counts it in
//! `stowage_events_dropped_total`), and a background task writes each event as an
//! `events.k8s.io/v1` Event regarding the pod, skipping an identical `(pod uid, reason, message)`
//! seen within the dedupe window (60 s by default).
//!
//! Reasons: [`PLACED`] (Normal, after a successful bind), [`QUORUM_GUARD`] and
//! [`SPREAD_REFUSED`] (Warning, when the quorum guard or a spread rule leaves the pod without a
//! feasible node).
//!
//! RBAC: `create` on `events` in the `events.k8s.io` API group, in every namespace that runs
//! opted-in pods.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

/// The pod was bound; the message names node, zone, scores and group counts.
pub const PLACED: &str = "StowagePlaced";
/// The quorum guard left the pod without a feasible node.
pub const QUORUM_GUARD: &str = "StowageQuorumGuard";
/// A spread rule left the pod without a feasible node.
pub const SPREAD_REFUSED: &str = "StowageSpreadRefused";

/// Event severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Needs attention.
    Warning,
}

impl EventType {
    /// The API spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event about a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodEvent {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Severity.
    pub type_: EventType,
    /// PascalCase reason ([`PLACED`], [`QUORUM_GUARD`], [`SPREAD_REFUSED`]).
    pub reason: &'static str,
    /// PascalCase action (`Scheduling`, `Binding`).
    pub action: &'static str,
    /// Human-readable message (truncated to 1 kB when written).
    pub message: String,
}

/// Where handlers send events. Implementations must not block.
pub trait EventSink: Send + Sync + std::fmt::Debug + 'static {
    /// Queues an event.
    fn publish(&self, event: PodEvent);
    /// The counter of dropped events, if the sink can drop.
    fn dropped_counter(&self) -> Option<Counter> {
        None
    }
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopEvents;

impl EventSink for NoopEvents {
    fn publish(&self, _event: PodEvent) {}
}

/// Keeps every event in memory (tests, offline tools).
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<PodEvent>>,
}

impl MemoryEvents {
    /// Events published so far.
    #[must_use]
    pub fn events(&self) -> Vec<PodEvent> {
        self.events.lock().clone()
    }
}

impl EventSink for MemoryEvents {
    fn publish(&self, event: PodEvent) {
        self.events.lock().push(event);
    }
}

/// Remembers recent `(uid, reason, message)` triples to drop repeats within a window.
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    seen: HashMap<(String, &'static str, String), Instant>,
}

impl Dedupe {
    /// A dedupe with the given window.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self { window, seen: HashMap::new() }
    }

    /// True when the event should be written (not seen within the window).
    pub fn admit(&mut self, ev: &PodEvent, now: Instant) -> bool {
        let window = self.window;
        self.seen.retain(|_, t| now.duration_since(*t) < window);
        let key = (ev.uid.clone(), ev.reason, ev.message.clone());
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, now);
        true
    }
}

/// Boxed future returned by [`EventWriter::write`].
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Writes one event to its destination.
pub trait EventWriter: Send + Sync + 'static {
    /// Writes the event.
    fn write<'a>(&'a self, event: &'a PodEvent) -> WriteFuture<'a>;
}

/// Writes `events.k8s.io/v1` Events through the API server.
#[derive(Clone)]
pub struct KubeEventWriter {
    client: Client,
    controller: String,
    instance: String,
}

impl KubeEventWriter {
    /// A writer reporting as `controller` (e.g. `stowage.io/scheduler-extender`) from
    /// `instance` (e.g. the pod name).
    #[must_use]
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        Self { client, controller: controller.into(), instance: instance.into() }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl EventWriter for KubeEventWriter {
    fn write<'a>(&'a self, ev: &'a PodEvent) -> WriteFuture<'a> {
        Box::pin(async move {
            let now = Timestamp::now();
            let event = K8sEvent {
                metadata: ObjectMeta {
                    namespace: Some(ev.namespace.clone()),
                    name: Some(format!("{}.{:x}", ev.name, now.as_nanosecond())),
                    ..ObjectMeta::default()
                },
                event_time: Some(MicroTime(now)),
                action: Some(ev.action.to_owned()),
                reason: Some(ev.reason.to_owned()),
                note: Some(truncate(&ev.message, 1024)),
                type_: Some(ev.type_.as_str().to_owned()),
                regarding: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(ev.namespace.clone()),
                    name: Some(ev.name.clone()),
                    uid: (!ev.uid.is_empty()).then(|| ev.uid.clone()),
                    ..ObjectReference::default()
                }),
                reporting_controller: Some(self.controller.clone()),
                reporting_instance: Some(self.instance.clone()),
                ..K8sEvent::default()
            };
            Api::<K8sEvent>::namespaced(self.client.clone(), &ev.namespace)
                .create(&PostParams::default(), &event)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The non-blocking sink: a bounded channel drained by a background task.
#[derive(Debug)]
pub struct EventPublisher {
    tx: mpsc::Sender<PodEvent>,
    dropped: Counter,
}

/// Options of the publisher.
#[derive(Debug, Clone, Copy)]
pub struct PublisherOptions {
    /// Channel capacity (default 1024).
    pub capacity: usize,
    /// Dedupe window (default 60 s).
    pub dedupe_window: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self { capacity: 1024, dedupe_window: Duration::from_secs(60) }
    }
}

impl EventPublisher {
    /// Starts the background task writing through `writer`.
    #[must_use]
    pub fn spawn(writer: Arc<dyn EventWriter>, options: PublisherOptions) -> (Arc<Self>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<PodEvent>(options.capacity.max(1));
        let task = tokio::spawn(async move {
            let mut dedupe = Dedupe::new(options.dedupe_window);
            while let Some(ev) = rx.recv().await {
                if !dedupe.admit(&ev, Instant::now()) {
                    continue;
                }
                if let Err(error) = writer.write(&ev).await {
                    tracing::debug!(pod = %format!("{}/{}", ev.namespace, ev.name), reason = ev.reason, %error, "event not written");
                }
            }
        });
        (Arc::new(Self { tx, dropped: Counter::default() }), task)
    }

    /// A publisher writing `events.k8s.io/v1` Events with `client`.
    #[must_use]
    pub fn spawn_kube(client: Client, instance: impl Into<String>) -> (Arc<Self>, JoinHandle<()>) {
        Self::spawn(
            Arc::new(KubeEventWriter::new(client, "stowage.io/scheduler-extender", instance)),
            PublisherOptions::default(),
        )
    }
}

impl EventSink for EventPublisher {
    fn publish(&self, event: PodEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }

    fn dropped_counter(&self) -> Option<Counter> {
        Some(self.dropped.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> PodEvent {
        PodEvent {
            namespace: "db".into(),
            name: "pg-0".into(),
            uid: "u".into(),
            type_: EventType::Warning,
            reason: QUORUM_GUARD,
            action: "Scheduling",
            message: msg.into(),
        }
    }

    #[derive(Default)]
    struct Capture(Mutex<Vec<PodEvent>>, tokio::sync::Notify);

    impl EventWriter for Capture {
        fn write<'a>(&'a self, event: &'a PodEvent) -> WriteFuture<'a> {
            Box::pin(async move {
                self.0.lock().push(event.clone());
                self.1.notify_one();
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dedupe_drops_identical_events_within_the_window() {
        let mut d = Dedupe::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(d.admit(&ev("a"), t0));
        assert!(!d.admit(&ev("a"), t0 + Duration::from_secs(59)));
        assert!(d.admit(&ev("b"), t0 + Duration::from_secs(59)), "a different message is new");
        assert!(d.admit(&ev("a"), t0 + Duration::from_secs(61)));
    }

    #[tokio::test]
    async fn publisher_writes_in_the_background_and_dedupes() {
        let capture = Arc::new(Capture::default());
        let (publisher, task) = EventPublisher::spawn(capture.clone(), PublisherOptions::default());
        publisher.publish(ev("x"));
        publisher.publish(ev("x"));
        publisher.publish(ev("y"));
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), capture.1.notified()).await.unwrap();
        }
        tokio::task::yield_now().await;
        let got: Vec<String> = capture.0.lock().iter().map(|e| e.message.clone()).collect();
        assert_eq!(got, ["x", "y"]);
        task.abort();
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_without_blocking() {
        struct Stuck;
        impl EventWriter for Stuck {
            fn write<'a>(&'a self, _: &'a PodEvent) -> WriteFuture<'a> {
                Box::pin(std::future::pending())
            }
        }
        let (publisher, task) =
            EventPublisher::spawn(Arc::new(Stuck), PublisherOptions { capacity: 2, ..PublisherOptions::default() });
        for i in 0..10 {
            publisher.publish(ev(&i.to_string()));
        }
        let dropped = publisher.dropped_counter().unwrap().get();
        assert!(dropped >= 7, "dropped {dropped}");
        task.abort();
    }

    #[tokio::test]
    async fn kube_writer_posts_an_events_k8s_io_event_regarding_the_pod() {
        use bytes::Bytes;
        use http::{Request, Response};
        use http_body_util::{BodyExt, Full};
        let seen: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
        let seen2 = seen.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let seen = seen2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                seen.lock().push((parts.uri.path().to_owned(), json.clone()));
                Ok::<_, std::convert::Infallible>(
                    Response::builder().status(201).body(Full::new(Bytes::from(bytes.to_vec()))).unwrap(),
                )
            }
        });
        let writer = KubeEventWriter::new(Client::new(svc, "default"), "stowage.io/scheduler-extender", "stowage-0");
        writer.write(&ev("quorum guard: ...")).await.unwrap();
        let (path, body) = seen.lock()[0].clone();
        assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/db/events");
        assert_eq!(body["reason"], "StowageQuorumGuard");
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["note"], "quorum guard: ...");
        assert_eq!(body["regarding"]["kind"], "Pod");
        assert_eq!(body["regarding"]["name"], "pg-0");
        assert_eq!(body["regarding"]["uid"], "u");
        assert_eq!(body["reportingController"], "stowage.io/scheduler-extender");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
