#include "authcrypto.h"
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Algorithms are fetched once per process: a fetch per call costs more than the AES work itself. */
static EVP_CIPHER *cbc[3], *gcm[3];
static EVP_MD *md256, *md384, *md512;
static EVP_MAC *hmac_alg;
static EVP_KDF *hkdf_alg;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_all(void) {
    /* Before any other OpenSSL call: error strings are never shown (failures are reported by this library's own
       codes), and loading them costs ~0.6 MB of resident memory per process. The config file is still read. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, NULL);
    cbc[0] = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    cbc[1] = EVP_CIPHER_fetch(NULL, "AES-192-CBC", NULL);
    cbc[2] = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    gcm[0] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    gcm[1] = EVP_CIPHER_fetch(NULL, "AES-192-GCM", NULL);
    gcm[2] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    md256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    md384 = EVP_MD_fetch(NULL, "SHA384", NULL);
    md512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    hkdf_alg = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

static int key_index(size_t key_len) {
    switch (key_len) { case 16: return 0; case 24: return 1; case 32: return 2; default: return -1; }
}

static const EVP_MD *md_for(int hash) {
    switch (hash) { case AC_SHA256: return md256; case AC_SHA384: return md384; case AC_SHA512: return md512; default: return NULL; }
}

static const char *md_name(int hash) {
    switch (hash) { case AC_SHA256: return "SHA256"; case AC_SHA384: return "SHA384"; case AC_SHA512: return "SHA512"; default: return NULL; }
}

/* One cipher context per thread, reset per call: avoids an allocation per token on the event loop. */
static __thread EVP_CIPHER_CTX *tls_cipher_ctx;
static EVP_CIPHER_CTX *cipher_ctx(void) {
    if (tls_cipher_ctx == NULL) tls_cipher_ctx = EVP_CIPHER_CTX_new();
    else EVP_CIPHER_CTX_reset(tls_cipher_ctx);
    return tls_cipher_ctx;
}

int ac_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len) {
    pthread_once(&fetch_once, fetch_all);
    if (hkdf_alg == NULL || out_len == 0 || out_len > 255 * 32) return 0;
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(hkdf_alg);
    if (kctx == NULL) return 0;
    static const uint8_t empty[1] = {0};
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(ikm_len ? ikm : empty), ikm_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(salt_len ? salt : empty), salt_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(info_len ? info : empty), info_len);
    *p = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(kctx);
    return ok;
}

/* Keyed HMAC contexts, a few per thread, re-initialised per call: `EVP_MAC_init(ctx, NULL, 0, NULL)` restarts from
   the stored key schedule. A fresh context per call costs a digest fetch by name plus the key schedule (~1.5 µs,
   more than hashing a whole token). Slots are matched on hash and the full key bytes, so a reused context can only
   ever carry the same key; keys longer than HMAC_CACHED_KEY_MAX take the uncached path. */
#define HMAC_SLOTS 8
#define HMAC_CACHED_KEY_MAX 128
typedef struct { EVP_MAC_CTX *ctx; int hash; size_t key_len; uint8_t key[HMAC_CACHED_KEY_MAX]; } hmac_slot;
typedef struct { hmac_slot slot[HMAC_SLOTS]; unsigned next; } hmac_cache;
static __thread hmac_cache *tls_hmac;
static pthread_key_t hmac_key;
static pthread_once_t hmac_key_once = PTHREAD_ONCE_INIT;

static void hmac_cache_free(void *p) {
    hmac_cache *c = p;
    for (int i = 0; i < HMAC_SLOTS; i++) EVP_MAC_CTX_free(c->slot[i].ctx);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}
static void hmac_key_make(void) { pthread_key_create(&hmac_key, hmac_cache_free); }

static EVP_MAC_CTX *hmac_new(int hash, const uint8_t *key, size_t key_len) {
    static const uint8_t empty[1] = {0};
    const char *name = md_name(hash);
    if (name == NULL || hmac_alg == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_alg);
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)name, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key_len ? key : empty, key_len, params) != 1) { EVP_MAC_CTX_free(ctx); return NULL; }
    return ctx;
}

/* A context keyed with `key`, ready for updates; *owned = 1 when the caller must free it. */
static EVP_MAC_CTX *hmac_ctx(int hash, const uint8_t *key, size_t key_len, int *owned) {
    *owned = 0;
    if (key_len > HMAC_CACHED_KEY_MAX) { *owned = 1; return hmac_new(hash, key, key_len); }
    hmac_cache *c = tls_hmac;
    if (c == NULL) {
        pthread_once(&hmac_key_once, hmac_key_make);
        c = calloc(1, sizeof *c);
        if (c == NULL) { *owned = 1; return hmac_new(hash, key, key_len); }
        tls_hmac = c;
        pthread_setspecific(hmac_key, c);
    }
    for (int i = 0; i < HMAC_SLOTS; i++) {
        hmac_slot *s = &c->slot[i];
        if (s->ctx != NULL && s->hash == hash && s->key_len == key_len && memcmp(s->key, key, key_len) == 0) {
            if (EVP_MAC_init(s->ctx, NULL, 0, NULL) == 1) return s->ctx;
            EVP_MAC_CTX_free(s->ctx);
            s->ctx = NULL;
        }
    }
    EVP_MAC_CTX *ctx = hmac_new(hash, key, key_len);
    if (ctx == NULL) return NULL;
    hmac_slot *s = &c->slot[c->next++ % HMAC_SLOTS];
    EVP_MAC_CTX_free(s->ctx);
    s->ctx = ctx;
    s->hash = hash;
    s->key_len = key_len;
    if (key_len) memcpy(s->key, key, key_len);
    return ctx;
}

int ac_hmac(int hash, const uint8_t *key, size_t key_len,
            const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2,
            const uint8_t *p3, size_t l3, const uint8_t *p4, size_t l4,
            uint8_t *out, size_t *out_len) {
    pthread_once(&fetch_once, fetch_all);
    int owned = 0;
    EVP_MAC_CTX *ctx = hmac_ctx(hash, key, key_len, &owned);
    if (ctx == NULL) return 0;
    int ok = 1;
    if (ok && l1) ok = EVP_MAC_update(ctx, p1, l1) == 1;
    if (ok && l2) ok = EVP_MAC_update(ctx, p2, l2) == 1;
    if (ok && l3) ok = EVP_MAC_update(ctx, p3, l3) == 1;
    if (ok && l4) ok = EVP_MAC_update(ctx, p4, l4) == 1;
    if (ok) ok = EVP_MAC_final(ctx, out, out_len, 64) == 1;
    if (owned) EVP_MAC_CTX_free(ctx);
    return ok;
}

int ac_digest(int hash, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len) {
    pthread_once(&fetch_once, fetch_all);
    const EVP_MD *md = md_for(hash);
    unsigned int n = 0;
    if (md == NULL || EVP_Digest(data, len, out, &n, md, NULL) != 1) return 0;
    *out_len = n;
    return 1;
}

static int cbc_run(int enc, const uint8_t *key, size_t key_len, const uint8_t *iv,
                   const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len) {
    pthread_once(&fetch_once, fetch_all);
    int ki = key_index(key_len);
    if (ki < 0 || cbc[ki] == NULL || in_len > (size_t)0x7fffffff - 32) return 0;
    if (!enc && (in_len == 0 || in_len % 16 != 0)) return 0;
    EVP_CIPHER_CTX *ctx = cipher_ctx();
    int n1 = 0, n2 = 0;
    if (ctx == NULL || EVP_CipherInit_ex2(ctx, cbc[ki], key, iv, enc, NULL) != 1) return 0;
    if (EVP_CipherUpdate(ctx, out, &n1, in, (int)in_len) != 1) return 0;
    if (EVP_CipherFinal_ex(ctx, out + n1, &n2) != 1) { OPENSSL_cleanse(out, in_len); return 0; }
    *out_len = (size_t)n1 + (size_t)n2;
    return 1;
}

int ac_aes_cbc_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len) {
    return cbc_run(0, key, key_len, iv, in, in_len, out, out_len);
}

int ac_aes_cbc_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len) {
    return cbc_run(1, key, key_len, iv, in, in_len, out, out_len);
}

static int gcm_init(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len) {
    int ki = key_index(key_len);
    if (ki < 0 || gcm[ki] == NULL || iv_len == 0 || iv_len > 1024) return 0;
    if (EVP_CipherInit_ex2(ctx, gcm[ki], NULL, NULL, enc, NULL) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)iv_len, NULL) != 1) return 0;
    return EVP_CipherInit_ex2(ctx, NULL, key, iv, enc, NULL) == 1;
}

int ac_aes_gcm_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       const uint8_t *tag, size_t tag_len, uint8_t *out) {
    pthread_once(&fetch_once, fetch_all);
    if (tag_len == 0 || tag_len > 16 || in_len > (size_t)0x7fffffff || aad_len > (size_t)0x7fffffff) return 0;
    EVP_CIPHER_CTX *ctx = cipher_ctx();
    int n = 0;
    if (ctx == NULL || !gcm_init(ctx, 0, key, key_len, iv, iv_len)) return 0;
    if (aad_len && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) return 0;
    if (in_len && EVP_CipherUpdate(ctx, out, &n, in, (int)in_len) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, (int)tag_len, (void *)tag) != 1) return 0;
    if (EVP_CipherFinal_ex(ctx, out + (in_len ? n : 0), &n) != 1) { if (in_len) OPENSSL_cleanse(out, in_len); return 0; }
    return 1;
}

int ac_aes_gcm_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out, uint8_t *tag, size_t tag_len) {
    pthread_once(&fetch_once, fetch_all);
    if (tag_len == 0 || tag_len > 16 || in_len > (size_t)0x7fffffff || aad_len > (size_t)0x7fffffff) return 0;
    EVP_CIPHER_CTX *ctx = cipher_ctx();
    int n = 0;
    if (ctx == NULL || !gcm_init(ctx, 1, key, key_len, iv, iv_len)) return 0;
    if (aad_len && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) return 0;
    if (in_len && EVP_CipherUpdate(ctx, out, &n, in, (int)in_len) != 1) return 0;
    if (EVP_CipherFinal_ex(ctx, out + (in_len ? n : 0), &n) != 1) return 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, (int)tag_len, tag) == 1;
}

int ac_equal(const uint8_t *a, const uint8_t *b, size_t len) {
    return CRYPTO_memcmp(a, b, len) == 0;
}

int ac_random(uint8_t *out, size_t len) {
    pthread_once(&fetch_once, fetch_all);
    return RAND_bytes(out, (int)len) == 1;
}
