//! A throw-away `redis-server` for tests: free loopback port, no persistence, its own
//! temporary directory, stopped and removed on drop.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to answer its first PING.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Why a test server could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// No `redis-server` binary was found (set `HIVENT_REDIS_SERVER` to its path).
    NotInstalled,
    /// A file system or process operation failed.
    Io {
        /// What was being done.
        action: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The server started but did not answer in time, or exited.
    DidNotStart {
        /// What went wrong.
        reason: String,
        /// The server's log.
        log: String,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NotInstalled => f.write_str(
                "redis-server is not installed (or set HIVENT_REDIS_SERVER to its path)",
            ),
            ServerError::Io { action, .. } => write!(f, "could not {action}"),
            ServerError::DidNotStart { reason, log } => {
                write!(f, "redis-server did not start: {reason}; its log:\n{log}")
            }
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A running `redis-server` bound to 127.0.0.1, killed and cleaned up on drop.
///
/// ```no_run
/// let server = hivent_redis::test_server::RedisServer::start()?;
/// let backend = hivent_redis::RedisBackend::connect(&server.url())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    binary: String,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> Result<RedisServer, ServerError> {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `--tls-port`) and
    /// waits until it answers PING on its plain port.
    pub fn start_with(extra: &[String]) -> Result<RedisServer, ServerError> {
        let binary =
            std::env::var("HIVENT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        // The free port is found by binding port 0 and letting go; another process may
        // take it in between, so a failed start is tried again on a new port.
        let mut last = None;
        for _ in 0..3 {
            match RedisServer::start_once(&binary, extra) {
                Err(ServerError::DidNotStart { reason, log }) => {
                    last = Some(ServerError::DidNotStart { reason, log })
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(ServerError::NotInstalled))
    }

    fn start_once(binary: &str, extra: &[String]) -> Result<RedisServer, ServerError> {
        let port = free_port()?;
        let dir = temp_dir()?;
        let child = match spawn(binary, port, &dir, extra) {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        let mut server = RedisServer {
            child,
            port,
            dir,
            binary: binary.to_owned(),
            extra: extra.to_vec(),
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Kills the server and starts it again on the same port and directory, with the
    /// same arguments: what clients see when Redis restarts. Data survives only if the
    /// server was started with persistence (e.g. `--appendonly yes --appendfsync always`).
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.binary, self.port, &self.dir, &self.extra)?;
        self.wait_until_ready()
    }

    /// Kills the server (SIGKILL: no shutdown, no save), as a crashed host would; its
    /// directory stays until drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_until_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.answers_ping() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::DidNotStart {
                    reason: format!("it exited with {status}"),
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(ServerError::DidNotStart {
                    reason: format!("it did not answer PING within {START_DEADLINE:?}"),
                    log: self.log(),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let timeout = Some(Duration::from_millis(500));
        if stream.set_read_timeout(timeout).is_err() || stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `binary` on `port` with its files in `dir`: loopback only, no persistence
/// unless `extra` asks for it.
fn spawn(binary: &str, port: u16, dir: &Path, extra: &[String]) -> Result<Child, ServerError> {
    Command::new(binary)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                ServerError::NotInstalled
            } else {
                ServerError::Io {
                    action: format!("start {binary}"),
                    source: error,
                }
            }
        })
}

pub(crate) fn free_port() -> Result<u16, ServerError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| ServerError::Io {
            action: "find a free port".into(),
            source,
        })
}

fn temp_dir() -> Result<PathBuf, ServerError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "hivent-redis-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::Io {
        action: format!("create {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

/// A server for a test, or `None` (with a "skipped" line on stderr) when
/// `redis-server` is not installed.
///
/// Test support, not API: it panics when a server cannot be had although one is
/// required (`HIVENT_REQUIRE_REDIS=1`) or when an installed server fails to start,
/// so a broken setup fails the test loudly instead of skipping it.
#[doc(hidden)]
#[allow(clippy::panic)]
pub fn server_for_tests() -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(server) => Some(server),
        Err(ServerError::NotInstalled) => {
            if std::env::var("HIVENT_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("HIVENT_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!("skipped: redis-server not installed");
            None
        }
        Err(error) => panic!(
            "could not start a test redis-server: {}",
            hivent_core::ErrorChain(&error)
        ),
    }
}
