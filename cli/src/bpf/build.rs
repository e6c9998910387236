//! The `rmemring-cli` package's build script. With the `bpf` feature it compiles
//! the BPF ring buffer peers' programs (`rmemring_hook.bpf.c` for `bench`,
//! `sched_switch.bpf.c` and `sched_switch_btf.bpf.c` for `bench-events`,
//! next to this file) with
//! libbpf-cargo's [`SkeletonBuilder`] into `$OUT_DIR/NAME.bpf.o`, which the
//! CLI embeds; without it, it does nothing, so the default build needs no
//! clang.
//!
//! Clang is `$BPF_CLANG` if set, else `clang` from `PATH`. Any clang that
//! targets BPF will do (Debian's clang 14 and later have been used): the
//! programs need no kernel headers (the `tp_btf` one declares the two
//! `task_struct` fields it reads, which libbpf relocates with the kernel's
//! BTF as it loads it), only rmemring's own UAPI header,
//! `driver/include/uapi/linux/rmemring.h`, which `rmemring_uapi.h` next to
//! this file links to (a link, so that the published package holds the
//! header: `cargo package` stores what a link points at). The script copies
//! it to `$OUT_DIR/uapi/linux/rmemring.h`, for `<linux/rmemring.h>`.
//! libbpf-cargo adds `-g -O2 -target bpf`, libbpf's headers and
//! `-D__TARGET_ARCH_*` for the target (the kprobe's view of the argument
//! registers).

fn main() {
    println!("cargo:rerun-if-changed=src/bpf/build.rs");
    #[cfg(feature = "bpf")]
    programs::build();
}

/// The `bpf` feature's part.
#[cfg(feature = "bpf")]
mod programs {
    use std::env;
    use std::path::PathBuf;
    use std::process::exit;

    use libbpf_cargo::SkeletonBuilder;

    const SOURCE_DIR: &str = "src/bpf";
    /// The programs, each compiled to `$OUT_DIR/NAME.o`.
    const PROGRAMS: &[&str] = &[
        "rmemring_hook.bpf.c",
        "sched_switch.bpf.c",
        "sched_switch_btf.bpf.c",
    ];
    const HEADERS: &[&str] = &["bpf_defs.h", "sched_switch.h", UAPI_LINK];
    /// rmemring's UAPI header, which the programs include as
    /// `<linux/rmemring.h>` for the records they share with the driver.
    const UAPI_LINK: &str = "rmemring_uapi.h";

    /// Compiles every program of [`PROGRAMS`], or exits.
    pub(super) fn build() {
        println!("cargo:rerun-if-env-changed=BPF_CLANG");
        for source in PROGRAMS.iter().chain(HEADERS) {
            println!("cargo:rerun-if-changed={SOURCE_DIR}/{source}");
        }
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
        let uapi = out_dir.join("uapi/linux");
        std::fs::create_dir_all(&uapi).expect("creating $OUT_DIR/uapi/linux");
        std::fs::copy(format!("{SOURCE_DIR}/{UAPI_LINK}"), uapi.join("rmemring.h"))
            .expect("copying rmemring's UAPI header");
        let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
        let clang = env::var_os("BPF_CLANG").unwrap_or_else(|| "clang".into());
        for program in PROGRAMS {
            let source = manifest_dir.join(SOURCE_DIR).join(program);
            let object = out_dir.join(format!("{}.o", program.trim_end_matches(".c")));
            // -mcpu=v3: 32-bit subregisters and jumps (kernels since 5.1).
            let built = SkeletonBuilder::new()
                .source(&source)
                .obj(&object)
                .clang(&clang)
                .clang_args([
                    "-Wall".as_ref(),
                    "-mcpu=v3".as_ref(),
                    "-I".as_ref(),
                    out_dir.join("uapi").as_os_str(),
                ])
                .build();
            if let Err(err) = built {
                // `{:#}`: the whole chain, clang's own messages included.
                eprintln!(
                    "error: {err:#}\n\
                     the `bpf` feature needs clang to compile {}; install it \
                     (Debian: `apt-get install clang`) or point BPF_CLANG at one",
                    source.display()
                );
                exit(1);
            }
        }
    }
}
