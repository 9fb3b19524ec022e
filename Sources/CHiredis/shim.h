#ifndef SLUICE_CHIREDIS_SHIM_H
#define SLUICE_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <sys/time.h>

/// hiredis exposes the reply type codes as macros; Swift imports them as Int32 constants.
static inline int sluice_redis_ok(const redisContext *c) { return c != NULL && c->err == 0; }
#endif
