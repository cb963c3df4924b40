/* The same areas through wasi-libc's POSIX layer, as C programs use them:
 * files (fopen "a", O_TRUNC with O_APPEND, fseek/ftell, pread/pwrite, ftruncate, fstat, utimensat),
 * paths (symlink, readlink, rename, link, unlink, rmdir, ELOOP), and
 * directories (opendir/readdir, telldir/seekdir resuming from a cookie). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

static void check(const char *name, int result) {
    show_errno(name, result < 0 ? (unsigned)errno : 0);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names of `dir` from its current position on, space-separated. */
static void collect(DIR *dir, char *out, size_t size) {
    char *names[64];
    int n = 0;
    struct dirent *entry;
    while (n < 64 && (entry = readdir(dir)) != NULL) {
        names[n++] = strdup(entry->d_name);
    }
    qsort(names, n, sizeof names[0], by_name);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        strncat(out, " ", size - strlen(out) - 1);
        strncat(out, names[i], size - strlen(out) - 1);
        free(names[i]);
    }
}

int main(void) {
    check("chdir /sandbox", chdir("/sandbox"));
    FILE *f = fopen("log", "w");
    fputs("one\n", f);
    fclose(f);
    f = fopen("log", "a");
    check("fseek 0 in append", fseek(f, 0, SEEK_SET));
    fputs("two\n", f);
    printf("ftell after append: %ld\n", ftell(f));
    fclose(f);

    int fd = open("data", O_CREAT | O_RDWR | O_TRUNC, 0644);
    check("open data", fd);
    check("write", (int)write(fd, "0123456789", 10));
    char buf[16] = {0};
    check("pread", (int)pread(fd, buf, 4, 3));
    printf("pread 4 at 3: %s\n", buf);
    check("pwrite", (int)pwrite(fd, "AB", 2, 8));
    printf("lseek cur: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    printf("lseek end -1: %lld\n", (long long)lseek(fd, -1, SEEK_END));
    check("lseek -100", (int)lseek(fd, -100, SEEK_SET));
    check("ftruncate 4", ftruncate(fd, 4));
    struct stat st;
    check("fstat", fstat(fd, &st));
    printf("size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    struct timespec times[2] = {{1000000000, 5}, {2000000000, 7}};
    check("futimens", futimens(fd, times));
    check("fstat", fstat(fd, &st));
    printf("atime %lld.%ld mtime %lld.%ld\n", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    check("posix_fallocate", -(errno = posix_fallocate(fd, 0, 100)) ? -1 : 0);
    check("close", close(fd));
    check("close again", close(fd));

    /* Truncate and append together: wasmtime truncates, then appends. */
    fd = open("data", O_CREAT | O_TRUNC | O_WRONLY | O_APPEND, 0644);
    check("open trunc|append", fd);
    check("pwrite at 0 with append", (int)pwrite(fd, "xy", 2, 0));
    check("write with append", (int)write(fd, "z", 1));
    check("fstat", fstat(fd, &st));
    printf("size after trunc|append: %lld\n", (long long)st.st_size);
    check("close", close(fd));

    check("symlink data -> ln", symlink("data", "ln"));
    char target[64] = {0};
    check("readlink ln", (int)readlink("ln", target, sizeof target - 1));
    printf("readlink ln: %s\n", target);
    check("lstat ln", lstat("ln", &st));
    printf("ln is a link: %d\n", S_ISLNK(st.st_mode));
    check("symlink loop a -> b", symlink("b", "a"));
    check("symlink loop b -> a", symlink("a", "b"));
    check("open loop", open("a", O_RDONLY));
    check("stat loop", stat("a", &st));
    check("open ln O_NOFOLLOW", open("ln", O_RDONLY | O_NOFOLLOW));
    check("mkdir d", mkdir("d", 0755));
    check("mkdir d again", mkdir("d", 0755));
    check("rename data -> d/data", rename("data", "d/data"));
    check("stat ln (now dangling)", stat("ln", &st));
    check("link d/data -> hard", link("d/data", "hard"));
    check("stat hard", stat("hard", &st));
    printf("nlink %lld\n", (long long)st.st_nlink);
    check("rmdir d (not empty)", rmdir("d"));
    check("unlink d (a dir)", unlink("d"));
    check("rename d -> log (dir over file)", rename("d", "log"));
    check("rename log -> d (file over dir)", rename("log", "d"));
    check("open ../etc", open("../etc", O_RDONLY));
    check("open /etc/passwd", open("/etc/passwd", O_RDONLY));
    check("stat /sandbox/../sandbox/log", stat("/sandbox/../sandbox/log", &st));
    check("access log W_OK", access("log", W_OK));
    check("access /ro/file W_OK", access("/ro/file", W_OK));
    check("access /ro/file R_OK", access("/ro/file", R_OK));
    check("open /ro/file O_WRONLY", open("/ro/file", O_WRONLY));

    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "d/e%d", i);
        close(open(name, O_CREAT | O_WRONLY, 0644));
    }
    DIR *dir = opendir("d");
    printf("opendir d: %s\n", dir ? "ok" : "failed");
    if (dir) {
        readdir(dir);
        readdir(dir);
        readdir(dir);
        long cookie = telldir(dir);
        static char rest[1024], again[1024], all[1024];
        collect(dir, rest, sizeof rest);
        seekdir(dir, cookie);
        collect(dir, again, sizeof again);
        printf("the same after seekdir: %s\n", strcmp(rest, again) == 0 && rest[0] ? "yes" : "no");
        rewinddir(dir);
        collect(dir, all, sizeof all);
        printf("all after rewinddir:%s\n", all);
        closedir(dir);
    }
    errno = 0;
    dir = opendir("log");
    show_errno("opendir a file", dir ? 0 : (unsigned)errno);
    dir = opendir("/ro");
    if (dir) {
        static char names[1024];
        collect(dir, names, sizeof names);
        printf("readdir /ro:%s\n", names);
        closedir(dir);
    }
    return 0;
}
