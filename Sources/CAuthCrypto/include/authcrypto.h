/*
 * CAuthCrypto: the only code that calls OpenSSL's EVP API.
 *
 * A plain C surface over byte buffers, so Swift never builds OSSL_PARAM arrays (whose pointers must outlive the
 * call) and never touches EVP objects. Every function returns 1 on success and 0 on any failure.
 */
#ifndef AUTHCRYPTO_H
#define AUTHCRYPTO_H
#include <stddef.h>
#include <stdint.h>

/* Hash selector for HMAC and digests. */
enum { AC_SHA256 = 256, AC_SHA384 = 384, AC_SHA512 = 512 };

/* HKDF-SHA256 (RFC 5869, extract-and-expand). out_len must be 1...255*32. */
int ac_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                   const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);

/* HMAC over the concatenation of up to four parts (NULL/0 parts are skipped). out must hold 64 bytes. */
int ac_hmac(int hash, const uint8_t *key, size_t key_len,
            const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2,
            const uint8_t *p3, size_t l3, const uint8_t *p4, size_t l4,
            uint8_t *out, size_t *out_len);

/* Message digest; out must hold 64 bytes. */
int ac_digest(int hash, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len);

/* AES-CBC with PKCS#7 padding; key 16/24/32 bytes, iv 16 bytes. out must hold in_len + 16 bytes. */
int ac_aes_cbc_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len);
int ac_aes_cbc_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len);

/* AES-GCM; key 16/24/32 bytes, any iv length >= 1, tag 1...16 bytes. out must hold in_len bytes.
 * decrypt writes plaintext to out but returns 0 (and wipes out) when the tag does not verify. */
int ac_aes_gcm_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       const uint8_t *tag, size_t tag_len, uint8_t *out);
int ac_aes_gcm_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out, uint8_t *tag, size_t tag_len);

/* Constant-time equality of two equal-length buffers: 1 when equal. */
int ac_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Cryptographically secure random bytes. */
int ac_random(uint8_t *out, size_t len);

#endif
