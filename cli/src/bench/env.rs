//! The machine a benchmark ran on, so that numbers are never quoted
//! without it: CPU, cores, kernel, and whether it is emulated.

use serde::Serialize;
use serde_json::Value;

/// Where the benchmark ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Env {
    pub(crate) cpu_model: String,
    /// CPUs this process may run on.
    pub(crate) cpus: usize,
    pub(crate) kernel: String,
    pub(crate) arch: String,
    /// "QEMU TCG (emulated)", "virtual machine", "bare metal" or the like.
    pub(crate) virtualization: String,
    /// Which of the CPU flags that make the kernel's copies (and glibc's
    /// memcpy) one `rep movsb` the CPU has: "erms", "fsrm", both, or
    /// "neither" (QEMU TCG emulates `rep movsb` a byte at a time).
    pub(crate) copy_flags: String,
    /// The kernel's clocksource: the record timestamps' resolution
    /// depends on it (`jiffies` makes latencies meaningless).
    pub(crate) clocksource: String,
    pub(crate) data_size: u64,
    pub(crate) cache_mode: String,
    pub(crate) rmemring_version: String,
    pub(crate) bpf: bool,
    /// The command line that produced the numbers.
    pub(crate) command: String,
}

impl Env {
    /// Looks at this machine.
    pub(crate) fn probe(data_size: u64, cache_mode: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let cpu_model = field("model name")
            .or_else(|| field("Hardware"))
            .or_else(|| field("CPU part").map(|p| format!("CPU part {p}")))
            .unwrap_or_else(|| "unknown".to_owned());
        let hypervisor_flag =
            field("flags").is_some_and(|f| f.split(' ').any(|w| w == "hypervisor"));
        let hypervisor_type = std::fs::read_to_string("/sys/hypervisor/type").ok();
        let virtualization = if is_tcg_model(&cpu_model) {
            "QEMU TCG (emulated: absolute rates are not hardware rates)".to_owned()
        } else if let Some(t) = hypervisor_type {
            format!("virtual machine ({})", t.trim())
        } else if hypervisor_flag {
            "virtual machine (hypervisor CPU flag; KVM or another accelerator)".to_owned()
        } else {
            "no hypervisor detected".to_owned()
        };
        let copy_flags = {
            let flags = field("flags").unwrap_or_default();
            let have: Vec<&str> = ["erms", "fsrm"]
                .into_iter()
                .filter(|f| flags.split(' ').any(|w| w == *f))
                .collect();
            if have.is_empty() {
                "neither".to_owned()
            } else {
                have.join(", ")
            }
        };
        let (kernel, arch) = uname();
        let clocksource = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        Self {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            arch,
            virtualization,
            copy_flags,
            clocksource,
            data_size,
            cache_mode: cache_mode.to_owned(),
            rmemring_version: env!("CARGO_PKG_VERSION").to_owned(),
            bpf: cfg!(feature = "bpf"),
            command: command(),
        }
    }

    /// The JSON line (`"bench":"kernel-env"`), fields in alphabetical
    /// order as [`RowJson`](super::row::RowJson)'s.
    pub(crate) fn to_json(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Json<'a> {
            arch: &'a str,
            bench: &'static str,
            bpf: bool,
            cache_mode: &'a str,
            clocksource: &'a str,
            command: &'a str,
            copy_flags: &'a str,
            cpu_model: &'a str,
            cpus: usize,
            data_size: u64,
            kernel: &'a str,
            rmemring_version: &'a str,
            virtualization: &'a str,
        }
        Json {
            arch: &self.arch,
            bench: "kernel-env",
            bpf: self.bpf,
            cache_mode: &self.cache_mode,
            clocksource: &self.clocksource,
            command: &self.command,
            copy_flags: &self.copy_flags,
            cpu_model: &self.cpu_model,
            cpus: self.cpus,
            data_size: self.data_size,
            kernel: &self.kernel,
            rmemring_version: &self.rmemring_version,
            virtualization: &self.virtualization,
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Some(Self {
            cpu_model: s("cpu_model"),
            cpus: usize::try_from(v["cpus"].as_u64()?).ok()?,
            kernel: s("kernel"),
            arch: s("arch"),
            virtualization: s("virtualization"),
            copy_flags: s("copy_flags"),
            clocksource: s("clocksource"),
            data_size: v["data_size"].as_u64().unwrap_or(0),
            cache_mode: s("cache_mode"),
            rmemring_version: s("rmemring_version"),
            bpf: v["bpf"].as_bool().unwrap_or(false),
            command: s("command"),
        })
    }

    /// One paragraph for the top of a report.
    pub(crate) fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "machine: {} ({} CPUs available), {}",
                self.cpu_model, self.cpus, self.arch
            ),
            format!(
                "kernel: Linux {}, clocksource {}; {}; CPU copy flags (ERMS, FSRM: `rep movsb` copies): {}",
                self.kernel, self.clocksource, self.virtualization, self.copy_flags
            ),
            format!(
                "ring: {} MiB data area, {} mapping; rmemring {}{}",
                self.data_size >> 20,
                self.cache_mode,
                self.rmemring_version,
                if self.bpf { " with the BPF peer" } else { "" }
            ),
            format!("command: {}", self.command),
        ]
    }
}

/// Whether a CPU model name is QEMU's TCG (`-cpu max` and the default
/// x86 models say "QEMU TCG CPU ..." under TCG).
fn is_tcg_model(model: &str) -> bool {
    model.contains("QEMU TCG")
}

/// Whether this machine is emulated by QEMU TCG.
pub(crate) fn under_tcg() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| k.trim() == "model name" && is_tcg_model(v))
    })
}

/// This process's command line, with the glibc tunables it ran under
/// (they change `memcpy`).
fn command() -> String {
    let args = std::env::args().collect::<Vec<_>>().join(" ");
    match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() => format!("GLIBC_TUNABLES={t} {args}"),
        _ => args,
    }
}

/// The kernel release and machine name.
fn uname() -> (String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => {
            let s = |f: &std::ffi::OsStr| f.to_string_lossy().into_owned();
            (s(u.release()), s(u.machine()))
        }
        Err(_) => ("unknown".to_owned(), "unknown".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_survives_json() {
        let env = Env {
            cpu_model: "QEMU TCG CPU version 2.5+".into(),
            cpus: 2,
            kernel: "7.2.13".into(),
            data_size: 1 << 24,
            cache_mode: "write-back".into(),
            bpf: true,
            command: "rmemring bench --json".into(),
            ..Env::default()
        };
        let line = crate::bench::row::json(env.to_json());
        assert_eq!(line["bench"], "kernel-env");
        assert_eq!(Env::from_json(&line), Some(env));
    }
}
