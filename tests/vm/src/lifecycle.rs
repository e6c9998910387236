//! The module cannot go while the device is open or mapped, and closing
//! and unmapping in any order, with the producer running or a thread
//! asleep on the descriptor, is safe.

use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::time::Duration;

use anyhow::bail;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    Access,
    Device,
    Region, //
};
use rmemring_proto::modes::Overflow;
use rmemring_proto::roles::Role;

use crate::support::fd::{
    close,
    device_of,
    epoll_wait_one,
    epoll_with,
    open_as,
    open_owned_as,
    poll_in,
    read, //
};
use crate::support::mapping::{
    map,
    map_control,
    map_data,
    map_own_page,
    Mapping, //
};
use crate::support::ring::{
    open_fresh,
    FEW, //
};
use crate::support::threads::{
    Sleeper,
    IN_EPOLL,
    IN_POLL,
    IN_READ, //
};
use crate::support::verify::seqs;
use crate::support::{
    Env,
    Report, //
};

pub(crate) fn lifecycle(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let dev = env.device.as_str();

    let fd = open_as(dev, Role::Observer)?;
    let refused = env.kmod.rmmod().is_err() && env.kmod.loaded();
    report.expect(
        "lifecycle: rmmod while the device is open is refused",
        refused,
        String::new,
    );
    close(fd);
    report.check(
        "lifecycle: rmmod after close succeeds and releases the region",
        env.reload(),
    );

    let l = *Region::open(dev, Access::Observe)?.layout();
    let fd = open_as(dev, Role::Observer)?;
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
    report.check("lifecycle: rmmod after munmap succeeds", env.reload());

    for unmap_first in [false, true] {
        let order = if unmap_first {
            "munmap then close"
        } else {
            "close then munmap"
        };
        let result = (|| -> anyhow::Result<()> {
            let region = open_fresh(env, Overflow::DropNew)?;
            drop(region);
            let fd = open_as(dev, Role::Consumer)?;
            let own = map_own_page(fd, &l)?;
            let data = map_data(fd, &l)?;
            let config = ProducerConfig {
                min_len: 8,
                max_len: 4096,
                ..Default::default()
            };
            device_of(fd)?.start(&config)?;
            std::thread::sleep(Duration::from_millis(200));
            if unmap_first {
                drop(own);
                drop(data);
                close(fd);
            } else {
                close(fd);
                std::thread::sleep(Duration::from_millis(100));
                let observer = Region::open(dev, Access::Observe)?;
                let running = observer.stats()?.producer_running;
                drop(observer);
                if running == 0 {
                    bail!("the producer stopped while the consumer's mapping was still live");
                }
                drop(own);
                drop(data);
            }
            let observer = Region::open(dev, Access::Observe)?;
            let stats = observer.stats()?;
            if stats.producer_running != 0 || stats.consumer_open != 0 {
                bail!("after the last close the producer still runs: {stats:?}");
            }
            drop(observer);
            env.reload()
        })();
        report.check(
            &format!("lifecycle: producer running, {order}: the producer stops, rmmod succeeds"),
            result,
        );
    }
    close_orders(env, report)?;
    closing_under_sleepers(env, report)?;
    report.check(
        "lifecycle: rmmod succeeds after all of the above",
        env.reload(),
    );
    env.kmod.ensure_loaded()
}

/// One open file of the close-order test, with its mappings.
struct Opened {
    role: Role,
    fd: Option<RawFd>,
    maps: Vec<Mapping>,
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
    use Role::{
        Consumer,
        Controller,
        Observer, //
    };
    let dev = env.device.as_str();
    let l = *Region::open(dev, Access::Observe)?.layout();
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
                    for role in [Consumer, Controller, Observer] {
                        let mut file = Opened {
                            role,
                            fd: Some(open_as(dev, role)?),
                            maps: Vec::new(),
                        };
                        let fd = file.fd.unwrap_or(-1);
                        // A controller's descriptor is write-only and
                        // cannot be mapped at all (the VFS wants read
                        // access for a shared mapping).
                        if role != Controller {
                            file.maps.push(map_data(fd, &l)?);
                        }
                        match role {
                            Consumer => file.maps.push(map_own_page(fd, &l)?),
                            Observer => file.maps.push(map_control(fd, &l)?),
                            _ => {}
                        }
                        files.push(file);
                    }
                    let fd_of = |files: &[Opened], role| {
                        files.iter().find(|f| f.role == role).and_then(|f| f.fd)
                    };
                    let consumer_fd = fd_of(&files, Consumer).unwrap_or(-1);
                    device_of(consumer_fd)?.reset(&ResetConfig::default())?;
                    let starter_fd = fd_of(&files, starter).unwrap_or(-1);
                    let config = ProducerConfig {
                        min_len: 8,
                        max_len: 512,
                        rate: 10_000,
                        ..Default::default()
                    };
                    device_of(starter_fd)?.start(&config)?;
                    let check = |files: &[Opened], step: &str| -> anyhow::Result<()> {
                        let alive = |role| files.iter().any(|f| f.role == role && !f.released());
                        let observer = Region::open(dev, Access::Observe)?;
                        let s = observer.stats()?;
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
                    for role in order {
                        let Some(f) = files.iter_mut().find(|f| f.role == role) else {
                            continue;
                        };
                        if unmap_first {
                            f.maps.clear();
                        }
                        if let Some(fd) = f.fd.take() {
                            close(fd);
                        }
                        check(&files, &format!("closing the {role:?}"))?;
                    }
                    for role in order {
                        let Some(f) = files.iter_mut().find(|f| f.role == role) else {
                            continue;
                        };
                        f.maps.clear();
                        check(&files, &format!("unmapping the {role:?}"))?;
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

/// Closing a descriptor another thread sleeps on: the sleeper keeps the
/// file until it returns, which then releases it.
fn closing_under_sleepers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let dev = env.device.clone();
    drop(open_fresh(env, Overflow::DropNew)?);

    // read(): closing the descriptor does not end the read; a controller's
    // records do, and only then is the consumer's place free again.
    let result = (|| -> anyhow::Result<()> {
        let fd = open_owned_as(&dev, Role::Consumer)?;
        let raw = fd.as_raw_fd();
        let sleeper = Sleeper::spawn(IN_READ, move || read(raw, 1 << 16))?;
        drop(fd);
        if !matches!(sleeper.still_blocked(Duration::from_millis(300)), Ok(true)) {
            bail!("the read returned when its descriptor was closed");
        }
        let busy = Region::open(&dev, Access::Consume);
        let refused = env.kmod.rmmod().is_err() && env.kmod.loaded();
        let controller = Device::from_fd(open_owned_as(&dev, Role::Controller)?)?;
        controller.start(&FEW)?;
        let (data, took, interrupted) = sleeper.finish(Duration::from_secs(20));
        drop(controller);
        if !matches!(busy, Err(rmemring::Error::Busy { .. })) {
            bail!("a second consumer opened while the first one's read() still ran: {busy:?}");
        }
        drop(busy);
        if !refused {
            bail!("rmmod succeeded while a read() still ran on a closed descriptor");
        }
        let got = data.map(|d| seqs(&d));
        if interrupted || !got.as_ref().is_ok_and(|s| s.first() == Some(&0)) {
            bail!("the read on the closed descriptor got {got:?} after {took:?}");
        }
        Region::open(&dev, Access::Consume)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("after the read returned, no new consumer: {e}"))
    })();
    report.check(
        "sleepers: close() under a blocked read(): the read still gets the next records, then the file is released",
        result,
    );

    // poll(): the same, ended by the poll's timeout (nothing asked for a
    // wake-up).
    let result = (|| -> anyhow::Result<()> {
        let fd = open_owned_as(&dev, Role::Consumer)?;
        let raw = fd.as_raw_fd();
        let sleeper = Sleeper::spawn(IN_POLL, move || poll_in(raw, Duration::from_secs(2)))?;
        drop(fd);
        let busy = Region::open(&dev, Access::Consume).map(drop);
        let (events, took, interrupted) = sleeper.finish(Duration::from_secs(20));
        if interrupted || took > Duration::from_secs(10) {
            bail!("poll on the closed descriptor returned {events:?} after {took:?}");
        }
        if !matches!(busy, Err(rmemring::Error::Busy { .. })) {
            bail!("a second consumer opened while the first one's poll() still ran: {busy:?}");
        }
        Region::open(&dev, Access::Consume)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("after the poll returned, no new consumer: {e}"))
    })();
    report.check(
        "sleepers: close() under a blocked poll(): the poll ends, then the file is released",
        result,
    );

    // epoll: registered descriptors closed in both orders, and a thread in
    // epoll_wait while the device descriptor goes.
    for device_first in [true, false] {
        let order = if device_first {
            "the device, then the epoll instance"
        } else {
            "the epoll instance, then the device"
        };
        let result = (|| -> anyhow::Result<()> {
            let fd = open_owned_as(&dev, Role::Consumer)?;
            let epfd = epoll_with(fd.as_raw_fd())?;
            let raw_ep = epfd.as_raw_fd();
            let waiter = Sleeper::spawn(IN_EPOLL, move || {
                epoll_wait_one(raw_ep, Duration::from_secs(1))
            })?;
            let epfd = if device_first {
                drop(fd);
                Some(epfd)
            } else {
                drop(epfd);
                drop(fd);
                None
            };
            let (events, took, interrupted) = waiter.finish(Duration::from_secs(20));
            if interrupted || !matches!(events, Ok(0)) {
                bail!("epoll_wait returned {events:?} after {took:?}");
            }
            if let Some(epfd) = epfd {
                // The device file is gone, and its epoll entry with it: the
                // driver may go (freeing the wait queue the entry was on)
                // before the epoll instance does.
                Region::open(&dev, Access::Consume)?;
                env.kmod.rmmod()?;
                drop(epfd);
                env.kmod.ensure_loaded()?;
            }
            Ok(())
        })();
        report.check(
            &format!(
                "sleepers: an epoll registration, a thread in epoll_wait, closing {order}{}",
                if device_first { " (after rmmod)" } else { "" }
            ),
            result,
        );
    }
    Ok(())
}
