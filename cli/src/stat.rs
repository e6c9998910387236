//! `rmemring stat`: counters and rates.

use std::time::{
    Duration,
    Instant, //
};

use serde::Serialize;

use crate::args::{
    parse_duration,
    si, //
};
use crate::signals;
use crate::snapshot::{
    observe,
    Snapshot, //
};
use crate::DeviceArg;

/// Show producer and consumer counters and their rates.
///
/// Samples the counters twice, INTERVAL apart, and prints the totals and
/// the rates in between; with --watch, prints a line of rates every
/// INTERVAL until Ctrl-C. Opens the ring read-only (as an observer).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// Print a line of rates every INTERVAL until Ctrl-C (or --count lines).
    #[arg(long, short)]
    watch: bool,
    /// Time between samples, like 1s or 250ms; 0 prints the totals at once,
    /// without rates.
    #[arg(long, short, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// With --watch, stop after COUNT lines.
    #[arg(long, short = 'n', requires = "watch")]
    count: Option<u64>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// Rates per second between two snapshots; in JSON, by the names of the
/// counters (in alphabetical order, see [`json_line`](crate::out::json_line)).
#[derive(Clone, Copy, Debug, Serialize)]
struct Rates {
    #[serde(rename = "bytes_produced")]
    bytes: f64,
    #[serde(rename = "records_consumed")]
    consumed: f64,
    #[serde(rename = "records_dropped")]
    dropped: f64,
    #[serde(rename = "records_overwritten")]
    overwritten: f64,
    #[serde(rename = "records_produced")]
    produced: f64,
    #[serde(rename = "records_read")]
    read: f64,
    sleeps: f64,
    wakeups: f64,
}

impl Rates {
    fn between(a: &Snapshot, b: &Snapshot, dt: Duration) -> Self {
        let secs = dt.as_secs_f64().max(1e-9);
        let rate = |x: u64, y: u64| y.wrapping_sub(x) as f64 / secs;
        let read = |s: &Snapshot| s.driver.map_or(0, |d| d.records_read);
        Self {
            produced: rate(a.records_produced, b.records_produced),
            bytes: rate(a.bytes_produced, b.bytes_produced),
            consumed: rate(a.records_consumed, b.records_consumed),
            dropped: rate(a.records_dropped, b.records_dropped),
            overwritten: rate(a.records_overwritten, b.records_overwritten),
            wakeups: rate(a.wakeups, b.wakeups),
            sleeps: rate(a.sleeps, b.sleeps),
            read: rate(read(a), read(b)),
        }
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let region = observe(&args.ring.device)?;
    let mut before = Snapshot::take(&region)?;
    let mut at = Instant::now();
    if args.interval.is_zero() {
        print_totals(&before, None, args.json)?;
        return Ok(());
    }
    if !args.watch {
        if signals::pause(args.interval)? {
            print_totals(&before, None, args.json)?;
            return Ok(());
        }
        let after = Snapshot::take(&region)?;
        let rates = Rates::between(&before, &after, at.elapsed());
        print_totals(&after, Some(&rates), args.json)?;
        return Ok(());
    }

    let start = at;
    let mut lines = 0u64;
    while args.count.is_none_or(|n| lines < n) {
        if signals::pause(args.interval)? {
            break;
        }
        let now = Instant::now();
        let snap = Snapshot::take(&region)?;
        let rates = Rates::between(&before, &snap, now - at);
        let t = (now - start).as_secs_f64();
        if args.json {
            crate::out::json_line(&Json {
                rates: Some(rates),
                t: Some(t),
                totals: Totals::of(&snap),
            })?;
        } else {
            if lines % 20 == 0 {
                outln!(
                    "{:>8} {:>11} {:>9} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}  producer",
                    "time",
                    "produced/s",
                    "MB/s",
                    "consumed/s",
                    "dropped/s",
                    "overwr./s",
                    "wakeups/s",
                    "read()/s",
                    "backlog"
                )?;
            }
            let running = match snap.driver {
                Some(d) if d.producer_running => "running",
                Some(_) => "stopped",
                None => "-",
            };
            outln!(
                "{:>7.1}s {:>11} {:>9.1} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}  {running}",
                t,
                si(rates.produced),
                rates.bytes / 1e6,
                si(rates.consumed),
                si(rates.dropped),
                si(rates.overwritten),
                si(rates.wakeups),
                si(rates.read),
                backlog(snap.backlog()),
            )?;
        }
        before = snap;
        at = now;
        lines += 1;
    }
    Ok(())
}

fn backlog(n: u64) -> String {
    if n < 1 << 10 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    }
}

/// A line of `rmemring stat --json`: the totals, the rates once there
/// are two samples, and in watch mode the seconds since the first.
#[derive(Serialize)]
struct Json {
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<Rates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<f64>,
    totals: Totals,
}

/// The counters of a [`Snapshot`] in JSON (in alphabetical order, see
/// [`json_line`](crate::out::json_line)); `null` for what only a device
/// has.
#[derive(Serialize)]
struct Totals {
    backlog: u64,
    bytes_consumed: u64,
    bytes_produced: u64,
    consumer_errors: u64,
    consumer_open: Option<bool>,
    producer_running: Option<bool>,
    records_consumed: u64,
    records_dropped: u64,
    records_hooked: Option<u64>,
    records_lost: u64,
    records_overwritten: u64,
    records_produced: u64,
    records_read: Option<u64>,
    records_refused: Option<u64>,
    sleeps: u64,
    wakeups: u64,
}

impl Totals {
    fn of(s: &Snapshot) -> Self {
        let d = s.driver;
        Self {
            backlog: s.backlog(),
            bytes_consumed: s.bytes_consumed,
            bytes_produced: s.bytes_produced,
            consumer_errors: s.consumer_errors,
            consumer_open: d.map(|d| d.consumer_open),
            producer_running: d.map(|d| d.producer_running),
            records_consumed: s.records_consumed,
            records_dropped: s.records_dropped,
            records_hooked: d.map(|d| d.records_hooked),
            records_lost: s.records_lost,
            records_overwritten: s.records_overwritten,
            records_produced: s.records_produced,
            records_read: d.map(|d| d.records_read),
            records_refused: d.map(|d| d.records_refused),
            sleeps: s.sleeps,
            wakeups: s.wakeups,
        }
    }
}

fn print_totals(s: &Snapshot, rates: Option<&Rates>, as_json: bool) -> std::io::Result<()> {
    if as_json {
        return crate::out::json_line(&Json {
            rates: rates.copied(),
            t: None,
            totals: Totals::of(s),
        });
    }
    // A rate beside a counter only where the two samples saw it move: a
    // counter that stood still has no rate worth a "(0.00/s)".
    let per_s = |r: Option<f64>| match r {
        Some(r) if r > 0.0 => format!(" ({}/s)", si(r)),
        _ => String::new(),
    };
    outln!("producer")?;
    outln!(
        "  records      {}{}",
        s.records_produced,
        per_s(rates.map(|r| r.produced))
    )?;
    outln!(
        "  bytes        {}{}",
        s.bytes_produced,
        match rates {
            Some(r) if r.bytes > 0.0 => format!(" ({:.1} MB/s)", r.bytes / 1e6),
            _ => String::new(),
        }
    )?;
    outln!(
        "  dropped      {}{}",
        s.records_dropped,
        per_s(rates.map(|r| r.dropped))
    )?;
    outln!(
        "  overwritten  {}{}",
        s.records_overwritten,
        per_s(rates.map(|r| r.overwritten))
    )?;
    outln!(
        "  wake-ups     {}{}",
        s.wakeups,
        per_s(rates.map(|r| r.wakeups))
    )?;
    if s.consumer_errors != 0 {
        outln!("  ignored consumer positions {}", s.consumer_errors)?;
    }
    outln!("consumer (as it reports in its page)")?;
    outln!(
        "  records      {}{}",
        s.records_consumed,
        per_s(rates.map(|r| r.consumed))
    )?;
    outln!("  bytes        {}", s.bytes_consumed)?;
    outln!("  lost         {}", s.records_lost)?;
    outln!(
        "  sleeps       {}{}",
        s.sleeps,
        per_s(rates.map(|r| r.sleeps))
    )?;
    outln!(
        "  backlog      {} ({} bytes published, not released)",
        backlog(s.backlog()),
        s.backlog()
    )?;
    if let Some(d) = s.driver {
        outln!("driver")?;
        outln!(
            "  producer     {}",
            if d.producer_running {
                "running"
            } else {
                "stopped"
            }
        )?;
        outln!(
            "  consumer     {}",
            if d.consumer_open { "open" } else { "none" }
        )?;
        outln!(
            "  read()       {} records{}",
            d.records_read,
            per_s(rates.map(|r| r.read))
        )?;
        if d.records_hooked != 0 {
            outln!(
                "  tracepoint   {} records (PRODUCER_HOOK_ONLY)",
                d.records_hooked
            )?;
        }
        if d.records_refused != 0 {
            outln!(
                "  refused      {} records (in-kernel producers: NMI, reset, device gone)",
                d.records_refused
            )?;
        }
    }
    Ok(())
}
