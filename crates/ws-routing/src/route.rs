//! One mounted route, and the result of matching a request path.

/// A component mounted on a path of a [`RouteTable`](crate::RouteTable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<T> {
    pub(crate) path: String,
    pub(crate) component: String,
    pub(crate) value: T,
}

impl<T> Route<T> {
    /// The full path, prefix included, in matchit syntax
    /// (`/ws/chat/{room}`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The display name (type path) of the component.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The value registered with the route (typically the component).
    pub fn value(&self) -> &T {
        &self.value
    }
}

/// A request path matched to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    /// The route that matched.
    pub route: &'a Route<T>,
    /// The route's parameters as `(name, value)`, in the order they appear
    /// in the pattern; values are percent-decoded.
    pub params: Vec<(String, String)>,
}
