//! Presence across servers: this server's members in Redis, with expiry.
//!
//! Each server keeps one hash per channel it has members in,
//! `<prefix>:presence:<server>:<channel>`, field = local connection id,
//! value = `{"user_id":…,"name":…}`. Every key carries a TTL of
//! `presence_expiry` that the heartbeat renews: when a server dies without
//! cleaning up, its hashes vanish by themselves within the expiry. A live
//! server also keeps `<prefix>:server:<server>` (same TTL) and its id in the
//! set `<prefix>:servers`, which readers use to find the hashes; a heartbeat
//! removes from the set ids whose `server` key expired.
//!
//! The index here mirrors which local connection is in which channel. Changes
//! mark (channel, connection) pairs dirty and wake the writer, which writes
//! the current state of those fields, so a burst of joins costs one round
//! trip and nothing is lost while Redis is away: on reconnection every
//! channel is rewritten in full.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use ws_core::hub::member_of;
use ws_core::{Connection, ConnectionId, Member};

use crate::id::ServerId;
use crate::keys::Keys;

/// A member as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    user_id: Option<String>,
    name: String,
}

/// The value stored for `conn`.
pub(crate) fn stored_value(conn: &Connection) -> String {
    let m = member_of(conn);
    serde_json::to_string(&Stored {
        user_id: m.user_id,
        name: m.name,
    })
    .unwrap_or_default()
}

#[derive(Debug)]
struct LocalConn {
    value: String,
    channels: HashSet<String>,
}

/// Which local connection is in which channel, and what Redis does not know
/// yet.
#[derive(Debug, Default)]
pub(crate) struct PresenceIndex {
    conns: HashMap<u64, LocalConn>,
    channels: HashMap<String, HashSet<u64>>,
    /// Fields to write (or delete) in a channel's hash.
    dirty: HashMap<String, HashSet<u64>>,
    /// Channels whose hash is rewritten in full (after a reconnection, or
    /// when a heartbeat found the hash gone).
    full: HashSet<String>,
}

/// Fields of one channel's hash: (connection id, `Some(value)` to set or
/// `None` to delete).
type FieldChanges = Vec<(u64, Option<String>)>;

/// One round of presence writes, taken from the index.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Channel -> changed fields.
    fields: Vec<(String, FieldChanges)>,
    /// Channel -> every member now (empty: delete the hash).
    full: Vec<(String, Vec<(u64, String)>)>,
}

impl Work {
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.full.is_empty()
    }

    fn channels(&self) -> impl Iterator<Item = &String> {
        self.fields
            .iter()
            .map(|(c, _)| c)
            .chain(self.full.iter().map(|(c, _)| c))
    }
}

impl PresenceIndex {
    pub(crate) fn register(&mut self, id: ConnectionId, value: String) {
        self.conns.insert(
            id.get(),
            LocalConn {
                value,
                channels: HashSet::new(),
            },
        );
    }

    /// Returns whether Redis needs an update.
    pub(crate) fn unregister(&mut self, id: u64) -> bool {
        let Some(c) = self.conns.remove(&id) else {
            return false;
        };
        let changed = !c.channels.is_empty();
        for ch in c.channels {
            if let Some(set) = self.channels.get_mut(&ch) {
                set.remove(&id);
                if set.is_empty() {
                    self.channels.remove(&ch);
                }
            }
            self.dirty.entry(ch).or_default().insert(id);
        }
        changed
    }

    /// Returns whether Redis needs an update.
    pub(crate) fn refresh(&mut self, id: u64, value: String) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if c.value == value {
            return false;
        }
        c.value = value;
        for ch in &c.channels {
            self.dirty.entry(ch.clone()).or_default().insert(id);
        }
        !c.channels.is_empty()
    }

    /// Returns whether Redis needs an update.
    pub(crate) fn join(&mut self, id: u64, channel: &str) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if !c.channels.insert(channel.to_owned()) {
            return false;
        }
        self.channels
            .entry(channel.to_owned())
            .or_default()
            .insert(id);
        self.dirty.entry(channel.to_owned()).or_default().insert(id);
        true
    }

    /// Returns whether Redis needs an update.
    pub(crate) fn leave(&mut self, id: u64, channel: &str) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        if !c.channels.remove(channel) {
            return false;
        }
        if let Some(set) = self.channels.get_mut(channel) {
            set.remove(&id);
            if set.is_empty() {
                self.channels.remove(channel);
            }
        }
        self.dirty.entry(channel.to_owned()).or_default().insert(id);
        true
    }

    /// Every channel is rewritten at the next flush (after a reconnection).
    pub(crate) fn mark_all_full(&mut self) {
        let names: Vec<String> = self
            .channels
            .keys()
            .chain(self.dirty.keys())
            .cloned()
            .collect();
        self.full.extend(names);
        self.dirty.clear();
    }

    /// These channels are rewritten at the next flush.
    pub(crate) fn mark_full<'a>(&mut self, channels: impl IntoIterator<Item = &'a String>) {
        for ch in channels {
            self.dirty.remove(ch);
            self.full.insert(ch.clone());
        }
    }

    /// Whether anything waits to be written.
    #[cfg(test)]
    pub(crate) fn has_work(&self) -> bool {
        !self.dirty.is_empty() || !self.full.is_empty()
    }

    /// Takes what Redis does not know yet, as of now.
    pub(crate) fn take_work(&mut self) -> Work {
        let mut work = Work::default();
        for ch in std::mem::take(&mut self.full) {
            let members = self
                .channels
                .get(&ch)
                .into_iter()
                .flatten()
                .filter_map(|id| self.conns.get(id).map(|c| (*id, c.value.clone())))
                .collect();
            work.full.push((ch, members));
        }
        for (ch, ids) in std::mem::take(&mut self.dirty) {
            let fields = ids
                .into_iter()
                .map(|id| {
                    let value = self
                        .conns
                        .get(&id)
                        .filter(|c| c.channels.contains(&ch))
                        .map(|c| c.value.clone());
                    (id, value)
                })
                .collect();
            work.fields.push((ch, fields));
        }
        work
    }

    /// The writes of `work` failed: rewrite those channels at the next flush.
    pub(crate) fn requeue(&mut self, work: &Work) {
        let names: Vec<String> = work.channels().cloned().collect();
        self.mark_full(&names);
    }

    /// Channels with local members.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }

    /// Channels that may have a hash in Redis: with members now, or waiting
    /// for a write.
    pub(crate) fn all_channels(&self) -> Vec<String> {
        let mut all: HashSet<&String> = self.channels.keys().collect();
        all.extend(self.dirty.keys());
        all.extend(self.full.iter());
        all.into_iter().cloned().collect()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes `work` in one atomic pipeline.
pub(crate) async fn write(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    server: &ServerId,
    expiry: Duration,
    work: &Work,
) -> redis::RedisResult<()> {
    let ttl = millis(expiry);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (ch, members) in &work.full {
        let key = keys.presence(server, ch);
        pipe.del(&key).ignore();
        if !members.is_empty() {
            pipe.hset_multiple(&key, members).ignore();
            pipe.pexpire(&key, ttl).ignore();
        }
    }
    for (ch, fields) in &work.fields {
        let key = keys.presence(server, ch);
        let set: Vec<(u64, &String)> = fields
            .iter()
            .filter_map(|(id, v)| v.as_ref().map(|v| (*id, v)))
            .collect();
        let del: Vec<u64> = fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !del.is_empty() {
            pipe.hdel(&key, del).ignore();
        }
        if !set.is_empty() {
            pipe.hset_multiple(&key, &set).ignore();
            pipe.pexpire(&key, ttl).ignore();
        }
    }
    pipe.query_async::<()>(conn).await
}

/// What a heartbeat learnt.
#[derive(Debug)]
pub(crate) struct Beat {
    /// Channels whose hash was gone: they must be rewritten.
    pub(crate) gone: Vec<String>,
    /// Live servers, this one included.
    pub(crate) servers: usize,
}

/// Renews this server's keys and forgets dead servers.
pub(crate) async fn heartbeat(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    server: &ServerId,
    expiry: Duration,
    channels: &[String],
) -> redis::RedisResult<Beat> {
    let ttl = millis(expiry);
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(keys.alive(server))
        .arg(std::process::id())
        .arg("PX")
        .arg(ttl)
        .ignore();
    pipe.sadd(&keys.servers, server.to_string()).ignore();
    for ch in channels {
        pipe.pexpire(keys.presence(server, ch), ttl);
    }
    let renewed: Vec<bool> = pipe.query_async(conn).await?;
    let gone = channels
        .iter()
        .zip(renewed)
        .filter(|(_, ok)| !ok)
        .map(|(c, _)| c.clone())
        .collect();

    // Forget servers whose `server` key expired (crashed ones).
    let others: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&keys.servers)
        .query_async(conn)
        .await?;
    let others: Vec<(String, ServerId)> = others
        .into_iter()
        .filter_map(|s| s.parse().ok().map(|id| (s, id)))
        .filter(|(_, id)| id != server)
        .collect();
    let mut servers = 1 + others.len();
    if !others.is_empty() {
        let mut pipe = redis::pipe();
        for (_, id) in &others {
            pipe.exists(keys.alive(id));
        }
        let alive: Vec<bool> = pipe.query_async(conn).await?;
        let dead: Vec<&String> = others
            .iter()
            .zip(alive)
            .filter(|(_, a)| !a)
            .map(|((s, _), _)| s)
            .collect();
        servers -= dead.len();
        if !dead.is_empty() {
            tracing::info!(servers = ?dead, "broker: forgetting servers that stopped renewing their presence");
            redis::cmd("SREM")
                .arg(&keys.servers)
                .arg(dead)
                .query_async::<()>(conn)
                .await?;
        }
    }
    Ok(Beat { gone, servers })
}

/// Removes every key of this server (clean shutdown).
pub(crate) async fn remove_all(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    server: &ServerId,
    channels: &[String],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.srem(&keys.servers, server.to_string()).ignore();
    pipe.del(keys.alive(server)).ignore();
    for ch in channels {
        pipe.del(keys.presence(server, ch)).ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// The members of `channel` on every live server but `server`.
pub(crate) async fn read_remote(
    mut conn: MultiplexedConnection,
    keys: &Keys,
    server: &ServerId,
    channel: &str,
) -> redis::RedisResult<Vec<Member>> {
    let servers: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&keys.servers)
        .query_async(&mut conn)
        .await?;
    let servers: Vec<ServerId> = servers
        .iter()
        .filter_map(|s| s.parse().ok())
        .filter(|s| s != server)
        .collect();
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for s in &servers {
        pipe.hgetall(keys.presence(s, channel));
    }
    let hashes: Vec<Vec<(String, String)>> = pipe.query_async(&mut conn).await?;
    let mut out = Vec::new();
    for (s, fields) in servers.iter().zip(hashes) {
        for (id, value) in fields {
            match serde_json::from_str::<Stored>(&value) {
                Ok(m) => out.push(Member {
                    connection: format!("{s}/{id}"),
                    user_id: m.user_id,
                    name: m.name,
                }),
                Err(e) => {
                    tracing::debug!(server = %s, %id, error = %e, "broker: unreadable presence entry");
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn index_tracks_what_redis_must_learn() {
        let mut ix = PresenceIndex::default();
        let (a, b) = (ConnectionId::next(), ConnectionId::next());
        let (ia, ib) = (a.get(), b.get());
        ix.register(a, v("a"));
        ix.register(b, v("b"));
        assert!(!ix.has_work());
        assert!(ix.join(ia, "room"));
        assert!(!ix.join(ia, "room"), "joining twice changes nothing");
        assert!(ix.join(ib, "room"));
        assert!(!ix.join(u64::MAX, "room"), "unknown connection");
        let w = ix.take_work();
        assert_eq!(w.fields.len(), 1);
        let mut f = w.fields[0].1.clone();
        f.sort();
        assert_eq!(f, vec![(ia, Some(v("a"))), (ib, Some(v("b")))]);
        assert!(!ix.has_work());

        assert!(ix.leave(ib, "room"));
        assert!(ix.refresh(ia, v("a2")));
        assert!(!ix.refresh(ia, v("a2")));
        let w = ix.take_work();
        let mut f = w.fields[0].1.clone();
        f.sort();
        assert_eq!(f, vec![(ia, Some(v("a2"))), (ib, None)]);

        assert!(ix.unregister(ia));
        assert!(ix.channels().is_empty());
        let w = ix.take_work();
        assert_eq!(w.fields[0].1, vec![(ia, None)]);
    }

    #[test]
    fn reconnection_rewrites_everything_including_emptied_channels() {
        let mut ix = PresenceIndex::default();
        let a = ConnectionId::next();
        let ia = a.get();
        ix.register(a, v("a"));
        ix.join(ia, "kept");
        ix.join(ia, "left");
        let _ = ix.take_work();
        // While Redis is away: a leave is only dirty.
        ix.leave(ia, "left");
        ix.mark_all_full();
        let mut w = ix.take_work();
        w.full.sort();
        assert_eq!(
            w.full,
            vec![(v("kept"), vec![(ia, v("a"))]), (v("left"), vec![])]
        );
        assert!(w.fields.is_empty());
        // A failed write is retried in full.
        ix.requeue(&w);
        assert_eq!(ix.take_work().full.len(), 2);
    }
}
