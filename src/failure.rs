//! How a `difflow` command fails, and the exit code each way means: the one place that
//! knows them (1: the input is wrong, 2: the work failed, 130: stopped).

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Bad names, options or input: exit 1.
    Usage(String),
    /// Exit 1 with what is wrong already printed: diagnostics, differences between two
    /// runs, an unformatted file.
    Reported,
    /// A stage, the worker or another step of the work failed: exit 2.
    Failed(String),
    /// Stopped by Ctrl-C or SIGTERM; the message says what was kept and how to go on: exit 130.
    Interrupted(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Failed(m) | Failure::Interrupted(m) => f.write_str(m),
            Failure::Reported => f.write_str("see the problems printed above"),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Reported => 1,
            Failure::Failed(_) => 2,
            Failure::Interrupted(_) => 130,
        }
    }

    /// What to print on stderr: nothing for diagnostics already printed, the message as an
    /// error, or an interruption's account as it is.
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::Reported => None,
            Failure::Usage(m) | Failure::Failed(m) => Some(format!("error: {m}")),
            Failure::Interrupted(m) => Some(m.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_exit_code_and_message() {
        assert_eq!(Failure::Usage("bad".into()).exit_code(), 1);
        assert_eq!(Failure::Reported.exit_code(), 1);
        assert_eq!(Failure::Failed("x".into()).exit_code(), 2);
        assert_eq!(Failure::Interrupted("kept".into()).exit_code(), 130);
        assert_eq!(Failure::Failed("x".into()).message().as_deref(), Some("error: x"));
        assert_eq!(Failure::Interrupted("kept".into()).message().as_deref(), Some("kept"));
        assert_eq!(Failure::Reported.message(), None);
    }
}
