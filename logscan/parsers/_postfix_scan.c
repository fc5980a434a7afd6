/* The Postfix scan hot loop in C: which lines of a chunk matter, and the fields of usual ones.
 *
 * scan(chunk, rows) does in one pass what logscan/core/pipeline.py (the prefilter) and
 * logscan/parsers/postfix_bulk.py (PostfixBulk.rows: the _ROW regex, then _row) do in
 * Python: every line of `chunk` (a str of whole lines, each ending in "\n") that holds a
 * trigger or does not start with the boring stamp shape comes back, in order, either as the
 * row PostfixBulk.rows gives for it or, when that leaves it to parse(), as the line itself.
 * The Python code is the definition: tests/test_bulk.py checks this file against it line for
 * line, and under AddressSanitizer.
 *
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk
 * scan() returns None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <Python.h>
#include <string.h>

typedef const Py_UCS1 *P;

#define NFIELDS 17 /* _ROW's groups, read here; make_row() turns them into a row */
#define MAX_LINE 65536

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }
static int is_alnum(Py_UCS1 c) { return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static int is_word(Py_UCS1 c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; }
static int is_ip(Py_UCS1 c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
}

/* Does [p, e) start with the literal s (length n)? */
static int at(P p, P e, const char *s, Py_ssize_t n) { return e - p >= n && memcmp(p, s, (size_t)n) == 0; }
#define AT(p, e, lit) at((p), (e), (lit), (Py_ssize_t)(sizeof(lit) - 1))

/* The end of the run of characters from p for which ok() holds. */
static P run(P p, P e, int (*ok)(Py_UCS1))
{
    while (p < e && ok(*p))
        p++;
    return p;
}

/* Is c one of the characters of `set`? (strchr alone would also find a NUL character.) */
static int in(Py_UCS1 c, const char *set) { return c != 0 && strchr(set, c) != NULL; }

/* The end of the run of characters from p that are none of `stop` (nor "\n": lines have none). */
static P run_not(P p, P e, const char *stop)
{
    while (p < e && !in(*p, stop))
        p++;
    return p;
}

static int equals(P p, Py_ssize_t n, const char *const *words)
{
    for (; *words; words++)
        if ((Py_ssize_t)strlen(*words) == n && memcmp(p, *words, (size_t)n) == 0)
            return 1;
    return 0;
}

static const char *const DELIVERY_KINDS[] = {"smtp", "lmtp", "local", "virtual", "pipe", "error", "retry",
                                             "discard", "qmgr", "nqmgr", "oqmgr", NULL};
static const char *const REJECT_KINDS[] = {"smtpd", "postscreen", "cleanup", NULL};
static const char *const QMGR_KINDS[] = {"qmgr", "nqmgr", "oqmgr", NULL};
static const char *const SEVERITIES[] = {"warning", "error", "fatal", "panic", "info", NULL};
static const char *const STATUSES[] = {"sent", "bounced", "SOFTBOUNCE", "deferred", "expired", "force-expired",
                                       NULL};
static const char *const EXPIRIES[] = {"expired", "force-expired", NULL};
static const char *const STAGES[] = {"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "END-OF-MESSAGE",
                                     "VRFY", "ETRN", "AUTH", "STARTTLS", "connect", NULL};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", NULL};

/* Postfix's _BORING: an RFC 3339 stamp whose first space is within 48 characters, or a
 * classic syslog stamp `Mmm dd hh:mm:ss ` (day ` 7`, `7` or `07`). */
static int boring(P s, P e)
{
    Py_ssize_t n = e - s;
    if (n >= 20 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) && s[4] == '-' &&
        is_digit(s[5]) && is_digit(s[6]) && s[7] == '-' && is_digit(s[8]) && is_digit(s[9]) && s[10] == 'T' &&
        is_digit(s[11]) && is_digit(s[12]) && s[13] == ':' && is_digit(s[14]) && is_digit(s[15]) &&
        s[16] == ':' && is_digit(s[17]) && is_digit(s[18])) {
        P lim = s + 48 < e ? s + 48 : e;
        for (P p = s + 19; p < lim; p++)
            if (*p == ' ')
                return 1;
        return 0;
    }
    if (n < 4 || s[3] != ' ' || !equals(s, 3, MONTHS))
        return 0;
    Py_ssize_t i;
    if (n > 5 && s[4] == ' ' && is_digit(s[5]))
        i = 6;
    else if (n > 4 && is_digit(s[4]))
        i = (n > 5 && is_digit(s[5])) ? 6 : 5;
    else
        return 0;
    return n >= i + 10 && s[i] == ' ' && is_digit(s[i + 1]) && is_digit(s[i + 2]) && s[i + 3] == ':' &&
           is_digit(s[i + 4]) && is_digit(s[i + 5]) && s[i + 6] == ':' && is_digit(s[i + 7]) &&
           is_digit(s[i + 8]) && s[i + 9] == ' ';
}

typedef struct {
    P at[NFIELDS];
    Py_ssize_t len[NFIELDS];
} Fields;

/* Forget what a failed body branch set; the stamp's fields (0-3) stay. */
static void clear(Fields *f)
{
    memset(f->at + 4, 0, sizeof(P) * (NFIELDS - 4));
    memset(f->len + 4, 0, sizeof(Py_ssize_t) * (NFIELDS - 4));
}

static void set(Fields *f, int i, P a, P b)
{
    f->at[i] = a;
    f->len[i] = b - a;
}

/* _CODE at r: a basic code (fields ci) and an enhanced one (ci + 1), or _NO_CODE: nothing.
 * Returns 1 if a code was found. */
static int code_at(P r, P e, Fields *f, int ci)
{
    if (!(e - r >= 3 && r[0] >= '2' && r[0] <= '5' && is_digit(r[1]) && is_digit(r[2]) &&
          (e - r == 3 || r[3] == ' ' || r[3] == '-')))
        return 0;
    set(f, ci, r, r + 3);
    P t = r + 3 < e ? r + 4 : r + 3;
    if (t < e && *t == '(')
        t++;
    if (t < e && *t == '#')
        t++;
    if (!(e - t >= 2 && (*t == '2' || *t == '4' || *t == '5') && t[1] == '.'))
        return 1;
    P d1 = run(t + 2, e, is_digit);
    if (d1 - (t + 2) < 1 || d1 - (t + 2) > 3 || d1 >= e || *d1 != '.')
        return 1;
    P d2 = run(d1 + 1, e, is_digit);
    if (d2 - (d1 + 1) < 1 || d2 - (d1 + 1) > 3 || (d2 < e && *d2 == '.'))
        return 1;
    set(f, ci + 1, t, d2);
    return 1;
}

/* `to=<a@DOMAIN>, ` style: run of chars not in `stop`, and if an "@" ends it, the domain
 * after it (field di). Returns where the text after the address starts, or NULL. */
static P address(P p, P e, const char *stop_at, Fields *f, int di)
{
    P q = run_not(p, e, stop_at);
    if (q < e && *q == '@') {
        P d = run_not(q + 1, e, stop_at);
        set(f, di, q + 1, d);
        return d;
    }
    return q;
}

/* `name=[0-9...]+, ` or `name=[^,]*, ` when the field is there: where it ends (after ", "),
 * p when absent, NULL when present but malformed. `digits`: the value's characters. */
static P field(P p, P e, const char *name, Py_ssize_t n, const char *digits, P *v0, P *v1)
{
    if (!at(p, e, name, n))
        return p;
    P a = p + n, b;
    if (digits) {
        b = a;
        while (b < e && in(*b, digits))
            b++;
        if (b == a)
            return NULL;
    } else {
        b = run_not(a, e, ",");
    }
    if (!AT(b, e, ", "))
        return NULL;
    if (v0) {
        *v0 = a;
        *v1 = b;
    }
    return b + 2;
}
#define FIELD(p, e, lit, digits, v0, v1) field((p), (e), (lit), (Py_ssize_t)(sizeof(lit) - 1), (digits), (v0), (v1))

static int delivery(P p, P e, Fields *f)
{
    P a, b;
    if (!AT(p, e, "to="))
        return 0;
    p = address(p + 3, e, ",@", f, 4);
    if (!AT(p, e, ", "))
        return 0;
    p += 2;
    if (!(p = FIELD(p, e, "orig_to=", NULL, NULL, NULL)) || !AT(p, e, "relay="))
        return 0;
    p = run_not(p + 6, e, ",");
    if (!AT(p, e, ", "))
        return 0;
    p += 2;
    if (!(p = FIELD(p, e, "conn_use=", "0123456789", NULL, NULL)) || !AT(p, e, "delay="))
        return 0;
    if (!(p = FIELD(p, e, "delay=", "0123456789.", &a, &b)))
        return 0;
    set(f, 5, a, b);
    if (!(p = FIELD(p, e, "delays=", "0123456789./", NULL, NULL)) || !(p = FIELD(p, e, "tls=", NULL, NULL, NULL)))
        return 0;
    a = b = NULL;
    if (!(p = FIELD(p, e, "dsn=", "0123456789.", &a, &b)))
        return 0;
    if (a)
        set(f, 6, a, b);
    if (!AT(p, e, "status="))
        return 0;
    p += 7;
    P w = run_not(p, e, " ");
    if (!equals(p, w - p, STATUSES))
        return 0;
    set(f, 7, p, w);
    if (w == e || !AT(w, e, " ("))
        return 1; /* end of line, or text that is no reply */
    P r = w + 2;
    if (AT(r, e, "SASL "))
        return 0; /* a smarthost refusing our AUTH: parse() reads that reply */
    if (AT(r, e, "host ")) {
        P h = run_not(r + 5, e, " ");
        if (!AT(h, e, " said: "))
            return 0;
        code_at(h + 7, e, f, 8);
        return 1;
    }
    code_at(r, e, f, 10);
    return 1;
}

static int reject(P p, P e, Fields *f)
{
    if (AT(p, e, "milter-"))
        p += 7;
    else if (AT(p, e, "proxy-"))
        p += 6;
    if (!AT(p, e, "reject: "))
        return 0;
    p += 8;
    P w = run_not(p, e, " ");
    if (!equals(p, w - p, STAGES) || !AT(w, e, " from "))
        return 0;
    set(f, 12, p, w);
    p = run_not(w + 6, e, "[ ");
    if (p - (w + 6) > 255 || !AT(p, e, "["))
        return 0;
    P ip = run(p + 1, e, is_ip);
    if (ip - (p + 1) < 1 || ip - (p + 1) > 45 || !AT(ip, e, "]"))
        return 0;
    p = ip + 1;
    if (e - p >= 2 && p[0] == ':' && is_digit(p[1])) {
        P d = run(p + 1, e, is_digit);
        if (d - (p + 1) > 5 || !AT(d, e, ": "))
            return 0;
        p = d;
    }
    if (!AT(p, e, ": ") || !code_at(p + 2, e, f, 13))
        return 0;
    P code_end = f->at[14] ? f->at[14] + f->len[14] : f->at[13] + 3;
    /* The last `; from=<`; with no "<" in the trailer after it, no later one can start there. */
    P t = NULL;
    for (Py_ssize_t i = (e - code_end) - 8; i >= 0; i--)
        if (code_end[i] == ';' && memcmp(code_end + i, "; from=<", 8) == 0) {
            t = code_end + i;
            break;
        }
    if (!t)
        return 0;
    p = address(t + 8, e, "<>@", f, 15);
    if (!AT(p, e, ">"))
        return 0;
    p++;
    static const char *const names[] = {" to=<", " proto=", " helo=<"};
    for (int k = 0; k < 3; k++) {
        P q = (p < e && *p == ',') ? p + 1 : p;
        Py_ssize_t n = (Py_ssize_t)strlen(names[k]);
        if (!at(q, e, names[k], n))
            continue;
        q += n;
        if (k == 1) {
            p = run_not(q, e, " ,;<>");
        } else {
            q = run_not(q, e, "<>");
            if (!AT(q, e, ">"))
                continue;
            p = q + 1;
        }
    }
    return p == e;
}

static int expiry(P p, P e, Fields *f)
{
    if (!AT(p, e, "from=<"))
        return 0;
    p = run_not(p + 6, e, "<>,");
    if (!AT(p, e, ">, status="))
        return 0;
    p += 10;
    P w = run_not(p, e, ",");
    if (w == e || !equals(p, w - p, EXPIRIES))
        return 0;
    set(f, 16, p, w);
    return 1;
}

/* An RFC 3339 stamp with a zone (fields: minute, seconds, fraction, zone): where it ends. */
static P rfc3339_stamp(P s, P e, Fields *f)
{
    if (e - s < 20 || !((s[0] == '1' && s[1] == '9') || (s[0] == '2' && s[1] == '0')) || !is_digit(s[2]) ||
        !is_digit(s[3]) || s[4] != '-' || !is_digit(s[5]) || !is_digit(s[6]) || s[7] != '-' || !is_digit(s[8]) ||
        !is_digit(s[9]) || s[10] != 'T' || !is_digit(s[11]) || !is_digit(s[12]) || s[13] != ':' ||
        !is_digit(s[14]) || !is_digit(s[15]) || s[16] != ':' || s[17] < '0' || s[17] > '5' || !is_digit(s[18]))
        return NULL;
    set(f, 0, s, s + 16);
    set(f, 1, s + 17, s + 19);
    P p = s + 19;
    if (*p == '.') {
        P d = run(p + 1, e, is_digit);
        if (d - (p + 1) < 1 || d - (p + 1) > 6)
            return NULL;
        set(f, 2, p, d);
        p = d;
    }
    P z = p;
    if (p < e && *p == 'Z') {
        p++;
    } else if (e - p >= 5 && (*p == '+' || *p == '-') && is_digit(p[1]) && is_digit(p[2])) {
        p += 3;
        if (*p == ':')
            p++;
        if (!(e - p >= 2 && is_digit(p[0]) && is_digit(p[1])))
            return NULL;
        p += 2;
    } else {
        return NULL;
    }
    set(f, 3, z, p);
    return p;
}

/* A classic syslog stamp `Mmm dd hh:mm:ss`, the day ` 7`, `07` or `7` (fields: `Mmm dd hh:mm`,
 * seconds): where it ends. */
static P syslog_stamp(P s, P e, Fields *f)
{
    Py_ssize_t n = e - s, i;
    if (n < 15 || s[3] != ' ' || !equals(s, 3, MONTHS))
        return NULL;
    if ((s[4] == ' ' || is_digit(s[4])) && is_digit(s[5]))
        i = 6; /* the regex tries the two-character day first, and the other cannot follow it */
    else if (is_digit(s[4]) && s[5] == ' ')
        i = 5;
    else
        return NULL;
    if (!(n >= i + 10 && s[i] == ' ' && is_digit(s[i + 1]) && is_digit(s[i + 2]) && s[i + 3] == ':' &&
          is_digit(s[i + 4]) && is_digit(s[i + 5]) && s[i + 6] == ':' && s[i + 7] >= '0' && s[i + 7] <= '5' &&
          is_digit(s[i + 8])))
        return NULL;
    set(f, 0, s, s + i + 6);
    set(f, 1, s + i + 7, s + i + 9);
    return s + i + 9;
}

/* _ROW for the line [s, e): 1 and the fields when it is a usual event line, else 0. */
static int row(P s, P e, Fields *f)
{
    memset(f, 0, sizeof *f);
    P p = rfc3339_stamp(s, e, f);
    if (!p) {
        memset(f, 0, sizeof *f);
        if (!(p = syslog_stamp(s, e, f)))
            return 0;
    }
    if (!AT(p, e, " "))
        return 0;
    P h = run(p + 1, e, is_word);
    if (h - (p + 1) < 1 || h - (p + 1) > 64 || !AT(h, e, " "))
        return 0;
    /* The tag: 1-3 components of 1-20 word characters, "/", then the daemon name and "[". */
    p = h + 1;
    int comps = 0;
    P kind;
    for (;;) {
        P c = run(p, e, is_word);
        if (c == e || (*c != '/' && *c != '['))
            return 0;
        if (*c == '[') {
            kind = p;
            p = c;
            break;
        }
        if (c - p < 1 || c - p > 20 || ++comps > 3)
            return 0;
        p = c + 1;
    }
    if (comps < 1)
        return 0;
    Py_ssize_t kind_len = p - kind;
    P pid = run(p + 1, e, is_digit);
    if (pid - (p + 1) < 1 || pid - (p + 1) > 10 || !AT(pid, e, "]: "))
        return 0;
    p = pid + 3;
    P q = run(p, e, is_alnum);
    if (q - p < 5 || q - p > 32 || !AT(q, e, ": ") || equals(p, q - p, SEVERITIES))
        return 0;
    P body = q + 2;
    if (equals(kind, kind_len, DELIVERY_KINDS)) {
        if (delivery(body, e, f))
            return 1;
        clear(f);
    }
    if (equals(kind, kind_len, REJECT_KINDS)) {
        if (reject(body, e, f))
            return 1;
        clear(f);
    }
    return equals(kind, kind_len, QMGR_KINDS) && expiry(body, e, f);
}

static PyObject *EMPTY, *CLASSES[2][4]; /* "", and "o2".."o5", "i2".."i5" */

static PyObject *span(const Fields *f, int i)
{
    return f->len[i] ? PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, f->at[i], f->len[i]) : Py_NewRef(EMPTY);
}

/* A str of these characters, the same object as last time when they are the same: the
 * minute, zone, key and status word repeat from row to row, and a repeated object saves
 * the allocation here and the hashing in the Counter that reads it. */
static PyObject *cached(PyObject **last, P at, Py_ssize_t len)
{
    PyObject *o = *last;
    if (!len)
        return Py_NewRef(EMPTY);
    if (o && PyUnicode_GET_LENGTH(o) == len && memcmp(PyUnicode_1BYTE_DATA(o), at, (size_t)len) == 0)
        return Py_NewRef(o);
    if (!(o = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, at, len)))
        return NULL;
    Py_XSETREF(*last, Py_NewRef(o));
    return o;
}

enum { LAST_MINUTE, LAST_ZONE, LAST_KEY, LAST_WORD, NLAST };

/* `D<word>|<code>|<enhanced>|<dsn>`, `R<stage>|<code>|<enhanced>` or `E<word>`. */
static PyObject *key(const Fields *f, PyObject **last)
{
    int parts[4], np;
    char kind;
    if (f->len[7]) {
        kind = 'D';
        np = 4;
        parts[0] = 7;
        parts[1] = f->len[8] ? 8 : 10;
        parts[2] = f->len[8] ? 9 : 11;
        parts[3] = 6;
    } else if (f->len[12]) {
        kind = 'R';
        np = 3;
        parts[0] = 12;
        parts[1] = 13;
        parts[2] = 14;
    } else {
        kind = 'E';
        np = 1;
        parts[0] = 16;
    }
    Py_ssize_t n = np;
    for (int k = 0; k < np; k++)
        n += f->len[parts[k]];
    Py_UCS1 small[256], *buf = n <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n);
    if (!buf)
        return PyErr_NoMemory();
    Py_UCS1 *w = buf;
    *w++ = (Py_UCS1)kind;
    for (int k = 0; k < np; k++) {
        if (k)
            *w++ = '|';
        if (f->len[parts[k]]) {
            memcpy(w, f->at[parts[k]], (size_t)f->len[parts[k]]);
            w += f->len[parts[k]];
        }
    }
    PyObject *out = cached(last, buf, n);
    if (buf != small)
        PyMem_Free(buf);
    return out;
}

/* The row batch() reads (see postfix_bulk.py, _row): minute, seconds, zone, key, domain key,
 * direction and code class, delay, status word, line. */
static PyObject *make_row(Fields *f, PyObject *line, PyObject **last)
{
    PyObject *t = PyTuple_New(9);
    if (!t)
        return NULL;
    int reject = f->len[12] != 0, w = f->len[7] ? 7 : 16;
    const Py_UCS1 *code = f->len[8] ? f->at[8] : f->len[10] ? f->at[10] : f->len[13] ? f->at[13] : NULL;
    set(f, 1, f->at[1], f->len[2] ? f->at[2] + f->len[2] : f->at[1] + 2); /* seconds and fraction */
    PyObject *v[9] = {
        cached(&last[LAST_MINUTE], f->at[0], f->len[0]), span(f, 1), cached(&last[LAST_ZONE], f->at[3], f->len[3]),
        key(f, &last[LAST_KEY]), span(f, reject ? 15 : 4),
        Py_NewRef(code ? CLASSES[reject][*code - '2'] : EMPTY), span(f, 5),
        cached(&last[LAST_WORD], f->at[w], f->len[w]), Py_NewRef(line),
    };
    for (int i = 0; i < 9; i++) {
        if (!v[i]) {
            for (int k = 0; k < 9; k++)
                Py_XDECREF(v[k]);
            Py_DECREF(t);
            return NULL;
        }
    }
    for (int i = 0; i < 9; i++)
        PyTuple_SET_ITEM(t, i, v[i]);
    return t;
}

static const char *const TRIGGERS[] = {"status=", ": host ", "reject: ", " exim", ": SASL ", "many er", "mproper"};
static const size_t TRIGGER_LEN[] = {7, 7, 8, 5, 7, 7, 7};
#define NTRIGGERS 7
#define TRIGGER_MAX 8
/* Triggers with the same length, first and last characters pass the same SIMD test, so it is
 * made once for them: SIG[k] is trigger k's test, SIG_REP[s] the first trigger with test s
 * (PyInit checks this table). Five tests for seven triggers. */
static const int SIG[NTRIGGERS] = {0, 1, 2, 3, 1, 4, 4};
static const int SIG_REP[] = {0, 1, 2, 3, 5};
#define NSIGS 5

#if defined(__SSE2__) && !defined(LOGSCAN_NO_SIMD)
#include <emmintrin.h>
#define TRIGGER_SIMD 1

/* The first occurrence of any trigger at or after p, or e: one pass, 16 positions at a time,
 * keeping those where a trigger's first and last bytes both match, then comparing those. */
static P next_trigger(P p, P e)
{
    __m128i first[NSIGS], last[NSIGS];
    for (int s = 0; s < NSIGS; s++) {
        int k = SIG_REP[s];
        first[s] = _mm_set1_epi8(TRIGGERS[k][0]);
        last[s] = _mm_set1_epi8(TRIGGERS[k][TRIGGER_LEN[k] - 1]);
    }
    for (; e - p >= 16 + TRIGGER_MAX - 1; p += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)p);
        unsigned masks[NSIGS], any = 0;
        for (int s = 0; s < NSIGS; s++) {
            __m128i tail = _mm_loadu_si128((const __m128i *)(p + TRIGGER_LEN[SIG_REP[s]] - 1));
            masks[s] = (unsigned)_mm_movemask_epi8(
                _mm_and_si128(_mm_cmpeq_epi8(block, first[s]), _mm_cmpeq_epi8(tail, last[s])));
            any |= masks[s];
        }
        for (; any; any &= any - 1) {
            int i = __builtin_ctz(any);
            for (int k = 0; k < NTRIGGERS; k++)
                if ((masks[SIG[k]] >> i & 1) && memcmp(p + i, TRIGGERS[k], TRIGGER_LEN[k]) == 0)
                    return p + i;
        }
    }
    for (; p < e; p++)
        for (int k = 0; k < NTRIGGERS; k++)
            if ((size_t)(e - p) >= TRIGGER_LEN[k] && memcmp(p, TRIGGERS[k], TRIGGER_LEN[k]) == 0)
                return p;
    return e;
}
#endif

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out;
    int want_rows;
    (void)self;
    if (!PyArg_ParseTuple(args, "Up", &chunk, &want_rows))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(chunk);
    if (PyUnicode_KIND(chunk) != PyUnicode_1BYTE_KIND || n == 0 ||
        PyUnicode_1BYTE_DATA(chunk)[n - 1] != '\n')
        Py_RETURN_NONE;
    P data = PyUnicode_1BYTE_DATA(chunk), end = data + n;
    if (!(out = PyList_New(0)))
        return NULL;
#ifdef TRIGGER_SIMD
    P next = NULL; /* the next trigger at or after the current line; NULL: not looked for yet */
#else
    /* Where each trigger next occurs at or after the current line (n: nowhere), as offsets. */
    Py_ssize_t next[NTRIGGERS];
    for (int k = 0; k < NTRIGGERS; k++)
        next[k] = -1;
#endif
    Py_ssize_t lines = 0;
    Fields f;
    PyObject *last[NLAST] = {NULL};
    for (P s = data; s < end;) {
        P e = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int wanted = !boring(s, e);
#ifdef TRIGGER_SIMD
        if (!wanted) {
            if (!next || next < s)
                next = next_trigger(s, end);
            wanted = next < e;
        }
#else
        for (int k = 0; k < NTRIGGERS && !wanted; k++) {
            if (next[k] < so) {
                P hit = memmem(s, (size_t)(end - s), TRIGGERS[k], TRIGGER_LEN[k]);
                next[k] = hit ? hit - data : n;
            }
            wanted = next[k] < eo;
        }
#endif
        if (wanted) {
            PyObject *line = PyUnicode_Substring(chunk, so, eo), *item = line;
            if (line && want_rows && eo - so <= MAX_LINE && !(e > s && e[-1] == '\r') && row(s, e, &f)) {
                item = make_row(&f, line, last);
                Py_DECREF(line);
            }
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(out);
                out = NULL;
                break;
            }
            Py_DECREF(item);
        }
        s = e + 1;
    }
    for (int i = 0; i < NLAST; i++)
        Py_XDECREF(last[i]);
    return out ? Py_BuildValue("(nN)", lines, out) : NULL;
}

/* Growable arrays of a minutes() result: per entry, a row index, a reply id and a count. */
typedef struct {
    Py_ssize_t *row, *id, *count, n, cap;
} Entries;

static int push(Entries *g, Py_ssize_t row, Py_ssize_t id, Py_ssize_t count)
{
    if (g->n == g->cap) {
        Py_ssize_t cap = g->cap ? g->cap * 2 : 64;
        if (cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Py_ssize_t)) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t *r = PyMem_Resize(g->row, Py_ssize_t, cap);
        if (r)
            g->row = r;
        Py_ssize_t *i = r ? PyMem_Resize(g->id, Py_ssize_t, cap) : NULL;
        if (i)
            g->id = i;
        Py_ssize_t *c = i ? PyMem_Resize(g->count, Py_ssize_t, cap) : NULL;
        if (!c) {
            PyErr_NoMemory();
            return -1;
        }
        g->count = c;
        g->cap = cap;
    }
    g->row[g->n] = row;
    g->id[g->n] = id;
    g->count[g->n++] = count;
    return 0;
}

static PyObject *as_list(const Py_ssize_t *v, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *o = PyLong_FromSsize_t(v[i]);
        if (!o) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, o);
    }
    return out;
}

/* Two str of the same text? Exact str are canonical: a different kind is a different text. */
static int same_text(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return a == b || (n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
                      memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0);
}

/* Every key of `ids` an exact str and every value an int in [0, len(ids)): then no lookup
 * below runs Python code (so `rows` cannot change under the loop) and every id indexes. */
static int valid_ids(PyObject *ids)
{
    Py_ssize_t pos = 0, n = PyDict_GET_SIZE(ids);
    PyObject *k, *v;
    while (PyDict_Next(ids, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !PyLong_CheckExact(v)) {
            PyErr_SetString(PyExc_TypeError, "minutes(): ids must map str to int");
            return 0;
        }
        Py_ssize_t id = PyLong_AsSsize_t(v);
        if (id == -1 && PyErr_Occurred())
            return 0;
        if (id < 0 || id >= n) {
            PyErr_SetString(PyExc_ValueError, "minutes(): an id out of range");
            return 0;
        }
    }
    return 1;
}

/* A row's minute text and first two seconds characters (fields 0 and 1); 0 with an error when
 * they are not str or the seconds are shorter. */
static int stamp_of(PyObject *row, PyObject **minute, Py_UCS4 *s0, Py_UCS4 *s1)
{
    PyObject *sec = PyTuple_GET_ITEM(row, 1);
    *minute = PyTuple_GET_ITEM(row, 0);
    if (!PyUnicode_CheckExact(*minute) || !PyUnicode_CheckExact(sec) || PyUnicode_GET_LENGTH(sec) < 2) {
        PyErr_SetString(PyExc_ValueError, "minutes(): a row without a minute and whole seconds");
        return 0;
    }
    *s0 = PyUnicode_READ_CHAR(sec, 0);
    *s1 = PyUnicode_READ_CHAR(sec, 1);
    return 1;
}

/* The walk of minutes(): 1 done, 0 an error set, -1 whole seconds go back inside a minute. */
static int group_rows(PyObject *rows, PyObject *ids, Py_ssize_t *slot, Py_ssize_t *seen, Entries *g)
{
    PyObject *last_key = NULL, *minute = NULL, *prev = NULL;
    Py_ssize_t last_id = -1, seg = 0, last_row = -1, prev_id = -1;
    Py_UCS4 prev0 = 0, prev1 = 0, s0, s1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i), *key;
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) < 4 || !PyUnicode_CheckExact(key = PyTuple_GET_ITEM(row, 3))) {
            PyErr_SetString(PyExc_TypeError, "minutes(): rows must be tuples with a str key at 3");
            return 0;
        }
        if (key != last_key) { /* the scanner repeats one key object over a run of equal keys */
            PyObject *v = PyDict_GetItemWithError(ids, key);
            if (!v && PyErr_Occurred())
                return 0;
            last_key = key;
            last_id = v ? PyLong_AsSsize_t(v) : -1; /* valid_ids(): in range */
        }
        if (last_id < 0) /* no reply code: not a reply */
            continue;
        if (!stamp_of(row, &minute, &s0, &s1))
            return 0;
        if (!prev || !same_text(prev, minute)) { /* a new minute: close the last one */
            if (prev && push(g, last_row, prev_id, 0) < 0)
                return 0;
            prev = minute;
            seg++;
        } else if (s0 < prev0 || (s0 == prev0 && s1 < prev1)) {
            return -1;
        }
        prev0 = s0;
        prev1 = s1;
        if (seen[last_id] != seg) { /* the reply's first entry in this minute */
            seen[last_id] = seg;
            slot[last_id] = g->n;
            if (push(g, i, last_id, 1) < 0)
                return 0;
        } else {
            g->count[slot[last_id]]++;
        }
        last_row = i;
        prev_id = last_id;
    }
    return prev ? (push(g, last_row, prev_id, 0) < 0 ? 0 : 1) : 1;
}

/* The (rows, ids, counts) lists of the entries. */
static PyObject *result(const Entries *g)
{
    PyObject *lists[3] = {as_list(g->row, g->n), as_list(g->id, g->n), as_list(g->count, g->n)};
    PyObject *out = lists[0] && lists[1] && lists[2] ? PyTuple_Pack(3, lists[0], lists[1], lists[2]) : NULL;
    for (int k = 0; k < 3; k++)
        Py_XDECREF(lists[k]);
    return out;
}

/* minutes(rows, ids): the replies of a batch's rows grouped as parsers/base.py per_minute()
 * groups them, as row indices: see postfix_bulk.py, PostfixBulk._grouped. */
static PyObject *minutes(PyObject *self, PyObject *args)
{
    PyObject *rows, *ids, *out = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &rows, &PyDict_Type, &ids) || !valid_ids(ids))
        return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(ids) + 1;
    Py_ssize_t *slot = PyMem_New(Py_ssize_t, n), *seen = PyMem_New(Py_ssize_t, n);
    Entries g = {NULL, NULL, NULL, 0, 0};
    if (!slot || !seen) {
        PyErr_NoMemory();
    } else {
        for (Py_ssize_t k = 0; k < n; k++)
            seen[k] = 0; /* minutes are numbered from 1 */
        int got = group_rows(rows, ids, slot, seen, &g);
        if (got < 0)
            out = Py_NewRef(Py_None);
        else if (got > 0)
            out = result(&g);
    }
    PyMem_Free(slot);
    PyMem_Free(seen);
    PyMem_Free(g.row);
    PyMem_Free(g.id);
    PyMem_Free(g.count);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: the lines of a chunk of Postfix log that matter."},
    {"minutes", minutes, METH_VARARGS,
     "minutes(rows, ids) -> (rows, ids, counts) | None: a batch's replies grouped per minute."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "logscan.parsers._postfix_scan", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__postfix_scan(void)
{
    static const char dirs[2] = {'o', 'i'};
    for (int k = 0; k < NTRIGGERS; k++) {
        int r = SIG_REP[SIG[k]];
        if (TRIGGER_LEN[k] != strlen(TRIGGERS[k]) || TRIGGER_LEN[k] > TRIGGER_MAX || TRIGGER_LEN[k] != TRIGGER_LEN[r] ||
            TRIGGERS[k][0] != TRIGGERS[r][0] || TRIGGERS[k][TRIGGER_LEN[k] - 1] != TRIGGERS[r][TRIGGER_LEN[r] - 1]) {
            PyErr_SetString(PyExc_SystemError, "_postfix_scan: inconsistent trigger table");
            return NULL;
        }
    }
    if (!(EMPTY = PyUnicode_New(0, 0)))
        return NULL;
    for (int d = 0; d < 2; d++)
        for (int c = 0; c < 4; c++) {
            char text[3] = {dirs[d], (char)('2' + c), 0};
            if (!(CLASSES[d][c] = PyUnicode_InternFromString(text)))
                return NULL;
        }
    return PyModule_Create(&module);
}
