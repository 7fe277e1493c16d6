/* ruststack-stdio: the static entrypoint wrapper of a function's container (see output.rs),
 * for images with or without a shell.
 *
 *   ruststack-stdio OUT GO COMMAND [ARG]...
 *
 * GO, unless empty: first wait for a line on that FIFO (a held spare); an end of file or an
 * error exits 0, as the shell wrapper's `read -r go <>GO || exit 0` does.
 * OUT, unless empty: stdout and stderr both go to that FIFO; empty: stderr goes onto stdout,
 * so the engine's one stdout stream has both, in the order written.
 * Then runs COMMAND (PATH search, as the shell's exec) in this process. */
#include <errno.h>
#include <fcntl.h>
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

int main(int argc, char **argv) {
    if (argc < 4) {
        say("usage: ruststack-stdio OUT GO COMMAND [ARG]...", "", EINVAL);
        return 127;
    }
    const char *out = argv[1], *go = argv[2];
    if (*go) {
        /* Read-write: never an end of file while the server's end is open or not. */
        int fd = open(go, O_RDWR | O_CLOEXEC);
        if (fd < 0) return 0;
        for (;;) {
            char c;
            ssize_t n = read(fd, &c, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 0;
            if (c == '\n') break;
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
    execvp(argv[3], argv + 3);
    int err = errno;
    say("cannot run ", argv[3], err);
    return err == ENOENT ? 127 : 126;
}
