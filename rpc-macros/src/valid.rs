//! Semantic checks: everything the runtime cannot support is rejected here,
//! at the user's span, with a message that says what to write instead.

use std::collections::HashMap;

use syn::visit::Visit;
use syn::{ReturnType, TraitItem, Type};

use crate::ast::{Method, Service};
use crate::ctxt::Errors;

/// Names of the generated client's own methods; a trait method of the same
/// name would clash with them.
const CLIENT_METHODS: &[&str] = &["connect", "new", "inner", "with_timeout"];

pub(crate) fn check(service: &Service<'_>, errors: &mut Errors) {
    let item = service.item;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "#[service] traits cannot be generic: the wire interface must be one concrete set of methods; use concrete types",
        );
    }
    if let Some(auto) = &item.auto_token {
        errors.spanned(auto, "#[service] cannot be used on an auto trait");
    }
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(_) => {}
            TraitItem::Type(t) => errors.spanned(
                t,
                "associated types are not supported in a #[service] trait; use a concrete type in the method signatures",
            ),
            TraitItem::Const(c) => errors.spanned(
                c,
                "associated constants are not supported in a #[service] trait; define the constant outside the trait",
            ),
            other => errors.spanned(other, "a #[service] trait may contain only `async fn` methods"),
        }
    }
    let mut seen: HashMap<&str, &Method<'_>> = HashMap::new();
    for method in &service.methods {
        check_method(method, errors);
        if let Some(first) = seen.get(method.wire.as_str()) {
            errors.push(syn::Error::new(
                method.wire_span,
                format_args!(
                    "the wire name `{}` is already used by method `{}`; give one of them another name with #[rpc(name = \"...\")]",
                    method.wire, first.ident
                ),
            ));
        } else {
            seen.insert(&method.wire, method);
        }
    }
}

fn check_method(method: &Method<'_>, errors: &mut Errors) {
    let sig = &method.item.sig;
    if let Some(body) = &method.item.default {
        errors.spanned(
            body,
            "default method bodies are not supported in a #[service] trait; remove the body and implement the method in the `impl`",
        );
    }
    match &sig.asyncness {
        None => errors.spanned(
            sig.fn_token,
            format_args!(
                "RPC methods must be async: write `async fn {}(&self, ...)`",
                sig.ident
            ),
        ),
        Some(_) => {}
    }
    if let Some(c) = &sig.constness {
        errors.spanned(c, "RPC methods cannot be `const`");
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "RPC methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "RPC methods cannot have an `extern` ABI");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "RPC methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "RPC methods cannot be generic: the server must know each argument's concrete type; use concrete types",
        );
    }
    match method.receiver {
        None => errors.spanned(
            &sig.ident,
            format_args!(
                "RPC methods need `&self` as their first parameter: `async fn {}(&self, ...)`",
                sig.ident
            ),
        ),
        Some(r) => {
            let by_shared_ref = matches!(&r.reference, Some((_, None)))
                && r.mutability.is_none()
                && r.colon_token.is_none();
            if !by_shared_ref {
                errors.spanned(
                    r,
                    "RPC methods must take `&self`: the server calls one shared instance from many tasks at once (use a Mutex or atomics inside for state)",
                );
            }
        }
    }
    let name = sig.ident.to_string();
    if CLIENT_METHODS.contains(&name.as_str()) {
        errors.spanned(
            &sig.ident,
            format_args!(
                "a method called `{name}` would clash with the generated client's own `{name}`; rename the Rust method (keep the wire name with #[rpc(name = \"{name}\")])"
            ),
        );
    }
    if method.wire.starts_with("rpc.") {
        errors.push(syn::Error::new(
            method.wire_span,
            format_args!(
                "the wire name `{}` starts with `rpc.`, which JSON-RPC reserves for built-in methods; choose another name",
                method.wire
            ),
        ));
    }
    for arg in &method.args {
        check_type(arg.ty, "argument", errors);
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_type(ty, "return", errors);
    }
}

/// Rejects borrowed and opaque types: arguments are decoded into owned values
/// and results are sent after the call returns.
fn check_type(ty: &Type, role: &str, errors: &mut Errors) {
    struct Finder<'e, 'r> {
        errors: &'e mut Errors,
        role: &'r str,
    }
    impl<'ast> Visit<'ast> for Finder<'_, '_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            self.errors.spanned(
                r,
                format_args!(
                    "{} types cannot be references: values travel over the network and arrive owned; use an owned type such as `String` or `Vec<T>`",
                    self.role
                ),
            );
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            self.errors.spanned(
                l,
                format_args!("{} types cannot have lifetimes: use owned types", self.role),
            );
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.errors.spanned(
                t,
                format_args!(
                    "`impl Trait` is not supported in {} types: the value must be (de)serialized as one concrete type; name it",
                    self.role
                ),
            );
        }
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            self.errors.spanned(
                t,
                format_args!(
                    "trait objects are not supported in {} types: use a concrete type",
                    self.role
                ),
            );
        }
        fn visit_type_ptr(&mut self, t: &'ast syn::TypePtr) {
            self.errors.spanned(
                t,
                format_args!(
                    "raw pointers cannot travel over the network: use an owned {} type",
                    self.role
                ),
            );
        }
    }
    Finder { errors, role }.visit_type(ty);
}
