//! Drift on Swarm: a per-field fingerprint of the fields we set, written
//! as a label at deploy time and recomputed from the listed spec.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{EndpointPortConfigPublishModeEnum, Mount as DockerMount, ServiceSpec};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::labels;

/// Service label holding the per-field fingerprint of the fields we set
/// (`image=<12 hex>,command=…`).
pub const FINGERPRINT: &str = "io.assetd.fingerprint";

/// The fields assetd sets, each read the same way from the spec we send
/// and from the spec Swarm returns: Swarm fills defaults, drops empty
/// lists and zero values, and `docker service update` pins image digests
/// (`img:1@sha256:…`); none of that may read as a change. Networks are
/// compared as sent, i.e. as IDs (see [`Swarm::network_targets`]).
pub(super) fn managed_fields(spec: &ServiceSpec) -> Vec<(&'static str, Value)> {
    let task = spec.task_template.clone().unwrap_or_default();
    let container = task.container_spec.unwrap_or_default();
    // No healthcheck here: bollard 0.21 reads `HealthCheck` while the
    // engine answers `Healthcheck`, so it never reads back and would look
    // like drift for ever. A manifest change still changes the spec hash.
    let image = container.image.unwrap_or_default();
    let image = image.split('@').next().unwrap_or_default().to_string();
    let non_empty = |v: Option<Vec<String>>| v.filter(|v| !v.is_empty());
    let mut service_labels: BTreeMap<String, String> = spec
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    service_labels.remove(FINGERPRINT);
    service_labels.remove(labels::WRITER);
    service_labels.remove(labels::WRITER_STARTED);
    service_labels.remove(labels::REVISION);
    let container_labels: BTreeMap<String, String> =
        container.labels.unwrap_or_default().into_iter().collect();
    let mounts = mount_fields(container.mounts);
    let resources = task.resources.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let reservations = resources.reservations.unwrap_or_default();
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    let mode = spec.mode.clone().unwrap_or_default();
    let mode = match (mode.replicated, mode.global) {
        (_, Some(_)) => json!("global"),
        (Some(r), None) => json!({ "replicated": r.replicas.unwrap_or(1) }),
        (None, None) => Value::Null,
    };
    let ports = port_fields(spec);
    let mut networks: Vec<String> = task
        .networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.target)
        .collect();
    networks.sort();
    [
        ("image", json!(image)),
        ("command", json!(non_empty(container.args))),
        ("entrypoint", json!(non_empty(container.command))),
        ("env", json!(container.env.unwrap_or_default())),
        ("labels", json!(service_labels)),
        ("container labels", json!(container_labels)),
        ("mounts", json!(mounts)),
        (
            "resources",
            json!({
                "limits": [set(limits.nano_cpus), set(limits.memory_bytes)],
                "reservations": [set(reservations.nano_cpus), set(reservations.memory_bytes)],
            }),
        ),
        (
            "constraints",
            json!(task
                .placement
                .and_then(|p| p.constraints)
                .unwrap_or_default()),
        ),
        ("networks", json!(networks)),
        ("ports", json!(ports)),
        ("mode", mode),
    ]
    .into_iter()
    // Managed only when set: services deployed before these fields
    // existed keep their fingerprint (no redeploy on upgrade).
    .chain(
        container
            .user
            .filter(|u| !u.is_empty())
            .map(|u| ("user", json!(u))),
    )
    .chain(non_empty_ulimits(container.ulimits).map(|u| ("ulimits", u)))
    .collect()
}

/// Ulimits as `[name, soft, hard]`, sorted; `None` when there are none.
pub(super) fn non_empty_ulimits(
    ulimits: Option<Vec<bollard::models::ResourcesUlimits>>,
) -> Option<Value> {
    let mut limits: Vec<Value> = ulimits
        .unwrap_or_default()
        .into_iter()
        .map(|u| json!([u.name, u.soft, u.hard]))
        .collect();
    limits.sort_by_key(|v| v.to_string());
    (!limits.is_empty()).then(|| json!(limits))
}

/// Mounts as `[type, source, target, read-only]`.
pub(super) fn mount_fields(mounts: Option<Vec<DockerMount>>) -> Vec<Value> {
    mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let mut fields = json!([
                m.typ.map(|t| t.to_string()),
                m.source.filter(|s| !s.is_empty()),
                m.target,
                m.read_only.unwrap_or(false),
            ]);
            // Only when set, so that the mounts of services written before
            // volume drivers existed keep their fingerprint.
            let driver = m.volume_options.and_then(|o| o.driver_config);
            if let (Some(driver), Value::Array(list)) = (driver, &mut fields) {
                let options: BTreeMap<_, _> =
                    driver.options.unwrap_or_default().into_iter().collect();
                list.push(json!([driver.name, options]));
            }
            fields
        })
        .collect()
}

/// Published ports as `(protocol, published, target, mode)`, sorted, with
/// Swarm's empty defaults read as what they mean.
pub(super) fn port_fields(spec: &ServiceSpec) -> Vec<(String, i64, i64, String)> {
    let mut ports: Vec<(String, i64, i64, String)> = spec
        .endpoint_spec
        .clone()
        .unwrap_or_default()
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let publish_mode = match p.publish_mode {
                None | Some(EndpointPortConfigPublishModeEnum::EMPTY) => "ingress".to_string(),
                Some(mode) => mode.to_string(),
            };
            let protocol = p.protocol.map(|x| x.to_string());
            (
                protocol
                    .filter(|x| !x.is_empty())
                    .unwrap_or_else(|| "tcp".into()),
                p.published_port.unwrap_or(0),
                p.target_port.unwrap_or(0),
                publish_mode,
            )
        })
        .collect();
    ports.sort();
    ports
}

pub(super) fn short_hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `field=<12 hex>` per managed field, comma separated: what the
/// [`FINGERPRINT`] label holds. Per field, so that drift names the field.
pub fn fingerprint(spec: &ServiceSpec) -> String {
    managed_fields(spec)
        .iter()
        .map(|(field, value)| format!("{field}={}", short_hash(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// What differs between the fingerprint written at deploy time and the
/// service as listed, one line per field with its value now.
pub(super) fn drift(label: Option<&str>, spec: &ServiceSpec) -> Vec<String> {
    let Some(label) = label else {
        return vec![format!("service has no {FINGERPRINT} label")];
    };
    let written: HashMap<&str, &str> = label
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let now = managed_fields(spec);
    let mut drift: Vec<String> = now
        .iter()
        .filter(|(field, value)| written.get(field) != Some(&short_hash(value).as_str()))
        .map(|(field, value)| format!("{field} changed outside assetd (now {})", render(value)))
        .collect();
    for field in written.keys() {
        if !now.iter().any(|(f, _)| f == field) {
            drift.push(format!("{field} removed outside assetd"));
        }
    }
    drift
}

/// A value for a one-line reason: strings bare, long values cut.
pub(super) fn render(value: &Value) -> String {
    const MAX: usize = 80;
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
