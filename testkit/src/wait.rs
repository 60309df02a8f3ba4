//! Polling helpers: binding, staying unbound, events, force deletion.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Event, Pod, PodCondition};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use tokio::time::Instant;

/// Multiplies every harness deadline (a float, e.g. `2` on a slow machine).
pub const TIMEOUT_SCALE_ENV: &str = "STOWAGE_TEST_TIMEOUT_SCALE";

/// `timeout` multiplied by `$STOWAGE_TEST_TIMEOUT_SCALE` (default 1).
pub fn scaled(timeout: Duration) -> Duration {
    let scale = std::env::var(TIMEOUT_SCALE_ENV).ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0);
    scale.map_or(timeout, |s| timeout.mul_f64(s))
}

/// Calls `check` every `interval` until it returns `Some`, failing after `timeout` (scaled).
///
/// Errors from `check` are retried; the last one is reported on timeout.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Whether the pod is bound to a node (`spec.nodeName` set).
pub fn is_bound(pod: &Pod) -> bool {
    node_name(pod).is_some()
}

/// The node the pod is bound to.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// The pod's condition of type `type_` (e.g. `PodScheduled`).
pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Waits until `condition` holds for pod `namespace/name` and returns the pod.
///
/// On timeout the error describes the pod's node, phase, conditions and events.
pub async fn wait_for_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&Pod) -> bool,
) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let found = poll_until(&format!("pod {namespace}/{name} {what}"), timeout, Duration::from_millis(250), || async {
        let pod = api.get(name).await.with_context(|| format!("getting pod {namespace}/{name}"))?;
        Ok(condition(&pod).then_some(pod))
    })
    .await;
    match found {
        Ok(pod) => Ok(pod),
        Err(e) => Err(anyhow::anyhow!("{e:#}\n{}", describe_pod(client, namespace, name).await)),
    }
}

/// Waits until pod `namespace/name` is bound to a node and returns it.
pub async fn wait_for_pod_bound(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Result<Pod> {
    wait_for_pod(client, namespace, name, timeout, "to be bound", is_bound).await
}

/// Waits until at least `count` pods match `label_selector` in `namespace` and all are bound.
pub async fn wait_for_pods_bound(
    client: &Client,
    namespace: &str,
    label_selector: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(label_selector);
    let timeout = scaled(timeout);
    let deadline = Instant::now() + timeout;
    loop {
        let pods =
            api.list(&params).await.with_context(|| format!("listing pods {label_selector:?} in {namespace}"))?;
        let unbound: Vec<&str> =
            pods.items.iter().filter(|p| !is_bound(p)).filter_map(|p| p.metadata.name.as_deref()).collect();
        if pods.items.len() >= count && unbound.is_empty() {
            return Ok(pods.items);
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for {count} pods matching {label_selector:?} in {namespace} to be \
                 bound: {} found, unbound: {}",
                pods.items.len(),
                unbound.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks for `duration` that pod `namespace/name` stays unbound, and returns it.
pub async fn assert_pod_stays_unbound(client: &Client, namespace: &str, name: &str, duration: Duration) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let end = Instant::now() + duration;
    loop {
        let pod = api.get(name).await.with_context(|| format!("getting pod {namespace}/{name}"))?;
        if let Some(node) = node_name(&pod) {
            bail!("pod {namespace}/{name} was bound to {node}, expected it to stay unbound for {duration:?}");
        }
        if Instant::now() >= end {
            return Ok(pod);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Events about pod `namespace/name`, oldest first.
pub async fn pod_events(client: &Client, namespace: &str, name: &str) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.kind=Pod,involvedObject.name={name}"));
    let mut events =
        api.list(&params).await.with_context(|| format!("listing events of pod {namespace}/{name}"))?.items;
    events.sort_by_key(event_time);
    Ok(events)
}

/// Waits for an event with `reason` (e.g. `Scheduled`, `FailedScheduling`) about pod `namespace/name`.
pub async fn wait_for_pod_event(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Event> {
    let what = format!("a {reason} event for pod {namespace}/{name}");
    poll_until(&what, timeout, Duration::from_millis(500), || async {
        let events = pod_events(client, namespace, name).await?;
        Ok(events.into_iter().rev().find(|e| e.reason.as_deref() == Some(reason)))
    })
    .await
}

/// Deletes pod `namespace/name` with `gracePeriodSeconds: 0` (without a kubelet a bound pod
/// otherwise stays Terminating forever) and waits until it is gone. A missing pod is fine.
pub async fn force_delete_pod(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting pod {namespace}/{name}")),
    }
    poll_until(
        &format!("pod {namespace}/{name} to be deleted"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { Ok(api.get_opt(name).await.context("getting pod")?.is_none().then_some(())) },
    )
    .await
}

/// A one-paragraph description of a pod (node, phase, conditions, events) for failure messages.
pub async fn describe_pod(client: &Client, namespace: &str, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut out = format!("pod {namespace}/{name}: ");
    match api.get_opt(name).await {
        Ok(Some(pod)) => {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("-");
            let scheduler = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("-");
            let _ = write!(out, "node={} phase={phase} schedulerName={scheduler}", node_name(&pod).unwrap_or("-"));
            for c in pod.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
                let _ = write!(out, "\n  condition {}={}", c.type_, c.status);
                if let Some(reason) = &c.reason {
                    let _ = write!(out, " reason={reason}");
                }
                if let Some(message) = &c.message {
                    let _ = write!(out, " message={message:?}");
                }
            }
        }
        Ok(None) => out.push_str("not found"),
        Err(e) => {
            let _ = write!(out, "could not get it: {e}");
        }
    }
    match pod_events(client, namespace, name).await {
        Ok(events) if events.is_empty() => out.push_str("\n  no events"),
        Ok(events) => {
            for e in events.iter().rev().take(10).rev() {
                let _ = write!(
                    out,
                    "\n  event {} {} x{}: {}",
                    e.type_.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("-"),
                    e.count.unwrap_or(1),
                    e.message.as_deref().unwrap_or("")
                );
            }
        }
        Err(e) => {
            let _ = write!(out, "\n  events unavailable: {e:#}");
        }
    }
    out
}

fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    event
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_until_returns_the_first_some() {
        let mut calls = 0;
        let got = poll_until("three calls", Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            let n = calls;
            async move { Ok((n == 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn poll_until_times_out_with_the_last_error() {
        let err = poll_until::<(), _, _>("never", Duration::from_millis(30), Duration::from_millis(5), || async {
            Err(anyhow::anyhow!("boom"))
        })
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("waiting for never") && text.contains("boom"), "{text}");
    }
}
