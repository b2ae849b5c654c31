use std::time::Duration;

use super::*;
use crate::core::plan::tests::{desired, want};
use crate::core::plan::RemoveReason;
use crate::core::window::{Effect, Selector};

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

fn window(effect: Effect, schedule: &str, hours: u64, zone: &str) -> SyncWindow {
    SyncWindow {
        name: "w".into(),
        effect,
        schedule: schedule.into(),
        duration: Duration::from_secs(hours * 3600),
        zone: crate::core::window::zone(zone).unwrap(),
        selector: Selector::Names(vec!["*".into()]),
        repairs: Repairs::Allow,
    }
}

fn create(name: &str) -> Action {
    Action {
        name: AssetName::new(name).unwrap(),
        op: Op::Create(want(name, "img:1", "a.yaml")),
    }
}

fn repair(name: &str) -> Action {
    Action {
        name: AssetName::new(name).unwrap(),
        op: Op::Repair {
            desired: want(name, "img:1", "a.yaml"),
            reason: "removed by hand".into(),
        },
    }
}

fn remove(name: &str) -> Action {
    Action {
        name: AssetName::new(name).unwrap(),
        op: Op::Remove(RemoveReason { was_in: None }),
    }
}

fn cell3_shift(repairs: Repairs) -> SyncWindow {
    SyncWindow {
        name: "production-hours".into(),
        selector: Selector::Names(vec!["cell3-*".into()]),
        repairs,
        ..window(Effect::Deny, "0 6 * * 1-5", 16, "Europe/Berlin")
    }
}

fn held(plan: &Plan) -> Vec<(&str, String)> {
    plan.actions
        .iter()
        .filter(|a| a.kind() == ActionKind::Hold)
        .map(|a| (a.name.as_str(), a.reason()))
        .collect()
}

const MONDAY_NOON: &str = "2026-12-07T11:00:00Z";

#[test]
fn a_deny_window_holds_matched_changes_and_lets_the_others_through() {
    let mut plan = Plan {
        actions: vec![
            create("cell3-press"),
            create("cell4-lathe"),
            remove("cell3-old"),
        ],
        ..Default::default()
    };
    let windows = [cell3_shift(Repairs::Allow)];
    let d = desired(vec![
        want("cell3-press", "img:1", "a.yaml"),
        want("cell4-lathe", "img:1", "a.yaml"),
    ]);
    let overridden = hold_closed(
        &mut plan,
        &windows,
        &d,
        utc(MONDAY_NOON),
        &Overrides::default(),
    );
    assert!(overridden.is_empty());
    let held = held(&plan);
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[0].0, "cell3-press");
    assert!(held[0].1.starts_with("deny window `production-hours` is in force until 2026-12-07 22:00 CET (21:00 UTC); then create"), "{}", held[0].1);
    assert_eq!(held[1].0, "cell3-old", "removals wait too");
    // After the shift, nothing is held.
    let mut plan = Plan {
        actions: vec![create("cell3-press")],
        ..Default::default()
    };
    hold_closed(
        &mut plan,
        &windows,
        &d,
        utc("2026-12-07T21:00:00Z"),
        &Overrides::default(),
    );
    assert!(self::held(&plan).is_empty());
}

#[test]
fn repairs_go_unless_the_window_denies_them() {
    let d = desired(vec![want("cell3-press", "img:1", "a.yaml")]);
    for (repairs, held_count) in [(Repairs::Allow, 0), (Repairs::Deny, 1)] {
        let mut plan = Plan {
            actions: vec![repair("cell3-press")],
            ..Default::default()
        };
        hold_closed(
            &mut plan,
            &[cell3_shift(repairs)],
            &d,
            utc(MONDAY_NOON),
            &Overrides::default(),
        );
        assert_eq!(held(&plan).len(), held_count, "{repairs:?}");
    }
}

#[test]
fn an_override_lets_a_change_through_once_and_says_which() {
    let d = desired(vec![
        want("cell3-press", "img:1", "a.yaml"),
        want("cell3-mill", "img:1", "a.yaml"),
    ]);
    let mut plan = Plan {
        actions: vec![create("cell3-press"), create("cell3-mill")],
        ..Default::default()
    };
    let overrides = Overrides {
        names: [AssetName::new("cell3-press").unwrap()].into(),
        ..Default::default()
    };
    let overridden = hold_closed(
        &mut plan,
        &[cell3_shift(Repairs::Allow)],
        &d,
        utc(MONDAY_NOON),
        &overrides,
    );
    assert_eq!(overridden.len(), 1);
    assert_eq!(overridden[0].0.as_str(), "cell3-press");
    assert_eq!(
        held(&plan).iter().map(|h| h.0).collect::<Vec<_>>(),
        ["cell3-mill"]
    );
}

#[test]
fn a_held_dependency_holds_its_dependents() {
    let broker = want("cell3-broker", "img:1", "a.yaml");
    let mut consumer = want("historian", "img:1", "a.yaml");
    consumer.depends_on = vec![broker.spec.name.clone()];
    let d = desired(vec![broker, consumer]);
    let mut plan = Plan {
        actions: vec![create("cell3-broker"), create("historian")],
        ..Default::default()
    };
    hold_closed(
        &mut plan,
        &[cell3_shift(Repairs::Allow)],
        &d,
        utc(MONDAY_NOON),
        &Overrides::default(),
    );
    let held = held(&plan);
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held[1].1.starts_with(
            "waits for cell3-broker, whose change is held: deny window `production-hours`"
        ),
        "{}",
        held[1].1
    );
}
