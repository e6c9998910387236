// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The C header, `driver/include/uapi/linux/rmemring.h`, against the Rust
//! definitions it mirrors (`layout.rs`, `uapi.rs`, `events.rs`).
//!
//! The test writes a C program that prints every size, offset, field size,
//! constant and ioctl number the table below names, compiles it against the
//! header with the host's C compiler (`$CC`, else `cc`), runs it and compares
//! each line with the value Rust computes. A change on one side only fails:
//!
//! - a field added to, removed from or renamed in a Rust struct stops this
//!   file compiling (the table destructures every struct with every field
//!   named), and the same field then missing from the C struct stops the C
//!   program compiling;
//! - a field moved, resized or added on the C side changes an `offsetof` or
//!   a `sizeof`;
//! - a `pub const` added to one of the three Rust modules, or a
//!   `#define RMEMRING_*` or `struct rmemring_*` added to the header, must
//!   be in the table (or, for Rust constants, in [`NOT_IN_C`]).
//!
//! To extend the ABI, add the Rust field or constant, its C twin, and its
//! name to the table.

use core::mem::{
    offset_of,
    size_of, //
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::Command;

use rmemring_proto::events::{
    self,
    SchedSwitch,
    TimerSample, //
};
use rmemring_proto::layout::{
    self,
    ConsumerPage,
    ControlPage,
    RecordHeader, //
};
use rmemring_proto::uapi::{
    self,
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats, //
};

/// The header, from the repository root.
const HEADER: &str = "driver/include/uapi/linux/rmemring.h";

/// The Rust modules the header mirrors, from the repository root.
const SOURCES: &[&str] = &[
    "proto/src/layout.rs",
    "proto/src/uapi.rs",
    "proto/src/events.rs",
];

/// Public constants of [`SOURCES`] that the header leaves out, and why.
const NOT_IN_C: &[&str] = &[
    // Field offsets: the header has the structs, and `offsetof`.
    "OFF_PRODUCER_POS",
    "OFF_OVERWRITE_POS",
    "OFF_WAKE_SEQ",
    "OFF_CONSUMER_POS",
    "OFF_NEED_WAKEUP",
    "OFF_WAKE_TOKEN",
    // A Rust value of a struct, not a number.
    "CONSUMER_PAGE_INIT",
];

/// What the C program must print: one C expression per line, and its value.
#[derive(Default)]
struct Expect {
    values: BTreeMap<String, u64>,
    /// C struct names.
    structs: Vec<&'static str>,
    /// Rust struct names.
    rust_structs: Vec<&'static str>,
    /// C constant names.
    constants: Vec<&'static str>,
}

impl Expect {
    fn value(&mut self, c_expr: String, value: usize) {
        let old = self.values.insert(c_expr.clone(), value as u64);
        assert!(old.is_none(), "{c_expr} twice in the table");
    }

    fn structure(&mut self, c_name: &'static str, rust_name: &'static str, size: usize) {
        self.structs.push(c_name);
        self.rust_structs.push(rust_name);
        self.value(format!("sizeof(struct {c_name})"), size);
    }

    fn field(&mut self, c_name: &str, field: &str, offset: usize, size: usize) {
        self.value(format!("offsetof(struct {c_name}, {field})"), offset);
        self.value(format!("sizeof(((struct {c_name} *)0)->{field})"), size);
    }

    fn constant(&mut self, c_name: &'static str, value: u64) {
        self.constants.push(c_name);
        let old = self.values.insert(c_name.to_owned(), value);
        assert!(old.is_none(), "{c_name} twice in the table");
    }
}

/// The size of the field `field` returns a reference to.
fn field_size<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `C_NAME => RustType { every, field }`: the struct's size and each
/// field's offset and size.
macro_rules! structs {
    ($expect:ident; $($c:literal => $ty:ident { $($field:ident),* $(,)? })*) => {$({
        // Every field named, none left to `..`: a field added to or
        // removed from the Rust struct does not compile here.
        #[expect(dead_code, reason = "a compile-time check")]
        fn every_field(value: $ty) {
            let $ty { $($field: _),* } = value;
        }
        $expect.structure($c, stringify!($ty), size_of::<$ty>());
        $(
            $expect.field(
                $c,
                stringify!($field),
                offset_of!($ty, $field),
                field_size(|v: &$ty| &v.$field),
            );
        )*
    })*};
}

/// `module: NAME, ...`: the Rust constant `module::NAME` is the C
/// `RMEMRING_NAME`.
macro_rules! constants {
    ($expect:ident; $($module:ident: $($name:ident),* $(,)?;)*) => {
        $($(
            $expect.constant(concat!("RMEMRING_", stringify!($name)), $module::$name as u64);
        )*)*
    };
}

/// Everything the header must agree on.
fn expectations() -> Expect {
    let mut expect = Expect::default();
    structs! { expect;
        "rmemring_control_page" => ControlPage {
            magic, abi_version, page_size, region_size, consumer_offset,
            data_offset, data_size, max_payload, flags, phys_base, boot_id,
            realtime_offset_ns, identity_sum, reserved0,
            producer_pos, pad1,
            overwrite_pos, pad2,
            wake_seq, reserved1, records_produced, bytes_produced,
            records_dropped, records_overwritten, wakeups, consumer_errors, pad3,
        }
        "rmemring_consumer_page" => ConsumerPage {
            consumer_pos, pad0,
            need_wakeup, wake_token, pad1,
            records_consumed, bytes_consumed, records_lost, sleeps, pad2,
        }
        "rmemring_record_header" => RecordHeader { len, kind, tag, seq, timestamp_ns }
        "rmemring_sched_switch" => SchedSwitch {
            cpu, prev_pid, prev_state, next_pid, prev_comm, next_comm,
        }
        "rmemring_timer_sample" => TimerSample { cpu, reserved, count, lateness_ns }
        "rmemring_info" => RingInfo {
            abi_version, page_size, phys_base, region_size, consumer_offset,
            data_offset, data_size, max_payload, flags, index, state, reserved,
        }
        "rmemring_recovery_info" => RecoveryInfo {
            verdict, reason, boot_id, realtime_offset_ns, flags, reserved0,
            start_pos, end_pos, published_pos, records, first_seq, last_seq,
            first_ns, last_ns, bytes_cut, reserved,
        }
        "rmemring_producer_config" => ProducerConfig {
            min_len, max_len, count, rate, pattern, flags, batch, reserved,
        }
        "rmemring_reset_config" => ResetConfig { flags, reserved }
        "rmemring_stats" => RingStats {
            producer_pos, consumer_pos, records_produced, bytes_produced,
            records_dropped, records_overwritten, wakeups, consumer_errors,
            records_consumed, bytes_consumed, records_lost, sleeps,
            records_read, producer_running, consumer_open, records_hooked,
            records_refused, reserved,
        }
    }
    constants! { expect;
        layout: MAGIC, ABI_VERSION, LINE, RECORD_ALIGN, HEADER_SIZE,
            MIN_PAGE_SIZE, MIN_DATA_SIZE, MAX_DATA_SIZE, KIND_DATA, KIND_PAD,
            FLAG_OVERWRITE, FLAG_CACHE_SHIFT, FLAG_CACHE_MASK, FLAGS_KNOWN,
            CACHE_WRITE_BACK, CACHE_WRITE_COMBINE, CACHE_UNCACHED;
        events: TAG_PATTERN, TAG_SCHED_SWITCH, TAG_TIMER_SAMPLE, TAG_USER_MIN,
            COMM_LEN;
        uapi: IOC_TYPE, IOC_INFO, IOC_START, IOC_STOP, IOC_STATS, IOC_RESET,
            IOC_RECOVERY, IOC_RELEASE_RECOVERED, STATE_LIVE, STATE_RECOVERED,
            RECOVERY_NOT_ASKED, RECOVERY_RECOVERED, RECOVERY_NONE, RECOVERY_RELEASED,
            RECOVERY_REASON_BLANK, RECOVERY_REASON_LAYOUT, RECOVERY_REASON_CHECKSUM,
            RECOVERY_REASON_GEOMETRY, RECOVERY_REASON_CACHE_MODE,
            RECOVERY_REASON_NO_BOOT_ID, RECOVERY_REASON_THIS_BOOT,
            RECOVERY_REASON_POSITIONS, RECOVERY_REASON_NO_RECORDS,
            RECOVERY_REASON_BOOT_ID_UNKNOWN, RECOVERY_REASON_DROP_NEW,
            PATTERN_SEQ, PATTERN_NONE, PRODUCER_WAIT, PRODUCER_HOOK_ONLY, PRODUCER_STAGED,
            PRODUCER_FLAGS_KNOWN, RESET_FLAGS_KNOWN;
    }
    expect
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto/ is in the repository")
        .to_owned()
}

fn read(path: &str) -> String {
    let path = repo_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The C program that prints `EXPR VALUE` for every expression.
fn program(expect: &Expect) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/rmemring.h>\n\n\
         int main(void)\n{\n",
    );
    for expr in expect.values.keys() {
        writeln!(
            c,
            "\tprintf(\"%s %llu\\n\", \"{expr}\", (unsigned long long)({expr}));"
        )
        .unwrap();
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

/// Compiles `src` against the header, without warnings, with `args` after.
fn compile(std: &str, src: &Path, args: &[&std::ffi::OsStr]) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(&cc)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo_root().join("driver/include/uapi"))
        .arg(src)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles and runs `source`; returns what it printed, by expression.
fn run_c(source: &str) -> BTreeMap<String, u64> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (src, bin) = (dir.join("c_header.c"), dir.join("c_header"));
    std::fs::write(&src, source).unwrap();
    compile(
        "c11",
        &src,
        &["-Wpedantic".as_ref(), "-o".as_ref(), bin.as_ref()],
    );
    let output = Command::new(&bin).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (expr, value) = line.rsplit_once(' ').unwrap();
            (expr.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_size_offset_constant_and_ioctl_matches() {
    let expect = expectations();
    let found = run_c(&program(&expect));
    let mismatches: Vec<String> = expect
        .values
        .iter()
        .filter(|&(expr, value)| found.get(expr) != Some(value))
        .map(|(expr, value)| format!("{expr}: Rust {value}, C {:?}", found.get(expr)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{HEADER} disagrees with proto/src:\n{}",
        mismatches.join("\n")
    );
}

/// Every `pub const` of the Rust modules is checked (or named in
/// [`NOT_IN_C`]), and so is every `#[repr(C)]` struct.
#[test]
fn every_rust_definition_is_checked() {
    let expect = expectations();
    for source in SOURCES {
        let text = read(source);
        let mut repr_c = false;
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("pub const ")
                .filter(|rest| !rest.starts_with("fn "))
            {
                let name = rest.split(':').next().unwrap();
                let c_name = format!("RMEMRING_{name}");
                assert!(
                    expect.constants.contains(&c_name.as_str()) || NOT_IN_C.contains(&name),
                    "{source}: {name} is neither in the C header's check nor in NOT_IN_C"
                );
            }
            if line == "#[repr(C)]" {
                repr_c = true;
            } else if let Some(rest) = line.strip_prefix("pub struct ") {
                if repr_c {
                    let name = rest.split([' ', '{']).next().unwrap();
                    assert!(
                        expect.rust_structs.contains(&name),
                        "{source}: #[repr(C)] struct {name} is not checked"
                    );
                }
                repr_c = false;
            }
        }
    }
}

/// Every `#define RMEMRING_*` and `struct rmemring_*` of the header is checked.
#[test]
fn every_c_definition_is_checked() {
    let expect = expectations();
    let header = read(HEADER);
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix("#define RMEMRING_") {
            let name = format!("RMEMRING_{}", rest.split_whitespace().next().unwrap());
            assert!(
                expect.constants.contains(&name.as_str()),
                "{HEADER}: {name} is not checked against the Rust side"
            );
        }
        if let Some(rest) = line.strip_prefix("struct rmemring_") {
            if let Some(name) = rest.strip_suffix(" {") {
                let name = format!("rmemring_{name}");
                assert!(
                    expect.structs.contains(&name.as_str()),
                    "{HEADER}: struct {name} is not checked against the Rust side"
                );
            }
        }
    }
}

/// The structs docs/protocol.md tabulates, each under a line that starts
/// with "`struct NAME` (SIZE bytes".
const DOCUMENTED: &[&str] = &[
    "rmemring_control_page",
    "rmemring_consumer_page",
    "rmemring_record_header",
    "rmemring_info",
    "rmemring_producer_config",
    "rmemring_reset_config",
    "rmemring_stats",
];

/// docs/protocol.md's tables give every field (but padding and reserved
/// words) of those structs at its offset, and each struct's size.
#[test]
fn the_protocol_document_has_every_field_at_its_offset() {
    let expect = expectations();
    let doc = read("docs/protocol.md");
    let lines: Vec<&str> = doc.lines().collect();
    for name in DOCUMENTED {
        let caption = format!("`struct {name}` (");
        let at = lines
            .iter()
            .position(|line| line.starts_with(&caption))
            .unwrap_or_else(|| panic!("docs/protocol.md has no line starting {caption}"));
        let size: usize = lines[at][caption.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{caption}: no size"));
        assert_eq!(
            Some(&(size as u64)),
            expect.values.get(&format!("sizeof(struct {name})")),
            "docs/protocol.md: the size of struct {name}"
        );
        // The table's rows, after its header and separator lines.
        let mut documented = BTreeMap::new();
        let rows = lines[at + 1..]
            .iter()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2);
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // Reserved words have no `field` name.
            if let Some(field) = cells[3].strip_prefix('`').and_then(|f| f.strip_suffix('`')) {
                let offset: u64 = cells[1].parse().unwrap_or_else(|_| panic!("{row}"));
                documented.insert(field.to_owned(), offset);
            }
        }
        let prefix = format!("offsetof(struct {name}, ");
        let fields: BTreeMap<String, u64> = expect
            .values
            .iter()
            .filter_map(|(expr, &offset)| {
                let field = expr.strip_prefix(&prefix)?.strip_suffix(')')?;
                let filler = field.starts_with("pad") || field.starts_with("reserved");
                (!filler).then(|| (field.to_owned(), offset))
            })
            .collect();
        assert_eq!(documented, fields, "docs/protocol.md: struct {name}");
    }
}

/// docs/protocol.md's C sketch (section 11) uses the header's real names:
/// it compiles, wrapped in a function, with the application's three
/// functions declared.
#[test]
fn the_protocol_c_sketch_compiles() {
    let doc = read("docs/protocol.md");
    let section = &doc[doc
        .find("## 11.")
        .expect("docs/protocol.md has a section 11")..];
    let start = section.find("```c\n").expect("section 11 has C code") + 5;
    let sketch = &section[start..start + section[start..].find("```").unwrap()];
    let (includes, body): (Vec<&str>, Vec<&str>) = sketch
        .lines()
        .partition(|line| line.starts_with("#include"));
    let source = format!(
        "{}\n\
         int corrupt(void);\n\
         void sleep_protocol(void);\n\
         void consume(const void *payload, const struct rmemring_record_header *header);\n\n\
         int sketch(int fd, long pg)\n{{\n{}\n}}\n",
        includes.join("\n"),
        body.join("\n")
    );
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("protocol_sketch.c");
    std::fs::write(&src, source).unwrap();
    compile("c11", &src, &["-fsyntax-only".as_ref()]);
}

/// The C example builds against the header with the host's compiler (the
/// VM suites build it static and run it: `xtask/src/suites.rs`).
#[test]
fn the_c_example_compiles() {
    let src = repo_root().join("examples/c/consume.c");
    compile("gnu11", &src, &["-fsyntax-only".as_ref()]);
}
