//! Connections to one Redis endpoint: opening them with timeouts, a small pool for
//! producers, and a single reconnecting slot for each thread of a consumer session.

use parking_lot::Mutex;
use redis::{Client, Connection, RedisError, RedisResult};

use crate::error::keeps_connection;
use crate::route_cache::RegistryVersion;
use crate::routed_emit::ConnectionIdentity;
use crate::{Error, RedisOptions};

/// A parsed endpoint with its options: everything needed to open a connection.
pub(crate) struct Endpoint {
    client: Client,
    redacted: String,
    options: RedisOptions,
}

impl Endpoint {
    /// Parses `url`; never puts the URL's password into an error.
    pub(crate) fn parse(url: &str, options: RedisOptions) -> Result<Endpoint, Error> {
        let redacted = hivent_core::redact_endpoint(url);
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("redis") => {}
            Some("rediss") if cfg!(feature = "tls") => {}
            Some("rediss") => {
                return Err(Error::InvalidEndpoint {
                    endpoint: redacted,
                    reason: "rediss:// needs TLS, and this build of hivent-redis has none (enable its `tls` feature, or hivent's)".into(),
                })
            }
            Some(other) => {
                return Err(Error::InvalidEndpoint {
                    endpoint: redacted,
                    reason: format!("the scheme `{other}` is neither redis:// nor rediss://"),
                })
            }
            None => {
                return Err(Error::InvalidEndpoint {
                    endpoint: redacted,
                    reason: "it has no scheme".into(),
                })
            }
        }
        // The client's own message names the part that is wrong, not the URL itself.
        let client = Client::open(url).map_err(|e| Error::InvalidEndpoint {
            endpoint: redacted.clone(),
            reason: e.to_string(),
        })?;
        Ok(Endpoint {
            client,
            redacted,
            options,
        })
    }

    /// The endpoint with its password replaced by `***`.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Opens a connection with the configured timeouts.
    pub(crate) fn open(&self) -> RedisResult<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.options.connect_timeout)?;
        connection.set_read_timeout(Some(self.options.response_timeout))?;
        connection.set_write_timeout(Some(self.options.response_timeout))?;
        Ok(connection)
    }

    /// Opens an async connection, multiplexed between tasks, with the same timeouts.
    #[cfg(feature = "tokio")]
    pub(crate) async fn open_async(&self) -> RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Wraps a client error with what was being done and the redacted endpoint.
    pub(crate) fn error(&self, operation: &'static str, source: RedisError) -> Error {
        Error::Command {
            operation,
            endpoint: self.redacted.clone(),
            source: source.into(),
        }
    }
}

/// Idle connections shared by the threads that emit and register.
pub(crate) struct Pool {
    idle: Mutex<Vec<Pooled>>,
    size: usize,
}

/// A pooled connection and what it watches for the routed emit (see `route_cache`).
pub(crate) struct Pooled {
    pub(crate) connection: Connection,
    /// The registry version this connection read right after its `WATCH` of the
    /// version key, so a transaction on it aborts if the registry changed since; `None`
    /// when it watches nothing known.
    pub(crate) watching: Option<RegistryVersion>,
    /// The connection as the server knows it, once asked for.
    pub(crate) identity: Option<ConnectionIdentity>,
    /// When a transaction on it last set its marker's lifetime (see `routed_emit.rs`).
    pub(crate) marker_renewed_at: Option<std::time::Instant>,
}

impl Pool {
    pub(crate) fn new(size: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            size,
        }
    }

    /// Runs `work` on an idle connection, or a new one. The connection goes back to
    /// the pool unless the error means it may be out of step with the server.
    pub(crate) fn run<T>(
        &self,
        endpoint: &Endpoint,
        work: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.run_pooled(endpoint, |pooled| work(&mut pooled.connection))
    }

    /// [`Pool::run`] with the connection's watch state.
    pub(crate) fn run_pooled<T>(
        &self,
        endpoint: &Endpoint,
        work: impl FnOnce(&mut Pooled) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let idle = self.idle.lock().pop();
        let mut pooled = match idle {
            Some(pooled) => pooled,
            None => Pooled {
                connection: endpoint.open()?,
                watching: None,
                identity: None,
                marker_renewed_at: None,
            },
        };
        let result = work(&mut pooled);
        let healthy = match &result {
            Ok(_) => true,
            Err(error) => keeps_connection(error),
        };
        if healthy {
            let mut idle = self.idle.lock();
            if idle.len() < self.size {
                idle.push(pooled);
            }
        }
        result
    }
}

/// One connection (a plain one, or a cluster's) used by one thread at a time,
/// reopened after a failure.
pub(crate) struct Slot<C = Connection> {
    connection: Mutex<Option<C>>,
}

impl<C> Slot<C> {
    pub(crate) fn new(connection: Option<C>) -> Slot<C> {
        Slot {
            connection: Mutex::new(connection),
        }
    }

    /// Runs `work` on the slot's connection, opening one with `open` first if needed;
    /// drops the connection after an error that `keep` does not accept, so the next
    /// call opens another.
    pub(crate) fn run_with<T>(
        &self,
        open: impl FnOnce() -> RedisResult<C>,
        keep: impl FnOnce(&RedisError) -> bool,
        work: impl FnOnce(&mut C) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut slot = self.connection.lock();
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(open()?),
        };
        let result = work(connection);
        if let Err(error) = &result {
            if !keep(error) {
                *slot = None;
            }
        }
        result
    }
}

impl Slot {
    /// [`Slot::run_with`] on `endpoint`, dropping the connection after an error that
    /// may have left it out of step.
    pub(crate) fn run<T>(
        &self,
        endpoint: &Endpoint,
        work: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.run_with(|| endpoint.open(), keeps_connection, work)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Endpoint, Error> {
        Endpoint::parse(url, RedisOptions::default())
    }

    /// redis:// and rediss:// URLs parse; others are refused with a reason and no password.
    #[test]
    fn parses_and_refuses_endpoints() {
        assert!(parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(parse("redis://app:pw@127.0.0.1:6379/3").is_ok());
        assert!(parse("rediss://app:s3cret@127.0.0.1:6380/0").is_ok());
        for bad in [
            "127.0.0.1:6379",
            "http://h/0",
            "redis://:s3cret@/0",
            "redis://h:1/notadb",
        ] {
            match parse(bad) {
                Err(error @ Error::InvalidEndpoint { .. }) => {
                    assert!(!error.to_string().contains("s3cret"), "{error}")
                }
                Err(other) => panic!("{bad}: unexpected {other}"),
                Ok(_) => panic!("{bad} was accepted"),
            }
        }
    }

    proptest::proptest! {
        /// Whatever characters a password holds, neither a parse error nor the redacted
        /// endpoint shows it.
        #[test]
        fn passwords_never_show(password in "[ -~]{6,24}") {
            let url = format!("redis://app:{password}@127.0.0.1:6379/0");
            proptest::prop_assert!(!hivent_core::redact_endpoint(&url).contains(&password));
            if let Err(error) = parse(&url) {
                proptest::prop_assert!(!error.to_string().contains(&password), "{}", error);
            }
        }
    }
}
