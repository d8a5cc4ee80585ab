/*
 * gguf — read-only access to GGUF v2/v3 files over mmap, and a writer.
 *
 * gguf_open() maps the file and validates everything before anyone reads it:
 * magic, version, counts, every string and array length, key value types,
 * tensor dims and types, data offsets, alignment, byte sizes, and integer
 * overflow in all of those. After a successful open every accessor below is
 * safe: no accessor can read outside the mapping. A bad file gets an error
 * whose message names what is wrong and its byte offset.
 *
 * Strings in GGUF are length-prefixed and not NUL-terminated; accessors
 * return gguf_str (pointer into the mapping + length).
 * Ownership: everything returned points into the gguf_file and lives until
 * gguf_close().
 */
#ifndef CONFAB_ENGINE_GGUF_H
#define CONFAB_ENGINE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/sb.h"

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_vtype;

typedef struct {
    const char *p; /* not NUL-terminated */
    uint64_t n;
} gguf_str;

#define GGUF_MAX_DIMS 4

typedef struct {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] = row length (contiguous); unused dims = 1 */
    int type;                  /* tensor type id (tt_type in types.h) */
    uint64_t offset;           /* relative to the data section */
    const void *data;          /* into the mapping */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates PATH. NULL on error with ERR set. */
gguf_file *gguf_open(const char *path, cf_err *err);
/* Validates an in-memory image (not copied; must outlive the result). */
gguf_file *gguf_open_mem(const void *data, size_t size, cf_err *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);

/* ---- metadata ---- */
int64_t gguf_n_kv(const gguf_file *f);
/* Index of KEY, or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);
gguf_str gguf_kv_key(const gguf_file *f, int64_t i);
gguf_vtype gguf_kv_type(const gguf_file *f, int64_t i);

/* Appends a readable rendering of value I to OUT: numbers, quoted strings
 * (control bytes escaped, long strings cut with "..."), arrays as
 * "[TYPE x N] first, items, ..." showing at most MAX_ITEMS elements.
 * For debugging and listings (`confab gguf`). */
void gguf_kv_describe(const gguf_file *f, int64_t i, size_t max_items, sb_t *out);
/* Name of a metadata value type ("uint32", "string", ...). */
const char *gguf_vtype_name(gguf_vtype t);

/* Typed getters by key. Return false when the key is absent or its value
 * cannot be represented in the requested type (integers of any width are
 * accepted when the value fits; floats accept FLOAT32/FLOAT64). */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);

/* Arrays: element type and count, then elements. For numeric arrays
 * gguf_arr_data() points at N packed little-endian elements; for string
 * arrays use gguf_arr_str(). Arrays of arrays are validated but not exposed. */
bool gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype *elem, uint64_t *n);
const void *gguf_arr_data(const gguf_file *f, const char *key);
gguf_str gguf_arr_str(const gguf_file *f, const char *key, uint64_t i);

/* ---- tensors ---- */
int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
/* By name; NULL when absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* True when S equals the C string C. */
bool gguf_str_eq(gguf_str s, const char *c);
/* Copies S into a malloc'd NUL-terminated string (caller frees). */
char *gguf_str_dup(gguf_str s);

/* ---- writer ---- */
/* Builds a GGUF v3 file in memory: add metadata and tensors, then write.
 * Tensor data is copied at gguf_w_add_tensor time. Setting a key again
 * replaces its value. Like sb, the writer aborts when memory runs out. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_w_new(void);
void gguf_w_free(gguf_writer *w);
void gguf_w_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_set_f32(gguf_writer *w, const char *key, float v);
void gguf_w_set_bool(gguf_writer *w, const char *key, bool v);
void gguf_w_set_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array of N elements of type ELEM, copied. */
void gguf_w_set_arr(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n);
/* String array of N strings (lengths given so strings may hold NULs). */
void gguf_w_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n);
/* Copies every metadata key of SRC (used by quantize and mkmodel). */
void gguf_w_copy_kv(gguf_writer *w, const gguf_file *src);
/* Adds a tensor; NBYTES must match its type and shape. */
int gguf_w_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                      const int64_t *ne, const void *data, uint64_t nbytes, cf_err *err);
/* Produces the NBYTES of data of a lazy tensor into DST; returns 0, or a
 * negative CF_E* with ERR set (which aborts gguf_w_write). */
typedef int (*gguf_w_fill_fn)(void *ctx, void *dst, uint64_t nbytes, cf_err *err);
/* Adds a tensor whose data FILL(CTX, ...) produces during gguf_w_write(),
 * one tensor at a time, so writing needs memory for only the largest lazy
 * tensor. CTX must stay valid until gguf_w_write() returns. */
int gguf_w_add_tensor_lazy(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, gguf_w_fill_fn fill, void *ctx, cf_err *err);
/* Writes to PATH atomically (temp file + rename); nothing is left at PATH
 * or beside it on error. */
int gguf_w_write(gguf_writer *w, const char *path, cf_err *err);

#endif
