//! Compile-time tests of `#[rpc_core::service]`.
//!
//! `ui/pass/` holds one program per supported form: each must compile (and
//! its `main`, which checks the generated method table, must run). `ui/fail/`
//! holds one rejected input per file, with the exact diagnostic in the
//! `.stderr` beside it. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p rpc-tests --test ui`, then read every
//! changed file: each should be one message, at the offending token, saying
//! what to write instead.
//!
//! Paths are relative to this crate's directory (`tests/`), which is where
//! cargo runs its test binaries.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
