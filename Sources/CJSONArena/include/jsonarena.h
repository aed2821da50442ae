/*
 * CJSONArena: Jansson's allocations for one parse taken from a per-thread buffer.
 *
 * A parse of a token's claims makes ~30 small allocations (a value, a key, a lexer buffer that grows by copying) and
 * frees every one when the value is released a few microseconds later. Between ja_begin() and ja_end() on a thread,
 * Jansson's malloc bumps a pointer in that thread's buffer and its free of such a pointer does nothing; past the
 * buffer, and on any thread outside a begin/end pair, the C library's malloc and free are used. The Jansson values
 * of a parse must be released before ja_end() (the next ja_begin() on the thread reuses the buffer).
 *
 * Thread-local storage and allocator hooks are what Swift cannot declare; this is all the code there is. Builds with
 * AddressSanitizer use malloc throughout, so its checks cover every Jansson allocation.
 */
#ifndef JSONARENA_H
#define JSONARENA_H
#include <stddef.h>

/* Installs the hooks (once per process) and starts a parse on this thread. */
void ja_begin(void);
/* Ends the parse: the buffer is free for the next one. */
void ja_end(void);
/* Bytes of this thread's buffer taken since ja_begin(), and whether the buffer ran out (tests). */
size_t ja_used(void);
int ja_overflowed(void);
/* The buffer's size, and whether the hooks are compiled in (0 under AddressSanitizer). */
size_t ja_capacity(void);
int ja_enabled(void);
#endif
