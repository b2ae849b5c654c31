//! A service's `deploy:`: mode and replicas, resources (memory in
//! 1024-based units, CPUs as a decimal string), placement constraints,
//! `update_config` / `rollback_config` (sent to Swarm as written; the
//! local strategy takes order, monitor, failure action, parallelism and
//! delay from `update_config`), `restart_policy` and the service labels.

use std::collections::BTreeMap;

use super::super::decoder::{join, Decoder};
use super::super::shape::{Fields, Spelling};
use super::super::yaml::Node;
use super::shape::{DEPLOY, PLACEMENT, RESOURCES, RESOURCE_SET, RESTART_POLICY, ROLLOUT_CONFIG};
use crate::input::manifest::MAX_REPLICAS;
use crate::model::spec::values::{BinaryMemoryBytes, NanoCpus};
use crate::model::spec::{
    FailureAction, Mode, ResourceSet, Resources, RestartPolicy, RolloutConfig, UpdateOrder,
    UpdatePolicy,
};

#[derive(Default)]
pub(super) struct ComposeDeploy {
    pub mode: Mode,
    pub labels: BTreeMap<String, String>,
    pub resources: Resources,
    pub constraints: Vec<String>,
    pub update: Option<UpdatePolicy>,
    pub swarm_update: Option<RolloutConfig>,
    pub swarm_rollback: Option<RolloutConfig>,
    pub restart: Option<RestartPolicy>,
}

impl Decoder<'_> {
    pub(super) fn compose_deploy(&mut self, node: Option<&Node>, path: &str) -> ComposeDeploy {
        let mut out = ComposeDeploy::default();
        let Some(fields) = node.and_then(|n| self.object(n, path, &DEPLOY)) else {
            return out;
        };
        let at = |k: &str| join(path, k);
        let replicas =
            fields
                .get("replicas")
                .and_then(|n| match self.integer(n, &at("replicas")) {
                    Some(r @ 0..) if r <= MAX_REPLICAS as i128 => Some(r as u64),
                    Some(r) => {
                        self.error(
                            n,
                            &at("replicas"),
                            format!("replicas must be 0 to {MAX_REPLICAS}, found {r}"),
                        );
                        None
                    }
                    None => None,
                });
        let mode = match fields.get("mode") {
            Some(n) => self.string(n, &at("mode")),
            None => None,
        };
        out.mode = match mode.as_deref() {
            Some("global") => {
                if let Some(n) = fields.get("replicas") {
                    self.error(
                        n,
                        &at("replicas"),
                        "replicas can only be used with mode: replicated",
                    );
                }
                Mode::Global
            }
            None | Some("replicated") => Mode::Replicated {
                replicas: replicas.unwrap_or(1),
            },
            Some(other) => {
                let n = fields.get("mode").expect("read above");
                self.error(
                    n,
                    &at("mode"),
                    format!("mode `{other}` is not replicated or global"),
                );
                Mode::default()
            }
        };
        if let Some(n) = fields.get("labels") {
            out.labels = self.compose_labels(n, &at("labels"));
        }
        if let Some(n) = fields.get("resources") {
            out.resources = self.compose_resources(n, &at("resources"));
        }
        if let Some(n) = fields.get("placement") {
            if let Some(p) = self.object(n, &at("placement"), &PLACEMENT) {
                if let Some(c) = p.get("constraints") {
                    out.constraints =
                        self.compose_strings(c, &join(&at("placement"), "constraints"));
                }
            }
        }
        if let Some(n) = fields.get("update_config") {
            out.swarm_update = self.compose_rollout(n, &at("update_config"), true);
            out.update = out.swarm_update.as_ref().map(local_policy);
        }
        if let Some(n) = fields.get("rollback_config") {
            out.swarm_rollback = self.compose_rollout(n, &at("rollback_config"), false);
        }
        if let Some(n) = fields.get("restart_policy") {
            out.restart = self.compose_restart_policy(n, &at("restart_policy"));
        }
        if let Some(n) = fields.get("endpoint_mode") {
            match self.string(n, &at("endpoint_mode")).as_deref() {
                Some("vip") | None => {}
                Some(other) => self.error(n, &at("endpoint_mode"), format!("endpoint mode `{other}` is not applied by assetd yet; use vip (the default)")),
            }
        }
        out
    }

    fn compose_resources(&mut self, node: &Node, path: &str) -> Resources {
        let mut out = Resources::default();
        let Some(fields) = self.object(node, path, &RESOURCES) else {
            return out;
        };
        if let Some(n) = fields.get("limits") {
            out.limits = self.compose_resource_set(n, &join(path, "limits"));
        }
        if let Some(n) = fields.get("reservations") {
            out.reservations = self.compose_resource_set(n, &join(path, "reservations"));
        }
        out
    }

    fn compose_resource_set(&mut self, node: &Node, path: &str) -> ResourceSet {
        let mut out = ResourceSet::default();
        let Some(fields) = self.object(node, path, &RESOURCE_SET) else {
            return out;
        };
        if let Some(n) = fields.get("cpus") {
            let at = join(path, "cpus");
            if let Some(text) = self.string(n, &at) {
                out.nano_cpus = self.parsed::<NanoCpus>(n, &at, &text).map(|c| c.0);
            }
        }
        if let Some(n) = fields.get("memory") {
            let at = join(path, "memory");
            if let Some(text) = self.string(n, &at) {
                out.memory_bytes = self.parsed::<BinaryMemoryBytes>(n, &at, &text).map(|m| m.0);
            }
        }
        out
    }

    fn compose_rollout(&mut self, node: &Node, path: &str, update: bool) -> Option<RolloutConfig> {
        let fields = self.object(node, path, &ROLLOUT_CONFIG)?;
        let at = |k: &str| join(path, k);
        let duration = |this: &mut Self, f: &Fields<'_>, k: &str| {
            f.get(k)
                .and_then(|n| this.duration_or_zero_ns(n, &at(k), Spelling::Friendly))
        };
        let parallelism =
            fields
                .get("parallelism")
                .and_then(|n| match self.integer(n, &at("parallelism")) {
                    Some(p @ 0..) if p <= u32::MAX as i128 => Some(p as u64),
                    Some(p) => {
                        self.error(
                            n,
                            &at("parallelism"),
                            format!("parallelism must be 0 or more, found {p}"),
                        );
                        None
                    }
                    None => None,
                });
        let actions: &[&str] = if update {
            &["continue", "rollback", "pause"]
        } else {
            &["continue", "pause"]
        };
        let failure_action = self.compose_choice(&fields, "failure_action", path, actions);
        let order = self.compose_choice(&fields, "order", path, &UpdateOrder::NAMES);
        let max_failure_ratio = fields.get("max_failure_ratio").and_then(|n| {
            let text = self.string(n, &at("max_failure_ratio"))?;
            match text.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Some(text),
                _ => {
                    self.error(
                        n,
                        &at("max_failure_ratio"),
                        format!("`{text}` is not a ratio from 0 to 1"),
                    );
                    None
                }
            }
        });
        Some(RolloutConfig {
            parallelism,
            delay_ns: duration(self, &fields, "delay"),
            failure_action,
            monitor_ns: duration(self, &fields, "monitor"),
            max_failure_ratio,
            order,
        })
    }

    fn compose_restart_policy(&mut self, node: &Node, path: &str) -> Option<RestartPolicy> {
        let fields = self.object(node, path, &RESTART_POLICY)?;
        let at = |k: &str| join(path, k);
        let condition =
            self.compose_choice(&fields, "condition", path, &["none", "on-failure", "any"]);
        let duration = |this: &mut Self, k: &str| {
            fields
                .get(k)
                .and_then(|n| this.duration_or_zero_ns(n, &at(k), Spelling::Friendly))
        };
        let delay_ns = duration(self, "delay");
        let window_ns = duration(self, "window");
        let max_attempts = fields
            .get("max_attempts")
            .and_then(|n| self.integer(n, &at("max_attempts")))
            .and_then(|n| u64::try_from(n).ok());
        Some(RestartPolicy {
            condition,
            delay_ns,
            max_attempts,
            window_ns,
        })
    }

    /// A string field that must be one of `choices`.
    fn compose_choice(
        &mut self,
        fields: &Fields<'_>,
        key: &str,
        path: &str,
        choices: &[&str],
    ) -> Option<String> {
        let n = fields.get(key)?;
        let at = join(path, key);
        let text = self.string(n, &at)?;
        if choices.contains(&text.as_str()) {
            Some(text)
        } else {
            self.error(
                n,
                &at,
                format!("`{text}` is not one of {}", choices.join(", ")),
            );
            None
        }
    }
}

/// What the local strategy takes from `update_config`.
fn local_policy(config: &RolloutConfig) -> UpdatePolicy {
    UpdatePolicy {
        order: config.order.as_deref().and_then(UpdateOrder::parse),
        monitor_ns: config.monitor_ns.filter(|ns| *ns > 0),
        failure_action: config
            .failure_action
            .as_deref()
            .and_then(FailureAction::parse),
        parallelism: config.parallelism,
        delay_ns: config.delay_ns,
    }
}
