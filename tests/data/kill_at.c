/* A crash injector for tests: LD_PRELOAD this into byok-airgap to SIGKILL it
 * at the Nth file operation on a path under a directory, as a power cut or
 * `kill -9` would. Nothing in the shipping binary knows about it.
 *
 *   BYOK_KILL_UNDER=/abs/out  BYOK_KILL_AT=N
 *
 * Counted operations on paths under BYOK_KILL_UNDER: write (the Nth write is
 * cut in half first, leaving a torn line or a short file), fsync, fdatasync,
 * mkdir, rename, linkat, unlink, rmdir.
 *
 * With BYOK_KILL_WRITE_CONTAINING=TEXT, only writes whose buffer contains TEXT
 * are counted (and the Nth is torn): "kill while writing the 4th `wrapped`
 * entry", wherever a batch puts it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long count;

static const char *under(void) {
    const char *u = getenv("BYOK_KILL_UNDER");
    return (u && *u) ? u : NULL;
}

static int path_under(const char *p) {
    const char *u = under();
    return u && p && strncmp(p, u, strlen(u)) == 0;
}

static int fd_under(int fd) {
    char link[64], path[4096];
    if (!under()) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return path_under(path);
}

static const char *containing(void) {
    const char *c = getenv("BYOK_KILL_WRITE_CONTAINING");
    return (c && *c) ? c : NULL;
}

static int nth(void) {
    const char *at = getenv("BYOK_KILL_AT");
    return at && ++count == atol(at);
}

/* An operation other than a write: counted unless only writes containing
 * BYOK_KILL_WRITE_CONTAINING are. */
static int due(void) {
    return !containing() && nth();
}

/* A write of buf: counted, unless only writes containing some text are and
 * this one does not. */
static int write_due(const void *buf, size_t n) {
    const char *text = containing();
    if (text && !memmem(buf, n, text, strlen(text))) return 0;
    return nth();
}

#define REAL(ret, name, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, "write", int, const void *, size_t);
    if (fd_under(fd) && write_due(buf, n)) {
        if (n > 1) real(fd, buf, n / 2);
        raise(SIGKILL);
    }
    return real(fd, buf, n);
}

int fsync(int fd) {
    REAL(int, "fsync", int);
    if (fd_under(fd) && due()) raise(SIGKILL);
    return real(fd);
}

int fdatasync(int fd) {
    REAL(int, "fdatasync", int);
    if (fd_under(fd) && due()) raise(SIGKILL);
    return real(fd);
}

int mkdir(const char *p, mode_t m) {
    REAL(int, "mkdir", const char *, mode_t);
    if (path_under(p) && due()) raise(SIGKILL);
    return real(p, m);
}

int rename(const char *a, const char *b) {
    REAL(int, "rename", const char *, const char *);
    if (path_under(a) && due()) raise(SIGKILL);
    return real(a, b);
}

int linkat(int d1, const char *a, int d2, const char *b, int f) {
    REAL(int, "linkat", int, const char *, int, const char *, int);
    if (path_under(a) && due()) raise(SIGKILL);
    return real(d1, a, d2, b, f);
}

int unlink(const char *p) {
    REAL(int, "unlink", const char *);
    if (path_under(p) && due()) raise(SIGKILL);
    return real(p);
}

int rmdir(const char *p) {
    REAL(int, "rmdir", const char *);
    if (path_under(p) && due()) raise(SIGKILL);
    return real(p);
}
