//! Integration and UI tests live in `tests/`; this crate has no library code.
