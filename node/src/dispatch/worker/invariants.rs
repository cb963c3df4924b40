//! What must hold of the worker between any two events, checked by its
//! property test: it never holds more tasks than its slots and look-ahead
//! allow, a task given back is also stopped, every task it holds is
//! remembered (a replayed offer of it is refused), and its memories stay
//! within their bounds.

use corral_scheduler::batch::MAX_AHEAD;

use super::Worker;
use super::admission::{MAX_SEEN, MAX_VERIFIED};

impl Worker {
    /// Checks the worker's invariants; the first broken one, described.
    pub fn check_invariants(&self) -> Result<(), String> {
        let most = usize::from(self.admission.slots()) + usize::from(MAX_AHEAD);
        if self.running.len() > most {
            return Err(format!(
                "{} tasks held, more than {most} (slots and look-ahead)",
                self.running.len()
            ));
        }
        for (&(job, index), running) in &self.running {
            let given_back = running.hand_back.get().is_some();
            if given_back && !running.cancel.is_stopped() {
                return Err(format!(
                    "task {index} of {job} was given back but not stopped"
                ));
            }
            if !given_back && !self.admission.remembers(job, index, running.attempt) {
                return Err(format!(
                    "task {index} of {job} (attempt {}) is held but not remembered: \
                     a replay of its offer would be taken",
                    running.attempt
                ));
            }
        }
        let (seen, verified) = self.admission.sizes();
        if seen > MAX_SEEN || verified > MAX_VERIFIED {
            return Err(format!(
                "{seen} offers remembered (bound {MAX_SEEN}), {verified} manifests cached \
                 (bound {MAX_VERIFIED})"
            ));
        }
        Ok(())
    }
}
