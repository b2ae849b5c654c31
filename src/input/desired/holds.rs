//! Names held because their declarations conflict: duplicates, shared
//! host ports, `dependsOn` problems, duplicate sync windows.

use std::collections::BTreeMap;

use crate::input::manifest::{self, ManifestError, ParsedAsset, SourcePos};
use crate::model::spec::AssetName;

use super::*;

/// Assets left as they run because their declarations conflict, and the
/// errors that say so (one at each declaration involved).
#[derive(Default)]
pub(super) struct Holds {
    pub(super) held: BTreeMap<AssetName, Conflicts>,
    pub(super) conflicts: Vec<ManifestError>,
}

impl Holds {
    pub(super) fn hold(&mut self, name: &AssetName, kind: ConflictKind, error: ManifestError) {
        self.held.entry(name.clone()).or_default().0.push(Conflict {
            kind,
            error: error.clone(),
        });
        self.conflicts.push(error);
    }

    /// Names declared more than once: an error at each declaration.
    pub(super) fn duplicate_names(&mut self, parsed: &[(String, ParsedAsset)]) {
        let mut by_name: BTreeMap<&AssetName, Vec<usize>> = BTreeMap::new();
        for (i, (_, asset)) in parsed.iter().enumerate() {
            by_name.entry(&asset.spec.name).or_default().push(i);
        }
        for (name, indexes) in by_name.iter().filter(|(_, i)| i.len() > 1) {
            for &i in indexes {
                let others: Vec<String> = indexes
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| parsed[j].1.pos.to_string())
                    .collect();
                let error = ManifestError::at(
                    &parsed[i].1.pos,
                    &parsed[i].1.name_field,
                    format!(
                        "asset `{name}` is also declared at {}; names must be unique across the directory",
                        others.join(", ")
                    ),
                );
                self.hold(name, ConflictKind::DuplicateName, error);
            }
        }
    }

    /// Sync windows declared more than once: an error at each (all of
    /// them still count).
    pub(super) fn duplicate_windows(&mut self, windows: &[(String, manifest::ParsedWindow)]) {
        for (i, (_, parsed)) in windows.iter().enumerate() {
            let name = &parsed.window.name;
            let others: Vec<String> = windows
                .iter()
                .enumerate()
                .filter(|(j, (_, w))| *j != i && w.window.name == *name)
                .map(|(_, (_, w))| w.pos.to_string())
                .collect();
            if !others.is_empty() {
                self.conflicts.push(ManifestError::at(
                    &parsed.pos,
                    "metadata.name",
                    format!(
                        "sync window `{name}` is also declared at {}; names must be unique across the directory",
                        others.join(", ")
                    ),
                ));
            }
        }
    }

    /// Host ports published by more than one asset: an error at each.
    pub(super) fn port_conflicts(&mut self, parsed: &[(String, ParsedAsset)]) {
        type PortKey = (u16, crate::model::spec::Protocol);
        let mut by_port: BTreeMap<PortKey, Vec<(&AssetName, &SourcePos)>> = BTreeMap::new();
        for (_, asset) in parsed {
            for (port, protocol, pos) in &asset.ports_pos {
                by_port
                    .entry((*port, *protocol))
                    .or_default()
                    .push((&asset.spec.name, pos));
            }
        }
        for ((port, protocol), users) in &by_port {
            for (name, pos) in users {
                let others: Vec<String> = users
                    .iter()
                    .filter(|(other, _)| other != name)
                    .map(|(other, other_pos)| format!("{other} ({other_pos})"))
                    .collect();
                if others.is_empty() {
                    continue;
                }
                let label = match protocol {
                    crate::model::spec::Protocol::Tcp => port.to_string(),
                    crate::model::spec::Protocol::Udp => format!("{port}/udp"),
                };
                let error = ManifestError::at(
                    pos,
                    "spec.ports",
                    format!("host port {label} is used by {}", others.join(", ")),
                );
                self.hold(name, ConflictKind::PortConflict, error);
            }
        }
    }
}

impl Holds {
    /// `spec.dependsOn` entries naming no declared asset, and cycles: an
    /// error at the entry, and the asset held.
    pub(super) fn dependencies(&mut self, parsed: &[(String, ParsedAsset)]) {
        let by_name: BTreeMap<&AssetName, &ParsedAsset> =
            parsed.iter().map(|(_, a)| (&a.spec.name, a)).collect();
        for (_, asset) in parsed {
            for (dep, pos) in &asset.depends_on {
                let message = if !by_name.contains_key(dep) {
                    format!("depends on `{dep}`, which no valid manifest declares")
                } else if let Some(cycle) = cycle_through(&by_name, &asset.spec.name, dep) {
                    format!("dependency cycle: {}", cycle.join(" → "))
                } else {
                    continue;
                };
                let error = ManifestError::at(pos, "spec.dependsOn", message);
                self.hold(&asset.spec.name, ConflictKind::Dependency, error);
            }
        }
    }
}

/// The path `from → dep → ... → from`, when `dep` leads back to `from`.
pub(super) fn cycle_through(
    by_name: &BTreeMap<&AssetName, &ParsedAsset>,
    from: &AssetName,
    dep: &AssetName,
) -> Option<Vec<String>> {
    // Depth-first from `dep`, remembering how each name was first reached.
    let mut came_from: BTreeMap<&AssetName, &AssetName> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![dep];
    while let Some(at) = stack.pop() {
        if at == from {
            let mut back = vec![];
            let mut step = from;
            while step != dep {
                step = came_from[step];
                back.push(step.to_string());
            }
            back.reverse();
            let path = std::iter::once(from.to_string())
                .chain(back)
                .chain(std::iter::once(from.to_string()));
            return Some(path.collect());
        }
        if !seen.insert(at) {
            continue;
        }
        let next = by_name.get(at).map(|a| a.depends_on.as_slice());
        for (next, _) in next.unwrap_or_default() {
            came_from.entry(next).or_insert(at);
            stack.push(next);
        }
    }
    None
}
