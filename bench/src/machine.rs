//! What a run ran on and when, printed above its tables (and to standard
//! error when it starts), so a table pasted into BENCHMARKS.md carries its
//! date, source revision and host without anyone copying them by hand.
//!
//! Everything here is read from Linux's `/proc` and `/sys` and from the tools'
//! own `--version`; whatever cannot be read is left out of the line (a bench
//! run must not fail because a description is incomplete), and nothing read
//! here is trusted to be well formed: every parse is fallible.

use std::path::Path;
use std::process::Command;

use time::OffsetDateTime;

/// The processor as `/proc/cpuinfo` describes it.
#[derive(Debug, Default, PartialEq)]
pub struct Cpu {
    /// `model name` of the first processor.
    pub model: Option<String>,
    /// `cpu family` and `model`, when both are numbers.
    pub family_model: Option<(u32, u32)>,
    /// How many `processor` entries there are.
    pub count: usize,
    /// The flags that change what the crypto and hashing code runs, present
    /// or absent (`None` when no flags line was found).
    pub features: Option<Vec<(&'static str, bool)>>,
    /// The `hypervisor` flag: a virtual machine.
    pub virtual_machine: bool,
}

/// Flags that decide which code paths ring, sha2 and base64-simd take.
const FEATURES: [&str; 4] = ["avx2", "avx512f", "sha_ni", "vaes"];

/// Reads `/proc/cpuinfo` text; unknown or malformed lines are skipped.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    let mut family = None;
    let mut model_no = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpu.count += 1,
            // Only the first processor's description: the others repeat it.
            _ if cpu.count > 1 => {}
            "model name" if cpu.model.is_none() && !value.is_empty() => {
                cpu.model = Some(value.to_owned());
            }
            "cpu family" => family = value.parse().ok(),
            "model" => model_no = value.parse().ok(),
            "flags" if cpu.features.is_none() => {
                let flags: Vec<&str> = value.split_whitespace().collect();
                cpu.features = Some(FEATURES.map(|f| (f, flags.contains(&f))).to_vec());
                cpu.virtual_machine = flags.contains(&"hypervisor");
            }
            _ => {}
        }
    }
    cpu.family_model = family.zip(model_no);
    cpu
}

/// `MemTotal` from `/proc/meminfo` text, in bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// One cache level as the kernel lists it under
/// `/sys/devices/system/cpu/cpu0/cache/index*/`: `level`, `type`, `size`.
/// `None` for anything that is not a data or unified cache with a size.
pub fn cache_entry(level: &str, kind: &str, size: &str) -> Option<String> {
    let level: u8 = level.trim().parse().ok()?;
    let name = match kind.trim() {
        "Data" => format!("L{level}d"),
        "Unified" => format!("L{level}"),
        _ => return None,
    };
    let size = size.trim();
    let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    let size = match unit {
        "K" if n >= 1024 && n.is_multiple_of(1024) => format!("{} MiB", n / 1024),
        "K" => format!("{n} KiB"),
        "M" => format!("{n} MiB"),
        _ => return None,
    };
    Some(format!("{name} {size}"))
}

/// The caches the first processor sees (L3 is usually shared by all).
fn caches() -> Vec<String> {
    let dir = Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut found: Vec<String> = (0..8)
        .filter_map(|i| {
            let d = dir.join(format!("index{i}"));
            let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
            cache_entry(&read("level")?, &read("type")?, &read("size")?)
        })
        .collect();
    found.dedup();
    found
}

/// The first line a tool prints for `args`, if it runs.
fn tool_version(tool: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(tool).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .to_owned();
    (!line.is_empty()).then_some(line)
}

/// `redis-server --version` prints `Redis server v=7.0.15 sha=…`: the version.
pub fn redis_version(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .filter(|v| !v.is_empty())
}

/// `wrk --version` prints `wrk debian/4.1.0-3+b2 [epoll] …` or
/// `wrk 4.2.0 [epoll] …`: the second word.
pub fn wrk_version(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next()? == "wrk").then_some(())?;
    words.next()
}

/// The source tree's revision: short commit, and whether files tracked by
/// git differ from it. Read when the run starts, from the directory the
/// bench was built from (so a binary run elsewhere says "unknown").
pub fn revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let Some(commit) = tool_version("git", &["-C", dir, "rev-parse", "--short", "HEAD"]) else {
        return "revision unknown".to_owned();
    };
    let dirty = Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{commit} with uncommitted changes")
    } else {
        commit
    }
}

/// `2026-12-05 07:13 UTC`.
pub fn utc_minute(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

/// The host, as one markdown line (everything that could be read).
pub fn host_line() -> String {
    let mut parts = Vec::new();
    let cpu = parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let mut what = match &cpu.model {
        Some(m) => format!("{} processors, `{m}`", cpu.count),
        None if cpu.count > 0 => format!("{} processors", cpu.count),
        None => "processor unknown".to_owned(),
    };
    if let Some((f, m)) = cpu.family_model {
        what.push_str(&format!(" (family {f}, model {m})"));
    }
    parts.push(what);
    if let Some(features) = &cpu.features {
        let list: Vec<String> = features
            .iter()
            .map(|(f, on)| {
                if *on {
                    f.to_string()
                } else {
                    format!("no {f}")
                }
            })
            .collect();
        parts.push(list.join(", "));
    }
    let caches = caches();
    if !caches.is_empty() {
        parts.push(format!("caches seen by cpu0: {}", caches.join(", ")));
    }
    if let Some(bytes) =
        parse_mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
    {
        parts.push(format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30)));
    }
    if cpu.virtual_machine {
        parts.push("virtual machine".to_owned());
    }
    if let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        parts.push(format!("Linux {}", release.trim()));
    }
    if let Ok(source) =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    {
        parts.push(format!("clock source {}", source.trim()));
    }
    let wrk = tool_version("wrk", &["--version"]);
    if let Some(v) = wrk.as_deref().and_then(wrk_version) {
        parts.push(format!("wrk {v}"));
    }
    let redis = tool_version("redis-server", &["--version"]);
    if let Some(v) = redis.as_deref().and_then(redis_version) {
        parts.push(format!("redis-server {v}"));
    }
    format!("Host: {}.", parts.join("; "))
}

/// When, from what, with which command line: one markdown line.
/// `revision` is [`revision`]'s answer, read once when the run starts.
pub fn run_line(
    started: OffsetDateTime,
    ended: Option<OffsetDateTime>,
    revision: &str,
    args: &[String],
) -> String {
    let when = match ended {
        Some(end) => format!("{} to {}", utc_minute(started), utc_minute(end)),
        None => format!("started {}", utc_minute(started)),
    };
    format!(
        "Run: {when}; sessionkit at {revision}; `sessionkit-bench {}`.",
        args.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_the_first_processors_description_and_the_count() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                    model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 sha_ni vaes hypervisor\n\n\
                    processor\t: 1\ncpu family\t: 99\nmodel\t\t: 7\nmodel name\t: Other\n\
                    flags\t\t: avx512f\n";
        let cpu = parse_cpuinfo(text);
        assert_eq!(cpu.model.as_deref(), Some("AMD EPYC"));
        assert_eq!(cpu.family_model, Some((25, 1)));
        assert_eq!(cpu.count, 2);
        assert_eq!(
            cpu.features,
            Some(vec![
                ("avx2", true),
                ("avx512f", false),
                ("sha_ni", true),
                ("vaes", true)
            ])
        );
        assert!(cpu.virtual_machine);
    }

    #[test]
    fn malformed_cpuinfo_reads_as_unknown_not_a_panic() {
        for text in [
            "",
            ":::",
            "processor",
            "cpu family: x\nmodel: -1\nmodel name:\n",
            "\u{0}\u{ffff}: \u{202e}",
            "flags",
        ] {
            let cpu = parse_cpuinfo(text);
            assert_eq!(cpu.model, None, "{text:?}");
            assert_eq!(cpu.family_model, None, "{text:?}");
            assert_eq!(cpu.features, None, "{text:?}");
        }
    }

    #[test]
    fn mem_total_is_read_in_kib_and_refused_otherwise() {
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        for bad in [
            "",
            "MemTotal:",
            "MemTotal: 12",
            "MemTotal: 12 MB",
            "MemTotal: x kB",
            "MemTotal: 18446744073709551615 kB",
            "MemFree: 5 kB",
        ] {
            assert_eq!(parse_mem_total(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cache_entries_name_data_and_unified_caches_with_their_size() {
        assert_eq!(
            cache_entry("1\n", "Data\n", "32K\n").as_deref(),
            Some("L1d 32 KiB")
        );
        assert_eq!(
            cache_entry("2", "Unified", "512K").as_deref(),
            Some("L2 512 KiB")
        );
        assert_eq!(
            cache_entry("3", "Unified", "32768K").as_deref(),
            Some("L3 32 MiB")
        );
        assert_eq!(cache_entry("1", "Instruction", "32K"), None);
        for (level, kind, size) in [
            ("x", "Data", "32K"),
            ("2", "Unified", ""),
            ("2", "Unified", "K"),
            ("2", "Unified", "512"),
            ("2", "Unified", "512G"),
            ("2", "Unified", "99999999999999999999999K"),
        ] {
            assert_eq!(
                cache_entry(level, kind, size),
                None,
                "{level} {kind} {size}"
            );
        }
    }

    #[test]
    fn tool_versions_are_picked_out_of_their_banners() {
        assert_eq!(
            redis_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            Some("7.0.15")
        );
        assert_eq!(redis_version("Redis server"), None);
        assert_eq!(redis_version("v="), None);
        assert_eq!(
            wrk_version("wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"),
            Some("debian/4.1.0-3+b2")
        );
        assert_eq!(wrk_version("wrk"), None);
        assert_eq!(wrk_version("curl 8.0"), None);
        assert_eq!(wrk_version(""), None);
    }

    #[test]
    fn times_are_printed_to_the_minute_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_796_454_822).unwrap();
        assert_eq!(utc_minute(t), "2026-12-05 07:13 UTC");
        let shifted = t.to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(utc_minute(shifted), "2026-12-05 07:13 UTC");
    }

    #[test]
    fn the_host_line_never_fails_and_names_what_it_read() {
        let line = host_line();
        assert!(line.starts_with("Host: "), "{line}");
        assert!(line.ends_with('.'), "{line}");
    }
}
