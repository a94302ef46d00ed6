//! How long to wait before trying a lost server again: a quarter of a second, doubling up to four
//! seconds, so a short outage is bridged quickly and a long one costs few attempts.

use std::time::Duration;

pub const FIRST_RETRY: Duration = Duration::from_millis(250);
pub const LAST_RETRY: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_RETRY }
    }
}

impl Backoff {
    /// The wait before the next attempt; the one after is twice as long, up to [`LAST_RETRY`].
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(LAST_RETRY);
        wait
    }

    /// The server answered: the next outage starts from [`FIRST_RETRY`] again.
    pub fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_last_wait_and_starts_over_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..7).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST_RETRY);
    }
}
