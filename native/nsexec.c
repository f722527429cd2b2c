/*
 * paddock-nsexec: run one command inside a running local sandbox.
 *
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... [-w DIR] [-e KEY=VALUE]... [-t [-r FD]] -- ARGV...
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -R PATH [-m MAX_BYTES]   (file to stdout)
 *   paddock-nsexec -p PID [-c CGROUP_PROCS]... -W PATH                  (stdin to file)
 *   paddock-nsexec -u UID [-c CGROUP_PROCS]... [-n NETNS_PATH] -- ARGV...  (start: cgroups, netns, uid, exec)
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

int main(int argc, char **argv) {
  int pid = 0, tty = 0, ncgroups = 0, nenv = 0, resize_fd = -1, uid = -1;
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
  if ((pid <= 0 && uid < 0) || (!file_mode && i >= argc)) {
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
    if (setgroups(0, NULL) < 0) die(125, "setgroups");
    if (setresgid(uid, uid, uid) < 0) die(125, "setresgid");
    if (setresuid(uid, uid, uid) < 0) die(125, "setresuid");
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
  join(pid_ns, CLONE_NEWPID, "pid namespace");
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
