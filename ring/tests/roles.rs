//! One consumer and one producer per ring, however many regions of it this
//! process opens, and what else a region's layout may and may not do.
//!
//! The cross-process half is in `role_processes.rs`.

#![cfg(not(loom))]

mod common;

use std::os::fd::{
    AsFd,
    AsRawFd, //
};
use std::path::PathBuf;
use std::sync::Arc;

use common::Poke;
use nix::fcntl::{
    fcntl,
    FcntlArg, //
};
use rmemring::layout::{
    max_payload_for,
    ControlPage,
    FLAG_OVERWRITE,
    MAX_DATA_SIZE,
    MIN_DATA_SIZE, //
};
use rmemring::{
    Access,
    Backend,
    CreateOptions,
    Error,
    FileKind,
    Overflow,
    Region,
    Role, //
};

/// A ring file in the temporary directory, removed when dropped.
struct TempRing(PathBuf);

impl TempRing {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("rmemring-roles-{}-{name}", std::process::id())))
    }
}

impl Drop for TempRing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn taken<T: std::fmt::Debug>(result: Result<T, Error>) -> Role {
    match result {
        Err(Error::Taken(role)) => role,
        other => panic!("expected Error::Taken, got {other:?}"),
    }
}

#[test]
fn a_duplicated_memfd_descriptor_is_the_same_ring() {
    let r1 = common::memfd(1 << 16, Overflow::DropNew);
    let r2 =
        Arc::new(Region::from_fd(r1.fd().try_clone_to_owned().unwrap(), Access::Full).unwrap());
    assert_eq!(r2.backend(), Backend::Memfd);

    let mut consumer = r1.consumer().unwrap();
    let mut producer = r2.producer().unwrap();
    // The audit's case: a second consumer and a second producer through
    // the other region.
    assert_eq!(taken(r2.consumer()), Role::Consumer);
    assert_eq!(taken(r1.producer()), Role::Producer);
    // And through the same region.
    assert_eq!(taken(r1.consumer()), Role::Consumer);
    assert_eq!(taken(r2.producer()), Role::Producer);

    producer.send(b"across regions").unwrap();
    let mut batch = consumer.batch().unwrap();
    let record = batch.iter().next().unwrap().unwrap();
    assert_eq!(record.payload, b"across regions");
}

#[test]
fn a_file_opened_twice_is_the_same_ring() {
    let file = TempRing::new("twice");
    let created = Arc::new(Region::create_file(&file.0, CreateOptions::default()).unwrap());
    let consumer = Arc::new(Region::open(&file.0, Access::Consume).unwrap());
    let producer = Arc::new(Region::open(&file.0, Access::Produce).unwrap());

    let c = consumer.consumer().unwrap();
    let p = producer.producer().unwrap();
    assert_eq!(taken(created.consumer()), Role::Consumer);
    assert_eq!(taken(created.producer()), Role::Producer);
    let again = Arc::new(Region::open(&file.0, Access::Consume).unwrap());
    assert_eq!(taken(again.consumer()), Role::Consumer);

    // Dropping a role gives it back, to any region of the ring.
    drop((c, p));
    let _c = again.consumer().unwrap();
    let _p = created.producer().unwrap();
    assert_eq!(taken(consumer.consumer()), Role::Consumer);
}

#[test]
fn a_failed_attach_holds_no_role() {
    let region = common::memfd(1 << 16, Overflow::DropNew);
    let poke = Poke::new(&region);
    poke.set_ctrl(rmemring::layout::OFF_PRODUCER_POS, 3);
    assert!(matches!(region.consumer(), Err(Error::Corrupt(_))));
    poke.set_ctrl(rmemring::layout::OFF_PRODUCER_POS, 0);
    let other = Region::from_fd(region.fd().try_clone_to_owned().unwrap(), Access::Consume);
    assert!(Arc::new(other.unwrap()).consumer().is_ok());
}

/// The locks a C peer following `docs/protocol.md` (section 9) takes and
/// tests: a write lock on one byte, at offset 0 for the producer and at
/// `consumer_offset` for the consumer.
#[test]
fn the_roles_are_the_documented_byte_locks() {
    let region = common::memfd(1 << 16, Overflow::DropNew);
    let consumer_offset = region.layout().consumer_offset;
    // A description of our own, as another process would have.
    let peer = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", region.fd().as_raw_fd()))
            .unwrap()
    };
    let lock = |start: u64| libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: 1,
        l_pid: 0,
    };

    // A peer holding the consumer's byte keeps our consumer out, and the
    // producer's byte our producer; closing its description lets them in.
    let consumer_peer = peer();
    fcntl(
        consumer_peer.as_fd(),
        FcntlArg::F_OFD_SETLK(&lock(consumer_offset)),
    )
    .unwrap();
    assert_eq!(taken(region.consumer()), Role::Consumer);
    let producer_peer = peer();
    fcntl(producer_peer.as_fd(), FcntlArg::F_OFD_SETLK(&lock(0))).unwrap();
    assert_eq!(taken(region.producer()), Role::Producer);
    drop((consumer_peer, producer_peer));

    // While our consumer holds its role, `F_OFD_GETLK` sees a write lock on
    // exactly that byte, and none on the producer's.
    let consumer = region.consumer().unwrap();
    let probe = |start: u64| {
        let mut lock = lock(start);
        fcntl(peer().as_fd(), FcntlArg::F_OFD_GETLK(&mut lock)).unwrap();
        i32::from(lock.l_type)
    };
    assert_eq!(probe(consumer_offset), libc::F_WRLCK);
    assert_eq!(probe(0), libc::F_UNLCK);
    let _producer = region.producer().unwrap();
    assert_eq!(probe(0), libc::F_WRLCK);
    assert_eq!(probe(consumer_offset - 1), libc::F_UNLCK);
    assert_eq!(probe(consumer_offset + 1), libc::F_UNLCK);
    drop(consumer);
    assert_eq!(probe(consumer_offset), libc::F_UNLCK);
}

#[test]
fn create_options_reject_impossible_data_sizes() {
    for size in [
        0,
        1,
        MIN_DATA_SIZE / 2,
        MIN_DATA_SIZE + 8,
        3 << 20,
        MAX_DATA_SIZE * 2,
    ] {
        let options = CreateOptions::new(size).overflow(Overflow::DropNew);
        assert!(
            matches!(Region::memfd(options), Err(Error::DataSize { size: s, .. }) if s == size),
            "{size}"
        );
    }
    let region =
        Region::memfd(CreateOptions::new(MIN_DATA_SIZE).overflow(Overflow::DropNew)).unwrap();
    assert_eq!(region.layout().data_size, MIN_DATA_SIZE);
}

#[test]
fn a_reloaded_layout_may_change_its_flags_only() {
    let mut region =
        Region::memfd(CreateOptions::new(1 << 16).overflow(Overflow::DropNew)).unwrap();
    let before = *region.layout();
    let poke = Poke::new(&region);
    let (data_size, region_size, max_payload, flags) = (
        std::mem::offset_of!(ControlPage, data_size),
        std::mem::offset_of!(ControlPage, region_size),
        std::mem::offset_of!(ControlPage, max_payload),
        std::mem::offset_of!(ControlPage, flags),
    );

    // A producer that reports a larger data area (and region) than mapped,
    // all consistent in itself: refused, and the layout stays.
    poke.set_ctrl(data_size, 1 << 17);
    poke.set_ctrl(region_size, before.region_size + (1 << 16));
    match region.reload_layout() {
        Err(Error::GeometryChanged { mapped, found }) => {
            assert_eq!(*mapped, before);
            assert_eq!(found.data_size, 1 << 17);
        }
        other => panic!("expected GeometryChanged, got {other:?}"),
    }
    assert_eq!(*region.layout(), before);
    // A smaller one too (with a maximum payload to match): the consumer
    // would wrap at the wrong place.
    poke.set_ctrl(data_size, 1 << 15);
    poke.set_ctrl(region_size, before.region_size);
    poke.set_ctrl32(max_payload, max_payload_for(1 << 15));
    assert!(matches!(
        region.reload_layout(),
        Err(Error::GeometryChanged { .. })
    ));
    poke.set_ctrl(data_size, before.data_size);
    poke.set_ctrl32(max_payload, before.max_payload);

    // The flags may change (a reset to overwrite mode).
    poke.set_ctrl32(flags, FLAG_OVERWRITE);
    region.reload_layout().unwrap();
    assert_eq!(region.layout().overflow(), Overflow::OverwriteOldest);
    let after = region.layout();
    assert_eq!(
        (after.geometry, after.max_payload, after.phys_base),
        (before.geometry, before.max_payload, before.phys_base)
    );
}

#[test]
fn descriptors_that_are_no_ring_say_what_they_are() {
    let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
    assert!(matches!(
        Region::from_fd(dir.into(), Access::Observe),
        Err(Error::NotARing {
            kind: FileKind::Directory,
            ..
        })
    ));
    let (read, _write) = nix::unistd::pipe().unwrap();
    assert!(matches!(
        Region::from_fd(read, Access::Observe),
        Err(Error::NotARing {
            kind: FileKind::Pipe,
            ..
        })
    ));
    // A character device is a device ring (to the open path as well), not
    // a too-small memfd; `/dev/zero` maps as zeroes, so it is no ring.
    for region in [
        Region::from_fd(
            std::fs::File::open("/dev/zero").unwrap().into(),
            Access::Observe,
        ),
        Region::open("/dev/zero", Access::Observe),
    ] {
        assert!(
            matches!(region, Err(Error::BadMagic { found: 0, .. })),
            "{region:?}"
        );
    }
    assert!(matches!(
        Region::from_fd(
            std::fs::File::open("/dev/zero").unwrap().into(),
            Access::Produce
        ),
        Err(Error::DeviceAccess {
            access: Access::Produce,
            ..
        })
    ));
    // A regular file says it is one.
    let file = TempRing::new("from-fd");
    drop(Region::create_file(&file.0, CreateOptions::default()).unwrap());
    let fd = std::fs::File::open(&file.0).unwrap();
    let region = Region::from_fd(fd.into(), Access::Observe).unwrap();
    assert_eq!(region.backend(), Backend::File);
    assert_eq!(region.path(), file.0);
}

/// docs/protocol.md, section 8, "Counting every loss": on a ring without a
/// device, a drained consumer learns from the producer's byte lock that the
/// producer has gone, and counts the records dropped after the last one it
/// got, which left no gap, from the producer's final counters.
#[test]
fn a_drained_consumer_counts_the_drops_after_the_producer_left() {
    let region = common::memfd(1 << 16, Overflow::DropNew);
    let producer_lock = || {
        let mut lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 1,
            l_pid: 0,
        };
        let peer = std::fs::File::open(format!("/proc/self/fd/{}", region.fd().as_raw_fd()));
        fcntl(peer.unwrap().as_fd(), FcntlArg::F_OFD_GETLK(&mut lock)).unwrap();
        i32::from(lock.l_type)
    };
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    let (mut sent, mut dropped) = (0u64, 0u64);
    while dropped < 5 {
        match producer.send(&[7; 1000]) {
            Ok(()) => sent += 1,
            Err(rmemring::ProduceError::Full) => {
                producer.drop_record();
                dropped += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(producer_lock(), libc::F_WRLCK, "the producer is there");
    drop(producer);
    assert_eq!(producer_lock(), libc::F_UNLCK, "the producer has gone");

    let (mut delivered, mut next_seq) = (0u64, 0u64);
    while let Some(record) = consumer.read_copy().unwrap() {
        delivered += 1;
        next_seq = record.seq + 1;
    }
    assert_eq!(consumer.backlog().unwrap(), 0, "drained");
    assert_eq!((delivered, consumer.stats().lost), (sent, 0), "no gap");
    let control = region.control();
    let trailing = control.records_produced + control.records_dropped - next_seq;
    assert_eq!(trailing, dropped);
}
