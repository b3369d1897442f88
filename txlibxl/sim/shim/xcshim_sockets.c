/*
 * txlibxl's libxenctrl shim: Unix socket addresses under the redirected
 * prefixes (xcshim_redirect.c).
 *
 * libxl talks to an HVM guest's device model over QMP on a Unix socket at
 * a compiled-in place, <run dir>/qmp-libxl-<domid> (/var/run/xen): it
 * connect()s to it, and with dm_restrict bind()s it itself and hands QEMU
 * the socket.  These wrappers (patched into libxenlight's GOT with the
 * file calls) send such an address to the same path under the host's
 * root, where the host's device model stand-in listens.
 */
#include "xcshim.h"

/*
 * A Unix socket address under a redirected prefix (libxl's QMP socket,
 * <run dir>/qmp-libxl-<domid>), rewritten into `out`; NULL if `addr` is
 * not one, or if the rewritten path does not fit in sun_path (then the
 * call goes ahead with the address it was given).
 */
static const struct sockaddr *redirect_un(const struct sockaddr *addr, socklen_t len,
                                          struct sockaddr_un *out, socklen_t *out_len)
{
    char buf[PATH_MAX], path[sizeof out->sun_path + 1];
    size_t offset = offsetof(struct sockaddr_un, sun_path);
    if (!addr || addr->sa_family != AF_UNIX || len <= offset || len > sizeof *out)
        return NULL;
    size_t n = len - offset;
    memcpy(path, ((const struct sockaddr_un *)addr)->sun_path, n);
    path[n] = 0;
    if (path[0] != '/')
        return NULL; /* abstract or relative: not a compiled-in path */
    const char *to = txsim_redirect(path, buf);
    size_t to_len = strlen(to);
    if (to == path || to_len >= sizeof out->sun_path)
        return NULL;
    memset(out, 0, sizeof *out);
    out->sun_family = AF_UNIX;
    memcpy(out->sun_path, to, to_len + 1);
    *out_len = (socklen_t)(offset + to_len + 1);
    return (const struct sockaddr *)out;
}

int txsim_w_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct sockaddr_un un;
    socklen_t un_len;
    const struct sockaddr *to = redirect_un(addr, len, &un, &un_len);
    return to ? connect(fd, to, un_len) : connect(fd, addr, len);
}

int txsim_w_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct sockaddr_un un;
    socklen_t un_len;
    const struct sockaddr *to = redirect_un(addr, len, &un, &un_len);
    return to ? bind(fd, to, un_len) : bind(fd, addr, len);
}
