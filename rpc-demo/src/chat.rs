//! `rpc-demo chat`: the course's terminal chat, on the Chat service. Lines
//! from the room are printed as they arrive, while you type; each line you
//! type is said in the room; `fim` (or end of input) leaves.

use futures_util::StreamExt;
use rpc_core::RpcError;
use rpc_demo::services::chat::clock;
use rpc_demo::services::{ChatClient, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::DemoError;

/// Words that leave the chat.
const QUIT: &[&str] = &["fim", "quit", "exit"];

/// One event as a line of the terminal, `None` for the member's own
/// messages (already on screen as typed).
fn line(event: &Event, me: &str) -> Option<String> {
    Some(match event {
        Event::Message { nick, .. } if nick == me => return None,
        Event::Message { nick, text, at } => format!("[{}] {nick}: {text}", clock(*at)),
        Event::Joined { nick, at } => format!("[{}] * {nick} joined", clock(*at)),
        Event::Left { nick, at } => format!("[{}] * {nick} left", clock(*at)),
        Event::Lagged { skipped } => {
            format!("* {skipped} messages skipped: this terminal fell behind the room")
        }
    })
}

pub(crate) async fn chat(
    client: rpc_core::Client,
    room: &str,
    nick: &str,
) -> Result<(), DemoError> {
    let chat = ChatClient::new(client);
    let mut events = match chat.join(room.to_owned(), nick.to_owned()).await {
        Ok(events) => events,
        Err(RpcError::Application(e)) => {
            return Err(DemoError::Other(format!(
                "could not join {room:?} as {nick:?}: {}",
                e
            )));
        }
        Err(e) => return Err(DemoError::Other(e.to_string())),
    };
    say!("In room {room} as {nick}; type a message and Enter, `fim` to leave");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let Some(text) = line(&event, nick) {
                        say!("{text}");
                    }
                }
                Some(Err(e)) => {
                    return Err(DemoError::Other(format!("the chat ended: {e}")));
                }
                None => return Err(DemoError::Other("the server ended the chat".to_owned())),
            },
            typed = lines.next_line() => {
                let Some(text) = typed? else {
                    return Ok(());
                };
                let text = text.trim();
                if QUIT.contains(&text.to_lowercase().as_str()) {
                    return Ok(());
                }
                if text.is_empty() {
                    continue;
                }
                match chat.send(room.to_owned(), nick.to_owned(), text.to_owned()).await {
                    Ok(()) => {}
                    Err(RpcError::Application(e)) => say!("not sent: {}", e),
                    Err(e) => return Err(DemoError::Other(e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_lines_and_own_messages_are_not_repeated() {
        let at = ((10 * 60 + 2) * 60 + 3) * 1000;
        let said = |nick: &str| Event::Message {
            nick: nick.into(),
            text: "olá".into(),
            at,
        };
        assert_eq!(
            line(&said("bia"), "ana").as_deref(),
            Some("[10:02:03] bia: olá")
        );
        assert_eq!(line(&said("ana"), "ana"), None);
        assert_eq!(
            line(
                &Event::Joined {
                    nick: "bia".into(),
                    at
                },
                "ana"
            )
            .as_deref(),
            Some("[10:02:03] * bia joined")
        );
        assert!(
            line(&Event::Lagged { skipped: 3 }, "ana")
                .unwrap()
                .contains("3 messages skipped")
        );
    }
}
