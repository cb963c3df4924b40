/* Not an example job: a guest corral's tests run to see what a task is given.
 *
 *   preopens.wasm [PATH=TEXT | @FD:PATH=TEXT]...
 *
 * Writes TEXT to each PATH first (creating or replacing the file; with @FD:
 * at PATH relative to preopen FD, through path_open itself rather than the
 * libc's choice of preopen), then
 * prints the task's preopened directories, one line each, from fd 3 up to
 * the first fd that is not one: "FD NAME" (fd_prestat_get and
 * fd_prestat_dir_name, as a guest's libc reads them at start-up). Exits 1
 * if a write failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

/* Writes TEXT to PATH under directory fd `dir` with raw WASI calls. */
static int write_at(__wasi_fd_t dir, const char *path, const char *text) {
    __wasi_fd_t fd;
    __wasi_rights_t rights = __WASI_RIGHTS_FD_WRITE;
    if (__wasi_path_open(dir, 0, path, __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, rights, 0, 0,
                         &fd) != __WASI_ERRNO_SUCCESS) {
        fprintf(stderr, "cannot open %s under fd %u\n", path, (unsigned)dir);
        return 1;
    }
    __wasi_ciovec_t iov = {(const uint8_t *)text, strlen(text)};
    __wasi_size_t written = 0;
    int failed = __wasi_fd_write(fd, &iov, 1, &written) != __WASI_ERRNO_SUCCESS ||
                 written != iov.buf_len;
    failed |= __wasi_fd_close(fd) != __WASI_ERRNO_SUCCESS;
    return failed;
}

static int write_file(const char *spec) {
    if (spec[0] == '@') {
        char *rest = NULL;
        unsigned long dir = strtoul(spec + 1, &rest, 10);
        const char *eq = rest != NULL && rest[0] == ':' ? strchr(rest, '=') : NULL;
        if (eq == NULL || eq - rest - 1 >= 1024) {
            fprintf(stderr, "not @FD:PATH=TEXT: %s\n", spec);
            return 1;
        }
        char path[1024];
        memcpy(path, rest + 1, (size_t)(eq - rest - 1));
        path[eq - rest - 1] = '\0';
        return write_at((__wasi_fd_t)dir, path, eq + 1);
    }
    const char *eq = strchr(spec, '=');
    if (eq == NULL) {
        fprintf(stderr, "not PATH=TEXT: %s\n", spec);
        return 1;
    }
    char path[1024];
    size_t len = (size_t)(eq - spec);
    if (len >= sizeof path) {
        fprintf(stderr, "path too long\n");
        return 1;
    }
    memcpy(path, spec, len);
    path[len] = '\0';
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fputs(eq + 1, f);
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        failed |= write_file(argv[i]);
    }
    for (__wasi_fd_t fd = 3;; fd++) {
        __wasi_prestat_t prestat;
        if (__wasi_fd_prestat_get(fd, &prestat) != __WASI_ERRNO_SUCCESS) {
            break;
        }
        size_t len = prestat.u.dir.pr_name_len;
        char name[4096];
        if (len >= sizeof name ||
            __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, len) != __WASI_ERRNO_SUCCESS) {
            printf("%u ?\n", (unsigned)fd);
            continue;
        }
        name[len] = '\0';
        printf("%u %s\n", (unsigned)fd, name);
    }
    return failed;
}
