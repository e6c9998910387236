//! The `rmemring-cli` package's build script. With the `bpf` feature it compiles
//! the BPF ring buffer peers' programs (`rmemring_hook.bpf.c` for `bench`,
//! `sched_switch.bpf.c` for `bench-events`, next to this file) with clang
//! into `$OUT_DIR/NAME.bpf.o`, which the CLI embeds; without it, it does
//! nothing, so the default build needs no clang.
//!
//! Clang is `$BPF_CLANG` if set, else `clang` from `PATH`. Any clang that
//! targets BPF will do (Debian's clang 14 and later have been used): the
//! program needs no kernel or libbpf headers, only rmemring's own UAPI
//! header, `driver/include/uapi/linux/rmemring.h`, which `rmemring_uapi.h`
//! next to this file links to (a link, so that the published package holds
//! the header: `cargo package` stores what a link points at). The script
//! copies it to `$OUT_DIR/uapi/linux/rmemring.h`, for `<linux/rmemring.h>`.

use std::env;
use std::path::PathBuf;
use std::process::{
    exit,
    Command, //
};

const SOURCE_DIR: &str = "src/bpf";
/// The programs, each compiled to `$OUT_DIR/NAME.o`.
const PROGRAMS: &[&str] = &["rmemring_hook.bpf.c", "sched_switch.bpf.c"];
const HEADERS: &[&str] = &["bpf_defs.h", UAPI_LINK];
/// rmemring's UAPI header, which the programs include as
/// `<linux/rmemring.h>` for the records they share with the driver.
const UAPI_LINK: &str = "rmemring_uapi.h";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE_DIR}/build.rs");
    if env::var_os("CARGO_FEATURE_BPF").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    for source in PROGRAMS.iter().chain(HEADERS) {
        println!("cargo:rerun-if-changed={SOURCE_DIR}/{source}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let uapi = out_dir.join("uapi/linux");
    std::fs::create_dir_all(&uapi).expect("creating $OUT_DIR/uapi/linux");
    std::fs::copy(format!("{SOURCE_DIR}/{UAPI_LINK}"), uapi.join("rmemring.h"))
        .expect("copying rmemring's UAPI header");
    for program in PROGRAMS {
        compile(program);
    }
}

/// Compiles `SOURCE_DIR/program` into `$OUT_DIR/program.o`, or exits.
fn compile(program: &str) {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let source = manifest_dir.join(SOURCE_DIR).join(program);
    let object = out_dir.join(format!("{}.o", program.trim_end_matches(".c")));
    let clang = env::var_os("BPF_CLANG").unwrap_or_else(|| "clang".into());

    // -g: libbpf needs the BTF of the maps; -mcpu=v3: 32-bit subregisters
    // and jumps (kernels since 5.1); the target architecture, for the
    // kprobe's view of the argument registers.
    let mut command = Command::new(&clang);
    command.args(["-O2", "-g", "-Wall", "-target", "bpf", "-mcpu=v3", "-I"]);
    command.arg(out_dir.join("uapi"));
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        command.arg("-D__TARGET_ARCH_x86");
    }
    let status = command
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!(
                "error: {} failed ({status}) compiling {}",
                clang.to_string_lossy(),
                source.display()
            );
            exit(1);
        }
        Err(err) => {
            eprintln!(
                "error: cannot run {} ({err}): the `bpf` feature needs clang to compile {}; \
                 install it (Debian: `apt-get install clang`) or point BPF_CLANG at one",
                clang.to_string_lossy(),
                source.display()
            );
            exit(1);
        }
    }
}
