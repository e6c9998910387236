//! The layout arithmetic, and opening what is not a valid ring: every kind
//! of bad input yields its own typed [`Error`], never a mapping of garbage.

#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use rmemring::layout::{
    max_payload_for,
    record_stride,
    ControlPage,
    Geometry,
    GeometryError,
    ABI_VERSION,
    FLAGS_KNOWN,
    FLAG_OVERWRITE,
    HEADER_SIZE,
    MAGIC,
    MAX_DATA_SIZE,
    MIN_DATA_SIZE,
    RECORD_ALIGN, //
};
use rmemring::{
    system_page_size,
    Access,
    Backend,
    CreateOptions,
    Error,
    IoOp,
    MapPart,
    Overflow,
    Region,
    Role, //
};

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("rmemring-open-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const DATA: u64 = 1 << 16;

fn page() -> u32 {
    system_page_size()
}

/// A valid control page for a ring with a `DATA`-byte data area.
fn valid_page() -> ControlPage {
    let size = Geometry::region_size_for(DATA, page());
    Geometry::for_region(size, page())
        .unwrap()
        .control_page(0, 0)
}

/// The bytes of a whole region whose control page is `page`, `len` long.
fn region_bytes(page: &ControlPage, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    let header = bytemuck::bytes_of(page);
    let n = header.len().min(bytes.len());
    bytes[..n].copy_from_slice(&header[..n]);
    bytes
}

/// Opens a file holding `page` and `len` bytes in total, for consuming.
fn open_with(name: &str, page: &ControlPage, len: u64) -> Result<Region, Error> {
    let file = TempFile::new(name, &region_bytes(page, len));
    Region::open(&file.0, Access::Consume)
}

fn full_len() -> u64 {
    Geometry::region_size_for(DATA, page())
}

#[test]
fn geometry_lays_out_power_of_two_data_areas() {
    let g = Geometry::for_region(2 * 4096 + MIN_DATA_SIZE, 4096).unwrap();
    assert_eq!(
        (g.consumer_offset, g.data_offset, g.data_size),
        (4096, 8192, MIN_DATA_SIZE)
    );
    // The largest power of two that fits, the rest left unused.
    let g = Geometry::for_region(2 * 4096 + 3 * MIN_DATA_SIZE, 4096).unwrap();
    assert_eq!(g.data_size, 2 * MIN_DATA_SIZE);
    let g = Geometry::for_region(2 * 16384 + (1 << 20) + 4096, 16384).unwrap();
    assert_eq!((g.data_offset, g.data_size), (32768, 1 << 20));
    // Capped at the largest data area.
    let g = Geometry::for_region(u64::MAX, 4096).unwrap();
    assert_eq!(g.data_size, MAX_DATA_SIZE);
    // Exactly what `region_size_for` asks for.
    for shift in 12..=31 {
        let size = Geometry::region_size_for(1 << shift, 4096);
        assert_eq!(
            Geometry::for_region(size, 4096).unwrap().data_size,
            1 << shift
        );
    }
}

#[test]
fn geometry_rejects_bad_page_sizes_and_small_regions() {
    for page in [0, 1, 2048, 4095, 4097, 12288] {
        assert_eq!(
            Geometry::for_region(1 << 20, page),
            Err(GeometryError::PageSize),
            "{page}"
        );
    }
    for size in [0, 4096, 8192, 8192 + MIN_DATA_SIZE - 8] {
        assert_eq!(
            Geometry::for_region(size, 4096),
            Err(GeometryError::TooSmall),
            "{size}"
        );
    }
}

#[test]
fn strides_and_payload_limits() {
    assert_eq!(record_stride(0), HEADER_SIZE);
    assert_eq!(record_stride(1), 32);
    assert_eq!(record_stride(8), 32);
    assert_eq!(record_stride(9), 40);
    assert_eq!(
        record_stride(u32::MAX),
        (HEADER_SIZE + u64::from(u32::MAX) + 7) & !7
    );
    for len in 0..1000u32 {
        let stride = record_stride(len);
        assert_eq!(stride % RECORD_ALIGN, 0);
        assert!(
            stride >= HEADER_SIZE + u64::from(len) && stride < HEADER_SIZE + u64::from(len) + 8
        );
    }
    // A record may fill at most a quarter of the data area.
    for shift in 12..=31 {
        let size = 1u64 << shift;
        let max = max_payload_for(size);
        assert_eq!(record_stride(max), size / 4);
    }
    // Data areas too small for a header give no payload at all; no overflow.
    for size in [0, 8, 64, 95, 96, 99] {
        assert_eq!(max_payload_for(size), 0, "{size}");
    }
    assert_eq!(max_payload_for(u64::MAX), u32::MAX);
}

#[test]
fn region_size_arithmetic_saturates() {
    assert_eq!(Geometry::region_size_for(u64::MAX, 4096), u64::MAX);
}

#[test]
fn a_created_ring_starts_with_its_identity() {
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(DATA, overflow);
        let c = region.control();
        assert_eq!(c.magic, MAGIC);
        assert_eq!(&c.magic.to_le_bytes(), b"RMEMRING");
        assert_eq!(c.abi_version, ABI_VERSION);
        assert_eq!(c.page_size, page());
        assert_eq!(c.data_size, DATA);
        assert_eq!(c.max_payload, max_payload_for(DATA));
        assert_eq!(
            c.flags & FLAG_OVERWRITE != 0,
            overflow == Overflow::OverwriteOldest
        );
        assert_eq!((c.producer_pos, c.overwrite_pos, c.wake_seq), (0, 0, 0));
        assert_eq!(region.consumer_page().consumer_pos, 0);
        assert_eq!(region.layout().overflow(), overflow);
    }
}

#[test]
fn a_valid_file_opens_and_reopens() {
    let path = std::env::temp_dir().join(format!("rmemring-open-{}-valid", std::process::id()));
    let _cleanup = TempFile(path.clone());
    let created = Arc::new(Region::create_file(&path, CreateOptions::default()).unwrap());
    let mut producer = created.producer().unwrap();
    producer.send(b"hello").unwrap();

    let opened = Arc::new(Region::open(&path, Access::Consume).unwrap());
    assert_eq!(opened.backend(), Backend::File);
    assert_eq!(opened.layout(), created.layout());
    let mut consumer = opened.consumer().unwrap();
    let record = consumer.read_copy().unwrap().unwrap();
    assert_eq!((record.seq, record.payload), (0, &b"hello"[..]));

    // Access is enforced and there is one consumer per region.
    assert!(matches!(opened.producer(), Err(Error::Access { .. })));
    assert!(matches!(
        opened.consumer(),
        Err(Error::Taken(Role::Consumer))
    ));
    let observer = Arc::new(Region::open(&path, Access::Observe).unwrap());
    assert!(matches!(observer.consumer(), Err(Error::Access { .. })));
    assert!(matches!(observer.producer(), Err(Error::Access { .. })));
    assert!(matches!(
        created.producer(),
        Err(Error::Taken(Role::Producer))
    ));
}

#[test]
fn a_non_ring_file_is_bad_magic() {
    let bytes: Vec<u8> = (0..full_len()).map(|i| (i * 7 + 3) as u8).collect();
    let file = TempFile::new("garbage", &bytes);
    assert!(matches!(
        Region::open(&file.0, Access::Consume),
        Err(Error::BadMagic {
            expected: MAGIC,
            ..
        })
    ));
    let file = TempFile::new("zeros", &vec![0; full_len() as usize]);
    assert!(matches!(
        Region::open(&file.0, Access::Observe),
        Err(Error::BadMagic { found: 0, .. })
    ));
}

#[test]
fn a_too_small_file_is_too_small() {
    let min = Geometry::region_size_for(MIN_DATA_SIZE, page());
    for len in [0, 1, 100, u64::from(page()), min - 1] {
        let file = TempFile::new("small", &region_bytes(&valid_page(), len));
        match Region::open(&file.0, Access::Consume) {
            Err(Error::TooSmall { size, min: m }) => assert_eq!((size, m), (len, min)),
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let path = std::env::temp_dir().join(format!("rmemring-open-{}-missing", std::process::id()));
    let err = Region::open(&path, Access::Consume).unwrap_err();
    assert!(matches!(err, Error::Io { op: IoOp::Open, .. }), "{err:?}");
    // The errno is the source, and in the message only through it.
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(!err.to_string().contains(&source), "{err}");
    assert!(matches!(
        Region::open("/dev/rmemring-does-not-exist", Access::Consume),
        Err(Error::NoDevice { .. })
    ));
}

#[test]
fn wrong_magic_is_bad_magic() {
    let mut page = valid_page();
    page.magic = u64::from_le_bytes(*b"RMEMRINH");
    assert!(matches!(
        open_with("magic", &page, full_len()),
        Err(Error::BadMagic { found, expected: MAGIC }) if found == page.magic
    ));
}

#[test]
fn a_newer_abi_version_is_refused() {
    for version in [ABI_VERSION + 1, u32::MAX, 0] {
        let mut page = valid_page();
        page.abi_version = version;
        match open_with("abi", &page, full_len()) {
            Err(Error::AbiVersion { found, supported }) => {
                assert_eq!((found, supported), (version, ABI_VERSION))
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
}

#[test]
fn a_wrong_page_size_is_refused() {
    for size in [page() * 2, page() / 2, 0, 12345] {
        let mut page = valid_page();
        page.page_size = size;
        assert!(
            matches!(open_with("pagesize", &page, full_len()), Err(Error::PageSize { found, .. }) if found == size),
            "{size}"
        );
    }
}

#[test]
fn inconsistent_geometry_is_a_layout_error() {
    let p = u64::from(page());
    type Breaker = Box<dyn Fn(&mut ControlPage)>;
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "consumer page elsewhere",
            Box::new(move |c| c.consumer_offset = 2 * p),
        ),
        ("consumer page at 0", Box::new(|c| c.consumer_offset = 0)),
        ("data elsewhere", Box::new(move |c| c.data_offset = 3 * p)),
        (
            "data unaligned",
            Box::new(move |c| c.data_offset = 2 * p + 8),
        ),
        (
            "data size not a power of two",
            Box::new(|c| c.data_size = DATA - 8),
        ),
        ("data size zero", Box::new(|c| c.data_size = 0)),
        (
            "data size too small",
            Box::new(|c| c.data_size = MIN_DATA_SIZE / 2),
        ),
        (
            "data size too large",
            Box::new(|c| c.data_size = MAX_DATA_SIZE * 2),
        ),
        ("data size huge", Box::new(|c| c.data_size = 1 << 63)),
        ("data past the region", Box::new(|c| c.region_size -= 8)),
        ("region past the file", Box::new(|c| c.region_size += 4096)),
        ("region wraps", Box::new(|c| c.region_size = u64::MAX)),
        (
            "max payload above a quarter",
            Box::new(|c| c.max_payload = max_payload_for(c.data_size) + 1),
        ),
        ("max payload huge", Box::new(|c| c.max_payload = u32::MAX)),
    ];
    for (what, break_it) in cases {
        let mut page = valid_page();
        break_it(&mut page);
        match open_with("layout", &page, full_len()) {
            Err(Error::Layout(error)) => assert!(!error.to_string().is_empty()),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A smaller max payload is fine.
    let mut page = valid_page();
    page.max_payload = 0;
    assert!(open_with("small-max", &page, full_len()).is_ok());
}

#[test]
fn unknown_flags_are_refused() {
    for bit in 0..32 {
        let flag = 1u32 << bit;
        let mut page = valid_page();
        page.flags = flag;
        let result = open_with("flags", &page, full_len());
        if flag & FLAGS_KNOWN != 0 {
            assert!(result.is_ok(), "known flag {flag:#x}: {result:?}");
        } else {
            assert!(
                matches!(result, Err(Error::UnknownFlags(f)) if f == flag),
                "flag {flag:#x}: {result:?}"
            );
        }
    }
}

#[test]
fn a_memfd_descriptor_opens_the_same_ring() {
    let region = common::memfd(DATA, Overflow::DropNew);
    let fd = region.fd().try_clone_to_owned().unwrap();
    let again = Region::from_fd(fd, Access::Observe).unwrap();
    assert_eq!(again.layout(), region.layout());

    // A memfd that is not a ring.
    let fd = nix::sys::memfd::memfd_create("not-a-ring", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(full_len()).unwrap();
    assert!(matches!(
        Region::from_fd(file.into(), Access::Consume),
        Err(Error::BadMagic { found: 0, .. })
    ));
}

#[test]
fn a_failed_mapping_names_the_part_and_keeps_the_errno() {
    // A valid ring, but a descriptor that cannot be mapped for reading.
    let file = TempFile::new("write-only", &region_bytes(&valid_page(), full_len()));
    let fd = std::fs::OpenOptions::new()
        .write(true)
        .open(&file.0)
        .unwrap();
    let err = Region::from_fd(fd.into(), Access::Observe).unwrap_err();
    let text = err.to_string();
    match err {
        Error::Map {
            part: MapPart::ControlPage,
            offset: 0,
            len,
            writable: false,
            source,
            ..
        } => {
            assert_eq!(len, u64::from(page()));
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        // The errno is the source's, not repeated in the message.
        text.ends_with(": mmap of the control page (0x1000 bytes at offset 0x0, read-only)")
            || page() != 4096,
        "{text}"
    );
}
