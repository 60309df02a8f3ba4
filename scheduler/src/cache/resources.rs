//! Pod resource requests with the scheduler's formula, and the QoS facts contention scoring uses.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::api::resource::Quantity as K8sQuantity};
use stowage_policy::Quantity;

/// What a pod asks for, as the scheduler accounts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodResources {
    /// Requested cpu in millicores.
    pub cpu_m: i64,
    /// Requested memory in bytes.
    pub mem: i64,
    /// No container (init and sidecars included) requests or limits cpu or memory.
    pub best_effort: bool,
    /// Not BestEffort, but some long-running container lacks a cpu or memory limit.
    pub no_limits: bool,
}

fn millis(map: Option<&BTreeMap<String, K8sQuantity>>, key: &str) -> Option<i64> {
    map.and_then(|m| m.get(key)).map(|q| Quantity::parse(&q.0).map(Quantity::millis).unwrap_or(0).max(0))
}

fn bytes(map: Option<&BTreeMap<String, K8sQuantity>>, key: &str) -> Option<i64> {
    map.and_then(|m| m.get(key)).map(|q| Quantity::parse(&q.0).map(Quantity::units_ceil).unwrap_or(0).max(0))
}

/// Parses a byte quantity (`10Gi`); unparsable or negative values count as 0.
#[must_use]
pub fn quantity_bytes(q: &K8sQuantity) -> i64 {
    Quantity::parse(&q.0).map(Quantity::units_ceil).unwrap_or(0).max(0)
}

/// Computes requests with `k8s.io/component-helpers/resource.PodRequests`:
/// `max(sum(containers) + sum(sidecars), max over init containers of (init + sidecars started
/// before it)) + overhead`, where sidecars are init containers with `restartPolicy: Always`.
/// Pod-level `spec.resources.requests` win when set. Missing requests count as zero (the
/// scheduler's fit filter does the same; only its scoring substitutes defaults).
#[must_use]
pub fn pod_resources(spec: &PodSpec) -> PodResources {
    let mut cpu = 0i64;
    let mut mem = 0i64;
    let mut any_resource = false;
    let mut missing_limit = false;
    let mut check = |res: Option<&k8s_openapi::api::core::v1::ResourceRequirements>, long_running: bool| {
        let req = res.and_then(|r| r.requests.as_ref());
        let lim = res.and_then(|r| r.limits.as_ref());
        let has = |m: Option<&BTreeMap<String, K8sQuantity>>| {
            m.is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
        };
        if has(req) || has(lim) {
            any_resource = true;
        }
        if long_running
            && !(lim.is_some_and(|l| l.contains_key("cpu")) && lim.is_some_and(|l| l.contains_key("memory")))
        {
            missing_limit = true;
        }
        (millis(req, "cpu").unwrap_or(0), bytes(req, "memory").unwrap_or(0))
    };
    for c in &spec.containers {
        let (c_cpu, c_mem) = check(c.resources.as_ref(), true);
        cpu += c_cpu;
        mem += c_mem;
    }
    let (mut sidecar_cpu, mut sidecar_mem) = (0i64, 0i64);
    let (mut init_cpu, mut init_mem) = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let (c_cpu, c_mem) = check(c.resources.as_ref(), sidecar);
        let (step_cpu, step_mem) = if sidecar {
            cpu += c_cpu;
            mem += c_mem;
            sidecar_cpu += c_cpu;
            sidecar_mem += c_mem;
            (sidecar_cpu, sidecar_mem)
        } else {
            (c_cpu + sidecar_cpu, c_mem + sidecar_mem)
        };
        init_cpu = init_cpu.max(step_cpu);
        init_mem = init_mem.max(step_mem);
    }
    cpu = cpu.max(init_cpu);
    mem = mem.max(init_mem);
    // Pod-level resources (PodLevelResources) replace the container sum when given.
    if let Some(pod_res) = &spec.resources {
        let req = pod_res.requests.as_ref();
        let lim = pod_res.limits.as_ref();
        if let Some(v) = millis(req, "cpu").or_else(|| millis(lim, "cpu")) {
            cpu = v;
            any_resource = true;
        }
        if let Some(v) = bytes(req, "memory").or_else(|| bytes(lim, "memory")) {
            mem = v;
            any_resource = true;
        }
        if lim.is_some_and(|l| l.contains_key("cpu") && l.contains_key("memory")) {
            missing_limit = false;
        }
    }
    let overhead = spec.overhead.as_ref();
    cpu += millis(overhead, "cpu").unwrap_or(0);
    mem += bytes(overhead, "memory").unwrap_or(0);
    PodResources { cpu_m: cpu, mem, best_effort: !any_resource, no_limits: any_resource && missing_limit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};

    fn container(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)], restart: Option<&str>) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty())
                .then(|| pairs.iter().map(|(k, v)| ((*k).to_owned(), K8sQuantity((*v).to_owned()))).collect())
        };
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements { requests: map(req), limits: map(lim), ..Default::default() }),
            restart_policy: restart.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn scheduler_formula_with_sidecars_and_init_containers() {
        let spec = PodSpec {
            containers: vec![container(
                "app",
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")],
                None,
            )],
            init_containers: Some(vec![
                container("sidecar", &[("cpu", "500m")], &[], Some("Always")),
                container("init", &[("cpu", "3"), ("memory", "512Mi")], &[], None),
            ]),
            overhead: Some([("cpu".to_owned(), K8sQuantity("100m".into()))].into()),
            ..Default::default()
        };
        let r = pod_resources(&spec);
        // max(1 + 0.5, 3 + 0.5) + 0.1
        assert_eq!(r.cpu_m, 3600);
        assert_eq!(r.mem, 1 << 30);
        assert!(!r.best_effort);
        assert!(r.no_limits, "the sidecar has no limits");
    }

    #[test]
    fn best_effort_and_guaranteed() {
        let be = PodSpec { containers: vec![container("a", &[], &[], None)], ..Default::default() };
        let r = pod_resources(&be);
        assert!(r.best_effort && !r.no_limits);
        let g = PodSpec {
            containers: vec![container(
                "a",
                &[("cpu", "2"), ("memory", "2Gi")],
                &[("cpu", "2"), ("memory", "2Gi")],
                None,
            )],
            ..Default::default()
        };
        let r = pod_resources(&g);
        assert!(!r.best_effort && !r.no_limits);
        assert_eq!((r.cpu_m, r.mem), (2000, 2 << 30));
    }
}
