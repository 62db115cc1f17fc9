//! The interactive clients of the course's labs: `calc`, `hello`, `echo`.
//!
//! Bad input from the keyboard gets one line saying what was wrong and the
//! program asks again; only a lost server ends it with an error. (With
//! `--binder`, `calc` has other servers: a call lost with one server's
//! connection gets one line, and the next call goes to another.)

use rpc_core::RpcError;
use rpc_demo::services::{CalcError, CalculatorClient, EchoClient, GreeterClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin};

use crate::DemoError;

/// Words that end an interactive session.
const QUIT: &[&str] = &["fim", "quit", "exit"];

/// Reads lines from standard input after printing a prompt.
struct Terminal {
    lines: Lines<BufReader<Stdin>>,
}

impl Terminal {
    fn new() -> Self {
        Self {
            lines: BufReader::new(tokio::io::stdin()).lines(),
        }
    }

    /// The next line, trimmed; `None` at end of input or on a quit word.
    async fn ask(&mut self, prompt: &str) -> Result<Option<String>, DemoError> {
        let mut out = tokio::io::stdout();
        out.write_all(prompt.as_bytes())
            .await
            .map_err(crate::output_error)?;
        out.flush().await.map_err(crate::output_error)?;
        match self.lines.next_line().await? {
            None => {
                say!("");
                Ok(None)
            }
            Some(line) => {
                let line = line.trim().to_owned();
                if QUIT.contains(&line.to_lowercase().as_str()) {
                    Ok(None)
                } else {
                    Ok(Some(line))
                }
            }
        }
    }

    /// Asks until a number is typed; `None` on end of input or a quit word.
    async fn number(&mut self, prompt: &str) -> Result<Option<f64>, DemoError> {
        loop {
            let Some(text) = self.ask(prompt).await? else {
                return Ok(None);
            };
            match parse_number(&text) {
                Some(n) => return Ok(Some(n)),
                None => say!("'{text}' is not a number; type one like 8 or 2.5"),
            }
        }
    }
}

/// Accepts `2.5` and the comma decimal separator of Portuguese, `2,5`.
fn parse_number(text: &str) -> Option<f64> {
    let n: f64 = text.replace(',', ".").parse().ok()?;
    n.is_finite().then_some(n)
}

/// The operations, with the Portuguese names of the course's REST calculator.
fn operation(text: &str) -> Option<&'static str> {
    Some(match text.to_lowercase().as_str() {
        "add" | "soma" | "+" => "add",
        "sub" | "-" => "sub",
        "mul" | "mult" | "*" | "x" => "mul",
        "div" | "/" => "div",
        "pow" | "pot" | "^" => "pow",
        _ => return None,
    })
}

/// The interactive calculator. `discovering`: the client finds servers
/// through a binder, so losing one server's connection loses only the call
/// in flight on it, which is reported; the next call goes to another.
pub(crate) async fn calc(
    server: &str,
    client: rpc_core::Client,
    discovering: bool,
) -> Result<(), DemoError> {
    let calc = CalculatorClient::new(client);
    let mut term = Terminal::new();
    say!("Calculator at {server}: operations add, sub, mul, div, pow; `fim` to leave");
    loop {
        let Some(op_text) = term.ask("Informe a operação: ").await? else {
            return Ok(());
        };
        let Some(op) = operation(&op_text) else {
            say!("unknown operation '{op_text}'; choose add, sub, mul, div or pow");
            continue;
        };
        let Some(a) = term.number("Informe o valor 1: ").await? else {
            return Ok(());
        };
        let Some(b) = term.number("Informe o valor 2: ").await? else {
            return Ok(());
        };
        let result = match op {
            "add" => calc.add(a, b).await,
            "sub" => calc.sub(a, b).await,
            "mul" => calc.mul(a, b).await,
            "div" => calc.div(a, b).await,
            _ => calc.pow(a, b).await,
        };
        match result {
            Ok(value) => say!("{op}({a}, {b}) = {value}"),
            Err(RpcError::Application(e)) => say!("{op}({a}, {b}): {}", describe(&e)),
            Err(e @ RpcError::Closed(_)) if discovering => say!("{op}({a}, {b}): no answer: {e}"),
            Err(e) => return Err(DemoError::Other(e.to_string())),
        }
    }
}

fn describe(e: &CalcError) -> String {
    match e {
        CalcError::DivisionByZero => "cannot divide by zero".to_owned(),
        other => other.to_string(),
    }
}

pub(crate) async fn hello(client: rpc_core::Client) -> Result<(), DemoError> {
    let greeter = GreeterClient::new(client);
    let mut term = Terminal::new();
    loop {
        let Some(name) = term.ask("Digite seu nome: ").await? else {
            return Err(DemoError::Other("no name was typed".to_owned()));
        };
        if name.is_empty() {
            say!("type a name, or `fim` to leave");
            continue;
        }
        say!("{}", greeter.hello(name).await?);
        return Ok(());
    }
}

pub(crate) async fn echo(server: &str, client: rpc_core::Client) -> Result<(), DemoError> {
    let echo = EchoClient::new(client);
    let mut term = Terminal::new();
    say!("Echo at {server}: each line comes back; `fim` to leave");
    while let Some(line) = term.ask("> ").await? {
        say!("{}", echo.echo(line).await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_both_decimal_separators_and_reject_the_rest() {
        assert_eq!(parse_number("2.5"), Some(2.5));
        assert_eq!(parse_number("2,5"), Some(2.5));
        assert_eq!(parse_number("-3"), Some(-3.0));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn operations_accept_english_and_portuguese_names() {
        assert_eq!(operation("add"), Some("add"));
        assert_eq!(operation("SOMA"), Some("add"));
        assert_eq!(operation("mult"), Some("mul"));
        assert_eq!(operation("root"), None);
    }
}
