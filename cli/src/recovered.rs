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
use serde_json::{
    json,
    Value, //
};

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

/// The `recovery` object of `rmemring info --json`.
pub(crate) fn to_json(found: &RecoveryInfo) -> Value {
    let mut value = json!({
        "verdict": verdict(found),
        "reason": found.reason,
    });
    if matches!(found.verdict, RECOVERY_RECOVERED | RECOVERY_RELEASED) {
        value["recovered"] = json!(found.verdict == RECOVERY_RECOVERED);
        value["boot_id"] = json!(boot_id(found.boot_id));
        value["records"] = json!(found.records);
        value["first_seq"] = json!(found.first_seq);
        value["last_seq"] = json!(found.last_seq);
        value["first_ns"] = json!(found.first_ns);
        value["last_ns"] = json!(found.last_ns);
        value["bytes_cut"] = json!(found.bytes_cut);
        value["published_pos"] = json!(found.published_pos);
        value["realtime_offset_ns"] = json!(found.realtime_offset_ns);
        value["first_wall_clock"] = json!(wall_clock(found.realtime_offset_ns, found.first_ns));
        value["last_wall_clock"] = json!(wall_clock(found.realtime_offset_ns, found.last_ns));
    }
    value
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
}
