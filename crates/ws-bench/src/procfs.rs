//! What the load generator reads about the server process from `/proc`:
//! CPU time (utime + stime), resident memory and open file descriptors.

use std::fs;
use std::io;

/// Clock ticks per second of `/proc/PID/stat` times.
pub(crate) fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU time (user + system) the process has used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let mut fields = rest.split_whitespace();
    // Fields 3.. of stat(5): utime is field 14, stime field 15.
    let utime: u64 = fields
        .nth(11)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("no utime in /proc/PID/stat"))?;
    let stime: u64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("no stime in /proc/PID/stat"))?;
    Ok((utime + stime) as f64 / ticks_per_second())
}

/// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// Open file descriptors of the process.
pub(crate) fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Busy time of one core so far, in seconds, from `/proc/stat`: user,
/// nice, system, irq and softirq — everything but idle, iowait and steal.
/// Softirq matters: loopback TCP delivers a sender's packets in softirq on
/// the sender's core, time that no process is charged for.
pub(crate) fn core_busy_seconds(core: usize) -> io::Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| io::Error::other(format!("no {name} in /proc/stat")))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0usize, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| f.get(i))
        .sum::<u64>();
    Ok(busy as f64 / ticks_per_second())
}

/// TCP counters of `/proc/net/netstat` that tell when the kernel, not the
/// server, slowed a run down: accept-queue overflows (each costs a client
/// a 1 s SYN retransmission), SYN retransmissions and TIME-WAIT overflows.
pub(crate) const TCP_COUNTERS: &[&str] = &[
    "ListenOverflows",
    "ListenDrops",
    "TCPSynRetrans",
    "TCPTimeWaitOverflow",
    "TWRecycled",
];

/// The current values of [`TCP_COUNTERS`] (machine-wide).
pub(crate) fn tcp_counters() -> Vec<u64> {
    let Ok(text) = fs::read_to_string("/proc/net/netstat") else {
        return vec![0; TCP_COUNTERS.len()];
    };
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return vec![0; TCP_COUNTERS.len()];
    };
    let pairs: Vec<(&str, u64)> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| (n, v.parse().unwrap_or(0)))
        .collect();
    TCP_COUNTERS
        .iter()
        .map(|c| pairs.iter().find(|(n, _)| n == c).map_or(0, |p| p.1))
        .collect()
}

/// The increase of each of [`TCP_COUNTERS`] since `before`, as JSON; only
/// the counters that moved.
pub(crate) fn tcp_counters_since(before: &[u64]) -> serde_json::Value {
    let now = tcp_counters();
    let m: serde_json::Map<String, serde_json::Value> = TCP_COUNTERS
        .iter()
        .zip(now.iter().zip(before))
        .filter(|(_, (n, b))| n > b)
        .map(|(name, (n, b))| ((*name).to_owned(), (n - b).into()))
        .collect();
    serde_json::Value::Object(m)
}

/// CPU time of a server, sampled at the start and end of a measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuMeter {
    pid: Option<u32>,
    core: Option<usize>,
    server: f64,
    core_busy: f64,
    client: f64,
}

/// CPU seconds used in a measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuUsed {
    /// By the server process (user + system), when its pid is known.
    pub(crate) server: Option<f64>,
    /// On the server's core, softirq included, when the core is known.
    pub(crate) core: Option<f64>,
    /// By this process.
    pub(crate) client: f64,
}

impl CpuMeter {
    /// Starts measuring `pid` (nothing when `None`), the server's `core`
    /// and this process.
    pub(crate) fn start(pid: Option<u32>, core: Option<usize>) -> Self {
        Self {
            pid,
            core,
            server: pid.and_then(|p| cpu_seconds(p).ok()).unwrap_or(0.0),
            core_busy: core.and_then(|c| core_busy_seconds(c).ok()).unwrap_or(0.0),
            client: cpu_seconds(std::process::id()).unwrap_or(0.0),
        }
    }

    /// CPU seconds used since `start`.
    pub(crate) fn stop(&self) -> CpuUsed {
        CpuUsed {
            server: self
                .pid
                .and_then(|p| cpu_seconds(p).ok())
                .map(|now| now - self.server),
            core: self
                .core
                .and_then(|c| core_busy_seconds(c).ok())
                .map(|now| now - self.core_busy),
            client: cpu_seconds(std::process::id()).unwrap_or(0.0) - self.client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(rss_kib(me).unwrap() > 0);
        assert!(fd_count(me).unwrap() >= 3);
        assert!(core_busy_seconds(0).unwrap() >= 0.0);
        assert_eq!(tcp_counters().len(), TCP_COUNTERS.len());
    }
}
