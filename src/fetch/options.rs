//! How a download behaves, and the environment variables that change it (documented in
//! docs/data.md, Fetching).

use std::path::PathBuf;
use std::time::Duration;

/// The longest one file may take, all attempts together (seconds).
pub const DEADLINE_VAR: &str = "DIFFLOW_FETCH_DEADLINE";
/// The least bytes per second a transfer must keep up, over each window (0: no minimum).
pub const MIN_RATE_VAR: &str = "DIFFLOW_FETCH_MIN_RATE";
/// The window of the minimum rate (seconds).
pub const RATE_WINDOW_VAR: &str = "DIFFLOW_FETCH_RATE_WINDOW";
/// The most bytes a file without a pinned size may have (replaces the caps of sources.rs).
pub const MAX_BYTES_VAR: &str = "DIFFLOW_FETCH_MAX_BYTES";

/// How a download behaves; the defaults suit a person at a terminal.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes once connected.
    pub read_timeout: Duration,
    /// Resumed attempts after a transfer broke off having made progress.
    pub retries: u32,
    /// Where unfinished downloads wait (`NAME.part`); on the same file system as the
    /// destination so that the final move is atomic.
    pub partial_dir: PathBuf,
    /// A progress bar on a terminal and a summary line on stderr.
    pub show_progress: bool,
    /// The longest one file may take, all attempts together.
    pub deadline: Duration,
    /// The least bytes per second over each `rate_window` (0: no minimum).
    pub min_rate: u64,
    pub rate_window: Duration,
    /// The most bytes of a file whose size is not pinned, instead of its source's cap.
    pub max_bytes: Option<u64>,
}

impl FetchOptions {
    pub fn new(partial_dir: PathBuf) -> FetchOptions {
        FetchOptions {
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            retries: 5,
            partial_dir,
            show_progress: true,
            deadline: Duration::from_secs(2 * 3600),
            min_rate: 1024,
            rate_window: Duration::from_secs(30),
            max_bytes: None,
        }
    }

    /// The defaults with the `DIFFLOW_FETCH_*` variables of the environment applied.
    pub fn from_env(partial_dir: PathBuf) -> Result<FetchOptions, String> {
        Self::from_vars(partial_dir, |name| std::env::var(name).ok())
    }

    fn from_vars(partial_dir: PathBuf, var: impl Fn(&str) -> Option<String>) -> Result<FetchOptions, String> {
        let mut o = FetchOptions::new(partial_dir);
        if let Some(v) = var(DEADLINE_VAR) {
            o.deadline = seconds(DEADLINE_VAR, &v)?;
        }
        if let Some(v) = var(RATE_WINDOW_VAR) {
            o.rate_window = seconds(RATE_WINDOW_VAR, &v)?;
        }
        if let Some(v) = var(MIN_RATE_VAR) {
            o.min_rate = count(MIN_RATE_VAR, &v)?;
        }
        if let Some(v) = var(MAX_BYTES_VAR) {
            o.max_bytes = Some(count(MAX_BYTES_VAR, &v)?);
        }
        Ok(o)
    }

    /// The longest wait for the next bytes: with a minimum rate, a stall must not outlast
    /// its window.
    pub fn stall_timeout(&self) -> Duration {
        if self.min_rate > 0 {
            self.read_timeout.min(self.rate_window)
        } else {
            self.read_timeout
        }
    }
}

fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{name} must be a number of seconds above 0, got `{value}`")),
    }
}

fn count(name: &str, value: &str) -> Result<u64, String> {
    value.trim().parse::<u64>().map_err(|_| format!("{name} must be a whole number of bytes, got `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<FetchOptions, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FetchOptions::from_vars(PathBuf::from("p"), |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_environment_sets_deadline_rate_and_cap_and_bad_values_are_named() {
        let d = with(&[]).unwrap();
        assert_eq!((d.deadline, d.min_rate, d.max_bytes), (Duration::from_secs(7200), 1024, None));
        assert_eq!(d.stall_timeout(), Duration::from_secs(30));
        let o =
            with(&[(DEADLINE_VAR, "1.5"), (MIN_RATE_VAR, "0"), (RATE_WINDOW_VAR, "2"), (MAX_BYTES_VAR, "10")]).unwrap();
        assert_eq!((o.deadline, o.min_rate, o.rate_window), (Duration::from_millis(1500), 0, Duration::from_secs(2)));
        assert_eq!((o.max_bytes, o.stall_timeout()), (Some(10), Duration::from_secs(60)));
        for (name, bad) in [(DEADLINE_VAR, "0"), (DEADLINE_VAR, "soon"), (RATE_WINDOW_VAR, "inf"), (MIN_RATE_VAR, "-1")]
        {
            assert!(with(&[(name, bad)]).unwrap_err().starts_with(name), "{name}={bad}");
        }
    }
}
