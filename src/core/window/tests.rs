use std::time::Duration;

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

fn window(effect: Effect, schedule: &str, hours: u64, zone: &str) -> SyncWindow {
    SyncWindow {
        name: "w".into(),
        effect,
        schedule: schedule.into(),
        duration: Duration::from_secs(hours * 3600),
        zone: super::zone(zone).unwrap(),
        selector: Selector::Names(vec!["*".into()]),
        repairs: Repairs::Allow,
    }
}

/// (in force, when that flips) at `now`.
fn at(w: &SyncWindow, now: &str) -> (bool, String) {
    let r = w.at(utc(now));
    (
        r.in_force,
        r.changes_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
    )
}

fn t(text: &str) -> String {
    utc(text).to_rfc3339()
}

#[test]
fn a_weekday_shift_in_berlin_is_in_force_from_six_to_twenty_two_local() {
    let shift = window(Effect::Deny, "0 6 * * 1-5", 16, "Europe/Berlin");
    // Monday 2026-12-07, CET = UTC+1.
    assert_eq!(
        at(&shift, "2026-12-07T04:59:00Z"),
        (false, t("2026-12-07T05:00:00Z"))
    );
    assert_eq!(
        at(&shift, "2026-12-07T05:00:00Z"),
        (true, t("2026-12-07T21:00:00Z"))
    );
    assert_eq!(
        at(&shift, "2026-12-07T20:59:59Z"),
        (true, t("2026-12-07T21:00:00Z"))
    );
    assert_eq!(
        at(&shift, "2026-12-07T21:00:00Z"),
        (false, t("2026-12-08T05:00:00Z"))
    );
    // Saturday: closed all day, next Monday 06:00 local.
    assert_eq!(
        at(&shift, "2026-12-12T10:00:00Z"),
        (false, t("2026-12-14T05:00:00Z"))
    );
}

#[test]
fn a_window_across_midnight() {
    let night = window(Effect::Allow, "0 22 * * *", 8, "UTC");
    assert_eq!(
        at(&night, "2026-12-08T01:00:00Z"),
        (true, t("2026-12-08T06:00:00Z"))
    );
    assert_eq!(
        at(&night, "2026-12-08T06:00:00Z"),
        (false, t("2026-12-08T22:00:00Z"))
    );
}

#[test]
fn a_window_over_a_weekend() {
    // Friday 18:00 to Monday 06:00, Berlin.
    let weekend = window(Effect::Allow, "0 18 * * 5", 60, "Europe/Berlin");
    assert_eq!(
        at(&weekend, "2026-12-13T12:00:00Z"),
        (true, t("2026-12-14T05:00:00Z"))
    );
    assert_eq!(
        at(&weekend, "2026-12-14T05:00:00Z"),
        (false, t("2026-12-18T17:00:00Z"))
    );
    assert_eq!(
        at(&weekend, "2026-12-11T16:59:00Z"),
        (false, t("2026-12-11T17:00:00Z"))
    );
}

/// 2026-03-29, 02:00 CET → 03:00 CEST: a night window ends at 06:00 on
/// the wall clock, 7 real hours after it opened.
#[test]
fn the_spring_forward_night_ends_on_the_wall_clock() {
    let night = window(Effect::Deny, "0 22 * * *", 8, "Europe/Berlin");
    assert_eq!(
        at(&night, "2026-03-29T03:59:00Z"),
        (true, t("2026-03-29T04:00:00Z"))
    );
    assert_eq!(
        at(&night, "2026-03-29T04:00:00Z"),
        (false, t("2026-03-29T20:00:00Z"))
    );
}

/// 2026-10-25, 03:00 CEST → 02:00 CET: the night is 9 real hours.
#[test]
fn the_fall_back_night_ends_on_the_wall_clock() {
    let night = window(Effect::Deny, "0 22 * * *", 8, "Europe/Berlin");
    assert_eq!(
        at(&night, "2026-10-25T04:30:00Z"),
        (true, t("2026-10-25T05:00:00Z"))
    );
    assert_eq!(
        at(&night, "2026-10-25T05:00:00Z"),
        (false, t("2026-10-25T21:00:00Z"))
    );
}

/// A start in the skipped hour (02:30 does not exist on 2026-03-29)
/// moves to the first minute after it, 03:00 CEST.
#[test]
fn a_start_in_the_skipped_hour_moves_to_its_end() {
    let w = window(Effect::Deny, "30 2 * * *", 1, "Europe/Berlin");
    assert_eq!(
        at(&w, "2026-03-29T00:59:00Z"),
        (false, t("2026-03-29T01:00:00Z"))
    );
    assert!(
        at(&w, "2026-03-29T01:30:00Z").0,
        "in force after the skipped hour"
    );
}

/// A start in the repeated hour (02:30 happens twice on 2026-10-25)
/// happens once, at the first 02:30; an end in it is the second one.
#[test]
fn the_repeated_hour_starts_once_and_ends_late() {
    let w = window(Effect::Deny, "30 2 * * *", 1, "Europe/Berlin");
    // 02:30 CEST = 00:30Z; 03:30 CET = 02:30Z.
    assert_eq!(
        at(&w, "2026-10-25T00:30:00Z"),
        (true, t("2026-10-25T02:30:00Z"))
    );
    assert_eq!(
        at(&w, "2026-10-25T02:30:00Z"),
        (false, t("2026-10-26T01:30:00Z"))
    );
    let ends_in_it = SyncWindow {
        duration: Duration::from_secs(90 * 60),
        ..window(Effect::Deny, "0 1 * * *", 0, "Europe/Berlin")
    };
    // 01:00 CEST + 1h30 on the wall clock = the second 02:30 = 01:30Z.
    assert_eq!(
        at(&ends_in_it, "2026-10-25T00:00:00Z"),
        (true, t("2026-10-25T01:30:00Z"))
    );
}

#[test]
fn overlapping_openings_extend_the_window() {
    // Every hour for 2 hours: always in force, never "changes" soon.
    let w = window(Effect::Deny, "0 * * * *", 2, "UTC");
    let (in_force, until) = at(&w, "2026-12-07T10:30:00Z");
    assert!(in_force);
    assert!(utc(&until) > utc("2026-12-08T00:00:00Z"), "{until}");
}

#[test]
fn bad_schedules_and_zones_say_why() {
    assert!(schedule("0 6 * * 1-5").is_ok());
    assert!(schedule("0 6 * *").unwrap_err().contains("five fields"));
    assert!(schedule("0 6 * * 1-5 2027")
        .unwrap_err()
        .contains("five fields"));
    assert!(schedule("61 6 * * *")
        .unwrap_err()
        .contains("not a cron schedule"));
    assert!(zone("Europe/Berlin").is_ok());
    assert!(zone("Europe/Bonn").unwrap_err().contains("IANA"));
}

#[test]
fn selectors_match_by_glob_or_by_labels() {
    let mut w = window(Effect::Deny, "0 6 * * *", 1, "UTC");
    w.selector = Selector::Names(vec!["cell3-*".into()]);
    let press = AssetName::new("cell3-press").unwrap();
    let lathe = AssetName::new("cell4-lathe").unwrap();
    assert!(w.selects(&press, None));
    assert!(!w.selects(&lathe, None));
    w.selector = Selector::Labels([("zone".to_string(), "cell-3".to_string())].into());
    let labels: BTreeMap<String, String> = [("zone".into(), "cell-3".into())].into();
    assert!(w.selects(&lathe, Some(&labels)));
    assert!(!w.selects(&lathe, None), "a removal has no labels to match");
}

#[test]
fn outside_every_allow_window_a_change_waits_for_the_next_opening() {
    let sunday = SyncWindow {
        name: "sunday-maintenance".into(),
        ..window(Effect::Allow, "0 8 * * 0", 4, "Europe/Berlin")
    };
    let closed = closed_for(
        &[sunday],
        &AssetName::new("mill").unwrap(),
        None,
        utc("2026-12-07T11:00:00Z"),
    )
    .expect("closed on a Monday");
    assert_eq!(
        closed.why,
        "outside allow window `sunday-maintenance`: opens 2026-12-13 08:00 CET (07:00 UTC)"
    );
}
