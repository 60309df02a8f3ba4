//! Container resources: profile sizes, then Guaranteed QoS, then integer CPU.
//!
//! Each container is worked on as a small table of the quantities that matter (the profile's
//! resources, plus cpu and memory for Guaranteed QoS, plus cpu for integer CPU). Values copied
//! from the user or the profile keep their text, so a second pass compares equal and changes
//! nothing; only computed values (rounded cpu) use canonical formatting. Warnings are recorded
//! per step and kept only when the value they describe ends up different from what the pod had.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use stowage_policy::{Policy, QosMode, Quantity, config::QuantityText, config::ResourceSpec, text};

use super::{Denial, Notes, object_entry};

const CPU: &str = "cpu";
const MEMORY: &str = "memory";

/// Shapes the resources of every container, init container and sidecar of `spec`.
pub(super) fn shape(spec: &mut Map<String, Value>, policy: &Policy<'_>, notes: &mut Notes) -> Result<(), Denial> {
    let profile = policy.profile;
    let mut not_guaranteed = Vec::new();
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(items)) = spec.get_mut(list) else { continue };
        for item in items {
            let Value::Object(container) = item else { continue };
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let sizes = profile.resources.containers.get(&name).or(profile.resources.default.as_ref());

            let mut relevant: BTreeSet<&str> = BTreeSet::new();
            if let Some(sizes) = sizes {
                relevant.extend(sizes.requests.keys().chain(sizes.limits.keys()).map(String::as_str));
            }
            if profile.qos == QosMode::Guaranteed {
                relevant.extend([CPU, MEMORY]);
            }
            if profile.integer_cpu {
                relevant.insert(CPU);
            }
            if relevant.is_empty() {
                continue;
            }

            let mut work = Work::read(&name, container, &relevant)?;
            if let Some(sizes) = sizes {
                work.apply_profile(sizes, profile.override_user);
            }
            if profile.qos == QosMode::Guaranteed {
                work.guarantee(&mut not_guaranteed);
            }
            if profile.integer_cpu {
                work.round_cpu()?;
            }
            work.write(container, notes);
        }
    }
    if !not_guaranteed.is_empty() {
        notes.push(format!(
            "pod will not be Guaranteed: no request or limit for {} in the pod or profile {}",
            not_guaranteed.join(", "),
            policy.profile_name
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Requests,
    Limits,
}

impl Field {
    const BOTH: [Self; 2] = [Self::Requests, Self::Limits];

    const fn key(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Limits => "limits",
        }
    }

    const fn one(self) -> &'static str {
        match self {
            Self::Requests => "request",
            Self::Limits => "limit",
        }
    }

    const fn idx(self) -> usize {
        match self {
            Self::Requests => 0,
            Self::Limits => 1,
        }
    }
}

/// Where a value in the table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Set in the pod as received.
    User,
    /// Copied from the profile.
    Profile,
    /// Copied from the other field or computed.
    Derived,
}

#[derive(Debug, Clone)]
struct Slot {
    text: String,
    value: Quantity,
    origin: Origin,
}

impl Slot {
    fn from_profile(q: &QuantityText) -> Self {
        Self { text: q.text.clone(), value: q.value, origin: Origin::Profile }
    }

    fn derived(&self) -> Self {
        Self { origin: Origin::Derived, ..self.clone() }
    }
}

/// A warning about specific values; dropped if none of them ends up changed.
#[derive(Debug)]
struct Event {
    about: Vec<Field>,
    resource: String,
    text: String,
}

/// One container's table of relevant quantities.
#[derive(Debug)]
struct Work<'n> {
    name: &'n str,
    /// The pod's texts, by field then resource.
    original: [BTreeMap<String, String>; 2],
    /// The values being planned.
    current: [BTreeMap<String, Slot>; 2],
    events: Vec<Event>,
}

impl<'n> Work<'n> {
    fn read(name: &'n str, container: &Map<String, Value>, relevant: &BTreeSet<&str>) -> Result<Self, Denial> {
        let mut work = Self { name, original: Default::default(), current: Default::default(), events: Vec::new() };
        let resources = container.get("resources");
        for field in Field::BOTH {
            let Some(map) = resources.and_then(|r| r.get(field.key())).and_then(Value::as_object) else { continue };
            for &res in relevant {
                let Some(v) = map.get(res) else { continue };
                let bad = || Denial::Quantity {
                    container: text::echo(name),
                    field: field.key(),
                    resource: res.to_owned(),
                    value: v.as_str().map_or_else(|| text::echo(&v.to_string()), |s| format!("{:?}", text::echo(s))),
                };
                let text = v.as_str().ok_or_else(bad)?;
                let value = Quantity::parse_non_negative(text).map_err(|_| bad())?;
                work.original[field.idx()].insert(res.to_owned(), text.to_owned());
                work.current[field.idx()]
                    .insert(res.to_owned(), Slot { text: text.to_owned(), value, origin: Origin::User });
            }
        }
        Ok(work)
    }

    fn get(&self, field: Field, res: &str) -> Option<&Slot> {
        self.current[field.idx()].get(res)
    }

    fn set(&mut self, field: Field, res: &str, slot: Slot) {
        self.current[field.idx()].insert(res.to_owned(), slot);
    }

    fn note(&mut self, about: &[Field], res: &str, text: String) {
        self.events.push(Event { about: about.to_vec(), resource: res.to_owned(), text });
    }

    /// Step 1: the profile's sizes. Without override only absent values are added, kept
    /// consistent with the user's (a request is capped at the user's limit, a limit raised to
    /// the user's request). With override the profile's values win, and a remaining user value
    /// on the other side is moved to keep request <= limit.
    fn apply_profile(&mut self, sizes: &ResourceSpec, override_user: bool) {
        let names: BTreeSet<&String> = sizes.requests.keys().chain(sizes.limits.keys()).collect();
        let name = self.name;
        for res in names {
            let p_req = sizes.requests.get(res);
            let p_lim = sizes.limits.get(res);
            if override_user {
                for (field, wanted) in [(Field::Requests, p_req), (Field::Limits, p_lim)] {
                    let Some(wanted) = wanted else { continue };
                    match self.get(field, res) {
                        Some(cur) if cur.value == wanted.value => {}
                        Some(cur) => {
                            let text = format!(
                                "container {name}: replaced {res} {} {} with {} (profile override)",
                                field.one(),
                                cur.text,
                                wanted.text
                            );
                            self.note(&[field], res, text);
                            self.set(field, res, Slot::from_profile(wanted));
                        }
                        None => self.set(field, res, Slot::from_profile(wanted)),
                    }
                }
                if let (Some(req), Some(lim)) = (self.get(Field::Requests, res), self.get(Field::Limits, res))
                    && req.value > lim.value
                {
                    let (req, lim) = (req.clone(), lim.clone());
                    if p_req.is_none() {
                        let text =
                            format!("container {name}: lowered {res} request {} to the limit {}", req.text, lim.text);
                        self.note(&[Field::Requests], res, text);
                        self.set(Field::Requests, res, lim.derived());
                    } else if p_lim.is_none() {
                        let text =
                            format!("container {name}: raised {res} limit {} to the request {}", lim.text, req.text);
                        self.note(&[Field::Limits], res, text);
                        self.set(Field::Limits, res, req.derived());
                    }
                }
            } else {
                if let Some(wanted) = p_req
                    && self.get(Field::Requests, res).is_none()
                {
                    let slot = match self.get(Field::Limits, res) {
                        Some(lim) if wanted.value > lim.value => {
                            let lim = lim.derived();
                            let text = format!(
                                "container {name}: capped the profile's {res} request {} at the limit {}",
                                wanted.text, lim.text
                            );
                            self.note(&[Field::Requests], res, text);
                            lim
                        }
                        _ => Slot::from_profile(wanted),
                    };
                    self.set(Field::Requests, res, slot);
                }
                if let Some(wanted) = p_lim
                    && self.get(Field::Limits, res).is_none()
                {
                    let slot = match self.get(Field::Requests, res) {
                        Some(req) if req.value > wanted.value => {
                            let req = req.derived();
                            let text = format!(
                                "container {name}: raised the profile's {res} limit {} to the request {}",
                                wanted.text, req.text
                            );
                            self.note(&[Field::Limits], res, text);
                            req
                        }
                        _ => Slot::from_profile(wanted),
                    };
                    self.set(Field::Limits, res, slot);
                }
            }
        }
    }

    /// Step 2: requests == limits for cpu and memory, raising the smaller (never lowering).
    fn guarantee(&mut self, missing: &mut Vec<String>) {
        let name = self.name;
        for res in [CPU, MEMORY] {
            match (self.get(Field::Requests, res).cloned(), self.get(Field::Limits, res).cloned()) {
                (Some(req), Some(lim)) if req.value != lim.value => {
                    let (low, high, field) =
                        if req.value < lim.value { (req, lim, Field::Requests) } else { (lim, req, Field::Limits) };
                    if low.origin == Origin::User {
                        let text = format!(
                            "container {name}: raised {res} {} {} to {} for Guaranteed QoS",
                            field.one(),
                            low.text,
                            high.text
                        );
                        self.note(&[field], res, text);
                    }
                    self.set(field, res, high.derived());
                }
                (Some(req), None) => self.set(Field::Limits, res, req.derived()),
                (None, Some(lim)) => self.set(Field::Requests, res, lim.derived()),
                (None, None) => missing.push(format!("{name} {res}")),
                (Some(_), Some(_)) => {}
            }
        }
    }

    /// Step 3: cpu requests and limits rounded up to whole cores. A value whose next whole
    /// core does not fit a quantity is refused rather than rounded to a fraction.
    fn round_cpu(&mut self) -> Result<(), Denial> {
        let name = self.name;
        let mut rounded = Vec::new();
        for field in Field::BOTH {
            let Some(slot) = self.get(field, CPU) else { continue };
            if slot.value.is_integer() {
                continue;
            }
            let Some(value) = slot.value.checked_ceil() else {
                return Err(Denial::CpuRange {
                    container: text::echo(name),
                    field: field.one(),
                    value: text::echo(&slot.text),
                    max: i64::MAX / 1000,
                });
            };
            let to = value.to_cpu_string();
            rounded.push((field, slot.text.clone(), to.clone()));
            self.set(field, CPU, Slot { text: to, value, origin: Origin::Derived });
        }
        match rounded.as_slice() {
            [(_, from_a, to), (_, from_b, _)] if from_a == from_b => {
                let text = format!("rounded cpu of container {name} from {from_a} to {to}");
                self.note(&Field::BOTH, CPU, text);
            }
            items => {
                let notes: Vec<(Field, String)> = items
                    .iter()
                    .map(|(field, from, to)| {
                        (*field, format!("rounded cpu {} of container {name} from {from} to {to}", field.one()))
                    })
                    .collect();
                for (field, text) in notes {
                    self.note(&[field], CPU, text);
                }
            }
        }
        Ok(())
    }

    /// Writes the changed values into the container and keeps the warnings that still apply.
    fn write(self, container: &mut Map<String, Value>, notes: &mut Notes) {
        let changed = |field: Field, res: &str| {
            self.original[field.idx()].get(res) != self.current[field.idx()].get(res).map(|s| &s.text)
        };
        let mut added: Vec<String> = Vec::new();
        for field in Field::BOTH {
            let updates: Vec<(&String, &Slot)> =
                self.current[field.idx()].iter().filter(|(res, _)| changed(field, res)).collect();
            if updates.is_empty() {
                continue;
            }
            let fresh: Vec<String> = updates
                .iter()
                .filter(|(res, _)| !self.original[field.idx()].contains_key(*res))
                .map(|(res, slot)| format!("{res}={}", slot.text))
                .collect();
            if !fresh.is_empty() {
                added.push(format!("{} {}", field.key(), fresh.join(" ")));
            }
            let target = object_entry(object_entry(container, "resources"), field.key());
            for (res, slot) in updates {
                target.insert(res.clone(), Value::String(slot.text.clone()));
            }
        }
        if !added.is_empty() {
            notes.push(format!("container {}: added {}", self.name, added.join(", ")));
        }
        for event in &self.events {
            if event.about.iter().any(|field| changed(*field, &event.resource)) {
                notes.push(event.text.clone());
            }
        }
    }
}
