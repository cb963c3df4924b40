//! What the size bound must keep for the jobs this node coordinates: every
//! blob a live job needs to run, and the output its results gave so far.

use std::collections::HashSet;

use corral_protocol::hash::ContentHash;

use super::Coordinator;
use crate::clock::Clock;

impl<C: Clock> Coordinator<C> {
    /// The blobs the live jobs need: module, inputs, stdin, trees, and the
    /// stdout, stderr and files of the runs taken so far.
    pub fn pinned_blobs(&self) -> HashSet<ContentHash> {
        let mut pins = HashSet::new();
        for job in self.jobs.values().filter(|j| j.is_live()) {
            pins.extend(crate::blobs::needed_by(&job.manifest, None));
            for run in job.tasks.iter().flat_map(|t| &t.runs) {
                pins.insert(run.stdout);
                pins.insert(run.stderr);
                pins.extend(run.files.iter().map(|f| f.hash));
            }
        }
        pins
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fixture;

    #[test]
    fn a_live_job_pins_its_module_and_a_finished_one_does_not() {
        let fixture = Fixture::new();
        let mut c = fixture.load();
        assert!(c.pinned_blobs().is_empty());
        let id = c
            .submit(fixture.spec(2, 1), crate::clock::now_ms())
            .expect("submitted");
        assert!(c.pinned_blobs().contains(&fixture.module));
        c.cancel(&id).expect("cancelled");
        assert!(
            !c.pinned_blobs().contains(&fixture.module),
            "a job that ended keeps nothing"
        );
    }
}
