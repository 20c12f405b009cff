//! Fault injection and the request log.
//!
//! A [`Mode`] decides how the server treats connections and requests; connection kills end
//! every open TCP connection at once (watch streams included), the way a crashed apiserver or a
//! broken network path would.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serve normally.
    Normal,
    /// Accept TCP connections and close them at once, without reading; open connections are
    /// closed when this mode is set. Clients see "connection closed" or "connection reset".
    Refuse,
    /// Accept connections and requests but never answer; open watch streams stop sending.
    /// Leaving this mode closes every connection, so stalled requests end then.
    Stall,
    /// Answer every request with this HTTP status code and a `Status` body (such as 500 or
    /// 503). Open watch streams are left alone; call `drop_connections` to end them too.
    Error(u16),
}

/// Errors of fault configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// A mode name given on the command line or in a request is not known.
    #[error("unknown mode {0:?}: expected normal, refuse, stall or error:CODE")]
    UnknownMode(String),
}

impl std::str::FromStr for Mode {
    type Err = FaultError;

    /// Parses `normal`, `refuse`, `stall` or `error:503`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(Self::Normal),
            "refuse" => Ok(Self::Refuse),
            "stall" => Ok(Self::Stall),
            _ => s
                .strip_prefix("error:")
                .and_then(|code| code.parse::<u16>().ok())
                .filter(|code| (400..600).contains(code))
                .map(Self::Error)
                .ok_or_else(|| FaultError::UnknownMode(s.to_owned())),
        }
    }
}

/// What a request asked for, as the apiserver's audit log would name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET on a collection.
    List,
    /// GET on a collection with `watch=true`.
    Watch,
    /// GET on one object.
    Get,
    /// POST on a collection.
    Create,
    /// PUT on an object.
    Update,
    /// PATCH on an object.
    Patch,
    /// DELETE on an object.
    Delete,
    /// DELETE on a collection.
    DeleteCollection,
    /// Anything else: discovery, `/version`, unknown paths.
    Other,
}

/// One request as it arrived, before any fault was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// What the request asked for.
    pub verb: Verb,
    /// Plural of the resource, such as `services`; empty for non-resource paths.
    pub resource: String,
    /// Namespace from the path; empty when the path has none.
    pub namespace: String,
    /// The `resourceVersion` query parameter, if any.
    pub resource_version: Option<String>,
    /// The `Content-Type` header, if any (tells a server-side apply from other patches).
    pub content_type: Option<String>,
}

/// Shared fault state: the mode, a connection-kill generation and the request log.
pub(crate) struct Faults {
    mode: watch::Sender<Mode>,
    kills: watch::Sender<u64>,
    log: Mutex<Vec<RequestRecord>>,
}

impl Faults {
    pub fn new() -> Self {
        Self {
            mode: watch::Sender::new(Mode::Normal),
            kills: watch::Sender::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn subscribe_mode(&self) -> watch::Receiver<Mode> {
        self.mode.subscribe()
    }

    pub fn set_mode(&self, mode: Mode) {
        let old = self.mode.send_replace(mode);
        let leaves_stall = old == Mode::Stall && mode != Mode::Stall;
        if mode == Mode::Refuse || leaves_stall {
            self.kill_connections();
        }
    }

    /// Ends every open connection; each connection task watches this generation.
    pub fn kill_connections(&self) {
        self.kills.send_modify(|generation| *generation += 1);
    }

    /// A receiver whose `changed()` fires at the next kill.
    pub fn subscribe_kills(&self) -> watch::Receiver<u64> {
        self.kills.subscribe()
    }

    fn log(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, record: RequestRecord) {
        self.log().push(record);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log().clone()
    }

    pub fn clear_requests(&self) {
        self.log().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("stall".parse(), Ok(Mode::Stall));
        assert_eq!("error:503".parse(), Ok(Mode::Error(503)));
        assert!("error:42".parse::<Mode>().is_err());
        assert!("down".parse::<Mode>().is_err());
    }

    #[test]
    fn refuse_and_leaving_stall_kill_connections() {
        let faults = Faults::new();
        let kills = faults.subscribe_kills();
        faults.set_mode(Mode::Stall);
        assert!(!kills.has_changed().unwrap());
        faults.set_mode(Mode::Normal);
        assert_eq!(*kills.borrow(), 1);
        faults.set_mode(Mode::Error(500));
        faults.set_mode(Mode::Refuse);
        assert_eq!(*kills.borrow(), 2);
    }
}
