//! From the parsed Network, Volume, Secret and Config documents to the
//! declared objects of a pass: names unique per kind, contents read, and
//! the assets that use them completed (a secret's version in the asset's
//! spec, so a rotation updates it; a declared volume's driver on its
//! mounts, so every Swarm node creates it alike).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::input::manifest::{ManifestError, ParsedAsset};
use crate::input::stack::{
    content, DesiredResource, DesiredResources, ParsedResource, ResourceKind, ResourceSpec,
};
use crate::model::spec::VolumeDriver;

/// The declared objects, and those that cannot be used this pass.
#[derive(Debug, Default)]
pub struct Declared {
    pub resources: DesiredResources,
    /// Declared twice, or their content cannot be read: (kind, name) →
    /// the error. Their users are held; none of their versions removed.
    pub held: BTreeMap<(ResourceKind, String), ManifestError>,
    pub errors: Vec<ManifestError>,
}

/// `parsed`: (manifest file, document) pairs, in file order.
pub fn declare(
    parsed: Vec<(String, ParsedResource)>,
    manifests: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    keys: &crate::input::stack::encrypted::AgeKeys,
    version_key: &crate::input::stack::version_key::VersionKey,
) -> Declared {
    let mut declared = Declared::default();
    let mut seen: BTreeMap<(ResourceKind, String), Vec<(String, ParsedResource)>> = BTreeMap::new();
    for (source, resource) in parsed {
        seen.entry((resource.kind(), resource.name.clone()))
            .or_default()
            .push((source, resource));
    }
    for (key, mut all) in seen {
        if all.len() > 1 {
            let places: Vec<String> = all.iter().map(|(_, r)| r.pos.to_string()).collect();
            for (_, resource) in &all {
                let error = ManifestError::at(
                    &resource.pos,
                    "metadata.name",
                    format!(
                        "{} `{}` is declared {} times ({}); names are unique per kind",
                        key.0,
                        key.1,
                        all.len(),
                        places.join(", ")
                    ),
                );
                declared.errors.push(error.clone());
                declared.held.insert(key.clone(), error);
            }
            continue;
        }
        let (source, resource) = all.pop().expect("one declaration");
        let content = match &resource.spec {
            ResourceSpec::Secret(from) | ResourceSpec::Config(from) => {
                match content::read(from, manifests, &source, env, keys, version_key) {
                    Ok(content) => Some(content),
                    Err(message) => {
                        let (pos, field) = match from {
                            crate::input::stack::ContentSource::File { pos, .. } => {
                                (pos.clone(), "spec.file")
                            }
                            crate::input::stack::ContentSource::FromEnv { pos, .. } => {
                                (pos.clone(), "spec.fromEnv")
                            }
                            crate::input::stack::ContentSource::Inline(_) => {
                                (resource.pos.clone(), "spec.data")
                            }
                        };
                        let error = ManifestError::at(&pos, field, message);
                        declared.errors.push(error.clone());
                        declared.held.insert(key, error);
                        continue;
                    }
                }
            }
            _ => None,
        };
        let hash = match &content {
            Some(content) => content.version.clone(),
            None => DesiredResource::spec_hash(&resource.spec, &resource.labels),
        };
        declared.resources.insert(
            key,
            DesiredResource {
                kind: resource.kind(),
                name: resource.name,
                source,
                pos: resource.pos,
                labels: resource.labels,
                spec: resource.spec,
                content,
                hash,
            },
        );
    }
    declared
}

impl Declared {
    /// Completes an asset from what it uses; `Err` names a reference to an
    /// object that is declared but unusable (the asset is held).
    pub fn complete(&self, asset: &mut ParsedAsset) -> Result<(), ManifestError> {
        for reference in &asset.references {
            if let Some(error) = self.held.get(&(reference.kind, reference.name.clone())) {
                return Err(ManifestError::at(
                    &reference.pos,
                    &reference.field,
                    format!(
                        "{} `{}` cannot be used: {error}",
                        reference.kind, reference.name
                    ),
                ));
            }
        }
        let mut changed = false;
        let mut values = Vec::new();
        for (kind, refs) in [
            (ResourceKind::Secret, &mut asset.spec.secrets),
            (ResourceKind::Config, &mut asset.spec.configs),
        ] {
            for file_ref in refs.iter_mut() {
                if let Some(want) = self.resources.get(&(kind, file_ref.source.clone())) {
                    file_ref.version = Some(want.hash.clone());
                    changed = true;
                    if kind == ResourceKind::Secret {
                        values.extend(want.content.as_ref().map(|c| c.expose().to_vec()));
                    }
                }
            }
        }
        if !values.is_empty() {
            asset.redactions = crate::model::hooks::Redactions::new(values);
        }
        for mount in asset.spec.mounts.iter_mut() {
            let Some(source) = &mount.source else {
                continue;
            };
            let Some(want) = self.resources.get(&(ResourceKind::Volume, source.clone())) else {
                continue;
            };
            let ResourceSpec::Volume(spec) = &want.spec else {
                continue;
            };
            if mount.volume_driver.is_none()
                && (spec.driver.is_some() || !spec.driver_opts.is_empty())
            {
                mount.volume_driver = Some(VolumeDriver {
                    name: spec.driver.clone().unwrap_or_else(|| "local".into()),
                    options: spec.driver_opts.clone(),
                });
                changed = true;
            }
        }
        if changed {
            asset.hash = asset.spec.hash();
        }
        Ok(())
    }

    /// Every (kind, name) declared, usable or not.
    pub fn names(&self) -> BTreeSet<(ResourceKind, String)> {
        self.resources
            .keys()
            .chain(self.held.keys())
            .cloned()
            .collect()
    }
}
