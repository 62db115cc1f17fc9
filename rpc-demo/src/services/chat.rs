//! The course's chat (the sockets lab's terminal chat, and its WebSocket
//! exercise), with rooms: members join a room and receive its events as a
//! stream, and post with `send`.
//!
//! A slow member never slows a room. Each room fans its events out through
//! a buffer of [`ROOM_BUFFER`] events; a member whose stream falls that far
//! behind (it reads slowly, and its stream's credit holds the server back)
//! skips what it missed and gets one [`Event::Lagged`] saying how many,
//! instead of holding the others back. That is this service's choice: the
//! stream itself never drops anything.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use rpc_core::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Messages a member gets on joining, before the live events.
pub const HISTORY: usize = 50;
/// Events a room holds for its slowest member before that member lags.
pub const ROOM_BUFFER: usize = 256;
/// The longest message, in bytes.
pub const MAX_TEXT: usize = 4096;
/// The longest nick and room name, in bytes.
pub const MAX_NAME: usize = 32;

/// Something that happened in a room. On the wire, an object with a
/// `kind`: `{"kind":"message","nick":"ana","text":"olá","at":1764547200000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `nick` said `text`.
    Message {
        /// Who.
        nick: String,
        /// What.
        text: String,
        /// When, in milliseconds since the Unix epoch (the server's clock).
        at: u64,
    },
    /// `nick` joined the room.
    Joined {
        /// Who.
        nick: String,
        /// When, in milliseconds since the Unix epoch.
        at: u64,
    },
    /// `nick` left the room (or lost its connection).
    Left {
        /// Who.
        nick: String,
        /// When, in milliseconds since the Unix epoch.
        at: u64,
    },
    /// This member read too slowly and skipped `skipped` events.
    Lagged {
        /// How many events were skipped.
        skipped: u64,
    },
}

/// Why a chat call is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
pub enum ChatError {
    /// The nick or the room name is empty, too long, or has control
    /// characters.
    #[error("a nick or room name must be 1 to 32 bytes of printable text")]
    BadName,
    /// Someone in the room already uses this nick.
    #[error("that nick is taken in this room; choose another")]
    NickTaken,
    /// `send` from a nick that has not joined the room.
    #[error("join the room before sending to it")]
    NotInRoom,
    /// The message is empty or longer than 4096 bytes.
    #[error("a message must be 1 to 4096 bytes")]
    BadText,
}

/// Rooms of people who talk.
#[rpc_core::service(namespace = "chat")]
pub trait Chat {
    /// Joins `room` as `nick`: the room's last 50 messages, then its events
    /// as they happen (messages, joins and leaves), until you drop the
    /// stream, which leaves the room. Refused if the nick is taken there.
    async fn join(&self, room: String, nick: String) -> Result<Stream<Event>, ChatError>;
    /// Says `text` in `room` as `nick`, who must have joined it.
    async fn send(&self, room: String, nick: String, text: String) -> Result<(), ChatError>;
    /// The nicks in `room`, in alphabetical order.
    #[rpc(read_only)]
    async fn who(&self, room: String) -> Vec<String>;
}

/// The chat's rooms. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    rooms: Arc<Mutex<HashMap<String, Room>>>,
}

#[derive(Debug)]
struct Room {
    events: broadcast::Sender<Event>,
    history: VecDeque<Event>,
    members: BTreeSet<String>,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            events: broadcast::channel(ROOM_BUFFER).0,
            history: VecDeque::with_capacity(HISTORY),
            members: BTreeSet::new(),
        }
    }
}

impl Room {
    fn publish(&mut self, event: Event) {
        if matches!(event, Event::Message { .. }) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(event.clone());
        }
        // No receiver: nobody is listening, which is fine.
        let _ = self.events.send(event);
    }
}

/// Milliseconds since the Unix epoch, by the server's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Leaves the room when the member's stream is dropped (the member
/// unsubscribed or disconnected).
struct Membership {
    rooms: Rooms,
    room: String,
    nick: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut rooms = self.rooms.lock();
        if let Some(room) = rooms.get_mut(&self.room) {
            room.members.remove(&self.nick);
            room.publish(Event::Left {
                nick: self.nick.clone(),
                at: now_ms(),
            });
            if room.members.is_empty() && room.history.is_empty() {
                rooms.remove(&self.room);
            }
        }
    }
}

impl Chat for Rooms {
    async fn join(&self, room: String, nick: String) -> Result<Stream<Event>, ChatError> {
        if !valid_name(&room) || !valid_name(&nick) {
            return Err(ChatError::BadName);
        }
        let (history, events) = {
            let mut rooms = self.lock();
            let state = rooms.entry(room.clone()).or_default();
            if !state.members.insert(nick.clone()) {
                return Err(ChatError::NickTaken);
            }
            // Subscribed before the join is published, under the same
            // lock: the member sees its own join and nothing is missed.
            let events = state.events.subscribe();
            let history: Vec<Event> = state.history.iter().cloned().collect();
            state.publish(Event::Joined {
                nick: nick.clone(),
                at: now_ms(),
            });
            (history, events)
        };
        let membership = Membership {
            rooms: self.clone(),
            room,
            nick,
        };
        let live = futures_util::stream::unfold(
            (events, membership),
            |(mut events, membership)| async move {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => Event::Lagged { skipped },
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((event, (events, membership)))
            },
        );
        Ok(Stream::new(futures_util::stream::iter(history).chain(live)))
    }

    async fn send(&self, room: String, nick: String, text: String) -> Result<(), ChatError> {
        if text.trim().is_empty() || text.len() > MAX_TEXT {
            return Err(ChatError::BadText);
        }
        let mut rooms = self.lock();
        let state = match rooms.get_mut(&room) {
            Some(state) if state.members.contains(&nick) => state,
            _ => return Err(ChatError::NotInRoom),
        };
        state.publish(Event::Message {
            nick,
            text,
            at: now_ms(),
        });
        Ok(())
    }

    async fn who(&self, room: String) -> Vec<String> {
        self.lock()
            .get(&room)
            .map(|state| state.members.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// `HH:MM:SS` (UTC) of a time in milliseconds since the Unix epoch.
pub fn clock(at_ms: u64) -> String {
    let seconds = at_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_member_sees_history_then_live_events_and_its_leave_is_announced() {
        let rooms = Rooms::default();
        let ana = rooms.join("sala".into(), "ana".into()).await.unwrap();
        rooms
            .send("sala".into(), "ana".into(), "olá".into())
            .await
            .unwrap();
        let mut ana_items = ana;
        let mut bia_items = rooms.join("sala".into(), "bia".into()).await.unwrap();
        // Bia gets the history (ana's message), then her own join.
        match bia_items.next().await {
            Some(Ok(Event::Message { nick, text, .. })) => {
                assert_eq!((nick.as_str(), text.as_str()), ("ana", "olá"))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(bia_items.next().await, Some(Ok(Event::Joined { nick, .. })) if nick == "bia")
        );
        assert_eq!(rooms.who("sala".into()).await, ["ana", "bia"]);
        assert_eq!(
            rooms.join("sala".into(), "bia".into()).await.err(),
            Some(ChatError::NickTaken)
        );
        drop(bia_items);
        assert_eq!(rooms.who("sala".into()).await, ["ana"]);
        // Ana saw her join, her message, bia's join and leave.
        let mut kinds = Vec::new();
        for _ in 0..4 {
            kinds.push(match ana_items.next().await {
                Some(Ok(Event::Joined { nick, .. })) => format!("+{nick}"),
                Some(Ok(Event::Message { text, .. })) => text,
                Some(Ok(Event::Left { nick, .. })) => format!("-{nick}"),
                other => panic!("{other:?}"),
            });
        }
        assert_eq!(kinds, ["+ana", "olá", "+bia", "-bia"]);
    }

    #[tokio::test]
    async fn a_member_that_falls_behind_gets_a_lagged_event_and_the_room_goes_on() {
        let rooms = Rooms::default();
        let slow = rooms.join("r".into(), "slow".into()).await.unwrap();
        let fast = rooms.join("r".into(), "fast".into()).await.unwrap();
        let (mut slow, mut fast) = (slow, fast);
        let total = ROOM_BUFFER + 10;
        for i in 0..total {
            rooms
                .send("r".into(), "fast".into(), format!("m{i}"))
                .await
                .unwrap();
            // The fast member keeps up.
            loop {
                if let Some(Ok(Event::Message { text, .. })) = fast.next().await {
                    assert_eq!(text, format!("m{i}"));
                    break;
                }
            }
        }
        // The slow one read nothing: it skipped the oldest events, and is
        // told how many, then gets the rest.
        match slow.next().await {
            Some(Ok(Event::Lagged { skipped })) => assert!(skipped >= 11, "{skipped}"),
            other => panic!("expected Lagged first, got {other:?}"),
        }
        let newest = format!("m{}", total - 1);
        let mut after_lag = 0;
        loop {
            match slow.next().await {
                Some(Ok(Event::Message { text, .. })) if text == newest => break,
                Some(Ok(Event::Message { .. })) => after_lag += 1,
                other => panic!("expected the newest messages, got {other:?}"),
            }
        }
        assert!(after_lag < ROOM_BUFFER, "{after_lag} older messages kept");
    }

    #[test]
    fn names_and_clock() {
        assert!(valid_name("ana"));
        assert!(!valid_name(""));
        assert!(!valid_name("   "));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(MAX_NAME + 1)));
        assert_eq!(clock(((13 * 60 + 5) * 60 + 9) * 1000), "13:05:09");
    }
}
