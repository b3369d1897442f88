/*
 * txl_config.c: the C side of building and changing domains
 * (declarations: txl.h).
 *
 * Configurations cross into libxl as its own JSON (libxl_*_from_json,
 * libxl_*_to_json, called from Python); what needs C besides is here:
 *
 * - xl's disk spec strings ("phy:/dev/vg/x,xvda,w"), parsed by
 *   libxlutil's xlu_disk_parse into a libxl_device_disk, with the report
 *   libxlutil writes about a bad spec captured (open_memstream) for the
 *   error instead of going to stderr.
 * - The progress "how" of a create: no callback, so that libxl reports
 *   DOMAIN_CREATE_CONSOLE_AVAILABLE as an event with the given user value,
 *   through event_occurs and in libxl's order.
 * - The bitmap of a domain's vCPUs to have online: 0 .. count-1.
 */
#define _GNU_SOURCE                 /* open_memstream */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txl.h"                  /* first: it pins LIBXL_API_VERSION (and includes libxlutil.h) */

int txl_disk_parse(const char *spec, libxl_device_disk *disk, char **report)
{
    char *text = NULL;
    size_t size = 0;
    FILE *stream;
    XLU_Config *cfg;
    int rc;

    *report = NULL;
    stream = open_memstream(&text, &size);
    if (!stream)
        return ENOMEM;
    cfg = xlu_cfg_init(stream, "disk spec");
    if (!cfg) {
        fclose(stream);
        free(text);
        return ENOMEM;
    }
    rc = xlu_disk_parse(cfg, 1, &spec, disk);
    xlu_cfg_destroy(cfg);           /* does not close the report stream */
    fclose(stream);
    *report = text;                 /* the caller frees it */
    return rc;
}

void txl_progress_how_init(libxl_asyncprogress_how *how, uint64_t for_event)
{
    memset(how, 0, sizeof(*how));
    how->callback = NULL;           /* report as an event */
    how->for_event = for_event;
}

int txl_vcpu_bitmap(libxl_ctx *ctx, libxl_bitmap *map, int count)
{
    int rc, i;

    rc = libxl_bitmap_alloc(ctx, map, count);
    if (rc)
        return rc;
    libxl_bitmap_set_none(map);
    for (i = 0; i < count; i++)
        libxl_bitmap_set(map, i);
    return 0;
}
