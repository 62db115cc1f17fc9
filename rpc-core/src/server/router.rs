//! Routing: from a wire method name to the service that offers it.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::builtins;
use crate::error::ServerError;
use crate::message::ErrorObject;
use crate::service::{HandlerFuture, MethodInfo, Service};

/// Maps wire method names to services; names no service offers fall
/// through to the [built-ins](super::builtins).
pub(crate) struct Router {
    services: Vec<Arc<dyn Service>>,
    routes: HashMap<&'static str, usize>,
    /// The `rpc.discover` document, built once.
    discover: Box<RawValue>,
}

impl Router {
    /// Checks that no two services offer the same name and that none uses
    /// the reserved `rpc.` prefix, then builds the table.
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Self, ServerError> {
        let mut routes: HashMap<&'static str, usize> = HashMap::default();
        let mut all: Vec<MethodInfo> = Vec::new();
        for (index, service) in services.iter().enumerate() {
            for method in service.methods() {
                if method.name.starts_with(builtins::PREFIX) {
                    return Err(ServerError::ReservedName {
                        method: method.name.to_owned(),
                        service: service.name(),
                    });
                }
                if let Some(&first) = routes.get(method.name) {
                    return Err(ServerError::DuplicateMethod {
                        method: method.name.to_owned(),
                        first: services[first].name(),
                        second: service.name(),
                    });
                }
                routes.insert(method.name, index);
                all.push(method);
            }
        }
        let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
        let discover = crate::openrpc::document(&names, &all);
        Ok(Self {
            services,
            routes,
            discover,
        })
    }

    /// A table with no services: the built-ins only.
    pub(crate) fn empty() -> Self {
        Self {
            services: Vec::new(),
            routes: HashMap::default(),
            discover: crate::openrpc::document(&[], &[]),
        }
    }

    /// The service that offers `method` (its name, for tracing), the
    /// method's name as the table holds it, and the future that runs the
    /// call.
    pub(crate) fn call(
        &self,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<(&'static str, &'static str, HandlerFuture), ErrorObject> {
        if let Some((&name, service)) = self
            .routes
            .get_key_value(method)
            .and_then(|(name, &i)| Some((name, self.services.get(i)?)))
        {
            return Ok((service.name(), name, service.call(name, params)?));
        }
        builtins::call(method, params, &self.discover)
    }
}
