//! `spec.pullPolicy`: whether an image is pulled before a create or an
//! update. The decision is one pure function so that later rules (registry
//! credentials, noticing a moved tag at resync) change it in one place.

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;

use crate::engine::registry_auth::RegistryAuth;
use futures_util::TryStreamExt;

use super::StrategyError;
use crate::model::spec::PullPolicy;

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

/// Pulls `image` onto the engine behind `docker`, with its registry's
/// credentials when there are any. The error names the image and carries
/// the engine's reason; a refusal also names the registry and where its
/// credentials came from (never their values).
pub async fn pull_image(
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
) -> Result<(), StrategyError> {
    let found = auth.for_image(image).map_err(StrategyError::Refused)?;
    let (credentials, source) = match found {
        Some(found) => (Some(found.credentials), Some(found.source)),
        None => (None, None),
    };
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .build();
    docker
        .create_image(Some(options), None, credentials)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| pull_error(image, e, source))?;
    Ok(())
}

/// The digest `image`'s tag names in its registry now (`sha256:…`), asked
/// of the registry through the engine (no pull).
pub async fn registry_digest(
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
) -> Result<String, StrategyError> {
    let credentials = auth
        .for_image(image)
        .map_err(StrategyError::Refused)?
        .map(|found| found.credentials);
    let inspect = docker
        .inspect_registry_image(image, credentials)
        .await
        .map_err(|e| StrategyError::docker("ask the registry about", image, e))?;
    inspect
        .descriptor
        .digest
        .ok_or_else(|| StrategyError::Refused(format!("the registry gave no digest for {image}")))
}

/// [`registry_digest`] for a moved-tag check: a registry that cannot be
/// asked is no drift (logged at debug level).
pub async fn digest_if_known(docker: &Docker, image: &str, auth: &RegistryAuth) -> Option<String> {
    match registry_digest(docker, image, auth).await {
        Ok(digest) => Some(digest),
        Err(e) => {
            tracing::debug!(image, error = %e, "cannot ask the registry about the tag");
            None
        }
    }
}

/// Whether one of an image's repo digests (`repo@sha256:…`) is `digest`.
pub fn has_digest(repo_digests: &[String], digest: &str) -> bool {
    repo_digests
        .iter()
        .any(|d| d.rsplit_once('@').is_some_and(|(_, d)| d == digest))
}

/// The drift text of a moved tag.
pub fn moved_message(image: &str, digest: &str) -> String {
    format!("image tag {image} moved in its registry to {digest}; the running containers have another digest (pullPolicy: Always)")
}

/// A registry's refusal says which registry and which credentials.
fn pull_error(image: &str, e: bollard::errors::Error, source: Option<String>) -> StrategyError {
    let text = e.to_string();
    let refused = [
        "unauthorized",
        "no basic auth credentials",
        "authentication required",
        "denied",
    ]
    .iter()
    .any(|w| text.contains(w));
    if !refused {
        return StrategyError::docker("pull image", image, e);
    }
    let registry = crate::engine::registry_auth::registry_of(image);
    let offered = match source {
        Some(source) => format!("the credentials from {source}"),
        None => format!("an anonymous pull (no credentials configured for it: `docker login {registry}` on this host, or --registry-config)"),
    };
    StrategyError::Refused(format!(
        "pulling {image}: registry {registry} refused {offered}: {text}"
    ))
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
