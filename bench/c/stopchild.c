/* stopchild FIFO: the app for the shutdown-timer test. Writes 0 to FIFO when
 * ready; on SIGTERM writes the CLOCK_MONOTONIC time and carries on (so the
 * grace period has to SIGKILL it). */
#define STAMPED SIGTERM
#define NAME "stopchild"
#include "sigchild.c"
