//! `rmemring cat`: records to stdout.
//!
//! From a ring, as its consumer; or, with `-` for the ring, from the byte
//! stream a `read()` of the device returns, on stdin (`cat /dev/rmemring0 |
//! rmemring cat --format jsonl -`).
//!
//! The payloads are read in place: `raw` hands the mapping's own bytes to
//! `writev(2)` (the only copy is the kernel's, into the pipe or file), and
//! the text formats format straight from the mapping. Each batch is
//! released to the producer only after it was written out, so records a
//! closed pipe or Ctrl-C interrupts stay in the ring for the next reader.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{
    self,
    BufWriter,
    IoSlice,
    Read,
    Write, //
};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use rmemring::stream::Records;
use rmemring::{
    Access,
    Backend,
    Batch,
    Consumer,
    Overflow,
    Record,
    Region, //
};
use serde::Serialize;

use crate::signals::{
    self,
    Woken, //
};
use crate::DeviceArg;

/// Stream records to stdout, as their consumer.
///
/// Opens the ring read-write, as its one consumer (a second gets "busy"),
/// resumes where the last consumer stopped, and releases each batch after
/// writing it. Runs until Ctrl-C, COUNT records, or (--drain) an empty ring
/// whose producer has stopped.
///
/// With `-` for DEV it reads instead what `read()` on the device returns,
/// from stdin (say, `cat /dev/rmemring0 | rmemring cat -f jsonl -`): whole
/// records back to back, each header, payload and padding as in the ring;
/// gaps in the sequence show as lost records.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// raw: the payloads back to back, as bytes; hex: a header line and a
    /// hex dump per record; jsonl: one JSON object per record.
    #[arg(long, short, value_enum, default_value_t = Format::Raw)]
    format: Format,
    /// Stop after COUNT records.
    #[arg(long, short = 'n', value_parser = crate::args::parse_count)]
    count: Option<u64>,
    /// Exit once the ring is empty and its producer is not running.
    #[arg(long)]
    drain: bool,
    /// Skip the records already in the ring; show only new ones.
    #[arg(long)]
    skip: bool,
}

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The payload bytes only, back to back.
    Raw,
    /// A header line and a hex dump per record.
    Hex,
    /// One JSON object per record, the payload in hex.
    Jsonl,
}

/// At most this many records per `writev`.
const IOV_BATCH: usize = 1024;

/// Records handed out per batch before their space goes back, so a slow
/// pipe never holds the whole ring.
const BATCH_RECORDS: usize = 4096;

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.ring.device.as_os_str() == "-" {
        if args.drain || args.skip {
            anyhow::bail!("--drain and --skip are for a ring, not for a stream on stdin");
        }
        return from_stream(args, io::stdin().lock());
    }
    let region = Arc::new(Region::open(&args.ring.device, Access::Consume)?);
    let mut consumer = region.consumer()?;
    if args.skip {
        consumer.skip_to_producer()?;
    }
    // SAFETY: Descriptor 1 stays open for the life of the process, and the
    // `ManuallyDrop` never closes it.
    let raw = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut sink = Sink {
        format: args.format,
        text: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        raw,
        lost: 0,
    };
    let overwrite = region.layout().overflow() == Overflow::OverwriteOldest;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut written = 0u64;

    while written < limit && !signals::stop_requested() {
        let want = usize::try_from(limit - written)
            .unwrap_or(usize::MAX)
            .min(BATCH_RECORDS);
        let n = if overwrite {
            sink.copy_batch(&mut consumer, want)?
        } else {
            sink.zero_copy_batch(&mut consumer, want)?
        };
        written += n as u64;
        if n > 0 {
            continue;
        }
        if args.drain && producer_idle(&region)? && consumer.backlog()? == 0 {
            break;
        }
        // With --drain, wake now and then to see whether the producer stopped.
        let timeout = args.drain.then_some(Duration::from_millis(200));
        if !wait(&mut consumer, timeout)? {
            break;
        }
    }
    if sink.lost != 0 {
        eprintln!(
            "rmemring: {} records were lost before this reader saw them (dropped or overwritten \
             by the producer)",
            sink.lost
        );
    }
    Ok(())
}

/// `rmemring cat -`: the records of a `read()` byte stream on `input`,
/// parsed with the protocol's [`Records`] (a chunk that cuts a record in
/// two keeps its start for the next one).
fn from_stream(args: &Args, mut input: impl Read) -> anyhow::Result<()> {
    // SAFETY: As in `run`.
    let raw = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut sink = Sink {
        format: args.format,
        text: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        raw,
        lost: 0,
    };
    let limit = args.count.unwrap_or(u64::MAX);
    let (written, cut) = sink.copy_stream(&mut input, limit)?;
    sink.text.flush()?;
    if cut != 0 {
        eprintln!("rmemring: the input ended {cut} bytes into a record");
    }
    if sink.lost != 0 {
        eprintln!(
            "rmemring: {} records missing from the stream's sequence (dropped or overwritten before \
             they were read), {written} written",
            sink.lost
        );
    }
    Ok(())
}

/// Where records go: `raw` payloads straight to the descriptor, text
/// formats through a buffer.
struct Sink<W, F> {
    format: Format,
    text: W,
    raw: F,
    /// Records missing before the ones written.
    lost: u64,
}

impl<W: Write, F: std::ops::DerefMut<Target = File>> Sink<W, F> {
    /// Reads up to `want` records in place and writes them; returns how many.
    ///
    /// The batch is released only once everything was written: after a
    /// failed write (a closed pipe) its records stay in the ring for the
    /// next reader.
    fn zero_copy_batch(&mut self, consumer: &mut Consumer, want: usize) -> anyhow::Result<usize> {
        let mut batch = consumer.batch()?;
        match self.write_batch(&mut batch, want) {
            // Dropping the batch releases exactly the records written.
            Ok(count) => Ok(count),
            Err(e) => {
                // Not dropped, not released; the process is on its way out.
                std::mem::forget(batch);
                Err(e)
            }
        }
    }

    fn write_batch(&mut self, batch: &mut Batch<'_>, want: usize) -> anyhow::Result<usize> {
        let mut count = 0;
        if self.format == Format::Raw {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(IOV_BATCH);
            for record in batch.iter().take(want) {
                let record = record?;
                self.lost += record.lost_before;
                slices.push(IoSlice::new(record.payload));
                count += 1;
                if slices.len() == IOV_BATCH {
                    write_all_vectored(&mut self.raw, &mut slices)?;
                    slices.clear();
                }
            }
            write_all_vectored(&mut self.raw, &mut slices)?;
        } else {
            let mut line = String::new();
            for record in batch.iter().take(want) {
                let record = record?;
                self.lost += record.lost_before;
                write_text(self.format, &record, &mut line, &mut self.text)?;
                count += 1;
            }
            self.text.flush()?;
        }
        Ok(count)
    }

    /// Writes one record in the sink's format (`line` is scratch space for
    /// the text formats), counting the records lost before it.
    fn write_record(&mut self, record: &Record<'_>, line: &mut String) -> io::Result<()> {
        self.lost += record.lost_before;
        if self.format == Format::Raw {
            self.raw.write_all(record.payload)
        } else {
            write_text(self.format, record, line, &mut self.text)
        }
    }

    /// Overwrite mode: each record is copied first (the producer may lap
    /// the reader), then written.
    fn copy_batch(&mut self, consumer: &mut Consumer, want: usize) -> anyhow::Result<usize> {
        let mut line = String::new();
        let mut count = 0;
        while count < want {
            let Some(record) = consumer.read_copy()? else {
                break;
            };
            self.write_record(&record, &mut line)?;
            count += 1;
        }
        self.text.flush()?;
        Ok(count)
    }
}

impl<W: Write, F: std::ops::DerefMut<Target = File>> Sink<W, F> {
    /// Writes the records of the `read()` stream on `input`, at most
    /// `limit`; returns how many, and how many bytes of a record the input
    /// cut off at its end.
    fn copy_stream(&mut self, input: &mut impl Read, limit: u64) -> anyhow::Result<(u64, usize)> {
        let mut pending: Vec<u8> = Vec::with_capacity(1 << 17);
        let mut chunk = vec![0u8; 1 << 16];
        let mut next_seq = None;
        let mut written = 0u64;
        let mut line = String::new();
        while written < limit {
            let n = match input.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context("reading stdin")),
            };
            pending.extend_from_slice(&chunk[..n]);
            let mut records = Records::new(&pending);
            for record in records.by_ref() {
                let r = record.context("stdin is not the byte stream read() returns")?;
                let seq = r.header.seq;
                // A sequence that goes back is a new ring (a reset), not a loss.
                let gap = next_seq.map_or(0, |next: u64| seq.wrapping_sub(next));
                let record = Record {
                    payload: r.payload,
                    seq,
                    timestamp_ns: r.header.timestamp_ns,
                    tag: r.header.tag,
                    lost_before: if gap > i64::MAX as u64 { 0 } else { gap },
                };
                next_seq = Some(seq.wrapping_add(1));
                self.write_record(&record, &mut line)?;
                written += 1;
                if written == limit {
                    break;
                }
            }
            let used = records.offset();
            pending.drain(..used);
            // The input may pause for ever (`cat /dev/rmemring0` on an
            // empty ring): what came so far goes out now, not when a
            // buffer fills.
            self.text.flush()?;
        }
        Ok((written, pending.len()))
    }
}

fn write_text(
    format: Format,
    record: &Record<'_>,
    line: &mut String,
    out: &mut impl Write,
) -> io::Result<()> {
    line.clear();
    match format {
        Format::Hex => hex_dump(record, line),
        Format::Jsonl => {
            let mut hex = String::with_capacity(record.payload.len() * 2);
            for b in record.payload {
                let _ = write!(hex, "{b:02x}");
            }
            let (event, fields) = decode(record.tag, record.payload).unzip();
            let value = JsonRecord {
                event,
                fields,
                len: record.payload.len(),
                lost_before: record.lost_before,
                payload: hex,
                seq: record.seq,
                tag: record.tag,
                timestamp_ns: record.timestamp_ns,
            };
            let value = serde_json::to_string(&value).map_err(io::Error::other)?;
            let _ = writeln!(line, "{value}");
        }
        Format::Raw => {}
    }
    out.write_all(line.as_bytes())
}

/// A line of `cat --format jsonl` (fields in alphabetical order, see
/// [`json_line`](crate::out::json_line)): the payload in hex, and for the
/// record kinds rmemring's own producers write, the event's name and its
/// fields.
#[derive(Serialize)]
struct JsonRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Fields>,
    len: usize,
    lost_before: u64,
    payload: String,
    seq: u64,
    tag: u16,
    timestamp_ns: u64,
}

/// The decoded payload of one of rmemring's own record kinds.
#[derive(Serialize)]
#[serde(untagged)]
enum Fields {
    SchedSwitch {
        cpu: u32,
        next_comm: String,
        next_pid: u32,
        prev_comm: String,
        prev_pid: u32,
        prev_state: u32,
    },
    TimerSample {
        count: u64,
        cpu: u32,
        lateness_ns: u64,
    },
}

/// The fields of the payload of the record kinds rmemring's own kernel
/// producers write (`rmemring::events`), by tag: the event's name and its
/// fields, or `None` for other tags (and for a payload of the wrong size).
fn decode(tag: u16, payload: &[u8]) -> Option<(&'static str, Fields)> {
    use rmemring::events::{
        comm_str,
        SchedSwitch,
        TimerSample,
        TAG_SCHED_SWITCH,
        TAG_TIMER_SAMPLE, //
    };
    match tag {
        TAG_SCHED_SWITCH => {
            let e: SchedSwitch = bytemuck::try_pod_read_unaligned(payload).ok()?;
            Some((
                "sched_switch",
                Fields::SchedSwitch {
                    cpu: e.cpu,
                    next_comm: comm_str(&e.next_comm).to_owned(),
                    next_pid: e.next_pid,
                    prev_comm: comm_str(&e.prev_comm).to_owned(),
                    prev_pid: e.prev_pid,
                    prev_state: e.prev_state,
                },
            ))
        }
        TAG_TIMER_SAMPLE => {
            let e: TimerSample = bytemuck::try_pod_read_unaligned(payload).ok()?;
            Some((
                "timer_sample",
                Fields::TimerSample {
                    count: e.count,
                    cpu: e.cpu,
                    lateness_ns: e.lateness_ns,
                },
            ))
        }
        _ => None,
    }
}

/// `hexdump -C` style, after a header line.
fn hex_dump(record: &Record<'_>, line: &mut String) {
    let _ = write!(
        line,
        "seq {} len {} tag {} timestamp {} ns",
        record.seq,
        record.payload.len(),
        record.tag,
        record.timestamp_ns
    );
    if record.lost_before != 0 {
        let _ = write!(line, " ({} lost before)", record.lost_before);
    }
    if let Some((event, fields)) = decode(record.tag, record.payload) {
        let fields = serde_json::to_string(&fields).unwrap_or_default();
        let _ = write!(line, " {event} {fields}");
    }
    line.push('\n');
    for (i, chunk) in record.payload.chunks(16).enumerate() {
        let _ = write!(line, "  {:08x} ", i * 16);
        for j in 0..16 {
            if j == 8 {
                line.push(' ');
            }
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(line, " {b:02x}");
                }
                None => line.push_str("   "),
            }
        }
        line.push_str("  |");
        line.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        line.push_str("|\n");
    }
}

/// Writes every byte of `slices` with `writev`.
fn write_all_vectored(out: &mut File, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut rest = slices;
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether nothing more is coming: the device's producer is stopped (a
/// ring file has no producer we could ask about).
fn producer_idle(region: &Region) -> anyhow::Result<bool> {
    if region.backend() != Backend::Device {
        return Ok(true);
    }
    let stats = region.stats().context("RMEMRING_IOC_STATS")?;
    Ok(stats.producer_running == 0)
}

/// Sleeps until records arrive (or, with `timeout`, a while); `false` on
/// a stop signal.
///
/// On the device it sleeps in `poll` beside the signal pipe, so Ctrl-C
/// wakes it at once and an idle reader costs no CPU. Ring files wake
/// through a futex the signal pipe cannot join, so it naps in steps there.
fn wait(consumer: &mut Consumer, timeout: Option<Duration>) -> anyhow::Result<bool> {
    if consumer.region().backend() != Backend::Device {
        consumer.wait(Some(Duration::from_millis(200)))?;
        return Ok(!signals::stop_requested());
    }
    if !consumer.arm_wakeup() {
        return Ok(true);
    }
    let woken = signals::sleep_until(Some(consumer.region().fd()), timeout);
    consumer.disarm_wakeup();
    Ok(woken? != Woken::Stop)
}

#[cfg(test)]
mod tests {
    use std::io::{
        Read,
        Seek, //
    };

    use rmemring::CreateOptions;

    use super::*;

    /// A ring file holding three records, `aaaaa`, `bbbbb`, `ccccc`.
    fn ring_file(dir: &std::path::Path) -> (Arc<Region>, Consumer) {
        let region = Region::create_file(dir.join("ring"), CreateOptions::default()).unwrap();
        let region = Arc::new(region);
        let mut producer = region.producer().unwrap();
        for i in 0u8..3 {
            producer.push(&[b'a' + i; 5]).unwrap();
        }
        producer.publish();
        let consumer = region.consumer().unwrap();
        (region, consumer)
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rmemring-cat-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sink(format: Format, raw: &std::path::Path) -> Sink<Vec<u8>, Box<File>> {
        let raw = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(raw)
            .unwrap();
        Sink {
            format,
            text: Vec::new(),
            raw: Box::new(raw),
            lost: 0,
        }
    }

    #[test]
    fn raw_writes_the_payloads_back_to_back() {
        let dir = scratch("raw");
        let (_region, mut consumer) = ring_file(&dir);
        let mut sink = sink(Format::Raw, &dir.join("raw"));
        assert_eq!(sink.zero_copy_batch(&mut consumer, 2).unwrap(), 2);
        assert_eq!(sink.zero_copy_batch(&mut consumer, 9).unwrap(), 1);
        assert_eq!(sink.zero_copy_batch(&mut consumer, 9).unwrap(), 0);
        let mut bytes = Vec::new();
        sink.raw.rewind().unwrap();
        sink.raw.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"aaaaabbbbbccccc");
        assert_eq!(consumer.stats().records, 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn kernel_events_are_decoded_by_tag() {
        use rmemring::events::{
            SchedSwitch,
            TAG_SCHED_SWITCH, //
        };
        let mut event = SchedSwitch {
            cpu: 1,
            prev_pid: 42,
            prev_state: 1,
            next_pid: 0,
            ..Default::default()
        };
        event.prev_comm[..2].copy_from_slice(b"sh");
        event.next_comm[..9].copy_from_slice(b"swapper/1");
        let (name, fields) = decode(TAG_SCHED_SWITCH, bytemuck::bytes_of(&event)).unwrap();
        assert_eq!(name, "sched_switch");
        let fields = serde_json::to_value(fields).unwrap();
        assert_eq!(fields["prev_comm"], "sh");
        assert_eq!(fields["next_comm"], "swapper/1");
        assert_eq!(fields["prev_pid"], 42);
        // A payload of another size, or another tag, is left alone.
        assert!(decode(TAG_SCHED_SWITCH, b"short").is_none());
        assert!(decode(0x100, bytemuck::bytes_of(&event)).is_none());
    }

    #[test]
    fn text_formats() {
        let dir = scratch("text");
        let (_region, mut consumer) = ring_file(&dir);
        let mut sink = sink(Format::Jsonl, &dir.join("unused"));
        sink.zero_copy_batch(&mut consumer, 1).unwrap();
        sink.format = Format::Hex;
        sink.zero_copy_batch(&mut consumer, 1).unwrap();
        let text = String::from_utf8(sink.text).unwrap();
        let mut lines = text.lines();
        let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(json["seq"], 0);
        assert_eq!(json["len"], 5);
        assert_eq!(json["payload"], "6161616161");
        assert!(lines
            .next()
            .unwrap()
            .starts_with("seq 1 len 5 tag 0 timestamp "));
        assert_eq!(
            lines.next().unwrap(),
            "  00000000  62 62 62 62 62                                    |bbbbb|"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A reader that hands out at most 7 bytes at a time, so records are
    /// cut everywhere.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_stream_on_stdin_is_parsed_across_cuts_and_gaps_are_lost_records() {
        let mut stream = Vec::new();
        for (seq, payload) in [(4u64, &b"abc"[..]), (5, b"defghijkl"), (9, b"")] {
            let header = rmemring::layout::RecordHeader {
                len: payload.len() as u32,
                kind: rmemring::layout::KIND_DATA,
                tag: 3,
                seq,
                timestamp_ns: 100 + seq,
            };
            stream.extend_from_slice(bytemuck::bytes_of(&header));
            stream.extend_from_slice(payload);
            stream.resize(stream.len().next_multiple_of(8), 0);
        }
        stream.extend_from_slice(&[1, 0, 0]); // a record cut short
        let dir = scratch("stream");
        let mut sink = sink(Format::Jsonl, &dir.join("unused"));
        let (written, cut) = sink.copy_stream(&mut Trickle(&stream), u64::MAX).unwrap();
        assert_eq!((written, cut, sink.lost), (3, 3, 3));
        let text = String::from_utf8(sink.text).unwrap();
        let seqs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        assert_eq!(seqs[1]["payload"], "6465666768696a6b6c");
        assert_eq!(seqs[2]["lost_before"], 3);
        assert_eq!(seqs[2]["seq"], 9);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A record's text is out (flushed) before the input's next read: the
    /// input may never come (`cat /dev/rmemring0` on an empty ring).
    #[test]
    fn each_record_of_a_stream_is_flushed_before_the_next_read() {
        struct Pausing {
            stream: Vec<u8>,
            at: usize,
            shown: std::rc::Rc<std::cell::Cell<usize>>,
        }
        impl Read for Pausing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                // One whole record per read; each read after the first
                // finds the previous record's line flushed.
                if self.at > 0 && self.shown.get() < self.at / 32 {
                    return Err(io::Error::other("the previous record was not flushed"));
                }
                let n = buf.len().min(32).min(self.stream.len() - self.at);
                buf[..n].copy_from_slice(&self.stream[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        struct Lines(std::rc::Rc<std::cell::Cell<usize>>, Vec<u8>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0.set(self.1.iter().filter(|&&b| b == b'\n').count());
                Ok(())
            }
        }
        let mut stream = Vec::new();
        for seq in 0..3u64 {
            let header = rmemring::layout::RecordHeader {
                len: 8,
                kind: rmemring::layout::KIND_DATA,
                tag: 0,
                seq,
                timestamp_ns: seq,
            };
            stream.extend_from_slice(bytemuck::bytes_of(&header));
            stream.extend_from_slice(&seq.to_le_bytes());
        }
        let shown = std::rc::Rc::new(std::cell::Cell::new(0));
        let dir = scratch("flush");
        let raw = File::create(dir.join("unused")).unwrap();
        let mut sink = Sink {
            format: Format::Jsonl,
            text: Lines(shown.clone(), Vec::new()),
            raw: Box::new(raw),
            lost: 0,
        };
        let mut input = Pausing {
            stream,
            at: 0,
            shown: shown.clone(),
        };
        let (written, cut) = sink.copy_stream(&mut input, u64::MAX).unwrap();
        assert_eq!((written, cut, shown.get()), (3, 0, 3));
        let _ = std::fs::remove_dir_all(dir);
    }
}
