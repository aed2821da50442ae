#include "jsonarena.h"
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define JA_DISABLED 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define JA_DISABLED 1
#endif

/* 8 KiB: a session token's ~270-byte claims set takes 1.6 KiB (measured); a larger one continues in malloc. */
#define JA_BYTES 8192
#define JA_ALIGN 16

#ifndef JA_DISABLED
static _Thread_local struct {
    size_t used;
    int active;
    int overflowed;
    _Alignas(JA_ALIGN) unsigned char bytes[JA_BYTES];
} arena;

static void *ja_malloc(size_t size) {
    if (arena.active) {
        size_t rounded = (size + (JA_ALIGN - 1)) & ~(size_t)(JA_ALIGN - 1);
        if (rounded >= size && rounded <= JA_BYTES - arena.used) {
            void *p = arena.bytes + arena.used;
            arena.used += rounded;
            return p;
        }
        arena.overflowed = 1;
    }
    return malloc(size);
}

static void ja_free(void *p) {
    uintptr_t a = (uintptr_t)p, start = (uintptr_t)arena.bytes;
    if (a - start < JA_BYTES) return; /* this thread's buffer: reclaimed at the next ja_begin() */
    free(p);
}

static pthread_once_t installed = PTHREAD_ONCE_INIT;
static void install(void) { json_set_alloc_funcs(ja_malloc, ja_free); }

void ja_begin(void) {
    pthread_once(&installed, install);
    arena.used = 0;
    arena.overflowed = 0;
    arena.active = 1;
}
void ja_end(void) { arena.active = 0; }
size_t ja_used(void) { return arena.used; }
int ja_overflowed(void) { return arena.overflowed; }
int ja_enabled(void) { return 1; }
#else
void ja_begin(void) {}
void ja_end(void) {}
size_t ja_used(void) { return 0; }
int ja_overflowed(void) { return 0; }
int ja_enabled(void) { return 0; }
#endif
size_t ja_capacity(void) { return JA_BYTES; }
