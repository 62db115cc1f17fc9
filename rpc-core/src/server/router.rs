//! Routing: from a wire method name to the service that offers it.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::builtins;
use crate::error::ServerError;
use crate::message::ErrorObject;
use crate::service::{HandlerFuture, MethodInfo, Service};

/// Where one wire name leads: the index of the service, the method's own
/// wire name, and whether it is a streaming method.
type Route = (usize, &'static str, bool);

/// A routed call: the service's name, the method's, its future, and
/// whether it streams.
pub(crate) type Routed = (&'static str, &'static str, HandlerFuture, bool);

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
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Self, ServerError> {
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
                    if let Some(&(first, _, _)) = routes.get(name) {
                        return Err(ServerError::DuplicateMethod {
                            method: name.to_owned(),
                            first: services[first].name(),
                            second: service.name(),
                        });
                    }
                    routes.insert(name, (index, method.name, method.streaming));
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
        if let Some((name, service, streaming)) = self
            .routes
            .get(method)
            .and_then(|&(i, name, streaming)| Some((name, self.services.get(i)?, streaming)))
        {
            return Ok((service.name(), name, service.call(name, params)?, streaming));
        }
        let (service, name, future) = builtins::call(method, params, || {
            self.discover
                .get_or_init(|| crate::openrpc::document(&self.names, &self.methods))
        })?;
        Ok((service, name, future, false))
    }
}
