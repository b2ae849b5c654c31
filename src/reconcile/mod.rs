//! One reconcile pass as a use case: read desired, list actual, plan,
//! execute, record (`rollout_result`: what `apply --once` waits for).
//! Knows nothing of the daemon's loop, the API or the output formats.
//!
//! Every pass decides over the whole state (level-triggered), so it is
//! correct whatever triggered it and however many triggers were lost; the
//! daemon's view of a local engine is kept by events and listed in full
//! at every resync and after a gap (`engine::strategy::local::view`).
//! Actions run with bounded concurrency; each result is written to the
//! store as soon as it is known, and one failing asset never stops the
//! others: its failure becomes a backoff timer on its own record.

mod execute;
mod hooks;
mod manifests;
mod observe;
pub(crate) mod pipeline;
mod record;
pub mod rollout_result;

pub use execute::*;
pub use manifests::{read_manifests, ManifestCache, ManifestsRead};
pub use observe::*;
pub use record::*;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::plan::{ActionKind, Plan, PlanConfig};
use crate::engine::strategy::{DeploymentStrategy, StrategyError};
use crate::input::desired::{Desired, LoadOptions};
use crate::input::stack::plan::StackAction;
use crate::model::spec::AssetName;
use crate::store::Store;

/// Everything a pass needs to know, fixed before the runtime starts.
#[derive(Clone, Debug)]
pub struct PassConfig {
    pub manifests: PathBuf,
    pub load: LoadOptions,
    pub plan: PlanConfig,
    /// How many Docker-writing actions run at once.
    pub concurrency: usize,
    /// Skip assets whose backoff has not expired (the daemon); `apply
    /// --once` retries everything because an operator asked for it.
    pub respect_backoff: bool,
    /// What the daemon's passes keep of the manifests (the parse results
    /// of unchanged files, the last read while nothing changed), shared by
    /// clones of this config. A single pass (`apply --once`, `plan`) has
    /// nothing to reuse.
    pub manifest_cache: Option<Arc<ManifestCache>>,
    /// Ask the registries whether the tags of `pullPolicy: Always` assets
    /// moved (a resync, `apply --once`, `plan`): a moved tag is drift, and
    /// the asset is rolled out to the new digest.
    pub check_moved_tags: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Docker could not be listed: nothing was planned or changed.
    #[error("cannot list managed objects: {0}")]
    Engine(#[from] StrategyError),
}

/// What one pass saw and did.
#[derive(Debug, Serialize)]
pub struct PassReport {
    pub plan: Plan,
    pub outcomes: Vec<Outcome>,
    /// The networks, volumes, secrets and configs created or removed.
    pub stack: Vec<StackOutcome>,
    /// Actions left for later because their asset is backing off.
    pub deferred: Vec<AssetName>,
    #[serde(skip)]
    pub desired: Desired,
    pub duration_ms: u64,
}

impl PassReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
            + self.stack.iter().filter(|o| o.error.is_some()).count()
    }

    /// Actions held (left as it runs, or a removal waiting).
    /// Assets held, and networks, secrets and configs held until the
    /// operator acts.
    pub fn held(&self) -> usize {
        let assets = self
            .outcomes
            .iter()
            .filter(|o| o.kind == ActionKind::Hold)
            .count();
        assets + self.plan.stack.iter().filter(|a| a.awaits_operator).count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: AssetName,
    pub kind: ActionKind,
    pub reason: String,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    /// The hooks it ran, each as `preDeploy hook exited 0 after 1.2 s:
    /// <tail>` (secret values redacted), for the event log.
    pub hooks: Vec<String>,
}

/// One create or removal of a network, volume, secret or config.
#[derive(Debug, Clone, Serialize)]
pub struct StackOutcome {
    pub action: StackAction,
    pub error: Option<String>,
}

/// Passes until nothing waits for a dependency that may still come up
/// (`dependsOn`), or `limit` is over: `apply --once` on an empty engine
/// creates the broker, then its producers once it runs healthy. The
/// report is the last pass's, with the earlier passes' actions first.
pub async fn run_passes_in_order<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    store: &Arc<dyn Store>,
    limit: Duration,
) -> Result<PassReport, PassError> {
    let deadline = Instant::now() + limit;
    let mut report = run_pass(config, strategy, store).await?;
    let mut earlier = Vec::new();
    let mut earlier_stack = Vec::new();
    while report.plan.waits_for_a_dependency() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let done = std::mem::take(&mut report.outcomes);
        earlier.extend(done.into_iter().filter(|o| o.kind != ActionKind::Hold));
        earlier_stack.append(&mut report.stack);
        report = run_pass(config, strategy, store).await?;
    }
    earlier.append(&mut report.outcomes);
    report.outcomes = earlier;
    earlier_stack.append(&mut report.stack);
    report.stack = earlier_stack;
    Ok(report)
}

/// One full pass, waiting for every action (`apply --once`).
pub async fn run_pass<S: DeploymentStrategy>(
    config: &PassConfig,
    strategy: &S,
    store: &Arc<dyn Store>,
) -> Result<PassReport, PassError> {
    let started = Instant::now();
    let obs = observe(config, strategy, store.as_ref()).await?;
    let mut inline = pipeline::Inline {
        config,
        store: store.as_ref(),
    };
    let carried = pipeline::carry_out(config, &obs, strategy, store.as_ref(), &mut inline).await;
    Ok(PassReport {
        plan: obs.plan,
        outcomes: carried.ran.outcomes,
        stack: carried.stack,
        deferred: carried.ran.deferred,
        desired: obs.desired,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{Action, Op};
    use crate::input::desired::DesiredAsset;
    use crate::model::applied::AppliedRecord;

    fn action(hash: &str) -> Action {
        use crate::model::spec::SpecHash;
        // The backoff rule looks at hashes only; any spec will do.
        let spec = crate::model::spec::tests::sample();
        Action {
            name: spec.name.clone(),
            op: Op::Update {
                desired: DesiredAsset {
                    spec,
                    hash: SpecHash(hash.into()),
                    source: "a.yaml".into(),
                    pos: crate::input::manifest::SourcePos {
                        file: "a.yaml".into(),
                        line: 1,
                        column: 1,
                    },
                    depends_on: vec![],
                    revision: None,
                    references: vec![],
                    hooks: Default::default(),
                    redactions: Default::default(),
                },
                changes: vec![],
                unknown: "",
            },
        }
    }

    #[test]
    fn only_a_retry_of_the_spec_that_failed_waits_for_its_backoff() {
        let record = AppliedRecord {
            next_retry_ms: Some(10_000),
            failed_hash: Some(crate::model::spec::SpecHash("h1".into())),
            ..Default::default()
        };
        assert_eq!(
            backing_off(&action("h1"), &record, 4_000),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            backing_off(&action("h2"), &record, 4_000),
            None,
            "a fixed manifest goes at once"
        );
        assert_eq!(backing_off(&action("h1"), &record, 10_000), None, "expired");
    }
}

/// Whole passes against the in-memory engine: what the strategies do is
/// proven against Docker in `tests/`; this proves what a pass does with it.
#[cfg(test)]
mod pass_tests {
    use std::path::Path;

    use super::*;
    use crate::engine::strategy::fake::FakeStrategy;
    use crate::store::now_ms;
    use crate::store::MemoryStore;

    /// A manifests directory of its own, removed on drop.
    pub(super) struct Dir(pub(super) PathBuf);

    impl Dir {
        pub(super) fn new(test: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("assetd-pass-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        /// `{name}.yaml` declaring asset `name`.
        pub(super) fn write(&self, name: &str, image: &str) {
            let yaml = format!(
                "apiVersion: assetd/v1\nkind: Asset\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n"
            );
            std::fs::write(self.0.join(format!("{name}.yaml")), yaml).unwrap();
        }

        fn delete(&self, name: &str) {
            std::fs::remove_file(self.0.join(format!("{name}.yaml"))).unwrap();
        }

        fn config(&self) -> PassConfig {
            config(&self.0)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn config(manifests: &Path) -> PassConfig {
        PassConfig {
            manifests: manifests.to_path_buf(),
            load: LoadOptions {
                policy: Default::default(),
                check_permissions: false,
                age: Default::default(),
                version_key: None,
            },
            plan: PlanConfig::default(),
            concurrency: 4,
            respect_backoff: true,
            manifest_cache: None,
            check_moved_tags: false,
        }
    }

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    fn names(list: &[&str]) -> std::collections::BTreeSet<AssetName> {
        list.iter().map(|n| name(n)).collect()
    }

    fn kinds(pass: &PassReport) -> Vec<(String, ActionKind)> {
        let mut kinds: Vec<_> = pass
            .outcomes
            .iter()
            .map(|o| (o.name.to_string(), o.kind))
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        kinds
    }

    fn store() -> Arc<dyn Store> {
        Arc::new(MemoryStore::default())
    }

    #[tokio::test]
    async fn a_pass_deploys_what_is_missing_and_the_next_one_writes_nothing() {
        let dir = Dir::new("missing");
        dir.write("a", "busybox:1");
        dir.write("b", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        let first = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(
            kinds(&first),
            vec![
                ("a".into(), ActionKind::Create),
                ("b".into(), ActionKind::Create)
            ]
        );
        assert_eq!(engine.names(), names(&["a", "b"]));
        assert!(store.get(&name("a")).unwrap().applied_ms.is_some());

        let second = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(second.outcomes.is_empty(), "{:?}", second.outcomes);
        assert_eq!(engine.calls().0.len(), 2, "no write for what is converged");
    }

    #[tokio::test]
    async fn objects_found_without_a_store_record_are_adopted_not_redeployed() {
        let dir = Dir::new("adopt");
        dir.write("a", "busybox:1");
        let desired = load_desired(&dir.config()).await;
        let want = &desired.assets[&name("a")];
        let engine = FakeStrategy::default();
        engine.insert(&name("a"), want.hash.clone(), "a.yaml");
        let store = store();

        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(pass.outcomes.is_empty(), "{:?}", pass.outcomes);
        assert_eq!(engine.calls(), (vec![], vec![]));
        let record = store.get(&name("a")).expect("adopted into the store");
        assert_eq!(record.hash.as_ref(), Some(&want.hash));
    }

    #[tokio::test]
    async fn drift_is_repaired_with_the_same_spec() {
        let dir = Dir::new("drift");
        dir.write("a", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        engine.drift(&name("a"), "container a is exited");
        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(kinds(&pass), vec![("a".into(), ActionKind::Repair)]);
        assert_eq!(pass.outcomes[0].reason, "container a is exited");
        assert_eq!(engine.calls().0.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_deploy_backs_off_and_a_changed_manifest_does_not_wait() {
        let dir = Dir::new("backoff");
        dir.write("a", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        engine.fail(&name("a"), "no space left on device");

        let failed = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(failed.failed(), 1);
        let record = store.get(&name("a")).unwrap();
        assert_eq!(record.attempts, 1);
        assert!(record.next_retry_ms.is_some_and(|at| at > now_ms()));
        assert!(record.last_error.unwrap().contains("no space left"));

        // The same spec waits out its backoff: not even tried.
        engine.heal(&name("a"));
        let waiting = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert!(waiting.outcomes.is_empty());
        assert_eq!(waiting.deferred, vec![name("a")]);
        assert!(engine.names().is_empty());

        // A changed manifest is a new attempt: at once.
        dir.write("a", "busybox:2");
        let fixed = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(kinds(&fixed), vec![("a".into(), ActionKind::Create)]);
        assert_eq!(fixed.failed(), 0);
        let record = store.get(&name("a")).unwrap();
        assert_eq!((record.attempts, record.next_retry_ms), (0, None));
    }

    #[tokio::test]
    async fn one_failing_asset_does_not_stop_the_others() {
        let dir = Dir::new("isolation");
        for n in ["a", "b", "c"] {
            dir.write(n, "busybox:1");
        }
        let (engine, store) = (FakeStrategy::default(), store());
        engine.fail(&name("b"), "pull access denied");
        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(pass.outcomes.len(), 3);
        let failed: Vec<&str> = pass
            .outcomes
            .iter()
            .filter(|o| o.error.is_some())
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(failed, vec!["b"]);
        assert_eq!(engine.names(), names(&["a", "c"]));
        assert_eq!(store.get(&name("a")).unwrap().attempts, 0);
        assert_eq!(store.get(&name("b")).unwrap().attempts, 1);
    }

    #[tokio::test]
    async fn deleting_most_manifests_at_once_holds_the_removals_until_confirmed() {
        let dir = Dir::new("prune");
        let all: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        for n in &all {
            dir.write(n, "busybox:1");
        }
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        for n in &all[3..] {
            dir.delete(n);
        }

        let held = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(held.held(), 7);
        assert!(held.outcomes.iter().all(|o| o.reason.contains("7 of 10")));
        assert_eq!(held.plan.confirmable.len(), 7);
        assert_eq!(engine.names().len(), 10, "nothing removed");
        assert!(engine.calls().1.is_empty());

        let mut confirmed = dir.config();
        confirmed.plan.confirmed = held.plan.confirmable.iter().cloned().collect();
        let pruned = run_pass(&confirmed, &engine, &store).await.unwrap();
        assert_eq!(
            pruned
                .outcomes
                .iter()
                .filter(|o| o.kind == ActionKind::Remove && o.error.is_none())
                .count(),
            7
        );
        assert_eq!(engine.names(), names(&["a0", "a1", "a2"]));
        assert!(store.get(&name("a9")).is_none(), "its record goes with it");
    }

    #[tokio::test]
    async fn an_invalid_manifest_holds_its_asset_and_every_removal() {
        let dir = Dir::new("invalid");
        dir.write("a", "busybox:1");
        dir.write("b", "busybox:1");
        let (engine, store) = (FakeStrategy::default(), store());
        run_pass(&dir.config(), &engine, &store).await.unwrap();
        std::fs::write(dir.0.join("a.yaml"), "kind: Asset\nspec: [\n").unwrap();
        dir.delete("b");

        let pass = run_pass(&dir.config(), &engine, &store).await.unwrap();
        assert_eq!(
            kinds(&pass),
            vec![
                ("a".into(), ActionKind::Hold),
                ("b".into(), ActionKind::Hold)
            ]
        );
        let a = pass
            .plan
            .actions
            .iter()
            .find(|x| x.name == name("a"))
            .unwrap();
        assert!(matches!(
            a.hold(),
            Some(crate::core::plan::HoldReason::InvalidManifest { .. })
        ));
        assert_eq!(engine.names(), names(&["a", "b"]), "nothing removed");
    }
}
