/*
 * A parameter sweep in C: among the start values in this task's slice of
 * [1, limit), find the one with the longest Collatz chain (n -> n/2 if even,
 * 3n+1 if odd, until 1).
 *
 *   collatz <task> <tasks> <limit>
 *
 * Prints "task T/N: longest chain below LIMIT in [LO, HI) starts at S (K steps)"
 * and writes "S K" to /output/best.txt when /output exists.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int parse(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') return 0;
    *out = (uint64_t)v;
    return 1;
}

static uint32_t steps(uint64_t n) {
    uint32_t k = 0;
    while (n != 1) {
        n = (n & 1) ? 3 * n + 1 : n / 2;
        k++;
    }
    return k;
}

int main(int argc, char **argv) {
    uint64_t task, tasks, limit;
    if (argc != 4 || !parse(argv[1], &task) || !parse(argv[2], &tasks) ||
        !parse(argv[3], &limit) || tasks == 0 || task >= tasks || limit < 2 ||
        limit > (1ull << 32)) {
        fprintf(stderr, "usage: collatz <task> <tasks> <limit>   (0 <= task < tasks, 2 <= limit <= 2^32)\n");
        return 2;
    }
    uint64_t span = limit - 1;
    uint64_t lo = 1 + span / tasks * task + (task < span % tasks ? task : span % tasks);
    uint64_t hi = lo + span / tasks + (task < span % tasks ? 1 : 0);
    uint64_t best = lo;
    uint32_t best_steps = 0;
    for (uint64_t n = lo; n < hi; n++) {
        uint32_t k = steps(n);
        if (k > best_steps) {
            best = n;
            best_steps = k;
        }
    }
    printf("task %llu/%llu: longest chain below %llu in [%llu, %llu) starts at %llu (%u steps)\n",
           (unsigned long long)task, (unsigned long long)tasks, (unsigned long long)limit,
           (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)best, best_steps);
    struct stat st;
    if (stat("/output", &st) == 0) {
        FILE *f = fopen("/output/best.txt", "w");
        if (f == NULL || fprintf(f, "%llu %u\n", (unsigned long long)best, best_steps) < 0 ||
            fclose(f) != 0) {
            perror("/output/best.txt");
            return 1;
        }
    }
    return 0;
}
