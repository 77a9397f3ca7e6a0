//! A route as the proxy serves it: the validated config route plus the metric series its requests count in,
//! each looked up once when the route is built.

use prometheus::{Histogram, IntCounter};

use crate::config::Route;
use crate::domain::Class;
use crate::metrics::Series;

/// A route's metric series that do not depend on a request's outcome.
#[derive(Default)]
pub struct RouteSeries {
    pub duration: Series<Histogram>,
    /// By index of the route's fields.
    pub fields: Vec<Series<IntCounter>>,
    /// By class, in [`Class::ALL`] order.
    pub detected: [Series<IntCounter>; Class::ALL.len()],
}

/// A route and its series, served by one flow.
pub struct Compiled<A> {
    pub route: Route<A>,
    pub series: RouteSeries,
}

impl<A> Compiled<A> {
    pub fn new(route: Route<A>) -> Compiled<A> {
        let series =
            RouteSeries { fields: route.fields.iter().map(|_| Series::default()).collect(), ..Default::default() };
        Compiled { route, series }
    }

    pub fn name(&self) -> &str {
        &self.route.name
    }
}
