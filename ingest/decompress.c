/*
 * ingest/decompress.c — gzip (zlib) and zstd request bodies, inflated under a bound.
 *
 * Place: see ingest/decompress.h.
 * Threads: pure.
 * Ownership: zlib and zstd state is made and freed within one call; both allocate
 *            through core/alloc.h, so the allocation-failure sweep reaches them.
 * Traps: the output is grown in slices of at most max_out - produced + 1 bytes, so
 *        crossing the bound is seen after at most one slice, whatever the ratio.
 *        A zstd frame's window is bounded too (ZSTD_d_windowLogMax): at least 8 MiB
 *        (what zstd levels 1-19 use) and no more than max_out needs, capped at
 *        zstd's default 128 MiB; a frame asking for more is AGG_EFULL, like one
 *        declaring a content size above max_out.
 *        gzip members may be concatenated (RFC 1952 2.2); anything else after the
 *        last member, zero padding included, is refused.
 */
#include "ingest/decompress.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createDCtx_advanced: allocate via agg_malloc */
#include <zstd.h>
#include <zstd_errors.h>

#include "core/alloc.h"

#define SLICE_MAX       ((size_t)1 << 20)
#define ZSTD_WLOG_FLOOR 23
#define ZSTD_WLOG_CEIL  27

bool ing_encoding_parse(const char *header, enum ing_encoding *out)
{
    static const struct {
        const char *name;
        enum ing_encoding enc;
    } names[] = {
        {"identity", ING_ENCODING_IDENTITY},
        {"gzip", ING_ENCODING_GZIP},
        {"x-gzip", ING_ENCODING_GZIP},
        {"zstd", ING_ENCODING_ZSTD},
    };
    size_t len;

    if (header == NULL) {
        *out = ING_ENCODING_IDENTITY;
        return true;
    }
    while (*header == ' ' || *header == '\t')
        header++;
    len = strlen(header);
    while (len > 0 && (header[len - 1] == ' ' || header[len - 1] == '\t'))
        len--;
    if (len == 0) {
        *out = ING_ENCODING_IDENTITY;
        return true;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == len && strncasecmp(header, names[i].name, len) == 0) {
            *out = names[i].enc;
            return true;
        }
    }
    return false;
}

const char *ing_encoding_name(enum ing_encoding enc)
{
    switch (enc) {
    case ING_ENCODING_GZIP:
        return "gzip";
    case ING_ENCODING_ZSTD:
        return "zstd";
    default:
        return "identity";
    }
}

/* Room for the next slice of output: at most one byte past the bound, so that
 * crossing it shows. */
static size_t slice(size_t produced, size_t max_out)
{
    size_t left = max_out - produced;

    return left >= SLICE_MAX ? SLICE_MAX : left + 1;
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (size != 0 && items > SIZE_MAX / size)
        return Z_NULL;
    return agg_malloc((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    free(p);
}

static int gunzip(const char *in, size_t len, size_t max_out, struct agg_buf *out,
                  struct agg_err *err)
{
    z_stream zs = {.zalloc = z_alloc, .zfree = z_free};
    size_t pos = 0, produced = 0;
    int zrc, rc;

    zrc = inflateInit2(&zs, 16 + MAX_WBITS);
    if (zrc != Z_OK)
        return agg_err_set(err, zrc == Z_MEM_ERROR ? AGG_ENOMEM : AGG_ERR,
                           "could not start gzip decoding: %s", zError(zrc));
    for (;;) {
        size_t want = slice(produced, max_out), got, fed;

        if (agg_buf_reserve(out, want) != AGG_OK) {
            rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto out_end;
        }
        if (zs.avail_in == 0 && pos < len) {
            zs.next_in = (Bytef *)(uintptr_t)(in + pos);
            zs.avail_in = len - pos > UINT_MAX ? UINT_MAX : (uInt)(len - pos);
        }
        fed = zs.avail_in;
        zs.next_out = (Bytef *)(out->data + out->len);
        zs.avail_out = (uInt)want;
        zrc = inflate(&zs, Z_NO_FLUSH);
        got = want - zs.avail_out;
        pos += fed - zs.avail_in;
        out->len += got;
        out->data[out->len] = '\0';
        produced += got;
        if (produced > max_out) {
            rc = agg_err_set(err, AGG_EFULL, "gzip body inflates to more than %zu bytes", max_out);
            goto out_end;
        }
        if (zrc == Z_STREAM_END) {
            size_t left = len - pos;

            if (left == 0)
                break;
            if (left >= 2 && (unsigned char)in[pos] == 0x1f && (unsigned char)in[pos + 1] == 0x8b) {
                /* another member */
                zrc = inflateReset(&zs);
                if (zrc != Z_OK) {
                    rc = agg_err_set(err, AGG_ERR, "could not restart gzip decoding: %s",
                                     zError(zrc));
                    goto out_end;
                }
                continue;
            }
            rc =
                agg_err_set(err, AGG_EINVAL, "%zu bytes of trailing garbage after gzip data", left);
            goto out_end;
        }
        if (zrc == Z_OK)
            continue;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0 && pos >= len) {
            rc = agg_err_set(err, AGG_EINVAL, "truncated gzip data");
            goto out_end;
        }
        if (zrc == Z_BUF_ERROR)
            continue;
        if (zrc == Z_MEM_ERROR)
            rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        else
            rc = agg_err_set(err, AGG_EINVAL, "corrupt gzip data: %s",
                             zs.msg != NULL ? zs.msg : zError(zrc));
        goto out_end;
    }
    rc = AGG_OK;

out_end:
    inflateEnd(&zs);
    return rc;
}

static void *zstd_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return agg_malloc(size);
}

static void zstd_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

static int zstd_window_log(size_t max_out)
{
    int wlog = ZSTD_WLOG_FLOOR;

    while (wlog < ZSTD_WLOG_CEIL && ((size_t)1 << wlog) < max_out)
        wlog++;
    return wlog;
}

static int unzstd(const char *in, size_t len, size_t max_out, struct agg_buf *out,
                  struct agg_err *err)
{
    ZSTD_customMem mem = {zstd_alloc, zstd_free, NULL};
    ZSTD_DCtx *d = ZSTD_createDCtx_advanced(mem);
    ZSTD_inBuffer ib = {in, len, 0};
    size_t produced = 0;
    bool frame_start = true;
    int rc;

    if (d == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, zstd_window_log(max_out)))) {
        rc = agg_err_set(err, AGG_ERR, "could not bound the zstd window");
        goto out_free;
    }
    for (;;) {
        size_t want = slice(produced, max_out), ret;
        ZSTD_outBuffer ob;

        if (frame_start) {
            unsigned long long size = ZSTD_getFrameContentSize(in + ib.pos, len - ib.pos);

            if (size == ZSTD_CONTENTSIZE_ERROR) {
                rc = agg_err_set(err, AGG_EINVAL, "not zstd data at byte %zu", ib.pos);
                goto out_free;
            }
            if (size != ZSTD_CONTENTSIZE_UNKNOWN && size > max_out - produced) {
                rc = agg_err_set(err, AGG_EFULL,
                                 "zstd frame declares %llu bytes, more than the %zu allowed", size,
                                 max_out);
                goto out_free;
            }
            frame_start = false;
        }
        if (agg_buf_reserve(out, want) != AGG_OK) {
            rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto out_free;
        }
        ob = (ZSTD_outBuffer){out->data + out->len, want, 0};
        ret = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(ret)) {
            ZSTD_ErrorCode code = ZSTD_getErrorCode(ret);

            if (code == ZSTD_error_memory_allocation)
                rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
            else if (code == ZSTD_error_frameParameter_windowTooLarge)
                rc = agg_err_set(err, AGG_EFULL, "zstd frame needs a window above %zu bytes",
                                 (size_t)1 << zstd_window_log(max_out));
            else
                rc = agg_err_set(err, AGG_EINVAL, "corrupt zstd data: %s", ZSTD_getErrorName(ret));
            goto out_free;
        }
        out->len += ob.pos;
        out->data[out->len] = '\0';
        produced += ob.pos;
        if (produced > max_out) {
            rc = agg_err_set(err, AGG_EFULL, "zstd body inflates to more than %zu bytes", max_out);
            goto out_free;
        }
        if (ret == 0) {
            if (ib.pos == ib.size)
                break;
            frame_start = true;
        } else if (ib.pos == ib.size && ob.pos < ob.size) {
            rc = agg_err_set(err, AGG_EINVAL, "truncated zstd data");
            goto out_free;
        }
    }
    rc = AGG_OK;

out_free:
    ZSTD_freeDCtx(d);
    return rc;
}

int ing_decompress(enum ing_encoding enc, const char *in, size_t len, size_t max_out,
                   struct agg_buf *out, struct agg_err *err)
{
    size_t start = out->len;
    int rc;

    if (len == 0)
        return AGG_OK;
    switch (enc) {
    case ING_ENCODING_IDENTITY:
        if (len > max_out)
            return agg_err_set(err, AGG_EFULL, "body of %zu bytes is over the %zu allowed", len,
                               max_out);
        if (agg_buf_append(out, in, len) != AGG_OK)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        return AGG_OK;
    case ING_ENCODING_GZIP:
        rc = gunzip(in, len, max_out, out, err);
        break;
    case ING_ENCODING_ZSTD:
        rc = unzstd(in, len, max_out, out, err);
        break;
    default:
        return agg_err_set(err, AGG_EINVAL, "unknown content encoding %d", (int)enc);
    }
    if (rc != AGG_OK && out->data != NULL) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
