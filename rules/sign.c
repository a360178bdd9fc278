/*
 * rules/sign.c — Standard Webhooks signatures (HMAC-SHA256) and endpoint secrets.
 *
 * Place: called by the notification dispatcher and the endpoint API.
 * Threads: pure; sodium_init() is thread-safe and idempotent.
 * Ownership: keeps nothing; the decoded key is wiped before returning.
 * Traps: the spec's secrets are base64 with the ORIGINAL alphabet and padding; the
 *        signed content is "<id>.<timestamp>.<body>" with the timestamp in decimal
 *        seconds, exactly as sent in the webhook-timestamp header.
 */
#include "rules/sign.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define SECRET_PREFIX "whsec_"
#define KEY_MAX 256
#define SECRET_RANDOM_BYTES 24

/* Decodes the key of <secret> into <key>; its length in *<klen>. */
static int decode_key(const char *secret, unsigned char key[KEY_MAX], size_t *klen,
                      struct agg_err *err)
{
    const char *b64 = secret;
    const char *end = NULL;
    size_t n = strlen(secret);

    if (strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0) {
        b64 += strlen(SECRET_PREFIX);
        n -= strlen(SECRET_PREFIX);
    }
    if (n == 0 || sodium_base642bin(key, KEY_MAX, b64, n, NULL, klen, &end,
                                    sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + n || *klen == 0)
        return agg_err_set(err, AGG_EINVAL,
                           "webhook secret is not \"whsec_\" followed by base64 (at most %d "
                           "bytes of key)",
                           KEY_MAX);
    return AGG_OK;
}

int rl_sign_webhook(const char *secret, const char *msg_id, int64_t timestamp_s,
                    const char *body, size_t len, char *out, size_t size, struct agg_err *err)
{
    unsigned char key[KEY_MAX];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    char ts[24];
    size_t klen = 0;
    int rc;

    if (sodium_init() < 0)
        return agg_err_set(err, AGG_ERR, "cannot initialise libsodium");
    if (secret == NULL || msg_id == NULL || msg_id[0] == '\0' || (body == NULL && len > 0))
        return agg_err_set(err, AGG_EINVAL, "webhook signature needs a secret and a message id");
    if (size < sizeof("v1,") - 1 + sodium_base64_ENCODED_LEN(sizeof(mac),
                                                             sodium_base64_VARIANT_ORIGINAL))
        return agg_err_set(err, AGG_EFULL, "signature buffer of %zu bytes is too small", size);
    rc = decode_key(secret, key, &klen, err);
    if (rc != AGG_OK)
        goto out_wipe;
    snprintf(ts, sizeof(ts), "%" PRId64, timestamp_s);
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg_id, strlen(msg_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    if (len > 0)
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, "v1,", 3);
    sodium_bin2base64(out + 3, size - 3, mac, sizeof(mac), sodium_base64_VARIANT_ORIGINAL);

out_wipe:
    sodium_memzero(key, sizeof(key));
    sodium_memzero(&st, sizeof(st));
    return rc;
}

int rl_sign_secret_new(char *out, size_t size)
{
    unsigned char raw[SECRET_RANDOM_BYTES];
    size_t plen = strlen(SECRET_PREFIX);

    if (size < plen + sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_ORIGINAL))
        return AGG_EFULL;
    if (sodium_init() < 0)
        return AGG_ERR;
    randombytes_buf(raw, sizeof(raw));
    memcpy(out, SECRET_PREFIX, plen);
    sodium_bin2base64(out + plen, size - plen, raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(raw, sizeof(raw));
    return AGG_OK;
}
