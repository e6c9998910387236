//! The device as standard Unix tools meet it: busybox `cat`, `dd`, `head`
//! and `hexdump` open it read-only, and their first `read()` makes them
//! the consumer (docs/protocol.md, section 10). What each tool received is
//! parsed with the protocol's `Records` and held to the kernel producer's
//! pattern: every record whole and intact, sequence numbers consecutive.

use std::io;
use std::process::{
    Child,
    Command,
    Output,
    Stdio, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    ensure,
    Context, //
};
use rmemring::uapi::ProducerConfig;
use rmemring::{
    Access,
    Device,
    Region, //
};
use rmemring_proto::layout::record_stride;
use rmemring_proto::modes::Overflow;
use rmemring_proto::pattern;
use rmemring_proto::roles::Role;
use rmemring_proto::stream::Records;

use crate::support::fd::open_owned_as;
use crate::support::ring::open_fresh;
use crate::support::{
    Env,
    Report, //
};

/// How long a tool may take to receive what the producer wrote.
const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn tools(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    report.check(
        "tools: dd if=/dev/rmemring0 bs=64k count=1 gets whole records, intact and consecutive",
        dd_one_block(env),
    );
    report.check(
        "tools: cat gets every record of a run of 1 000, intact and consecutive",
        cat_whole_run(env),
    );
    report.check(
        "tools: while cat reads, a consumer's open and a second cat get EBUSY; after it, the consumer opens",
        cat_holds_the_consumer_role(env),
    );
    report.check(
        "tools: head -c gets exactly the records it asked for (1 000-byte payloads)",
        head_exact(env),
    );
    report.check(
        "tools: hexdump shows whole records (parsed back from its hex)",
        hexdump(env),
    );
    report.check(
        "tools: a record larger than dd's block fails the read with EINVAL; a larger block gets it",
        record_larger_than_block(env),
    );
    Ok(())
}

/// A fresh, empty drop-new ring whose kernel producer has written `records`
/// records of `len` bytes; the returned controller (`O_WRONLY`, so not the
/// consumer) keeps the producer's run alive while it is open.
fn produced(env: &Env, len: u32, records: u64) -> anyhow::Result<Device> {
    // A consumer resets the ring, and closes again: the tool must find the
    // consumer's place free.
    drop(open_fresh(env, Overflow::DropNew)?);
    let controller = Device::from_fd(open_owned_as(&env.device, Role::Controller)?)?;
    let config = ProducerConfig {
        min_len: len,
        max_len: len,
        count: records,
        ..Default::default()
    };
    controller.start(&config)?;
    Ok(controller)
}

/// Checks a tool's bytes: whole records, each the pattern of its sequence
/// number with payloads of `len` bytes, numbered consecutively. Returns
/// how many.
fn verify(bytes: &[u8], len: u32) -> anyhow::Result<u64> {
    let mut records = Records::new(bytes);
    let mut next = None;
    let mut count = 0u64;
    for record in records.by_ref() {
        let record = record?;
        let seq = record.header.seq;
        ensure!(
            next.is_none_or(|next| next == seq),
            "record {count}: seq {seq}, expected {next:?}"
        );
        ensure!(
            record.payload.len() == len as usize && pattern::verify(seq, record.payload),
            "record {count} (seq {seq}): {} bytes, not the pattern",
            record.payload.len()
        );
        next = Some(seq + 1);
        count += 1;
    }
    ensure!(
        records.remainder().is_empty(),
        "{} bytes after the last whole record (of {})",
        records.remainder().len(),
        bytes.len()
    );
    Ok(count)
}

/// Runs `command` through the guest's shell to completion, within
/// [`PATIENCE`]. Its output is collected while it runs (a tool writing more
/// than a pipe holds would otherwise wait for us forever).
fn run(command: &str) -> anyhow::Result<Output> {
    let child = Command::new("sh")
        .args(["-c", command])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let (exited, waiting) = std::sync::mpsc::channel::<()>();
    // Kills the shell (which runs a lone command in its own place) once
    // its patience is out. Only `wait_with_output` reaps it, and it tells
    // the watchdog at once: a kill can miss only a tool that ended in the
    // very instant its patience ran out.
    let watchdog = std::thread::spawn(move || {
        let late = waiting.recv_timeout(PATIENCE).is_err();
        if late {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        late
    });
    let output = child.wait_with_output();
    let _ = exited.send(());
    let late = watchdog.join().unwrap_or(true);
    let output = output?;
    ensure!(
        !late,
        "{command:?} still ran after {PATIENCE:?}: stdout {} bytes, stderr {:?}",
        output.stdout.len(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

fn succeeded(command: &str) -> anyhow::Result<Vec<u8>> {
    let out = run(command)?;
    ensure!(
        out.status.success(),
        "{command:?}: {}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The bar of the issue that made observers readers: one 64 KiB `dd`
/// block of 64-byte records.
fn dd_one_block(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 64, 1000)?;
    std::thread::sleep(Duration::from_millis(200));
    let bytes = succeeded(&format!("dd if={} bs=64k count=1 2>/dev/null", env.device))?;
    let count = verify(&bytes, 64)?;
    // One read() returns every whole record that fits the block.
    let fit = (64 * 1024 / record_stride(64)).min(1000);
    ensure!(count == fit, "{count} records, expected {fit}");
    println!(
        "# dd bs=64k count=1: {} bytes, {count} records",
        bytes.len()
    );
    Ok(())
}

/// `cat` streams until killed; wait for `bytes` in its output file.
fn cat_until(device: &str, out: &str, bytes: u64) -> anyhow::Result<(Child, Vec<u8>)> {
    let file = std::fs::File::create(out)?;
    let mut cat = Command::new("cat")
        .arg(device)
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    loop {
        let have = std::fs::metadata(out)?.len();
        if have >= bytes {
            break;
        }
        if let Some(status) = cat.try_wait()? {
            let mut err = String::new();
            io::Read::read_to_string(&mut cat.stderr.take().context("stderr")?, &mut err)?;
            bail!("cat exited ({status}) after {have} of {bytes} bytes: {err:?}");
        }
        if start.elapsed() > PATIENCE {
            let _ = cat.kill();
            bail!("cat had {have} of {bytes} bytes after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((cat, std::fs::read(out)?))
}

fn cat_whole_run(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 64, 1000)?;
    let want = 1000 * record_stride(64);
    let (mut cat, bytes) = cat_until(&env.device, "/tmp/tools-cat.out", want)?;
    cat.kill()?;
    cat.wait()?;
    ensure!(
        bytes.len() as u64 == want,
        "{} bytes, expected {want}",
        bytes.len()
    );
    let count = verify(&bytes, 64)?;
    ensure!(count == 1000, "{count} records");
    Ok(())
}

fn cat_holds_the_consumer_role(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 64, 100)?;
    let (mut cat, _) = cat_until(&env.device, "/tmp/tools-cat.out", 100 * record_stride(64))?;
    let consumer = Region::open(&env.device, Access::Consume).map(drop);
    let second = run(&format!("cat {} >/dev/null", env.device));
    cat.kill()?;
    cat.wait()?;
    ensure!(
        matches!(consumer, Err(rmemring::Error::Busy { .. })),
        "a consumer's open while cat read: {consumer:?}"
    );
    let second = second?;
    let err = String::from_utf8_lossy(&second.stderr);
    ensure!(
        !second.status.success() && err.contains("busy"),
        "a second cat: {}, stderr {err:?}",
        second.status
    );
    Region::open(&env.device, Access::Consume)
        .map(drop)
        .context("a consumer's open once cat was gone")
}

fn head_exact(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 1000, 500)?;
    let want = 500 * record_stride(1000);
    let bytes = succeeded(&format!("head -c {want} {}", env.device))?;
    ensure!(
        bytes.len() as u64 == want,
        "{} bytes, expected {want}",
        bytes.len()
    );
    let count = verify(&bytes, 1000)?;
    ensure!(count == 500, "{count} records");
    Ok(())
}

fn hexdump(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 64, 1000)?;
    let want = 100 * record_stride(64);
    let hex = succeeded(&format!(
        "hexdump -v -n {want} -e '1/1 \"%02x\"' {}",
        env.device
    ))?;
    let bytes = hex
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .context("not hex")
        })
        .collect::<anyhow::Result<Vec<u8>>>()?;
    ensure!(
        bytes.len() as u64 == want,
        "{} bytes, expected {want}",
        bytes.len()
    );
    let count = verify(&bytes, 64)?;
    ensure!(count == 100, "{count} records");
    Ok(())
}

/// docs/protocol.md: a `read()` whose buffer cannot hold the next record
/// fails with `EINVAL` (a record is never split); `dd bs=4k` reads
/// payloads up to 4 072 bytes, and 8 000-byte ones need a larger block.
fn record_larger_than_block(env: &Env) -> anyhow::Result<()> {
    let _controller = produced(env, 8000, 10)?;
    std::thread::sleep(Duration::from_millis(200));
    let small = run(&format!("dd if={} bs=4k count=1", env.device))?;
    let err = String::from_utf8_lossy(&small.stderr);
    ensure!(
        !small.status.success() && small.stdout.is_empty() && err.contains("Invalid argument"),
        "dd bs=4k: {}, {} bytes, stderr {err:?}",
        small.status,
        small.stdout.len()
    );
    let bytes = succeeded(&format!("dd if={} bs=64k count=1 2>/dev/null", env.device))?;
    let count = verify(&bytes, 8000)?;
    ensure!(
        count == 8,
        "{count} records in one 64 KiB block, expected 8"
    );
    Ok(())
}
