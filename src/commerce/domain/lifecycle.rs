//! The product lifecycle as an explicit state machine: `transition` is the one
//! function that decides whether an action is allowed in a state, and which event
//! it records. Handlers and storage never choose a status themselves.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Planning,
    Development,
    Review,
    Preparation,
    Launch,
    Sales,
    EndOfLife,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Planning,
        Status::Development,
        Status::Review,
        Status::Preparation,
        Status::Launch,
        Status::Sales,
        Status::EndOfLife,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Planning => "PLANNING",
            Status::Development => "DEVELOPMENT",
            Status::Review => "REVIEW",
            Status::Preparation => "PREPARATION",
            Status::Launch => "LAUNCH",
            Status::Sales => "SALES",
            Status::EndOfLife => "END_OF_LIFE",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// What a caller asks the lifecycle to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    StartDevelopment,
    SubmitForReview,
    Approve,
    Reject,
    Launch,
    StartSales,
    Retire,
}

impl Action {
    /// Approve and reject are the reviewer's (four-eyes); the rest are the seller's.
    pub fn is_review(self) -> bool {
        matches!(self, Action::Approve | Action::Reject)
    }
}

/// The kinds of lifecycle event recorded at `/v1/products/{id}/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    Created,
    Updated,
    Approved,
    Rejected,
    Launched,
    Retired,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "CREATED",
            EventKind::Updated => "UPDATED",
            EventKind::Approved => "APPROVED",
            EventKind::Rejected => "REJECTED",
            EventKind::Launched => "LAUNCHED",
            EventKind::Retired => "RETIRED",
        }
    }
}

/// A refused transition: the action is not allowed in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub current: Status,
    pub action: Action,
}

/// The one place that decides: `(from, action)` → the new state and the event to record.
pub fn transition(from: Status, action: Action) -> Result<(Status, EventKind), Refused> {
    use Action as A;
    use Status as S;
    match (from, action) {
        (S::Planning, A::StartDevelopment) => Ok((S::Development, EventKind::Updated)),
        (S::Development, A::SubmitForReview) => Ok((S::Review, EventKind::Updated)),
        (S::Review, A::Approve) => Ok((S::Preparation, EventKind::Approved)),
        (S::Review, A::Reject) => Ok((S::Development, EventKind::Rejected)),
        (S::Preparation, A::Launch) => Ok((S::Launch, EventKind::Launched)),
        (S::Launch, A::StartSales) => Ok((S::Sales, EventKind::Updated)),
        (S::Sales, A::Retire) => Ok((S::EndOfLife, EventKind::Retired)),
        (current, action) => Err(Refused { current, action }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table() {
        use Action as A;
        use EventKind as E;
        use Status as S;
        let allowed = [
            (S::Planning, A::StartDevelopment, S::Development, E::Updated),
            (S::Development, A::SubmitForReview, S::Review, E::Updated),
            (S::Review, A::Approve, S::Preparation, E::Approved),
            (S::Review, A::Reject, S::Development, E::Rejected),
            (S::Preparation, A::Launch, S::Launch, E::Launched),
            (S::Launch, A::StartSales, S::Sales, E::Updated),
            (S::Sales, A::Retire, S::EndOfLife, E::Retired),
        ];
        let actions = [
            A::StartDevelopment,
            A::SubmitForReview,
            A::Approve,
            A::Reject,
            A::Launch,
            A::StartSales,
            A::Retire,
        ];
        for from in Status::ALL {
            for action in actions {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _, _)| *f == from && *a == action)
                    .map(|(_, _, to, event)| (*to, *event));
                match expected {
                    Some(ok) => assert_eq!(transition(from, action), Ok(ok), "{from:?} {action:?}"),
                    None => assert_eq!(
                        transition(from, action),
                        Err(Refused { current: from, action }),
                        "{from:?} {action:?} must be refused"
                    ),
                }
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("sales"), None);
    }
}
