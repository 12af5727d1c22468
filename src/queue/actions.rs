//! What an operator's action does to a job, the same in every backend: the backend finds the
//! job, checks it may be changed, applies one of these and stores it.

use super::{Action, Job, JobId, QueueError, Reason, State};

/// The action's name in messages.
pub fn name(action: Action) -> &'static str {
    match action {
        Action::Retry => "retry",
        Action::Skip => "skip",
        Action::Accept => "accept",
    }
}

/// Whether an operator may act on a job in `state` (not while a worker has it, not once settled).
pub fn may_change(state: State) -> bool {
    matches!(
        state,
        State::Dead | State::Parked | State::Held | State::Retrying
    )
}

pub fn wrong_state(id: JobId, state: State, action: &'static str) -> QueueError {
    QueueError::WrongState {
        id,
        state: state.as_str(),
        action,
        needs: "dead, parked, held or retrying",
    }
}

/// Accept is only for a held job.
pub fn check_accept(id: JobId, state: State, action: Action) -> Result<(), QueueError> {
    if action == Action::Accept && state != State::Held {
        return Err(QueueError::WrongState {
            id,
            state: state.as_str(),
            action: name(action),
            needs: "held",
        });
    }
    Ok(())
}

/// Applies `action` to a job an operator may change.
pub fn apply(job: &mut Job, action: Action) {
    match action {
        Action::Retry => {
            // A fresh retry budget, unless it is only brought forward.
            if job.state != State::Retrying {
                job.failing = None;
            }
            job.state = State::Ready;
            job.reason = None;
        }
        Action::Accept => {
            job.state = State::Ready;
            job.reason = None;
            job.accepted = true;
        }
        Action::Skip => {
            job.state = State::Skipped;
            job.reason = Some(Reason::new("skipped_by_operator", "skipped by an operator"));
        }
    }
}

/// Edit-and-resubmit: runs again under a new idempotency key.
pub fn resubmit(job: &mut Job) {
    job.state = State::Ready;
    job.reason = None;
    job.resubmits += 1;
}

/// What every change by an operator also does: no timer, nothing waited for (an in-doubt job
/// stays in doubt: the adapter checks before it creates again).
pub fn touched(job: &mut Job, now_ms: i64) {
    job.due_ms = None;
    job.waits_for = None;
    job.updated_ms = now_ms;
}

/// A dead letter made moot by job `by`, which delivered a later version of `record`.
pub fn supersede(job: &mut Job, by: JobId, record: &str, now_ms: i64) {
    job.state = State::Skipped;
    job.reason = Some(Reason::new(
        "superseded",
        format!("job {by} delivered a later version of {record}"),
    ));
    job.due_ms = None;
    job.updated_ms = now_ms;
}
