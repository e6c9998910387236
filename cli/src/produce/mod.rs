//! `rmemring produce`: run the driver's kernel producer, or on a ring file
//! the crate's user-space one (`file`).
//!
//! On a device it opens the device write-only, the driver's *controller* role: it may
//! start and stop the producer but is not the consumer, so `rmemring cat`
//! (or any consumer) can read beside it. The driver stops a producer when
//! the file that started it is closed, so this command stays in the
//! foreground until the producer has done COUNT records or Ctrl-C, and then
//! stops it.

use std::fs::{
    self,
    File,
    OpenOptions, //
};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{
    Duration,
    Instant, //
};

use clap::ValueEnum;
use indicatif::{
    ProgressBar,
    ProgressStyle, //
};
use rmemring::uapi::{
    ProducerConfig,
    RingStats,
    PATTERN_NONE,
    PATTERN_SEQ,
    PRODUCER_HOOK_ONLY,
    PRODUCER_WAIT, //
};
use rmemring::Device;

use crate::args::{
    parse_count,
    parse_size_range,
    si, //
};
use crate::fail;
use crate::signals;
use crate::DeviceArg;

pub(crate) mod file;

/// Run the kernel producer (or, on a ring file, a user-space one) until
/// COUNT records are done or Ctrl-C.
///
/// Opens the device write-only, as a controller: a consumer (`rmemring
/// cat`, or your program) reads beside it. The producer writes records
/// whose lengths and bytes derive from their sequence numbers, so a
/// consumer can verify them. The driver stops the producer when this
/// command exits; Ctrl-C stops it early.
///
/// Without a consumer a drop-new ring fills up and the producer drops (and
/// counts) further records, unless --wait makes it wait for room.
///
/// On a ring file (`rmemring create`) this command is the producer: it
/// writes the same records as the kernel producer, or with --stdin one
/// record per input line, through the crate's user-space `Producer`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// Payload size in bytes, or a range MIN..MAX (like 64, 4K or 8..1K);
    /// lengths in a range are spread by sequence number. Required on a
    /// device; 64 on a ring file.
    #[arg(long, short, value_parser = parse_size_range)]
    size: Option<(u32, u32)>,
    /// Records per second (like 1000 or 2.5M); 0 is as fast as possible.
    #[arg(long, short, default_value = "0", value_parser = parse_count)]
    rate: u64,
    /// Records to produce, written or dropped (like 1M); 0 runs until Ctrl-C.
    #[arg(long, short = 'n', default_value = "0", value_parser = parse_count)]
    count: u64,
    /// Wait for the consumer when the ring is full instead of dropping.
    #[arg(long)]
    wait: bool,
    /// What goes into the payload.
    #[arg(long, value_enum, default_value_t = Pattern::Seq)]
    pattern: Pattern,
    /// Records per publication (0 means the default, 64, as for the
    /// driver).
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch: u32,
    /// Emit records only through the driver's tracepoint, not into the ring
    /// (to feed a BPF program).
    #[arg(long, conflicts_with = "wait")]
    hook_only: bool,
    /// Stop the running producer (whoever started it) and exit.
    #[arg(long, conflicts_with_all = ["size", "count", "rate", "wait", "hook_only"])]
    stop: bool,
    /// Ring files only: write one record per line of stdin (the line
    /// without its newline) until the input ends, instead of the pattern.
    #[arg(long, conflicts_with_all = ["size", "pattern", "hook_only", "stop"])]
    stdin: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as one JSON line instead of text.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// The producer's payload pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// Every byte derived from the sequence number (verifiable).
    Seq,
    /// Only the first word written, as if the payload came by DMA.
    None,
}

/// Records per publication by default, and when `--batch` is 0: the
/// driver's default (`DEFAULT_BATCH` in `driver/producer.rs`).
const DEFAULT_BATCH: u32 = 64;

/// How often the counters are read.
const TICK: Duration = Duration::from_millis(100);

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let path = &args.ring.device;
    if fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return file::run(args);
    }
    let file = open_controller(path)?;
    if args.stdin {
        return Err(fail::usage(format!(
            "{}: --stdin needs a ring file (`rmemring create`); a device's producer is the kernel",
            path.display()
        )));
    }
    let device = Device::from_fd(file.into())?;
    if args.stop {
        device
            .stop()
            .map_err(|e| start_stop_error(path, "stopping the producer", e))?;
        if !args.quiet {
            outln!("{}: producer stopped", path.display())?;
        }
        return Ok(());
    }
    let Some((min_len, max_len)) = args.size else {
        return Err(fail::usage("--size is required for a ring device"));
    };
    let info = device.info()?;
    if max_len > info.max_payload {
        return Err(too_large(max_len, info.max_payload));
    }
    let mut flags = 0;
    if args.wait {
        flags |= PRODUCER_WAIT;
    }
    if args.hook_only {
        flags |= PRODUCER_HOOK_ONLY;
    }
    let config = ProducerConfig {
        min_len,
        max_len,
        count: args.count,
        rate: args.rate,
        pattern: match args.pattern {
            Pattern::Seq => PATTERN_SEQ,
            Pattern::None => PATTERN_NONE,
        },
        flags,
        batch: args.batch,
        ..Default::default()
    };
    let before = device.stats()?;
    let start = Instant::now();
    device
        .start(&config)
        .map_err(|e| start_stop_error(path, "starting the producer", e))?;

    let bar = progress(args);
    let mut now = before;
    let interrupted = loop {
        if signals::pause(TICK)? {
            break true;
        }
        now = device.stats()?;
        show(
            &bar,
            done(&before, &now, args.hook_only),
            now.records_dropped - before.records_dropped,
            start,
        );
        if now.producer_running == 0 {
            break false;
        }
    };
    if interrupted {
        device
            .stop()
            .map_err(|e| start_stop_error(path, "stopping the producer", e))?;
        now = device.stats()?;
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    if !args.quiet {
        summary(&before, &now, elapsed, args, interrupted)?;
    }
    Ok(())
}

/// `--size` beyond what one record of the ring can hold.
fn too_large(max_len: u32, max_payload: u32) -> anyhow::Error {
    fail::usage(format!(
        "--size {max_len} exceeds the ring's largest payload, {max_payload} bytes"
    ))
}

/// Opens the device write-only (and, as std opens every file, close-on-exec):
/// the controller role.
fn open_controller(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| fail::open_error(path, e))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_char_device() {
        return Err(fail::usage(format!(
            "{}: neither a ring device nor a ring file (`rmemring create` makes one)",
            path.display()
        )));
    }
    Ok(file)
}

/// Records written (or hooked) or dropped since `before`.
fn done(before: &RingStats, now: &RingStats, hook_only: bool) -> u64 {
    if hook_only {
        now.records_hooked - before.records_hooked
    } else {
        (now.records_produced - before.records_produced)
            + (now.records_dropped - before.records_dropped)
    }
}

fn start_stop_error(path: &Path, what: &str, e: rmemring::Error) -> anyhow::Error {
    let shown = path.display();
    match e.raw_os_error() {
        Some(libc::EBUSY) => fail::with_status(
            fail::BUSY,
            format!(
                "{shown}: {what}: the producer is already running; stop it with \
                 `rmemring produce {shown} --stop`"
            ),
        ),
        Some(libc::EPERM) => fail::with_status(
            fail::NOPERM,
            format!(
                "{shown}: {what}: not permitted; this driver lets only its consumer start and \
                 stop the producer (a driver without the write-only controller role)"
            ),
        ),
        Some(libc::EINVAL) => fail::usage(format!(
            "{shown}: {what}: the driver refused the configuration (EINVAL): sizes above the \
             ring's maximum, a rate above 10^9/s, --wait on an overwrite ring, or a batch above \
             65536"
        )),
        _ => anyhow::Error::new(e).context(what.to_owned()),
    }
}

fn progress(args: &Args) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let (bar, template) = if args.count != 0 {
        (
            ProgressBar::new(args.count),
            "{spinner} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} records, {msg}",
        )
    } else {
        (
            ProgressBar::no_length(),
            "{spinner} {elapsed_precise} {human_pos} records, {msg} (Ctrl-C stops)",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The progress so far: `done` records written or dropped since `start`,
/// `dropped` of them dropped.
fn show(bar: &ProgressBar, done: u64, dropped: u64, start: Instant) {
    bar.set_position(done);
    bar.set_message(format!(
        "{}/s, dropped {dropped}",
        si(done as f64 / start.elapsed().as_secs_f64())
    ));
}

fn summary(
    before: &RingStats,
    now: &RingStats,
    elapsed: Duration,
    args: &Args,
    stopped: bool,
) -> io::Result<()> {
    if args.hook_only {
        let secs = elapsed.as_secs_f64();
        let hooked = now.records_hooked - before.records_hooked;
        if args.json {
            return crate::out::json_line(&HookedJson {
                elapsed_ns: duration_ns(elapsed),
                hooked,
                stopped,
            });
        }
        let why = if stopped { " (stopped)" } else { "" };
        return outln!(
            "{hooked} records through the tracepoint in {secs:.2} s ({}/s){why}",
            si(hooked as f64 / secs)
        );
    }
    report(
        Totals {
            records: now.records_produced - before.records_produced,
            bytes: now.bytes_produced - before.bytes_produced,
            dropped: now.records_dropped - before.records_dropped,
        },
        elapsed,
        stopped,
        args.json,
    )
}

/// What a run put into the ring.
struct Totals {
    records: u64,
    /// Payload bytes.
    bytes: u64,
    dropped: u64,
}

/// `produce --json`'s line after a run that wrote into the ring (keys in
/// alphabetical order, as every JSON line of the command).
#[derive(serde::Serialize)]
struct TotalsJson {
    bytes: u64,
    dropped: u64,
    elapsed_ns: u64,
    records: u64,
    stopped: bool,
}

/// `produce --hook-only --json`'s line.
#[derive(serde::Serialize)]
struct HookedJson {
    elapsed_ns: u64,
    hooked: u64,
    stopped: bool,
}

fn duration_ns(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// The summary line of a run that wrote into the ring.
fn report(totals: Totals, elapsed: Duration, stopped: bool, json: bool) -> io::Result<()> {
    if json {
        return crate::out::json_line(&TotalsJson {
            bytes: totals.bytes,
            dropped: totals.dropped,
            elapsed_ns: duration_ns(elapsed),
            records: totals.records,
            stopped,
        });
    }
    let Totals {
        records,
        bytes,
        dropped,
    } = totals;
    let secs = elapsed.as_secs_f64();
    let why = if stopped { " (stopped)" } else { "" };
    outln!(
        "produced {records} records, {bytes} bytes in {secs:.2} s ({} records/s, {:.1} MB/s); \
         dropped {dropped}{why}",
        si(records as f64 / secs),
        bytes as f64 / secs / 1e6
    )
}
