/* Variadic hooks, the only C in the shim: Rust stable cannot define a
 * variadic function. Each reads its one optional argument as a pointer-sized
 * value (what glibc itself does) and hands it to the Rust implementation,
 * which calls the original. `which` tells Rust which symbol was hooked. */
#include <stdarg.h>

extern int agentfs_fcntl(int fd, int cmd, void *arg, int which);

#define AGENTFS_VARIADIC_HOOK(name, which)              \
    int name(int fd, int cmd, ...) {                    \
        va_list ap;                                     \
        va_start(ap, cmd);                              \
        void *arg = va_arg(ap, void *);                 \
        va_end(ap);                                     \
        return agentfs_fcntl(fd, cmd, arg, which);      \
    }

#if defined(__APPLE__)
/* Reached through __DATA,__interpose entries emitted by the Rust side. */
AGENTFS_VARIADIC_HOOK(agentfs_fcntl_hook, 0)
#else
AGENTFS_VARIADIC_HOOK(fcntl, 0)
AGENTFS_VARIADIC_HOOK(fcntl64, 1)
#endif
