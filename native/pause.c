/*
 * paddock-pause: the main process of a sandbox started without a command.
 * Waits for a signal; SIGTERM or SIGINT ends it with status 0. Static, so
 * that it runs in any image.
 */
#include <signal.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  for (;;) pause();
}
