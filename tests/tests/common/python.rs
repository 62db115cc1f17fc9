//! Running a Python 3 script as a test's client, bounded in time.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the Python client may run before it is killed.
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(30);

/// What a finished (or killed) child process left behind.
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `python3 script args...`, killing it if it outlives [`SCRIPT_LIMIT`].
/// `status` is `None` when it had to be killed.
pub fn run_python(script: &PathBuf, args: &[String]) -> Finished {
    let mut child = match Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`python3` is not on PATH ({e}); this test runs a Python 3 client against the server, install Python 3 to run it"
        ),
        Err(e) => panic!("could not start `python3 {}`: {e}", script.display()),
    };
    // Drain the pipes in threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));

    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("waiting for python3") {
            Some(status) => break Some(status),
            None if started.elapsed() > SCRIPT_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
