// Typed wrappers for variadic Linux calls, which do not import into Swift.
#include <sys/prctl.h>

/// prctl(PR_SET_DUMPABLE, value): 0 makes the process's /proc files (environ, mem, fd) readable by
/// no other process of the same user, and forbids ptrace attaches by them.
static inline int sluice_set_dumpable(int value) { return prctl(PR_SET_DUMPABLE, (unsigned long)value, 0UL, 0UL, 0UL); }

/// prctl(PR_GET_DUMPABLE).
static inline int sluice_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0UL, 0UL, 0UL, 0UL); }
