//! The introspection circuit breaker: a small pure state machine (state + time in,
//! decision out). After `threshold` consecutive failures it opens for `open_secs`,
//! then lets exactly one probe through (half-open): the probe's success closes it,
//! its failure opens it again. No I/O, no clock of its own — callers pass `now`.

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; `failures` consecutive ones have failed so far.
    Closed { failures: u32 },
    /// Calls are refused until `until` (Unix seconds).
    Open { until: i64 },
    /// One probe is in flight since `since`; other calls are refused meanwhile.
    HalfOpen { since: i64 },
}

impl State {
    /// The name reported in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// Numeric value for the `/metrics` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// What to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Make the call and report its outcome.
    Call,
    /// Make the call as the single half-open probe and report its outcome.
    Probe,
    /// Do not call; the caller may retry after this many seconds.
    Refuse { retry_after: i64 },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    threshold: u32,
    open_secs: i64,
}

impl Breaker {
    /// The breaker the commerce API uses: 5 consecutive failures open it for 30 s.
    pub const THRESHOLD: u32 = 5;
    pub const OPEN_SECS: i64 = 30;

    pub fn new(threshold: u32, open_secs: i64) -> Self {
        Self {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            open_secs: open_secs.max(1),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Decides whether a call may go out at `now`. An open breaker whose time is up
    /// becomes half-open and hands out exactly one probe. A probe that never reported
    /// back (its request was dropped) is replaced after `open_secs`.
    pub fn decide(&mut self, now: i64) -> Decision {
        match self.state {
            State::Closed { .. } => Decision::Call,
            State::Open { until } if now < until => Decision::Refuse {
                retry_after: until - now,
            },
            State::HalfOpen { since } if now - since < self.open_secs => Decision::Refuse { retry_after: 1 },
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { since: now };
                Decision::Probe
            }
        }
    }

    /// A call succeeded. Returns the new state when it changed.
    pub fn success(&mut self) -> Option<State> {
        let before = self.state;
        self.state = State::Closed { failures: 0 };
        (before.name() != self.state.name()).then_some(self.state)
    }

    /// A call failed (timeout, network error, non-2xx, unreadable answer). Returns the
    /// new state when it changed.
    pub fn failure(&mut self, now: i64) -> Option<State> {
        let before = self.state;
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed { failures: failures + 1 },
            State::Open { until } => State::Open { until },
            _ => State::Open {
                until: now + self.open_secs,
            },
        };
        (before.name() != self.state.name()).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::{Breaker, Decision, State};

    enum Step {
        Decide(i64, Decision),
        Ok,
        Fail(i64),
    }
    use Step::*;

    fn run(steps: &[Step]) -> Breaker {
        let mut breaker = Breaker::new(Breaker::THRESHOLD, Breaker::OPEN_SECS);
        for (i, step) in steps.iter().enumerate() {
            match step {
                Decide(now, want) => assert_eq!(breaker.decide(*now), *want, "step {i}: {:?}", breaker.state()),
                Ok => {
                    breaker.success();
                }
                Fail(now) => {
                    breaker.failure(*now);
                }
            }
        }
        breaker
    }

    #[test]
    fn breaker_transitions_table() {
        let call = Decision::Call;
        let probe = Decision::Probe;
        let refuse = |retry_after| Decision::Refuse { retry_after };
        let table: Vec<(&str, Vec<Step>, State)> = vec![
            (
                "fresh breaker calls",
                vec![Decide(0, call)],
                State::Closed { failures: 0 },
            ),
            (
                "four failures stay closed",
                vec![Fail(0), Fail(0), Fail(0), Fail(0), Decide(0, call)],
                State::Closed { failures: 4 },
            ),
            (
                "a success resets the count",
                vec![Fail(0), Fail(0), Fail(0), Fail(0), Ok, Fail(0), Decide(0, call)],
                State::Closed { failures: 1 },
            ),
            (
                "the fifth consecutive failure opens for 30 s",
                vec![
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(100),
                    Decide(100, refuse(30)),
                    Decide(129, refuse(1)),
                ],
                State::Open { until: 130 },
            ),
            (
                "after 30 s exactly one probe, others refused",
                vec![
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Decide(30, probe),
                    Decide(30, refuse(1)),
                    Decide(45, refuse(1)),
                ],
                State::HalfOpen { since: 30 },
            ),
            (
                "a successful probe closes",
                vec![
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Decide(30, probe),
                    Ok,
                    Decide(31, call),
                ],
                State::Closed { failures: 0 },
            ),
            (
                "a failed probe reopens for another 30 s",
                vec![
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Decide(30, probe),
                    Fail(31),
                    Decide(60, refuse(1)),
                    Decide(61, probe),
                ],
                State::HalfOpen { since: 61 },
            ),
            (
                "a lost probe is replaced after 30 s",
                vec![
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Fail(0),
                    Decide(30, probe),
                    Decide(59, refuse(1)),
                    Decide(60, probe),
                ],
                State::HalfOpen { since: 60 },
            ),
            (
                "late failures of calls made before opening do not extend it",
                vec![Fail(0), Fail(0), Fail(0), Fail(0), Fail(0), Fail(20), Decide(30, probe)],
                State::HalfOpen { since: 30 },
            ),
        ];
        for (name, steps, want) in table {
            assert_eq!(run(&steps).state(), want, "{name}");
        }
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut breaker = Breaker::new(2, 30);
        assert_eq!(breaker.failure(0), None);
        assert_eq!(breaker.failure(0), Some(State::Open { until: 30 }));
        assert_eq!(breaker.failure(1), None);
        assert_eq!(breaker.decide(30), Decision::Probe);
        assert_eq!(breaker.success(), Some(State::Closed { failures: 0 }));
        assert_eq!(breaker.success(), None);
    }
}
