//! A process's memory and CPU from `/proc` (Linux): resident set size from
//! `/proc/PID/status`, user + system CPU time from `/proc/PID/stat`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at
/// 100 per second in its user ABI (whatever the kernel's own HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// How often the resident set is sampled while a run goes on.
const RSS_INTERVAL: Duration = Duration::from_millis(100);

/// `VmRSS` in KiB, from the text of `/proc/PID/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `utime + stime` in ticks, from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself; the fields after its last `)` start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // fields 14 and 15
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A CPU-time reading to measure an interval from.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    ticks: u64,
    at: Instant,
}

impl CpuMark {
    pub fn now(pid: u32) -> Option<Self> {
        Some(Self {
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// Average CPU use since this mark, in percent of one core (two busy
    /// cores: 200 %).
    pub fn percent_until(&self, later: &CpuMark) -> Option<f64> {
        let seconds = later.at.checked_duration_since(self.at)?.as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let cpu = later.ticks.saturating_sub(self.ticks) as f64 / TICKS_PER_SECOND;
        Some(100.0 * cpu / seconds)
    }
}

/// Samples a process's RSS in the background and keeps the peak.
pub struct RssSampler {
    pid: u32,
    start_kib: u64,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let start_kib = rss_kib(pid).unwrap_or(0);
        let peak_kib = Arc::new(AtomicU64::new(start_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(RSS_INTERVAL);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    match rss_kib(pid) {
                        Some(kib) => {
                            peak_kib.fetch_max(kib, Ordering::Relaxed);
                        }
                        None => break, // the process is gone
                    }
                }
            }
        });
        Self {
            pid,
            start_kib,
            peak_kib,
            stop,
            task,
        }
    }

    /// Stops sampling; the figures, with the CPU use measured by the caller.
    pub async fn finish(self, cpu_percent: Option<f64>) -> ServerResources {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let end_kib = rss_kib(self.pid).unwrap_or(0);
        let peak_kib = self.peak_kib.load(Ordering::Relaxed).max(end_kib);
        let mb = |kib: u64| kib as f64 / 1024.0;
        ServerResources {
            pid: self.pid,
            rss_start_mb: mb(self.start_kib),
            rss_peak_mb: mb(peak_kib),
            rss_end_mb: mb(end_kib),
            cpu_percent,
        }
    }
}

/// Server resource figures for a report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerResources {
    pub pid: u32,
    /// RSS before the run's sockets opened (after setup: password hashing
    /// during setup can leave a lot resident).
    pub rss_start_mb: f64,
    /// Highest RSS seen from the first connection to the end of the drain.
    pub rss_peak_mb: f64,
    /// RSS when the run ended.
    pub rss_end_mb: f64,
    /// Average CPU, percent of one core, over the measurement window
    /// (closed and rate modes), the replay (history mode) or the timed
    /// requests (chat-list mode).
    pub cpu_percent: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_status() {
        let status = "Name:\tchat-server\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime ...
        let stat = "4242 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks(pid).is_some());
    }

    #[test]
    fn cpu_percent_is_per_core() {
        let start = Instant::now();
        let a = CpuMark {
            ticks: 100,
            at: start,
        };
        let b = CpuMark {
            ticks: 400,
            at: start + Duration::from_secs(2),
        };
        // 3 s of CPU in 2 s: one and a half cores.
        assert_eq!(a.percent_until(&b), Some(150.0));
    }
}
