//! Cluster snapshots: the objects `kubectl get ... -o yaml` (or `-o json`) prints, loaded from
//! a file.
//!
//! A snapshot is multi-document YAML, or JSON (one value or a stream of them), whose documents
//! are standard objects or `kind: List` documents of them. JSON is read by a JSON parser,
//! several times faster than YAML for the same objects. Nodes, Pods, PersistentVolumes,
//! PersistentVolumeClaims, StorageClasses, CSIStorageCapacities and StatefulSets are kept;
//! other kinds are skipped with a warning; a malformed document is an error naming its index
//! and first line.

use std::path::Path;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIStorageCapacity, StorageClass},
};
use serde_json::Value;

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML.
    #[error("snapshot document {index} (line {line}) is not valid YAML: {message}")]
    Yaml {
        /// 1-based document index.
        index: usize,
        /// 1-based line where the document starts.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// A document is not valid JSON.
    #[error("snapshot document {index} (line {line}) is not valid JSON: {message}")]
    Json {
        /// 1-based document index.
        index: usize,
        /// 1-based line where the document starts.
        line: usize,
        /// Parser message, with the line and column of the problem.
        message: String,
    },
    /// A document (or a List item) is not a valid object of its kind.
    #[error("snapshot document {index} (line {line}){item}: {message}")]
    Object {
        /// 1-based document index.
        index: usize,
        /// 1-based line where the document starts.
        line: usize,
        /// ` items[i]` for List documents, else empty.
        item: String,
        /// What is wrong.
        message: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The objects of a snapshot, by kind.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// PersistentVolumes.
    pub persistent_volumes: Vec<PersistentVolume>,
    /// PersistentVolumeClaims.
    pub persistent_volume_claims: Vec<PersistentVolumeClaim>,
    /// StorageClasses.
    pub storage_classes: Vec<StorageClass>,
    /// CSIStorageCapacities.
    pub csi_storage_capacities: Vec<CSIStorageCapacity>,
    /// StatefulSets.
    pub stateful_sets: Vec<StatefulSet>,
    /// Documents that were skipped, and why.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Reads and parses a snapshot file.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, else as [`Snapshot::parse`].
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses snapshot text: JSON when it starts with `{` or `[`, else YAML. Text that starts
    /// like JSON but is not (a YAML flow mapping, say) is read as YAML; when that fails too,
    /// the JSON error is reported.
    ///
    /// # Errors
    /// As [`Snapshot::from_json`] or [`Snapshot::from_yaml`].
    pub fn parse(text: &str) -> Result<Self> {
        if !text.trim_start().starts_with(['{', '[']) {
            return Self::from_yaml(text);
        }
        match Self::from_json(text) {
            Err(json @ Error::Json { .. }) => Self::from_yaml(text).map_err(|_| json),
            other => other,
        }
    }

    /// Parses JSON snapshot text: one value (an object or a `List`, as `kubectl get -o json`
    /// prints) or several concatenated, each a document.
    ///
    /// # Errors
    /// [`Error::Json`] or [`Error::Object`] for the first malformed document.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut snap = Snapshot::default();
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let (mut counted, mut line) = (0, 1);
        for index in 1.. {
            // The document starts at the first non-blank byte after the previous one.
            let rest = &text[stream.byte_offset()..];
            let start = text.len() - rest.trim_start().len();
            line += text[counted..start].bytes().filter(|&b| b == b'\n').count();
            counted = start;
            match stream.next() {
                None => break,
                Some(Ok(value)) => snap.add(index, line, value)?,
                Some(Err(e)) => return Err(Error::Json { index, line, message: e.to_string() }),
            }
        }
        Ok(snap)
    }

    /// Parses snapshot text.
    ///
    /// # Errors
    /// [`Error::Yaml`] or [`Error::Object`] for the first malformed document.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let mut snap = Snapshot::default();
        for (i, (line, doc)) in split_documents(text).into_iter().enumerate() {
            let index = i + 1;
            if doc.trim().is_empty() || doc.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
                continue;
            }
            let value: Value = serde_saphyr::from_str(doc).map_err(|e| Error::Yaml {
                index,
                line,
                message: e.to_string().lines().next().unwrap_or_default().to_owned(),
            })?;
            snap.add(index, line, value)?;
        }
        Ok(snap)
    }

    /// Total number of objects kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
            + self.pods.len()
            + self.persistent_volumes.len()
            + self.persistent_volume_claims.len()
            + self.storage_classes.len()
            + self.csi_storage_capacities.len()
            + self.stateful_sets.len()
    }

    /// True when no object was kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&mut self, index: usize, line: usize, mut value: Value) -> Result<()> {
        if value.is_null() {
            return Ok(());
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        if kind == "List" || kind.ends_with("List") {
            let Some(Value::Array(items)) = value.get_mut("items").map(Value::take) else {
                return Err(Error::Object {
                    index,
                    line,
                    item: String::new(),
                    message: format!("{kind} has no items list"),
                });
            };
            for (i, mut item) in items.into_iter().enumerate() {
                // Lists printed by kubectl carry kind/apiVersion on every item; typed lists
                // (e.g. `PodList`) may not, so the list kind names the item kind.
                if item.get("kind").is_none()
                    && kind != "List"
                    && let Some(obj) = item.as_object_mut()
                {
                    obj.insert("kind".into(), Value::String(kind.trim_end_matches("List").to_owned()));
                }
                self.add_object(index, line, &format!(" items[{i}]"), item)?;
            }
            return Ok(());
        }
        self.add_object(index, line, "", value)
    }

    fn add_object(&mut self, index: usize, line: usize, item: &str, value: Value) -> Result<()> {
        let err = |message: String| Error::Object { index, line, item: item.to_owned(), message };
        let Some(kind) = value.get("kind").and_then(Value::as_str).map(str::to_owned) else {
            return Err(err("has no kind".to_owned()));
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
        macro_rules! push {
            ($field:ident, $ty:ty) => {{
                let obj: $ty = serde_json::from_value(value).map_err(|e| err(format!("{kind} {name:?}: {e}")))?;
                self.$field.push(obj);
            }};
        }
        match (kind.as_str(), api_version.as_str()) {
            ("Node", "v1" | "") => push!(nodes, Node),
            ("Pod", "v1" | "") => push!(pods, Pod),
            ("PersistentVolume", "v1" | "") => push!(persistent_volumes, PersistentVolume),
            ("PersistentVolumeClaim", "v1" | "") => push!(persistent_volume_claims, PersistentVolumeClaim),
            ("StorageClass", "storage.k8s.io/v1" | "") => push!(storage_classes, StorageClass),
            ("CSIStorageCapacity", "storage.k8s.io/v1" | "") => push!(csi_storage_capacities, CSIStorageCapacity),
            ("StatefulSet", "apps/v1" | "") => push!(stateful_sets, StatefulSet),
            _ => self.warnings.push(format!(
                "snapshot document {index} (line {line}){item}: skipped {kind} {name:?} ({})",
                if api_version.is_empty() { "no apiVersion" } else { api_version.as_str() }
            )),
        }
        Ok(())
    }
}

/// Splits multi-document YAML at `---` marker lines; returns (1-based start line, text).
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare == "..." {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = n + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_documents_and_lists_and_skips_unknown_kinds() {
        let snap = Snapshot::from_yaml(
            r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: a}}
status: {allocatable: {cpu: 4, memory: 16Gi}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p1, namespace: db}
  spec: {containers: [{name: c, image: x}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm}
---
# a comment-only document
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"#,
        )
        .unwrap();
        assert_eq!(snap.nodes.len(), 1);
        assert_eq!(snap.pods.len(), 1);
        assert_eq!(snap.storage_classes.len(), 1);
        assert_eq!(snap.warnings.len(), 1, "{:?}", snap.warnings);
        assert!(snap.warnings[0].contains("ConfigMap \"cm\""));
        assert!(snap.warnings[0].contains("document 2"));
        let cpu = &snap.nodes[0].status.as_ref().unwrap().allocatable.as_ref().unwrap()["cpu"];
        assert_eq!(cpu.0, "4", "unquoted YAML numbers are quantities too");
    }

    #[test]
    fn malformed_documents_name_their_index_and_line() {
        let err = Snapshot::from_yaml("kind: Node\napiVersion: v1\nmetadata: {name: a}\n---\nkind: Pod\nspec: [\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("snapshot document 2 (line 5) is not valid YAML"), "{err}");
        let err = Snapshot::from_yaml("kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec: {containers: 3}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("snapshot document 1 (line 1): Pod \"p\":"), "{err}");
        let err = Snapshot::from_yaml("metadata: {name: p}\n").unwrap_err().to_string();
        assert!(err.contains("has no kind"), "{err}");
    }

    #[test]
    fn typed_lists_name_their_items() {
        let snap = Snapshot::from_yaml("kind: NodeList\napiVersion: v1\nitems:\n- metadata: {name: a}\n").unwrap();
        assert_eq!(snap.nodes.len(), 1);
    }

    #[test]
    fn json_as_kubectl_prints_it_reads_the_same_objects_as_yaml() {
        let shape = stowage_fixtures::realistic::ClusterShape::new(4, 3);
        let yaml = Snapshot::parse(&shape.snapshot_yaml()).unwrap();
        let json_text = shape.snapshot_json();
        assert!(json_text.starts_with('{'), "{}", &json_text[..40]);
        let json = Snapshot::parse(&json_text).unwrap();
        assert_eq!(json.len(), yaml.len());
        assert!(json.warnings.is_empty() && yaml.warnings.is_empty());
        assert_eq!(json.nodes, yaml.nodes);
        assert_eq!(json.pods, yaml.pods);
        assert_eq!(json.persistent_volumes, yaml.persistent_volumes);
        assert_eq!(json.persistent_volume_claims, yaml.persistent_volume_claims);
        assert_eq!(json.storage_classes, yaml.storage_classes);
        assert_eq!(json.stateful_sets, yaml.stateful_sets);
    }

    #[test]
    fn json_streams_are_documents_and_errors_name_them() {
        let two = "{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"a\"}}\n\n\
                   {\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"b\"}}\n";
        let snap = Snapshot::parse(two).unwrap();
        assert_eq!(snap.nodes.len(), 2);
        let broken = format!("{two}{{\"kind\": \"Pod\",\n \"spec\": [}}\n");
        let err = Snapshot::parse(&broken).unwrap_err().to_string();
        assert!(err.starts_with("snapshot document 3 (line 4) is not valid JSON: "), "{err}");
        assert!(err.contains("line 5"), "the parser's own position is kept: {err}");
        let err = Snapshot::parse("{\"kind\": \"Pod\", \"apiVersion\": \"v1\", \"spec\": {\"containers\": 3}}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("snapshot document 1 (line 1): Pod \"<unnamed>\":"), "{err}");
    }

    #[test]
    fn yaml_flow_mappings_are_not_mistaken_for_json() {
        let snap = Snapshot::parse("{kind: Node, apiVersion: v1, metadata: {name: a}}\n").unwrap();
        assert_eq!(snap.nodes.len(), 1);
    }
}
