//! Every Redis key and pub/sub channel name the broker uses, from one prefix.

use crate::id::ServerId;

/// Names under one prefix (`ws-provider` by default); see the crate docs
/// for the table.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    /// `<prefix>:bus`: the pub/sub channel of envelopes between servers.
    pub(crate) bus: String,
    /// `<prefix>:channel:`: plain publications to a channel start with it.
    pub(crate) channel_prefix: String,
    /// `<prefix>:user:`: plain publications to a user start with it.
    pub(crate) user_prefix: String,
    /// `<prefix>:servers`: set of the ids of live servers.
    pub(crate) servers: String,
}

impl Keys {
    /// The names under `prefix` (validated: no glob characters, so the
    /// patterns below match literally).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            bus: format!("{prefix}:bus"),
            channel_prefix: format!("{prefix}:channel:"),
            user_prefix: format!("{prefix}:user:"),
            servers: format!("{prefix}:servers"),
        }
    }

    /// `<prefix>:channel:*`.
    pub(crate) fn channel_pattern(&self) -> String {
        format!("{}*", self.channel_prefix)
    }

    /// `<prefix>:user:*`.
    pub(crate) fn user_pattern(&self) -> String {
        format!("{}*", self.user_prefix)
    }

    /// `<prefix>:server:<server>`: exists while the server is alive.
    pub(crate) fn alive(&self, server: &ServerId) -> String {
        format!("{}:server:{server}", self.prefix)
    }

    /// `<prefix>:presence:<server>:<channel>`: hash of the server's members
    /// of the channel (field: connection id, value: JSON member).
    pub(crate) fn presence(&self, server: &ServerId, channel: &str) -> String {
        format!("{}:presence:{server}:{channel}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let k = Keys::new("ws-provider");
        let s = ServerId::from_bytes([0xab; 16]);
        assert_eq!(k.bus, "ws-provider:bus");
        assert_eq!(k.channel_pattern(), "ws-provider:channel:*");
        assert_eq!(k.user_pattern(), "ws-provider:user:*");
        assert_eq!(k.servers, "ws-provider:servers");
        assert_eq!(k.alive(&s), format!("ws-provider:server:{s}"));
        assert_eq!(
            k.presence(&s, "room:1"),
            format!("ws-provider:presence:{s}:room:1")
        );
    }
}
