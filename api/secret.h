/*
 * api/secret.h — secrets at rest: the key of secrets.key_file and libsodium secretbox
 *                sealing of one secret value into the text stored in its place.
 *
 * Place: api/api.c opens the key at start; api/connectors.c seals the secret leaves of
 *        a connector's config; connector runtimes open them (api_secret_open).
 * Threads: a key is read-only once made: any thread.
 * Ownership: the key lives in memory locked away from swap (sodium_malloc) until
 *            api_secrets_free(), which wipes it.
 * Traps: the stored form is "v1:" + base64(nonce | box), a fresh random nonce per
 *        value; a key file that changes makes every stored secret unreadable.
 * Not here: which JSON values are secrets (api/connectors.c).
 */
#ifndef AGGD_API_SECRET_H
#define AGGD_API_SECRET_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

#define API_SECRET_KEY_BYTES 32
#define API_SECRET_PREFIX    "v1:"

struct api_secrets; /* opaque: the key */

/* The key in <path>: 32 bytes, in a regular file nobody but its owner may access. A
 * missing file is made (random bytes, mode 0600, written whole through core/file.h) and
 * then read back, so concurrent starts agree on one key. Refuses a file of another size
 * or with group/other permissions. Caller owns the result: api_secrets_free().
 * NULL + <err> naming the path on failure. Blocking: call at start only. */
struct api_secrets *api_secrets_load(const char *path, struct agg_err *err);

/* A key of the <len> bytes at <key> (must be API_SECRET_KEY_BYTES), copied.
 * Caller owns the result: api_secrets_free(). NULL + <err> on failure. */
struct api_secrets *api_secrets_new(const unsigned char *key, size_t len, struct agg_err *err);

/* Wipes and frees. Accepts NULL. */
void api_secrets_free(struct api_secrets *s);

/* Appends the stored form of <plain>[<len>] (API_SECRET_PREFIX + base64) to <out>.
 * AGG_OK, or AGG_ENOMEM. Copies of <plain> it makes are wiped. */
int api_secret_seal(const struct api_secrets *s, const char *plain, size_t len,
                    struct agg_buf *out);

/* The plaintext of the stored form <stored> into *<plain> (NUL-terminated, *<len>
 * bytes). Caller owns *<plain>: api_secret_plain_free(). AGG_EINVAL (with <err>) when
 * <stored> is not a value this key sealed (other key, altered, truncated), AGG_ENOMEM. */
int api_secret_open(const struct api_secrets *s, const char *stored, char **plain, size_t *len,
                    struct agg_err *err);

/* Wipes and frees a plaintext from api_secret_open(). Accepts NULL. */
void api_secret_plain_free(char *plain, size_t len);

#endif
