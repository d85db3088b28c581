//! What one RESP connection carries from command to command: its consistency levels, its
//! name, the contexts of its session reads, and who it authenticated as.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use driftkv_causal::VersionVector;
use driftkv_wire::Quorum;

use crate::auth::Role;

/// Keys a session remembers at most.
pub const SESSION_KEYS_MAX: usize = 10_000;

/// A connection's state.
pub struct Session {
    pub r: Quorum,
    pub w: Quorum,
    pub name: Option<Bytes>,
    pub id: u64,
    /// Set by QUIT, or by too many failed authentications: answer, then close.
    pub quit: bool,
    /// With `DRIFTKV SESSION ON`: the last context of each string key this connection read or
    /// wrote, so its GETs read its own writes and never go back.
    pub seen: Option<Seen>,
    pub auth: Auth,
}

/// Who the connection is, and how its attempts to say so went.
pub struct Auth {
    /// What the connection may do: `None` until it authenticates (on a node with users).
    pub role: Option<Role>,
    /// Commands run before authenticating.
    pub commands_before: u32,
    /// Failed authentications.
    pub failures: u32,
}

/// The contexts a session has seen, by key, forgetting the oldest key first past
/// [`SESSION_KEYS_MAX`].
#[derive(Default)]
pub struct Seen {
    contexts: HashMap<Bytes, VersionVector>,
    order: VecDeque<Bytes>,
}

impl Seen {
    /// The context last seen for `key` (empty when none).
    pub fn context(&self, key: &Bytes) -> VersionVector {
        self.contexts.get(key).cloned().unwrap_or_default()
    }

    fn remember(&mut self, key: &Bytes, context: &VersionVector) {
        if let Some(old) = self.contexts.get_mut(key) {
            let _ = old.merge(context);
            return;
        }
        if self.contexts.len() >= SESSION_KEYS_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.contexts.remove(&oldest);
        }
        self.contexts.insert(key.clone(), context.clone());
        self.order.push_back(key.clone());
    }
}

impl Session {
    /// A new connection's session: it starts authenticated as admin when the node has no
    /// users (`users_required` false).
    pub fn new(id: u64, users_required: bool) -> Session {
        Session {
            r: Quorum::Default,
            w: Quorum::Default,
            name: None,
            id,
            quit: false,
            seen: None,
            auth: Auth {
                role: (!users_required).then_some(Role::Admin),
                commands_before: 0,
                failures: 0,
            },
        }
    }

    /// Whether the connection has authenticated (or needs not).
    pub fn authenticated(&self) -> bool {
        self.auth.role.is_some()
    }

    /// Records `context` as seen for `key`, when session reads are on.
    pub fn remember(&mut self, key: &Bytes, context: &VersionVector) {
        if let Some(seen) = &mut self.seen {
            seen.remember(key, context);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_forgets_its_oldest_key_first() {
        let mut s = Session::new(1, false);
        s.seen = Some(Seen::default());
        let vv = VersionVector::new();
        for i in 0..=SESSION_KEYS_MAX {
            s.remember(&Bytes::from(i.to_string()), &vv);
        }
        let seen = s.seen.as_ref().unwrap();
        assert_eq!(seen.contexts.len(), SESSION_KEYS_MAX);
        assert!(!seen.contexts.contains_key(&Bytes::from("0")));
        assert!(seen.contexts.contains_key(&Bytes::from("1")));
    }

    #[test]
    fn without_users_a_connection_starts_as_admin() {
        assert_eq!(Session::new(1, false).auth.role, Some(Role::Admin));
        assert!(!Session::new(1, true).authenticated());
    }
}
