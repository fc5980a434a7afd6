/* The MailEnable scan hot loop in C: the rows of a chunk, and the state walk over them.
 *
 * scan(chunk, rows) does for every line of `chunk` (a str of whole lines, each ending in "\n")
 * what item() in logscan/parsers/mailenable_bulk.py does: a row of a usual line, the line
 * itself for parse(), or nothing for a line parse() reads as NOTHING without changing state.
 * Each run of consecutive rows comes as one Run, its fields kept as offsets into the chunk
 * (Run.rows() gives item()'s tuples). tally(run, ...) is that file's
 * MailEnableBulk._tally_python() of a Run: parse()'s transaction steps (walk()) on the parser's
 * own state dict, and the counts and lists of an EventBatch. The Python code is the
 * definition: tests/test_mailenable_bulk.py checks this file against it line for line, chunk
 * for chunk, and under AddressSanitizer.
 *
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk scan()
 * returns None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

typedef const Py_UCS1 *P;

#define MAX_LINE 65536
#define MAX_ID 64
#define MAX_IP 45
#define MEMO 16384   /* mailenable_bulk._DOMAINS */
#define MEMO_LEN 300 /* mailenable_bulk._MEMO_LEN */
#define MAX_TEXT 400 /* reasons.MAX_TEXT: replies up to this long are kept in the reasons memo */
#define REASONS 4096 /* mailenable_bulk._MEMO */
#define UNNAMED 16   /* classes counted apart per batch (there are 8: two directions, 2xx-5xx) */
enum { SKIP, LINE, ROW };
enum { RCPT = 1, MAIL = 2, CARRY = 3, RESET = 4 };   /* mailenable.py's roles */
enum { OK_2XX = 8, OUTBOUND = 16, REFUSAL = 32 };    /* mailenable_bulk's kind bits */

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }

typedef struct {
    P at;
    Py_ssize_t len;
} Span;

/* The verbs STAGES knows (but ""), with their role: all of 4 characters but STARTTLS. */
#define V(verb, role) {verb, sizeof(verb) - 1, role}
static const struct {
    const char *verb;
    Py_ssize_t len;
    int role;
} VERBS[] = {
    V("MAIL", MAIL), V("RCPT", RCPT), V("EHLO", 0), V("QUIT", RESET), V("AUTH", 0), V("DATA", CARRY),
    V("DATE", CARRY), V("CONN", RESET), V("HELO", 0), V("BDAT", CARRY), V("STARTTLS", 0), V("RSET", RESET),
    V("NOOP", 0), V("VRFY", 0), V("EXPN", 0), V("HELP", 0), V("ETRN", 0), V("TURN", 0),
};
#undef V

/* The role of a verb STAGES knows; -1 for any other. */
static int role_of(Span v)
{
    if (v.len == 0)
        return RESET;
    if (v.len != 4 && v.len != 8)
        return -1;
    for (size_t i = 0; i < sizeof(VERBS) / sizeof(VERBS[0]); i++)
        if (VERBS[i].len == v.len && memcmp(v.at, VERBS[i].verb, (size_t)v.len) == 0)
            return VERBS[i].role;
    return -1;
}

static int digits(Span s)
{
    if (!s.len)
        return 0;
    for (Py_ssize_t i = 0; i < s.len; i++)
        if (!is_digit(s.at[i]))
            return 0;
    return 1;
}

static int two(P p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

/* `MM/DD/YY hh:mm:ss`, digits only, seconds 00-60 (_STAMP). */
static int stamp(Span t)
{
    static const char shape[] = "00/00/00 00:00:00";
    if (t.len != 17)
        return 0;
    for (int i = 0; i < 17; i++)
        if (shape[i] == '0' ? !is_digit(t.at[i]) : t.at[i] != shape[i])
            return 0;
    return two(t.at + 15) <= 60;
}

/* valid_minute() of a stamp stamp() accepted. */
static int valid_minute(P t)
{
    static const int mdays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int mo = two(t), day = two(t + 3), yy = two(t + 6), hh = two(t + 9), mi = two(t + 12);
    if (!(mo >= 1 && mo <= 12 && day >= 1 && day <= mdays[mo] && hh < 24 && mi < 60))
        return 0;
    return mo != 2 || day < 29 || yy % 4 == 0;
}

/* The enhanced code reply_codes() finds after a reply's code and separator at r[4]. */
static Span enhanced(Span r)
{
    Span none = {r.at, 0};
    Py_ssize_t q = 4, n = r.len;
    if (q < n && r.at[q] == '(')
        q++;
    if (q < n && r.at[q] == '#')
        q++;
    Py_ssize_t start = q;
    if (!(q < n && (r.at[q] == '2' || r.at[q] == '4' || r.at[q] == '5')))
        return none;
    q++;
    if (!(q < n && r.at[q] == '.'))
        return none;
    q++;
    Py_ssize_t d = q;
    while (q < n && is_digit(r.at[q]) && q - d < 4)
        q++;
    if (q - d < 1 || q - d > 3 || !(q < n && r.at[q] == '.'))
        return none;
    q++;
    d = q;
    while (q < n && is_digit(r.at[q]) && q - d < 4)
        q++;
    if (q - d < 1 || q - d > 3 || (q < n && (is_digit(r.at[q]) || r.at[q] == '.')))
        return none;
    Span got = {r.at + start, q - start};
    return got;
}

typedef struct {
    Span minute, secs, qid, addr, ip, reply, verb, code, enh;
    char dir;
} Row;

/* item() of the line [s, e): SKIP, LINE, or ROW with `w` filled. */
static int item(P s, P e, Row *w)
{
    Span col[12];
    if (e - s > MAX_LINE)
        return LINE;
    P p = s;
    for (int i = 0; i < 11; i++) {
        P tab = memchr(p, '\t', (size_t)(e - p));
        if (!tab)
            return LINE;
        col[i].at = p;
        col[i].len = tab - p;
        p = tab + 1;
    }
    col[11].at = p;
    col[11].len = e - p;
    Span agent = col[1];
    if (agent.len == 7 && memcmp(agent.at, "SMTP-IN", 7) == 0) {
        if (!digits(col[8]) || !digits(col[9]) || memchr(col[11].at, '\t', (size_t)col[11].len))
            return LINE;
        w->dir = 'i';
    } else if (agent.len == 7 && memcmp(agent.at, "SMTP-OU", 7) == 0) {
        w->dir = 'o';
    } else if ((agent.len >= 4 && memcmp(agent.at, "IMAP", 4) == 0) ||
               (agent.len >= 3 && memcmp(agent.at, "POP", 3) == 0)) {
        return SKIP;
    } else {
        return LINE;
    }
    if (!stamp(col[0]))
        return LINE;
    int role = role_of(col[5]);
    if (role < 0)
        return LINE;
    Span r = col[7];
    if (!r.len)
        return role != RESET && valid_minute(col[0].at) ? SKIP : LINE;
    if (!(r.len >= 3 && r.at[0] >= '2' && r.at[0] <= '5' && is_digit(r.at[1]) && is_digit(r.at[2]) &&
          (r.len == 3 || r.at[3] == ' ' || r.at[3] == '-')))
        return LINE;
    w->enh.at = r.at;
    w->enh.len = 0;
    if (r.len > 4 && (r.at[4] == '2' || r.at[4] == '4' || r.at[4] == '5' || r.at[4] == '(' || r.at[4] == '#'))
        w->enh = enhanced(r);
    w->addr.at = s;
    w->addr.len = 0;
    if (role == MAIL || role == RCPT) {
        Span c = col[6];
        P lt = memchr(c.at, '<', (size_t)c.len);
        if (!lt)
            return LINE;
        P a = lt + 1, ce = c.at + c.len;
        P gt = memchr(a, '>', (size_t)(ce - a));
        P ae = gt ? gt : ce;
        for (P q = ae; q > a; q--)
            if (q[-1] == '@') {
                w->addr.at = q - 1;
                w->addr.len = ae - (q - 1);
                break;
            }
    }
    w->minute.at = col[0].at;
    w->minute.len = 14;
    w->secs.at = col[0].at + 15;
    w->secs.len = 2;
    w->qid = col[2];
    if (w->qid.len >= 4 && memcmp(w->qid.at + w->qid.len - 4, ".MAI", 4) == 0)
        w->qid.len -= 4;
    if (w->qid.len > MAX_ID)
        w->qid.len = 0;
    w->ip = col[4];
    if (w->ip.len > MAX_IP)
        w->ip.len = 0;
    w->reply = r;
    if (r.at[0] != '4' && r.at[0] != '5')
        w->reply.len = 0;
    w->verb = col[5];
    w->code.at = r.at;
    w->code.len = 3;
    return ROW;
}

static PyObject *EMPTY, *SECS[61], *MANY, *DOMAIN_OF;
static long STATE_CAP;

/* The few distinct row keys, kept as str objects: a row then costs no new str and no
 * hashing for its key, here or in the dicts that read it (a str caches its hash). */
#define KEYS 1024
static struct {
    Py_ssize_t len;
    char text[32];
    PyObject *key;
} KEY_CACHE[KEYS];
static int KEY_COUNT;

static PyObject *key_of(const char *text, Py_ssize_t n)
{
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (Py_UCS1)text[i]) * 16777619u;
    for (uint32_t i = h;; i++) {
        int k = (int)(i & (KEYS - 1));
        if (!KEY_CACHE[k].key) {
            PyObject *key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, n);
            if (!key)
                return NULL;
            if (KEY_COUNT >= KEYS / 2) { /* a hostile log's many enhanced codes: start over */
                for (int j = 0; j < KEYS; j++)
                    Py_CLEAR(KEY_CACHE[j].key);
                KEY_COUNT = 0;
                k = (int)(h & (KEYS - 1));
            }
            KEY_CACHE[k].len = n;
            memcpy(KEY_CACHE[k].text, text, (size_t)n);
            KEY_CACHE[k].key = Py_NewRef(key);
            KEY_COUNT++;
            return key;
        }
        if (KEY_CACHE[k].len == n && memcmp(KEY_CACHE[k].text, text, (size_t)n) == 0)
            return Py_NewRef(KEY_CACHE[k].key);
    }
}


/* ---- Runs: a chunk's consecutive rows, kept as offsets into it ----
 *
 * A Python tuple and a line str per row cost more than reading the row (decision 0019). A Run
 * keeps each row's fields as offsets into the chunk, makes one str (its first line: parse() is
 * given that very object if the batch goes line by line) and shares its keys; tally() reads it
 * directly. rows() and lines() make item()'s tuples and the lines, for tests and the fallback. */

typedef struct {
    uint32_t line, len; /* the line: chunk[line, line + len) */
    uint32_t qid, addr, addr_len, ip, reply, reply_len;
    uint32_t key;       /* index into the run's keys */
    uint8_t qid_len, ip_len;
} CRow;

typedef struct {
    PyObject_HEAD
    PyObject *chunk; /* a 1-byte-kind str */
    PyObject *first; /* the first row's line */
    PyObject **keys; /* each distinct row key (key_of()'s str), owned */
    Py_ssize_t nkeys, kcap;
    CRow *rows;
    Py_ssize_t n, cap;
} RunObject;

static void run_dealloc(RunObject *r)
{
    Py_XDECREF(r->chunk);
    Py_XDECREF(r->first);
    for (Py_ssize_t i = 0; i < r->nkeys; i++)
        Py_DECREF(r->keys[i]);
    PyMem_Free(r->keys);
    PyMem_Free(r->rows);
    PyObject_Free(r);
}

static Py_ssize_t run_len(RunObject *r) { return r->n; }

static PyObject *span_of(RunObject *r, uint32_t at, uint32_t len)
{
    return len ? PyUnicode_Substring(r->chunk, at, (Py_ssize_t)at + len) : Py_NewRef(EMPTY);
}

static PyObject *line_of(RunObject *r, Py_ssize_t i)
{
    return i ? span_of(r, r->rows[i].line, r->rows[i].len) : Py_NewRef(r->first);
}

static PyObject *run_lines(RunObject *r, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(r->n);
    for (Py_ssize_t i = 0; out && i < r->n; i++) {
        PyObject *line = line_of(r, i);
        if (!line)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, line);
    }
    return out;
}

/* Each row as mailenable_bulk.item() gives it (a tuple of 8 str). */
static PyObject *run_rows(RunObject *r, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(r->n);
    for (Py_ssize_t i = 0; out && i < r->n; i++) {
        const CRow *w = &r->rows[i];
        P line = PyUnicode_1BYTE_DATA(r->chunk) + w->line;
        PyObject *row = Py_BuildValue("(NOONNNNN)", span_of(r, w->line, 14), SECS[two(line + 15)], r->keys[w->key],
                                      span_of(r, w->qid, w->qid_len), span_of(r, w->addr, w->addr_len),
                                      span_of(r, w->ip, w->ip_len), span_of(r, w->reply, w->reply_len), line_of(r, i));
        if (!row)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, row);
    }
    return out;
}

static PySequenceMethods run_as_sequence = {.sq_length = (lenfunc)run_len};

static PyMethodDef run_methods[] = {
    {"lines", (PyCFunction)run_lines, METH_NOARGS, "lines() -> list[str]: each row's line, in order."},
    {"rows", (PyCFunction)run_rows, METH_NOARGS, "rows() -> list[tuple[str, ...]]: each row as item() gives it."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef run_members[] = {
    {"first", T_OBJECT_EX, offsetof(RunObject, first), READONLY, "The first row's line (lines()[0] is this object)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RunType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "logscan.parsers._mailenable_scan.Run",
    .tp_basicsize = sizeof(RunObject),
    .tp_dealloc = (destructor)run_dealloc,
    .tp_as_sequence = &run_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A run of consecutive rows of one chunk, read by tally().",
    .tp_methods = run_methods,
    .tp_members = run_members,
};

static RunObject *run_new(PyObject *chunk, Py_ssize_t so, Py_ssize_t eo)
{
    RunObject *r = PyObject_New(RunObject, &RunType);
    if (!r)
        return NULL;
    r->chunk = Py_NewRef(chunk);
    r->keys = NULL;
    r->rows = NULL;
    r->nkeys = r->kcap = r->n = r->cap = 0;
    if (!(r->first = PyUnicode_Substring(chunk, so, eo))) {
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

/* Appends the row `w` of the line [s, e) of `data`; kc/ki: key pointer -> index, per run. */
static int run_push(RunObject *r, const Row *w, P data, P s, P e, PyObject **kc, Py_ssize_t *ki)
{
    char buf[32];
    Py_ssize_t n = 1 + w->verb.len + 1 + 3 + 1 + w->enh.len;
    if (n > (Py_ssize_t)sizeof(buf)) { /* cannot be: verbs have at most 8 characters, enhanced codes 9 */
        PyErr_SetString(PyExc_SystemError, "_mailenable_scan: row key too long");
        return -1;
    }
    char *b = buf;
    *b++ = w->dir;
    memcpy(b, w->verb.at, (size_t)w->verb.len);
    b += w->verb.len;
    *b++ = '\t';
    memcpy(b, w->code.at, 3);
    b += 3;
    *b++ = '\t';
    if (w->enh.len)
        memcpy(b, w->enh.at, (size_t)w->enh.len);
    PyObject *key = key_of(buf, n);
    if (!key)
        return -1;
    int slot = (int)(((uintptr_t)key >> 4) & 63);
    Py_ssize_t idx;
    if (kc[slot] == key) { /* the run owns its keys: a pointer seen in it stays that key */
        idx = ki[slot];
        Py_DECREF(key);
    } else {
        for (idx = 0; idx < r->nkeys && r->keys[idx] != key; idx++)
            ;
        if (idx == r->nkeys) {
            if (r->nkeys == r->kcap) {
                Py_ssize_t cap = r->kcap ? 2 * r->kcap : 32;
                PyObject **keys = PyMem_Realloc(r->keys, sizeof(PyObject *) * (size_t)cap);
                if (!keys) {
                    Py_DECREF(key);
                    PyErr_NoMemory();
                    return -1;
                }
                r->keys = keys;
                r->kcap = cap;
            }
            r->keys[r->nkeys++] = key; /* owned */
        } else {
            Py_DECREF(key);
        }
        kc[slot] = r->keys[idx];
        ki[slot] = idx;
    }
    if (r->n == r->cap) {
        Py_ssize_t cap = r->cap ? 2 * r->cap : 256;
        CRow *rows = PyMem_Realloc(r->rows, sizeof(CRow) * (size_t)cap);
        if (!rows) {
            PyErr_NoMemory();
            return -1;
        }
        r->rows = rows;
        r->cap = cap;
    }
    CRow *c = &r->rows[r->n++];
    c->line = (uint32_t)(s - data);
    c->len = (uint32_t)(e - s);
    c->qid = (uint32_t)(w->qid.at - data);
    c->qid_len = (uint8_t)w->qid.len;
    c->addr = (uint32_t)(w->addr.at - data);
    c->addr_len = (uint32_t)w->addr.len;
    c->ip = (uint32_t)(w->ip.at - data);
    c->ip_len = (uint8_t)w->ip.len;
    c->reply = (uint32_t)(w->reply.at - data);
    c->reply_len = (uint32_t)w->reply.len;
    c->key = (uint32_t)idx;
    return 0;
}

static int append_new(PyObject *list, PyObject *it)
{
    int rc = it ? PyList_Append(list, it) : -1;
    Py_XDECREF(it);
    return rc;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out;
    int want_rows;
    (void)self;
    if (!PyArg_ParseTuple(args, "Up", &chunk, &want_rows))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(chunk);
    if (PyUnicode_KIND(chunk) != PyUnicode_1BYTE_KIND || n == 0 || PyUnicode_1BYTE_DATA(chunk)[n - 1] != '\n' ||
        n >= (Py_ssize_t)UINT32_MAX)
        Py_RETURN_NONE;
    P data = PyUnicode_1BYTE_DATA(chunk), end = data + n;
    if (!(out = PyList_New(0)))
        return NULL;
    Py_ssize_t lines = 0, ki[64];
    PyObject *kc[64];
    RunObject *run = NULL;
    Row w = {0};
    for (P s = data; s < end;) {
        P e = memchr(s, '\n', (size_t)(end - s)), line = s;
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int kind = item(s, e, &w);
        s = e + 1;
        if (kind == SKIP)
            continue;
        if (kind == ROW && want_rows) {
            if (!run) {
                if (!(run = run_new(chunk, so, eo)))
                    goto fail;
                memset(kc, 0, sizeof(kc));
            }
            if (run_push(run, &w, data, line, e, kc, ki) < 0)
                goto fail;
            continue;
        }
        if (run) {
            int rc = PyList_Append(out, (PyObject *)run);
            Py_CLEAR(run);
            if (rc < 0)
                goto fail;
        }
        if (append_new(out, PyUnicode_Substring(chunk, so, eo)) < 0)
            goto fail;
    }
    if (run) {
        int rc = PyList_Append(out, (PyObject *)run);
        Py_CLEAR(run);
        if (rc < 0)
            goto fail;
    }
    return Py_BuildValue("(nN)", lines, out);
fail:
    Py_XDECREF(run);
    Py_DECREF(out);
    return NULL;
}

/* ---- Tables of str by their characters: message files, IPs, domains, reasons ----
 *
 * Process-wide and bounded (a full neighbourhood replaces its first slot). What they map is
 * a pure function of the characters (domain_of(), reason_of()), so sharing them is exact. */

typedef struct {
    uint32_t h;
    PyObject *key, *value;
} Slot;

#define QIDS 4096 /* a session's rows mostly reuse the previous row's (Last): this only saves a str */
#define IPS 4096
#define DOMAINS 8192
#define REPLIES 2048
static Slot QID_T[QIDS], IP_T[IPS], DOMAIN_T[DOMAINS], REPLY_T[REPLIES], CLASSIFIED_T[REPLIES];

static uint32_t fnv(P at, Py_ssize_t n)
{
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ at[i]) * 16777619u;
    return h;
}

/* The slot of these characters in `t` (size mask + 1), or an empty one to fill. */
static Slot *slot_of(Slot *t, size_t mask, P at, Py_ssize_t n, uint32_t h)
{
    size_t i = h & mask;
    for (int probe = 0; probe < 4; probe++, i = (i + 1) & mask) {
        Slot *s = &t[i];
        if (!s->key)
            return s;
        if (s->h == h && PyUnicode_GET_LENGTH(s->key) == n && memcmp(PyUnicode_1BYTE_DATA(s->key), at, (size_t)n) == 0)
            return s;
    }
    Slot *s = &t[h & mask];
    Py_CLEAR(s->key);
    Py_CLEAR(s->value);
    return s;
}

/* The str of these characters (new reference), shared through `t`. */
static PyObject *shared_str(Slot *t, size_t mask, P at, Py_ssize_t n)
{
    if (!n)
        return Py_NewRef(EMPTY);
    uint32_t h = fnv(at, n);
    Slot *s = slot_of(t, mask, at, n, h);
    if (!s->key) {
        if (!(s->key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, at, n)))
            return NULL;
        s->h = h;
    }
    return Py_NewRef(s->key);
}

/* The str of these characters as last time, when they are the same (a session's rows share
 * their message file and IP, its MAIL and RCPT rows often their domain), else from `t`: a new
 * reference. `last` holds the characters and their str. */
typedef struct {
    P at;
    Py_ssize_t n;
    PyObject *str;
} Last;

/* last_or(), qid_str() and minute_of() are always inlined: tally() calls them for every row, and
 * the compiler stopped inlining them by itself once tally() grew with its grouped entries. */
static Py_ALWAYS_INLINE PyObject *last_or(Last *last, P at, Py_ssize_t n, PyObject *(*make)(P, Py_ssize_t))
{
    if (last->str && last->n == n && memcmp(last->at, at, (size_t)n) == 0)
        return Py_NewRef(last->str);
    PyObject *o = make(at, n);
    if (o) {
        Py_XSETREF(last->str, Py_NewRef(o));
        last->at = at;
        last->n = n;
    }
    return o;
}

static Py_ALWAYS_INLINE PyObject *qid_str(P at, Py_ssize_t n) { return shared_str(QID_T, QIDS - 1, at, n); }
static PyObject *ip_str(P at, Py_ssize_t n) { return shared_str(IP_T, IPS - 1, at, n); }

/* domain_of() of a MAIL/RCPT address from its last "@" (mailenable_bulk._domain). */
static PyObject *domain_at(P at, Py_ssize_t n)
{
    if (!n)
        return Py_NewRef(EMPTY); /* domain_of("") */
    Slot *s = NULL;
    uint32_t h = 0;
    if (n <= MEMO_LEN) { /* longer ones are junk: computed, never kept */
        h = fnv(at, n);
        s = slot_of(DOMAIN_T, DOMAINS - 1, at, n, h);
        if (s->key)
            return Py_NewRef(s->value);
    }
    PyObject *addr = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, at, n), *d;
    if (!addr)
        return NULL;
    if (!(d = PyObject_CallOneArg(DOMAIN_OF, addr)) || !PyUnicode_Check(d)) {
        if (d) {
            Py_DECREF(d);
            PyErr_SetString(PyExc_TypeError, "tally: domain_of() gave no str");
        }
        Py_DECREF(addr);
        return NULL;
    }
    if (s) {
        s->h = h;
        s->key = addr;
        s->value = Py_NewRef(d);
    } else {
        Py_DECREF(addr);
    }
    return d;
}

/* What reasons.classify() reads of a reply: its first MAX_TEXT characters lower-cased (a
 * Latin-1 str: A-Z and U+00C0-U+00DE but U+00D7 move by 32) with each address `<[^<>]{0,320}>`
 * made one space, after the reply's enhanced code and a NUL. Its length, at most
 * ENH_MAX + 1 + MAX_TEXT. */
#define ENH_MAX 16
static Py_ssize_t classified_text(P at, Py_ssize_t n, Span enh, Py_UCS1 *out)
{
    Py_ssize_t o = 0;
    if (enh.len > ENH_MAX)
        return -1; /* cannot be: enhanced() reads at most 11 characters */
    memcpy(out, enh.at, (size_t)enh.len);
    o = enh.len;
    out[o++] = 0;
    if (n > MAX_TEXT)
        n = MAX_TEXT;
    for (Py_ssize_t i = 0; i < n;) {
        Py_UCS1 c = at[i];
        if (c == '<') {
            Py_ssize_t j = i + 1;
            while (j < n && j - (i + 1) <= 320 && at[j] != '<' && at[j] != '>')
                j++;
            if (j < n && at[j] == '>' && j - (i + 1) <= 320) {
                out[o++] = ' ';
                i = j + 1;
                continue;
            }
        }
        out[o++] = (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ? (Py_UCS1)(c + 32) : c;
        i++;
    }
    return o;
}

/* The reason of a 4xx/5xx reply: reason_of(reply), kept by the reply (up to MAX_TEXT long)
 * and by what classify() reads of it, as replies that differ only in their addresses abound. */
static PyObject *reason_at(P at, Py_ssize_t n, PyObject *reason_of)
{
    Slot *s = NULL, *c = NULL;
    uint32_t h = 0, hc = 0;
    if (n <= MAX_TEXT) {
        h = fnv(at, n);
        s = slot_of(REPLY_T, REPLIES - 1, at, n, h);
        if (s->key)
            return Py_NewRef(s->value);
    }
    Py_UCS1 text[ENH_MAX + 1 + MAX_TEXT];
    Span r = {at, n}, enh = {at, 0};
    if (n > 4 && (at[4] == '2' || at[4] == '4' || at[4] == '5' || at[4] == '(' || at[4] == '#'))
        enh = enhanced(r);
    Py_ssize_t tn = classified_text(at, n, enh, text);
    if (tn >= 0) {
        hc = fnv(text, tn);
        c = slot_of(CLASSIFIED_T, REPLIES - 1, text, tn, hc);
    }
    PyObject *reply = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, at, n), *reason;
    if (!reply)
        return NULL;
    if (c && c->key) {
        reason = Py_NewRef(c->value);
    } else if (!(reason = PyObject_CallOneArg(reason_of, reply))) {
        Py_DECREF(reply);
        return NULL;
    } else if (c && !(c->key = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, tn))) {
        Py_DECREF(reply);
        Py_DECREF(reason);
        return NULL;
    } else if (c) {
        c->h = hc;
        c->value = Py_NewRef(reason);
    }
    if (s) {
        s->h = h;
        s->key = reply;
        s->value = Py_NewRef(reason);
    } else {
        Py_DECREF(reply);
    }
    return reason;
}

/* tx.pop(key, None) */
static int forget(PyObject *tx, PyObject *key)
{
    int has = PyDict_Contains(tx, key);
    return has <= 0 ? has : PyDict_DelItem(tx, key);
}

/* mailenable.remember(): tx[key] = (a, b), dropping the oldest tenth first when full. */
static int remember(PyObject *tx, PyObject *key, PyObject *a, PyObject *b)
{
    int has = PyDict_Contains(tx, key);
    if (has < 0)
        return -1;
    if (!has && PyDict_GET_SIZE(tx) >= STATE_CAP) {
        Py_ssize_t drop = STATE_CAP / 10, pos = 0, i = 0;
        PyObject *old = PyList_New(0), *k, *v;
        if (!old)
            return -1;
        while (i < drop && PyDict_Next(tx, &pos, &k, &v)) {
            if (PyList_Append(old, k) < 0) {
                Py_DECREF(old);
                return -1;
            }
            i++;
        }
        for (i = 0; i < PyList_GET_SIZE(old); i++)
            if (PyDict_DelItem(tx, PyList_GET_ITEM(old, i)) < 0) {
                Py_DECREF(old);
                return -1;
            }
        Py_DECREF(old);
    }
    PyObject *value = PyTuple_Pack(2, a, b);
    if (!value)
        return -1;
    PyObject_GC_UnTrack(value); /* two str: in no cycle (so for every tuple made here) */
    int rc = PyDict_SetItem(tx, key, value);
    Py_DECREF(value);
    return rc;
}

/* tx.get(qid) as a new reference to a pair of str; NULL without an error when missing. */
static PyObject *known_of(PyObject *tx, PyObject *qid)
{
    PyObject *k = PyDict_GetItemWithError(tx, qid);
    if (!k)
        return NULL;
    if (!PyTuple_Check(k) || PyTuple_GET_SIZE(k) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(k, 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(k, 1))) {
        PyErr_SetString(PyExc_TypeError, "walk: a transaction is not a pair of str");
        return NULL;
    }
    return Py_NewRef(k);
}

/* Python's int(t // 60) for a float t (CPython's float floor division, then int()). */
static Py_ALWAYS_INLINE long minute_of(double t)
{
    /* A whole positive number of seconds (every time a log gives): integer division gives the
     * same, and glibc's fmod() costs more than the rest of a row's time. */
    if (t > 0.0 && t < 4503599627370496.0 /* 2^52 */) {
        long long whole = (long long)t;
        if ((double)whole == t)
            return (long)(whole / 60);
    }
    double mod = fmod(t, 60.0), div = (t - mod) / 60.0, fl;
    if (mod && mod < 0)
        div -= 1.0;
    if (div) {
        fl = floor(div);
        if (div - fl > 0.5)
            fl += 1.0;
    } else {
        fl = 0.0;
    }
    return (long)fl;
}


/* counts[key] += n (0 when missing). */
static int add_count(PyObject *counts, PyObject *key, long n)
{
    PyObject *had = PyDict_GetItemWithError(counts, key);
    long before = 0;
    if (had) {
        if (!n)
            return 0;
        before = PyLong_AsLong(had);
        if (before == -1 && PyErr_Occurred())
            return -1;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *v = PyLong_FromLong(before + n);
    int rc = v ? PyDict_SetItem(counts, key, v) : -1;
    Py_XDECREF(v);
    return rc;
}


/* One row's step of walk(): sets *sender and *recipient (new references). */
static int step(long kind, PyObject *qid, P addr, Py_ssize_t addr_len, Last *last, PyObject *tx,
                PyObject **sender, PyObject **recipient)
{
    int role = (int)(kind & 7);
    PyObject *known;
    int has_qid = PyUnicode_GET_LENGTH(qid) > 0;
    if (role == RCPT) {
        PyObject *r = last_or(last, addr, addr_len, domain_at);
        if (!r)
            return -1;
        Py_SETREF(*recipient, r);
        known = known_of(tx, qid);
        if (!known && PyErr_Occurred())
            return -1;
        if (known)
            Py_SETREF(*sender, Py_NewRef(PyTuple_GET_ITEM(known, 0)));
        int rc = 0;
        if ((kind & OK_2XX) && has_qid && PyUnicode_GET_LENGTH(r) > 0) {
            if (!known) {
                rc = remember(tx, qid, EMPTY, r);
            } else {
                PyObject *k1 = PyTuple_GET_ITEM(known, 1);
                int ne = PyUnicode_Compare(k1, r);
                if (ne == -1 && PyErr_Occurred())
                    rc = -1;
                else if (ne) {
                    PyObject *v = PyTuple_Pack(2, PyTuple_GET_ITEM(known, 0), PyUnicode_GET_LENGTH(k1) ? MANY : r);
                    if (v)
                        PyObject_GC_UnTrack(v);
                    rc = v ? PyDict_SetItem(tx, qid, v) : -1;
                    Py_XDECREF(v);
                }
            }
        }
        Py_XDECREF(known);
        return rc;
    }
    if (role == MAIL) {
        PyObject *d = last_or(last, addr, addr_len, domain_at);
        if (!d)
            return -1;
        Py_SETREF(*sender, d);
        return (kind & OK_2XX) && has_qid ? remember(tx, qid, d, EMPTY) : forget(tx, qid);
    }
    if (role == CARRY) {
        known = known_of(tx, qid);
        if (!known)
            return PyErr_Occurred() ? -1 : 0;
        PyObject *k1 = PyTuple_GET_ITEM(known, 1);
        int many = PyUnicode_Compare(k1, MANY);
        if (many == -1 && PyErr_Occurred()) {
            Py_DECREF(known);
            return -1;
        }
        Py_SETREF(*sender, Py_NewRef(PyTuple_GET_ITEM(known, 0)));
        if (many)
            Py_SETREF(*recipient, Py_NewRef(k1));
        Py_DECREF(known);
        return 0;
    }
    return forget(tx, qid);
}

#define HOUR_LEN 11 /* `MM/DD/YY hh` */

/* The start of the hour `MM/DD/YY hh` at `at` into *base: hours[hour], or learn_hour(hour) for
 * a new one. 1 when found, 0 when parse() must date it (learn_hour gave None), -1 on error. */
static int hour_start(P at, PyObject *hours, PyObject *learn_hour, double *base)
{
    PyObject *hour = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, at, HOUR_LEN), *got;
    if (!hour)
        return -1;
    got = PyDict_GetItemWithError(hours, hour);
    if (got) {
        Py_INCREF(got);
    } else if (PyErr_Occurred() || !(got = PyObject_CallOneArg(learn_hour, hour))) {
        Py_DECREF(hour);
        return -1;
    }
    Py_DECREF(hour);
    int rc = 1;
    if (got == Py_None)
        rc = 0;
    else if (PyFloat_Check(got))
        *base = PyFloat_AS_DOUBLE(got);
    else {
        PyErr_SetString(PyExc_TypeError, "tally: an hour's start is not a float");
        rc = -1;
    }
    Py_DECREF(got);
    return rc;
}

/* What tally() needs of a row key, from its kind (bits, class, cell, reply). */
typedef struct {
    long bits, cell, count;
    PyObject *klass, *reply; /* borrowed from `kinds`, which only grows during a call */
    Py_ssize_t same;         /* grouped: the first key of the run with an equal reply */
    Py_hash_t hash;          /* grouped: the reply's hash */
} KeyInfo;

/* Adds the bounce-ratio cells of one minute to `minutes`. */
static int put_minute(PyObject *minutes, long bucket, const long *cells)
{
    PyObject *v = Py_BuildValue("[lll]", cells[0], cells[1], cells[2]), *kb = PyLong_FromLong(bucket);
    int rc = v && kb ? PyDict_SetItem(minutes, kb, v) : -1;
    Py_XDECREF(v);
    Py_XDECREF(kb);
    return rc;
}

/* A grouped batch's entries (base.per_minute()), kept in C until the batch ends: the lists are
 * then made at their size, and an entry with its predecessor's time shares its float (a quiet
 * minute's replies mostly come in one second), which per-entry appends and floats cost. */
typedef struct {
    double *t;
    PyObject **reply; /* borrowed from the kinds memo, which lives through tally() */
    long *n;
    Py_ssize_t len;
} Entries;

/* The entries of one minute: each reply's (first time, reply, count) in the order replies first
 * occur (gorder: the first key of each; the counts go back to 0), then (last time, last reply, 0).
 * `e` has room: a minute has at most one entry per row, plus its last. */
static void put_group(Entries *e, const KeyInfo *ki, const Py_ssize_t *gorder, Py_ssize_t ng,
                      const double *gfirst, long *gcount, double last, PyObject *last_reply)
{
    for (Py_ssize_t g = 0; g < ng; g++) {
        Py_ssize_t key = gorder[g];
        e->t[e->len] = gfirst[key];
        e->reply[e->len] = ki[key].reply;
        e->n[e->len++] = gcount[key];
        gcount[key] = 0;
    }
    e->t[e->len] = last;
    e->reply[e->len] = last_reply;
    e->n[e->len++] = 0;
}

/* New references to the lists times, codes, weights of the entries, or -1. */
static int entry_lists(const Entries *e, PyObject **times, PyObject **codes, PyObject **weights)
{
    PyObject *tl = PyList_New(e->len), *cl = PyList_New(e->len), *wl = PyList_New(e->len), *prev = NULL;
    if (!tl || !cl || !wl)
        goto fail;
    for (Py_ssize_t i = 0; i < e->len; i++) {
        /* the same bits, not ==: 0.0 and -0.0 are equal floats that print differently */
        int again = prev && memcmp(&e->t[i], &e->t[i - 1], sizeof(double)) == 0;
        PyObject *tf = again ? Py_NewRef(prev) : PyFloat_FromDouble(e->t[i]);
        PyObject *w = PyLong_FromLong(e->n[i]);
        if (!tf || !w) {
            Py_XDECREF(tf);
            Py_XDECREF(w);
            goto fail;
        }
        PyList_SET_ITEM(tl, i, tf);
        PyList_SET_ITEM(cl, i, Py_NewRef(e->reply[i]));
        PyList_SET_ITEM(wl, i, w);
        prev = tf;
    }
    *times = tl, *codes = cl, *weights = wl;
    return 0;
fail: /* a list's items not yet set are NULL, which its dealloc skips */
    Py_XDECREF(tl);
    Py_XDECREF(cl);
    Py_XDECREF(wl);
    return -1;
}

/* tally(run, kinds, hours, tx, each_reply, compact, grouped, walk, learn_key, learn_hour, reason_of):
 * MailEnableBulk._tally_python() of a Run in one call. kinds: key -> (bits, class, cell, reply),
 * learn_key(key) adds a missing one; hours: `MM/DD/YY hh` -> its start, learn_hour(hour) adds a
 * missing one or gives None (then tally gives None: parse() must date it); reason_of(reply): a
 * 4xx/5xx reply's reason. None also when the bounce-ratio minutes go back; in both cases nothing
 * has changed. Else, without `walk`, (minutes, last) and still nothing changed (what
 * Aggregate.add_batch decides on); with it, after parse()'s state steps on tx, (counts, labels,
 * classes, codes, times, minutes, last, reasons, refusals, unnamed, weights). With each_reply and
 * `grouped`, codes, times and weights are grouped per minute when the times never go back. */
static PyObject *tally(PyObject *self, PyObject *args)
{
    RunObject *run;
    PyObject *kinds, *hours, *tx, *learn_key, *learn_hour, *reason_of;
    int each, compact, grouped, walk;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!ppppOOO", &RunType, &run, &PyDict_Type, &kinds, &PyDict_Type, &hours,
                          &PyDict_Type, &tx, &each, &compact, &grouped, &walk, &learn_key, &learn_hour,
                          &reason_of))
        return NULL;
    Py_ssize_t n = run->n, nk = run->nkeys;
    P data = PyUnicode_1BYTE_DATA(run->chunk);
    PyObject *result = NULL, *counts = NULL, *labels = NULL, *classes = NULL, *codes = NULL, *times = NULL;
    PyObject *minutes = NULL, *refusals = NULL, *reasons = NULL, *unnamed = NULL, *weights = NULL;
    Last last_qid = {NULL, 0, NULL}, last_addr = {NULL, 0, NULL}, last_ip = {NULL, 0, NULL};
    double *tv = PyMem_Malloc(sizeof(double) * (size_t)(n ? n : 1));
    KeyInfo *ki = PyMem_Calloc((size_t)(nk ? nk : 1), sizeof(KeyInfo));
    Py_ssize_t *order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nk ? nk : 1)), norder = 0;
    /* A grouped batch's minute so far: each key's count and first time, keys in first-seen order. */
    Py_ssize_t *gorder = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(nk ? nk : 1)), ng = 0;
    double *gfirst = PyMem_Malloc(sizeof(double) * (size_t)(nk ? nk : 1));
    long *gcount = PyMem_Calloc((size_t)(nk ? nk : 1), sizeof(long));
    Entries ent = {NULL, NULL, NULL, 0};
    if (!tv || !ki || !order || !gorder || !gfirst || !gcount) {
        PyErr_NoMemory();
        goto done;
    }
    /* Pass 1, changing nothing: every key's kind and every hour known, the times, minutes in order. */
    for (Py_ssize_t k = 0; k < nk; k++) {
        PyObject *key = run->keys[k], *kind = PyDict_GetItemWithError(kinds, key);
        if (!kind) { /* a key met for the first time: learn_key() reads it and keeps it in kinds */
            PyObject *got;
            if (PyErr_Occurred() || !(got = PyObject_CallOneArg(learn_key, key)))
                goto done;
            Py_DECREF(got);
            if (!(kind = PyDict_GetItemWithError(kinds, key))) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_RuntimeError, "tally: learn_key did not keep the key");
                goto done;
            }
        }
        if (!PyTuple_Check(kind) || PyTuple_GET_SIZE(kind) != 4 || !PyTuple_Check(PyTuple_GET_ITEM(kind, 3)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(kind, 3)) != 3) {
            PyErr_SetString(PyExc_TypeError, "tally: a kind is not (bits, class, cell, reply)");
            goto done;
        }
        ki[k].bits = PyLong_AsLong(PyTuple_GET_ITEM(kind, 0));
        ki[k].cell = PyLong_AsLong(PyTuple_GET_ITEM(kind, 2));
        if ((ki[k].bits == -1 || ki[k].cell == -1) && PyErr_Occurred())
            goto done;
        ki[k].klass = PyTuple_GET_ITEM(kind, 1);
        ki[k].reply = PyTuple_GET_ITEM(kind, 3);
        ki[k].same = k;
        /* A grouped batch counts replies, not keys (several keys share a reply, e.g. verbs). */
        if (each && grouped) {
            if ((ki[k].hash = PyObject_Hash(ki[k].reply)) == -1)
                goto done;
            for (Py_ssize_t j = 0; j < k; j++) {
                int eq = ki[j].hash == ki[k].hash ? PyObject_RichCompareBool(ki[j].reply, ki[k].reply, Py_EQ) : 0;
                if (eq < 0)
                    goto done;
                if (eq) {
                    ki[k].same = ki[j].same;
                    break;
                }
            }
        }
    }
    Py_UCS1 last_minute[14] = {0}, last_hour[HOUR_LEN] = {0};
    int have_minute = 0, have_hour = 0, back = 0, ordered = 1;
    long cells[3] = {0, 0, 0}; /* the bounce-ratio minute last_bucket's [sent, bounced, expired] */
    if (!(minutes = PyDict_New()))
        goto done;
    double base = 0.0, start = 0.0, last = 0.0;
    long last_bucket = LONG_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        const CRow *w = &run->rows[i];
        P line = data + w->line;
        if (!have_minute || memcmp(line, last_minute, 14) != 0) {
            if (!have_hour || memcmp(line, last_hour, HOUR_LEN) != 0) {
                int got = hour_start(line, hours, learn_hour, &base);
                if (got < 0)
                    goto done;
                if (!got) {
                    result = Py_NewRef(Py_None);
                    goto done;
                }
                memcpy(last_hour, line, HOUR_LEN);
                have_hour = 1;
            }
            int mi = two(line + 12);
            if (mi >= 60) { /* parse()'s clock refuses it */
                result = Py_NewRef(Py_None);
                goto done;
            }
            start = base + (double)(mi * 60); /* as Clock.local(): base + minute * 60 + 0, exact */
            memcpy(last_minute, line, 14);
            have_minute = 1;
        }
        double t = start + (double)two(line + 15);
        if (i > 0 && t < tv[i - 1])
            ordered = 0;
        tv[i] = t;
        if (i == 0 || t > last)
            last = t;
        if (ki[w->key].cell < 2) {
            long b = minute_of(t);
            if (b < last_bucket) {
                back = 1;
                break;
            }
            if (b != last_bucket) {
                if (last_bucket != LONG_MIN && put_minute(minutes, last_bucket, cells) < 0)
                    goto done;
                cells[0] = cells[1] = cells[2] = 0;
                last_bucket = b;
            }
            cells[ki[w->key].cell]++;
        }
    }
    if (back || !n) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (last_bucket != LONG_MIN && put_minute(minutes, last_bucket, cells) < 0)
        goto done;
    if (!walk) {
        result = Py_BuildValue("(Od)", minutes, last);
        goto done;
    }
    /* Pass 2: parse()'s state steps, and the per-row lists. */
    int group = each && grouped && ordered, listed_each = each && !group;
    long gminute = LONG_MIN;
    double glast = 0.0;
    PyObject *glast_reply = NULL;
    if (group) { /* at most an entry per row and one more per minute, itself at most one per row */
        size_t cap = 2 * (size_t)(n ? n : 1);
        ent.t = PyMem_Malloc(sizeof(double) * cap);
        ent.reply = PyMem_Malloc(sizeof(PyObject *) * cap);
        ent.n = PyMem_Malloc(sizeof(long) * cap);
        if (!ent.t || !ent.reply || !ent.n) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (!(counts = PyDict_New()) || !(labels = PyList_New(0)) || !(classes = PyList_New(0)) ||
        !(codes = PyList_New(listed_each ? n : 0)) || !(times = PyList_New(listed_each ? n : 0)) ||
        !(refusals = PyList_New(0)) || !(reasons = PyDict_New()) || !(unnamed = PyDict_New()) ||
        !(weights = PyList_New(0)))
        goto done;
    /* With `compact`, events without a domain after the first of their class are only
     * counted per class (uc/un, by the class object): see mailenable_bulk.compact(). */
    PyObject *uc[UNNAMED] = {NULL};
    long un[UNNAMED] = {0};
    int nu = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const CRow *w = &run->rows[i];
        KeyInfo *k = &ki[w->key];
        if (k->count++ == 0)
            order[norder++] = w->key; /* Counter's order: as keys first occur */
        long bits = k->bits;
        PyObject *sender = Py_NewRef(EMPTY), *recipient = Py_NewRef(EMPTY), *qid = NULL;
        int rc = 0;
        if (bits & 7) {
            qid = last_or(&last_qid, data + w->qid, w->qid_len, qid_str);
            rc = qid ? step(bits, qid, data + w->addr, w->addr_len, &last_addr, tx, &sender, &recipient) : -1;
            Py_XDECREF(qid);
        }
        PyObject *label = bits & OUTBOUND ? recipient : sender, *klass = k->klass;
        int listed = 1;
        if (rc == 0 && compact && PyUnicode_GET_LENGTH(label) == 0) {
            int u = 0;
            while (u < nu && uc[u] != klass)
                u++;
            if (u < nu) {
                un[u]++;
                listed = 0;
            } else if (nu < UNNAMED) {
                uc[nu] = klass; /* its first: listed, so its key is counted in the batch's order */
                un[nu++] = 0;
            }
        }
        if (rc == 0 && listed && (PyList_Append(labels, label) < 0 || PyList_Append(classes, klass) < 0))
            rc = -1;
        double t = tv[i];
        if (rc == 0 && group) {
            long m = minute_of(t);
            if (m != gminute) {
                if (gminute != LONG_MIN)
                    put_group(&ent, ki, gorder, ng, gfirst, gcount, glast, glast_reply);
                ng = 0;
                gminute = m;
            }
            Py_ssize_t g = k->same;
            if (gcount[g]++ == 0) {
                gorder[ng++] = g;
                gfirst[g] = t;
            }
            glast = t;
            glast_reply = k->reply;
        }
        if (rc == 0 && listed_each) {
            PyObject *tf = PyFloat_FromDouble(t);
            if (!tf)
                rc = -1;
            else {
                PyList_SET_ITEM(times, i, tf);
                PyList_SET_ITEM(codes, i, Py_NewRef(k->reply));
            }
        }
        if (rc == 0 && (bits & REFUSAL)) {
            PyObject *reason = reason_at(data + w->reply, w->reply_len, reason_of), *ip = NULL, *rkey = NULL;
            PyObject *direction = PyTuple_GET_ITEM(k->reply, 0), *code = PyTuple_GET_ITEM(k->reply, 1);
            rc = -1;
            if (reason && (ip = last_or(&last_ip, data + w->ip, w->ip_len, ip_str)) &&
                (rkey = PyTuple_Pack(3, direction, code, reason)) && add_count(reasons, rkey, 1) == 0) {
                PyObject *r = Py_BuildValue("(lOOOOOO)", minute_of(t), direction, code, reason, sender, ip, recipient);
                if (r) {
                    PyObject_GC_UnTrack(r);
                    rc = PyList_Append(refusals, r);
                    Py_DECREF(r);
                }
            }
            Py_XDECREF(reason);
            Py_XDECREF(ip);
            Py_XDECREF(rkey);
        }
        Py_DECREF(sender);
        Py_DECREF(recipient);
        if (rc < 0)
            goto done;
    }
    for (Py_ssize_t j = 0; j < norder; j++) {
        PyObject *c = PyLong_FromLong(ki[order[j]].count);
        int rc = c ? PyDict_SetItem(counts, run->keys[order[j]], c) : -1;
        Py_XDECREF(c);
        if (rc < 0)
            goto done;
    }
    for (int u = 0; u < nu; u++)
        if (un[u] && add_count(unnamed, uc[u], un[u]) < 0)
            goto done;
    if (gminute != LONG_MIN)
        put_group(&ent, ki, gorder, ng, gfirst, gcount, glast, glast_reply);
    if (group) {
        PyObject *t2, *c2, *w2;
        if (entry_lists(&ent, &t2, &c2, &w2) < 0)
            goto done;
        Py_SETREF(times, t2);
        Py_SETREF(codes, c2);
        Py_SETREF(weights, w2);
    }
    result = Py_BuildValue("(OOOOOOdOOOO)", counts, labels, classes, codes, times, minutes, last, reasons,
                           refusals, unnamed, weights);
done:
    Py_XDECREF(last_qid.str);
    Py_XDECREF(last_addr.str);
    Py_XDECREF(last_ip.str);
    PyMem_Free(tv);
    PyMem_Free(ki);
    PyMem_Free(order);
    PyMem_Free(gorder);
    PyMem_Free(gfirst);
    PyMem_Free(gcount);
    PyMem_Free(ent.t);
    PyMem_Free(ent.reply);
    PyMem_Free(ent.n);
    Py_XDECREF(weights);
    Py_XDECREF(reasons);
    Py_XDECREF(counts);
    Py_XDECREF(labels);
    Py_XDECREF(classes);
    Py_XDECREF(codes);
    Py_XDECREF(times);
    Py_XDECREF(minutes);
    Py_XDECREF(refusals);
    Py_XDECREF(unnamed);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: mailenable_bulk.item() of every line of a chunk."},
    {"tally", tally, METH_VARARGS,
     "tally(run, kinds, hours, tx, each_reply, compact, grouped, walk, learn_key, learn_hour, reason_of): "
     "MailEnableBulk._tally_python() of a Run in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "logscan.parsers._mailenable_scan", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__mailenable_scan(void)
{
    if (!(EMPTY = PyUnicode_New(0, 0)))
        return NULL;
    for (int i = 0; i <= 60; i++) {
        char text[3] = {(char)('0' + i / 10), (char)('0' + i % 10), 0};
        if (!(SECS[i] = PyUnicode_InternFromString(text)))
            return NULL;
    }
    /* The constants and domain_of() of the Python definition, so both read the same. */
    PyObject *me = PyImport_ImportModule("logscan.parsers.mailenable");
    if (!me)
        return NULL;
    PyObject *cap = PyObject_GetAttrString(me, "STATE_CAP");
    MANY = PyObject_GetAttrString(me, "MANY");
    Py_DECREF(me);
    if (!cap || !MANY || !PyUnicode_Check(MANY)) {
        Py_XDECREF(cap);
        return NULL;
    }
    STATE_CAP = PyLong_AsLong(cap);
    Py_DECREF(cap);
    if (STATE_CAP <= 0)
        return NULL;
    PyObject *base = PyImport_ImportModule("logscan.parsers.base");
    if (!base)
        return NULL;
    DOMAIN_OF = PyObject_GetAttrString(base, "domain_of");
    Py_DECREF(base);
    if (!DOMAIN_OF)
        return NULL;
    if (PyType_Ready(&RunType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "Run", (PyObject *)&RunType) < 0)
        Py_CLEAR(m);
    return m;
}
