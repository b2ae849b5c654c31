//! What the two strategies share to run a hook: the job's spec (the
//! asset's, trimmed to a one-shot process) and the tail of its output.

use crate::model::hooks::{Hook, HookKind, HookRun, HOOK_OUTPUT_TAIL};
use crate::model::spec::{DeploySpec, Mode};

/// The asset's spec as a one-shot job: its networks, environment, user,
/// secrets and configs; the hook's image and command; no ports (the
/// asset holds them), no healthcheck, one replica. A hook gets no mounts;
/// a job asset ([`HookKind::Job`]) keeps its own.
pub fn job_spec(spec: &DeploySpec, kind: HookKind, hook: &Hook) -> DeploySpec {
    let mut job = spec.clone();
    if let Some(image) = &hook.image {
        job.image = image.clone();
    }
    job.command = hook.command.clone();
    job.ports.clear();
    if kind != HookKind::Job {
        job.mounts.clear();
    }
    job.healthcheck = None;
    job.mode = Mode::Replicated { replicas: 1 };
    job.runtime.restart = None;
    job.runtime.swarm_update = None;
    job.runtime.swarm_rollback = None;
    job
}

/// The object name of an asset's hook: `NAME.assetd-hook-predeploy`.
pub fn job_name(spec: &DeploySpec, kind: HookKind) -> String {
    format!("{}-hook-{}", spec.name, kind.slug())
}

/// The last [`HOOK_OUTPUT_TAIL`] bytes of `output`, cut at a character.
pub fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(HOOK_OUTPUT_TAIL);
    let text = String::from_utf8_lossy(&output[start..]);
    text.trim_start_matches('\u{fffd}').to_string()
}

/// A run that could not start or be followed.
pub fn failed_to_run(kind: HookKind, started: std::time::Instant, error: String) -> HookRun {
    HookRun {
        kind,
        exit_code: None,
        timed_out: false,
        output_tail: String::new(),
        elapsed: started.elapsed(),
        error: Some(error),
    }
}
