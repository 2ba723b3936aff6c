/* A preload for scripts/peer-suites.sh: makes other projects' test suites
 * exercise conversion. Test suites bind port 0 (which the shim leaves to the
 * kernel); this turns a port-0 TCP bind on a loopback or wildcard address
 * into a bind of a port that was free a moment ago, made through the first
 * `bind` in the process (the agentfs shim, which then converts it). Loaded
 * after the shim (agentfs wrap puts the shim first), so the shim's bind
 * passes port 0 on to this one. A converted port holds no kernel port, so
 * the kernel may offer it again: a bind the shim refuses with EADDRINUSE
 * (which a port-0 bind never gets) is tried again with another port. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static __thread int inside;

static int is_local_port0(const struct sockaddr *a, socklen_t len) {
    if (a->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)a;
        uint32_t ip = ntohl(in->sin_addr.s_addr);
        return in->sin_port == 0 && (ip == INADDR_ANY || (ip >> 24) == 127);
    }
    if (a->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)a;
        return in6->sin6_port == 0 &&
               (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) || IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
    }
    return 0;
}

/* A port the kernel would give a socket of this family bound to `a`. */
static int free_port(const struct sockaddr *a, socklen_t len, bind_fn real) {
    int probe = socket(a->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return 0;
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    int port = 0;
    if (real(probe, a, len) == 0 && getsockname(probe, (struct sockaddr *)&got, &glen) == 0) {
        port = ntohs(((struct sockaddr_in *)&got)->sin_port); /* same offset in sockaddr_in6 */
    }
    close(probe);
    return port;
}

int bind(int fd, const struct sockaddr *a, socklen_t len) {
    bind_fn real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    int type = 0;
    socklen_t tlen = sizeof type;
    if (inside || a == NULL || !is_local_port0(a, len) ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM) {
        return real(fd, a, len);
    }
    int saved = errno;
    bind_fn first = (bind_fn)dlsym(RTLD_DEFAULT, "bind");
    for (int attempt = 0; attempt < 8; attempt++) {
        inside = 1;
        int port = free_port(a, len, real);
        inside = 0;
        errno = saved;
        if (port == 0) break;
        struct sockaddr_storage fixed;
        memcpy(&fixed, a, len < sizeof fixed ? len : sizeof fixed);
        ((struct sockaddr_in *)&fixed)->sin_port = htons(port);
        int r = first(fd, (struct sockaddr *)&fixed, len);
        if (r == 0 || errno != EADDRINUSE) return r;
    }
    errno = saved;
    return real(fd, a, len);
}
