//! The module cannot go while the device is open or mapped, and closing
//! and unmapping in any order, with the producer running, is safe.

use std::ffi::CString;
use std::io;
use std::os::fd::{
    BorrowedFd,
    RawFd, //
};

use anyhow::bail;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    device,
    Access,
    Region, //
};

use crate::misuse::{
    map,
    map_data,
    map_own_page, //
};
use crate::stream::open_fresh;
use crate::{
    Env,
    Report, //
};

pub(crate) fn open(path: &str, flags: i32) -> io::Result<RawFd> {
    let path = CString::new(path).expect("no NUL in the device path");
    // SAFETY: A valid C string and plain flags.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: Closing a descriptor this module opened and owns.
    unsafe { libc::close(fd) };
}

/// Unloads the driver (which must succeed now) and loads it again.
pub(crate) fn reload(env: &Env) -> anyhow::Result<()> {
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
    close_orders(env, report)?;
    crate::sleepers::closing_under_sleepers(env, report)?;
    report.check(
        "lifecycle: rmmod succeeds after all of the above",
        reload(env),
    );
    env.kmod.ensure_loaded()
}

/// The three kinds of open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Consumer,
    Controller,
    Observer,
}

/// One open file of the close-order test, with its mappings.
struct Opened {
    kind: Kind,
    fd: Option<RawFd>,
    maps: Vec<crate::misuse::Mapping>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            close(fd);
        }
    }
}

impl Opened {
    /// The file is released once it is closed and unmapped.
    fn released(&self) -> bool {
        self.fd.is_none() && self.maps.is_empty()
    }
}

/// The module's reference count (`/sys/module/rmemring/refcnt`).
fn module_refs() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/sys/module/rmemring/refcnt")?;
    Ok(text.trim().parse()?)
}

/// A consumer and an observer, each with mappings, and a controller (which
/// cannot map: it is write-only), closed
/// in every order, unmapped before or after closing, with the producer
/// started by the consumer or by the controller: after every step the
/// producer runs exactly while the file that started it is open or
/// mapped, the consumer counts as open exactly while its file is, and at
/// the end nothing holds the module.
fn close_orders(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    use Kind::*;
    let dev = env.device.as_str();
    let l = *Region::open(dev, Access::Observe)?.layout();
    let page = l.page_size as usize;
    let orders = [
        [Consumer, Controller, Observer],
        [Consumer, Observer, Controller],
        [Controller, Consumer, Observer],
        [Controller, Observer, Consumer],
        [Observer, Consumer, Controller],
        [Observer, Controller, Consumer],
    ];
    let mut failures = Vec::new();
    let mut variants = 0;
    for order in orders {
        for starter in [Consumer, Controller] {
            for unmap_first in [true, false] {
                variants += 1;
                let result = (|| -> anyhow::Result<()> {
                    let idle = module_refs()?;
                    let mut files = Vec::new();
                    for kind in [Consumer, Controller, Observer] {
                        let flags = match kind {
                            Consumer => libc::O_RDWR,
                            Controller => libc::O_WRONLY,
                            Observer => libc::O_RDONLY,
                        };
                        let mut file = Opened {
                            kind,
                            fd: Some(open(dev, flags)?),
                            maps: Vec::new(),
                        };
                        let fd = file.fd.unwrap_or(-1);
                        // A write-only descriptor cannot be mapped at all
                        // (the VFS wants read access for a shared mapping).
                        if kind != Controller {
                            file.maps.push(map_data(fd, &l)?);
                        }
                        match kind {
                            Consumer => file.maps.push(map_own_page(fd, &l)?),
                            Observer => {
                                file.maps
                                    .push(map(fd, 0, page, libc::PROT_READ, libc::MAP_SHARED)?)
                            }
                            Controller => {}
                        }
                        files.push(file);
                    }
                    let fd_of = |files: &[Opened], kind| {
                        files.iter().find(|f| f.kind == kind).and_then(|f| f.fd)
                    };
                    let consumer_fd = fd_of(&files, Consumer).unwrap_or(-1);
                    // SAFETY: Borrowing our own open descriptor for the call.
                    let borrowed = unsafe { BorrowedFd::borrow_raw(consumer_fd) };
                    device::reset(borrowed, &ResetConfig::default())?;
                    let starter_fd = fd_of(&files, starter).unwrap_or(-1);
                    let config = ProducerConfig {
                        min_len: 8,
                        max_len: 512,
                        rate: 10_000,
                        ..Default::default()
                    };
                    // SAFETY: As above.
                    device::start(unsafe { BorrowedFd::borrow_raw(starter_fd) }, &config)?;
                    let check = |files: &[Opened], step: &str| -> anyhow::Result<()> {
                        let alive = |kind| files.iter().any(|f| f.kind == kind && !f.released());
                        let observer = Region::open(dev, Access::Observe)?;
                        let s = device::stats(observer.fd())?;
                        drop(observer);
                        if (s.producer_running != 0) != alive(starter)
                            || (s.consumer_open != 0) != alive(Consumer)
                        {
                            bail!(
                                "after {step}: producer running {}, consumer open {}",
                                s.producer_running,
                                s.consumer_open
                            );
                        }
                        Ok(())
                    };
                    check(&files, "starting")?;
                    for kind in order {
                        let Some(f) = files.iter_mut().find(|f| f.kind == kind) else {
                            continue;
                        };
                        if unmap_first {
                            f.maps.clear();
                        }
                        if let Some(fd) = f.fd.take() {
                            close(fd);
                        }
                        check(&files, &format!("closing the {kind:?}"))?;
                    }
                    for kind in order {
                        let Some(f) = files.iter_mut().find(|f| f.kind == kind) else {
                            continue;
                        };
                        f.maps.clear();
                        check(&files, &format!("unmapping the {kind:?}"))?;
                    }
                    let refs = module_refs()?;
                    if refs != idle {
                        bail!("the module's reference count is {refs}, {idle} before");
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    let unmap = if unmap_first {
                        "unmapping first"
                    } else {
                        "closing first"
                    };
                    failures.push(format!(
                        "close order {order:?}, started by the {starter:?}, {unmap}: {e:#}"
                    ));
                }
            }
        }
    }
    report.expect(
        &format!(
            "lifecycle: consumer, controller and observer closed in all 6 orders, unmapped before or after, started by either ({variants} runs): the producer stops exactly when its starter's file goes"
        ),
        failures.is_empty(),
        || failures.join("; "),
    );
    Ok(())
}
