//! Ownership labels: how assetd recognises its own objects. Anything without
//! `io.assetd.managed=true` is never listed, changed or removed.

use std::collections::HashMap;

use crate::engine::strategy::writer::{Writer, WriterStamp};
use crate::model::spec::{AssetName, DeploySpec, SpecHash};

use super::Ownership;

pub const MANAGED: &str = "io.assetd.managed";
/// Which assetd instance owns the object (`--instance`, default
/// `default`): several instances may share an engine, each with its own
/// manifests, and never touch each other's objects.
pub const INSTANCE: &str = "io.assetd.instance";
pub const ASSET: &str = "io.assetd.asset";
/// On a hook's one-shot container or job service (never `managed`: it is
/// no asset): which hook it runs.
pub const HOOK: &str = "io.assetd.hook";
pub const SPEC_HASH: &str = "io.assetd.spec-hash";
pub const SOURCE: &str = "io.assetd.source";
/// Local engine only: how many containers the asset has, so drift (a
/// replica removed by hand) is visible from one listing.
pub const REPLICAS: &str = "io.assetd.replicas";
/// Local engine only: the spec hash without the replica count
/// ([`crate::model::spec::DeploySpec::template_hash`]), so scaling keeps the
/// containers that stay.
pub const TEMPLATE_HASH: &str = "io.assetd.template-hash";
/// Local engine only: which replica (1-based) a container is.
pub const REPLICA: &str = "io.assetd.replica";

/// Which daemon last created or updated the object (`host:state-dir`),
/// and when that daemon started: see [`crate::engine::strategy::writer`]. Never part of a
/// spec comparison: a restarted daemon must not rewrite everything.
pub const WRITER: &str = "io.assetd.writer";
pub const WRITER_STARTED: &str = "io.assetd.writer-started";
/// The manifests revision (`3f2a91c`, `digest:5e1b0c4d`) that last wrote
/// the object.
pub const REVISION: &str = "io.assetd.revision";

/// Puts the writer's stamp on an object's labels.
pub fn stamp(labels: &mut HashMap<String, String>, writer: Option<&Writer>) {
    if let Some(writer) = writer {
        labels.insert(WRITER.into(), writer.id.clone());
        labels.insert(WRITER_STARTED.into(), writer.started_ms.to_string());
    }
}

/// The writer's stamp on a listed object written at `written_ms`.
pub fn writer_of(labels: &HashMap<String, String>, written_ms: u64) -> Option<WriterStamp> {
    Some(WriterStamp {
        writer: Writer {
            id: labels.get(WRITER)?.clone(),
            started_ms: labels.get(WRITER_STARTED)?.parse().ok()?,
        },
        written_ms,
    })
}

/// Labels as compared for drift: without the writer's stamp.
pub fn without_stamp(labels: Option<&HashMap<String, String>>) -> HashMap<&str, &str> {
    labels
        .into_iter()
        .flatten()
        // Who wrote it, and from which revision, is no reason to write.
        .filter(|(k, _)| ![WRITER, WRITER_STARTED, REVISION].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The label filter that selects this instance's objects, in the form
/// bollard's list options take.
pub fn managed_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{MANAGED}=true"), format!("{INSTANCE}={instance}")],
    )])
}

/// The filter for the objects of one asset.
pub fn asset_filter(instance: &str, name: &AssetName) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED}=true"),
            format!("{INSTANCE}={instance}"),
            format!("{ASSET}={name}"),
        ],
    )])
}

/// The user's labels plus ours.
pub fn object_labels(
    spec: &DeploySpec,
    owner: &Ownership,
    instance: &str,
) -> HashMap<String, String> {
    with_ownership(&spec.labels, spec, owner, instance)
}

/// The Swarm service's labels: Compose's `deploy.labels` when the spec
/// has them apart, else the same as the containers'.
pub fn service_labels(
    spec: &DeploySpec,
    owner: &Ownership,
    instance: &str,
) -> HashMap<String, String> {
    let base = spec.runtime.service_labels.as_ref().unwrap_or(&spec.labels);
    with_ownership(base, spec, owner, instance)
}

fn with_ownership(
    base: &std::collections::BTreeMap<String, String>,
    spec: &DeploySpec,
    owner: &Ownership,
    instance: &str,
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = base.clone().into_iter().collect();
    labels.insert(MANAGED.into(), "true".into());
    labels.insert(INSTANCE.into(), instance.into());
    labels.insert(ASSET.into(), spec.name.to_string());
    labels.insert(SPEC_HASH.into(), owner.hash.to_string());
    labels.insert(SOURCE.into(), owner.source.clone());
    if let Some(revision) = &owner.revision {
        labels.insert(REVISION.into(), revision.clone());
    }
    labels
}

/// The assetd instance that owns an object, whichever it is.
pub fn owning_instance(labels: &HashMap<String, String>) -> Option<String> {
    (labels.get(MANAGED).map(String::as_str) == Some("true"))
        .then(|| labels.get(INSTANCE).cloned())
        .flatten()
}

/// Reads the ownership labels of a listed object; `None` when it is not
/// this instance's or its asset label is not a valid name.
pub fn owner_of(
    labels: &HashMap<String, String>,
    instance: &str,
) -> Option<(AssetName, Option<SpecHash>, Option<String>)> {
    if labels.get(MANAGED).map(String::as_str) != Some("true")
        || labels.get(INSTANCE).map(String::as_str) != Some(instance)
    {
        return None;
    }
    let name = AssetName::new(labels.get(ASSET)?).ok()?;
    let hash = labels.get(SPEC_HASH).map(|h| SpecHash(h.clone()));
    let source = labels.get(SOURCE).cloned();
    Some((name, hash, source))
}

/// The filter of the hook objects of one asset of this instance.
pub fn hook_filter(instance: &str, asset: &AssetName) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            HOOK.to_string(),
            format!("{INSTANCE}={instance}"),
            format!("{ASSET}={asset}"),
        ],
    )])
}

/// A hook object's labels: the instance, the asset, the hook.
pub fn hook_labels(
    instance: &str,
    asset: &AssetName,
    kind: crate::model::hooks::HookKind,
) -> HashMap<String, String> {
    HashMap::from([
        (INSTANCE.to_string(), instance.to_string()),
        (ASSET.to_string(), asset.to_string()),
        (HOOK.to_string(), kind.as_str().to_string()),
    ])
}
