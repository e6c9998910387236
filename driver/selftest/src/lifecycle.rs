//! The module cannot go while the device is open or mapped, and closing
//! and unmapping in any order, with the producer running, is safe.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use anyhow::bail;
use rmemring::uapi::ProducerConfig;
use rmemring::{
    device,
    Access,
    Region, //
};

use crate::misuse::{
    map,
    map_own_page, //
};
use crate::stream::open_fresh;
use crate::{
    Env,
    Report, //
};

fn open(path: &str, flags: i32) -> io::Result<RawFd> {
    let path = CString::new(path).expect("no NUL in the device path");
    // SAFETY: A valid C string and plain flags.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn close(fd: RawFd) {
    // SAFETY: Closing a descriptor this module opened and owns.
    unsafe { libc::close(fd) };
}

/// Unloads the driver (which must succeed now) and loads it again.
fn reload(env: &Env) -> anyhow::Result<()> {
    env.kmod.rmmod()?;
    if std::path::Path::new(&env.device).exists() {
        bail!("{} still exists after rmmod", env.device);
    }
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    if iomem.contains("rmemring") {
        bail!("the region is still claimed after rmmod:\n{iomem}");
    }
    env.kmod.ensure_loaded()
}

pub(crate) fn lifecycle(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let dev = env.device.as_str();

    let fd = open(dev, libc::O_RDONLY)?;
    let refused = env.kmod.rmmod().is_err() && env.kmod.loaded();
    report.expect(
        "lifecycle: rmmod while the device is open is refused",
        refused,
        String::new,
    );
    close(fd);
    report.check(
        "lifecycle: rmmod after close succeeds and releases the region",
        reload(env),
    );

    let l = *Region::open(dev, Access::Observe)?.layout();
    let fd = open(dev, libc::O_RDONLY)?;
    let mapping = map(
        fd,
        l.data_offset,
        l.page_size as usize,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )?;
    close(fd);
    let refused = env.kmod.rmmod().is_err() && env.kmod.loaded();
    report.expect(
        "lifecycle: rmmod while mapped (descriptor closed) is refused",
        refused,
        String::new,
    );
    // SAFETY: The mapping is live; reading the ring through it after the
    // descriptor is closed is fine.
    let first = unsafe { mapping.ptr.read_volatile() };
    let _ = first;
    drop(mapping);
    report.check("lifecycle: rmmod after munmap succeeds", reload(env));

    for unmap_first in [false, true] {
        let order = if unmap_first {
            "munmap then close"
        } else {
            "close then munmap"
        };
        let result = (|| -> anyhow::Result<()> {
            let region = open_fresh(env, false)?;
            drop(region);
            let fd = open(dev, libc::O_RDWR)?;
            let own = map_own_page(fd, &l)?;
            let data = map(
                fd,
                l.data_offset,
                l.data_size as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
            )?;
            let config = ProducerConfig {
                min_len: 8,
                max_len: 4096,
                ..Default::default()
            };
            // SAFETY: Borrowing our own open descriptor for the call.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            device::start(borrowed, &config)?;
            std::thread::sleep(std::time::Duration::from_millis(200));
            if unmap_first {
                drop(own);
                drop(data);
                close(fd);
            } else {
                close(fd);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let observer = Region::open(dev, Access::Observe)?;
                let running = device::stats(observer.fd())?.producer_running;
                drop(observer);
                if running == 0 {
                    bail!("the producer stopped while the consumer's mapping was still live");
                }
                drop(own);
                drop(data);
            }
            let observer = Region::open(dev, Access::Observe)?;
            let stats = device::stats(observer.fd())?;
            if stats.producer_running != 0 || stats.consumer_open != 0 {
                bail!("after the last close the producer still runs: {stats:?}");
            }
            drop(observer);
            reload(env)
        })();
        report.check(
            &format!("lifecycle: producer running, {order}: the producer stops, rmmod succeeds"),
            result,
        );
    }
    env.kmod.ensure_loaded()
}
