#ifndef CJANSSON_SHIM_H
#define CJANSSON_SHIM_H
#include <jansson.h>

/* Jansson's type tests and reference counting are function-like macros, which Swift cannot call. */
static inline int cj_typeof(const json_t *j) { return (int)json_typeof(j); }
static inline void cj_decref(json_t *j) { json_decref(j); }
#endif
