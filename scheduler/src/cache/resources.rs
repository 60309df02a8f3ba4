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
    /// cpu limit in millicores over the long-running containers (app containers and sidecars,
    /// plus overhead), or the pod-level limit; `None` when some long-running container has no
    /// cpu limit: the pod may then take every core of its node.
    pub cpu_limit_m: Option<i64>,
    /// Memory limit in bytes, as `cpu_limit_m`; `None` when unlimited.
    pub mem_limit: Option<i64>,
}

/// What pods on a node can take beyond their requests: the noise a database pod would share the
/// node with. A pod without a limit for a resource can take the node's whole capacity of it, so
/// it counts by that capacity (known only per node), not by its small request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Burst {
    /// Σ (cpu limit − cpu request) over pods with a cpu limit, millicores.
    pub cpu_m: i64,
    /// Σ (memory limit − memory request) over pods with a memory limit, bytes.
    pub mem: i64,
    /// Pods without a cpu limit (BestEffort included).
    pub cpu_unlimited: u32,
    /// Their cpu requests, millicores.
    pub cpu_unlimited_req_m: i64,
    /// Pods without a memory limit.
    pub mem_unlimited: u32,
    /// Their memory requests, bytes.
    pub mem_unlimited_req: i64,
}

impl Burst {
    /// Adds (`sign` 1) or removes (`sign` −1) a pod.
    pub fn apply(&mut self, r: &PodResources, sign: i64) {
        let count = |v: &mut u32| {
            if sign > 0 {
                *v += 1;
            } else {
                *v = v.saturating_sub(1);
            }
        };
        match r.cpu_limit_m {
            Some(l) => self.cpu_m += sign * (l - r.cpu_m).max(0),
            None => {
                count(&mut self.cpu_unlimited);
                self.cpu_unlimited_req_m += sign * r.cpu_m;
            }
        }
        match r.mem_limit {
            Some(l) => self.mem += sign * (l - r.mem).max(0),
            None => {
                count(&mut self.mem_unlimited);
                self.mem_unlimited_req += sign * r.mem;
            }
        }
    }

    /// Adds another node's or the ledger's burst.
    #[must_use]
    pub fn plus(mut self, o: &Burst) -> Burst {
        self.cpu_m += o.cpu_m;
        self.mem += o.mem;
        self.cpu_unlimited += o.cpu_unlimited;
        self.cpu_unlimited_req_m += o.cpu_unlimited_req_m;
        self.mem_unlimited += o.mem_unlimited;
        self.mem_unlimited_req += o.mem_unlimited_req;
        self
    }

    /// Share of the node the pods can take beyond their requests, in permille (0..=1000):
    /// the larger of cpu and memory; an unlimited pod counts by the node's allocatable.
    #[must_use]
    pub fn permille(&self, alloc_cpu_m: i64, alloc_mem: i64) -> i64 {
        let share = |limited: i64, n: u32, req: i64, alloc: i64| {
            if alloc <= 0 {
                return if limited > 0 || n > 0 { 1000 } else { 0 };
            }
            let total = limited.saturating_add(i64::from(n).saturating_mul(alloc)).saturating_sub(req).max(0);
            (total.saturating_mul(1000) / alloc).clamp(0, 1000)
        };
        share(self.cpu_m, self.cpu_unlimited, self.cpu_unlimited_req_m, alloc_cpu_m).max(share(
            self.mem,
            self.mem_unlimited,
            self.mem_unlimited_req,
            alloc_mem,
        ))
    }
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
    // Limits over long-running containers; `None` once one lacks the limit.
    let mut cpu_lim = Some(0i64);
    let mut mem_lim = Some(0i64);
    let mut check = |res: Option<&k8s_openapi::api::core::v1::ResourceRequirements>, long_running: bool| {
        let req = res.and_then(|r| r.requests.as_ref());
        let lim = res.and_then(|r| r.limits.as_ref());
        if long_running {
            cpu_lim = cpu_lim.zip(millis(lim, "cpu")).map(|(a, b)| a + b);
            mem_lim = mem_lim.zip(bytes(lim, "memory")).map(|(a, b)| a + b);
        }
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
        if let Some(v) = millis(lim, "cpu") {
            cpu_lim = Some(v);
        }
        if let Some(v) = bytes(lim, "memory") {
            mem_lim = Some(v);
        }
    }
    let overhead = spec.overhead.as_ref();
    let (o_cpu, o_mem) = (millis(overhead, "cpu").unwrap_or(0), bytes(overhead, "memory").unwrap_or(0));
    cpu += o_cpu;
    mem += o_mem;
    PodResources {
        cpu_m: cpu,
        mem,
        best_effort: !any_resource,
        no_limits: any_resource && missing_limit,
        cpu_limit_m: cpu_lim.map(|l| l + o_cpu),
        mem_limit: mem_lim.map(|l| l + o_mem),
    }
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
        assert_eq!(r.cpu_limit_m, None, "the sidecar may take the whole node");
        assert_eq!(r.mem_limit, None, "nor all of its memory");
    }

    #[test]
    fn burst_counts_unlimited_pods_by_the_node_capacity() {
        let limited = PodResources {
            cpu_m: 1000,
            mem: 1 << 30,
            cpu_limit_m: Some(2000),
            mem_limit: Some(1 << 30),
            ..Default::default()
        };
        let unlimited = PodResources { cpu_m: 100, mem: 128 << 20, no_limits: true, ..Default::default() };
        let mut b = Burst::default();
        b.apply(&limited, 1);
        // 1 of 8 cores beyond its request.
        assert_eq!(b.permille(8000, 32 << 30), 125);
        b.apply(&unlimited, 1);
        // 100m requested, may take all 8 cores: 1 + 7.9 cores > the node.
        assert_eq!(b.permille(8000, 32 << 30), 1000);
        b.apply(&unlimited, -1);
        assert_eq!(b.permille(8000, 32 << 30), 125);
        b.apply(&limited, -1);
        assert_eq!(b, Burst::default());
        assert_eq!(b.permille(0, 0), 0);
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
        assert_eq!((r.cpu_limit_m, r.mem_limit), (Some(2000), Some(2 << 30)));
        let r = pod_resources(&be);
        assert_eq!((r.cpu_limit_m, r.mem_limit), (None, None));
    }
}
