use super::*;
use crate::core::plan::tests::{desired, running, want};
use crate::core::plan::{ActionKind, HoldReason};
use crate::model::control::Suspension;
use crate::model::window::{Effect, Repairs, Selector, SyncWindow};

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn name(n: &str) -> AssetName {
    AssetName::new(n).unwrap()
}

/// A deny window over every asset, in force all Monday 2026-12-07.
fn closed_all_day() -> SyncWindow {
    SyncWindow {
        name: "line".into(),
        effect: Effect::Deny,
        schedule: "0 0 * * 1".into(),
        duration: Duration::from_secs(24 * 3600),
        zone: chrono_tz::UTC,
        selector: Selector::Names(vec!["*".into()]),
        repairs: Repairs::Deny,
    }
}

fn pass(
    mut d: Desired,
    actual: &[ActualAsset],
    pins: &BTreeMap<AssetName, Pin>,
    suspensions: &Suspensions,
) -> PassPlan {
    d.windows = vec![closed_all_day()];
    plan_pass(PassInputs {
        desired: d,
        revision: "3f2a91c".into(),
        applied: &BTreeMap::new(),
        actual,
        stack: None,
        pins,
        suspensions,
        config: &PlanConfig::default(),
        default_monitor: Duration::from_secs(3),
        now: utc("2026-12-07T11:00:00Z"),
    })
}

#[test]
fn every_desired_asset_carries_the_revision() {
    let out = pass(
        desired(vec![want("a", "img:1", "a.yaml")]),
        &[],
        &BTreeMap::new(),
        &Suspensions::default(),
    );
    assert_eq!(
        out.desired.assets[&name("a")].revision.as_deref(),
        Some("3f2a91c")
    );
}

/// Step 6's order: a suspended asset reads as suspended (with what resume
/// would do), not as held by the window; the others are held by it.
#[test]
fn a_suspension_wins_over_a_window() {
    let suspensions = Suspensions {
        assets: [(
            name("a"),
            Suspension {
                by_uid: Some(0),
                reason: None,
                since_ms: 0,
            },
        )]
        .into(),
        ..Default::default()
    };
    let out = pass(
        desired(vec![
            want("a", "img:2", "a.yaml"),
            want("b", "img:2", "b.yaml"),
        ]),
        &[
            running("a", "img:1", "a.yaml"),
            running("b", "img:1", "b.yaml"),
        ],
        &BTreeMap::new(),
        &suspensions,
    );
    let hold = |n: &str| {
        let action = out.plan.actions.iter().find(|a| a.name == name(n)).unwrap();
        assert_eq!(action.kind(), ActionKind::Hold);
        action.hold().cloned().unwrap()
    };
    assert!(matches!(hold("a"), HoldReason::Suspended { .. }));
    assert!(matches!(hold("b"), HoldReason::Window { .. }));
}

/// Step 3 before step 4: a pin whose manifest is unchanged is planned as
/// the pinned spec (nothing to do while it runs); one whose manifest
/// changed has ended and the manifest is planned.
#[test]
fn pins_are_applied_before_the_plan_and_end_with_their_manifest() {
    let pinned = want("a", "img:1", "a.yaml");
    let pins: BTreeMap<AssetName, Pin> = [(
        name("a"),
        Pin {
            revision: 1,
            spec: pinned.spec.clone(),
            hash: pinned.hash.clone(),
            manifest_hash: want("a", "img:2", "a.yaml").hash,
            by_uid: Some(0),
            since_ms: 0,
        },
    )]
    .into();
    let runs_pinned = [running("a", "img:1", "a.yaml")];
    let out = pass(
        desired(vec![want("a", "img:2", "a.yaml")]),
        &runs_pinned,
        &pins,
        &Suspensions::default(),
    );
    assert!(out.plan.actions.is_empty(), "{:?}", out.plan.actions);
    assert!(out.plan.pinned.contains_key(&name("a")));
    let out = pass(
        desired(vec![want("a", "img:3", "a.yaml")]),
        &runs_pinned,
        &pins,
        &Suspensions::default(),
    );
    assert_eq!(out.ended_pins, [name("a")]);
    assert_eq!(
        out.plan.actions.len(),
        1,
        "the manifest is planned (held by the window)"
    );
}
