//! The flight recorder's side of the CLI: what `rmemring info` says of a
//! ring recovered from a previous boot, and `rmemring release-recovered`.

use rmemring::uapi::{
    RecoveryInfo,
    RECOVERY_NONE,
    RECOVERY_NOT_ASKED,
    RECOVERY_REASON_BLANK,
    RECOVERY_REASON_BOOT_ID_UNKNOWN,
    RECOVERY_REASON_CACHE_MODE,
    RECOVERY_REASON_CHECKSUM,
    RECOVERY_REASON_DROP_NEW,
    RECOVERY_REASON_GEOMETRY,
    RECOVERY_REASON_LAYOUT,
    RECOVERY_REASON_NO_BOOT_ID,
    RECOVERY_REASON_NO_RECORDS,
    RECOVERY_REASON_POSITIONS,
    RECOVERY_REASON_THIS_BOOT,
    RECOVERY_RECOVERED,
    RECOVERY_RELEASED, //
};
use rmemring::{
    Access,
    Region, //
};
use serde::Serialize;

use crate::DeviceArg;

/// Let go of a ring recovered from a previous boot: the driver lays out an
/// empty ring and producers may start. Read it first (`rmemring cat
/// --drain`): its records are gone afterwards.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let path = args.ring.device.display();
    let region = Region::open(&args.ring.device, Access::Consume)?;
    let found = region.recovery()?;
    if found.verdict != RECOVERY_RECOVERED {
        anyhow::bail!("{path} serves no recovered ring ({})", verdict(&found));
    }
    region.release_recovered()?;
    outln!(
        "{path}: released the {} records recovered from the previous boot; the ring is live",
        found.records
    )?;
    Ok(())
}

/// What the driver found, in words.
pub(crate) fn verdict(found: &RecoveryInfo) -> String {
    match found.verdict {
        RECOVERY_NOT_ASKED => "not kept across boots (retain=0)".to_owned(),
        RECOVERY_RECOVERED => "recovered from a previous boot, served read-only".to_owned(),
        RECOVERY_RELEASED => "a recovered ring was released".to_owned(),
        RECOVERY_NONE => format!(
            "kept across boots; nothing recovered: {}",
            reason(found.reason)
        ),
        other => format!("unknown verdict {other}"),
    }
}

/// Why nothing was recovered, in words (the driver's log line says more).
fn reason(reason: u32) -> &'static str {
    match reason {
        RECOVERY_REASON_BLANK => "zeroed memory (a cold boot)",
        RECOVERY_REASON_LAYOUT => "not a ring of this ABI version and page size",
        RECOVERY_REASON_CHECKSUM => "the identity checksum does not match",
        RECOVERY_REASON_GEOMETRY => "laid out for another region size",
        RECOVERY_REASON_CACHE_MODE => "laid out with another cache mode",
        RECOVERY_REASON_NO_BOOT_ID => "the ring records no boot id",
        RECOVERY_REASON_THIS_BOOT => "the ring is this boot's own",
        RECOVERY_REASON_POSITIONS => "impossible positions",
        RECOVERY_REASON_NO_RECORDS => "no record to recover",
        RECOVERY_REASON_BOOT_ID_UNKNOWN => "this boot's id was unreadable at load",
        RECOVERY_REASON_DROP_NEW => {
            "the ring was in drop-new mode (only overwrite-mode rings are kept)"
        }
        _ => "unknown reason",
    }
}

/// The boot id as the kernel prints it (`cat /proc/sys/kernel/random/boot_id`).
fn boot_id(words: [u64; 2]) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_le_bytes());
    b[8..].copy_from_slice(&words[1].to_le_bytes());
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A `CLOCK_MONOTONIC` time of the boot that wrote the ring as UTC, given
/// that boot's `CLOCK_REALTIME - CLOCK_MONOTONIC`; `None` if it recorded
/// none.
pub(crate) fn wall_clock(offset_ns: i64, monotonic_ns: u64) -> Option<String> {
    if offset_ns == 0 {
        return None;
    }
    let ns = i128::from(offset_ns) + i128::from(monotonic_ns);
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).ok()?;
    let frac = ns.rem_euclid(1_000_000_000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        frac / 1000
    ))
}

/// The `recovery` object of `rmemring info --json`: `verdict` and
/// `reason`, and what the ring held only if one was recovered (or
/// released). Fields in alphabetical order (see
/// [`json_line`](crate::out::json_line)).
#[derive(Serialize)]
pub(crate) struct Json {
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_cut: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
    /// `null` (present) when the ring recorded no wall-clock offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_wall_clock: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_wall_clock: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_pos: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realtime_offset_ns: Option<i64>,
    reason: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    verdict: String,
}

impl Json {
    pub(crate) fn of(found: &RecoveryInfo) -> Self {
        let held = matches!(found.verdict, RECOVERY_RECOVERED | RECOVERY_RELEASED);
        let some = |x| held.then_some(x);
        let offset = found.realtime_offset_ns;
        Self {
            boot_id: held.then(|| boot_id(found.boot_id)),
            bytes_cut: some(found.bytes_cut),
            first_ns: some(found.first_ns),
            first_seq: some(found.first_seq),
            first_wall_clock: held.then(|| wall_clock(offset, found.first_ns)),
            last_ns: some(found.last_ns),
            last_seq: some(found.last_seq),
            last_wall_clock: held.then(|| wall_clock(offset, found.last_ns)),
            published_pos: some(found.published_pos),
            realtime_offset_ns: held.then_some(offset),
            reason: found.reason,
            records: some(found.records),
            recovered: held.then_some(found.verdict == RECOVERY_RECOVERED),
            verdict: verdict(found),
        }
    }
}

/// The `recovery` lines of `rmemring info`.
pub(crate) fn print(found: &RecoveryInfo) -> std::io::Result<()> {
    outln!("recovery      {}", verdict(found))?;
    if !matches!(found.verdict, RECOVERY_RECOVERED | RECOVERY_RELEASED) {
        return Ok(());
    }
    outln!("  boot id     {}", boot_id(found.boot_id))?;
    outln!(
        "  records     {} (sequence numbers {}..={}), {} bytes cut from the tail",
        found.records,
        found.first_seq,
        found.last_seq,
        found.bytes_cut
    )?;
    let span = found.last_ns.saturating_sub(found.first_ns);
    match (
        wall_clock(found.realtime_offset_ns, found.first_ns),
        wall_clock(found.realtime_offset_ns, found.last_ns),
    ) {
        (Some(first), Some(last)) => outln!(
            "  span        {first} .. {last} ({:.6} s)",
            span as f64 / 1e9
        )?,
        _ => outln!(
            "  span        {:.6} s of that boot's clock (no wall-clock offset recorded)",
            span as f64 / 1e9
        )?,
    }
    if found.verdict == RECOVERY_RECOVERED {
        outln!("  (read them with `rmemring cat --drain`; then `rmemring release-recovered`)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_is_utc() {
        assert_eq!(
            wall_clock(1_000_000_000, 500_000_000).as_deref(),
            Some("1970-01-01 00:00:01.500000 UTC")
        );
        // 2026-12-04 19:00:00 UTC is 1796410800.
        assert_eq!(
            wall_clock(1_796_410_800_000_000_000, 0).as_deref(),
            Some("2026-12-04 19:00:00.000000 UTC")
        );
        assert_eq!(wall_clock(0, 5), None);
    }

    #[test]
    fn boot_ids_print_as_the_kernel_does() {
        let words = [
            u64::from_le_bytes([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]),
            u64::from_le_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]),
        ];
        assert_eq!(boot_id(words), "12345678-9abc-def0-0123-456789abcdef");
    }

    /// The `recovery` object's keys, in the order `info --json` has
    /// always printed them: two without a recovered ring, fourteen with.
    #[test]
    fn recovery_json_has_the_fields_of_its_verdict() {
        let none = RecoveryInfo {
            verdict: RECOVERY_NONE,
            reason: RECOVERY_REASON_BLANK,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&Json::of(&none)).unwrap(),
            r#"{"reason":1,"verdict":"kept across boots; nothing recovered: zeroed memory (a cold boot)"}"#
        );
        let found = RecoveryInfo {
            verdict: RECOVERY_RELEASED,
            records: 3,
            first_seq: 7,
            last_seq: 9,
            ..Default::default()
        };
        let text = serde_json::to_string(&Json::of(&found)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        // A `Value`'s keys are sorted whatever the text's order: the text's
        // own order is that of where each key stands in it.
        let at: Vec<usize> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.is_sorted(), "{text}");
        assert_eq!(at.len(), 14, "{text}");
        assert_eq!(value["recovered"], false);
        assert_eq!(value["records"], 3);
        assert_eq!(
            (&value["first_seq"], &value["last_seq"]),
            (&7.into(), &9.into())
        );
        // No wall-clock offset: the wall clocks are there, as null.
        assert!(value["first_wall_clock"].is_null(), "{text}");
        assert!(text.contains(r#""last_wall_clock":null"#), "{text}");
    }
}
