#ifndef SLUICE_CJWT_SHIM_H
#define SLUICE_CJWT_SHIM_H
#include <jwt.h>
#include <errno.h>
#include <stdlib.h>

/// errno after a libjwt call (it reports a missing grant as ENOENT).
static inline int sluice_jwt_errno(void) { return errno; }
static inline void sluice_jwt_free_string(char *s) { free(s); }
#endif
