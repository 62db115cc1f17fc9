//! `rpc-demo binder`, `lookup` and `health`, and reaching a binder from the
//! other commands (`serve --binder`, `calc --binder`, `call NAME`).

use std::sync::Arc;
use std::time::Duration;

use rpc_core::discovery::Registry;
use rpc_core::discovery::binder::{BinderClient, BinderRegistry, BinderServer, Directory};

use crate::DemoError;

/// Where the binder listens, and where the others look for it, by default.
pub(crate) const DEFAULT_BINDER: &str = "127.0.0.1:7000";

/// How long a command waits for a binder that is not up yet (containers
/// start in any order).
const BINDER_PATIENCE: Duration = Duration::from_secs(30);

/// Serves a binder on `listen` until Ctrl-C or SIGTERM.
pub(crate) async fn binder(listen: &str) -> Result<(), DemoError> {
    let mut stop = crate::StopSignal::listen()?;
    let server = rpc_core::Server::builder()
        .service(BinderServer::new(Directory::new()))
        .bind(listen)
        .await?;
    say!(
        "rpc-demo binder on {}; servers register with `serve --binder {0}`; Ctrl-C to stop",
        server.local_addr()
    );
    stop.recv().await?;
    server.shutdown().await;
    say!("stopped");
    Ok(())
}

/// A connection to the binder at `addr`, waiting (with backoff, at most
/// [`BINDER_PATIENCE`]) for it to come up.
pub(crate) async fn registry(addr: &str) -> Result<Arc<dyn Registry>, DemoError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match BinderRegistry::connect(addr).await {
            Ok(registry) => return Ok(Arc::new(registry)),
            Err(e) if started.elapsed() + pause < BINDER_PATIENCE => {
                tracing::info!(%addr, error = %e, "waiting for the binder");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(DemoError::Other(format!(
                    "no binder at {addr} after {BINDER_PATIENCE:?} ({e}); start one with `rpc-demo binder --listen {addr}`"
                )));
            }
        }
    }
}

/// A connection to etcd at `url`, under the library's default prefix.
pub(crate) async fn etcd(url: &str) -> Result<Arc<dyn Registry>, DemoError> {
    use rpc_core::discovery::etcd::{DEFAULT_PREFIX, EtcdRegistry};
    match EtcdRegistry::connect(url, DEFAULT_PREFIX).await {
        Ok(registry) => Ok(Arc::new(registry)),
        Err(e) => Err(DemoError::Other(format!(
            "no etcd at {url} ({e}); start one, or give its client URL (http://HOST:2379)"
        ))),
    }
}

/// Prints `name`'s instances in `registry`, one per line.
pub(crate) async fn lookup_in(registry: Arc<dyn Registry>, name: &str) -> Result<(), DemoError> {
    let instances = registry
        .lookup(name)
        .await
        .map_err(|e| DemoError::Other(e.to_string()))?;
    if instances.is_empty() {
        say!("nothing registered as {name}");
    }
    for instance in instances {
        say!("{}  {}", instance.name, instance.address);
    }
    Ok(())
}

/// Prints every registration, or `name`'s, one per line: `NAME ADDRESS`.
pub(crate) async fn lookup(binder: &str, name: Option<&str>) -> Result<(), DemoError> {
    let client = BinderClient::new(rpc_core::Client::connect(binder).await?);
    let instances = match name {
        Some(name) => client.lookup(name.to_owned()).await?,
        None => client.list().await?,
    };
    if instances.is_empty() {
        say!(
            "nothing registered{}",
            name.map(|n| format!(" as {n}")).unwrap_or_default()
        );
    }
    let width = instances.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for instance in instances {
        say!("{:width$}  {}", instance.name, instance.address);
    }
    Ok(())
}

/// Probes `GET /health` on `target` (`HOST:PORT` or `http://HOST:PORT`):
/// `Ok` on 200, an error naming the status (or the failure) otherwise.
pub(crate) async fn health(target: &str, timeout: Duration) -> Result<(), DemoError> {
    let authority = target
        .strip_prefix("http://")
        .unwrap_or(target)
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let probe = async {
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let request = http::Request::get("/health")
            .header(http::header::HOST, &authority)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(std::io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(response.status())
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(status)) if status == http::StatusCode::OK => {
            say!("{authority}: serving");
            Ok(())
        }
        Ok(Ok(status)) => Err(DemoError::Other(format!(
            "{authority}: not serving ({status})"
        ))),
        Ok(Err(e)) => Err(DemoError::Other(format!("{authority}: no answer ({e})"))),
        Err(_) => Err(DemoError::Other(format!(
            "{authority}: no answer within {timeout:?}"
        ))),
    }
}
