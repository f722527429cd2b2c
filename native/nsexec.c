/*
 * paddock-nsexec: run one command inside a running local sandbox.
 *
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... [-w DIR] [-e KEY=VALUE]... [-t [-r FD]] -- ARGV...
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -R PATH [-m MAX_BYTES]   (file to stdout)
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -W PATH                  (stdin to file)
 *   paddock-nsexec -u UID [-c CGROUP_PROCS]... [-n NETNS_PATH] -- ARGV...  (start: cgroups, netns, uid, exec)
 *   paddock-nsexec -u UID [-c CGROUP_PROCS]... [-n NETNS_PATH] -S          (staged start, for warm shells)
 *   paddock-nsexec -u UID ... -Z SOCKET ...                                (start, with an exec service)
 *
 * Joins the cgroups, then the namespaces of sandbox process PID (user
 * namespace last: the network namespace belongs to the host's user
 * namespace), becomes uid/gid 0 *inside* it (an unprivileged uid outside),
 * drops every capability, sets no_new_privs and runs ARGV in a new session.
 * Exit status: the command's, or 128+signal; 125 when the sandbox cannot be
 * entered, 126/127 when the command cannot run (as a shell would). File
 * modes exit 0, or 1 with "ERRNO_NAME: message" on stderr (EFBIG when the
 * file is larger than MAX_BYTES).
 *
 * -u starts a sandbox: it joins the cgroups before anything is forked, then
 * becomes UID (so bubblewrap maps the sandbox's root to it) and runs ARGV.
 * With -S it stops after joining the cgroups and the network namespace (the
 * slow part: a cgroup v1 attach waits for an RCU grace period), writes
 * "{}\n" to fd 3, and reads the rest from stdin until EOF, NUL-separated:
 * "FD=PATH" entries, each PATH opened (as root) onto FD, then "--", then
 * ARGV. Stdin then becomes /dev/null and it goes on as -u does. While it
 * waits it holds a mount namespace of its own (see leave_host_mounts).
 *
 * -Z (with -u) forks an exec service before bubblewrap runs: a process in
 * the sandbox's cgroups from birth, listening on the unix socket SOCKET
 * (mode 0600, root's). Once the sandbox's command runs, the runner sends it
 * the sandbox's init pid; it joins the sandbox's namespaces as its root (an
 * unprivileged uid on the host), drops every capability, and from then on
 * runs the commands its clients send (see exec_service and struct run). A
 * command forked by a process already in the cgroups is counted there
 * without a cgroup attach, which on cgroup v1 waits for an RCU grace period
 * (10-15 ms); the namespaces are not joined again either, and the runner
 * spawns no process per command.
 *
 * Descriptors: whatever this process inherited beyond stdio (from the runner,
 * which got them from whoever started it) never reaches a sandbox. A command
 * run with -p gets fds 0-2 only; with -u, ARGV is bubblewrap and keeps just
 * the fds its options name (--bind-fd, --json-status-fd, ...).
 *
 * With -t the command gets a new pseudo-terminal: this process relays
 * stdin → terminal and terminal → stdout; with -r FD it reads window sizes
 * as "ROWS COLS\n" lines from FD.
 *
 * Written in C because it must run after setns() into a mount namespace
 * whose root may hold no shell or libc at all: it is linked statically and
 * does everything before execve().
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_ITEMS 512

static pid_t child = -1;

static void die(int code, const char *what) {
  fprintf(stderr, "paddock-nsexec: %s: %s\n", what, strerror(errno));
  _exit(code);
}

static void forward(int sig) {
  if (child > 0) kill(-child, sig == SIGTERM || sig == SIGINT ? SIGKILL : sig);
}

/* Closes every fd from 3 up except those in keep (which it sorts). */
static void close_fds_except(int *keep, int nkeep) {
  for (int a = 1; a < nkeep; a++)
    for (int b = a; b > 0 && keep[b - 1] > keep[b]; b--) {
      int t = keep[b];
      keep[b] = keep[b - 1];
      keep[b - 1] = t;
    }
  unsigned int from = 3;
  int ok = 1;
  for (int k = 0; k <= nkeep && ok; k++) {
    unsigned int upto = k < nkeep ? (unsigned int)keep[k] : ~0U;
    if (k < nkeep && keep[k] < 3) continue;
    if (upto > from && close_range(from, upto - 1, 0) < 0) ok = 0;
    if (k < nkeep && upto + 1 > from) from = upto + 1;
  }
  if (ok) return;
  /* No close_range (kernel before 5.9): close what /proc lists. */
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) die(125, "/proc/self/fd");
  int fds[4096], n = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL && n < 4096) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    int fd = atoi(entry->d_name);
    if (fd >= 3 && fd != dirfd(dir)) fds[n++] = fd;
  }
  closedir(dir);
  for (int f = 0; f < n; f++) {
    int kept = 0;
    for (int k = 0; k < nkeep; k++) kept |= keep[k] == fds[f];
    if (!kept) close(fds[f]);
  }
}

/* bubblewrap's options (0.8 to 0.11): how many values each takes, and whether its first value is an fd it must inherit. */
static const struct {
  const char *name;
  int values;
  int fd;
} BWRAP_OPTIONS[] = {
    {"--help", 0, 0}, {"--version", 0, 0}, {"--unshare-all", 0, 0}, {"--share-net", 0, 0},
    {"--unshare-user", 0, 0}, {"--unshare-user-try", 0, 0}, {"--unshare-ipc", 0, 0},
    {"--unshare-pid", 0, 0}, {"--unshare-net", 0, 0}, {"--unshare-uts", 0, 0},
    {"--unshare-cgroup", 0, 0}, {"--unshare-cgroup-try", 0, 0}, {"--userns", 1, 1},
    {"--userns2", 1, 1}, {"--disable-userns", 0, 0}, {"--assert-userns-disabled", 0, 0},
    {"--pidns", 1, 1}, {"--uid", 1, 0}, {"--gid", 1, 0}, {"--hostname", 1, 0}, {"--chdir", 1, 0},
    {"--clearenv", 0, 0}, {"--setenv", 2, 0}, {"--unsetenv", 1, 0}, {"--lock-file", 1, 0},
    {"--sync-fd", 1, 1}, {"--bind", 2, 0}, {"--bind-try", 2, 0}, {"--dev-bind", 2, 0},
    {"--dev-bind-try", 2, 0}, {"--ro-bind", 2, 0}, {"--ro-bind-try", 2, 0}, {"--bind-fd", 2, 1},
    {"--ro-bind-fd", 2, 1}, {"--remount-ro", 1, 0}, {"--exec-label", 1, 0}, {"--file-label", 1, 0},
    {"--proc", 1, 0}, {"--dev", 1, 0}, {"--tmpfs", 1, 0}, {"--mqueue", 1, 0}, {"--dir", 1, 0},
    {"--file", 2, 1}, {"--bind-data", 2, 1}, {"--ro-bind-data", 2, 1}, {"--symlink", 2, 0},
    {"--seccomp", 1, 1}, {"--add-seccomp-fd", 1, 1}, {"--block-fd", 1, 1},
    {"--userns-block-fd", 1, 1}, {"--info-fd", 1, 1}, {"--json-status-fd", 1, 1},
    {"--new-session", 0, 0}, {"--die-with-parent", 0, 0}, {"--as-pid-1", 0, 0},
    {"--cap-add", 1, 0}, {"--cap-drop", 1, 0}, {"--perms", 1, 0}, {"--size", 1, 0},
    {"--chmod", 2, 0}, {"--overlay-src", 1, 0}, {"--overlay", 3, 0}, {"--tmp-overlay", 1, 0},
    {"--ro-overlay", 1, 0}, {"--level-prefix", 0, 0},
};

/*
 * Before exec'ing bubblewrap: closes every fd above 2 that its options do
 * not name. An option this table does not know (or --args, whose options
 * come from an fd) leaves every fd open rather than break the sandbox.
 */
static void close_fds_but_bwraps(char **command) {
  int keep[MAX_ITEMS], nkeep = 0;
  for (int i = 1; command[i] != NULL; i++) {
    const char *arg = command[i];
    if (strcmp(arg, "--") == 0 || strncmp(arg, "--", 2) != 0) break;
    int known = -1;
    for (size_t o = 0; o < sizeof BWRAP_OPTIONS / sizeof BWRAP_OPTIONS[0]; o++)
      if (strcmp(arg, BWRAP_OPTIONS[o].name) == 0) known = (int)o;
    if (known < 0 || strcmp(arg, "--args") == 0) return;
    for (int v = 1; v <= BWRAP_OPTIONS[known].values; v++)
      if (command[i + v] == NULL) return;
    if (BWRAP_OPTIONS[known].fd && nkeep < MAX_ITEMS) keep[nkeep++] = atoi(command[i + 1]);
    i += BWRAP_OPTIONS[known].values;
  }
  close_fds_except(keep, nkeep);
}

/*
 * Joins the namespaces of sandbox process PID as its root: NULL, or what
 * failed (errno says why). Every namespace is opened before any is joined:
 * once in the sandbox's mount namespace, /proc is the sandbox's own and PID
 * means nothing. The user namespace comes last: the network namespace
 * belongs to the host's. Supplementary groups go while still on the host,
 * where dropping them is allowed.
 */
static const char *join_sandbox(pid_t pid, int with_pid_ns) {
  static const struct {
    const char *name;
    int type;
  } NAMESPACES[] = {{"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
                    {"net", CLONE_NEWNET},       {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},
                    {"user", CLONE_NEWUSER}};
  enum { COUNT = sizeof NAMESPACES / sizeof NAMESPACES[0] };
  int fds[COUNT];
  for (int n = 0; n < COUNT; n++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, NAMESPACES[n].name);
    fds[n] = open(path, O_RDONLY | O_CLOEXEC);
    /* No cgroup namespace on kernels without them. */
    if (fds[n] < 0 && !(NAMESPACES[n].type == CLONE_NEWCGROUP && errno == ENOENT))
      return NAMESPACES[n].name;
  }
  if (setgroups(0, NULL) < 0) return "setgroups";
  for (int n = 0; n < COUNT; n++) {
    if (fds[n] < 0) continue;
    /* A file helper stays outside the sandbox's pid namespace: when the
       write itself makes the sandbox's main process exit, the kernel kills
       every process in that namespace, and the helper would die before
       reporting a write that did complete. */
    if (NAMESPACES[n].type == CLONE_NEWPID && !with_pid_ns) {
      close(fds[n]);
      continue;
    }
    if (setns(fds[n], NAMESPACES[n].type) < 0) return NAMESPACES[n].name;
    close(fds[n]);
  }
  if (setresgid(0, 0, 0) < 0) return "setresgid";
  if (setresuid(0, 0, 0) < 0) return "setresuid";
  return NULL;
}

static void drop_privileges(void) {
  if (setgroups(0, NULL) < 0 && errno != EPERM) die(125, "setgroups");
  if (setresgid(0, 0, 0) < 0) die(125, "setresgid");
  if (setresuid(0, 0, 0) < 0) die(125, "setresuid");
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die(125, "drop capability");
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &header, data) < 0) die(125, "capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die(125, "no_new_privs");
}

/* Copies all of buffer to fd; false when fd is gone. */
static int write_all(int fd, const char *buffer, ssize_t n) {
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(fd, buffer + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    off += w;
  }
  return 1;
}

static void relay_tty(int master, int resize_fd) {
  char buffer[65536];
  char sizes[64];
  size_t sizes_len = 0;
  int stdin_open = 1;
  for (;;) {
    struct pollfd fds[3] = {{master, POLLIN, 0}, {stdin_open ? 0 : -1, POLLIN, 0}, {resize_fd, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(master, buffer, sizeof buffer);
      if (n <= 0) return; /* EIO once the terminal's last user is gone */
      if (!write_all(1, buffer, n)) return;
    }
    if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(0, buffer, sizeof buffer);
      if (n <= 0) {
        stdin_open = 0;
        char eot = 4; /* end of input reaches the terminal as ^D */
        write_all(master, &eot, 1);
      } else {
        write_all(master, buffer, n);
      }
    }
    if (resize_fd >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(resize_fd, sizes + sizes_len, sizeof sizes - 1 - sizes_len);
      if (n <= 0) {
        resize_fd = -1;
        continue;
      }
      sizes_len += n;
      sizes[sizes_len] = 0;
      char *line;
      while ((line = memchr(sizes, '\n', sizes_len)) != NULL) {
        unsigned rows, cols;
        if (sscanf(sizes, "%u %u", &rows, &cols) == 2) {
          struct winsize ws = {(unsigned short)rows, (unsigned short)cols, 0, 0};
          ioctl(master, TIOCSWINSZ, &ws);
        }
        size_t used = (size_t)(line - sizes) + 1;
        memmove(sizes, line + 1, sizes_len - used);
        sizes_len -= used;
        sizes[sizes_len] = 0;
      }
      if (sizes_len == sizeof sizes - 1) sizes_len = 0; /* a line too long to be a size */
    }
  }
}

static int file_error(const char *path) {
  const char *name = errno == ENOENT ? "ENOENT" : errno == EISDIR ? "EISDIR" : errno == EACCES ? "EACCES"
                   : errno == EFBIG ? "EFBIG" : errno == ENOTDIR ? "ENOTDIR" : errno == EROFS ? "EROFS" : "EIO";
  fprintf(stderr, "%s: %s: %s\n", name, path, strerror(errno));
  return 1;
}

static int read_file(const char *path, long long max_bytes) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return file_error(path);
  struct stat st;
  if (fstat(fd, &st) < 0) return file_error(path);
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    return file_error(path);
  }
  if (max_bytes >= 0 && S_ISREG(st.st_mode) && st.st_size > max_bytes) {
    errno = EFBIG;
    return file_error(path);
  }
  char buffer[65536];
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return file_error(path);
    }
    if (n == 0) return 0;
    total += n;
    if (max_bytes >= 0 && total > max_bytes) {
      errno = EFBIG;
      return file_error(path);
    }
    if (!write_all(1, buffer, n)) return 1;
  }
}

static int make_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    int r = mkdir(path, 0755);
    *p = '/';
    if (r < 0 && errno != EEXIST) return -1;
  }
  return 0;
}

static int write_file(char *path) {
  if (make_parents(path) < 0) return file_error(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0) return file_error(path);
  char buffer[65536];
  for (;;) {
    ssize_t n = read(0, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return file_error(path);
    }
    if (n == 0) break;
    if (!write_all(fd, buffer, n)) return file_error(path);
  }
  if (close(fd) < 0) return file_error(path);
  return 0;
}

/*
 * A warm shell's helper waits in a mount namespace of its own: a copy of the
 * host's, without /run/netns. bubblewrap makes the sandbox's mount namespace
 * by copying its parent's and then detaches every mount it copied; the host
 * has one mount under /run/netns per network namespace, one per sandbox and
 * warm shell, so in a burst each start would copy and detach hundreds of
 * mounts, under locks every start shares. Copied here, ahead of the start,
 * the start copies the twenty-odd others. Slave: nothing done here reaches
 * the host; the host's later mounts still reach here.
 */
static void leave_host_mounts(void) {
  if (unshare(CLONE_NEWNS) < 0) die(125, "unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die(125, "mount --make-rslave /");
  if (umount2("/run/netns", MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    die(125, "umount /run/netns");
}

/*
 * -S: says it is ready on fd 3, then reads FD=PATH entries and ARGV from
 * stdin (NUL-separated, until EOF), opening each PATH onto its FD.
 */
static char **read_staged_command(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (write_all(3, "{}\n", 3) < 0) die(125, "status fd");
  size_t size = 0, cap = 65536;
  char *spec = malloc(cap);
  if (!spec) die(125, "malloc");
  for (;;) {
    if (size + 1 >= cap) {
      cap *= 2;
      spec = realloc(spec, cap);
      if (!spec) die(125, "realloc");
    }
    ssize_t n = read(0, spec + size, cap - size - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(125, "stdin");
    if (n == 0) break;
    size += (size_t)n;
  }
  spec[size] = '\0';
  static char *argv_out[4096];
  int nargs = 0, in_argv = 0;
  for (char *item = spec; item < spec + size; item += strlen(item) + 1) {
    if (in_argv) {
      if (nargs < 4095) argv_out[nargs++] = item;
      continue;
    }
    if (strcmp(item, "--") == 0) {
      in_argv = 1;
      continue;
    }
    char *eq = strchr(item, '=');
    if (!eq) die(125, "staged entry");
    int target = atoi(item);
    int fd = open(eq + 1, O_RDONLY);
    if (fd < 0) die(125, eq + 1);
    if (fd != target) {
      if (dup2(fd, target) < 0) die(125, "dup2");
      close(fd);
    }
  }
  argv_out[nargs] = NULL;
  if (nargs == 0) die(125, "staged command");
  int null = open("/dev/null", O_RDONLY);
  if (null < 0 || dup2(null, 0) < 0) die(125, "/dev/null");
  if (null != 0) close(null);
  return argv_out;
}

extern char **environ;

/* The end of every command's child: its working directory, then ARGV[0] looked up on the sandbox's PATH. */
static void run_command(const char *cwd, char **command, char **env) {
  if (cwd && chdir(cwd) < 0) die(126, cwd);
  environ = env;
  execvp(command[0], command);
  int code = errno == ENOENT ? 127 : 126;
  fprintf(stderr, "paddock-nsexec: %s: %s\n", command[0], strerror(errno));
  _exit(code);
}

/*
 * A unix stream socket bound to (listening) or connected to PATH. Done from
 * inside PATH's directory: a sockaddr_un holds 108 bytes, a state dir's path
 * may be longer.
 */
static int unix_socket_at(const char *path, int listening) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  char dir[4096];
  size_t dir_length = slash ? (size_t)(slash - path) : 0;
  if (strlen(name) >= sizeof address.sun_path || dir_length >= sizeof dir) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(address.sun_path, name);
  memcpy(dir, path, dir_length);
  dir[dir_length] = '\0';
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || here < 0) return -1;
  int ok = !slash || chdir(dir_length ? dir : "/") == 0;
  if (ok && listening) {
    unlink(name);
    ok = bind(fd, (struct sockaddr *)&address, sizeof address) == 0 && chmod(name, 0600) == 0 &&
         listen(fd, 128) == 0;
  } else if (ok) {
    ok = connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
  }
  int saved = errno;
  if (fchdir(here) < 0) ok = 0;
  close(here);
  if (ok) return fd;
  close(fd);
  errno = saved;
  return -1;
}

#define MAX_RUNS 256

/*
 * One command run for a client of the exec service. The request: two
 * uint32s (spec length, stdin length), the spec (NUL-separated "a"+arg,
 * "e"+KEY=VALUE, "w"+dir), then stdin. The answer: frames of a kind byte
 * (1 stdout, 2 stderr, 3 exit), a uint32 length and the data; the exit
 * frame's data is the int32 status, and ends the answer. A client that goes
 * away before it kills the command's process group.
 */
struct run {
  int conn;
  pid_t pid; /* 0 once reaped */
  int status;
  int in;     /* the command's stdin, until all of it is written */
  int out[2]; /* its stdout and stderr */
  uint32_t stdin_left;
  size_t pending_off, pending_len;
  char pending[65536];
};

static int send_frame(struct run *run, char kind, const void *data, uint32_t length) {
  if (run->conn < 0) return 0;
  char header[5];
  header[0] = kind;
  memcpy(header + 1, &length, sizeof length);
  if (write_all(run->conn, header, 5) && write_all(run->conn, data, length)) return 1;
  close(run->conn);
  run->conn = -1;
  return 0;
}

static int read_exactly(int fd, void *buffer, size_t length) {
  for (size_t off = 0; off < length;) {
    ssize_t n = read(fd, (char *)buffer + off, length - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    off += (size_t)n;
  }
  return 1;
}

static struct run *start_run(int conn) {
  struct timeval timeout = {2, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  uint32_t lengths[2];
  if (!read_exactly(conn, lengths, sizeof lengths) || lengths[0] > 16u << 20) return NULL;
  char *spec = malloc((size_t)lengths[0] + 1);
  struct run *run = calloc(1, sizeof *run);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (!spec || !run || !read_exactly(conn, spec, lengths[0])) goto fail;
  spec[lengths[0]] = '\0';
  static char *command[4096], *env[4096];
  const char *cwd = NULL;
  int nargs = 0, nenv = 0;
  for (char *item = spec; item < spec + lengths[0]; item += strlen(item) + 1) {
    if (item[0] == 'a' && nargs < 4095) command[nargs++] = item + 1;
    else if (item[0] == 'e' && nenv < 4095) env[nenv++] = item + 1;
    else if (item[0] == 'w') cwd = item + 1;
  }
  command[nargs] = NULL;
  env[nenv] = NULL;
  if (nargs == 0 || pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
      pipe2(err, O_CLOEXEC) < 0)
    goto fail;
  pid_t pid = fork();
  if (pid < 0) goto fail;
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    setsid();
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(125);
    close_fds_except(NULL, 0);
    run_command(cwd, command, env);
  }
  free(spec);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  run->conn = conn;
  run->pid = pid;
  run->in = in[1];
  run->out[0] = out[0];
  run->out[1] = err[0];
  run->stdin_left = lengths[1];
  for (int k = 0; k < 3; k++) {
    int fd = k == 0 ? run->in : run->out[k - 1];
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  if (run->stdin_left == 0) {
    close(run->in);
    run->in = -1;
  }
  return run;
fail:
  free(spec);
  free(run);
  for (int k = 0; k < 2; k++) {
    if (in[k] >= 0) close(in[k]);
    if (out[k] >= 0) close(out[k]);
    if (err[k] >= 0) close(err[k]);
  }
  return NULL;
}

/* Relays what the command wrote on stream k to the client; false at its end. */
static int relay_output(struct run *run, int k) {
  char buffer[65536];
  for (;;) {
    ssize_t n = read(run->out[k], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 1;
    if (n <= 0) {
      close(run->out[k]);
      run->out[k] = -1;
      return 0;
    }
    send_frame(run, (char)(k + 1), buffer, (uint32_t)n);
  }
}

/* Feeds the command's stdin from the client, never blocking: a command that does not read its input must not stall the others. */
static void feed_stdin(struct run *run, int readable, int writable) {
  if (readable && run->pending_len == 0 && run->stdin_left > 0) {
    size_t want = run->stdin_left < sizeof run->pending ? run->stdin_left : sizeof run->pending;
    ssize_t n = read(run->conn, run->pending, want);
    if (n > 0) {
      run->pending_off = 0;
      run->pending_len = (size_t)n;
      run->stdin_left -= (uint32_t)n;
    }
  }
  if (writable && run->pending_len > run->pending_off) {
    ssize_t n = write(run->in, run->pending + run->pending_off, run->pending_len - run->pending_off);
    if (n > 0) {
      run->pending_off += (size_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      /* It closed its input: the rest is dropped. */
      run->stdin_left = 0;
      run->pending_off = run->pending_len;
    }
    if (run->pending_off == run->pending_len) run->pending_len = run->pending_off = 0;
  }
  if (run->in >= 0 && run->stdin_left == 0 && run->pending_len == 0) {
    close(run->in);
    run->in = -1;
  }
}

static void end_run(struct run *run) {
  if (run->pid > 0) kill(-run->pid, SIGKILL);
  if (run->conn >= 0) close(run->conn);
  run->conn = -1;
}

/* Forks what clients ask for and relays each command's input, output and status. */
static void serve(int listener) {
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  sigaddset(&handled, SIGTERM);
  sigprocmask(SIG_BLOCK, &handled, NULL);
  int reaper = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (reaper < 0) _exit(125);
  static struct run *runs[MAX_RUNS];
  int nruns = 0;
  /* After SIGTERM (bubblewrap gone, or a stop): no new commands; the running ones are answered. */
  int ending = 0;
  for (;;) {
    if (ending && nruns == 0) _exit(0);
    struct pollfd fds[2 + 4 * MAX_RUNS];
    fds[0] = (struct pollfd){nruns < MAX_RUNS && !ending ? listener : -1, POLLIN, 0};
    fds[1] = (struct pollfd){reaper, POLLIN, 0};
    for (int r = 0; r < nruns; r++) {
      struct run *run = runs[r];
      int wants_input = run->stdin_left > 0 && run->pending_len == 0;
      fds[2 + 4 * r] = (struct pollfd){run->conn, (short)(wants_input ? POLLIN : 0), 0};
      fds[3 + 4 * r] = (struct pollfd){run->pending_len ? run->in : -1, POLLOUT, 0};
      fds[4 + 4 * r] = (struct pollfd){run->out[0], POLLIN, 0};
      fds[5 + 4 * r] = (struct pollfd){run->out[1], POLLIN, 0};
    }
    if (poll(fds, (nfds_t)(2 + 4 * nruns), -1) < 0) {
      if (errno == EINTR) continue;
      _exit(125);
    }
    for (int r = 0; r < nruns; r++) {
      struct run *run = runs[r];
      short conn_events = fds[2 + 4 * r].revents;
      if (run->conn >= 0 && (conn_events & (POLLHUP | POLLERR)) && !(conn_events & POLLIN)) {
        end_run(run);
        continue;
      }
      if (run->in >= 0) feed_stdin(run, conn_events & POLLIN, fds[3 + 4 * r].revents != 0);
      for (int k = 0; k < 2; k++)
        if (run->out[k] >= 0 && fds[4 + 4 * r + k].revents) relay_output(run, k);
    }
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(reaper, &info, sizeof info) > 0) {
        if (info.ssi_signo == SIGTERM) ending = 1;
      }
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int r = 0; r < nruns; r++) {
          if (runs[r]->pid != pid) continue;
          runs[r]->pid = 0;
          runs[r]->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
      }
    }
    /* Done once reaped: what it wrote is in its pipes by then; a background
       process it left may hold them open, so they are drained, not waited on. */
    for (int r = 0; r < nruns;) {
      struct run *run = runs[r];
      if (run->pid != 0) {
        r++;
        continue;
      }
      for (int k = 0; k < 2; k++) {
        if (run->out[k] < 0) continue;
        relay_output(run, k);
        if (run->out[k] >= 0) close(run->out[k]);
      }
      int32_t code = run->status;
      send_frame(run, 3, &code, sizeof code);
      if (run->conn >= 0) close(run->conn);
      if (run->in >= 0) close(run->in);
      free(run);
      runs[r] = runs[--nruns];
    }
    if (fds[0].revents & POLLIN) {
      int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (conn < 0) continue;
      struct run *run = start_run(conn);
      if (run) runs[nruns++] = run;
      else close(conn);
    }
  }
}

/*
 * The exec service's life: it ends with bubblewrap; its first client (the
 * runner, once the sandbox's command runs) sends the sandbox's init pid as
 * a uint32 and gets "ready\n" once the service has joined the sandbox, or
 * "unavailable: why\n"; every later client sends a command.
 */
static void exec_service(int listener, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(0);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  setsid();
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int k = 0; k < 3; k++) dup2(null, k);
  close_fds_except(&listener, 1);
  signal(SIGPIPE, SIG_IGN);
  uint32_t init = 0;
  int conn;
  for (;;) {
    conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) continue;
    struct timeval timeout = {2, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (read_exactly(conn, &init, sizeof init) && init > 0) break;
    close(conn);
  }
  const char *failed = join_sandbox((pid_t)init, 1);
  if (failed) {
    char line[256];
    int n = snprintf(line, sizeof line, "unavailable: %s: %s\n", failed, strerror(errno));
    write_all(conn, line, n);
    _exit(0);
  }
  /* Nothing the commands it forks do needs a privilege: it holds none either. */
  drop_privileges();
  /* Changing credentials cleared the parent-death signal. SIGTERM, not
     SIGKILL: when the sandbox ends during a command (its main process exits,
     or the command kills it), that command is killed with the sandbox's pid
     namespace, and its client still gets its status. */
  prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
  if (getppid() != parent) _exit(0);
  write_all(conn, "ready\n", 6);
  close(conn);
  serve(listener);
}

static void start_exec_service(const char *path) {
  int listener = unix_socket_at(path, 1);
  if (listener < 0) die(125, path);
  pid_t parent = getpid();
  pid_t service = fork();
  if (service < 0) die(125, "fork");
  if (service == 0) exec_service(listener, parent);
  close(listener);
}

int main(int argc, char **argv) {
  int pid = 0, tty = 0, ncgroups = 0, nenv = 0, resize_fd = -1, uid = -1, staged = 0;
  long long max_bytes = -1;
  const char *cwd = NULL;
  char *read_path = NULL, *write_path = NULL, *netns_path = NULL, *service_path = NULL;
  const char *cgroups[MAX_ITEMS];
  char *env[MAX_ITEMS + 1];
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "-S") == 0) {
      staged = 1;
      continue;
    }
    if (i + 1 >= argc && strcmp(argv[i], "-t") != 0) {
      fprintf(stderr, "paddock-nsexec: %s needs a value\n", argv[i]);
      return 125;
    }
    if (strcmp(argv[i], "-p") == 0) pid = atoi(argv[++i]);
    else if (strcmp(argv[i], "-c") == 0 && ncgroups < MAX_ITEMS) cgroups[ncgroups++] = argv[++i];
    else if (strcmp(argv[i], "-w") == 0) cwd = argv[++i];
    else if (strcmp(argv[i], "-e") == 0 && nenv < MAX_ITEMS) env[nenv++] = argv[++i];
    else if (strcmp(argv[i], "-t") == 0) tty = 1;
    else if (strcmp(argv[i], "-r") == 0) resize_fd = atoi(argv[++i]);
    else if (strcmp(argv[i], "-u") == 0) uid = atoi(argv[++i]);
    else if (strcmp(argv[i], "-n") == 0) netns_path = argv[++i];
    else if (strcmp(argv[i], "-R") == 0) read_path = argv[++i];
    else if (strcmp(argv[i], "-W") == 0) write_path = argv[++i];
    else if (strcmp(argv[i], "-m") == 0) max_bytes = atoll(argv[++i]);
    else if (strcmp(argv[i], "-Z") == 0) service_path = argv[++i];
    else {
      fprintf(stderr, "paddock-nsexec: unknown option %s\n", argv[i]);
      return 125;
    }
  }
  env[nenv] = NULL;
  int file_mode = read_path != NULL || write_path != NULL;
  if ((pid <= 0 && uid < 0) || (!file_mode && !staged && i >= argc) || (staged && uid < 0)) {
    fprintf(stderr, "usage: paddock-nsexec -p PID [-c CGROUP_PROCS]... [-w DIR] [-e K=V]... [-t [-r FD]] -- ARGV...\n");
    return 125;
  }
  char **command = argv + i;

  /* Join the sandbox's cgroups first, so everything below is counted and limited. */
  char self[32];
  snprintf(self, sizeof self, "%d", getpid());
  for (int c = 0; c < ncgroups; c++) {
    int fd = open(cgroups[c], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, self, strlen(self)) < 0) die(125, cgroups[c]);
    close(fd);
  }

  if (uid >= 0) {
    if (netns_path) {
      int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) die(125, netns_path);
      close(fd);
    }
    if (service_path) start_exec_service(service_path);
    if (staged) {
      leave_host_mounts();
      command = read_staged_command();
    }
    if (setgroups(0, NULL) < 0) die(125, "setgroups");
    if (setresgid(uid, uid, uid) < 0) die(125, "setresgid");
    if (setresuid(uid, uid, uid) < 0) die(125, "setresuid");
    close_fds_but_bwraps(command);
    execvp(command[0], command);
    die(errno == ENOENT ? 127 : 126, command[0]);
  }

  int master = -1;
  char slave_name[128] = {0};
  if (tty) {
    /* Opened on the host, before the mount namespace changes. */
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) die(125, "pseudo-terminal");
    if (ptsname_r(master, slave_name, sizeof slave_name) != 0) die(125, "ptsname");
  }
  int slave = -1;
  if (tty) {
    slave = open(slave_name, O_RDWR | O_NOCTTY);
    if (slave < 0) die(125, slave_name);
    struct winsize ws = {24, 80, 0, 0};
    ioctl(slave, TIOCSWINSZ, &ws);
  }

  const char *failed = join_sandbox(pid, !file_mode);
  if (failed) die(125, failed);

  signal(SIGTERM, forward);
  signal(SIGINT, forward);
  signal(SIGHUP, forward);
  signal(SIGPIPE, SIG_IGN);

  child = fork();
  if (child < 0) die(125, "fork");
  if (child == 0) {
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    setsid();
    if (tty) {
      ioctl(slave, TIOCSCTTY, 0);
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      if (slave > 2) close(slave);
    }
    close_fds_except(NULL, 0);
    drop_privileges();
    if (read_path) _exit(read_file(read_path, max_bytes));
    if (write_path) _exit(write_file(write_path));
    run_command(cwd, command, env);
  }
  if (tty) {
    close(slave);
    relay_tty(master, resize_fd);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die(125, "waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 125;
}
