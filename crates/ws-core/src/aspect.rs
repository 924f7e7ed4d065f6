//! Who is on a connection: named user aspects (`frontend.user`,
//! `backend.user`, …) resolved at the handshake from the application's own
//! sessions or tokens.
//!
//! Every configured aspect is always present; an anonymous visitor has one
//! with `logged_in == false`, so a component never guesses about an `Option`.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

/// A user as one authentication source sees them.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct UserAspect {
    /// Whether a valid session or token was presented.
    pub logged_in: bool,
    /// The user's id in the application.
    pub id: Option<String>,
    /// The user's login or display name.
    pub username: Option<String>,
    /// Groups (roles) of the user.
    pub groups: Vec<String>,
    /// Anything else the source returned.
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// When the session or token stops being valid, if known.
    pub expires_at: Option<SystemTime>,
}

static ANONYMOUS: LazyLock<Arc<UserAspect>> = LazyLock::new(|| Arc::new(UserAspect::anonymous()));

impl UserAspect {
    /// Nobody logged in.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A logged-in user with an id.
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            logged_in: true,
            id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Sets the username.
    #[must_use]
    pub fn with_username(mut self, name: impl Into<String>) -> Self {
        self.username = Some(name.into());
        self
    }

    /// Sets the groups.
    #[must_use]
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the aspect has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Username, else id, else `anonymous`.
    pub fn display_name(&self) -> &str {
        self.username
            .as_deref()
            .or(self.id.as_deref())
            .filter(|_| self.logged_in)
            .unwrap_or("anonymous")
    }
}

/// The aspects of one connection, by name.
///
/// Kept as a vector sorted by name: a server configures a handful of
/// aspects, and every connection carries this (a map's first node alone
/// would cost more than the aspects).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aspects(Vec<(String, Arc<UserAspect>)>);

impl Aspects {
    /// No aspect.
    pub fn new() -> Self {
        Self::default()
    }

    /// The aspect `name`; anonymous when none of that name was resolved.
    pub fn get(&self, name: &str) -> Arc<UserAspect> {
        match self.find(name) {
            Ok(i) => Arc::clone(&self.0[i].1),
            Err(_) => Arc::clone(&ANONYMOUS),
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Whether an aspect of that name was configured and resolved.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets the aspect `name`, returning the previous one.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        aspect: UserAspect,
    ) -> Option<Arc<UserAspect>> {
        let name = name.into();
        let aspect = Arc::new(aspect);
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, aspect)),
            Err(i) => {
                self.0.insert(i, (name, aspect));
                None
            }
        }
    }

    /// Every aspect by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<UserAspect>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The first logged-in aspect in name order: the connection's user.
    pub fn user(&self) -> Option<Arc<UserAspect>> {
        self.0.iter().map(|(_, a)| a).find(|a| a.logged_in).cloned()
    }

    /// Gives spare capacity back (a connection keeps its aspects as long
    /// as it is open).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    /// How many aspects there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_aspects_are_anonymous() {
        let mut a = Aspects::new();
        assert!(!a.get("frontend.user").logged_in);
        a.insert("frontend.user", UserAspect::user("7").with_username("ann"));
        assert_eq!(a.get("frontend.user").display_name(), "ann");
        assert_eq!(a.user().unwrap().id.as_deref(), Some("7"));
        assert_eq!(UserAspect::anonymous().display_name(), "anonymous");
    }

    #[test]
    fn names_stay_sorted_and_unique() {
        let mut a = Aspects::new();
        assert!(a.insert("b", UserAspect::user("2")).is_none());
        assert!(a.insert("a", UserAspect::anonymous()).is_none());
        assert!(a.insert("c", UserAspect::user("3")).is_none());
        let old = a.insert("b", UserAspect::user("22")).unwrap();
        assert_eq!(old.id.as_deref(), Some("2"));
        let names: Vec<&str> = a.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(a.len(), 3);
        assert!(a.contains("c") && !a.contains("d"));
        // The first logged-in one in name order.
        assert_eq!(a.user().unwrap().id.as_deref(), Some("22"));
        assert_eq!(a.get("b").id.as_deref(), Some("22"));
    }

    #[test]
    fn expiry_and_groups() {
        let now = SystemTime::now();
        let u = UserAspect::user("1")
            .with_groups(["admin"])
            .with_expiry(now);
        assert!(u.in_group("admin") && !u.in_group("x"));
        assert!(u.is_expired(now));
        assert!(!UserAspect::user("1").is_expired(now));
    }
}
