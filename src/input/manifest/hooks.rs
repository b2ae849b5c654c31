//! `spec.hooks`: `preDeploy`, `postDeploy` and `onFailure`, each `{ image,
//! command, timeout }`. Kept apart from the spec (see
//! [`crate::model::hooks`]).

use super::decoder::{join, Decoder};
use super::shape::{Spelling, HOOK, HOOKS};
use super::yaml::Node;
use crate::model::hooks::{Hook, HookKind, Hooks, DEFAULT_HOOK_TIMEOUT};

/// The longest timeout a hook may ask for: a rollout waits for its hooks.
const MAX_HOOK_TIMEOUT_NS: i64 = 3600 * 1_000_000_000;

impl Decoder<'_> {
    pub(super) fn hooks(&mut self, node: &Node) -> Hooks {
        const P: &str = "spec.hooks";
        let mut hooks = Hooks::default();
        let Some(fields) = self.object(node, P, &HOOKS) else {
            return hooks;
        };
        for kind in HookKind::ALL {
            let Some(n) = fields.get(kind.as_str()) else {
                continue;
            };
            let hook = self.hook(n, &join(P, kind.as_str()));
            match kind {
                HookKind::PreDeploy => hooks.pre_deploy = hook,
                HookKind::PostDeploy => hooks.post_deploy = hook,
                HookKind::OnFailure => hooks.on_failure = hook,
                // Not a key of `hooks` (`HookKind::ALL` leaves it out).
                HookKind::Job => {}
            }
        }
        hooks
    }

    fn hook(&mut self, node: &Node, path: &str) -> Option<Hook> {
        let fields = self.object(node, path, &HOOK)?;
        let image = match fields.get("image") {
            Some(n) => Some(self.image_at(n, &join(path, "image"))?),
            None => None,
        };
        let command = fields.get("command").and_then(|n| self.command(n));
        let timeout = match fields.get("timeout") {
            Some(n) => {
                let at = join(path, "timeout");
                let ns = self.duration_ns(n, &at, Spelling::Friendly)?;
                if ns > MAX_HOOK_TIMEOUT_NS {
                    self.error(n, &at, "a hook may run for at most 1h");
                    return None;
                }
                std::time::Duration::from_nanos(ns as u64)
            }
            None => DEFAULT_HOOK_TIMEOUT,
        };
        Some(Hook {
            image,
            command,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::input::manifest::{parse_file, Policy};
    use crate::model::hooks::HookKind;

    fn asset(hooks: &str) -> String {
        format!("apiVersion: assetd/v1\nkind: Asset\nmetadata: {{ name: mes }}\nspec:\n  image: mes:2\n{hooks}")
    }

    #[test]
    fn hooks_are_read_and_leave_the_spec_hash_alone() {
        let plain = parse_file("a.yaml", &asset(""), &|_| None, &Policy::default()).unwrap();
        let hooked = parse_file(
            "a.yaml",
            &asset("  hooks:\n    preDeploy: { command: [migrate, --check], timeout: 30s }\n    onFailure: { image: notify:1, command: page }\n"),
            &|_| None,
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(plain[0].hash, hooked[0].hash, "a hook restarts nothing");
        let hooks = &hooked[0].hooks;
        let pre = hooks.get(HookKind::PreDeploy).unwrap();
        assert_eq!(
            pre.command.as_deref(),
            Some(&["migrate".to_string(), "--check".to_string()][..])
        );
        assert_eq!(pre.timeout.as_secs(), 30);
        assert_eq!(pre.image, None);
        let on_failure = hooks.get(HookKind::OnFailure).unwrap();
        assert_eq!(on_failure.image.as_deref(), Some("notify:1"));
        assert_eq!(on_failure.timeout.as_secs(), 120, "the default");
        assert!(hooks.get(HookKind::PostDeploy).is_none());
        assert_ne!(
            hooks.digest(),
            crate::model::hooks::Hooks::default().digest()
        );
    }

    #[test]
    fn hook_mistakes_are_reported_where_they_are() {
        let errors = parse_file(
            "a.yaml",
            &asset("  hooks:\n    preDeploy: { command: x, timeout: 2h }\n    postDeplo: { command: y }\n"),
            &|_| None,
            &Policy::default(),
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.starts_with(
                "a.yaml:7:39: spec.hooks.preDeploy.timeout: a hook may run for at most 1h"
            )),
            "{text:?}"
        );
        assert!(
            text.iter().any(|e| e.contains("spec.hooks.postDeplo")),
            "{text:?}"
        );
    }
}
