//! Writing down what a pass learned and did: adopted and moved records,
//! resolved errors, history entries, failures and their backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::backoff::backoff;
use crate::core::plan::{Action, ActionKind, Plan};
use crate::engine::strategy::StrategyError;
use crate::input::desired::Desired;
use crate::input::desired::DesiredAsset;
use crate::model::spec::AssetName;
use crate::store::{now_ms, ActionResult, AppliedRecord, RolledBack, Store};

/// Writes into the history of `name` that an override let its change
/// through a sync window (`why`: the window's words).
pub fn record_window_override(store: &dyn Store, name: &AssetName, why: &str, by_uid: Option<u32>) {
    let by = by_uid.map(|u| format!(" by uid {u}")).unwrap_or_default();
    let entry =
        crate::store::history::control(format!("sync window overridden{by}: {why}"), by_uid);
    if let Err(e) = crate::store::history::append(store, name, entry) {
        tracing::warn!(asset = %name, error = %e, "could not record the window override");
    }
}

/// Writes the records rebuilt from labels, so a lost store is whole again
/// after one pass.
pub fn persist_adopted<'a>(
    store: &dyn Store,
    applied: impl IntoIterator<Item = (&'a AssetName, &'a AppliedRecord)>,
) {
    for (name, record) in applied {
        if !store.contains(name) {
            tracing::info!(asset = %name, "adopting managed object into the store from its labels");
            let _ = store.put(name, record);
        }
    }
}

/// Records the new file of assets whose manifest moved without changing
/// what it declares (a no-op for Docker): a later error in the moved file
/// must be linked to the assets it declares.
pub fn persist_moves(
    store: &dyn Store,
    desired: &Desired,
    applied: &BTreeMap<AssetName, AppliedRecord>,
) {
    for (name, want) in &desired.assets {
        let Some(record) = applied.get(name) else {
            continue;
        };
        if record.hash.as_ref() == Some(&want.hash)
            && record.source.as_deref() != Some(want.source.as_str())
        {
            let Some(mut current) = store.get(name) else {
                continue;
            };
            tracing::info!(asset = %name, from = ?current.source, to = %want.source, "manifest moved; recording its new file");
            current.source = Some(want.source.clone());
            let _ = store.put(name, &current);
        }
    }
}

/// Whether `action` must wait for its asset's backoff: only a retry of
/// the very spec that failed does. A changed manifest is a new attempt.
pub fn backing_off(action: &Action, record: &AppliedRecord, now: u64) -> Option<Duration> {
    if action.kind() == ActionKind::Hold {
        return None;
    }
    let retry_at = record.next_retry_ms.filter(|at| *at > now)?;
    let same_spec = match (action.desired(), &record.failed_hash) {
        (Some(want), Some(failed)) => &want.hash == failed,
        // A removal, or a failure recorded before hashes were: wait.
        _ => true,
    };
    same_spec.then(|| Duration::from_millis(retry_at - now))
}

/// Clears the error of assets that converged since it was recorded (a
/// monitor alerting on `last_error` must see it go away).
pub fn persist_resolved(
    store: &dyn Store,
    plan: &Plan,
    applied: &BTreeMap<AssetName, AppliedRecord>,
) {
    for name in &plan.unchanged {
        let Some(record) = applied.get(name) else {
            continue;
        };
        if record.last_error.is_none() && record.last_result != Some(ActionResult::Failed) {
            continue;
        }
        let Some(mut current) = store.get(name) else {
            continue;
        };
        tracing::info!(asset = %name, "converged; clearing the recorded error");
        current.last_error = None;
        current.last_result = Some(ActionResult::Ok);
        current.attempts = 0;
        current.next_retry_ms = None;
        current.failed_hash = None;
        current.updated_ms = now_ms();
        let _ = store.put(name, &current);
    }
}

/// Adds the deploy to the asset's history.
pub(super) fn record_revision(
    store: &dyn Store,
    want: &DesiredAsset,
    record: &AppliedRecord,
    action: String,
) {
    use crate::store::history::{self, Outcome};
    let outcome = match record.last_result {
        Some(ActionResult::Ok) => Outcome::Ok,
        _ if record
            .rolled_back
            .as_ref()
            .is_some_and(|r| r.hash == want.hash) =>
        {
            Outcome::RolledBack
        }
        _ => Outcome::Failed,
    };
    let mut entry = history::deployed(&want.spec, &want.hash, outcome, action);
    entry.revision.clone_from(&want.revision);
    if let Err(e) = history::append(store, &want.spec.name, entry) {
        tracing::warn!(error = %e, "could not record the revision");
    }
}

/// Records a failed action: a rolled-back version for the planner to
/// hold, anything else as a backoff timer. Returns the error text.
pub(super) fn record_failure(
    record: &mut AppliedRecord,
    want: Option<&DesiredAsset>,
    error: StrategyError,
) -> String {
    record.last_result = Some(ActionResult::Failed);
    if let StrategyError::RolledBack(why) | StrategyError::HookHeld(why) = &error {
        // Nothing to retry: the same version would fail the same way.
        // The planner holds it until the manifest changes.
        let held = matches!(error, StrategyError::HookHeld(_));
        tracing::warn!(reason = %why, held, "rolled back or held");
        record.rolled_back = want.map(|d| RolledBack {
            hash: d.hash.clone(),
            reason: why.clone(),
            held,
            hooks: (!d.hooks.is_empty()).then(|| d.hooks.digest()),
        });
        record.next_retry_ms = None;
        record.last_error = Some(error.to_string());
    } else {
        record.failed_hash = want.map(|d| d.hash.clone());
        record.attempts = record.attempts.saturating_add(1);
        let delay = backoff(record.attempts);
        record.next_retry_ms = Some(now_ms() + delay.as_millis() as u64);
        record.last_error = Some(error.to_string());
        // Retried on its own: a warning, not yet an operator's problem.
        tracing::warn!(%error, attempts = record.attempts, retry_in_s = delay.as_secs(), "failed");
    }
    record.last_error.clone().unwrap_or_default()
}
