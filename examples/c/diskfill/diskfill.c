/* diskfill: a hostile guest for corral's disk limit. Each mode writes until
 * the host refuses, then prints how far it got and exits 1.
 *
 *   diskfill bytes DIR   append 64 KiB chunks to DIR/fill
 *   diskfill files DIR   create empty files DIR/f0, DIR/f1, ...
 *   diskfill sparse DIR  write one byte at offset 1 TiB of DIR/sparse
 *   diskfill grow DIR    set the size of DIR/grown to 1 TiB (ftruncate)
 *   diskfill churn DIR   50 times: write 1 MiB to DIR/a, rename it to
 *                        DIR/sub/b, delete it; exits 0 if all went well
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char chunk[64 * 1024];

static int fill_bytes(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/fill", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("open failed: %s\n", strerror(errno));
        return 1;
    }
    memset(chunk, 'x', sizeof chunk);
    unsigned long long total = 0;
    for (;;) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n <= 0) {
            printf("wrote %llu bytes, then: %s\n", total, strerror(errno));
            return 1;
        }
        total += (unsigned long long)n;
    }
}

static int fill_files(const char *dir) {
    char path[512];
    for (unsigned long i = 0;; i++) {
        snprintf(path, sizeof path, "%s/f%lu", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            printf("created %lu files, then: %s\n", i, strerror(errno));
            return 1;
        }
        close(fd);
    }
}

static int sparse(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/sparse", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) {
        printf("open failed: %s\n", strerror(errno));
        return 1;
    }
    if (pwrite(fd, "x", 1, 1LL << 40) != 1) {
        printf("pwrite failed: %s\n", strerror(errno));
        return 1;
    }
    printf("wrote one byte at 1 TiB\n");
    return 0;
}

static int grow(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/grown", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, 1LL << 40) != 0) {
        printf("grow failed: %s\n", strerror(errno));
        return 1;
    }
    printf("grew to 1 TiB\n");
    return 0;
}

static int churn(const char *dir) {
    char a[512], sub[512], b[512];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(b, sizeof b, "%s/sub/b", dir);
    if (mkdir(sub, 0755) != 0) {
        printf("mkdir failed: %s\n", strerror(errno));
        return 1;
    }
    memset(chunk, 'y', sizeof chunk);
    for (int round = 0; round < 50; round++) {
        int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            printf("round %d: open failed: %s\n", round, strerror(errno));
            return 1;
        }
        for (int i = 0; i < 16; i++) {
            if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) {
                printf("round %d: write failed: %s\n", round, strerror(errno));
                return 1;
            }
        }
        close(fd);
        if (rename(a, b) != 0 || unlink(b) != 0) {
            printf("round %d: rename or unlink failed: %s\n", round, strerror(errno));
            return 1;
        }
    }
    printf("churned 50 MiB through 1 MiB\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: diskfill bytes|files|sparse|grow|churn DIR\n");
        return 2;
    }
    if (strcmp(argv[1], "bytes") == 0) return fill_bytes(argv[2]);
    if (strcmp(argv[1], "files") == 0) return fill_files(argv[2]);
    if (strcmp(argv[1], "sparse") == 0) return sparse(argv[2]);
    if (strcmp(argv[1], "churn") == 0) return churn(argv[2]);
    if (strcmp(argv[1], "grow") == 0) return grow(argv[2]);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
