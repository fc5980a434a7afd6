/* The MailEnable scan hot loop in C: the rows of a chunk, and the state walk over them.
 *
 * scan(chunk, rows) does for every line of `chunk` (a str of whole lines, each ending in "\n")
 * what item() in logscan/parsers/mailenable_bulk.py does: a row of a usual line, the line
 * itself for parse(), or nothing for a line parse() reads as NOTHING without changing state.
 * tally(...) is that file's MailEnableBulk._tally_python(): parse()'s transaction steps (walk())
 * on the parser's own state dict, and the per-row lists and counts of an EventBatch. The Python code is the definition: tests/test_mailenable_bulk.py
 * checks this file against it line for line, and under AddressSanitizer.
 *
 * Only 1-byte-kind strings (all characters below U+0100) are read; for any other chunk scan()
 * returns None and the caller uses the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

static PyObject *str(Span s)
{
    return s.len ? PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s.at, s.len) : Py_NewRef(EMPTY);
}

/* A str of these characters, the same object as last time when they are the same: the
 * minute, message file and IP repeat from row to row, which saves allocations here and
 * hashing in the Counter and dicts that read them. */
static PyObject *cached(PyObject **last, Span s)
{
    PyObject *o = *last;
    if (!s.len)
        return Py_NewRef(EMPTY);
    if (o && PyUnicode_GET_LENGTH(o) == s.len && memcmp(PyUnicode_1BYTE_DATA(o), s.at, (size_t)s.len) == 0)
        return Py_NewRef(o);
    if (!(o = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s.at, s.len)))
        return NULL;
    Py_XSETREF(*last, Py_NewRef(o));
    return o;
}

enum { LAST_MINUTE, LAST_QID, LAST_IP, NLAST };

/* The row tuple of mailenable_bulk.item(); steals `line`. */
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

static PyObject *make_row(const Row *w, PyObject *line, PyObject **last)
{
    char buf[32];
    PyObject *row = PyTuple_New(8);
    if (!row) {
        Py_DECREF(line);
        return NULL;
    }
    PyTuple_SET_ITEM(row, 7, line);
    Py_ssize_t n = 1 + w->verb.len + 1 + 3 + 1 + w->enh.len;
    if (n > (Py_ssize_t)sizeof(buf)) { /* cannot be: verbs have at most 8 characters, enhanced codes 9 */
        PyErr_SetString(PyExc_SystemError, "_mailenable_scan: row key too long");
        goto fail;
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
    PyObject *shared = key_of(buf, n);
    if (!shared)
        goto fail;
    PyTuple_SET_ITEM(row, 2, shared);
    PyObject *fields[7] = {
        cached(&last[LAST_MINUTE], w->minute), Py_NewRef(SECS[two(w->secs.at)]), NULL,
        cached(&last[LAST_QID], w->qid), str(w->addr), cached(&last[LAST_IP], w->ip), str(w->reply),
    };
    for (int i = 0; i < 7; i++) {
        if (i == 2)
            continue;
        if (!fields[i]) {
            for (int j = i + 1; j < 7; j++)
                Py_XDECREF(fields[j]);
            goto fail;
        }
        PyTuple_SET_ITEM(row, i, fields[i]);
    }
    /* Only str inside: it can be in no cycle, and the cyclic GC need not walk the many rows. */
    PyObject_GC_UnTrack(row);
    return row;
fail:
    Py_DECREF(row);
    return NULL;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *chunk, *out;
    int want_rows;
    (void)self;
    if (!PyArg_ParseTuple(args, "Up", &chunk, &want_rows))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(chunk);
    if (PyUnicode_KIND(chunk) != PyUnicode_1BYTE_KIND || n == 0 || PyUnicode_1BYTE_DATA(chunk)[n - 1] != '\n')
        Py_RETURN_NONE;
    P data = PyUnicode_1BYTE_DATA(chunk), end = data + n;
    if (!(out = PyList_New(0)))
        return NULL;
    Py_ssize_t lines = 0;
    PyObject *last[NLAST] = {NULL};
    Row w = {0};
    for (P s = data; s < end;) {
        P e = memchr(s, '\n', (size_t)(end - s));
        Py_ssize_t so = s - data, eo = e - data;
        lines++;
        int kind = item(s, e, &w);
        s = e + 1;
        if (kind == SKIP)
            continue;
        PyObject *it = PyUnicode_Substring(chunk, so, eo);
        if (it && kind == ROW && want_rows)
            it = make_row(&w, it, last);
        if (!it || PyList_Append(out, it) < 0) {
            Py_XDECREF(it);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(it);
    }
    for (int i = 0; i < NLAST; i++)
        Py_XDECREF(last[i]);
    return out ? Py_BuildValue("(nN)", lines, out) : NULL;
}

/* mailenable_bulk._domain(): memo[addr], computed by domain_of() when missing. New reference. */
static PyObject *domain(PyObject *memo, PyObject *addr)
{
    PyObject *d = PyDict_GetItemWithError(memo, addr);
    if (d)
        return Py_NewRef(d);
    if (PyErr_Occurred())
        return NULL;
    if (!(d = PyObject_CallOneArg(DOMAIN_OF, addr)))
        return NULL;
    if (PyUnicode_GET_LENGTH(addr) <= MEMO_LEN) {
        if (PyDict_GET_SIZE(memo) >= MEMO)
            PyDict_Clear(memo);
        if (PyDict_SetItem(memo, addr, d) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
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

/* One row's step: sets *sender and *recipient (new references). */
static int step(PyObject *row, long kind, PyObject *tx, PyObject *memo, PyObject **sender, PyObject **recipient)
{
    int role = (int)(kind & 7);
    *sender = Py_NewRef(EMPTY);
    *recipient = Py_NewRef(EMPTY);
    if (!role)
        return 0;
    PyObject *qid = PyTuple_GET_ITEM(row, 3), *known;
    int has_qid = PyUnicode_GET_LENGTH(qid) > 0;
    if (role == RCPT) {
        PyObject *r = domain(memo, PyTuple_GET_ITEM(row, 4));
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
        PyObject *d = domain(memo, PyTuple_GET_ITEM(row, 4));
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

/* The start of a row's minute `MM/DD/YY hh:mm` into *start: its hour's start (hours[hour], or
 * learn_hour(hour) for a new one) plus the minutes, as parse()'s Clock.local() adds them: it too
 * keeps only each hour's start. NaN when parse() must date the minute (learn_hour gave None, or
 * minutes over 59). `last` and *base: the hour last looked up, and its start. */
static int minute_start(PyObject *minute, PyObject *hours, PyObject *learn_hour, Py_UCS4 *last, double *base,
                        double *start)
{
    if (!PyUnicode_Check(minute) || PyUnicode_GET_LENGTH(minute) != 14) {
        PyErr_SetString(PyExc_TypeError, "tally: a row's minute is not `MM/DD/YY hh:mm`");
        return -1;
    }
    int same = last[HOUR_LEN];
    for (Py_ssize_t i = 0; i < HOUR_LEN; i++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(minute, i);
        same = same && last[i] == c;
        last[i] = c;
    }
    Py_UCS4 m0 = PyUnicode_READ_CHAR(minute, 12), m1 = PyUnicode_READ_CHAR(minute, 13);
    if (m0 < '0' || m0 > '9' || m1 < '0' || m1 > '9') {
        PyErr_SetString(PyExc_TypeError, "tally: a row's minute is not `MM/DD/YY hh:mm`");
        return -1;
    }
    int mi = (int)(m0 - '0') * 10 + (int)(m1 - '0');
    if (!same) {
        last[HOUR_LEN] = 0;
        PyObject *hour = PyUnicode_Substring(minute, 0, HOUR_LEN), *got;
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
        if (got == Py_None) {
            Py_DECREF(got);
            *start = NAN;
            return 0;
        }
        if (!PyFloat_Check(got)) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "tally: an hour's start is not a float");
            return -1;
        }
        *base = PyFloat_AS_DOUBLE(got);
        Py_DECREF(got);
        last[HOUR_LEN] = 1;
    }
    /* As Clock.local(): base + minute * 60 + 0 (every step exact in a double) */
    *start = mi < 60 ? *base + (double)(mi * 60) : NAN;
    return 0;
}

/* Python's int(t // 60) for a float t (CPython's float floor division, then int()). */
static long minute_of(double t)
{
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

/* The two digits of a row's seconds, whatever the str's kind (rows made in Python too). */
static int seconds_of(PyObject *secs)
{
    if (!PyUnicode_Check(secs) || PyUnicode_GET_LENGTH(secs) != 2)
        return -1;
    Py_UCS4 a = PyUnicode_READ_CHAR(secs, 0), b = PyUnicode_READ_CHAR(secs, 1);
    if (a < '0' || a > '9' || b < '0' || b > '9')
        return -1;
    return (int)(a - '0') * 10 + (int)(b - '0');
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

/* A 4xx/5xx row's reason (reasons memo, else reason_of(reply)), counted into `reasons` and
 * its offenders appended to `refusals`, as MailEnableBulk._refusals() does. */
static int refusal(PyObject *row, PyObject *reply_key, long minute, PyObject *sender, PyObject *recipient,
                   PyObject *memo, PyObject *reason_of, PyObject *reasons, PyObject *refusals)
{
    PyObject *reply = PyTuple_GET_ITEM(row, 6), *reason;
    int keep = PyUnicode_Check(reply) && PyUnicode_GET_LENGTH(reply) <= MAX_TEXT;
    if (!PyTuple_Check(reply_key) || PyTuple_GET_SIZE(reply_key) != 3) {
        PyErr_SetString(PyExc_TypeError, "tally: a reply is not (direction, code, enhanced)");
        return -1;
    }
    if (keep && (reason = PyDict_GetItemWithError(memo, reply))) {
        Py_INCREF(reason);
    } else {
        if (PyErr_Occurred() || !(reason = PyObject_CallOneArg(reason_of, reply)))
            return -1;
        if (keep) {
            if (PyDict_GET_SIZE(memo) >= REASONS)
                PyDict_Clear(memo);
            if (PyDict_SetItem(memo, reply, reason) < 0) {
                Py_DECREF(reason);
                return -1;
            }
        }
    }
    PyObject *direction = PyTuple_GET_ITEM(reply_key, 0), *code = PyTuple_GET_ITEM(reply_key, 1);
    PyObject *rkey = PyTuple_Pack(3, direction, code, reason), *r = NULL;
    int rc = -1;
    if (rkey && add_count(reasons, rkey, 1) == 0 &&
        (r = Py_BuildValue("(lOOOOOO)", minute, direction, code, reason, sender, PyTuple_GET_ITEM(row, 5),
                           recipient))) {
        PyObject_GC_UnTrack(r);
        rc = PyList_Append(refusals, r);
    }
    Py_XDECREF(r);
    Py_XDECREF(rkey);
    Py_DECREF(reason);
    return rc;
}

/* tally(rows, kinds, hours, tx, memo, each_reply, learn_key, learn_hour, reasons_memo,
 * reason_of): MailEnableBulk._tally_python() in one call. kinds: key -> (bits, class, cell,
 * reply), learn_key(key) adds a missing one; hours: `MM/DD/YY hh` -> its start, learn_hour(hour)
 * adds a missing one or gives None (then tally gives None). None also when the bounce-ratio
 * minutes go back; in both cases nothing has changed. Else (counts, labels, classes, codes,
 * times, minutes, last, reasons, refusals, unnamed, saved): saved is a copy of tx from before the walk
 * when there are minutes (Aggregate.add_batch may refuse those; else None). */
static PyObject *tally(PyObject *self, PyObject *args)
{
    PyObject *rows, *kinds, *hours, *tx, *memo, *learn_key, *learn_hour, *reasons_memo, *reason_of;
    int each;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!pOOO!O", &PyList_Type, &rows, &PyDict_Type, &kinds, &PyDict_Type,
                          &hours, &PyDict_Type, &tx, &PyDict_Type, &memo, &each, &learn_key, &learn_hour,
                          &PyDict_Type, &reasons_memo, &reason_of))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *result = NULL;
    PyObject *counts = NULL, *labels = NULL, *classes = NULL, *codes = NULL, *times = NULL, *minutes = NULL;
    PyObject *refusals = NULL, *saved = NULL, *reasons = NULL, *unnamed = NULL;
    double *tv = NULL;
    /* Pass 1, changing nothing: every key and minute known, the times, minutes in order. */
    if (!(tv = PyMem_Malloc(sizeof(double) * (size_t)(n ? n : 1)))) {
        PyErr_NoMemory();
        goto done;
    }
    /* Row keys and minutes are mostly shared objects (scan() makes them so): a lookup by
     * pointer first saves most dict lookups. The dicts only grow during this call (learn_key
     * and learn_minute add to them), so what they hold stays alive. */
    PyObject *ck[64] = {NULL}, *cv[64] = {NULL}, *last_minute = NULL;
    Py_UCS4 last_hour[HOUR_LEN + 1] = {0}; /* last_hour[HOUR_LEN] = 1: hour_base is its base */
    double hour_base = 0.0, start = 0.0;
#define KIND_OF(key, out)                                                                              \
    do {                                                                                               \
        int slot_ = (int)(((uintptr_t)(key) >> 4) & 63);                                               \
        if (ck[slot_] == (key)) {                                                                      \
            (out) = cv[slot_];                                                                         \
        } else if (((out) = PyDict_GetItemWithError(kinds, (key)))) {                                  \
            ck[slot_] = (key);                                                                         \
            cv[slot_] = (out);                                                                         \
        }                                                                                              \
    } while (0)
    long last_bucket = LONG_MIN;
    int back = 0, any_final = 0;
    double last = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 8) {
            PyErr_SetString(PyExc_TypeError, "tally: a row is not mailenable_bulk.item()'s tuple");
            goto done;
        }
        PyObject *key = PyTuple_GET_ITEM(row, 2), *minute = PyTuple_GET_ITEM(row, 0);
        PyObject *kind;
        KIND_OF(key, kind);
        if (!kind) { /* a key met for the first time: learn_key() reads it and keeps it in kinds */
            PyObject *got;
            if (PyErr_Occurred() || !(got = PyObject_CallOneArg(learn_key, key)))
                goto done;
            Py_DECREF(got);
            KIND_OF(key, kind);
            if (!kind) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_RuntimeError, "tally: learn_key did not keep the key");
                goto done;
            }
        }
        if (minute != last_minute) {
            if (minute_start(minute, hours, learn_hour, last_hour, &hour_base, &start) < 0)
                goto done;
            if (isnan(start)) { /* parse() must date this minute */
                result = Py_NewRef(Py_None);
                goto done;
            }
            last_minute = minute;
        }
        int sec = seconds_of(PyTuple_GET_ITEM(row, 1));
        if (sec < 0 || !PyTuple_Check(kind) || PyTuple_GET_SIZE(kind) != 4) {
            PyErr_SetString(PyExc_TypeError, "tally: bad seconds or kind");
            goto done;
        }
        double t = start + (double)sec;
        tv[i] = t;
        if (i == 0 || t > last)
            last = t;
        long cell = PyLong_AsLong(PyTuple_GET_ITEM(kind, 2));
        if (cell == -1 && PyErr_Occurred())
            goto done;
        if (cell < 2) {
            long b = minute_of(t);
            if (b < last_bucket)
                back = 1;
            last_bucket = b;
            any_final = 1;
        }
    }
    if (back) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* Pass 2: parse()'s state steps, and the per-row lists. */
    if (any_final && !(saved = PyDict_Copy(tx)))
        goto done;
    if (!(counts = PyDict_New()) || !(labels = PyList_New(0)) || !(classes = PyList_New(0)) ||
        !(codes = PyList_New(each ? n : 0)) || !(times = PyList_New(each ? n : 0)) || !(minutes = PyDict_New()) ||
        !(refusals = PyList_New(0)) || !(reasons = PyDict_New()) || !(unnamed = PyDict_New()))
        goto done;
    /* Without each_reply, events without a domain after the first of their class are only
     * counted per class (uc/un, by the class object): see mailenable_bulk.compact(). */
    PyObject *uc[UNNAMED] = {NULL};
    long un[UNNAMED] = {0};
    int nu = 0;
    /* counts, in the order keys first occur (as Counter), added up per pointer slot first. */
    PyObject *sk[64] = {NULL};
    long sn[64] = {0};
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n) {
            for (int j = 0; j < 64; j++)
                if (sk[j] && add_count(counts, sk[j], sn[j]) < 0)
                    goto done;
            break;
        }
        PyObject *row = PyList_GET_ITEM(rows, i), *key = PyTuple_GET_ITEM(row, 2);
        int slot = (int)(((uintptr_t)key >> 4) & 63);
        if (sk[slot] == key) {
            sn[slot]++;
        } else {
            if (sk[slot] && add_count(counts, sk[slot], sn[slot]) < 0)
                goto done;
            if (add_count(counts, key, 0) < 0) /* first seen: its place in the order */
                goto done;
            sk[slot] = key;
            sn[slot] = 1;
        }
        PyObject *kind;
        KIND_OF(key, kind); /* present: pass 1 */
        if (!kind) {
            PyErr_SetString(PyExc_RuntimeError, "tally: a key went missing");
            goto done;
        }
        long bits = PyLong_AsLong(PyTuple_GET_ITEM(kind, 0));
        if (bits == -1 && PyErr_Occurred())
            goto done;
        PyObject *sender, *recipient;
        if (step(row, bits, tx, memo, &sender, &recipient) < 0)
            goto done;
        PyObject *label = bits & OUTBOUND ? recipient : sender, *klass = PyTuple_GET_ITEM(kind, 1);
        int rc = 0, listed = 1;
        if (!each && PyUnicode_GET_LENGTH(label) == 0) {
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
        if (listed && (PyList_Append(labels, label) < 0 || PyList_Append(classes, klass) < 0))
            rc = -1;
        double t = tv[i];
        if (each) {
            PyObject *tf = PyFloat_FromDouble(t);
            if (!tf)
                rc = -1;
            else {
                PyList_SET_ITEM(times, i, tf);
                PyList_SET_ITEM(codes, i, Py_NewRef(PyTuple_GET_ITEM(kind, 3)));
            }
        }
        long cell = PyLong_AsLong(PyTuple_GET_ITEM(kind, 2));
        if (rc == 0 && cell < 2) {
            PyObject *b = PyLong_FromLong(minute_of(t)), *counts3;
            if (!b)
                rc = -1;
            else if ((counts3 = PyDict_GetItemWithError(minutes, b))) {
                long c = PyLong_AsLong(PyList_GET_ITEM(counts3, cell));
                PyObject *c1 = c == -1 && PyErr_Occurred() ? NULL : PyLong_FromLong(c + 1);
                if (c1)
                    PyList_SetItem(counts3, cell, c1);
                else
                    rc = -1;
            } else if (PyErr_Occurred()) {
                rc = -1;
            } else {
                counts3 = Py_BuildValue("[iii]", cell == 0, cell == 1, 0);
                rc = counts3 ? PyDict_SetItem(minutes, b, counts3) : -1;
                Py_XDECREF(counts3);
            }
            Py_XDECREF(b);
        }
        if (rc == 0 && (bits & REFUSAL))
            rc = refusal(row, PyTuple_GET_ITEM(kind, 3), minute_of(t), sender, recipient, reasons_memo, reason_of,
                         reasons, refusals);
        Py_DECREF(sender);
        Py_DECREF(recipient);
        if (rc < 0)
            goto done;
    }
    for (int u = 0; u < nu; u++)
        if (un[u] && add_count(unnamed, uc[u], un[u]) < 0)
            goto done;
    result = Py_BuildValue("(OOOOOOdOOOO)", counts, labels, classes, codes, times, minutes, last, reasons, refusals,
                           unnamed, saved ? saved : Py_None);
done:
    PyMem_Free(tv);
    Py_XDECREF(reasons);
    Py_XDECREF(counts);
    Py_XDECREF(labels);
    Py_XDECREF(classes);
    Py_XDECREF(codes);
    Py_XDECREF(times);
    Py_XDECREF(minutes);
    Py_XDECREF(refusals);
    Py_XDECREF(saved);
    Py_XDECREF(unnamed);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, rows) -> (lines, items) | None: mailenable_bulk.item() of every line of a chunk."},
    {"tally", tally, METH_VARARGS,
     "tally(rows, kinds, hours, tx, memo, each_reply, learn_key, learn_hour, reasons_memo, reason_of): "
     "MailEnableBulk._tally_python() in C."},
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
    return PyModule_Create(&module);
}
