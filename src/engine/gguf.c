/*
 * gguf — GGUF v2/v3 reader over a read-only mmap, and a writer (see gguf.h).
 *
 * Reader. The file is mapped once and parsed once, front to back, by a
 * cursor (gguf_rd) whose every read first checks that the bytes exist; a
 * failed check becomes an error naming the item and its byte offset. The
 * parse builds small indexes that point into the mapping (one gguf_kv per
 * key, one gguf_tensor per tensor, offsets of the elements of string arrays,
 * and two open-addressing hash tables for lookup by name), so after
 * gguf_open() succeeds no accessor can read outside the mapping.
 *
 * Hostile files: every count is compared with the bytes left before
 * anything is allocated for it (a key needs at least 13 bytes, a tensor
 * info 32, a string 8...), so an absurd count is an error, not a huge
 * allocation; every sum and product of sizes is overflow-checked; nested
 * arrays are limited to GGUF_MAX_DEPTH levels so recursion is bounded; work
 * is linear in the file size (duplicate detection uses the hash tables).
 * Checks: magic, version (2 or 3; a byte-swapped version is called out as a
 * big-endian file), value types, bool values 0/1, key and name lengths,
 * duplicate keys and tensor names, general.alignment (UINT32, power of
 * two), n_dims 1..4, dims >= 0 whose product fits int64, known tensor types
 * (types.c's table), row length a multiple of the block size, offsets
 * aligned and tensors inside the data section.
 * Not checked: that tensors do not overlap (harmless for a read-only map)
 * and that strings are valid UTF-8 (tokenizer vocabularies hold raw bytes).
 *
 * Writer. Metadata values are serialized into byte strings as they are set
 * (setting a key again replaces it, so `quantize` can copy every key and
 * then override general.file_type); tensor data is copied when added.
 * gguf_w_write() lays out header, metadata, tensor infos, padding and
 * aligned tensor data, writes a temp file beside the target, fsyncs and
 * renames it into place, so a crash never leaves a half-written model.
 */
#include "engine/gguf.h"

#include "base/hash.h"
#include "base/sb.h"
#include "engine/types.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 4         /* array nesting levels accepted */
#define GGUF_MAX_KEY 65535       /* bytes, per the specification */
#define GGUF_MAX_NAME 64         /* tensor name bytes, per the specification */
#define GGUF_MIN_KV_BYTES 13     /* key length + type + 1 value byte */
#define GGUF_MIN_TENSOR_BYTES 32 /* name length + n_dims + 1 dim + type + offset */

/* ------------------------------------------------------------------ types */

typedef struct {
    gguf_str key;
    gguf_vtype type;
    uint64_t off;      /* byte offset of the value in the file */
    uint64_t len;      /* bytes of the value's encoding */
    gguf_vtype elem;   /* arrays: element type */
    uint64_t n;        /* arrays: element count */
    uint64_t arr_off;  /* arrays: offset of the first element */
    uint64_t *str_off; /* string arrays: (n,) offset of each element's length */
} gguf_kv;

struct gguf_file {
    const uint8_t *base; /* (size,) the mapping or the caller's image */
    size_t size;
    int mapped; /* 1 when base must be munmap'd */
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv, n_tensors;
    gguf_kv *kv; /* (kv_alloc,) of which n_kv are in use */
    uint64_t kv_alloc;
    gguf_tensor *t;    /* (n_tensors,) */
    uint64_t data_off; /* start of the data section */
    uint32_t *kv_ht;   /* (ht_kv_cap,) index + 1, 0 = empty */
    uint32_t *t_ht;    /* (ht_t_cap,) */
    uint64_t ht_kv_cap, ht_t_cap;
    uint64_t ht_seed; /* per-file hash seed (from the struct's address,
                       * randomized by ASLR) so a hostile file cannot
                       * precompute colliding names */
};

static const uint8_t gguf_vsize[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const gguf_vname[GGUF_TYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64"};

/* ------------------------------------------------------------------ cursor */

typedef struct {
    const uint8_t *b;
    uint64_t size, pos;
    cf_err *err;
} gguf_rd;

static uint64_t rd_left(const gguf_rd *r) { return r->size - r->pos; }

static int rd_need(gguf_rd *r, uint64_t n, const char *what) {
    if (n > rd_left(r))
        return cf_seterr(r->err, CF_EFORMAT,
                         "truncated file: %s at byte %" PRIu64 " needs %" PRIu64
                         " bytes, only %" PRIu64 " left",
                         what, r->pos, n, rd_left(r));
    return 0;
}

static int rd_u32(gguf_rd *r, uint32_t *v, const char *what) {
    int rc = rd_need(r, 4, what);
    if (rc) return rc;
    memcpy(v, r->b + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(gguf_rd *r, uint64_t *v, const char *what) {
    int rc = rd_need(r, 8, what);
    if (rc) return rc;
    memcpy(v, r->b + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* Reads a length-prefixed string of at most MAX bytes. */
static int rd_str(gguf_rd *r, gguf_str *s, uint64_t max, const char *what) {
    const uint64_t at = r->pos;
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc) return rc;
    if (n > max)
        return cf_seterr(r->err, CF_EFORMAT,
                         "%s at byte %" PRIu64 " has length %" PRIu64 " (limit %" PRIu64 ")", what,
                         at, n, max);
    if (n > rd_left(r))
        return cf_seterr(r->err, CF_EFORMAT,
                         "%s at byte %" PRIu64 " has length %" PRIu64 " but only %" PRIu64
                         " bytes are left in the file",
                         what, at, n, rd_left(r));
    s->p = (const char *)r->b + r->pos;
    s->n = n;
    r->pos += n;
    return 0;
}

/* Skips one value of TYPE (validating it), recursing into arrays. */
static int rd_skip_value(gguf_rd *r, uint32_t type, int depth, const char *key) {
    const uint64_t at = r->pos;
    if (type >= GGUF_TYPE_COUNT)
        return cf_seterr(r->err, CF_EFORMAT, "key '%s': unknown value type %u at byte %" PRIu64,
                         key, type, at);
    if (type == GGUF_TYPE_STRING) {
        gguf_str s;
        return rd_str(r, &s, UINT64_MAX, "string value");
    }
    if (type != GGUF_TYPE_ARRAY) {
        int rc = rd_need(r, gguf_vsize[type], "value");
        if (rc) return rc;
        if (type == GGUF_TYPE_BOOL && r->b[r->pos] > 1)
            return cf_seterr(r->err, CF_EFORMAT,
                             "key '%s': bool value %u at byte %" PRIu64 " is neither 0 nor 1", key,
                             r->b[r->pos], at);
        r->pos += gguf_vsize[type];
        return 0;
    }
    if (depth >= GGUF_MAX_DEPTH)
        return cf_seterr(r->err, CF_EFORMAT,
                         "key '%s': arrays nested deeper than %d at byte %" PRIu64, key,
                         GGUF_MAX_DEPTH, at);
    uint32_t elem;
    uint64_t n;
    int rc = rd_u32(r, &elem, "array element type");
    if (!rc) rc = rd_u64(r, &n, "array length");
    if (rc) return rc;
    if (elem >= GGUF_TYPE_COUNT)
        return cf_seterr(r->err, CF_EFORMAT,
                         "key '%s': unknown array element type %u at byte %" PRIu64, key, elem, at);
    /* Smallest encoding of one element, to bound N by the bytes left. */
    const uint64_t min = elem == GGUF_TYPE_STRING  ? 8
                         : elem == GGUF_TYPE_ARRAY ? 12
                                                   : gguf_vsize[elem];
    if (n > rd_left(r) / min)
        return cf_seterr(r->err, CF_EFORMAT,
                         "key '%s': array at byte %" PRIu64 " claims %" PRIu64
                         " elements of type %s but only %" PRIu64 " bytes are left",
                         key, at, n, gguf_vname[elem], rd_left(r));
    if (elem != GGUF_TYPE_STRING && elem != GGUF_TYPE_ARRAY && elem != GGUF_TYPE_BOOL) {
        r->pos += n * min;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_skip_value(r, elem, depth + 1, key))) return rc;
    return 0;
}

/* ------------------------------------------------------------------ hashing */

static uint64_t ht_cap_for(uint64_t n) {
    uint64_t cap = 8;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

/* Finds NAME in table HT (entries are index+1 into the names given by GET).
 * Returns the slot: holding the match, or empty. */
typedef gguf_str (*ht_get_fn)(const gguf_file *f, uint64_t i);
static gguf_str ht_kv_name(const gguf_file *f, uint64_t i) { return f->kv[i].key; }
static gguf_str ht_t_name(const gguf_file *f, uint64_t i) { return f->t[i].name; }

static uint64_t ht_slot(const gguf_file *f, const uint32_t *ht, uint64_t cap, ht_get_fn get,
                        const char *p, uint64_t n) {
    uint64_t h = hash64(p, (size_t)n, f->ht_seed) & (cap - 1);
    for (;;) {
        if (!ht[h]) return h;
        gguf_str s = get(f, ht[h] - 1);
        if (s.n == n && !memcmp(s.p, p, (size_t)n)) return h;
        h = (h + 1) & (cap - 1);
    }
}

/* ------------------------------------------------------------------ open */

/* Parses the metadata entries. A key repeated with the same type and value
 * bytes (old converters wrote general.file_type twice) is dropped; a
 * repeat with a different value is an error, since either choice would be
 * a guess. f->n_kv ends as the number of distinct keys. */
static int gguf_parse_kv(gguf_file *f, gguf_rd *r) {
    const int64_t declared = f->n_kv;
    int64_t k = 0;
    for (int64_t i = 0; i < declared; i++) {
        gguf_kv *kv = &f->kv[k];
        const uint64_t at = r->pos;
        int rc = rd_str(r, &kv->key, GGUF_MAX_KEY, "metadata key");
        if (rc) return cf_errctx(r->err, "metadata entry %" PRId64, i);
        if (kv->key.n == 0)
            return cf_seterr(r->err, CF_EFORMAT,
                             "metadata entry %" PRId64 " at byte %" PRIu64 " has an empty key", i,
                             at);
        if (memchr(kv->key.p, 0, (size_t)kv->key.n))
            return cf_seterr(r->err, CF_EFORMAT,
                             "metadata key at byte %" PRIu64 " contains a NUL byte", at);
        char key[96];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.n < 80 ? kv->key.n : 80), kv->key.p);
        uint32_t type;
        if ((rc = rd_u32(r, &type, "value type"))) return cf_errctx(r->err, "key '%s'", key);
        if (type >= GGUF_TYPE_COUNT)
            return cf_seterr(r->err, CF_EFORMAT, "key '%s': unknown value type %u at byte %" PRIu64,
                             key, type, r->pos - 4);
        kv->type = (gguf_vtype)type;
        kv->off = r->pos;
        if ((rc = rd_skip_value(r, type, 0, key))) return rc;
        kv->len = r->pos - kv->off;
        f->n_kv = k; /* the hash table sees entries [0, k) */
        uint64_t slot = ht_slot(f, f->kv_ht, f->ht_kv_cap, ht_kv_name, kv->key.p, kv->key.n);
        if (f->kv_ht[slot]) {
            const gguf_kv *prev = &f->kv[f->kv_ht[slot] - 1];
            if (prev->type == kv->type && prev->len == kv->len &&
                !memcmp(r->b + prev->off, r->b + kv->off, (size_t)kv->len))
                continue;
            return cf_seterr(r->err, CF_EFORMAT,
                             "conflicting duplicate metadata key '%s' at byte %" PRIu64, key, at);
        }
        f->kv_ht[slot] = (uint32_t)(k + 1);
        k++;
        if (type == GGUF_TYPE_ARRAY) {
            uint32_t elem;
            memcpy(&elem, r->b + kv->off, 4);
            memcpy(&kv->n, r->b + kv->off + 4, 8);
            kv->elem = (gguf_vtype)elem;
            kv->arr_off = kv->off + 12;
            if (elem == GGUF_TYPE_STRING && kv->n) {
                /* n <= bytes / 8 was checked, so this allocation is bounded by the file. */
                kv->str_off = malloc((size_t)kv->n * sizeof *kv->str_off);
                if (!kv->str_off)
                    return cf_seterr(r->err, CF_ENOMEM, "out of memory indexing '%s'", key);
                uint64_t p = kv->arr_off;
                for (uint64_t j = 0; j < kv->n; j++) {
                    uint64_t len;
                    kv->str_off[j] = p;
                    memcpy(&len, r->b + p, 8);
                    p += 8 + len; /* validated by rd_skip_value */
                }
            }
        }
    }
    f->n_kv = k;
    return 0;
}

static int gguf_parse_tensors(gguf_file *f, gguf_rd *r) {
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->t[i];
        const uint64_t at = r->pos;
        int rc = rd_str(r, &t->name, GGUF_MAX_NAME, "tensor name");
        if (rc) return cf_errctx(r->err, "tensor %" PRId64, i);
        if (memchr(t->name.p, 0, (size_t)t->name.n))
            return cf_seterr(r->err, CF_EFORMAT,
                             "tensor name at byte %" PRIu64 " contains a NUL byte", at);
        char name[GGUF_MAX_NAME + 1];
        snprintf(name, sizeof name, "%.*s", (int)t->name.n, t->name.p);
        uint64_t slot = ht_slot(f, f->t_ht, f->ht_t_cap, ht_t_name, t->name.p, t->name.n);
        if (f->t_ht[slot])
            return cf_seterr(r->err, CF_EFORMAT, "duplicate tensor name '%s' at byte %" PRIu64,
                             name, at);
        f->t_ht[slot] = (uint32_t)(i + 1);
        if ((rc = rd_u32(r, &t->n_dims, "tensor n_dims")))
            return cf_errctx(r->err, "tensor '%s'", name);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return cf_seterr(r->err, CF_EFORMAT,
                             "tensor '%s': n_dims %u at byte %" PRIu64 " is outside 1..%d", name,
                             t->n_dims, r->pos - 4, GGUF_MAX_DIMS);
        int64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((rc = rd_u64(r, &ne, "tensor dimension")))
                return cf_errctx(r->err, "tensor '%s'", name);
            if (ne > (uint64_t)INT64_MAX || (nel && ne > (uint64_t)(INT64_MAX / nel)))
                return cf_seterr(r->err, CF_EFORMAT,
                                 "tensor '%s': dimension %u = %" PRIu64 " at byte %" PRIu64
                                 " overflows the element count",
                                 name, d, ne, r->pos - 8);
            t->ne[d] = (int64_t)ne;
            nel *= (int64_t)ne;
        }
        uint32_t type;
        if ((rc = rd_u32(r, &type, "tensor type"))) return cf_errctx(r->err, "tensor '%s'", name);
        const tt_traits *tr = tt_get((int)type);
        if (!tr)
            return cf_seterr(r->err, CF_EFORMAT,
                             "tensor '%s': unknown tensor type %u at byte %" PRIu64, name, type,
                             r->pos - 4);
        t->type = (int)type;
        if (t->ne[0] % tr->blck)
            return cf_seterr(r->err, CF_EFORMAT,
                             "tensor '%s': row length %" PRId64
                             " is not a multiple of %s's block size %d",
                             name, t->ne[0], tr->name, tr->blck);
        if ((rc = rd_u64(r, &t->offset, "tensor offset")))
            return cf_errctx(r->err, "tensor '%s'", name);
        /* Byte size: blocks per row * bytes per block * rows, overflow-checked. */
        uint64_t row = (uint64_t)(t->ne[0] / tr->blck);
        if (row && tr->bytes > UINT64_MAX / row)
            return cf_seterr(r->err, CF_EFORMAT, "tensor '%s': row size overflows", name);
        uint64_t nbytes = row * tr->bytes;
        for (int d = 1; d < GGUF_MAX_DIMS; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            if (ne && nbytes > UINT64_MAX / ne)
                return cf_seterr(r->err, CF_EFORMAT, "tensor '%s': byte size overflows", name);
            nbytes *= ne;
        }
        t->nbytes = nbytes;
    }
    return 0;
}

static int gguf_check_alignment(gguf_file *f, cf_err *err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_find_key(f, "general.alignment");
    if (i < 0) return 0;
    const gguf_kv *kv = &f->kv[i];
    if (kv->type != GGUF_TYPE_UINT32)
        return cf_seterr(err, CF_EFORMAT,
                         "general.alignment at byte %" PRIu64 " has type %s, expected uint32",
                         kv->off, gguf_vname[kv->type]);
    uint32_t a;
    memcpy(&a, f->base + kv->off, 4);
    if (a == 0 || (a & (a - 1)))
        return cf_seterr(err, CF_EFORMAT,
                         "general.alignment %u at byte %" PRIu64 " is not a power of two", a,
                         kv->off);
    f->alignment = a;
    return 0;
}

static int gguf_check_data(gguf_file *f, uint64_t info_end, cf_err *err) {
    const uint64_t a = f->alignment;
    if (info_end > UINT64_MAX - (a - 1))
        return cf_seterr(err, CF_EFORMAT, "data section offset overflows");
    f->data_off = (info_end + a - 1) / a * a;
    const uint64_t data_size = f->size > f->data_off ? f->size - f->data_off : 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->t[i];
        if (t->offset % a)
            return cf_seterr(err, CF_EFORMAT,
                             "tensor '%.*s': data offset %" PRIu64
                             " is not a multiple of the alignment %u",
                             (int)t->name.n, t->name.p, t->offset, f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return cf_seterr(
                err, CF_EFORMAT,
                "tensor '%.*s': data [%" PRIu64 ", +%" PRIu64
                ") lies outside the data section (file byte %" PRIu64 ", %" PRIu64 " bytes)",
                (int)t->name.n, t->name.p, t->offset, t->nbytes, f->data_off, data_size);
        t->data = f->base + f->data_off + t->offset;
    }
    return 0;
}

gguf_file *gguf_open_mem(const void *data, size_t size, cf_err *err) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    f->base = data;
    f->size = size;
    f->ht_seed = (uint64_t)(uintptr_t)f * 0x9E3779B97F4A7C15ull;
    gguf_rd r = {f->base, size, 0, err};
    int rc = rd_need(&r, 4, "magic");
    if (rc) goto fail;
    if (memcmp(f->base, GGUF_MAGIC, 4)) {
        rc = cf_seterr(err, CF_EFORMAT, "not a GGUF file: bad magic %02x %02x %02x %02x at byte 0",
                       f->base[0], f->base[1], f->base[2], f->base[3]);
        goto fail;
    }
    r.pos = 4;
    uint64_t n_t, n_kv;
    if ((rc = rd_u32(&r, &f->version, "version"))) goto fail;
    if (f->version != 2 && f->version != 3) {
        if (f->version == 0x02000000u || f->version == 0x03000000u)
            rc = cf_seterr(err, CF_EFORMAT,
                           "big-endian GGUF file (version bytes at byte 4) is not supported");
        else
            rc = cf_seterr(err, CF_EFORMAT,
                           "unsupported GGUF version %u at byte 4 (2 and 3 are supported)",
                           f->version);
        goto fail;
    }
    if ((rc = rd_u64(&r, &n_t, "tensor count")) || (rc = rd_u64(&r, &n_kv, "metadata count")))
        goto fail;
    if (n_kv > rd_left(&r) / GGUF_MIN_KV_BYTES || n_kv >= UINT32_MAX) {
        rc = cf_seterr(err, CF_EFORMAT,
                       "metadata count %" PRIu64 " at byte 16 is impossible: only %" PRIu64
                       " bytes follow the header",
                       n_kv, rd_left(&r));
        goto fail;
    }
    if (n_t > rd_left(&r) / GGUF_MIN_TENSOR_BYTES || n_t >= UINT32_MAX ||
        n_kv * GGUF_MIN_KV_BYTES + n_t * GGUF_MIN_TENSOR_BYTES > rd_left(&r)) {
        rc = cf_seterr(err, CF_EFORMAT,
                       "tensor count %" PRIu64 " at byte 8 is impossible: only %" PRIu64
                       " bytes follow the header",
                       n_t, rd_left(&r));
        goto fail;
    }
    f->n_kv = (int64_t)n_kv;
    f->n_tensors = (int64_t)n_t;
    f->ht_kv_cap = ht_cap_for(n_kv);
    f->ht_t_cap = ht_cap_for(n_t);
    f->kv = calloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->kv_alloc = n_kv;
    f->t = calloc(n_t ? n_t : 1, sizeof *f->t);
    f->kv_ht = calloc(f->ht_kv_cap, sizeof *f->kv_ht);
    f->t_ht = calloc(f->ht_t_cap, sizeof *f->t_ht);
    if (!f->kv || !f->t || !f->kv_ht || !f->t_ht) {
        rc = cf_seterr(err, CF_ENOMEM, "out of memory for %" PRIu64 " keys and %" PRIu64 " tensors",
                       n_kv, n_t);
        goto fail;
    }
    if ((rc = gguf_parse_kv(f, &r))) goto fail;
    if ((rc = gguf_check_alignment(f, err))) goto fail;
    if ((rc = gguf_parse_tensors(f, &r))) goto fail;
    if ((rc = gguf_check_data(f, r.pos, err))) goto fail;
    return f;
fail:
    gguf_close(f);
    return NULL;
}

gguf_file *gguf_open(const char *path, cf_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cf_seterr(err, errno == ENOENT ? CF_ENOTFOUND : CF_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cf_seterr(err, CF_EIO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 24) {
        cf_seterr(err, CF_EFORMAT,
                  "%s: truncated file: %lld bytes is shorter than a GGUF header (24)", path,
                  (long long)st.st_size);
        close(fd);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        cf_seterr(err, CF_EIO, "%s: mmap: %s", path, strerror(errno));
        return NULL;
    }
    gguf_file *f = gguf_open_mem(m, (size_t)st.st_size, err);
    if (!f) {
        munmap(m, (size_t)st.st_size);
        cf_errctx(err, "%s", path);
        return NULL;
    }
    f->mapped = 1;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->kv_alloc; i++)
            free(f->kv[i].str_off);
    free(f->kv);
    free(f->t);
    free(f->kv_ht);
    free(f->t_ht);
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }

/* ------------------------------------------------------------------ metadata */

int64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }

int64_t gguf_find_key(const gguf_file *f, const char *key) {
    uint64_t slot = ht_slot(f, f->kv_ht, f->ht_kv_cap, ht_kv_name, key, strlen(key));
    return f->kv_ht[slot] ? (int64_t)f->kv_ht[slot] - 1 : -1;
}

gguf_str gguf_kv_key(const gguf_file *f, int64_t i) {
    if (i < 0 || i >= f->n_kv) return (gguf_str){NULL, 0};
    return f->kv[i].key;
}

gguf_vtype gguf_kv_type(const gguf_file *f, int64_t i) {
    if (i < 0 || i >= f->n_kv) return GGUF_TYPE_COUNT;
    return f->kv[i].type;
}

static const gguf_kv *kv_of(const gguf_file *f, const char *key) {
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i];
}

/* Reads an integer value of any width as a signed 128-bit-safe pair:
 * returns false for non-integers; *neg set for negative values. */
static bool kv_int(const gguf_file *f, const gguf_kv *kv, uint64_t *mag, bool *neg) {
    const uint8_t *p = f->base + kv->off;
    int64_t s = 0;
    uint64_t u = 0;
    bool is_signed = false;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: u = p[0]; break;
    case GGUF_TYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        u = v;
        break;
    }
    case GGUF_TYPE_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        u = v;
        break;
    }
    case GGUF_TYPE_UINT64: memcpy(&u, p, 8); break;
    case GGUF_TYPE_INT8:
        s = (int8_t)p[0];
        is_signed = true;
        break;
    case GGUF_TYPE_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        s = v;
        is_signed = true;
        break;
    }
    case GGUF_TYPE_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        s = v;
        is_signed = true;
        break;
    }
    case GGUF_TYPE_INT64:
        memcpy(&s, p, 8);
        is_signed = true;
        break;
    default: return false;
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = false;
        *mag = u;
    }
    return true;
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_kv *kv = kv_of(f, key);
    uint64_t mag;
    bool neg;
    if (!kv || !kv_int(f, kv, &mag, &neg) || neg || mag > UINT32_MAX) return false;
    *out = (uint32_t)mag;
    return true;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = kv_of(f, key);
    uint64_t mag;
    bool neg;
    if (!kv || !kv_int(f, kv, &mag, &neg)) return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)mag;
    }
    return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv) return false;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, f->base + kv->off, 4);
        return true;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, f->base + kv->off, 8);
        *out = (float)d;
        return true;
    }
    return false;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return false;
    *out = f->base[kv->off] != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return false;
    memcpy(&out->n, f->base + kv->off, 8);
    out->p = (const char *)f->base + kv->off + 8;
    return true;
}

bool gguf_get_arr(const gguf_file *f, const char *key, gguf_vtype *elem, uint64_t *n) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY) return false;
    if (elem) *elem = kv->elem;
    if (n) *n = kv->n;
    return true;
}

const void *gguf_arr_data(const gguf_file *f, const char *key) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->elem == GGUF_TYPE_STRING ||
        kv->elem == GGUF_TYPE_ARRAY)
        return NULL;
    return f->base + kv->arr_off;
}

gguf_str gguf_arr_str(const gguf_file *f, const char *key, uint64_t i) {
    const gguf_kv *kv = kv_of(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->elem != GGUF_TYPE_STRING || i >= kv->n)
        return (gguf_str){NULL, 0};
    gguf_str s;
    memcpy(&s.n, f->base + kv->str_off[i], 8);
    s.p = (const char *)f->base + kv->str_off[i] + 8;
    return s;
}

const char *gguf_vtype_name(gguf_vtype t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? gguf_vname[t] : "?";
}

/* One scalar of type T at P. */
static void describe_scalar(sb_t *out, gguf_vtype t, const uint8_t *p) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    memcpy(&v, p, gguf_vsize[t]);
    switch (t) {
    case GGUF_TYPE_UINT8: sb_printf(out, "%u", v.u8); break;
    case GGUF_TYPE_INT8: sb_printf(out, "%d", v.i8); break;
    case GGUF_TYPE_UINT16: sb_printf(out, "%u", v.u16); break;
    case GGUF_TYPE_INT16: sb_printf(out, "%d", v.i16); break;
    case GGUF_TYPE_UINT32: sb_printf(out, "%u", v.u32); break;
    case GGUF_TYPE_INT32: sb_printf(out, "%d", v.i32); break;
    case GGUF_TYPE_FLOAT32: sb_printf(out, "%g", (double)v.f32); break;
    case GGUF_TYPE_BOOL: sb_append(out, v.u8 ? "true" : "false"); break;
    case GGUF_TYPE_UINT64: sb_printf(out, "%" PRIu64, v.u64); break;
    case GGUF_TYPE_INT64: sb_printf(out, "%" PRId64, v.i64); break;
    case GGUF_TYPE_FLOAT64: sb_printf(out, "%g", v.f64); break;
    default: break;
    }
}

/* A string, quoted, bytes below 0x20 and quotes escaped, cut after 80 bytes. */
static void describe_str(sb_t *out, const uint8_t *p, uint64_t n) {
    sb_putc(out, '"');
    const uint64_t show = n > 80 ? 80 : n;
    for (uint64_t i = 0; i < show; i++) {
        const uint8_t c = p[i];
        if (c == '"' || c == '\\')
            sb_printf(out, "\\%c", c);
        else if (c == '\n')
            sb_append(out, "\\n");
        else if (c < 0x20 || c == 0x7f)
            sb_printf(out, "\\x%02x", c);
        else
            sb_putc(out, (char)c);
    }
    sb_putc(out, '"');
    if (show < n) sb_printf(out, "...(%" PRIu64 " bytes)", n);
}

void gguf_kv_describe(const gguf_file *f, int64_t i, size_t max_items, sb_t *out) {
    if (i < 0 || i >= f->n_kv) return;
    const gguf_kv *kv = &f->kv[i];
    const uint8_t *p = f->base + kv->off;
    if (kv->type == GGUF_TYPE_STRING) {
        uint64_t n;
        memcpy(&n, p, 8);
        describe_str(out, p + 8, n);
        return;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        describe_scalar(out, kv->type, p);
        return;
    }
    sb_printf(out, "[%s x %" PRIu64 "]", gguf_vname[kv->elem], kv->n);
    if (kv->elem == GGUF_TYPE_ARRAY) return;
    const uint64_t show = kv->n < max_items ? kv->n : max_items;
    for (uint64_t j = 0; j < show; j++) {
        sb_append(out, j ? ", " : " ");
        if (kv->elem == GGUF_TYPE_STRING) {
            uint64_t n;
            memcpy(&n, f->base + kv->str_off[j], 8);
            describe_str(out, f->base + kv->str_off[j] + 8, n);
        } else {
            describe_scalar(out, kv->elem, f->base + kv->arr_off + j * gguf_vsize[kv->elem]);
        }
    }
    if (show < kv->n) sb_append(out, ", ...");
}

/* ------------------------------------------------------------------ tensors */

int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return i < 0 || i >= f->n_tensors ? NULL : &f->t[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    uint64_t slot = ht_slot(f, f->t_ht, f->ht_t_cap, ht_t_name, name, strlen(name));
    return f->t_ht[slot] ? &f->t[f->t_ht[slot] - 1] : NULL;
}

bool gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.n == n && (n == 0 || !memcmp(s.p, c, n));
}

char *gguf_str_dup(gguf_str s) {
    char *p = malloc((size_t)s.n + 1);
    if (!p) return NULL;
    if (s.n) memcpy(p, s.p, (size_t)s.n);
    p[s.n] = 0;
    return p;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *key;
    gguf_vtype type;
    sb_t val; /* the value's encoding, exactly as it goes into the file */
} gguf_wkv;

typedef struct {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data;          /* (nbytes,) owned copy, or NULL for a lazy tensor */
    gguf_w_fill_fn fill; /* lazy tensors: produces the data at write time */
    void *fill_ctx;
    uint64_t nbytes;
} gguf_wtensor;

struct gguf_writer {
    gguf_wkv *kv; /* (n_kv,) */
    size_t n_kv, cap_kv;
    gguf_wtensor *t; /* (n_t,) */
    size_t n_t, cap_t;
};

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) abort(); /* as sb: running out of memory while building is fatal */
    return q;
}

gguf_writer *gguf_w_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) abort();
    return w;
}

void gguf_w_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        sb_free(&w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Returns the entry for KEY, created empty or emptied for a new value. */
static sb_t *w_slot(gguf_writer *w, const char *key, gguf_vtype type) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            w->kv[i].type = type;
            sb_clear(&w->kv[i].val);
            return &w->kv[i].val;
        }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? 2 * w->cap_kv : 32;
        w->kv = xrealloc(w->kv, w->cap_kv * sizeof *w->kv);
    }
    gguf_wkv *kv = &w->kv[w->n_kv++];
    kv->key = strdup(key);
    if (!kv->key) abort();
    kv->type = type;
    kv->val = (sb_t){0};
    return &kv->val;
}

static void sb_u32(sb_t *s, uint32_t v) { sb_appendn(s, &v, 4); }
static void sb_u64(sb_t *s, uint64_t v) { sb_appendn(s, &v, 8); }
static void sb_gstr(sb_t *s, const char *p, uint64_t n) {
    sb_u64(s, n);
    if (n) sb_appendn(s, p, (size_t)n);
}

void gguf_w_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    sb_u32(w_slot(w, key, GGUF_TYPE_UINT32), v);
}
void gguf_w_set_i32(gguf_writer *w, const char *key, int32_t v) {
    sb_appendn(w_slot(w, key, GGUF_TYPE_INT32), &v, 4);
}
void gguf_w_set_f32(gguf_writer *w, const char *key, float v) {
    sb_appendn(w_slot(w, key, GGUF_TYPE_FLOAT32), &v, 4);
}
void gguf_w_set_bool(gguf_writer *w, const char *key, bool v) {
    sb_putc(w_slot(w, key, GGUF_TYPE_BOOL), v ? 1 : 0);
}
void gguf_w_set_str(gguf_writer *w, const char *key, const char *v) {
    sb_gstr(w_slot(w, key, GGUF_TYPE_STRING), v, strlen(v));
}

void gguf_w_set_arr(gguf_writer *w, const char *key, gguf_vtype elem, const void *data,
                    uint64_t n) {
    if (elem >= GGUF_TYPE_COUNT || !gguf_vsize[elem] || n > SIZE_MAX / 8)
        abort(); /* programming error */
    sb_t *s = w_slot(w, key, GGUF_TYPE_ARRAY);
    sb_u32(s, (uint32_t)elem);
    sb_u64(s, n);
    if (n) sb_appendn(s, data, (size_t)(n * gguf_vsize[elem]));
}

void gguf_w_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n) {
    sb_t *s = w_slot(w, key, GGUF_TYPE_ARRAY);
    sb_u32(s, GGUF_TYPE_STRING);
    sb_u64(s, n);
    for (uint64_t i = 0; i < n; i++)
        sb_gstr(s, strs[i].p, strs[i].n);
}

void gguf_w_copy_kv(gguf_writer *w, const gguf_file *src) {
    for (int64_t i = 0; i < src->n_kv; i++) {
        const gguf_kv *kv = &src->kv[i];
        char *key = gguf_str_dup(kv->key);
        if (!key) abort();
        sb_appendn(w_slot(w, key, kv->type), src->base + kv->off, (size_t)kv->len);
        free(key);
    }
}

/* Validates a new tensor's name, type and shape; *NBYTES gets its size. */
static int w_check_tensor(const gguf_writer *w, const char *name, int type, uint32_t n_dims,
                          const int64_t *ne, uint64_t *nbytes, cf_err *err) {
    size_t nl = strlen(name);
    if (nl == 0 || nl > GGUF_MAX_NAME)
        return cf_seterr(err, CF_EINVAL, "tensor name '%s' must be 1..%d bytes", name,
                         GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return cf_seterr(err, CF_EINVAL, "duplicate tensor '%s'", name);
    const tt_traits *tr = tt_get(type);
    if (!tr) return cf_seterr(err, CF_EINVAL, "tensor '%s': unknown type %d", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return cf_seterr(err, CF_EINVAL, "tensor '%s': n_dims %u outside 1..%d", name, n_dims,
                         GGUF_MAX_DIMS);
    uint64_t want = tt_row_size(type, ne[0]);
    if (ne[0] < 0 || (ne[0] > 0 && want == 0))
        return cf_seterr(err, CF_EINVAL,
                         "tensor '%s': row length %" PRId64 " is not a multiple of %s's block %d",
                         name, ne[0], tr->name, tr->blck);
    for (uint32_t d = 1; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] && want > UINT64_MAX / (uint64_t)ne[d]))
            return cf_seterr(err, CF_EINVAL, "tensor '%s': bad dimension %u", name, d);
        want *= (uint64_t)ne[d];
    }
    *nbytes = want;
    return 0;
}

static gguf_wtensor *w_push_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                                   const int64_t *ne, uint64_t nbytes) {
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 64;
        w->t = xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    gguf_wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) abort();
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    return t;
}

int gguf_w_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                      const int64_t *ne, const void *data, uint64_t nbytes, cf_err *err) {
    uint64_t want;
    int rc = w_check_tensor(w, name, type, n_dims, ne, &want, err);
    if (rc) return rc;
    if (want != nbytes)
        return cf_seterr(err, CF_EINVAL,
                         "tensor '%s': %" PRIu64 " bytes given, its type and shape need %" PRIu64,
                         name, nbytes, want);
    gguf_wtensor *t = w_push_tensor(w, name, type, n_dims, ne, nbytes);
    t->data = malloc(nbytes ? (size_t)nbytes : 1);
    if (!t->data) abort();
    if (nbytes) memcpy(t->data, data, (size_t)nbytes);
    return 0;
}

int gguf_w_add_tensor_lazy(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, gguf_w_fill_fn fill, void *ctx, cf_err *err) {
    uint64_t nbytes;
    int rc = w_check_tensor(w, name, type, n_dims, ne, &nbytes, err);
    if (rc) return rc;
    gguf_wtensor *t = w_push_tensor(w, name, type, n_dims, ne, nbytes);
    t->fill = fill;
    t->fill_ctx = ctx;
    return 0;
}

static int w_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int gguf_w_write(gguf_writer *w, const char *path, cf_err *err) {
    uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment")) {
            uint32_t a = 0;
            if (w->kv[i].type == GGUF_TYPE_UINT32) memcpy(&a, w->kv[i].val.data, 4);
            if (a == 0 || (a & (a - 1)) || a > 4096)
                return cf_seterr(err, CF_EINVAL,
                                 "general.alignment must be a uint32 power of two up to 4096");
            align = a;
        }
    /* Header, metadata and tensor infos. */
    sb_t h = {0};
    sb_appendn(&h, GGUF_MAGIC, 4);
    sb_u32(&h, 3);
    sb_u64(&h, w->n_t);
    sb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        sb_gstr(&h, w->kv[i].key, strlen(w->kv[i].key));
        sb_u32(&h, (uint32_t)w->kv[i].type);
        sb_appendn(&h, w->kv[i].val.data ? w->kv[i].val.data : "", w->kv[i].val.len);
    }
    uint64_t off = 0, lazy_max = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        sb_gstr(&h, t->name, strlen(t->name));
        sb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            sb_u64(&h, (uint64_t)t->ne[d]);
        sb_u32(&h, (uint32_t)t->type);
        sb_u64(&h, off);
        off = (off + t->nbytes + align - 1) / align * align;
        if (t->fill && t->nbytes > lazy_max) lazy_max = t->nbytes;
    }
    static const char zeros[4096];
    size_t pad = (size_t)((align - h.len % align) % align);
    /* One buffer, reused, for the tensors produced at write time. */
    void *buf = lazy_max ? malloc((size_t)lazy_max) : NULL;
    if (lazy_max && !buf) {
        sb_free(&h);
        return cf_seterr(err, CF_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte tensor", path,
                         lazy_max);
    }

    sb_t tmp = {0};
    sb_printf(&tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp.data);
    if (fd < 0) {
        int rc = cf_seterr(err, CF_EIO, "%s: cannot create temp file: %s", path, strerror(errno));
        sb_free(&h);
        sb_free(&tmp);
        free(buf);
        return rc;
    }
    int rc = 0;
    int bad =
        fchmod(fd, 0644) != 0 || w_write_all(fd, h.data, h.len) || w_write_all(fd, zeros, pad);
    for (size_t i = 0; i < w->n_t && !bad && !rc; i++) {
        const gguf_wtensor *t = &w->t[i];
        const void *data = t->data;
        if (t->fill) {
            rc = t->fill(t->fill_ctx, buf, t->nbytes, err);
            if (rc) break;
            data = buf;
        }
        size_t tp = (size_t)((align - t->nbytes % align) % align);
        bad = w_write_all(fd, data, (size_t)t->nbytes) || w_write_all(fd, zeros, tp);
    }
    if (!bad && !rc) bad = fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && !rc && rename(tmp.data, path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad || rc) {
        unlink(tmp.data);
        if (!rc) rc = cf_seterr(err, CF_EIO, "%s: write failed: %s", path, strerror(e));
    }
    sb_free(&h);
    sb_free(&tmp);
    free(buf);
    return rc;
}
