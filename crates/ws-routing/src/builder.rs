//! Building a route table: defaults, prefixing, conflict detection.

use std::fmt;

use matchit::{InsertError, Router};

use crate::error::RouteError;
use crate::join::join;
use crate::path::{normalize_prefix, normalize_route};
use crate::route::Route;
use crate::table::RouteTable;

/// Collects components' routes under one prefix.
///
/// Each [`add`](Self::add) either mounts the route or leaves the builder
/// unchanged and says why.
///
/// ```
/// use ws_routing::{RouteError, RouteTableBuilder};
///
/// let mut builder = RouteTableBuilder::new("socket.io/").unwrap();
/// builder
///     .add(Some("echo"), "demo::Echo", ())?
///     .add(Some("/socket.io/chat/{room}"), "demo::Chat", ())?;
/// let err = builder.add(Some("/echo/"), "demo::Other", ()).unwrap_err();
/// assert!(matches!(err, RouteError::Conflict { .. }));
///
/// let table = builder.build();
/// let paths: Vec<_> = table.routes().iter().map(|r| r.path()).collect();
/// assert_eq!(paths, ["/socket.io/echo", "/socket.io/chat/{room}"]);
/// # Ok::<(), RouteError>(())
/// ```
pub struct RouteTableBuilder<T> {
    prefix: String,
    router: Router<usize>,
    routes: Vec<Route<T>>,
}

impl<T> RouteTableBuilder<T> {
    /// Starts an empty table under `prefix` (normalised with
    /// [`normalize_prefix`](crate::normalize_prefix)).
    ///
    /// # Errors
    ///
    /// [`RouteError::InvalidPrefix`] when the prefix is refused.
    pub fn new(prefix: &str) -> Result<Self, RouteError> {
        Ok(Self {
            prefix: normalize_prefix(prefix)?,
            router: Router::new(),
            routes: Vec::new(),
        })
    }

    /// The normalised prefix, `""` for the root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Mounts `value` for `component` on `route` under the prefix.
    ///
    /// `route` is the component's custom route; `None` uses
    /// [`ws_core::default_route`] of `component` (the component's
    /// [`name`](ws_core::Component::name), which is also what errors and
    /// listings show).
    ///
    /// # Errors
    ///
    /// [`RouteError::InvalidRoute`] when the route is refused, and
    /// [`RouteError::Conflict`] when it is already taken or overlaps a route
    /// added earlier so that matchit could not tell them apart (e.g.
    /// `/chat/{room}` and `/chat/{id}`). The builder is unchanged then.
    pub fn add(
        &mut self,
        route: Option<&str>,
        component: &str,
        value: T,
    ) -> Result<&mut Self, RouteError> {
        let declared = match route {
            Some(route) => route.to_owned(),
            None => ws_core::default_route(component),
        };
        let invalid = |reason: String| RouteError::InvalidRoute {
            route: declared.clone(),
            component: component.to_owned(),
            reason,
        };
        let path = join(&self.prefix, &normalize_route(&declared).map_err(invalid)?);

        // matchit may leave its tree altered when an insert fails: insert
        // into a copy so a refused route leaves the builder as it was.
        let mut router = self.router.clone();
        match router.insert(path.clone(), self.routes.len()) {
            Ok(()) => {}
            Err(InsertError::Conflict { with }) => {
                let existing = self.conflicting(&path, &with);
                return Err(RouteError::Conflict {
                    route: path,
                    component: component.to_owned(),
                    existing_route: existing.map_or(with, |r| r.path.clone()),
                    existing_component: existing
                        .map_or_else(|| "(unknown)".to_owned(), |r| r.component.clone()),
                });
            }
            // normalize_route already refused what matchit refuses.
            Err(other) => return Err(invalid(other.to_string())),
        }
        self.router = router;
        self.routes.push(Route {
            path,
            component: component.to_owned(),
            value,
        });
        Ok(self)
    }

    /// The route `path` conflicts with: the one matchit named, else the
    /// first that conflicts on its own.
    fn conflicting(&self, path: &str, with: &str) -> Option<&Route<T>> {
        self.routes.iter().find(|r| r.path == with).or_else(|| {
            self.routes.iter().find(|r| {
                let mut pair = Router::new();
                pair.insert(r.path.clone(), ()).is_ok()
                    && matches!(
                        pair.insert(path.to_owned(), ()),
                        Err(InsertError::Conflict { .. })
                    )
            })
        })
    }

    /// Finishes the table.
    pub fn build(self) -> RouteTable<T> {
        RouteTable {
            prefix: self.prefix,
            router: self.router,
            routes: self.routes,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTableBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTableBuilder")
            .field("prefix", &self.prefix)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}
