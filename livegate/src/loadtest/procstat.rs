//! CPU and memory of chosen processes, from `/proc/PID/stat` and `/proc/PID/status`.

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, 100 on every Linux
/// architecture the toolkit runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// One process being watched.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) pid: u32,
    pub(crate) name: String,
    last: Option<(u64, Instant)>,
}

/// One reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// CPU used since the last reading, percent of one core.
    pub(crate) cpu_percent: f64,
    /// Resident memory, MiB.
    pub(crate) rss_mib: f64,
}

impl Watched {
    /// Starts watching `pid`; `None` if there is no such process.
    pub(crate) fn new(pid: u32, name: Option<&str>) -> Option<Watched> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let mut watched = Watched {
            pid,
            name: name.map_or_else(|| comm.trim().to_owned(), str::to_owned),
            last: None,
        };
        watched.read();
        Some(watched)
    }

    /// Reads the process now; `None` once it is gone (or before a CPU rate can be given).
    pub(crate) fn read(&mut self) -> Option<Reading> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let ticks = cpu_ticks(&stat)?;
        let rss_kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0.0);
        let now = Instant::now();
        let previous = self.last.replace((ticks, now));
        let (then_ticks, then) = previous?;
        let seconds = now.duration_since(then).as_secs_f64().max(1e-3);
        Some(Reading {
            cpu_percent: ticks.saturating_sub(then_ticks) as f64 / TICKS_PER_SECOND / seconds
                * 100.0,
            rss_mib: rss_kib / 1024.0,
        })
    }
}

/// utime + stime from a `/proc/PID/stat` line (the fields after the parenthesised name,
/// which may itself contain spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_watched() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0";
        assert_eq!(cpu_ticks(line), Some(175));
        let mut me = Watched::new(std::process::id(), None).unwrap();
        let mut spin = 0u64;
        for i in 0..2_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        let reading = me.read().unwrap();
        assert!(reading.rss_mib > 1.0, "{reading:?}");
        assert!(reading.cpu_percent >= 0.0);
        assert!(Watched::new(u32::MAX, None).is_none());
    }
}
