//! Deadlines from durations a user may set to anything.
//!
//! Every setting of this crate takes a `Duration`, and `Duration::MAX` is a
//! legal value: adding it to an `Instant` overflows and panics. Every
//! deadline is computed here instead, saturating: a duration too large to
//! add means "no limit in practice" (about thirty years).

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: later than any deadline that matters.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + duration`, or about thirty years from now if that overflows.
pub(crate) fn after(duration: Duration) -> Instant {
    at(Instant::now(), duration)
}

/// `start + duration`, saturating as [`after`] does.
pub(crate) fn at(start: Instant, duration: Duration) -> Instant {
    start.checked_add(duration).unwrap_or_else(|| start + FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_duration_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert!(at(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(at(now, Duration::ZERO), now);
        let _ = after(Duration::MAX);
    }
}
