/*
 * txl_capture.c: what libxl says at error level during one call, kept for
 * the error that call raises (declarations: txl.h).
 *
 * libxl reports why it refused something (a configuration it cannot
 * parse, a domain it cannot make) only through its logger, and returns a
 * bare code.  While a capture is open on a thread, txl.c's logger copies
 * every message of level XTL_ERROR and above logged *on that thread* into
 * it, whatever the logger's minimum level; the binding opens one around a
 * libxl call and puts the text into the error it raises.  Messages logged
 * on other threads (a blocking call in a worker thread) never mix in.
 *
 * A quiet capture (txl_capture_quiet) keeps what it captures from the
 * logger: the binding's checks, whose refusals are expected, put libxl's
 * words in the error they raise and nowhere else.
 *
 * Captures nest (each sees the messages of its inner calls too) and are
 * kept in a thread-local list; the text is collected with open_memstream,
 * opened on the first message only: the binding opens a capture around
 * every call that delivers libxl's reports, and most say nothing.
 */
#define _GNU_SOURCE                 /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txl.h"

struct txl_capture {
    FILE *stream;
    char *text;
    size_t size;
    int quiet;                      /* what it keeps does not reach the logger */
    struct txl_capture *outer;
};

/* The innermost open capture of this thread. */
static __thread struct txl_capture *txl_capture_current = NULL;

struct txl_capture *txl_capture_begin(void)
{
    struct txl_capture *capture = calloc(1, sizeof(*capture));
    if (!capture)
        return NULL;
    capture->outer = txl_capture_current;
    txl_capture_current = capture;
    return capture;
}

char *txl_capture_end(struct txl_capture *capture)
{
    struct txl_capture **link = &txl_capture_current;
    char *text = NULL;              /* nothing was said */

    if (!capture)
        return NULL;
    /* Unlink it wherever it is (the binding ends captures in order). */
    while (*link && *link != capture)
        link = &(*link)->outer;
    if (*link)
        *link = capture->outer;
    if (capture->stream) {
        fclose(capture->stream);    /* text is complete and NUL-terminated now */
        text = capture->text;
    }
    free(capture);
    return text;
}

char *txl_capture_peek(struct txl_capture *capture)
{
    if (!capture || !capture->stream || fflush(capture->stream) || !capture->text)
        return NULL;
    return strdup(capture->text);   /* NUL-terminated after fflush */
}

void txl_capture_quiet(struct txl_capture *capture)
{
    if (capture)
        capture->quiet = 1;
}

int txl_capture_silenced(void)
{
    for (struct txl_capture *capture = txl_capture_current; capture; capture = capture->outer)
        if (capture->quiet)
            return 1;
    return 0;
}

int txl_capture_wants(int level)
{
    return level >= XTL_ERROR && txl_capture_current != NULL;
}

void txl_capture_message(int level, const char *text)
{
    struct txl_capture *capture;

    if (level < XTL_ERROR)
        return;
    for (capture = txl_capture_current; capture; capture = capture->outer) {
        if (!capture->stream)
            capture->stream = open_memstream(&capture->text, &capture->size);
        if (capture->stream)        /* else: no memory, the message is lost here only */
            fprintf(capture->stream, "%s\n", text);
    }
}
