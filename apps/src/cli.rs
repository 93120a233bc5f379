//! Command-line handling shared by the example programs (`examples/`): addresses given the
//! way Twisted's programs take them, errors as one readable line, and exit statuses as
//! `task.react` sets them.
//!
//! A server takes a bare port (`8000`: every interface, as `reactor.listenTCP(8000, f)`) or
//! `HOST:PORT`; a client takes `HOST:PORT`, where the host may be a name (`localhost:8000`)
//! that the reactor resolves. Arguments are read as `OsString`s: one that is not UTF-8 is a
//! usage error, not a panic. This module parses only; it opens nothing.
//!
//! ```
//! use torsion_apps::cli::{connect_address, listen_address, CliError};
//!
//! let at = listen_address(Some("8000".as_ref()), 1).unwrap();
//! assert_eq!((at.interface.as_str(), at.port), ("0.0.0.0", 8000));
//! let to = connect_address("localhost:8000".as_ref()).unwrap();
//! assert_eq!((to.host.as_str(), to.port), ("localhost", 8000));
//! let bad = connect_address("8000x".as_ref()).unwrap_err();
//! assert!(matches!(bad, CliError::Usage(_)));
//! ```

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::ExitCode;
use std::rc::Rc;

use torsion::defer::{Deferred, Failure};
use torsion::reactor::ReactorCore;

/// Why a program failed, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The arguments were wrong: the usage is printed too, and the exit status is 2.
    Usage(String),
    /// The program ran and failed (could not listen, connect, or finish): exit status 1.
    Failed(String),
}

impl CliError {
    /// The process exit status: 2 for a usage error, 1 for a failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    /// A failure, from anything that displays (an I/O error, `CannotListenError`, a
    /// `Failure`).
    pub fn failed(e: impl fmt::Display) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

/// Runs a program's body on its arguments (without the program name) and turns the result
/// into the exit status, printing an error as `PROGRAM: message` on stderr, followed by
/// `usage` for a usage error. Each example's `main` is this call.
pub fn main(
    program: &str,
    usage: &str,
    body: impl FnOnce(Vec<OsString>) -> Result<(), CliError>,
) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match body(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            if matches!(e, CliError::Usage(_)) {
                eprintln!("usage: {program} {usage}");
            }
            ExitCode::from(e.exit_status())
        }
    }
}

/// Twisted's `task.react` for a client: runs `reactor` until `done` fires, stops it then,
/// and returns what `done` fired with. A failure of `done` is [`CliError::Failed`], prefixed
/// by `what`; so is a reactor stopped before `done` fired (by a signal). `done` may already
/// have fired: the stop then comes before `run`, and `run` returns right after startup.
///
/// ```
/// use torsion::defer::Deferred;
/// use torsion::testing::MemoryReactor;
/// use torsion_apps::cli::react;
///
/// let done = Deferred::new();
/// done.callback(7).unwrap();
/// assert_eq!(react(&MemoryReactor::new(), done, "counting"), Ok(7));
/// ```
pub fn react<R, T>(reactor: &R, done: Deferred<T>, what: &str) -> Result<T, CliError>
where
    R: ReactorCore + Clone + 'static,
    T: 'static,
{
    let outcome: Rc<RefCell<Option<Result<T, Failure>>>> = Rc::default();
    let (o, r) = (outcome.clone(), reactor.clone());
    let _ = done.add_both(move |result: Result<T, Failure>| {
        *o.borrow_mut() = Some(result);
        let _ = r.stop();
        Ok::<(), Failure>(())
    });
    reactor.run().map_err(CliError::failed)?;
    let result = outcome.borrow_mut().take();
    match result {
        Some(Ok(v)) => Ok(v),
        Some(Err(failure)) => Err(CliError::Failed(format!("{what} failed: {failure}"))),
        None => Err(CliError::Failed(format!(
            "{what} failed: the reactor stopped first"
        ))),
    }
}

/// An argument as text: one that is not UTF-8 is a usage error.
pub fn text(arg: &OsStr) -> Result<&str, CliError> {
    arg.to_str().ok_or_else(|| {
        CliError::Usage(format!(
            "argument {:?} is not valid UTF-8",
            arg.to_string_lossy()
        ))
    })
}

/// At most `max` arguments, else a usage error.
pub fn at_most(args: &[OsString], max: usize) -> Result<(), CliError> {
    if args.len() > max {
        return Err(CliError::Usage(format!(
            "expected at most {max} argument(s), got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Where a server listens: `interface` as the reactor's `listen_tcp_with` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// The interface (`0.0.0.0` for every IPv4 interface).
    pub interface: String,
    /// The port (0: the kernel picks one).
    pub port: u16,
}

/// What a client connects to: `host` may be a name; the reactor resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAddress {
    /// A host name or IP address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for ConnectAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A server's address: a bare port (every interface), `HOST:PORT`, or nothing (every
/// interface, `default_port`).
pub fn listen_address(arg: Option<&OsStr>, default_port: u16) -> Result<ListenAddress, CliError> {
    let all = "0.0.0.0".to_string();
    let Some(arg) = arg else {
        return Ok(ListenAddress {
            interface: all,
            port: default_port,
        });
    };
    let s = text(arg)?;
    if !s.contains(':') {
        return Ok(ListenAddress {
            interface: all,
            port: port(s)?,
        });
    }
    let (host, port) = host_port(s)?;
    Ok(ListenAddress {
        interface: host,
        port,
    })
}

/// A client's address: `HOST:PORT` (`localhost:8000`, `127.0.0.1:8000`, `[::1]:8000`).
pub fn connect_address(arg: &OsStr) -> Result<ConnectAddress, CliError> {
    let (host, port) = host_port(text(arg)?)?;
    Ok(ConnectAddress { host, port })
}

/// A port number.
pub fn port(s: &str) -> Result<u16, CliError> {
    s.parse()
        .map_err(|_| CliError::Usage(format!("{s:?} is not a port number (0 to 65535)")))
}

/// A number of milliseconds.
pub fn millis(arg: &OsStr) -> Result<std::time::Duration, CliError> {
    let s = text(arg)?;
    s.parse()
        .map(std::time::Duration::from_millis)
        .map_err(|_| CliError::Usage(format!("{s:?} is not a number of milliseconds")))
}

/// Splits `HOST:PORT` (`[V6]:PORT` for an IPv6 literal).
fn host_port(s: &str) -> Result<(String, u16), CliError> {
    let bad = || CliError::Usage(format!("{s:?} is not HOST:PORT"));
    let (host, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = p
        .parse()
        .map_err(|_| CliError::Usage(format!("{s:?} is not HOST:PORT (PORT is 0 to 65535)")))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn a_bare_port_listens_on_every_interface() {
        let at = listen_address(Some(&os("8000")), 1).unwrap();
        assert_eq!(at.interface, "0.0.0.0");
        assert_eq!(at.port, 8000);
        let at = listen_address(None, 8017).unwrap();
        assert_eq!((at.interface.as_str(), at.port), ("0.0.0.0", 8017));
    }

    #[test]
    fn host_and_port_forms() {
        let at = listen_address(Some(&os("127.0.0.1:9")), 1).unwrap();
        assert_eq!((at.interface.as_str(), at.port), ("127.0.0.1", 9));
        let to = connect_address(&os("[::1]:80")).unwrap();
        assert_eq!((to.host.as_str(), to.port), ("::1", 80));
        assert_eq!(to.to_string(), "[::1]:80");
        let to = connect_address(&os("example.test:7")).unwrap();
        assert_eq!((to.host.as_str(), to.port), ("example.test", 7));
        assert_eq!(to.to_string(), "example.test:7");
    }

    #[test]
    fn bad_addresses_are_one_line_usage_errors() {
        for bad in [
            "8000x",
            ":80",
            "host:",
            "host:99999",
            "::1:80",
            "[::1:80",
            "a b",
            "",
        ] {
            let e = connect_address(&os(bad)).unwrap_err();
            assert_eq!(e.exit_status(), 2, "{bad}");
            let line = e.to_string();
            assert!(!line.contains('\n') && line.contains(bad), "{bad}: {line}");
        }
        let e = listen_address(Some(&os("port")), 1).unwrap_err();
        assert_eq!(e.to_string(), "\"port\" is not a port number (0 to 65535)");
        assert!(millis(&os("-1")).is_err());
        assert_eq!(
            millis(&os("250")).unwrap(),
            std::time::Duration::from_millis(250)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_argument_is_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let arg = OsString::from_vec(vec![b'h', 0xff, b':', b'1']);
        let e = connect_address(&arg).unwrap_err();
        assert!(matches!(e, CliError::Usage(_)));
        assert!(e.to_string().contains("not valid UTF-8"));
        assert!(listen_address(Some(&arg), 1).is_err());
    }

    #[test]
    fn react_returns_the_result_or_a_one_line_failure() {
        use torsion::reactor::ReactorCoreExt;
        use torsion::testing::MemoryReactor;
        let done = Deferred::<u8>::new();
        let _ = done.errback(Failure::msg("connection refused"));
        let e = react(&MemoryReactor::new(), done, "echo").unwrap_err();
        assert_eq!(
            e,
            CliError::Failed("echo failed: connection refused".into())
        );
        assert_eq!(e.exit_status(), 1);
        // Not fired by the time the reactor stops (MemoryReactor's run only starts it).
        let r = MemoryReactor::new();
        let never = Deferred::<u8>::new();
        r.call_when_running({
            let r = r.clone();
            move || {
                let _ = r.stop();
            }
        });
        assert!(matches!(react(&r, never, "wait"), Err(CliError::Failed(_))));
    }

    #[test]
    fn at_most_counts_arguments() {
        assert!(at_most(&[os("a")], 1).is_ok());
        assert_eq!(
            at_most(&[os("a"), os("b")], 1).unwrap_err().exit_status(),
            2
        );
        assert_eq!(CliError::failed("refused").exit_status(), 1);
    }
}
