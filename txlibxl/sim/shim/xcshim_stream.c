/*
 * txlibxl's libxenctrl shim: the save stream's plumbing (whole reads and
 * writes on libxl's fd, records, PAGE_DATA batches, the image's pattern).
 * See xcshim_stream.h and txlibxl/sim/savestream.
 */
#include "xcshim_stream.h"

uint64_t txsim_pattern_word(uint64_t seed, uint64_t pfn)
{
    uint64_t z = seed + (pfn + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Wait until fd is ready for `events` (a non-blocking fd said EAGAIN). */
static int wait_fd(int fd, short events)
{
    struct pollfd p = { fd, events, 0 };
    int n;
    do {
        n = poll(&p, 1, -1);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

int txsim_write_all(int fd, const struct iovec *iov_in, int iovcnt)
{
    struct iovec iov[8];
    if (iovcnt > 8) {
        errno = EINVAL;
        return -1;
    }
    memcpy(iov, iov_in, (size_t)iovcnt * sizeof *iov);
    struct iovec *v = iov;
    while (iovcnt > 0) {
        ssize_t n = writev(fd, v, iovcnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd, POLLOUT) == 0)
                continue;
            return -1;
        }
        while (iovcnt > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int txsim_read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd, POLLIN) == 0)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = ENODATA;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int txsim_write_record(int fd, uint32_t type, const void *body, uint32_t len)
{
    static const uint8_t zeros[8];
    struct sr_rhdr h = { type, len };
    struct iovec iov[3] = {
        { &h, sizeof h },
        { (void *)body, len },
        { (void *)zeros, (8 - (len & 7)) & 7 },
    };
    return txsim_write_all(fd, iov, 3);
}

int txsim_batch_init(struct page_batch *b, int fd, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    b->fd = fd;
    b->seed = seed;
    b->pfns = malloc(SR_MAX_BATCH * sizeof *b->pfns);
    b->pages = malloc((size_t)SR_MAX_BATCH * SR_PAGE_SIZE);
    if (!b->pfns || !b->pages) {
        txsim_batch_free(b);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void txsim_batch_free(struct page_batch *b)
{
    free(b->pfns);
    free(b->pages);
    b->pfns = NULL;
    b->pages = NULL;
}

int txsim_batch_flush(struct page_batch *b)
{
    if (!b->count)
        return 0;
    uint32_t head[2] = { b->count, 0 };
    size_t pfn_bytes = b->count * sizeof *b->pfns, page_bytes = (size_t)b->count * SR_PAGE_SIZE;
    struct sr_rhdr h = { REC_PAGE_DATA, (uint32_t)(sizeof head + pfn_bytes + page_bytes) };
    struct iovec iov[4] = {
        { &h, sizeof h }, { head, sizeof head }, { b->pfns, pfn_bytes }, { b->pages, page_bytes },
    };
    /* Every part is a multiple of 8 octets: no padding. */
    if (txsim_write_all(b->fd, iov, 4) < 0)
        return -1;
    b->pages_sent += b->count;
    b->count = 0;
    return 0;
}

int txsim_batch_add(struct page_batch *b, uint64_t pfn)
{
    uint8_t *page = b->pages + (size_t)b->count * SR_PAGE_SIZE;
    if (pfn == 0) {
        memcpy(page, b->page0, SR_PAGE_SIZE);
    } else {
        uint64_t w = txsim_pattern_word(b->seed, pfn), *words = (uint64_t *)page;
        for (unsigned int i = 0; i < SR_PAGE_SIZE / 8; i++)
            words[i] = w;
    }
    b->pfns[b->count++] = pfn;
    return b->count == SR_MAX_BATCH ? txsim_batch_flush(b) : 0;
}
