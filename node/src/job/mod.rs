//! A batch job as this node runs it: the plan resolved from the command line
//! ([`plan`]), the local runner ([`local`]), the OUT directory layout
//! ([`outdir`]) and the `job.json` report ([`report`]).

pub mod local;
pub mod outdir;
pub mod plan;
pub mod report;
