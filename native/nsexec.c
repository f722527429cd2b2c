/*
 * paddock-nsexec: run one command inside a running local sandbox.
 *
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... [-w DIR] [-e KEY=VALUE]... [-t [-r FD]] -- ARGV...
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -R PATH [-m MAX_BYTES]   (file to stdout)
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -W PATH                  (stdin to file)
 *   paddock-nsexec -u UID [-c CGROUP_PROCS]... [-n NETNS_PATH] -- ARGV...  (start: cgroups, netns, uid, exec)
 *   paddock-nsexec -u UID [-c CGROUP_PROCS]... [-n NETNS_PATH] -S          (staged start, for warm shells)
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
 * ARGV. Stdin then becomes /dev/null and it goes on as -u does.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

static int open_ns(int pid, const char *ns, int optional) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, ns);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && !(optional && errno == ENOENT)) die(125, path);
  return fd;
}

static void join(int fd, int type, const char *ns) {
  if (fd < 0) return;
  if (setns(fd, type) < 0) die(125, ns);
  close(fd);
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

int main(int argc, char **argv) {
  int pid = 0, tty = 0, ncgroups = 0, nenv = 0, resize_fd = -1, uid = -1, staged = 0;
  long long max_bytes = -1;
  const char *cwd = NULL;
  char *read_path = NULL, *write_path = NULL, *netns_path = NULL;
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
    if (staged) command = read_staged_command();
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

  /* Every namespace is opened before any is joined: once in the sandbox's
     mount namespace, /proc is the sandbox's own and PID means nothing. */
  int cgroup_ns = open_ns(pid, "cgroup", 1), ipc_ns = open_ns(pid, "ipc", 0),
      uts_ns = open_ns(pid, "uts", 0), net_ns = open_ns(pid, "net", 0), pid_ns = open_ns(pid, "pid", 0),
      mnt_ns = open_ns(pid, "mnt", 0), user_ns = open_ns(pid, "user", 0);
  join(cgroup_ns, CLONE_NEWCGROUP, "cgroup namespace");
  join(ipc_ns, CLONE_NEWIPC, "ipc namespace");
  join(uts_ns, CLONE_NEWUTS, "uts namespace");
  join(net_ns, CLONE_NEWNET, "network namespace");
  /* A file helper stays outside the sandbox's pid namespace: when the write
     itself makes the sandbox's main process exit, the kernel kills every
     process in that namespace, and the helper would die before reporting a
     write that did complete. */
  if (!read_path && !write_path) join(pid_ns, CLONE_NEWPID, "pid namespace");
  else close(pid_ns);
  join(mnt_ns, CLONE_NEWNS, "mount namespace");
  join(user_ns, CLONE_NEWUSER, "user namespace");

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
    if (cwd && chdir(cwd) < 0) die(126, cwd);
    execvpe(command[0], command, env);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "paddock-nsexec: %s: %s\n", command[0], strerror(errno));
    _exit(code);
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
