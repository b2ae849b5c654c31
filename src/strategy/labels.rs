//! Ownership labels: how assetd recognises its own objects. Anything without
//! `io.assetd.managed=true` is never listed, changed or removed.

use std::collections::HashMap;

use crate::spec::{AssetName, DeploySpec, SpecHash};

use super::Ownership;

pub const MANAGED: &str = "io.assetd.managed";
/// Which assetd instance owns the object (`--instance`, default
/// `default`): several instances may share an engine, each with its own
/// manifests, and never touch each other's objects.
pub const INSTANCE: &str = "io.assetd.instance";
pub const ASSET: &str = "io.assetd.asset";
pub const SPEC_HASH: &str = "io.assetd.spec-hash";
pub const SOURCE: &str = "io.assetd.source";
/// Local engine only: how many containers the asset has, so drift (a
/// replica removed by hand) is visible from one listing.
pub const REPLICAS: &str = "io.assetd.replicas";
/// Local engine only: which replica (1-based) a container is.
pub const REPLICA: &str = "io.assetd.replica";

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
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(MANAGED.into(), "true".into());
    labels.insert(INSTANCE.into(), instance.into());
    labels.insert(ASSET.into(), spec.name.to_string());
    labels.insert(SPEC_HASH.into(), owner.hash.to_string());
    labels.insert(SOURCE.into(), owner.source.clone());
    labels
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
