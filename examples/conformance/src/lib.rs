//! Not an example job: WASI preview 1 conformance guests that corral's tests
//! run on both engines (node/tests/conformance.rs). Each binary prints one
//! line per case, `case: result`, with nothing that differs between runs
//! (no times, no inode numbers). This library holds the raw preview 1
//! imports (no `wasi` crate: the calls and their errnos exactly as the host
//! returns them) and the printing helpers they share.

#![allow(clippy::missing_safety_doc)]

pub mod sys;

/// The errno names of WASI preview 1, by number.
const ERRNO: [&str; 77] = [
    "SUCCESS",
    "2BIG",
    "ACCES",
    "ADDRINUSE",
    "ADDRNOTAVAIL",
    "AFNOSUPPORT",
    "AGAIN",
    "ALREADY",
    "BADF",
    "BADMSG",
    "BUSY",
    "CANCELED",
    "CHILD",
    "CONNABORTED",
    "CONNREFUSED",
    "CONNRESET",
    "DEADLK",
    "DESTADDRREQ",
    "DOM",
    "DQUOT",
    "EXIST",
    "FAULT",
    "FBIG",
    "HOSTUNREACH",
    "IDRM",
    "ILSEQ",
    "INPROGRESS",
    "INTR",
    "INVAL",
    "IO",
    "ISCONN",
    "ISDIR",
    "LOOP",
    "MFILE",
    "MLINK",
    "MSGSIZE",
    "MULTIHOP",
    "NAMETOOLONG",
    "NETDOWN",
    "NETRESET",
    "NETUNREACH",
    "NFILE",
    "NOBUFS",
    "NODEV",
    "NOENT",
    "NOEXEC",
    "NOLCK",
    "NOLINK",
    "NOMEM",
    "NOMSG",
    "NOPROTOOPT",
    "NOSPC",
    "NOSYS",
    "NOTCONN",
    "NOTDIR",
    "NOTEMPTY",
    "NOTRECOVERABLE",
    "NOTSOCK",
    "NOTSUP",
    "NOTTY",
    "NXIO",
    "OVERFLOW",
    "OWNERDEAD",
    "PERM",
    "PIPE",
    "PROTO",
    "PROTONOSUPPORT",
    "PROTOTYPE",
    "RANGE",
    "ROFS",
    "SPIPE",
    "SRCH",
    "STALE",
    "TIMEDOUT",
    "TXTBSY",
    "XDEV",
    "NOTCAPABLE",
];

/// `E<NAME>(<number>)` for an errno.
pub fn errno(code: u16) -> String {
    match ERRNO.get(usize::from(code)) {
        Some(name) => format!("E{name}({code})"),
        None => format!("E?({code})"),
    }
}

/// A value a case prints after `ok`.
pub trait Shown {
    /// Its text (empty: nothing after `ok`).
    fn shown(&self) -> String;
}

impl Shown for () {
    fn shown(&self) -> String {
        String::new()
    }
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
shown_by_display!(bool, u32, u64, usize, String, &str, sys::Filestat);

/// Prints `case: ok VALUE` or `case: ENAME(n)`.
pub fn show<T: Shown>(case: &str, result: Result<T, u16>) {
    match result {
        Ok(value) => {
            let value = value.shown();
            if value.is_empty() {
                println!("{case}: ok");
            } else {
                println!("{case}: ok {value}");
            }
        }
        Err(code) => println!("{case}: {}", errno(code)),
    }
}

/// Turns an errno return into a result.
pub fn check(code: i32) -> Result<(), u16> {
    match code {
        0 => Ok(()),
        // Errnos are 16 bits on the wire.
        other => Err(other as u16),
    }
}

/// The file descriptor of the preopened directory `name`, found by asking
/// the host about fds 3, 4, … (the order of preopens is the runner's).
pub fn preopen(name: &str) -> u32 {
    for fd in 3..64 {
        if sys::prestat_name(fd).is_some_and(|found| found == name) {
            return fd;
        }
    }
    println!("no preopen named {name}");
    std::process::exit(2);
}
