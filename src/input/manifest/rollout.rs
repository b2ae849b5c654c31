//! `spec.update` and `spec.healthcheck`: how a new version replaces the
//! running one, and how it is judged healthy.

use super::decoder::Decoder;
use super::shape::{Spelling, HEALTHCHECK, UPDATE};
use super::yaml::{Kind, Node};
use crate::model::spec::values::DurationNs;
use crate::model::spec::{FailureAction, Healthcheck, UpdateOrder, UpdatePolicy};

impl Decoder<'_> {
    /// `update: { order: start-first, monitor: 5s, failureAction: rollback,
    /// parallelism: 1, delay: 0s }`; the Engine-API spelling is Swarm's
    /// `UpdateConfig`, durations in nanoseconds.
    pub(super) fn update_policy(&mut self, node: &Node) -> Option<UpdatePolicy> {
        const P: &str = "spec.update";
        let fields = self.object(node, P, &UPDATE)?;
        let errors_before = self.errors.len();
        let path = |key: &str| fields.path(P, key);
        let order = fields.get("order").and_then(|value| {
            let text = self.string(value, &path("order"))?;
            let order = UpdateOrder::parse(text.trim());
            if order.is_none() {
                let names = UpdateOrder::NAMES.join(", ");
                self.error(
                    value,
                    &path("order"),
                    format!("order `{text}` is not one of {names}"),
                );
            }
            order
        });
        let monitor_ns = fields
            .get("monitor")
            .and_then(|value| self.duration_ns(value, &path("monitor"), fields.spelling));
        let failure_action = fields.get("failureAction").and_then(|value| {
            let text = self.string(value, &path("failureAction"))?;
            let action = FailureAction::parse(text.trim());
            if action.is_none() {
                let names = FailureAction::NAMES.join(", ");
                let why = if text.trim() == "continue" {
                    format!("failureAction `continue` is not offered: a failing version would go on replacing working replicas; use one of {names}")
                } else {
                    format!("failureAction `{text}` is not one of {names}")
                };
                self.error(value, &path("failureAction"), why);
            }
            action
        });
        let parallelism = fields.get("parallelism").and_then(|value| {
            match self.integer(value, &path("parallelism"))? {
                n @ 0..=1000 => Some(n as u64),
                n => {
                    let why = format!("parallelism must be 0 (all at once) to 1000, found {n}");
                    self.error(value, &path("parallelism"), why);
                    None
                }
            }
        });
        let delay_ns = fields
            .get("delay")
            .and_then(|value| self.duration_or_zero_ns(value, &path("delay"), fields.spelling));
        (self.errors.len() == errors_before).then_some(UpdatePolicy {
            order,
            monitor_ns,
            failure_action,
            parallelism,
            delay_ns,
        })
    }

    /// `healthcheck: { test: [CMD, ...], interval: 5s, ... }`; the
    /// Engine-API spelling takes nanoseconds, as Docker's API does.
    pub(super) fn healthcheck(&mut self, node: &Node) -> Option<Healthcheck> {
        const P: &str = "spec.healthcheck";
        let fields = self.object(node, P, &HEALTHCHECK)?;
        let test = self
            .required(&fields, "test", node, P)
            .and_then(|n| self.health_test(n, &fields.path(P, "test")));
        let mut durations = [None; 3];
        for (slot, key) in durations
            .iter_mut()
            .zip(["interval", "timeout", "startPeriod"])
        {
            if let Some(value) = fields.get(key) {
                let path = fields.path(P, key);
                *slot = self.duration_ns(value, &path, fields.spelling);
            }
        }
        let retries = match fields.get("retries") {
            Some(value) => {
                let path = fields.path(P, "retries");
                match self.integer(value, &path)? {
                    n @ 0..=1000 => Some(n as i64),
                    n => {
                        self.error(
                            value,
                            &path,
                            format!("retries must be 0 to 1000, found {n}"),
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let [interval_ns, timeout_ns, start_period_ns] = durations;
        Some(Healthcheck {
            test: test?,
            interval_ns,
            timeout_ns,
            retries,
            start_period_ns,
        })
    }

    /// `["CMD", argv...]`, `["CMD-SHELL", "cmd"]`, `["NONE"]`, or a plain
    /// string (run by the image's shell, as compose does).
    pub(super) fn health_test(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let test = match &node.kind {
            Kind::Seq(items) => {
                let mut test = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    test.push(self.string(item, &format!("{path}[{i}]"))?);
                }
                test
            }
            Kind::Map(_) | Kind::Null => {
                self.wrong_type(
                    node,
                    path,
                    "a list such as [CMD, curl, -f, http://localhost/] or a string",
                );
                return None;
            }
            _ => vec!["CMD-SHELL".into(), self.string(node, path)?],
        };
        let args = test.len().saturating_sub(1);
        let problem = match test.first().map(String::as_str) {
            Some("CMD") if args == 0 => Some("`CMD` needs the command to run after it"),
            Some("CMD-SHELL") if args != 1 => Some("`CMD-SHELL` takes exactly one command line"),
            Some("NONE") if args != 0 => Some("`NONE` takes nothing after it"),
            Some("CMD" | "CMD-SHELL" | "NONE") => None,
            _ => Some("the first item must be CMD, CMD-SHELL or NONE"),
        };
        if let Some(problem) = problem {
            self.error(node, path, problem);
            return None;
        }
        Some(test)
    }

    /// A duration: `5s`, `500ms`, `1m30s` (friendly) or nanoseconds
    /// (Engine-API spelling). At least 1 ms, as Docker requires.
    /// A duration that may be zero (`delay: 0s`).
    pub(super) fn duration_or_zero_ns(
        &mut self,
        node: &Node,
        path: &str,
        spelling: Spelling,
    ) -> Option<i64> {
        let zero = match spelling {
            Spelling::Engine => matches!(node.kind, Kind::Int(0)),
            Spelling::Friendly => {
                matches!(&node.kind, Kind::Str(t) if t.parse() == Ok(DurationNs(0)))
            }
        };
        if zero {
            return Some(0);
        }
        self.duration_ns(node, path, spelling)
    }

    pub(super) fn duration_ns(
        &mut self,
        node: &Node,
        path: &str,
        spelling: Spelling,
    ) -> Option<i64> {
        let ns = match spelling {
            Spelling::Engine => i64::try_from(self.integer(node, path)?).ok(),
            Spelling::Friendly => {
                let text = self.string(node, path)?;
                match text.parse::<DurationNs>() {
                    Ok(DurationNs(ns)) => Some(ns),
                    Err(why) => {
                        self.error(node, path, why.0);
                        return None;
                    }
                }
            }
        };
        match ns {
            Some(ns) if ns >= 1_000_000 => Some(ns),
            _ => {
                self.error(node, path, "a duration must be at least 1ms");
                None
            }
        }
    }
}
