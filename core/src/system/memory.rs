//! Memory as the edge gateway's statistics showed it (psutil there, sysinfo here).

use serde::Serialize;
use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System};
use tracing::warn;

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryFigures {
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// Share of the host's memory in use, 0–100.
    pub used_percent: f64,
    /// This API process's resident set; `None` where the platform doesn't tell.
    pub api_rss_bytes: Option<u64>,
}

/// Reads the host's memory and this process's RSS: a few reads of /proc on Linux, so it
/// runs on the blocking pool rather than on a runtime worker. `None` where the platform
/// can't be read (the rest of the statistics still answer).
pub async fn read() -> Option<MemoryFigures> {
    match tokio::task::spawn_blocking(read_now).await {
        Ok(Ok(figures)) => Some(figures),
        Ok(Err(e)) => {
            warn!(error = %e, "host memory could not be read");
            None
        }
        Err(e) => {
            warn!(error = %e, "reading host memory failed");
            None
        }
    }
}

fn read_now() -> Result<MemoryFigures, sysinfo::Error> {
    let mut system = System::new()?;
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let total = system.total_memory();
    let available = system.available_memory();
    let api_rss_bytes = sysinfo::get_current_pid().ok().and_then(|pid| {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(|p| p.memory())
    });
    Ok(MemoryFigures {
        total_bytes: total,
        available_bytes: available,
        used_percent: used_percent(total, available),
        api_rss_bytes,
    })
}

fn used_percent(total: u64, available: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let used = total.saturating_sub(available) as f64 / total as f64 * 100.0;
    (used * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_share_is_rounded_to_a_tenth_and_safe_on_an_unknown_total() {
        assert_eq!(used_percent(1000, 250), 75.0);
        assert_eq!(used_percent(3, 2), 33.3);
        assert_eq!(used_percent(0, 0), 0.0);
        assert_eq!(used_percent(100, 200), 0.0);
    }

    #[test]
    fn this_process_is_measured() {
        let figures = read_now().expect("Linux memory is readable");
        assert!(figures.total_bytes > 0);
        assert!(figures.available_bytes <= figures.total_bytes);
        let rss = figures
            .api_rss_bytes
            .expect("Linux reports a process's RSS");
        assert!(
            rss > 1024 * 1024,
            "a test binary holds more than 1 MiB: {rss}"
        );
    }
}
