//! Recurring runs: a cron expression in an IANA time zone, and when it fires next.
//!
//! Why a module of its own, pure (no clock, no store): the rules of a recurrence are
//! where schedulers get wrong what people rely on, and every one of them is a
//! function of the expression, the zone and a time, tested here alone as `judge` is.
//! Cron implementations have fired a job twice in an autumn night and never in a
//! spring one (zslayton/cron "Fix folded time", 2026), or in a burst after a
//! restart; a lab queue fed that way runs a rig's evaluation twice or starves it.
//!
//! **The expression** has the five POSIX/Vixie fields, minute hour day-of-month
//! month day-of-week, read by `croner` (names `MON`, `JAN`; ranges, lists, steps;
//! `L`, `W` and `#` for month ends and nth weekdays); seconds, years and `@`
//! nicknames are refused, so an expression means the same to every reader. It is
//! read on the wall clock of [`Recurrence::zone`], which `chrono-tz` (the tz
//! database compiled in) maps to instants.
//!
//! **At most every five minutes** ([`MIN_INTERVAL`]): a lab queue is not a ticker. A
//! run takes a rig for minutes to hours; an expression that could fire more often
//! would only pile up queued jobs. The rule is checked on the wall clock from the
//! minute and hour fields (two matching minutes closer than five, also across the
//! turn of an hour, are refused); see the daylight-saving rules below for the one
//! night a year where instants differ from the wall clock.
//!
//! **Daylight-saving changes** (Vixie cron's rule). A recurrence of fixed times of
//! day, whose minute and hour fields hold no `*` and no step
//! (`30 2 * * *`, `0,30 2,14 * * *`), fires each of its times exactly once on each
//! day it names, whatever the clock does:
//! - when that wall time does not exist (Europe/Berlin 2026-03-29, 02:00 -> 03:00),
//!   it fires at the first instant after the gap (03:00 CEST), once (two times in
//!   the gap, `0,30 2`, make one run there);
//! - when that wall time happens twice (Europe/Berlin 2026-10-25, 03:00 -> 02:00),
//!   it fires at the first of the two (02:30 CEST), and not at the second.
//!
//! An interval recurrence (a `*` or a step in the minute or hour field,
//! `*/30 * * * *`, `0 */2 * * *`) follows the wall clock: the times a spring gap removes do not
//! happen, and the hour an autumn fold repeats is run again (its matches there are
//! real instants an hour apart, so it still fires no more often than its step).
//! Only at the edge of a gap or fold can two runs come closer than [`MIN_INTERVAL`],
//! once a year.
//!
//! **After downtime, one catch-up run, not a burst.** A schedule keeps the next
//! time it is due. When the server finds it due at `now` (having been down across
//! one or many due times), it fires once and moves on to the first time after
//! `now` ([`catch_up`]): the missed times are counted, for the audit, not run.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use proofrig_proto::ids::UnixMillis;

/// The shortest time a recurrence may leave between two runs.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The five fields, in order, as errors name them.
const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

/// The most missed due times [`catch_up`] counts (a schedule left for years).
const MAX_COUNTED: u32 = 1_000;

/// Why a cron expression or time zone is refused. Each names the field at fault
/// (`cron`, one of its five fields, or `time_zone`) and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("cron `{cron}`: {found} field(s); use the five fields minute hour day-of-month month day-of-week (e.g. `30 2 * * *`), without seconds, years or @nicknames")]
    FieldCount { cron: String, found: usize },
    #[error("cron `{cron}`: the {field} field `{text}` is not valid ({reason}); see `man 5 crontab` for what a field may hold")]
    Field { cron: String, field: &'static str, text: String, reason: String },
    #[error("cron `{cron}`: {reason}; use the five fields minute hour day-of-month month day-of-week")]
    Invalid { cron: String, reason: String },
    #[error("cron `{cron}` fires {gap_minutes} minute(s) apart; a lab queue is not a ticker: a recurrence may fire at most every {} minutes (e.g. `*/15 * * * *`)", MIN_INTERVAL.as_secs() / 60)]
    TooOften { cron: String, gap_minutes: u32 },
    #[error("cron `{cron}` never fires (no date matches its day and month fields); check the day-of-month and month fields")]
    Never { cron: String },
    #[error("time_zone `{zone}` is not an IANA time zone{}; use a name such as Europe/Berlin, America/New_York or UTC", .suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownZone { zone: String, suggestion: Option<String> },
}

impl RecurrenceError {
    /// The request field at fault: `cron` or `time_zone`.
    pub fn field(&self) -> &'static str {
        match self {
            RecurrenceError::UnknownZone { .. } => "time_zone",
            _ => "cron",
        }
    }
}

/// A checked recurrence: a five-field cron expression read in an IANA time zone.
#[derive(Debug, Clone)]
pub struct Recurrence {
    expression: String,
    cron: Cron,
    /// What [`Recurrence::next_after`] asks: for an expression of fixed times, one
    /// expression per time of day (each of which croner treats as a fixed time across
    /// a daylight-saving change); otherwise the expression itself.
    times: Vec<Cron>,
    zone: Tz,
}

impl PartialEq for Recurrence {
    fn eq(&self, other: &Recurrence) -> bool {
        self.expression == other.expression && self.zone == other.zone
    }
}

impl Recurrence {
    /// Check `cron` and `time_zone`: five valid fields, firing at most every
    /// [`MIN_INTERVAL`] and at least once, in a zone the tz database knows.
    pub fn parse(cron: &str, time_zone: &str) -> Result<Recurrence, RecurrenceError> {
        let zone = parse_zone(time_zone)?;
        let expression = cron.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields: Vec<&str> = expression.split(' ').filter(|f| !f.is_empty()).collect();
        if fields.len() != 5 || expression.contains('@') {
            return Err(RecurrenceError::FieldCount { cron: cron.to_string(), found: fields.len() });
        }
        let parsed = parser().parse(&expression).map_err(|e| blame_field(cron, &fields, e))?;
        let times =
            times_of_day(&parsed, &fields).map_err(|e| RecurrenceError::Invalid { cron: cron.to_string(), reason: e.to_string() })?;
        let recurrence = Recurrence { expression, cron: parsed, times, zone };
        if let Some(gap_minutes) = shortest_gap_minutes(&recurrence.cron).filter(|m| u64::from(*m) * 60 < MIN_INTERVAL.as_secs()) {
            return Err(RecurrenceError::TooOften { cron: cron.to_string(), gap_minutes });
        }
        if recurrence.next_after(UnixMillis(0)).is_none() {
            return Err(RecurrenceError::Never { cron: cron.to_string() });
        }
        Ok(recurrence)
    }

    /// The expression, its fields separated by one space.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of its time zone.
    pub fn zone(&self) -> &'static str {
        self.zone.name()
    }

    /// The first time strictly after `after` at which it fires; `None` when it never
    /// fires again (past the year 5000, or past what a time can hold).
    pub fn next_after(&self, after: UnixMillis) -> Option<UnixMillis> {
        // Whole seconds: the search steps one second past its start, so the answer
        // is always later than `after`, also when `after` has milliseconds.
        let secs = i64::try_from(after.0 / 1000).ok()?;
        let start: DateTime<Tz> = Utc.timestamp_opt(secs, 0).single()?.with_timezone(&self.zone);
        let next = self.times.iter().filter_map(|cron| cron.find_next_occurrence(&start, false).ok()).min()?;
        u64::try_from(next.timestamp_millis()).ok().map(UnixMillis)
    }
}

/// [`Recurrence::next_after`].
pub fn next_after(recurrence: &Recurrence, after: UnixMillis) -> Option<UnixMillis> {
    recurrence.next_after(after)
}

/// What a schedule due at `due` does when the server looks at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// Whether it fires now: once, however many due times passed.
    pub fires: bool,
    /// Due times passed and not run (0: the server was up at the last one).
    pub missed: u32,
    /// When it is due next (`None`: never again).
    pub next_at: Option<UnixMillis>,
}

/// The downtime rule: a schedule due at or before `now` fires once and is next due
/// at the first time after `now`; the due times in between are counted as missed
/// (up to 1,000), not run. One not yet due stays as it is.
pub fn catch_up(recurrence: &Recurrence, due: UnixMillis, now: UnixMillis) -> CatchUp {
    if due > now {
        return CatchUp { fires: false, missed: 0, next_at: Some(due) };
    }
    // Counted on the expression as written (one search per time, not one per time of
    // day): the count is for the audit, and differs only on a daylight-saving night.
    let counter = Recurrence { times: vec![recurrence.cron.clone()], ..recurrence.clone() };
    let mut missed = 0;
    let mut at = due;
    while missed < MAX_COUNTED {
        match counter.next_after(at) {
            Some(next) if next <= now => {
                missed += 1;
                at = next;
            }
            _ => break,
        }
    }
    CatchUp { fires: true, missed, next_at: recurrence.next_after(now) }
}

/// Vixie cron's rule for which runs a daylight-saving change may move: an expression
/// whose minute and hour fields hold no `*` and no step names fixed times of day, each
/// run once a day whatever the clock does. croner applies that rule to one fixed time
/// only, so such an expression is asked as one expression per time of day (at most
/// 12 x 24, given [`MIN_INTERVAL`]); any other is asked as it is.
fn times_of_day(cron: &Cron, fields: &[&str]) -> Result<Vec<Cron>, croner::errors::CronError> {
    let fixed = fields[..2].iter().all(|f| !f.contains('*') && !f.contains('/'));
    if !fixed {
        return Ok(vec![cron.clone()]);
    }
    let days = fields[2..].join(" ");
    let mut times = Vec::new();
    for hour in cron.pattern.hours.values() {
        for minute in cron.pattern.minutes.values() {
            times.push(parser().parse(&format!("{minute} {hour} {days}"))?);
        }
    }
    Ok(times)
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build()
}

fn parse_zone(name: &str) -> Result<Tz, RecurrenceError> {
    Tz::from_str(name.trim()).map_err(|_| {
        let suggestion = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).find(|z| z.eq_ignore_ascii_case(name.trim())).map(str::to_string);
        RecurrenceError::UnknownZone { zone: name.to_string(), suggestion }
    })
}

/// Name the field croner refused: each field alone, the others `*`.
fn blame_field(cron: &str, fields: &[&str], error: croner::errors::CronError) -> RecurrenceError {
    for (i, text) in fields.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = text;
        if let Err(e) = parser().parse(&alone.join(" ")) {
            return RecurrenceError::Field { cron: cron.to_string(), field: FIELDS[i], text: text.to_string(), reason: e.to_string() };
        }
    }
    RecurrenceError::Invalid { cron: cron.to_string(), reason: error.to_string() }
}

/// The fewest wall-clock minutes between two runs the minute and hour fields allow:
/// within an hour, and from an hour's last match to the next hour's first when two
/// consecutive hours match (23 and 0 counted as consecutive: the next day may
/// match). `None` when only one run a day is possible.
fn shortest_gap_minutes(cron: &Cron) -> Option<u32> {
    let minutes: Vec<u32> = cron.pattern.minutes.values().into_iter().map(u32::from).collect();
    let hours: Vec<u32> = cron.pattern.hours.values().into_iter().map(u32::from).collect();
    let within = minutes.windows(2).map(|w| w[1] - w[0]).min();
    let consecutive_hours = hours.iter().any(|h| hours.contains(&((h + 1) % 24)));
    let across = match (minutes.first(), minutes.last(), consecutive_hours) {
        (Some(first), Some(last), true) => Some(60 - last + first),
        _ => None,
    };
    within.into_iter().chain(across).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UTC time, `2026-03-29 01:00`.
    fn utc(text: &str) -> UnixMillis {
        let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap().and_utc();
        UnixMillis(u64::try_from(t.timestamp_millis()).unwrap())
    }

    fn show(t: UnixMillis) -> String {
        DateTime::from_timestamp_millis(i64::try_from(t.0).unwrap()).unwrap().format("%Y-%m-%d %H:%M").to_string()
    }

    /// The first `n` runs after `from`, in UTC.
    fn runs(cron: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let r = Recurrence::parse(cron, zone).unwrap();
        let mut at = utc(from);
        (0..n)
            .map(|_| {
                at = r.next_after(at).unwrap();
                show(at)
            })
            .collect()
    }

    #[test]
    fn berlin_spring_gap_fires_once_right_after_the_gap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-27 12:00", 3),
            ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"],
            "02:30 CET, then 03:00 CEST (the first instant after the gap), then 02:30 CEST"
        );
        // Asked from inside the night, and from the very run, it still fires once.
        assert_eq!(runs("30 2 * * *", "Europe/Berlin", "2026-03-29 00:59", 2), ["2026-03-29 01:00", "2026-03-30 00:30"]);
        assert_eq!(runs("30 2 * * *", "Europe/Berlin", "2026-03-29 01:00", 1), ["2026-03-30 00:30"]);
    }

    #[test]
    fn berlin_autumn_fold_fires_once_at_the_first_of_the_two() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens at 00:30
        // and at 01:30 UTC. It fires at the first only.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-23 12:00", 3),
            ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]
        );
        // From between the two 02:30s (after the first ran), the next is the next day.
        assert_eq!(runs("30 2 * * *", "Europe/Berlin", "2026-10-25 00:30", 1), ["2026-10-26 01:30"]);
        assert_eq!(runs("30 2 * * *", "Europe/Berlin", "2026-10-25 01:10", 1), ["2026-10-26 01:30"]);
    }

    #[test]
    fn new_york_spring_gap_and_autumn_fold_fire_once_a_day() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        assert_eq!(
            runs("30 2 * * *", "America/New_York", "2026-03-06 12:00", 3),
            ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30 happens twice.
        assert_eq!(
            runs("30 1 * * *", "America/New_York", "2026-10-30 12:00", 3),
            ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]
        );
        assert_eq!(runs("30 1 * * *", "America/New_York", "2026-11-01 06:10", 1), ["2026-11-02 06:30"]);
    }

    #[test]
    fn a_list_of_fixed_times_fires_each_once_a_day_across_both_changes() {
        // 02:00 and 02:30 both fall in the Berlin spring gap: one run, at 03:00 CEST.
        assert_eq!(
            runs("0,30 2 * * *", "Europe/Berlin", "2026-03-28 00:00", 5),
            ["2026-03-28 01:00", "2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:00", "2026-03-30 00:30"]
        );
        // In the autumn fold, each at the first of its two instants (CEST), not again.
        assert_eq!(
            runs("0,30 2 * * *", "Europe/Berlin", "2026-10-24 12:00", 4),
            ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-26 01:00", "2026-10-26 01:30"]
        );
        // Two hours a day: the 02:30 run moves past the gap, the 14:30 one stays.
        assert_eq!(
            runs("30 2,14 * * *", "Europe/Berlin", "2026-03-28 12:00", 4),
            ["2026-03-28 13:30", "2026-03-29 01:00", "2026-03-29 12:30", "2026-03-30 00:30"]
        );
    }

    #[test]
    fn an_interval_follows_the_wall_clock_through_both_changes() {
        // Every 30 minutes across the Berlin spring gap: 01:30 CET, then 03:00 CEST.
        assert_eq!(
            runs("*/30 * * * *", "Europe/Berlin", "2026-03-29 00:00", 3),
            ["2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30"],
            "01:30 CET (00:30 UTC), 03:00 CEST (01:00 UTC), 03:30 CEST"
        );
        // Across the autumn fold it runs the repeated hour again, every 30 real minutes.
        assert_eq!(
            runs("*/30 * * * *", "Europe/Berlin", "2026-10-24 23:50", 5),
            ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30", "2026-10-25 02:00"]
        );
    }

    #[test]
    fn month_end_and_weekly() {
        // The 31st only in months that have one; `L`, the last day of every month.
        assert_eq!(runs("0 9 31 * *", "UTC", "2026-01-01 00:00", 3), ["2026-01-31 09:00", "2026-03-31 09:00", "2026-05-31 09:00"]);
        assert_eq!(runs("0 9 L * *", "UTC", "2026-01-31 10:00", 3), ["2026-02-28 09:00", "2026-03-31 09:00", "2026-04-30 09:00"]);
        assert_eq!(runs("0 9 L 2 *", "UTC", "2027-03-01 00:00", 2), ["2028-02-29 09:00", "2029-02-28 09:00"]);
        // Mondays 06:00 in Berlin: 05:00 UTC before the spring change, 04:00 after.
        assert_eq!(
            runs("0 6 * * MON", "Europe/Berlin", "2026-03-20 00:00", 3),
            ["2026-03-23 05:00", "2026-03-30 04:00", "2026-04-06 04:00"]
        );
    }

    #[test]
    fn after_downtime_one_catch_up_run_not_a_burst() {
        let r = Recurrence::parse("0 * * * *", "Europe/Berlin").unwrap();
        // Due at 10:00 UTC, the server back at 13:20: fires once, 10:00, 11:00, 12:00
        // and 13:00 passed (three of them missed), next due 14:00.
        let c = catch_up(&r, utc("2026-05-04 10:00"), utc("2026-05-04 13:20"));
        assert_eq!(c, CatchUp { fires: true, missed: 3, next_at: Some(utc("2026-05-04 14:00")) });
        // On time: fires, nothing missed.
        let c = catch_up(&r, utc("2026-05-04 10:00"), utc("2026-05-04 10:00"));
        assert_eq!(c, CatchUp { fires: true, missed: 0, next_at: Some(utc("2026-05-04 11:00")) });
        // Not due yet: stays.
        let c = catch_up(&r, utc("2026-05-04 10:00"), utc("2026-05-04 09:59"));
        assert_eq!(c, CatchUp { fires: false, missed: 0, next_at: Some(utc("2026-05-04 10:00")) });
        // Down over a spring gap and days: still one run, the days counted.
        let daily = Recurrence::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let c = catch_up(&daily, utc("2026-03-28 01:30"), utc("2026-03-31 12:00"));
        assert_eq!(c, CatchUp { fires: true, missed: 3, next_at: Some(utc("2026-04-01 00:30")) });
    }

    #[test]
    fn invalid_input_names_the_field() {
        let err = |cron: &str, zone: &str| Recurrence::parse(cron, zone).unwrap_err();
        let e = err("30 2 * *", "UTC");
        assert_eq!(e, RecurrenceError::FieldCount { cron: "30 2 * *".into(), found: 4 });
        assert!(e.to_string().contains("minute hour day-of-month month day-of-week"), "{e}");
        assert_eq!(e.field(), "cron");
        assert!(matches!(err("0 30 2 * * *", "UTC"), RecurrenceError::FieldCount { found: 6, .. }), "seconds are refused");
        assert!(matches!(err("@daily", "UTC"), RecurrenceError::FieldCount { .. }));
        for (cron, field, text) in [
            ("61 2 * * *", "minute", "61"),
            ("0 24 * * *", "hour", "24"),
            ("0 2 0 * *", "day-of-month", "0"),
            ("0 2 * 13 *", "month", "13"),
            ("0 2 * * FUNDAY", "day-of-week", "FUNDAY"),
        ] {
            match err(cron, "UTC") {
                RecurrenceError::Field { field: f, text: t, .. } => assert_eq!((f, t.as_str()), (field, text), "{cron}"),
                other => panic!("{cron}: {other}"),
            }
        }
        let e = err("0 2 * 13 *", "UTC").to_string();
        assert!(e.contains("the month field `13`"), "{e}");

        let e = err("30 2 * * *", "Europe/Berlinn");
        assert_eq!(e.field(), "time_zone");
        assert!(e.to_string().contains("time_zone `Europe/Berlinn` is not an IANA time zone"), "{e}");
        let e = err("30 2 * * *", "europe/berlin").to_string();
        assert!(e.contains("did you mean Europe/Berlin?"), "{e}");
        assert!(matches!(err("0 0 30 2 *", "UTC"), RecurrenceError::Never { .. }));
    }

    #[test]
    fn more_often_than_every_five_minutes_is_refused() {
        for (cron, gap) in [("* * * * *", 1), ("*/4 * * * *", 4), ("0,3 * * * *", 3), ("0,58 * * * *", 2), ("58 9-10 * * *", 60)] {
            match Recurrence::parse(cron, "UTC") {
                Err(RecurrenceError::TooOften { gap_minutes, .. }) => assert_eq!(gap_minutes, gap, "{cron}"),
                Ok(_) if gap >= 5 => {}
                other => panic!("{cron}: {other:?}"),
            }
        }
        let e = Recurrence::parse("*/2 * * * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("a lab queue is not a ticker") && e.contains("every 5 minutes"), "{e}");
        // Across the turn of the hour: 58 and 02 of consecutive hours are 4 minutes apart.
        assert!(matches!(Recurrence::parse("2,58 * * * *", "UTC"), Err(RecurrenceError::TooOften { gap_minutes: 4, .. })));
        // 23:58 and 00:02 the next day, too.
        assert!(matches!(Recurrence::parse("2,58 0,23 * * *", "UTC"), Err(RecurrenceError::TooOften { gap_minutes: 4, .. })));
        for ok in ["*/5 * * * *", "0,5 * * * *", "55 * * * *", "0 */1 * * *", "30 2 * * *", "2,58 3,9 * * *"] {
            assert!(Recurrence::parse(ok, "UTC").is_ok(), "{ok}");
        }
    }

    #[test]
    fn next_after_is_strictly_later_and_normalises_the_expression() {
        let r = Recurrence::parse("  30   2 * *  * ", "Europe/Berlin").unwrap();
        assert_eq!((r.expression(), r.zone()), ("30 2 * * *", "Europe/Berlin"));
        let run = utc("2026-06-01 00:30");
        assert_eq!(next_after(&r, UnixMillis(run.0 - 1)), Some(run));
        assert_eq!(next_after(&r, run), Some(utc("2026-06-02 00:30")));
        assert_eq!(next_after(&r, UnixMillis(run.0 + 999)), Some(utc("2026-06-02 00:30")));
    }
}
