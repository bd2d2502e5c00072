/* ironclaw-probe: the red-team harness's attacker, run INSIDE a sandbox as its uid.
 *
 * Two families. The first tries ways out of the sandbox; the second (the "host."
 * probes, below main's first half) attacks the host's readers of what the sandbox
 * writes, for a fixed time, while the harness measures the host from outside.
 * Each probe prints one JSON line:
 *   {"probe": NAME, "contained": true|false, "observed": "..."}
 * "contained" is true when the attempt failed the way the sandbox promises. The harness
 * decides nothing from exit codes; it reads these lines. Built static by the harness
 * (gcc -static), so it needs nothing from the sandbox image.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/bpf.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *probe, int contained, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void json_escaped(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

#include <stdarg.h>
static void report(const char *probe, int contained, const char *fmt, ...) {
    char observed[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(observed, sizeof observed, fmt, ap);
    va_end(ap);
    printf("{\"probe\": \"%s\", \"contained\": %s, \"observed\": \"", probe,
           contained ? "true" : "false");
    json_escaped(observed);
    printf("\"}\n");
    fflush(stdout);
}

/* The syscall ran and failed: contained. It succeeded: not. */
static void syscall_probe(const char *probe, long rc, int err) {
    if (rc == -1) report(probe, 1, "refused: %s", strerror(err));
    else report(probe, 0, "succeeded (returned %ld)", rc);
}

static void probe_interfaces_procfs(int netlink_errno) {
    FILE *dev = fopen("/proc/net/dev", "r");
    char line[512], names[512] = "";
    int others = 0, lineno = 0;
    if (!dev) {
        report("net.interfaces", 1, "getifaddrs: %s; /proc/net/dev: %s",
               strerror(netlink_errno), strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, dev)) {
        char *colon = strchr(line, ':'), *name = line;
        if (++lineno <= 2 || !colon) continue;  /* two header lines */
        *colon = 0;
        while (*name == ' ') name++;
        if (strlen(names) + strlen(name) + 2 < sizeof names) {
            strcat(names, name);
            strcat(names, " ");
        }
        if (strcmp(name, "lo") != 0) others = 1;
    }
    fclose(dev);
    report("net.interfaces", !others, "interfaces (procfs; getifaddrs: %s): %s",
           strerror(netlink_errno), names);
}

static void probe_interfaces(void) {
    struct ifaddrs *list, *it;
    char names[512] = "";
    int others = 0;
    if (getifaddrs(&list) != 0) {
        /* seccomp refuses the netlink socket getifaddrs uses; procfs still tells. */
        probe_interfaces_procfs(errno);
        return;
    }
    for (it = list; it; it = it->ifa_next) {
        if (strstr(names, it->ifa_name) == NULL &&
            strlen(names) + strlen(it->ifa_name) + 2 < sizeof names) {
            strcat(names, it->ifa_name);
            strcat(names, " ");
        }
        if (strcmp(it->ifa_name, "lo") != 0) others = 1;
    }
    freeifaddrs(list);
    report("net.interfaces", !others, "interfaces: %s", names);
}

static int tcp_connect(const char *ip, int port, int timeout_ms, char *why, size_t len) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { snprintf(why, len, "socket: %s", strerror(errno)); return 0; }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) { close(fd); return 1; }
    if (errno != EINPROGRESS) {
        snprintf(why, len, "connect: %s", strerror(errno)); close(fd); return 0;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_ms) != 1) {
        snprintf(why, len, "no answer in %d ms", timeout_ms); close(fd); return 0;
    }
    int soerr = 0; socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    close(fd);
    if (soerr) { snprintf(why, len, "connect: %s", strerror(soerr)); return 0; }
    return 1;
}

static void probe_tcp(const char *label, const char *ip, int port) {
    char why[256] = "";
    char probe[64];
    snprintf(probe, sizeof probe, "net.tcp.%s", label);
    if (tcp_connect(ip, port, 3000, why, sizeof why))
        report(probe, 0, "connected to %s:%d", ip, port);
    else report(probe, 1, "%s:%d %s", ip, port, why);
}

static void probe_dns(const char *resolver) {
    /* A real query for example.com, type A, sent to the resolver over UDP. */
    static const unsigned char query[] = {
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x01, 0x00, 0x01};
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, resolver, &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { report("net.dns", 1, "socket: %s", strerror(errno)); return; }
    if (sendto(fd, query, sizeof query, 0, (struct sockaddr *)&addr, sizeof addr) < 0) {
        report("net.dns", 1, "send to %s: %s", resolver, strerror(errno)); close(fd); return;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 3000) == 1) {
        unsigned char answer[512];
        ssize_t n = recv(fd, answer, sizeof answer, 0);
        report("net.dns", n <= 0, "answer of %zd bytes from %s", n, resolver);
    } else report("net.dns", 1, "no answer from %s in 3 s", resolver);
    close(fd);
}

static void probe_absent(const char *probe, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) report(probe, 0, "%s exists (mode %o)", path, st.st_mode);
    else report(probe, 1, "%s: %s", path, strerror(errno));
}

static void probe_unreadable(const char *probe, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        report(probe, 0, "%s opened, read %zd bytes", path, n);
    } else report(probe, 1, "%s: %s", path, strerror(errno));
}

static void probe_unwritable(const char *probe, const char *path, int create) {
    int fd = open(path, create ? (O_WRONLY | O_CREAT | O_EXCL) : O_RDWR, 0600);
    if (fd >= 0) {
        close(fd);
        if (create) unlink(path);
        report(probe, 0, "%s opened for writing", path);
    } else report(probe, 1, "%s: %s", path, strerror(errno));
}

/* Look for the harness's marker text anywhere we can read, bounded. */
static long scanned;
static int find_marker(const char *dir, const char *marker, char *where, size_t len,
                       int depth) {
    if (depth > 12 || scanned > 200000) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name);
        if (!strcmp(path, "/proc") || !strcmp(path, "/sys") || !strcmp(path, "/dev")) continue;
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        scanned++;
        if (S_ISDIR(st.st_mode)) found = find_marker(path, marker, where, len, depth + 1);
        else if (S_ISREG(st.st_mode) && st.st_size < (1 << 20)) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            char buf[1 << 16];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0) {
                buf[n] = 0;
                if (memmem(buf, n, marker, strlen(marker))) {
                    snprintf(where, len, "%s", path);
                    found = 1;
                }
            }
        }
    }
    closedir(d);
    return found;
}

/* An attacker who cannot list a directory can still guess names in it: try
 * <mount point>/<relative> for every mount point this sandbox has. */
static int marker_under_mounts(const char *relative, const char *marker, char *where,
                               size_t len) {
    FILE *mounts = fopen("/proc/self/mountinfo", "r");
    if (!mounts || !relative[0]) { if (mounts) fclose(mounts); return 0; }
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, mounts)) {
        char point[2048];
        if (sscanf(line, "%*s %*s %*s %*s %2047s", point) != 1) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", strcmp(point, "/") ? point : "", relative);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        if (n > 0 && memmem(buf, n, marker, strlen(marker))) {
            snprintf(where, len, "%s", path);
            found = 1;
        }
    }
    fclose(mounts);
    return found;
}

static void probe_marker(const char *probe, const char *marker, const char *relative) {
    char where[4096] = "";
    scanned = 0;
    if (find_marker("/", marker, where, sizeof where, 0) ||
        marker_under_mounts(relative, marker, where, sizeof where))
        report(probe, 0, "the host's marker is readable at %s", where);
    else report(probe, 1, "marker not found in %ld paths nor under any mount", scanned);
}

/* The other side of a granted mount: what was granted must be there. "contained"
 * means "as promised", so here it is true when the file holds the expected text. */
static void probe_reachable(const char *probe, const char *path, const char *text) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { report(probe, 0, "granted %s: %s", path, strerror(errno)); return; }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n > 0 && memmem(buf, n, text, strlen(text))) report(probe, 1, "read %s", path);
    else report(probe, 0, "%s holds other bytes (%zd read)", path, n);
}

static void probe_creatable(const char *probe, const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) { report(probe, 0, "granted writable, yet %s: %s", path, strerror(errno)); return; }
    close(fd);
    unlink(path);
    report(probe, 1, "created and removed %s", path);
}

/* Plant a symlink in a writable mount that names something beside it, and read
 * through it: it must resolve inside the sandbox's own view, where that is absent. */
static void probe_symlink_out(const char *probe, const char *link, const char *target,
                              const char *relative) {
    unlink(link);
    if (symlink(target, link) != 0) {
        report(probe, 0, "could not plant %s in a writable mount: %s", link, strerror(errno));
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", link, relative);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) { close(fd); report(probe, 0, "%s -> %s opened %s", link, target, path); }
    else report(probe, 1, "%s -> %s, then %s: %s", link, target, path, strerror(errno));
}

/* Look for a file by name anywhere we can list, bounded. */
static int find_name(const char *dir, const char *name, char *where, size_t len, int depth) {
    if (depth > 12 || scanned > 200000) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name);
        if (!strcmp(path, "/proc") || !strcmp(path, "/sys") || !strcmp(path, "/dev")) continue;
        scanned++;
        if (!strcmp(e->d_name, name)) {
            snprintf(where, len, "%s", path);
            found = 1;
            break;
        }
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            found = find_name(path, name, where, len, depth + 1);
    }
    closedir(d);
    return found;
}

static void probe_findname(const char *name, const char *probe) {
    char where[4096] = "";
    scanned = 0;
    if (find_name("/", name, where, sizeof where, 0))
        report(probe, 0, "found %s", where);
    else report(probe, 1, "no %s among %ld paths", name, scanned);
}

static void probe_setuid_binary(const char *path) {
    /* A root-owned setuid copy of busybox, run as "busybox id -u": it prints 0 only if
     * the setuid bit took effect. No output at all is inconclusive, and inconclusive
     * counts as NOT contained, so the harness can never go quietly blind. */
    int out[2];
    if (pipe(out) != 0) { report("escalate.setuid_binary", 0, "pipe failed"); return; }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(path, "busybox", "id", "-u", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[64] = "";
    ssize_t n = read(out[0], buf, sizeof buf - 1);
    close(out[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n <= 0) {
        report("escalate.setuid_binary", 0, "inconclusive: %s printed nothing (status %d)",
               path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return;
    }
    buf[n] = 0;
    int uid = atoi(buf);
    report("escalate.setuid_binary", uid != 0, "%s ran as uid %d", path, uid);
}

/* An HTTP request over a unix socket; returns the status code, or -errno. */
static int uds_http(const char *sock, const char *request, char *body, size_t len) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int err = errno; close(fd); return -err;
    }
    if (write(fd, request, strlen(request)) < 0) { int err = errno; close(fd); return -err; }
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fd, body + got, len - got - 1)) > 0) got += n;
    body[got] = 0;
    close(fd);
    int status = 0;
    if (sscanf(body, "HTTP/1.%*d %d", &status) != 1) return 0;
    return status;
}

static void probe_http_refused(const char *probe, const char *sock, const char *request) {
    char body[4096];
    int status = uds_http(sock, request, body, sizeof body);
    if (status < 0) report(probe, 1, "%s: %s", sock, strerror(-status));
    else if (status >= 400 && status < 500) report(probe, 1, "refused with HTTP %d", status);
    else report(probe, 0, "answered HTTP %d", status);
}

/* Kernel surface the seccomp filter closes: socket families the agent never needs
 * (AF_ALG reaches the kernel's crypto API, AF_VSOCK is not isolated by a network
 * namespace), and code run from a memfd, which no noexec mount ever held. */
static void probe_socket_family(const char *probe, int family, int type) {
    int fd = socket(family, type, 0);
    if (fd < 0) { report(probe, 1, "refused: %s", strerror(errno)); return; }
    close(fd);
    report(probe, 0, "socket of family %d created", family);
}

static void probe_memfd_exec(char **argv) {
    int fd = (int)syscall(SYS_memfd_create, "probe", 0);
    if (fd < 0) { report("memfd.exec", 1, "memfd_create refused: %s", strerror(errno)); return; }
    int self = open("/proc/self/exe", O_RDONLY);
    char buf[65536], path[64];
    ssize_t n;
    while (self >= 0 && (n = read(self, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n) break;
    if (self >= 0) close(self);
    char *child[] = {argv[0], "memfd-child", NULL}, *env[] = {NULL};
    /* Both ways in: execveat on the descriptor, and execve through procfs. */
    syscall(SYS_execveat, fd, "", child, env, AT_EMPTY_PATH);
    int via_execveat = errno;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    execve(path, child, env);
    report("memfd.exec", 1, "memfd created, but execveat: %s; execve %s: %s",
           strerror(via_execveat), path, strerror(errno));
}

/* ---- the second family: attacks on the host's readers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double seconds) {
    if (seconds <= 0) return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Move a commit fence to its next even value ("a commit just ended"), so that a host
 * that reads only after the fence moves reads now. */
static void nudge_fence(const char *fence) {
    int fd = open(fence, O_RDWR | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    struct stat st;
    unsigned long long words[2] = {0, 0};
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        pread(fd, words, sizeof words, 0) == (ssize_t)sizeof words) {
        unsigned long long even = (words[0] | 1) + 1;
        unsigned long long out[2] = {even, ~even};
        pwrite(fd, out, sizeof out, 0);
    }
    close(fd);
}

/* Put a FIFO, a symlink to /dev/zero or a character device where the host expects a
 * small regular file, for `seconds`, nudging the fence beside it twice a second so
 * the host keeps reading; then put the original back. A reader the FIFO caught in a
 * blocking open is released at the end, so a host without the defence stalls for the
 * whole hold, not forever. */
static void probe_plant(const char *kind, const char *path, double seconds,
                        const char *probe) {
    char aside[4096];
    snprintf(aside, sizeof aside, "%s.rt-orig", path);
    int had = rename(path, aside) == 0;
    int made;
    if (!strcmp(kind, "fifo")) made = mkfifo(path, 0644);
    else if (!strcmp(kind, "symlink")) made = symlink("/dev/zero", path);
    else made = mknod(path, S_IFCHR | 0644, makedev(1, 5));
    if (made != 0) {
        int err = errno;
        if (had) rename(aside, path);
        report(probe, 1, "no %s at %s: %s", kind, path, strerror(err));
        return;
    }
    char fence[4096];
    snprintf(fence, sizeof fence, "%.*s/outbound.db.fence",
             (int)(strrchr(path, '/') ? strrchr(path, '/') - path : 0), path);
    double until = now_s() + seconds;
    while (now_s() < until) {
        if (strcmp(fence, path) != 0) nudge_fence(fence);
        sleep_s(until - now_s() < 0.5 ? until - now_s() : 0.5);
    }
    /* Release: hold a writer open (O_RDWR never blocks on a FIFO) so that every
     * reader's open completes, unlink the FIFO so that no new reader can reach it,
     * then close the writer so that every reader's read ends. */
    int writer = -1;
    if (!strcmp(kind, "fifo")) writer = open(path, O_RDWR | O_NONBLOCK);
    sleep_s(0.05);
    unlink(path);
    if (had) rename(aside, path);
    if (writer >= 0) close(writer);
    report(probe, 1, "a %s sat at %s for %.0f s%s", kind, path, seconds,
           writer >= 0 ? ", then its readers were released" : "");
}

/* Hold the commit fence odd (a writer forever mid-commit), rewriting it faster than
 * the real agent's commits can set it even. */
static void probe_fence_odd(const char *fence, double seconds) {
    int fd = open(fence, O_RDWR);
    if (fd < 0) { report("host.fence.stuck_odd", 1, "%s: %s", fence, strerror(errno)); return; }
    unsigned long long words[2] = {0, 0};
    pread(fd, words, sizeof words, 0);
    unsigned long long odd = (words[0] + 1) | 1;
    long writes = 0;
    double until = now_s() + seconds;
    while (now_s() < until) {
        unsigned long long out[2] = {odd, ~odd};
        if (pwrite(fd, out, sizeof out, 0) == (ssize_t)sizeof out) writes++;
        sleep_s(0.005);
    }
    unsigned long long even[2] = {odd + 1, ~(odd + 1)};
    pwrite(fd, even, sizeof even, 0);
    close(fd);
    report("host.fence.stuck_odd", 1, "fence held odd (%llu) for %.0f s, %ld rewrites", odd,
           seconds, writes);
}

/* Make the host's inotify watch on the outbound directory fire as fast as we can. */
static void probe_inotify_storm(const char *dir, double seconds) {
    char path[4096];
    snprintf(path, sizeof path, "%s/.rt-storm", dir);
    long rounds = 0;
    double until = now_s() + seconds;
    while (now_s() < until) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) break;
        write(fd, "x", 1);
        close(fd);
        unlink(path);
        rounds++;
    }
    report("host.inotify_storm", 1, "%ld create/write/close/unlink rounds in %.0f s", rounds,
           seconds);
}

/* The connection flood's running tally, rewritten in place at `progress` (a file the
 * harness reads from the host) whenever it changes, and printed as the final line: a
 * connect that blocks for good (gVisor's connect to a host socket whose backlog is
 * full does, signals included) can then hang only this probe, never its report. */
struct flood_tally { int made, refused, pending, last_err; };

static void flood_line(char *out, size_t len, const char *probe, int total, double seconds,
                       const char *sock, struct flood_tally t, int final) {
    /* Contained when the host's cap stopped us: a connect refused past its deadline, or
     * one still hanging. Running out of time with every connect let in is not that (a
     * slow sandbox gets fewer in before the hold ends, capped or not). */
    int stopped = t.made < total && (t.refused > 0 || t.pending > 0);
    snprintf(out, len,
             "{\"probe\": \"%s\", \"contained\": %s, \"final\": %s, \"made\": %d, "
             "\"refused\": %d, \"pending\": %d, \"observed\": \"%d of %d connections to %s "
             "made and held for %.0f s, %d refused (%s), %d connect(s) still pending%s\"}\n",
             probe, stopped ? "true" : "false", final ? "true" : "false", t.made,
             t.refused, t.pending, t.made, total, sock, seconds, t.refused,
             t.last_err ? strerror(t.last_err) : "none", t.pending,
             final ? "" : " (so far)");
}

static void flood_progress(int fd, const char *line) {
    if (fd < 0) return;
    size_t n = strlen(line);
    if (pwrite(fd, line, n, 0) == (ssize_t)n) ftruncate(fd, (off_t)n);
}

/* One connect with its own deadline: non-blocking, then poll for the outcome. A full
 * backlog (EAGAIN) is tried again until the deadline: only a connect that cannot get
 * in within it counts as refused. 1: made; 0: refused (errno in *err). */
static int connect_within(const char *sock, double deadline_s, int *fd_out, int *err) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    double until = now_s() + deadline_s;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0) { *err = errno; return 0; }
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) { *fd_out = fd; return 1; }
        int e = errno;
        if (e == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int left_ms = (int)((until - now_s()) * 1000);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (left_ms > 0 && poll(&p, 1, left_ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                *fd_out = fd; return 1;
            }
            close(fd);
            *err = soerr ? soerr : ETIMEDOUT;
            return 0;
        }
        close(fd);
        if (e != EAGAIN || now_s() >= until) { *err = e; return 0; }
        sleep_s(0.01);
    }
}

/* `total` connections to a host socket, held open (sending nothing) for `seconds`:
 * forked children each hold as many as RLIMIT_NOFILE allows, and tell the parent over
 * a pipe before every connect and after it. The parent keeps the tally, writes it to
 * `progress`, and at `seconds` (plus a grace) reports and leaves, whatever a child is
 * stuck in: a hung connect is the attacker's own loss. */
static void probe_connect_flood(const char *sock, int total, double seconds,
                                const char *probe, const char *progress) {
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    int per = lim.rlim_cur > 64 ? (int)lim.rlim_cur - 32 : 32;
    if (per > 1000) per = 1000;
    int children = (total + per - 1) / per;
    if (children > 64) children = 64;
    int out[2];
    if (pipe(out) != 0) { report(probe, 0, "pipe failed"); return; }
    int pfd = progress[0] ? open(progress, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644) : -1;
    double until = now_s() + seconds;
    setpgid(0, 0);
    for (int c = 0; c < children; c++) {
        if (fork() != 0) continue;
        close(out[0]);
        int want = total - c * per < per ? total - c * per : per;
        int refused_in_a_row = 0;
        for (int i = 0; i < want && refused_in_a_row < 3 && now_s() < until; i++) {
            int note[3] = {c, 2, 0};  /* 2: a connect begins */
            write(out[1], note, sizeof note);
            int fd = -1, err = 0;
            int made = connect_within(sock, 1.0, &fd, &err);
            note[1] = made; note[2] = err;  /* 1: made; 0: refused */
            write(out[1], note, sizeof note);
            refused_in_a_row = made ? 0 : refused_in_a_row + 1;
        }
        sleep_s(until - now_s());
        _exit(0);
    }
    close(out[1]);
    struct flood_tally t = {0, 0, 0, 0};
    char line[1024];
    double last_write = 0;
    int done = 0;
    while (!done) {
        double left = until + 2.0 - now_s();
        if (left <= 0) break;
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int ready = poll(&p, 1, (int)(left * 1000) + 1);
        if (ready > 0) {
            int note[3];
            ssize_t n = read(out[0], note, sizeof note);
            if (n <= 0) done = 1;  /* every child has exited */
            else if (n == (ssize_t)sizeof note) {
                if (note[1] == 2) t.pending++;
                else {
                    t.pending--;
                    if (note[1] == 1) t.made++;
                    else { t.refused++; t.last_err = note[2]; }
                }
            }
        }
        if (now_s() - last_write >= 0.1) {
            flood_line(line, sizeof line, probe, total, seconds, sock, t, 0);
            flood_progress(pfd, line);
            last_write = now_s();
        }
    }
    flood_line(line, sizeof line, probe, total, seconds, sock, t, 1);
    flood_progress(pfd, line);
    if (pfd >= 0) { fsync(pfd); close(pfd); }
    fputs(line, stdout);
    fflush(stdout);
    /* Children stuck in connect may not die; the report is out either way. */
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGKILL);
}

/* Write until the kernel says no (ENOSPC, EDQUOT) or `limit_mb` MiB, then delete it all. */
static void probe_disk_fill(const char *dir, long limit_mb) {
    static char chunk[1 << 20];
    memset(chunk, 'f', sizeof chunk);
    long written_mb = 0;
    int files = 0, err = 0;
    char path[4096];
    while (written_mb < limit_mb && !err) {
        snprintf(path, sizeof path, "%s/.rt-fill-%d", dir, files++);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) { err = errno; break; }
        for (int i = 0; i < 64 && written_mb < limit_mb; i++) {
            ssize_t w = write(fd, chunk, sizeof chunk);
            if (w < (ssize_t)sizeof chunk) { err = w < 0 ? errno : ENOSPC; break; }
            written_mb++;
        }
        if (!err && fsync(fd) != 0) err = errno;
        close(fd);
    }
    for (int i = 0; i < files; i++) {
        snprintf(path, sizeof path, "%s/.rt-fill-%d", dir, i);
        unlink(path);
    }
    if (err) report("host.disk_fill", 1, "the kernel stopped us after %ld MiB in %s: %s",
                    written_mb, dir, strerror(err));
    else report("host.disk_fill", 0, "wrote %ld MiB into %s and nothing stopped us",
                written_mb, dir);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ironclaw-probe NAME [ARG...]\n");
        return 2;
    }
    const char *p = argv[1];
    const char *a = argc > 2 ? argv[2] : "";
    const char *b = argc > 3 ? argv[3] : "";
    if (!strcmp(p, "interfaces")) probe_interfaces();
    else if (!strcmp(p, "tcp")) probe_tcp(b[0] ? b : a, a, argc > 4 ? atoi(argv[4]) : 443);
    else if (!strcmp(p, "dns")) probe_dns(a);
    else if (!strcmp(p, "absent")) probe_absent(b, a);
    else if (!strcmp(p, "unreadable")) probe_unreadable(b, a);
    else if (!strcmp(p, "unwritable")) probe_unwritable(b, a, 0);
    else if (!strcmp(p, "uncreatable")) probe_unwritable(b, a, 1);
    else if (!strcmp(p, "marker")) probe_marker("host.marker", a, b);
    else if (!strcmp(p, "secret")) probe_marker(argc > 4 ? argv[4] : "secret", a, b);
    else if (!strcmp(p, "reachable")) probe_reachable(argc > 4 ? argv[4] : "reachable", a, b);
    else if (!strcmp(p, "creatable")) probe_creatable(b, a);
    else if (!strcmp(p, "symlink-out"))
        probe_symlink_out(argc > 5 ? argv[5] : "symlink_out", a, b, argc > 4 ? argv[4] : "");
    else if (!strcmp(p, "findname")) probe_findname(a, b);
    else if (!strcmp(p, "setuid-binary")) probe_setuid_binary(a);
    else if (!strcmp(p, "ptrace")) {
        long rc = ptrace(PTRACE_ATTACH, (pid_t)1, 0, 0);
        syscall_probe("syscall.ptrace", rc, errno);
    } else if (!strcmp(p, "mount")) {
        long rc = mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m");
        syscall_probe("syscall.mount", rc, errno);
    } else if (!strcmp(p, "unshare-user")) {
        long rc = unshare(CLONE_NEWUSER);
        syscall_probe("syscall.unshare_user", rc, errno);
    } else if (!strcmp(p, "unshare-mount")) {
        long rc = unshare(CLONE_NEWNS);
        syscall_probe("syscall.unshare_mount", rc, errno);
    } else if (!strcmp(p, "setns")) {
        int fd = open("/proc/1/ns/mnt", O_RDONLY);
        long rc = fd < 0 ? -1 : setns(fd, 0);
        syscall_probe("syscall.setns", rc, errno);
    } else if (!strcmp(p, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY; attr.key_size = 4; attr.value_size = 4;
        attr.max_entries = 1;
        long rc = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
        syscall_probe("syscall.bpf", rc, errno);
    } else if (!strcmp(p, "keyctl")) {
        long rc = syscall(SYS_add_key, "user", "probe", "x", 1, -2 /* session keyring */);
        syscall_probe("syscall.keyctl", rc, errno);
    } else if (!strcmp(p, "kexec")) {
        long rc = syscall(SYS_kexec_load, 0, 0, 0, 0);
        syscall_probe("syscall.kexec_load", rc, errno);
    } else if (!strcmp(p, "init-module")) {
        long rc = syscall(SYS_init_module, "", 0, "");
        syscall_probe("syscall.init_module", rc, errno);
    } else if (!strcmp(p, "chroot")) {
        long rc = chroot("/tmp");
        syscall_probe("syscall.chroot", rc, errno);
    } else if (!strcmp(p, "setuid")) {
        long rc = setuid(0);
        syscall_probe("escalate.setuid0", rc == 0 && getuid() == 0 ? 0 : -1, EPERM);
    } else if (!strcmp(p, "af-alg")) {
        probe_socket_family("socket.af_alg", AF_ALG, SOCK_SEQPACKET);
    } else if (!strcmp(p, "af-vsock")) {
        probe_socket_family("socket.af_vsock", AF_VSOCK, SOCK_STREAM);
    } else if (!strcmp(p, "memfd-exec")) {
        probe_memfd_exec(argv);
    } else if (!strcmp(p, "memfd-child")) {
        report("memfd.exec", 0, "ran code from a memfd");
    } else if (!strcmp(p, "model-proxy")) {
        char request[1024];
        snprintf(request, sizeof request,
                 "POST /v1/messages HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: 2\r\nConnection: close\r\n\r\n{}", b);
        probe_http_refused("model_proxy.foreign_host", a, request);
    } else if (!strcmp(p, "egress")) {
        char payload[512], request[1024];
        snprintf(payload, sizeof payload, "{\"url\": \"https://%s/\", \"method\": \"GET\"}", b);
        snprintf(request, sizeof request,
                 "POST /v1/fetch HTTP/1.1\r\nHost: egress\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(payload), payload);
        probe_http_refused("egress.unapproved_host", a, request);
    } else if (!strcmp(p, "spin")) {
        /* An honest but busy sandbox: all of its own CPU budget, nothing hostile. */
        double until = now_s() + atof(a);
        volatile unsigned long spins = 0;
        while (now_s() < until) for (int i = 0; i < 100000; i++) spins++;
        report("host.baseline", 1, "spun for %s s", a);
    } else if (!strcmp(p, "plant")) {
        probe_plant(a, b, argc > 4 ? atof(argv[4]) : 3, argc > 5 ? argv[5] : "host.plant");
    } else if (!strcmp(p, "fence-odd")) probe_fence_odd(a, atof(b));
    else if (!strcmp(p, "inotify-storm")) probe_inotify_storm(a, atof(b));
    else if (!strcmp(p, "connect-flood")) {
        probe_connect_flood(a, atoi(b), argc > 4 ? atof(argv[4]) : 3,
                            argc > 5 ? argv[5] : "host.connect_flood", argc > 6 ? argv[6] : "");
    } else if (!strcmp(p, "disk-fill")) probe_disk_fill(a, atol(b));
    else {
        fprintf(stderr, "unknown probe %s\n", p);
        return 2;
    }
    return 0;
}
