//! What the gateway remembers about one legacy session.

use std::sync::Mutex;

use mcpgate_core::LogLevel;

/// Per-session state of a legacy (initialize-based) client. Stateless requests get a fresh one each time.
#[derive(Debug)]
pub struct SessionState {
    log_level: Mutex<LogLevel>,
}

impl Default for SessionState {
    fn default() -> Self {
        // Until the client sets a level, send info and above.
        Self { log_level: Mutex::new(LogLevel::Info) }
    }
}

impl SessionState {
    /// Set the minimum level of log messages sent to the client (`logging/setLevel`).
    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = level;
    }

    /// Whether a message at `level` goes to the client.
    pub fn log_enabled(&self, level: LogLevel) -> bool {
        level >= *self.log_level.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parse a protocol log level name.
pub fn parse_level(name: &str) -> Option<LogLevel> {
    Some(match name {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "notice" => LogLevel::Notice,
        "warning" => LogLevel::Warning,
        "error" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        "alert" => LogLevel::Alert,
        "emergency" => LogLevel::Emergency,
        _ => return None,
    })
}
