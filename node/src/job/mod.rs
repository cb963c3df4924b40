//! A batch job as this node runs it: the plan resolved from the command line
//! ([`plan`]) and its [`module`], the local runner ([`local`]), the OUT directory layout
//! ([`outdir`]), the `job.json` report ([`report`]) and the recent runs
//! of the tasks this node coordinates ([`timeline`]).

pub mod local;
pub mod module;
pub mod outdir;
pub mod plan;
pub mod report;
pub mod timeline;
