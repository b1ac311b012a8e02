//! The edge's answer to a request, recorded in the unit that has the
//! request's effect.
//!
//! A retried request under an `Idempotency-Key` must get the first answer
//! and have no second effect. If the answer were stored after the effect,
//! a crash between the two would leave an effect without an answer, and the
//! retry would have the effect again. So a service that carries out a
//! request is handed an [`Answer`]: given what the service will answer, it
//! yields the change that stores that answer (sealed, by the edge), and the
//! service commits it in the same unit as the effect.
//!
//! A service with several units (a request carried out after its approval)
//! records the answer in the unit of the request's own effect (the
//! approval); the edge replaces it with the final answer afterwards.

use crate::error::ServiceResult;
use crate::store::Mutation;

type Record<'a, T> = dyn Fn(&T) -> ServiceResult<Option<Mutation>> + Send + Sync + 'a;

/// What a service answers (`T`) → the change that stores the answer; or
/// nothing to store (no `Idempotency-Key`, or a caller other than the HTTP
/// edge).
pub struct Answer<'a, T: ?Sized>(Option<Box<Record<'a, T>>>);

impl<'a, T: ?Sized> Answer<'a, T> {
    /// Nothing to record.
    pub fn none() -> Self {
        Answer(None)
    }

    /// Records with `record`.
    pub fn new(record: impl Fn(&T) -> ServiceResult<Option<Mutation>> + Send + Sync + 'a) -> Self {
        Answer(Some(Box::new(record)))
    }

    /// The change that stores `answer`, if any.
    pub fn record(&self, answer: &T) -> ServiceResult<Option<Mutation>> {
        match &self.0 {
            Some(record) => record(answer),
            None => Ok(None),
        }
    }

    /// The answer of a step whose result (`U`) the service turns into its
    /// own answer with `to`: records what `self` records of `to(u)`, and
    /// nothing when `self` records nothing.
    pub fn before<'s, U: ?Sized>(&'s self, to: impl Fn(&U) -> T + Send + Sync + 's) -> Answer<'s, U>
    where
        T: Sized,
    {
        match &self.0 {
            None => Answer::none(),
            Some(_) => Answer::new(move |u: &U| self.record(&to(u))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(m: ServiceResult<Option<Mutation>>) -> Option<Vec<u8>> {
        match m {
            Ok(Some(Mutation::SetMeta { value, .. })) => Some(value),
            Ok(None) => None,
            _ => panic!("unexpected record"),
        }
    }

    #[test]
    fn a_step_records_what_the_service_answers() {
        let answer: Answer<usize> = Answer::new(|n: &usize| {
            Ok(Some(Mutation::SetMeta {
                name: "answer".into(),
                value: n.to_string().into_bytes(),
            }))
        });
        let step = answer.before(|s: &str| s.len());
        assert_eq!(stored(step.record("abcd")), Some(b"4".to_vec()));
    }

    #[test]
    fn a_step_records_nothing_when_the_service_records_nothing() {
        let answer: Answer<usize> = Answer::none();
        let step = answer.before(|s: &str| s.len());
        assert_eq!(stored(step.record("abcd")), None);
    }
}
