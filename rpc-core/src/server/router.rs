//! Routing: from a wire method name to the service that offers it.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::builtins;
use crate::error::ServerError;
use crate::message::ErrorObject;
use crate::metrics::MethodMetrics;
use crate::service::{HandlerFuture, MethodInfo, Service};

/// Where one wire name leads.
struct Route {
    /// The index of the service.
    service: usize,
    /// The method's own wire name.
    name: &'static str,
    streaming: bool,
    /// Its metrics handles, on a server with metrics.
    metrics: Option<Arc<MethodMetrics>>,
}

/// A routed call: the service's name, the method's, its future, whether
/// it streams, and its metrics handles if the server has metrics.
pub(crate) type Routed = (
    &'static str,
    &'static str,
    HandlerFuture,
    bool,
    Option<Arc<MethodMetrics>>,
);

/// Maps wire method names to services; names no service offers fall
/// through to the [built-ins](super::builtins).
pub(crate) struct Router {
    services: Vec<Arc<dyn Service>>,
    /// Every wire name and alias: the service that offers it and the
    /// method's own wire name (what its `Service::call` matches on).
    routes: HashMap<&'static str, Route>,
    /// What each method is, by wire name and alias (read by REST only).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    infos: HashMap<&'static str, MethodInfo>,
    /// The services' names and methods, for the document.
    names: Vec<&'static str>,
    methods: Vec<MethodInfo>,
    /// The `rpc.discover` document, built when first asked for.
    discover: std::sync::OnceLock<Box<RawValue>>,
}

impl Router {
    /// Checks that no two services offer the same name and that none uses
    /// the reserved `rpc.` prefix, then builds the table.
    pub(crate) fn new(services: Vec<Arc<dyn Service>>, metrics: bool) -> Result<Self, ServerError> {
        let mut routes: HashMap<&'static str, Route> = HashMap::default();
        let mut infos: HashMap<&'static str, MethodInfo> = HashMap::default();
        let mut all: Vec<MethodInfo> = Vec::new();
        for (index, service) in services.iter().enumerate() {
            for method in service.methods() {
                for &name in std::iter::once(&method.name).chain(method.aliases) {
                    if name.starts_with(builtins::PREFIX) {
                        return Err(ServerError::ReservedName {
                            method: name.to_owned(),
                            service: service.name(),
                        });
                    }
                    if let Some(&Route { service: first, .. }) = routes.get(name) {
                        return Err(ServerError::DuplicateMethod {
                            method: name.to_owned(),
                            first: services[first].name(),
                            second: service.name(),
                        });
                    }
                    routes.insert(
                        name,
                        Route {
                            service: index,
                            name: method.name,
                            streaming: method.streaming,
                            // One set of handles per method, aliases included.
                            metrics: metrics.then(|| {
                                routes
                                    .values()
                                    .find(|r| r.name == method.name && r.service == index)
                                    .and_then(|r| r.metrics.clone())
                                    .unwrap_or_else(|| Arc::new(MethodMetrics::new(method.name)))
                            }),
                        },
                    );
                    infos.insert(name, method);
                }
                all.push(method);
            }
        }
        let names: Vec<&'static str> = services.iter().map(|s| s.name()).collect();
        Ok(Self {
            services,
            routes,
            infos,
            names,
            methods: all,
            discover: std::sync::OnceLock::new(),
        })
    }

    /// The names of the services, in the order they were added.
    pub(crate) fn service_names(&self) -> Vec<&'static str> {
        self.names.clone()
    }

    /// A table with no services: the built-ins only.
    pub(crate) fn empty() -> Self {
        Self {
            services: Vec::new(),
            routes: HashMap::default(),
            infos: HashMap::default(),
            names: Vec::new(),
            methods: Vec::new(),
            discover: std::sync::OnceLock::new(),
        }
    }

    /// What the method with this wire name or alias is, if any service
    /// offers it.
    #[cfg(feature = "http")]
    pub(crate) fn info(&self, method: &str) -> Option<&MethodInfo> {
        self.infos.get(method)
    }

    /// The service that offers `method` (its name, for tracing), the
    /// method's name as the table holds it, and the future that runs the
    /// call; the last, whether it is a streaming method.
    pub(crate) fn call(
        &self,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<Routed, ErrorObject> {
        if let Some((route, service)) = self
            .routes
            .get(method)
            .and_then(|route| Some((route, self.services.get(route.service)?)))
        {
            let future = service.call(route.name, params)?;
            return Ok((
                service.name(),
                route.name,
                future,
                route.streaming,
                route.metrics.clone(),
            ));
        }
        let (service, name, future) = builtins::call(method, params, || {
            self.discover
                .get_or_init(|| crate::openrpc::document(&self.names, &self.methods))
        })?;
        Ok((service, name, future, false, None))
    }
}
