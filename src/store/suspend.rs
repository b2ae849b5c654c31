//! `assetd suspend` / `assetd resume`: the operator takes the wheel. A
//! suspended asset is left exactly as it runs — not created, updated,
//! repaired or removed — while `plan` still shows what resuming would do
//! (`crate::core::plan::suspended` makes its actions holds).
//!
//! Suspensions live in the store's control entries, apart from the
//! records the actions rewrite, so they survive restarts and no action
//! writing its record can lose one.

pub use crate::model::control::{rfc3339, Suspension, Suspensions};
use crate::store::{Store, StoreError};

/// The store's control key of the suspensions.
const KEY: &str = "suspensions";

impl Suspensions {
    /// What the store holds; none when it holds nothing readable (a
    /// damaged entry must not freeze the fleet, and is logged).
    pub fn load(store: &dyn Store) -> Self {
        let Some(bytes) = store.control(KEY) else {
            return Self::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the stored suspensions cannot be read; none are in force");
            Self::default()
        })
    }

    pub fn save(&self, store: &dyn Store) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(self).map_err(|e| StoreError::Io(e.to_string()))?;
        let empty = self.all.is_none() && self.assets.is_empty();
        store.set_control(KEY, (!empty).then_some(bytes.as_slice()))?;
        // An operator's "hands off" must survive a crash right after it.
        store.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::spec::AssetName;

    fn name(n: &str) -> AssetName {
        AssetName::new(n).unwrap()
    }

    pub(crate) fn by_ops() -> Suspension {
        Suspension {
            by_uid: Some(1000),
            reason: Some("spindle maintenance".into()),
            since_ms: 1_764_684_600_000,
        }
    }

    #[test]
    fn suspending_all_covers_assets_declared_later_and_own_reasons_win() {
        let all = Suspension {
            by_uid: Some(0),
            reason: None,
            since_ms: 0,
        };
        let suspensions = Suspensions {
            all: Some(all.clone()),
            assets: [(name("mill"), by_ops())].into(),
        };
        assert_eq!(suspensions.of(&name("new-one")), Some(&all));
        assert_eq!(suspensions.of(&name("mill")), Some(&by_ops()));
    }

    #[test]
    fn suspensions_survive_the_store_and_clearing_them_leaves_nothing() {
        let store = crate::store::MemoryStore::default();
        let suspensions = Suspensions {
            assets: [(name("mill"), by_ops())].into(),
            ..Default::default()
        };
        suspensions.save(&store).unwrap();
        assert_eq!(Suspensions::load(&store), suspensions);
        Suspensions::default().save(&store).unwrap();
        assert_eq!(store.control(KEY), None);
    }
}
