/* Stdio and sockets: what fd_fdstat_get says of fds 0-2 (isatty), seeking a
 * pipe, and every sock_* call on things that are not sockets: an errno,
 * never a trap. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#include "conf.h"

static void fdstat(const char *name, int fd) {
    __wasi_fdstat_t st;
    __wasi_errno_t e = __wasi_fd_fdstat_get(fd, &st);
    if (e) {
        show_errno(name, e);
        return;
    }
    printf("%s: ok type=%u flags=%u base=%#llx inheriting=%#llx\n", name, st.fs_filetype,
           st.fs_flags, (unsigned long long)st.fs_rights_base,
           (unsigned long long)st.fs_rights_inheriting);
}

static void socks(const char *what, int fd) {
    char name[64], buf[8];
    __wasi_fd_t accepted;
    __wasi_size_t n = 0;
    __wasi_roflags_t roflags;
    __wasi_iovec_t riov = {(uint8_t *)buf, sizeof buf};
    __wasi_ciovec_t ciov = {(const uint8_t *)"x", 1};
    snprintf(name, sizeof name, "sock_accept %s", what);
    show_errno(name, __wasi_sock_accept(fd, 0, &accepted));
    snprintf(name, sizeof name, "sock_recv %s", what);
    show_errno(name, __wasi_sock_recv(fd, &riov, 1, 0, &n, &roflags));
    snprintf(name, sizeof name, "sock_send %s", what);
    show_errno(name, __wasi_sock_send(fd, &ciov, 1, 0, &n));
    snprintf(name, sizeof name, "sock_shutdown %s", what);
    show_errno(name, __wasi_sock_shutdown(fd, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR));
}

int main(void) {
    fdstat("fdstat stdin", 0);
    fdstat("fdstat stdout", 1);
    fdstat("fdstat stderr", 2);
    printf("isatty 0 1 2: %d %d %d\n", isatty(0), isatty(1), isatty(2));
    fflush(stdout);
    __wasi_filesize_t at = 0;
    show_errno("seek stdout", __wasi_fd_seek(1, 0, __WASI_WHENCE_CUR, &at));
    show_errno("tell stdout", __wasi_fd_tell(1, &at));
    show_errno("seek stdin", __wasi_fd_seek(0, 0, __WASI_WHENCE_SET, &at));
    show_errno("seek stderr", __wasi_fd_seek(2, 0, __WASI_WHENCE_END, &at));
    show_errno("tell stdin", __wasi_fd_tell(0, &at));
    __wasi_filestat_t fs;
    __wasi_errno_t e = __wasi_fd_filestat_get(1, &fs);
    if (e) {
        show_errno("filestat stdout", e);
    } else {
        printf("filestat stdout: ok type=%u size=%llu\n", fs.filetype, (unsigned long long)fs.size);
    }
    show_errno("set_size stdout", __wasi_fd_filestat_set_size(1, 0));
    show_errno("set_flags stdout append", __wasi_fd_fdstat_set_flags(1, __WASI_FDFLAGS_APPEND));
    show_errno("set_flags stdout nonblock", __wasi_fd_fdstat_set_flags(1, __WASI_FDFLAGS_NONBLOCK));
    fdstat("fdstat stdout after", 1);
    show_errno("set_flags stdout none", __wasi_fd_fdstat_set_flags(1, 0));
    char buf[4];
    __wasi_iovec_t iov = {(uint8_t *)buf, sizeof buf};
    __wasi_size_t n = 99;
    e = __wasi_fd_read(0, &iov, 1, &n);
    if (e) {
        show_errno("read stdin (empty)", e);
    } else {
        printf("read stdin (empty): ok %u\n", (unsigned)n);
    }
    e = __wasi_fd_read(1, &iov, 1, &n);
    show_errno("read stdout", e);
    e = __wasi_fd_pread(0, &iov, 1, 0, &n);
    show_errno("pread stdin", e);
    show_errno("pread stdout", __wasi_fd_pread(1, &iov, 1, 0, &n));
    __wasi_ciovec_t ciov = {(const uint8_t *)"", 0};
    e = __wasi_fd_pwrite(1, &ciov, 1, 0, &n);
    show_errno("pwrite stdout", e);
    show_errno("pwrite stdin", __wasi_fd_pwrite(0, &ciov, 1, 0, &n));
    show_errno("allocate stdout", __wasi_fd_allocate(1, 0, 1));
    show_errno("allocate stdin", __wasi_fd_allocate(0, 0, 1));
    __wasi_prestat_t pre;
    show_errno("prestat stdout", __wasi_fd_prestat_get(1, &pre));
    show_errno("prestat 1000", __wasi_fd_prestat_get(1000, &pre));

    socks("stdin", 0);
    socks("stdout", 1);
    socks("bad fd", 1000);
    int dir = open("/sandbox", O_RDONLY | O_DIRECTORY);
    printf("open /sandbox: %s\n", dir >= 0 ? "ok" : "failed");
    if (dir >= 0) {
        socks("dir", dir);
    }
    int file = open("/sandbox/file", O_CREAT | O_RDWR, 0644);
    printf("open /sandbox/file: %s\n", file >= 0 ? "ok" : "failed");
    if (file >= 0) {
        socks("file", file);
        fdstat("fdstat file", file);
        printf("isatty file: %d\n", isatty(file));
    }
    return 0;
}
