//! Counts the primes in one slice of [0, limit): task `task` of `tasks` takes
//! the `task`-th equal slice. A segmented sieve of Eratosthenes keeps memory
//! small (one 256 KiB segment plus the base primes up to √limit), so even a
//! Raspberry Pi Zero can take a slice of a very large range.
//!
//! Usage: primes <task> <tasks> <limit>
//! Prints a summary line; writes the bare count to /output/count.txt when a
//! /output directory is present.

use std::process::ExitCode;

const SEGMENT: u64 = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, task, tasks, limit] => parse(task, tasks, limit),
        _ => Err("expected 3 arguments".to_string()),
    };
    let (task, tasks, limit) = match parsed {
        Ok(v) => v,
        Err(why) => {
            eprintln!("primes: {why}\nusage: primes <task> <tasks> <limit>   (0 <= task < tasks)");
            return ExitCode::from(2);
        }
    };
    let lo = limit / tasks * task + (limit % tasks).min(task);
    let hi = lo + limit / tasks + u64::from(task < limit % tasks);
    let count = count_primes(lo, hi);
    println!("task {task}/{tasks}: {count} primes in [{lo}, {hi})");
    // /output exists when run by corral; standalone runs just print.
    if std::path::Path::new("/output").is_dir() {
        if let Err(e) = std::fs::write("/output/count.txt", format!("{count}\n")) {
            eprintln!("primes: cannot write /output/count.txt: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn parse(task: &str, tasks: &str, limit: &str) -> Result<(u64, u64, u64), String> {
    let num = |name: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{name} must be a non-negative integer, got {v:?}"))
    };
    let (task, tasks, limit) = (
        num("task", task)?,
        num("tasks", tasks)?,
        num("limit", limit)?,
    );
    if tasks == 0 || task >= tasks {
        return Err(format!("task {task} is not in 0..{tasks}"));
    }
    if limit > 1 << 40 {
        return Err(format!("limit {limit} is too large (at most 2^40)"));
    }
    Ok((task, tasks, limit))
}

/// Primes p with lo <= p < hi.
fn count_primes(lo: u64, hi: u64) -> u64 {
    if hi <= 2 {
        return 0;
    }
    let base = small_primes(isqrt(hi) + 1);
    let mut count = 0;
    let mut seg = vec![true; SEGMENT as usize];
    let mut start = lo.max(2);
    while start < hi {
        let end = (start + SEGMENT).min(hi);
        let len = (end - start) as usize;
        seg[..len].fill(true);
        for &p in &base {
            if p * p >= end {
                break;
            }
            // First multiple of p in [start, end), never p itself.
            let mut m = (start.div_ceil(p) * p).max(p * p);
            while m < end {
                seg[(m - start) as usize] = false;
                m += p;
            }
        }
        count += seg[..len].iter().filter(|&&is_prime| is_prime).count() as u64;
        start = end;
    }
    count
}

/// All primes below n, by a plain sieve (n is at most about 2^20 here).
fn small_primes(n: u64) -> Vec<u64> {
    let mut sieve = vec![true; n as usize];
    let mut primes = Vec::new();
    for i in 2..n {
        if sieve[i as usize] {
            primes.push(i);
            let mut m = i * i;
            while m < n {
                sieve[m as usize] = false;
                m += i;
            }
        }
    }
    primes
}

fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_prime_counts() {
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 2), 0);
        assert_eq!(count_primes(0, 3), 1);
    }

    #[test]
    fn slices_add_up() {
        let limit = 1_000_003u64;
        let tasks = 7u64;
        let mut sum = 0;
        for task in 0..tasks {
            let lo = limit / tasks * task + (limit % tasks).min(task);
            let hi = lo + limit / tasks + u64::from(task < limit % tasks);
            sum += count_primes(lo, hi);
        }
        assert_eq!(sum, count_primes(0, limit));
    }
}
