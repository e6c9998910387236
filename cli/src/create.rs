//! `rmemring create`: a ring in a file, to try the other subcommands (and
//! the crate) on any Linux machine, without the driver.

use std::fs::{
    self,
    OpenOptions, //
};
use std::io;
use std::path::{
    Path,
    PathBuf, //
};

use rmemring::{
    CreateOptions,
    Overflow,
    Region, //
};
use serde::Serialize;

use crate::args::parse_size;
use crate::fail;
use crate::info::print_layout;

/// Create a ring file, for trying rmemring without a kernel.
///
/// The file holds a whole ring: control page, consumer page and data area.
/// `rmemring produce FILE` then writes records into it with the
/// user-space producer, and `cat`, `stat` and `info` read it as they read
/// a device; so can any program using the crate (`Region::open`).
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The ring file to create.
    #[arg(value_name = "FILE")]
    path: PathBuf,
    /// Bytes in the data area: a power of two from 4K to 2G (like 64K, 1M
    /// or 16M). The file is two pages larger.
    #[arg(long, short, value_parser = parse_size)]
    size: u32,
    /// Overwrite the oldest records when the ring is full (a flight
    /// recorder), instead of dropping new ones.
    #[arg(long)]
    overwrite: bool,
    /// Replace the file if it exists (a regular file only). Stop whoever
    /// has it mapped first: a ring truncated under a reader makes it fault.
    #[arg(long)]
    force: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let path = &args.path;
    let overflow = if args.overwrite {
        Overflow::OverwriteOldest
    } else {
        Overflow::DropNew
    };
    let options = CreateOptions::new(args.size.into()).overflow(overflow);
    let region = if args.force {
        refuse_special(path)?;
        Region::create_file(path, options)?
    } else {
        claim(path)?;
        // A ring that cannot be made (a size that is no power of two)
        // leaves no empty file behind: the file is ours, made just now.
        Region::create_file(path, options).inspect_err(|_| {
            let _ = fs::remove_file(path);
        })?
    };
    let layout = *region.layout();
    if args.json {
        crate::out::json_line(&Json {
            backend: "file",
            data_size: layout.data_size,
            max_payload: layout.max_payload,
            overflow: layout.overflow(),
            page_size: layout.page_size,
            path,
            region_size: layout.region_size,
        })?;
        return Ok(());
    }
    outln!("ring          {} (ring file, created)", path.display())?;
    print_layout(&layout, "no physical address")?;
    Ok(())
}

/// `rmemring create --json` (fields in alphabetical order, see
/// [`json_line`](crate::out::json_line)).
#[derive(Serialize)]
struct Json<'a> {
    backend: &'static str,
    data_size: u64,
    max_payload: u32,
    overflow: Overflow,
    page_size: u32,
    path: &'a Path,
    region_size: u64,
}

/// Creates `path`, empty, failing if anything is there: the check and the
/// creation are one step (`O_EXCL`), so no file appearing meanwhile is
/// truncated.
fn claim(path: &Path) -> anyhow::Result<()> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(fail::with_status(
            fail::CANTCREAT,
            format!(
                "{}: the file exists; --force replaces it (stop whoever has it mapped first)",
                path.display()
            ),
        )),
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
}

/// `--force` replaces a regular file, never a device, directory or FIFO,
/// which truncating and sizing would misuse or fail on halfway.
fn refuse_special(path: &Path) -> anyhow::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(fail::with_status(
            fail::CANTCREAT,
            format!(
                "{}: not a regular file; --force replaces only a ring file",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}
