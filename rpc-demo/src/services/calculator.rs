//! The calculator of the course's XML-RPC exercise: two numbers in, one out.

use serde::{Deserialize, Serialize};

/// Arithmetic on two numbers.
#[rpc_core::service]
pub trait Calculator {
    /// Returns `a + b`.
    #[rpc(read_only, alias = "soma")]
    async fn add(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Returns `a - b`.
    #[rpc(read_only)]
    async fn sub(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Returns `a * b`.
    #[rpc(read_only, alias = "mult")]
    async fn mul(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Returns `a / b`; dividing by zero is a [`CalcError::DivisionByZero`]
    /// the caller can match on.
    #[rpc(read_only)]
    async fn div(&self, a: f64, b: f64) -> Result<f64, CalcError>;
    /// Returns `a` raised to the power `b`.
    ///
    /// Every operation whose result is not a finite number (an overflow, or
    /// `0^-1`) answers [`CalcError::NotFinite`]: JSON has no infinity.
    #[rpc(read_only, alias = "pot")]
    async fn pow(&self, a: f64, b: f64) -> Result<f64, CalcError>;
}

/// Why a calculation has no answer.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, thiserror::Error,
)]
pub enum CalcError {
    /// The divisor was zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result is infinite or not a number (JSON cannot carry it).
    #[error("the result of {operation} is not a finite number")]
    NotFinite {
        /// The operation that overflowed.
        operation: String,
    },
}

/// The calculator's implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Calc;

impl Calc {
    fn finite(operation: &str, value: f64) -> Result<f64, CalcError> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(CalcError::NotFinite {
                operation: operation.to_owned(),
            })
        }
    }
}

impl Calculator for Calc {
    async fn add(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        Self::finite("add", a + b)
    }

    async fn sub(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        Self::finite("sub", a - b)
    }

    async fn mul(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        Self::finite("mul", a * b)
    }

    async fn div(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        if b == 0.0 {
            return Err(CalcError::DivisionByZero);
        }
        Self::finite("div", a / b)
    }

    async fn pow(&self, a: f64, b: f64) -> Result<f64, CalcError> {
        Self::finite("pow", a.powf(b))
    }
}
