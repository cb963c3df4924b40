//! The `--verify` vote as a pure tally: given a task's results (who, and
//! the digest of what they produced), whether to wait for more runs, keep
//! one worker's result, ask for one more run after a first mismatch, or
//! give up on a split vote.

use std::collections::BTreeMap;

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;

/// What a task's results say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tally {
    /// Fewer results than the task needs: wait for the other runs.
    Short,
    /// Every result agrees: this worker's is kept.
    Agreed(PeerKey),
    /// The first disagreement: one more run is wanted, the majority wins.
    Mismatch,
    /// After a mismatch, most results agree: this worker's is kept.
    Majority(PeerKey),
    /// After a mismatch, no majority: `runs` runs gave `outputs` different
    /// outputs.
    Split {
        /// Results in.
        runs: usize,
        /// Distinct digests among them.
        outputs: usize,
    },
}

/// Tallies a task's results, `earlier` ones and `last`, the one just in,
/// for a task that needs `needed` agreeing ones under `--verify k`
/// (`needed` is `k` before a mismatch, `k + 1` after one). Ties between
/// digests go to the greatest digest, and a digest's first worker is the
/// one kept.
pub(super) fn tally(
    earlier: &[(PeerKey, ContentHash)],
    last: (PeerKey, ContentHash),
    needed: u8,
    k: u8,
) -> Tally {
    let runs = earlier.len() + 1;
    if runs < usize::from(needed) {
        return Tally::Short;
    }
    let results = || earlier.iter().chain(std::iter::once(&last));
    let mut counts: BTreeMap<ContentHash, usize> = BTreeMap::new();
    for (_, d) in results() {
        *counts.entry(*d).or_insert(0) += 1;
    }
    let (best, count) = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map_or((last.1, 1), |(d, c)| (*d, *c));
    let winner = results()
        .find(|(_, d)| *d == best)
        .map_or(last.0, |(p, _)| *p);
    if counts.len() == 1 {
        Tally::Agreed(winner)
    } else if needed == k {
        Tally::Mismatch
    } else if count * 2 > runs {
        Tally::Majority(winner)
    } else {
        Tally::Split {
            runs,
            outputs: counts.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PeerKey {
        PeerKey::from_bytes([n; 32])
    }

    fn digest(n: u8) -> ContentHash {
        ContentHash::from_bytes([n; 32])
    }

    #[test]
    fn agreeing_results_keep_the_first_worker_s() {
        let results = [(key(1), digest(7)), (key(2), digest(7))];
        assert_eq!(tally(&[], results[0], 2, 2), Tally::Short);
        assert_eq!(
            tally(&results[..1], results[1], 2, 2),
            Tally::Agreed(key(1))
        );
    }

    #[test]
    fn a_first_mismatch_asks_for_one_more_run_and_then_the_majority_wins() {
        let two = [(key(1), digest(7)), (key(2), digest(8))];
        assert_eq!(tally(&two[..1], two[1], 2, 2), Tally::Mismatch);
        assert_eq!(tally(&two[..1], two[1], 3, 2), Tally::Short);
        let three = [two[0], two[1], (key(3), digest(8))];
        assert_eq!(tally(&three[..2], three[2], 3, 2), Tally::Majority(key(2)));
        let split = [two[0], two[1], (key(3), digest(9))];
        assert_eq!(
            tally(&split[..2], split[2], 3, 2),
            Tally::Split {
                runs: 3,
                outputs: 3
            }
        );
    }

    #[test]
    fn a_tie_goes_to_the_greatest_digest() {
        // Four runs, two and two: no majority, whichever digest leads.
        let four = [
            (key(1), digest(9)),
            (key(2), digest(7)),
            (key(3), digest(7)),
            (key(4), digest(9)),
        ];
        assert_eq!(
            tally(&four[..3], four[3], 4, 3),
            Tally::Split {
                runs: 4,
                outputs: 2
            }
        );
    }
}
