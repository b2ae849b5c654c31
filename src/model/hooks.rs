//! `spec.hooks`: one-shot jobs around a rollout (`DESIGN.md`, "Factory
//! change control"). Kept beside the spec, not in it: adding or editing a
//! hook changes no running container, so it must not change the spec's
//! hash.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest a hook may run before it is killed and counts as failed,
/// when it does not say.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// The three moments a hook can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HookKind {
    /// Before a create or an update: exit 0 lets the change go; anything
    /// else holds it and what runs stays.
    #[serde(rename = "preDeploy")]
    PreDeploy,
    /// After the new version passed its gate: a failure is a failed
    /// rollout.
    #[serde(rename = "postDeploy")]
    PostDeploy,
    /// After a failed rollout or hook; its result changes nothing.
    #[serde(rename = "onFailure")]
    OnFailure,
    /// Not a hook: the run of a job asset itself ([`crate::model::spec::Mode::Job`]).
    #[serde(rename = "job")]
    Job,
}

impl HookKind {
    pub const ALL: [HookKind; 3] = [
        HookKind::PreDeploy,
        HookKind::PostDeploy,
        HookKind::OnFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::PreDeploy => "preDeploy",
            HookKind::PostDeploy => "postDeploy",
            HookKind::OnFailure => "onFailure",
            HookKind::Job => "job",
        }
    }

    /// Lower case, for object names and labels.
    pub fn slug(self) -> &'static str {
        match self {
            HookKind::PreDeploy => "predeploy",
            HookKind::PostDeploy => "postdeploy",
            HookKind::OnFailure => "onfailure",
            HookKind::Job => "job",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook: what runs, and for how long at most. It has the asset's
/// networks, environment, secrets and configs; no ports, no mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// `None`: the asset's own image (the version about to run).
    pub image: Option<String>,
    /// argv; `None` keeps the image's command.
    pub command: Option<Vec<String>>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    pub pre_deploy: Option<Hook>,
    pub post_deploy: Option<Hook>,
    pub on_failure: Option<Hook>,
}

impl Hooks {
    pub fn get(&self, kind: HookKind) -> Option<&Hook> {
        match kind {
            HookKind::PreDeploy => self.pre_deploy.as_ref(),
            HookKind::PostDeploy => self.post_deploy.as_ref(),
            HookKind::OnFailure => self.on_failure.as_ref(),
            HookKind::Job => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pre_deploy.is_none() && self.post_deploy.is_none() && self.on_failure.is_none()
    }

    /// A digest of the hooks as declared: a version held by a hook is
    /// tried again once its hooks change, as when its spec does.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let canonical = serde_json::to_vec(self).expect("hooks always serialise");
        let digest = sha2::Sha256::digest(&canonical);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// How one run of a hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRun {
    pub kind: HookKind,
    /// The exit code; `None` when it did not finish (a timeout, an engine
    /// error).
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    /// The last 4 KiB of its output, secret values redacted.
    pub output_tail: String,
    pub elapsed: Duration,
    /// Why it could not run at all (no such image, ...).
    pub error: Option<String>,
}

/// How much of a hook's output is kept.
pub const HOOK_OUTPUT_TAIL: usize = 4096;

impl HookRun {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }

    /// `preDeploy hook exited 3 after 1.2 s: <tail>`.
    pub fn summary(&self) -> String {
        let how = if self.timed_out {
            format!(
                "timed out after {:.0} s and was killed",
                self.elapsed.as_secs_f64()
            )
        } else if let Some(error) = &self.error {
            format!("could not run: {error}")
        } else {
            format!(
                "exited {} after {:.1} s",
                self.exit_code.unwrap_or(-1),
                self.elapsed.as_secs_f64()
            )
        };
        let what = match self.kind {
            HookKind::Job => "job".to_string(),
            kind => format!("{kind} hook"),
        };
        let tail = self.output_tail.trim();
        if tail.is_empty() {
            format!("{what} {how}")
        } else {
            format!("{what} {how}: {tail}")
        }
    }
}

/// The secret values an asset's hooks can see, to take out of their
/// output before it is kept anywhere. Never printed, never compared.
#[derive(Clone, Default)]
pub struct Redactions(std::sync::Arc<Vec<Vec<u8>>>);

impl Redactions {
    pub fn new(values: Vec<Vec<u8>>) -> Self {
        Redactions(std::sync::Arc::new(
            values.into_iter().filter(|v| !v.is_empty()).collect(),
        ))
    }

    /// `text` with every value (and each line of a value) replaced by
    /// `<redacted>`.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in self.0.iter() {
            let value = String::from_utf8_lossy(value);
            let parts = std::iter::once(value.trim()).chain(value.lines().map(str::trim));
            for part in parts.filter(|p| p.len() >= 3) {
                out = out.replace(part, "<redacted>");
            }
        }
        out
    }
}

impl std::fmt::Debug for Redactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactions(<{} values>)", self.0.len())
    }
}

impl PartialEq for Redactions {
    /// What a value is does not make two assets differ.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Redactions {}
