//! `spec.pullPolicy`: whether an image is pulled before a create or an
//! update. The decision is one pure function so that later rules (registry
//! credentials, noticing a moved tag at resync) change it in one place.

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::TryStreamExt;

use super::StrategyError;
use crate::spec::PullPolicy;

/// What to do about the image before the engine is asked to run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullStep {
    /// Use the engine's copy.
    UseLocal,
    /// Pull it first; a pull that fails ends the deploy before anything
    /// that runs is touched.
    Pull,
    /// The engine lacks it and the policy forbids a pull: a clear error.
    Refuse,
}

/// The step for `policy`, given whether the engine has the image (`None`:
/// not looked up; [`PullPolicy::Always`] never needs to look).
pub fn pull_step(policy: PullPolicy, present: Option<bool>) -> PullStep {
    match (policy, present) {
        (PullPolicy::Always, _) => PullStep::Pull,
        (_, Some(true) | None) => PullStep::UseLocal,
        (PullPolicy::IfNotPresent, Some(false)) => PullStep::Pull,
        (PullPolicy::Never, Some(false)) => PullStep::Refuse,
    }
}

/// The error for [`PullStep::Refuse`].
pub fn never_pulled_message(image: &str) -> String {
    format!(
        "image `{image}` is not on the engine and spec.pullPolicy is Never: load it (docker load, docker pull) or set pullPolicy: IfNotPresent"
    )
}

/// Pulls `image` onto the engine behind `docker`. The error names the
/// image and carries the engine's reason.
pub async fn pull_image(docker: &Docker, image: &str) -> Result<(), StrategyError> {
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .build();
    docker
        .create_image(Some(options), None, None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| StrategyError::docker("pull image", image, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_pulls_only_when_it_should() {
        use PullPolicy::*;
        use PullStep::*;
        let cases = [
            (IfNotPresent, Some(true), UseLocal),
            (IfNotPresent, Some(false), Pull),
            (IfNotPresent, None, UseLocal),
            (Always, Some(true), Pull),
            (Always, None, Pull),
            (Never, Some(true), UseLocal),
            (Never, Some(false), Refuse),
            (Never, None, UseLocal),
        ];
        for (policy, present, step) in cases {
            assert_eq!(pull_step(policy, present), step, "{policy:?} {present:?}");
        }
    }
}
