/* ruststack-stdio: the static entrypoint wrapper of a function's container (see output.rs),
 * for images with or without a shell.
 *
 *   ruststack-stdio OUT GO COMMAND [ARG]...
 *
 * GO, unless empty: first wait for a line on that FIFO (a held spare); an end of file or an
 * error exits 0, as the shell wrapper's `read -r go <>GO || exit 0` does.
 * COMMAND `@go` (a blank spare, made for no function yet): the line on GO is a byte count N,
 * followed by N bytes of NUL-terminated strings: the working directory (empty: stay), the
 * variables (NAME=VALUE, over the image's), an empty string, then the command and its
 * arguments, an empty string.
 * OUT, unless empty: stdout and stderr both go to that FIFO; empty: stderr goes onto stdout,
 * so the engine's one stdout stream has both, in the order written.
 * Then runs COMMAND (PATH search, as the shell's exec) in this process. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *a, const char *b, int err) {
    const char *e = strerror(err);
    (void)!write(2, "ruststack-stdio: ", 17);
    (void)!write(2, a, strlen(a));
    (void)!write(2, b, strlen(b));
    (void)!write(2, ": ", 2);
    (void)!write(2, e, strlen(e));
    (void)!write(2, "\n", 1);
}

/* Reads exactly `len` bytes; 0 on an end of file or an error. */
static int read_all(int fd, char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        buf += n;
        len -= (size_t)n;
    }
    return 1;
}

/* A blank spare's orders (see the top): sets the variables and the directory, and points
 * `*cmd` at the command. Returns 0 (exit quietly) on an end of file, -1 on a bad message. */
static int take_orders(int fd, size_t len, char ***cmd) {
    char *buf = malloc(len + 1);
    if (!buf || !read_all(fd, buf, len)) return 0;
    buf[len] = 0;
    char *p = buf, *end = buf + len;
    const char *dir = p;
    p += strlen(p) + 1;
    while (p < end && *p) {
        if (putenv(p) != 0) return -1;
        p += strlen(p) + 1;
    }
    p++;
    size_t n = 0;
    for (char *q = p; q < end && *q; q += strlen(q) + 1) n++;
    if (n == 0) return -1;
    char **args = calloc(n + 1, sizeof *args);
    if (!args) return -1;
    for (size_t i = 0; i < n; i++) {
        args[i] = p;
        p += strlen(p) + 1;
    }
    if (*dir && chdir(dir) != 0) {
        say("cannot change to ", dir, errno);
        return -1;
    }
    *cmd = args;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        say("usage: ruststack-stdio OUT GO COMMAND [ARG]...", "", EINVAL);
        return 127;
    }
    const char *out = argv[1], *go = argv[2];
    char **cmd = argv + 3;
    if (*go) {
        /* Read-write: never an end of file while the server's end is open or not. */
        int fd = open(go, O_RDWR | O_CLOEXEC);
        if (fd < 0) return 0;
        size_t len = 0;
        for (;;) {
            char c;
            ssize_t n = read(fd, &c, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 0;
            if (c == '\n') break;
            if (c >= '0' && c <= '9' && len < (1u << 24)) len = len * 10 + (size_t)(c - '0');
        }
        if (strcmp(argv[3], "@go") == 0) {
            int r = take_orders(fd, len, &cmd);
            if (r == 0) return 0;
            if (r < 0) {
                say("bad orders on ", go, EINVAL);
                return 126;
            }
        }
        close(fd);
    }
    if (*out) {
        int fd = open(out, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            say("cannot open ", out, errno);
            return 126;
        }
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            say("cannot redirect to ", out, errno);
            return 126;
        }
        if (fd > 2) close(fd);
    } else if (dup2(1, 2) < 0) {
        say("cannot redirect stderr", "", errno);
        return 126;
    }
    execvp(cmd[0], cmd);
    int err = errno;
    say("cannot run ", cmd[0], err);
    return err == ENOENT ? 127 : 126;
}
