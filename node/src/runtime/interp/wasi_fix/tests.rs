//! Unit tests of the interpreter's preview 1 fixes: the fdstat wasmtime reports.
use super::answers::{Stdio, readable_by_default, wasmtime_fdstat};
use wasmi_wasi::wasi_common::snapshots::preview_1::types::{Fdflags, Fdstat, Filetype, Rights};

fn file(base: Rights) -> Fdstat {
    Fdstat {
        fs_filetype: Filetype::RegularFile,
        fs_flags: Fdflags::APPEND,
        fs_rights_base: base,
        fs_rights_inheriting: Rights::empty(),
    }
}

#[test]
fn a_file_gets_every_right_its_mode_allows() {
    let both = wasmtime_fdstat(file(Rights::FD_READ | Rights::FD_WRITE), None, false);
    assert_eq!(both.fs_rights_base, Rights::all());
    assert_eq!(both.fs_rights_inheriting, Rights::all());
    assert_eq!(both.fs_flags, Fdflags::APPEND);
    let read = wasmtime_fdstat(file(Rights::FD_READ), None, false);
    assert_eq!(read.fs_rights_base, Rights::all() & !Rights::FD_WRITE);
    let write = wasmtime_fdstat(file(Rights::FD_WRITE), None, false);
    assert!(!write.fs_rights_base.contains(Rights::FD_READ));
    assert!(!write.fs_rights_base.contains(Rights::FD_READDIR));
}

#[test]
fn stdio_has_one_right_and_no_flags() {
    let out = wasmtime_fdstat(file(Rights::FD_WRITE), Some(Stdio::Out), false);
    assert_eq!(out.fs_rights_base, Rights::FD_WRITE);
    assert_eq!(out.fs_rights_inheriting, Rights::FD_WRITE);
    assert_eq!(out.fs_flags, Fdflags::empty());
    let input = wasmtime_fdstat(file(Rights::FD_READ), Some(Stdio::In), false);
    assert_eq!(input.fs_rights_base, Rights::FD_READ);
}

#[test]
fn a_preopen_keeps_its_rights() {
    let mut dir = file(Rights::PATH_OPEN);
    dir.fs_filetype = Filetype::Directory;
    assert_eq!(
        wasmtime_fdstat(dir, None, true).fs_rights_base,
        Rights::PATH_OPEN
    );
}

#[test]
fn an_open_with_no_mode_reads() {
    assert_eq!(readable_by_default(0), 2);
    assert_eq!(readable_by_default(1 << 13), (1 << 13) | 2);
    assert_eq!(readable_by_default(64), 64);
    assert_eq!(readable_by_default(2), 2);
}
